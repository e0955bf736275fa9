//! Borderless tables in the style of kubectl and gh's tableprinter: a header
//! row in capitals, columns two spaces apart, no rules. Fitted to the
//! terminal's width by leaving out optional columns, then shortening the widest
//! cells with `…`; a column marked `keep` (the id) is never cut or wrapped, so
//! it can always be copied whole.

use unicode_width::UnicodeWidthStr;

/// The gap between two columns.
pub const GAP: usize = 2;

/// One column as the table lays it out.
#[derive(Debug, Clone)]
pub struct Col {
    pub header: &'static str,
    /// Never shortened (ids).
    pub keep: bool,
    /// Left out first when the table does not fit (optional columns).
    pub optional: bool,
}

/// The display width of `s` (East Asian wide characters count two).
pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// `s` cut to at most `max` columns, with `…` when anything was cut.
pub fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// Which columns to show and how wide, for `rows` within `limit` columns
/// (None: no limit). Returns (index, width) pairs in display order.
pub fn layout(cols: &[Col], rows: &[Vec<String>], limit: Option<usize>) -> Vec<(usize, usize)> {
    let natural: Vec<usize> = (0..cols.len())
        .map(|i| {
            rows.iter()
                .map(|r| width(&r[i]))
                .chain([width(cols[i].header)])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let total = |shown: &[(usize, usize)]| -> usize {
        shown.iter().map(|(_, w)| w).sum::<usize>() + GAP * shown.len().saturating_sub(1)
    };
    let mut shown: Vec<(usize, usize)> = (0..cols.len())
        .filter(|&i| !cols[i].optional)
        .map(|i| (i, natural[i]))
        .collect();
    let Some(limit) = limit else {
        return (0..cols.len()).map(|i| (i, natural[i])).collect();
    };
    // Optional columns, in their order, while they fit whole.
    for i in (0..cols.len()).filter(|&i| cols[i].optional) {
        if total(&shown) + GAP + natural[i] <= limit {
            let at = shown.partition_point(|(j, _)| *j < i);
            shown.insert(at, (i, natural[i]));
        }
    }
    // Still too wide: shorten the widest column that may be shortened, one
    // character at a time, down to its header's width (at least 5).
    while total(&shown) > limit {
        let widest = shown
            .iter_mut()
            .filter(|(i, w)| !cols[*i].keep && *w > width(cols[*i].header).max(5))
            .max_by_key(|(_, w)| *w);
        match widest {
            Some((_, w)) => *w -= 1,
            None => break,
        }
    }
    shown
}

/// One line of the table: each cell padded to its width (the last is not),
/// with `paint` applied to the padded text of column `i` (colour).
pub fn line(
    shown: &[(usize, usize)],
    cells: &[String],
    paint: &dyn Fn(usize, String) -> String,
) -> String {
    let mut s = String::new();
    for (n, &(i, w)) in shown.iter().enumerate() {
        let text = truncate(&cells[i], w);
        let last = n + 1 == shown.len();
        let pad = if last {
            0
        } else {
            w.saturating_sub(width(&text))
        };
        s.push_str(&paint(i, text));
        if !last {
            s.push_str(&" ".repeat(pad + GAP));
        }
    }
    s.truncate(s.trim_end().len());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<Col> {
        vec![
            Col {
                header: "ID",
                keep: true,
                optional: false,
            },
            Col {
                header: "NAME",
                keep: false,
                optional: false,
            },
            Col {
                header: "EXTRA",
                keep: false,
                optional: true,
            },
        ]
    }

    #[test]
    fn fits_by_dropping_then_shortening_but_never_cuts_the_id() {
        let rows = vec![vec![
            "tk_0123456789ab".to_string(),
            "a-rather-long-name-for-a-token".to_string(),
            "extra".to_string(),
        ]];
        assert_eq!(layout(&cols(), &rows, None), [(0, 15), (1, 30), (2, 5)]);
        assert_eq!(layout(&cols(), &rows, Some(80)), [(0, 15), (1, 30), (2, 5)]);
        assert_eq!(layout(&cols(), &rows, Some(50)), [(0, 15), (1, 30)]);
        let narrow = layout(&cols(), &rows, Some(30));
        assert_eq!(narrow, [(0, 15), (1, 13)]);
        let l = line(&narrow, &rows[0], &|_, s| s);
        assert_eq!(l, "tk_0123456789ab  a-rather-lon…");
        assert_eq!(width(&l), 30);
        // Narrower than the id: the id stays whole.
        assert_eq!(layout(&cols(), &rows, Some(10))[0], (0, 15));
    }

    #[test]
    fn wide_characters_count_twice() {
        assert_eq!(width("名前"), 4);
        assert_eq!(truncate("名前名前", 5), "名前…");
    }
}

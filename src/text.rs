//! Untrusted text made safe for a terminal or a line format, in one place.
//!
//! Names, paths, reasons and error bodies can come from a client of the proxy or
//! from a gateway. Printed raw, they can move the cursor, retitle the terminal,
//! clear the screen (C0/C1 controls, ECMA-48 escape sequences) or show text in
//! an order other than the one stored (Unicode bidi overrides, UAX #9). Every
//! renderer of a terminal or line format (table, plain, tsv, env, logs) passes
//! such fields through [`terminal_safe`]; JSON keeps the exact value, escaped by
//! JSON's own rules.

use std::borrow::Cow;
use std::fmt::Write as _;

/// True for characters that must never reach a terminal as they are:
/// C0 controls (tab and newline included: they break line formats), DEL,
/// C1 controls, the bidi embeddings, overrides and isolates, and the invisible
/// format characters that hide or reorder text (zero-width space, joiners,
/// word joiner, invisible operators, BOM, soft hyphen, Mongolian vowel separator).
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{ad}'
        | '\u{61c}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}')
}

/// Whether `s` holds any character that [`terminal_safe`] would rewrite.
pub fn has_unsafe(s: &str) -> bool {
    s.chars().any(is_unsafe)
}

/// `s` with every unsafe character shown as a visible escape: `\t`, `\n`, `\r`,
/// `\\` for a backslash next to an escape's meaning, and `\u{XXXX}` for the
/// rest. Text without such characters (and without backslashes) is borrowed
/// unchanged, so the common case costs no allocation.
///
/// The result is one line, and distinct inputs give distinct outputs (a literal
/// backslash is doubled), so a forged `\n` in stored text cannot pass for an
/// escaped newline.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || is_unsafe(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Bytes read from stdin or a file as text: text that is not UTF-8 is a usage
/// error (exit 2) that names `what` and the offset, never a lossy guess.
pub fn utf8_text(bytes: Vec<u8>, what: &str) -> Result<String, crate::error::UserError> {
    String::from_utf8(bytes).map_err(|e| {
        crate::error::UserError::usage(format!(
            "{what} is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
        .hint("save it as UTF-8")
    })
}

/// How many characters of an outside value an error message shows.
pub const SHOWN_MAX: usize = 64;

/// `s` as an error message may quote it: whole when short, else its first
/// `SHOWN_MAX` characters and its length, so that a huge argument or parameter
/// is never echoed in full.
pub fn clipped(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(SHOWN_MAX) {
        None => Cow::Borrowed(s),
        Some((cut, _)) => Cow::Owned(format!("{}… ({} bytes)", &s[..cut], s.len())),
    }
}

/// `text` with every run quoted in `'…'` or `` `…` `` that is longer than
/// `SHOWN_MAX` clipped (clap quotes the values it refuses one way, tok's own
/// parsers the other).
pub fn clip_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    let mut rest = text;
    while let Some(open) = rest.find(['\'', '`']) {
        let q = rest[open..].chars().next().unwrap_or('\'');
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        match rest.find(q) {
            Some(close) => {
                out.push_str(&clipped(&rest[..close]));
                out.push(q);
                rest = &rest[close + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(
            terminal_safe("orders:read ü 名前"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn escapes_and_bidi_are_made_visible() {
        let hostile = "/x\u{1b}]0;OWNED\u{7}\u{1b}[2J\nforged line";
        let safe = terminal_safe(hostile);
        assert_eq!(
            safe,
            "/x\\u{001b}]0;OWNED\\u{0007}\\u{001b}[2J\\nforged line"
        );
        assert!(!safe.chars().any(char::is_control));
        assert_eq!(
            terminal_safe("a\u{202e}b\u{200b}c\u{9b}"),
            "a\\u{202e}b\\u{200b}c\\u{009b}"
        );
    }

    #[test]
    fn escaping_is_unambiguous() {
        // A literal backslash-n in the input must not read as an escaped newline.
        assert_ne!(terminal_safe("a\\nb"), terminal_safe("a\nb"));
        assert_eq!(terminal_safe("a\\nb"), "a\\\\nb");
    }

    #[test]
    fn every_control_and_format_character_is_caught() {
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            assert!(is_unsafe(c), "{c:?}");
        }
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2069}',
            '\u{200d}', '\u{feff}',
        ] {
            assert!(is_unsafe(c), "{c:?}");
        }
        for c in ['a', ' ', 'é', '名', '\u{1f600}'] {
            assert!(!is_unsafe(c), "{c:?}");
        }
    }

    #[test]
    fn long_values_are_clipped_in_messages() {
        assert_eq!(clipped("short"), "short");
        let long = "x".repeat(120_000);
        let c = clipped(&long);
        assert!(c.len() < 100 && c.ends_with("(120000 bytes)"), "{c}");
        let msg = format!("error: invalid value '{long}' for '--ttl <D>': `{long}`: bad\n");
        let m = clip_quoted(&msg);
        assert!(
            m.len() < 300 && m.contains("'--ttl <D>'") && m.ends_with(": bad\n"),
            "{m}"
        );
    }
}

//! TTL parsing (`15m`, `1h30m`, `2w`) and human rendering (`in 15m`, `3d ago`).

use chrono::{DateTime, TimeDelta, Utc};
use std::fmt;
use std::str::FromStr;

/// A positive span of time given with units. A bare number is refused: `--ttl 15`
/// could mean seconds or minutes, and a token lifetime is no place to guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ttl(u64);

/// Ten years: enough for any token that should expire at all.
pub const MAX_SECONDS: u64 = 10 * 366 * 86_400;

impl Ttl {
    /// At most `MAX_SECONDS`, as parsing allows, so that `delta` and adding it
    /// to now always fit.
    pub const fn from_secs(secs: u64) -> Self {
        Ttl(if secs > MAX_SECONDS {
            MAX_SECONDS
        } else {
            secs
        })
    }
    pub fn as_secs(self) -> u64 {
        self.0
    }
    pub fn delta(self) -> TimeDelta {
        // Never more than ten years (see `from_secs` and `from_str`).
        TimeDelta::seconds(self.0.min(MAX_SECONDS) as i64)
    }
}

/// `at` plus `secs` seconds, or None where no time is that far (chrono holds
/// about ±262,000 years). For numbers read from a gateway or a file, on which
/// `TimeDelta::seconds` and `+` would panic.
pub fn checked_after(at: DateTime<Utc>, secs: i64) -> Option<DateTime<Utc>> {
    TimeDelta::try_seconds(secs).and_then(|d| at.checked_add_signed(d))
}

/// As `checked_after`, for an unsigned count.
pub fn checked_after_u64(at: DateTime<Utc>, secs: u64) -> Option<DateTime<Utc>> {
    checked_after(at, i64::try_from(secs).ok()?)
}

impl FromStr for Ttl {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s.is_empty() {
            return Err("empty duration; use a number with a unit, e.g. 15m or 1h30m".into());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "`{s}` has no unit; write {s}s, {s}m, {s}h, {s}d or {s}w (e.g. 15m, 1h30m)"
            ));
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        let mut last_unit_rank = usize::MAX;
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let (mult, rank) = match c {
                'w' => (604_800, 4),
                'd' => (86_400, 3),
                'h' => (3_600, 2),
                'm' => (60, 1),
                's' => (1, 0),
                _ => {
                    return Err(format!(
                        "`{s}`: unknown unit `{c}`; units are s, m, h, d and w (e.g. 90s, 15m, 1h30m, 2d)"
                    ))
                }
            };
            if digits.is_empty() {
                return Err(format!("`{s}`: unit `{c}` has no number before it"));
            }
            if rank >= last_unit_rank {
                return Err(format!(
                    "`{s}`: units must go from largest to smallest, each once (e.g. 1d12h, 1h30m)"
                ));
            }
            last_unit_rank = rank;
            let n: u64 = digits
                .parse()
                .map_err(|_| format!("`{s}`: number too large"))?;
            digits.clear();
            total = n
                .checked_mul(mult)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| format!("`{s}` is too long"))?;
        }
        if !digits.is_empty() {
            return Err(format!(
                "`{s}` ends in a number without a unit; add s, m, h, d or w"
            ));
        }
        if total == 0 {
            return Err(format!("`{s}` is zero; a lifetime must be positive"));
        }
        if total > MAX_SECONDS {
            return Err(format!(
                "`{s}` is longer than 10 years; use --no-expiry for a token that never expires"
            ));
        }
        Ok(Ttl(total))
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&compact(self.0))
    }
}

/// `1h30m` style: the exact value, largest units first.
pub fn compact(mut secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// A span for people, in one form everywhere: one unit, rounded to the
/// nearest (`15m`, `1d`, `3h`; 1h40m is `2h`). The unit is the largest that
/// the span reaches; days are the largest unit (times past a year are shown
/// as dates, see `relative`).
pub fn rough(secs: u64) -> String {
    rough_ms(secs.saturating_mul(1000))
}

const UNITS: [(&str, u64); 4] = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];

fn rough_ms(ms: u64) -> String {
    // A unit is reached when the span, rounded to the next smaller unit, is at
    // least one of it: a token made with --ttl 1d has 23h59m59s left when it
    // is shown, and that is 1d to a person (and --ttl 15m is 15m).
    for (i, (unit, size)) in UNITS.iter().enumerate() {
        let smaller = UNITS.get(i + 1).map_or(1, |(_, s)| *s);
        let size_ms = size * 1000;
        if ms.saturating_add(smaller * 500) >= size_ms {
            return format!("{}{unit}", (ms + size_ms / 2) / size_ms);
        }
    }
    "0s".into()
}

/// Past this, a relative time is shown as a date.
const YEAR_SECS: i64 = 365 * 86_400;

/// `in 15m`, `3d ago`, `now`, or a date (`2031-05-01`) beyond a year.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let ms = t.signed_duration_since(now).num_milliseconds();
    if ms.abs() >= YEAR_SECS * 1000 {
        return t.format("%Y-%m-%d").to_string();
    }
    if ms.abs() < 500 {
        return "now".into();
    }
    if ms > 0 {
        format!("in {}", rough_ms(ms as u64))
    } else {
        format!("{} ago", rough_ms(ms.unsigned_abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_arithmetic_on_outside_numbers_does_not_panic() {
        let now = Utc::now();
        assert_eq!(checked_after(now, 60), Some(now + TimeDelta::minutes(1)));
        assert_eq!(checked_after(now, -60), Some(now - TimeDelta::minutes(1)));
        for secs in [i64::MAX, i64::MIN, i64::MAX / 1000, 9_000_000_000_000] {
            assert_eq!(checked_after(now, secs), None, "{secs}");
        }
        assert_eq!(checked_after_u64(now, u64::MAX), None);
        assert_eq!(checked_after_u64(now, 1 << 63), None);
        assert_eq!(checked_after_u64(now, 1), Some(now + TimeDelta::seconds(1)));
        assert_eq!(Ttl::from_secs(u64::MAX).as_secs(), MAX_SECONDS);
        assert!(now
            .checked_add_signed(Ttl::from_secs(u64::MAX).delta())
            .is_some());
    }

    #[test]
    fn accepted_spellings() {
        for (s, secs) in [
            ("90s", 90),
            ("15m", 900),
            ("1h", 3600),
            ("1h30m", 5400),
            ("2d", 172_800),
            ("1w", 604_800),
            ("1d12h", 129_600),
            (" 10m ", 600),
        ] {
            assert_eq!(s.parse::<Ttl>().unwrap().as_secs(), secs, "{s}");
        }
    }

    #[test]
    fn rejected_spellings() {
        for (s, needle) in [
            ("15", "no unit"),
            ("", "empty"),
            ("15x", "unknown unit"),
            ("m", "no number"),
            ("1h2", "without a unit"),
            ("30m1h", "largest to smallest"),
            ("1m1m", "largest to smallest"),
            ("0s", "zero"),
            ("-5m", "unknown unit"),
            ("600w", "10 years"),
            ("99999999999999999999s", "too large"),
        ] {
            let err = s.parse::<Ttl>().unwrap_err();
            assert!(err.contains(needle), "{s}: {err}");
        }
    }

    #[test]
    fn renders() {
        assert_eq!(compact(5400), "1h30m");
        assert_eq!(rough(5400), "2h");
        assert_eq!(rough(899), "15m");
        assert_eq!(rough(539), "9m");
        assert_eq!(rough(59), "59s");
        assert_eq!(rough(86_400 * 12), "12d");
        assert_eq!(rough(86_400 * 70), "70d");
        assert_eq!(rough(0), "0s");
        let now = Utc::now();
        let ms = TimeDelta::milliseconds;
        // What a token made a moment ago with --ttl 15m or 1d shows.
        assert_eq!(
            relative(now + TimeDelta::minutes(15) - ms(80), now),
            "in 15m"
        );
        assert_eq!(relative(now + TimeDelta::days(1) - ms(80), now), "in 1d");
        assert_eq!(relative(now + TimeDelta::days(1) - ms(5_000), now), "in 1d");
        assert_eq!(
            relative(now + TimeDelta::minutes(15) - ms(20_000), now),
            "in 15m"
        );
        assert_eq!(
            relative(now + TimeDelta::minutes(100) - ms(20_000), now),
            "in 2h"
        );
        assert_eq!(
            relative(now + TimeDelta::minutes(59) + ms(40_000), now),
            "in 1h"
        );
        assert_eq!(relative(now + TimeDelta::hours(23), now), "in 23h");
        assert_eq!(relative(now - TimeDelta::days(3), now), "3d ago");
        assert_eq!(relative(now + ms(200), now), "now");
        let far = now + TimeDelta::weeks(161);
        assert_eq!(relative(far, now), far.format("%Y-%m-%d").to_string());
        assert_eq!(relative(now - TimeDelta::days(400), now).len(), 10);
    }
}

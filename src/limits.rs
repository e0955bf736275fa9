//! Per-token rate limits and quotas: what a token carries (`--rate 100/m
//! --burst 20`, `--quota 10000/30d`) and the arithmetic `tok serve` enforces
//! them with (see `server::limiter` and docs/reuse.md).
//!
//! A rate is a token bucket written as GCRA (the generic cell rate algorithm):
//! the bucket holds `burst` requests and refills `requests` per `per_secs`.
//! One timestamp per token (the theoretical arrival time) is the whole state,
//! and the answer is exact: `burst` requests pass at once, then one every
//! `per_secs / requests`.
//!
//! A quota is a count per fixed window: at most `limit` admitted requests in
//! each window of `period_secs`, windows counted from the token's creation.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `--rate N/s|m|h` with `--burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// Requests per window.
    pub requests: u64,
    /// The window, in seconds: 1, 60 or 3600.
    pub per_secs: u64,
    /// How many may arrive at once (the bucket's size); defaults to `requests`.
    pub burst: u64,
}

/// `--quota N/PERIOD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Admitted requests per period.
    pub limit: u64,
    /// The period, in seconds.
    pub period_secs: u64,
}

/// The largest count a rate, burst or quota may hold (the store's INTEGER).
pub const MAX_COUNT: u64 = i64::MAX as u64;
/// The longest quota period: ten years.
pub const MAX_PERIOD_SECS: u64 = 10 * 366 * 86_400;

impl Rate {
    /// Nanoseconds between two requests at the steady rate.
    pub fn interval_ns(&self) -> u128 {
        (self.per_secs as u128 * 1_000_000_000) / self.requests.max(1) as u128
    }

    /// `100/m`, with `burst 20` when it is not the default.
    pub fn describe(&self) -> String {
        let mut s = self.to_string();
        if self.burst != self.requests {
            s.push_str(&format!(", burst {}", self.burst));
        }
        s
    }

    pub fn check(&self) -> Result<(), String> {
        if self.requests == 0 || self.requests > MAX_COUNT {
            return Err(format!("a rate must be 1 to {MAX_COUNT} requests"));
        }
        if !matches!(self.per_secs, 1 | 60 | 3600) {
            return Err("a rate is per second, minute or hour (N/s, N/m, N/h)".into());
        }
        if self.burst == 0 || self.burst > MAX_COUNT {
            return Err(format!("a burst must be 1 to {MAX_COUNT}"));
        }
        Ok(())
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per_secs {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.requests)
    }
}

/// A rate as typed, before `--burst` is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateArg {
    pub requests: u64,
    pub per_secs: u64,
}

impl RateArg {
    pub fn with_burst(self, burst: Option<u64>) -> Rate {
        Rate {
            requests: self.requests,
            per_secs: self.per_secs,
            burst: burst.unwrap_or(self.requests),
        }
    }
}

impl FromStr for RateArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a rate: write N/s, N/m or N/h (100/m)");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let requests: u64 = n.trim().parse().map_err(|_| bad())?;
        let per_secs = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            _ => return Err(bad()),
        };
        let r = RateArg { requests, per_secs };
        r.with_burst(None).check()?;
        Ok(r)
    }
}

impl Quota {
    pub fn check(&self) -> Result<(), String> {
        if self.limit == 0 || self.limit > MAX_COUNT {
            return Err(format!("a quota must be 1 to {MAX_COUNT} requests"));
        }
        if self.period_secs == 0 || self.period_secs > MAX_PERIOD_SECS {
            return Err("a quota period must be from 1s to 10 years".into());
        }
        Ok(())
    }

    /// The start (ms since the epoch) of the window that holds `now_ms`, for
    /// a token created at `created_ms`.
    pub fn window_start(&self, created_ms: i64, now_ms: i64) -> i64 {
        let p = (self.period_secs as i64).saturating_mul(1000).max(1);
        let since = now_ms.saturating_sub(created_ms).max(0);
        created_ms.saturating_add(since - since % p)
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One unit, as typed (30d rather than 4w2d).
        let p = self.period_secs;
        let (n, unit) = [(86_400, "d"), (3600, "h"), (60, "m")]
            .into_iter()
            .find(|(u, _)| p % u == 0)
            .map(|(u, name)| (p / u, name))
            .unwrap_or((p, "s"));
        write!(f, "{}/{n}{unit}", self.limit)
    }
}

impl FromStr for Quota {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a quota: write N/PERIOD (10000/30d, 500/1h)");
        let (n, period) = s.trim().split_once('/').ok_or_else(bad)?;
        let limit: u64 = n.trim().parse().map_err(|_| bad())?;
        let period: crate::duration::Ttl = period.trim().parse().map_err(|_| bad())?;
        let q = Quota {
            limit,
            period_secs: period.as_secs(),
        };
        q.check()?;
        Ok(q)
    }
}

/// The most address ranges one token may carry.
pub const RANGES_PER_TOKEN: usize = 64;

/// `--allow-ip` and `--trusted-proxy`: a CIDR range, or one address (a /32 or
/// /128), IPv4 or IPv6. The host bits are cleared (`10.1.2.3/8` is `10.0.0.0/8`).
pub fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(ipnet::IpNet::from(ip));
    }
    s.parse::<ipnet::IpNet>().map(|n| n.trunc()).map_err(|_| {
        format!("`{s}` is not an address range: write 10.0.0.0/8, 2001:db8::/32 or one address")
    })
}

/// Whether `ip` is in one of `ranges`; an IPv4-mapped IPv6 address counts as IPv4.
pub fn in_ranges(ranges: &[ipnet::IpNet], ip: std::net::IpAddr) -> bool {
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    ranges.iter().any(|r| r.contains(&ip))
}

/// Serde for a list of ranges as strings (`["10.0.0.0/8"]`).
pub mod cidrs {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[ipnet::IpNet], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|n| n.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
        Option::<Vec<String>>::deserialize(d)?
            .unwrap_or_default()
            .iter()
            .map(|s| super::parse_cidr(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// What a request spent, or why it may not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// The rate: retry after this many seconds (rounded up).
    Rate { retry_after: u64 },
    /// The quota: the window ends in this many seconds (rounded up).
    Quota { retry_after: u64 },
}

/// A token bucket in GCRA form: `tat` is the theoretical arrival time, in ns
/// on a monotonic clock. Returns the new `tat` and the requests left in the
/// bucket, or how long (ns) until one more may pass.
pub fn gcra(rate: &Rate, tat: u128, now: u128) -> Result<(u128, u64), u128> {
    let t = rate.interval_ns().max(1);
    let depth = t.saturating_mul(rate.burst as u128);
    let tat = tat.max(now);
    let next = tat + t;
    if next - now > depth {
        return Err(next - now - depth);
    }
    let left = (depth - (next - now)) / t;
    Ok((next, left.min(u64::MAX as u128) as u64))
}

/// Whole seconds, rounded up, of `ns` nanoseconds (at least 1).
pub fn ceil_secs(ns: u128) -> u64 {
    (ns.div_ceil(1_000_000_000).max(1)).min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_refuse() {
        let r: RateArg = "100/m".parse().unwrap();
        assert_eq!(r.with_burst(None).to_string(), "100/m");
        assert_eq!(r.with_burst(Some(5)).describe(), "100/m, burst 5");
        assert_eq!("5/s".parse::<RateArg>().unwrap().per_secs, 1);
        assert_eq!("7/h".parse::<RateArg>().unwrap().per_secs, 3600);
        for bad in ["", "100", "0/s", "x/s", "10/d", "10/", "-1/s"] {
            assert!(bad.parse::<RateArg>().is_err(), "{bad}");
        }
    }

    #[test]
    fn quotas_parse_and_refuse() {
        let q: Quota = "10000/30d".parse().unwrap();
        assert_eq!((q.limit, q.period_secs), (10000, 30 * 86_400));
        assert_eq!(q.to_string(), "10000/30d");
        for bad in ["", "10", "0/1d", "10/x", "10/0s", "10/20000w"] {
            assert!(bad.parse::<Quota>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_parse_and_match_both_families() {
        let v4 = parse_cidr("10.1.2.3/8").unwrap();
        assert_eq!(v4.to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        let v6 = parse_cidr("2001:db8::/32").unwrap();
        for bad in ["", "10.0.0.0/33", "host", "::/129"] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
        let r = [v4, v6];
        assert!(in_ranges(&r, "10.9.9.9".parse().unwrap()));
        assert!(in_ranges(&r, "::ffff:10.9.9.9".parse().unwrap()));
        assert!(in_ranges(&r, "2001:db8::1".parse().unwrap()));
        assert!(!in_ranges(&r, "11.0.0.1".parse().unwrap()));
        assert!(!in_ranges(&r, "2001:db9::1".parse().unwrap()));
    }

    #[test]
    fn quota_windows_count_from_creation() {
        let q = Quota {
            limit: 1,
            period_secs: 10,
        };
        assert_eq!(q.window_start(1_000, 1_000), 1_000);
        assert_eq!(q.window_start(1_000, 10_999), 1_000);
        assert_eq!(q.window_start(1_000, 11_000), 11_000);
        assert_eq!(q.window_start(1_000, 500), 1_000);
    }

    #[test]
    fn the_bucket_lets_the_burst_through_then_one_per_interval() {
        let rate = Rate {
            requests: 5,
            per_secs: 1,
            burst: 5,
        };
        let now = 1_000_000_000_000u128;
        let mut tat = 0;
        for left in (0..5).rev() {
            let (next, l) = gcra(&rate, tat, now).unwrap();
            assert_eq!(l, left);
            tat = next;
        }
        let wait = gcra(&rate, tat, now).unwrap_err();
        assert_eq!(wait, 200_000_000);
        assert_eq!(ceil_secs(wait), 1);
        assert!(gcra(&rate, tat, now + wait).is_ok());
        // A full second later the whole burst is back.
        let later = now + 1_000_000_000;
        let mut tat2 = tat;
        for _ in 0..5 {
            tat2 = gcra(&rate, tat2, later).unwrap().0;
        }
        assert!(gcra(&rate, tat2, later).is_err());
    }
}

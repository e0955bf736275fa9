//! Prometheus metrics for `tok serve`, in the text exposition format 0.0.4
//! (prometheus.io/docs/instrumenting/exposition_formats: `# HELP` and
//! `# TYPE` lines, one sample per line, histograms as cumulative `_bucket`
//! series with an `le` label ending in `+Inf`, then `_sum` and `_count`;
//! label values escape `\`, `"` and newline).
//!
//! Every series exists from the start in one static: the hot path only adds
//! to atomics (`Relaxed`: counters need no order between them), never takes
//! a lock, never allocates and never looks a series up by name. Labels come
//! from closed sets (listener, decision, reason, store operation), so the
//! number of series is fixed: no token id, path or client ever becomes a
//! label. Work that needs the store (tokens by state) is done at scrape time
//! and cached for [`TOKENS_TTL`].
//!
//! `metrics = false` in the config file (or `--no-metrics`) turns recording
//! off: then each record is one relaxed load of a flag, which is what
//! `scripts/bench` compares against.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The one registry of the process.
pub static METRICS: Metrics = Metrics::new();

static ENABLED: AtomicBool = AtomicBool::new(true);

/// How long the per-state token counts are served from cache.
pub const TOKENS_TTL: Duration = Duration::from_secs(15);

/// The content type of the text format (version 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Turns recording on or off for the whole process.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

/// Which listener answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Admin = 0,
    Proxy = 1,
}

const LISTENERS: [(Listener, &str); 2] = [(Listener::Admin, "admin"), (Listener::Proxy, "proxy")];

/// How a request ended: each reason belongs to one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Let through (proxy) or answered 2xx/3xx (admin).
    Ok = 0,
    MissingToken,
    MalformedToken,
    UnknownToken,
    Expired,
    Revoked,
    UsedUp,
    InsufficientScope,
    /// A token bound by `--allow-ip` presented from elsewhere.
    WrongAddress,
    /// Over the token's rate or quota (429).
    RateLimited,
    BadPath,
    /// 401 on the admin API.
    Unauthorized,
    /// 403 on the admin API.
    Forbidden,
    /// Another 4xx on the admin API.
    ClientError,
    StoreError,
    UpstreamTimeout,
    UpstreamUnavailable,
    /// Refused with 503: the audit trail had no room for the entry.
    AuditUnavailable,
    /// Another 5xx on the admin API.
    ServerError,
}

const OUTCOMES: usize = 19;

impl Outcome {
    /// (decision, reason) as labels.
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Outcome::Ok => ("allow", "ok"),
            Outcome::MissingToken => ("deny", "missing_token"),
            Outcome::MalformedToken => ("deny", "malformed_token"),
            Outcome::UnknownToken => ("deny", "unknown_token"),
            Outcome::Expired => ("deny", "expired"),
            Outcome::Revoked => ("deny", "revoked"),
            Outcome::UsedUp => ("deny", "used_up"),
            Outcome::InsufficientScope => ("deny", "insufficient_scope"),
            Outcome::WrongAddress => ("deny", "wrong_address"),
            Outcome::RateLimited => ("deny", "rate_limited"),
            Outcome::BadPath => ("deny", "bad_path"),
            Outcome::Unauthorized => ("deny", "unauthorized"),
            Outcome::Forbidden => ("deny", "forbidden"),
            Outcome::ClientError => ("error", "client_error"),
            Outcome::StoreError => ("error", "store_error"),
            Outcome::UpstreamTimeout => ("error", "upstream_timeout"),
            Outcome::UpstreamUnavailable => ("error", "upstream_unavailable"),
            Outcome::AuditUnavailable => ("error", "audit_unavailable"),
            Outcome::ServerError => ("error", "server_error"),
        }
    }

    /// The outcomes a listener can have, in exposition order.
    fn of(listener: Listener) -> &'static [Outcome] {
        match listener {
            Listener::Admin => &[
                Outcome::Ok,
                Outcome::Unauthorized,
                Outcome::Forbidden,
                Outcome::ClientError,
                Outcome::ServerError,
            ],
            Listener::Proxy => &[
                Outcome::Ok,
                Outcome::MissingToken,
                Outcome::MalformedToken,
                Outcome::UnknownToken,
                Outcome::Expired,
                Outcome::Revoked,
                Outcome::UsedUp,
                Outcome::InsufficientScope,
                Outcome::WrongAddress,
                Outcome::RateLimited,
                Outcome::BadPath,
                Outcome::StoreError,
                Outcome::UpstreamTimeout,
                Outcome::UpstreamUnavailable,
                Outcome::AuditUnavailable,
            ],
        }
    }

    /// An admin API answer by its status code.
    pub fn of_status(status: u16) -> Outcome {
        match status {
            401 => Outcome::Unauthorized,
            403 => Outcome::Forbidden,
            400..=499 => Outcome::ClientError,
            500.. => Outcome::ServerError,
            _ => Outcome::Ok,
        }
    }
}

/// What a store call was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// Reading a token by its secret's hash: the proxy's admission cache missed.
    Lookup = 0,
    /// Spending a use of a use-limited token.
    Spend = 1,
    /// A batch of audit entries and uses.
    AuditWrite = 2,
}

const STORE_OPS: [(StoreOp, &str); 3] = [
    (StoreOp::Lookup, "lookup"),
    (StoreOp::Spend, "spend"),
    (StoreOp::AuditWrite, "audit_write"),
];

/// Upper bounds of the latency buckets, in microseconds (100µs to 10s).
const BOUNDS_US: [u64; 15] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];
const BUCKETS: usize = BOUNDS_US.len() + 1;

/// A latency histogram: one counter per bucket (the last one past every
/// bound) and the sum. The count is the sum of the buckets, so `+Inf` and
/// `_count` always agree in a scrape.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        if !enabled() {
            return;
        }
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Relaxed);
            let le = match BOUNDS_US.get(i) {
                Some(&us) => format!("{}", us as f64 / 1e6),
                None => "+Inf".into(),
            };
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// A counter that only goes up.
pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        if enabled() {
            self.0.fetch_add(n, Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

pub struct Metrics {
    requests: [[Counter; OUTCOMES]; 2],
    /// The whole proxy request, from the first byte read to the answer's head.
    pub proxy_request: Histogram,
    /// From sending to the upstream to its answer's head.
    pub upstream: Histogram,
    store: [Histogram; 3],
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub audit_written: Counter,
    pub audit_refused: Counter,
    pub store_errors: Counter,
    pub reloads: Counter,
    pub reload_failures: Counter,
}

impl Metrics {
    const fn new() -> Metrics {
        Metrics {
            requests: [
                [const { Counter::new() }; OUTCOMES],
                [const { Counter::new() }; OUTCOMES],
            ],
            proxy_request: Histogram::new(),
            upstream: Histogram::new(),
            store: [Histogram::new(), Histogram::new(), Histogram::new()],
            cache_hits: Counter::new(),
            cache_misses: Counter::new(),
            audit_written: Counter::new(),
            audit_refused: Counter::new(),
            store_errors: Counter::new(),
            reloads: Counter::new(),
            reload_failures: Counter::new(),
        }
    }

    /// Counts a finished request.
    pub fn request(&self, listener: Listener, outcome: Outcome) {
        self.requests[listener as usize][outcome as usize].inc();
    }

    pub fn requests(&self, listener: Listener, outcome: Outcome) -> u64 {
        self.requests[listener as usize][outcome as usize].get()
    }

    pub fn store(&self, op: StoreOp) -> &Histogram {
        &self.store[op as usize]
    }

    /// The exposition, with the gauges the caller read at scrape time.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(16 * 1024);
        header(
            &mut out,
            "tok_build_info",
            "gauge",
            "Always 1; the labels say which tok this is.",
        );
        let _ = writeln!(
            out,
            "tok_build_info{{version=\"{}\"}} 1",
            escape(env!("CARGO_PKG_VERSION"))
        );

        header(
            &mut out,
            "tok_requests_total",
            "counter",
            "Requests answered, by listener, decision (allow, deny, error) and reason.",
        );
        for (l, lname) in LISTENERS {
            for &o in Outcome::of(l) {
                let (decision, reason) = o.labels();
                let _ = writeln!(
                    out,
                    "tok_requests_total{{listener=\"{lname}\",decision=\"{decision}\",reason=\"{reason}\"}} {}",
                    self.requests(l, o)
                );
            }
        }

        let name = "tok_proxy_request_duration_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Time from a proxy request's arrival to its answer's head.",
        );
        self.proxy_request.render(&mut out, name, "");
        let name = "tok_upstream_duration_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Time the upstream took to answer a forwarded request's head.",
        );
        self.upstream.render(&mut out, name, "");
        let name = "tok_store_duration_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Time of store calls, by operation.",
        );
        for (op, oname) in STORE_OPS {
            self.store(op)
                .render(&mut out, name, &format!("op=\"{oname}\""));
        }

        counter(
            &mut out,
            "tok_admission_cache_hits_total",
            "Token checks answered by the admission cache.",
            self.cache_hits.get(),
        );
        counter(
            &mut out,
            "tok_admission_cache_misses_total",
            "Token checks that had to read the store.",
            self.cache_misses.get(),
        );
        header(
            &mut out,
            "tok_audit_queue_depth",
            "gauge",
            "Audit records waiting for the writer.",
        );
        let _ = writeln!(out, "tok_audit_queue_depth {}", gauges.audit_queue);
        header(
            &mut out,
            "tok_audit_queue_capacity",
            "gauge",
            "Audit records the queue holds before requests wait.",
        );
        let _ = writeln!(out, "tok_audit_queue_capacity {}", gauges.audit_capacity);
        counter(
            &mut out,
            "tok_audit_entries_written_total",
            "Audit entries committed to the store.",
            self.audit_written.get(),
        );
        counter(
            &mut out,
            "tok_audit_entries_refused_total",
            "Proxy requests refused with 503 because the audit queue stayed full, and entries the store refused at shutdown past every retry (each is logged).",
            self.audit_refused.get(),
        );
        counter(
            &mut out,
            "tok_store_errors_total",
            "Store calls that failed.",
            self.store_errors.get(),
        );
        counter(
            &mut out,
            "tok_config_reloads_total",
            "SIGHUP reloads applied.",
            self.reloads.get(),
        );
        counter(
            &mut out,
            "tok_config_reload_failures_total",
            "SIGHUP reloads refused (the old settings stay).",
            self.reload_failures.get(),
        );

        if let Some(t) = &gauges.tokens {
            header(
                &mut out,
                "tok_tokens",
                "gauge",
                "Tokens in the store by state (counted at most every 15s).",
            );
            for (state, n) in t {
                let _ = writeln!(out, "tok_tokens{{state=\"{}\"}} {n}", escape(state));
            }
        }
        out
    }
}

/// What is read, not counted, at scrape time.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    pub audit_queue: u64,
    pub audit_capacity: u64,
    /// (state, count); None when the store could not be read.
    pub tokens: Option<Vec<(&'static str, u64)>>,
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {v}");
}

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_agree_with_their_count() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render(&mut out, "x", "op=\"a\"");
        assert!(
            out.contains("x_bucket{op=\"a\",le=\"0.0001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{op=\"a\",le=\"0.0005\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("x_bucket{op=\"a\",le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{op=\"a\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{op=\"a\"} 3\n"), "{out}");
        assert!(out.contains("x_sum{op=\"a\"} 60.00035\n"), "{out}");
    }

    #[test]
    fn admin_statuses_map_to_outcomes() {
        assert_eq!(Outcome::of_status(200), Outcome::Ok);
        assert_eq!(Outcome::of_status(401), Outcome::Unauthorized);
        assert_eq!(Outcome::of_status(404), Outcome::ClientError);
        assert_eq!(Outcome::of_status(503), Outcome::ServerError);
        for l in [Listener::Admin, Listener::Proxy] {
            for o in Outcome::of(l) {
                assert!((*o as usize) < OUTCOMES);
            }
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

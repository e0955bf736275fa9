//! Rate limits and quotas per token, enforced in memory by the proxy (see
//! `crate::limits` for the arithmetic and docs/reuse.md for the behaviour).
//!
//! - **Exact per node.** One mutex-guarded map, keyed by token id, holds each
//!   limited token's bucket (one timestamp) and its quota count in the current
//!   window. A decision takes the lock once; concurrent requests are ordered by
//!   it, so `--rate 5/s --burst 5` lets exactly 5 of 50 simultaneous requests
//!   through.
//! - **No store write per request.** Quota use goes to the audit writer with
//!   the request's entry and is added to the store in its batch
//!   (`store::quota`). A node that first meets a quota token reads its use in
//!   the current window once, so the count survives a restart; a crash loses
//!   at most the writer's last batch (about 100 ms of counts).
//! - **Answers** carry the `RateLimit-Policy` and `RateLimit` fields of the
//!   IETF httpapi draft (draft-ietf-httpapi-ratelimit-headers-08, section 2
//!   and 3: `"name";q=QUOTA;w=WINDOW` and `"name";r=REMAINING;t=RESET`); a
//!   refused request gets 429 with `Retry-After` (RFC 9110 10.2.3, RFC 6585 4).
//! - **429s are audited aggregated**: a refused request writes no entry of
//!   its own; its refusal is counted per token and [`Limiter::flush`] writes
//!   one entry per token with refusals (how many, since when), every second
//!   and once more on shutdown.

use super::audit_writer::AuditSink;
use crate::limits::{ceil_secs, gcra, Over};
use crate::model::Token;
use crate::store::audit::{Decision, Entry, Event};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// How often refusals are written to the audit trail, aggregated.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Default)]
struct Counts {
    /// GCRA's theoretical arrival time, ns since `Limiter::epoch`.
    tat: u128,
    /// The quota window (start, ms) and the admitted requests in it.
    quota: Option<(i64, u64)>,
}

struct Refusals {
    count: u64,
    first: Entry,
}

/// A request that passed: what its response says about the limits, and the
/// quota window it used (for the audit writer to persist).
#[derive(Debug, Clone, Default)]
pub struct Grant {
    pub quota_window: Option<i64>,
    pub fields: Option<Fields>,
}

/// The draft's two response fields, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    pub policy: String,
    pub state: String,
}

pub struct Limiter {
    epoch: Instant,
    counts: Mutex<HashMap<String, Counts>>,
    refused: Mutex<HashMap<String, Refusals>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            epoch: Instant::now(),
            counts: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Limiter {
    /// Whether this node still has to read the token's quota use in the
    /// window holding `now` from the store.
    pub fn needs_quota_use(&self, t: &Token, now: DateTime<Utc>) -> Option<i64> {
        let q = t.quota?;
        let window = q.window_start(t.created_at.timestamp_millis(), now.timestamp_millis());
        match lock(&self.counts).get(&t.id).and_then(|c| c.quota) {
            Some((w, _)) if w >= window => None,
            _ => Some(window),
        }
    }

    /// Takes what the store holds for the token's quota in `window`, unless
    /// this node already counts that window (its own count is newer).
    pub fn seed_quota(&self, id: &str, window: i64, used: u64) {
        let mut counts = lock(&self.counts);
        let c = counts.entry(id.to_string()).or_default();
        match c.quota {
            Some((w, _)) if w >= window => {}
            _ => c.quota = Some((window, used)),
        }
    }

    /// Decides on one request of `t` (which has a rate or a quota) at `now`.
    pub fn check(&self, t: &Token, now: DateTime<Utc>) -> Result<Grant, (Over, Fields)> {
        let mono = self.epoch.elapsed().as_nanos();
        let now_ms = now.timestamp_millis();
        let mut counts = lock(&self.counts);
        let c = counts.entry(t.id.clone()).or_default();
        let mut policy = Vec::new();
        let mut state = Vec::new();
        let mut over = None;
        let mut tat = None;
        if let Some(r) = &t.rate {
            policy.push(format!("\"rate\";q={};w={}", r.requests, r.per_secs));
            match gcra(r, c.tat, mono) {
                Ok((next, left)) => {
                    tat = Some(next);
                    state.push(format!("\"rate\";r={left};t={}", reset_secs(next, mono)));
                }
                Err(wait) => {
                    state.push(format!("\"rate\";r=0;t={}", ceil_secs(wait)));
                    over = Some(Over::Rate {
                        retry_after: ceil_secs(wait),
                    });
                }
            }
        }
        let mut quota_window = None;
        if let Some(q) = &t.quota {
            policy.push(format!("\"quota\";q={};w={}", q.limit, q.period_secs));
            let window = q.window_start(t.created_at.timestamp_millis(), now_ms);
            let used = match c.quota {
                Some((w, used)) if w == window => used,
                _ => 0,
            };
            let end = window.saturating_add((q.period_secs as i64).saturating_mul(1000));
            let reset = ((end - now_ms).max(0) as u64).div_ceil(1000).max(1);
            if used >= q.limit {
                state.push(format!("\"quota\";r=0;t={reset}"));
                over.get_or_insert(Over::Quota { retry_after: reset });
            } else if over.is_none() {
                c.quota = Some((window, used + 1));
                quota_window = Some(window);
                state.push(format!("\"quota\";r={};t={reset}", q.limit - used - 1));
            } else {
                state.push(format!("\"quota\";r={};t={reset}", q.limit - used));
            }
        }
        let fields = Fields {
            policy: policy.join(", "),
            state: state.join(", "),
        };
        if let Some(o) = over {
            return Err((o, fields));
        }
        if let Some(next) = tat {
            c.tat = next;
        }
        Ok(Grant {
            quota_window,
            fields: Some(fields),
        })
    }

    /// Gives back a quota use taken by a request that was refused after all
    /// (its last use was spent by another request first).
    pub fn refund(&self, id: &str, window: i64) {
        if let Some(c) = lock(&self.counts).get_mut(id) {
            if let Some((w, used)) = c.quota.as_mut() {
                if *w == window {
                    *used = used.saturating_sub(1);
                }
            }
        }
    }

    /// Counts a 429 for the audit trail; `entry` describes the request.
    pub fn refused(&self, entry: Entry) {
        let Some(id) = entry.token_id.clone() else {
            return;
        };
        let mut refused = lock(&self.refused);
        let r = refused.entry(id).or_insert_with(|| Refusals {
            count: 0,
            first: entry,
        });
        r.count += 1;
    }

    /// Writes one audit entry per token refused since the last flush.
    pub async fn flush(&self, audit: &AuditSink) {
        let pending: Vec<Refusals> = lock(&self.refused).drain().map(|(_, r)| r).collect();
        for r in pending {
            let mut e = r.first;
            let what = e.reason.take().unwrap_or_default();
            e.reason = Some(format!(
                "{what}: {} request{} refused with 429 since {}",
                r.count,
                if r.count == 1 { "" } else { "s" },
                crate::output::rfc3339(e.at)
            ));
            e.decision = Some(Decision::Deny);
            e.event = Event::Request;
            e.upstream_status = None;
            audit.entry(e).await;
        }
    }

    /// Flushes every `FLUSH_EVERY` until `stop` resolves.
    pub async fn run(
        self: std::sync::Arc<Self>,
        audit: AuditSink,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush(&audit).await,
                _ = &mut stop => return,
            }
        }
    }
}

/// Seconds until the bucket is full again.
fn reset_secs(tat: u128, now: u128) -> u64 {
    if tat <= now {
        0
    } else {
        ceil_secs(tat - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Quota, Rate};

    fn token(rate: Option<Rate>, quota: Option<Quota>) -> Token {
        Token {
            rate,
            quota,
            ..Token::bare("tk_a".into(), Utc::now(), None)
        }
    }

    #[test]
    fn a_quota_counts_admitted_requests_and_says_what_is_left() {
        let l = Limiter::default();
        let t = token(
            None,
            Some(Quota {
                limit: 2,
                period_secs: 3600,
            }),
        );
        let now = t.created_at;
        assert_eq!(l.needs_quota_use(&t, now), Some(now.timestamp_millis()));
        l.seed_quota(&t.id, now.timestamp_millis(), 1);
        assert_eq!(l.needs_quota_use(&t, now), None);
        let g = l.check(&t, now).unwrap();
        assert_eq!(g.quota_window, Some(now.timestamp_millis()));
        let f = g.fields.unwrap();
        assert_eq!(f.policy, "\"quota\";q=2;w=3600");
        assert_eq!(f.state, "\"quota\";r=0;t=3600");
        let (over, _) = l.check(&t, now).unwrap_err();
        assert_eq!(over, Over::Quota { retry_after: 3600 });
        l.refund(&t.id, now.timestamp_millis());
        assert!(l.check(&t, now).is_ok());
        // The next window starts again from nothing.
        let later = now + chrono::TimeDelta::hours(1);
        assert!(l.check(&t, later).is_ok());
    }

    #[test]
    fn a_rate_refusal_spends_no_quota() {
        let l = Limiter::default();
        let t = token(
            Some(Rate {
                requests: 1,
                per_secs: 3600,
                burst: 1,
            }),
            Some(Quota {
                limit: 10,
                period_secs: 3600,
            }),
        );
        let now = t.created_at;
        assert!(l.check(&t, now).is_ok());
        let (over, fields) = l.check(&t, now).unwrap_err();
        assert!(matches!(over, Over::Rate { retry_after } if retry_after > 3500));
        assert_eq!(fields.policy, "\"rate\";q=1;w=3600, \"quota\";q=10;w=3600");
        assert!(
            fields.state.ends_with("\"quota\";r=9;t=3600"),
            "{}",
            fields.state
        );
    }
}

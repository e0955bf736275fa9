//! Writes the proxy's audit entries and use counts off the request path.
//!
//! Requests hand their entry to a bounded channel and go on; one task writes
//! what has gathered in a single transaction every `FLUSH_EVERY` or every
//! `MAX_BATCH` entries, whichever comes first; identical denials in a batch are
//! kept as one entry with a count. The retention policy runs on its own timer
//! (at start, then every `PRUNE_EVERY`), whether or not traffic arrives. When
//! the channel is full, requests wait for room
//! (back-pressure) rather than lose an entry: the proxy takes a [`Slot`]
//! before it decides, and answers 503, saying why in the log, when none frees
//! up within `SLOT_WAIT`; so every request it answers otherwise has its entry.
//! A batch that cannot be written (the store busy past its timeout, a full
//! disk) is kept and tried again with growing pauses for as long as the server
//! runs, while the channel fills and pushes back. On shutdown the task drains
//! the channel and writes the rest, giving up, loudly, only after about a
//! minute of failures.

use super::metrics::{StoreOp, METRICS};
use crate::store::any::AnyStore;
use crate::store::audit::{Entry, Retention, Uses};
use crate::store::backend::Backend;
use crate::store::quota::QuotaUse;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
pub const MAX_BATCH: usize = 1_000;
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How long a request waits for room in the audit channel before it is
/// refused with 503.
pub const SLOT_WAIT: Duration = Duration::from_secs(5);

struct Record {
    entry: Entry,
    /// An allowed request of a token without a use limit: its use is counted
    /// and timed in the batch.
    counted_use: bool,
    /// An allowed request of a token with a quota: one more use in the window
    /// that starts then (ms), added to `quota_use` in the batch.
    quota_window: Option<i64>,
}

impl Record {
    fn plain(entry: Entry) -> Record {
        Record {
            entry,
            counted_use: false,
            quota_window: None,
        }
    }
}

/// The sending side; cheap to clone, one per request handler.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Record>,
}

impl AuditSink {
    pub async fn entry(&self, e: Entry) {
        // The receiver lives until every sender is gone, so this cannot fail
        // while a handler still holds a sink.
        let _ = self.tx.send(Record::plain(e)).await;
    }

    /// Room for one entry, waited for up to `SLOT_WAIT`; None when the writer
    /// is that far behind.
    pub async fn slot(&self) -> Option<Slot<'_>> {
        match tokio::time::timeout(SLOT_WAIT, self.tx.reserve()).await {
            Ok(Ok(permit)) => Some(Slot(permit)),
            _ => None,
        }
    }

    /// Records waiting, and how many the queue holds.
    pub fn depth(&self) -> (usize, usize) {
        let max = self.tx.max_capacity();
        (max - self.tx.capacity(), max)
    }
}

/// Room in the audit channel, held while a request is decided: sending into it
/// cannot wait or fail.
pub struct Slot<'a>(mpsc::Permit<'a, Record>);

impl Slot<'_> {
    pub fn entry(self, e: Entry) {
        self.0.send(Record::plain(e));
    }

    /// An allowed request of a token without a use limit: its entry, and a use
    /// counted with its time in the same batch.
    pub fn entry_and_use(self, e: Entry) {
        self.entry_with(e, true, None);
    }

    /// An entry; with `counted_use`, a use counted as `entry_and_use` does;
    /// with `quota_window`, one more use of the token's quota in that window.
    pub fn entry_with(self, e: Entry, counted_use: bool, quota_window: Option<i64>) {
        self.0.send(Record {
            entry: e,
            counted_use,
            quota_window,
        });
    }
}

/// Starts the writer task over `store`; up to `queue` entries may wait for
/// it. The retention is read each time it is applied, so a reload (SIGHUP)
/// changes it.
pub fn spawn(
    store: Arc<AnyStore>,
    retention: watch::Receiver<Retention>,
    queue: usize,
) -> (AuditSink, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(queue.max(1));
    let handle = tokio::spawn(run(store, rx, retention));
    (AuditSink { tx }, handle)
}

async fn run(
    store: Arc<AnyStore>,
    mut rx: mpsc::Receiver<Record>,
    retention: watch::Receiver<Retention>,
) {
    // Retention runs on its own timer, traffic or not: at start, then every
    // PRUNE_EVERY.
    let mut prune_timer = tokio::time::interval(PRUNE_EVERY);
    prune_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;
    while open {
        let mut batch: Vec<Record> = Vec::new();
        // Wait for the first record, then gather for at most FLUSH_EVERY.
        tokio::select! {
            r = rx.recv() => match r {
                Some(r) => batch.push(r),
                None => break,
            },
            _ = prune_timer.tick() => {
                let current = *retention.borrow();
                prune(&store, current).await;
                continue;
            }
        }
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        let batch = split(batch);
        let mut pause = Duration::from_millis(100);
        let mut given = Duration::ZERO;
        loop {
            let started = std::time::Instant::now();
            let written = store.write_batch(&batch.0, &batch.1, &batch.2).await;
            METRICS
                .store(StoreOp::AuditWrite)
                .observe(started.elapsed());
            if written.is_err() {
                METRICS.store_errors.inc();
            }
            match written {
                Ok(()) => {
                    METRICS.audit_written.add(batch.0.len() as u64);
                    break;
                }
                // While the server runs a batch is never given up: the channel
                // fills and requests wait or get 503 instead.
                Err(e) if (open && !rx.is_closed()) || given <= GIVE_UP_AFTER => {
                    tracing::error!(error = %e, entries = batch.0.len(), retry_in_ms = pause.as_millis() as u64, "could not write audit entries; will retry");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                    if !open || rx.is_closed() {
                        given += pause;
                    }
                }
                Err(e) => {
                    METRICS.audit_refused.add(batch.0.len() as u64);
                    tracing::error!(error = %e, lost = batch.0.len(), "audit entries could not be written and are dropped");
                    break;
                }
            }
        }
    }
}

/// Applies the retention. On PostgreSQL only one node at a time does (the
/// backend takes an advisory lock; a node that finds it held skips a round).
async fn prune(store: &AnyStore, retention: Retention) {
    match store.prune_audit(retention, Utc::now()).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(deleted = n, "audit retention applied"),
        Err(e) => tracing::warn!(error = %e, "could not apply the audit retention; will try again"),
    }
}

/// Retries of a batch double their pause up to this one.
const MAX_PAUSE: Duration = Duration::from_secs(10);
/// On shutdown, a batch that still cannot be written after this long is dropped.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Audit entries, uses per token (count, latest time), and quota use per
/// token and window. Identical denials in one batch become one entry with
/// their count, so a flood of the same refused request costs a row per batch,
/// not a row per request.
fn split(batch: Vec<Record>) -> (Vec<Entry>, Box<Uses>, Box<QuotaUse>) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut uses: HashMap<String, (u64, DateTime<Utc>)> = HashMap::new();
    let mut quota: HashMap<(String, i64), u64> = HashMap::new();
    for r in batch {
        let e = r.entry;
        if let Some(id) = &e.token_id {
            if r.counted_use {
                let u = uses.entry(id.clone()).or_insert((0, e.at));
                u.0 += 1;
                u.1 = u.1.max(e.at);
            }
            if let Some(w) = r.quota_window {
                *quota.entry((id.clone(), w)).or_insert(0) += 1;
            }
        }
        if r.counted_use || r.quota_window.is_some() {
            entries.push(e);
            continue;
        }
        match entries
            .iter_mut()
            .rev()
            .take(AGGREGATE_WINDOW)
            .find(|x| x.same_denial(&e))
        {
            Some(first) => {
                first.count = first.count.saturating_add(e.count);
                first.latency_ms = first.latency_ms.max(e.latency_ms);
            }
            None => entries.push(e),
        }
    }
    let uses: Box<Uses> = uses.into_iter().map(|(id, (n, at))| (id, n, at)).collect();
    let mut quota: Vec<(String, i64, u64)> =
        quota.into_iter().map(|((id, w), n)| (id, w, n)).collect();
    // Older windows first, so a batch that spans two ends on the newer.
    quota.sort_by_key(|q| q.1);
    (entries, uses, quota.into_boxed_slice())
}

/// How many recent entries of a batch a denial is compared with: enough for a
/// flood mixed with other traffic, and bounded so a batch costs linear time.
const AGGREGATE_WINDOW: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audit::{Decision, Event};

    fn denial(path: &str) -> Record {
        let mut e = Entry::new(Event::Request, Utc::now());
        e.path = Some(path.into());
        e.client = Some("127.0.0.1".into());
        e.decision = Some(Decision::Deny);
        e.reason = Some("missing token".into());
        Record::plain(e)
    }

    #[test]
    fn identical_denials_are_counted_not_repeated() {
        let mut batch: Vec<Record> = (0..500).map(|_| denial("/a")).collect();
        batch.push(denial("/b"));
        batch.extend((0..10).map(|_| denial("/a")));
        let mut allowed = Entry::new(Event::Request, Utc::now());
        allowed.decision = Some(Decision::Allow);
        batch.push(Record::plain(allowed.clone()));
        batch.push(Record::plain(allowed));
        let (entries, _, _) = split(batch);
        let counts: Vec<(Option<&str>, u64)> = entries
            .iter()
            .map(|e| (e.path.as_deref(), e.count))
            .collect();
        // Allowed requests are never merged: each is its own decision.
        assert_eq!(
            counts,
            [(Some("/a"), 510), (Some("/b"), 1), (None, 1), (None, 1)]
        );
    }
}

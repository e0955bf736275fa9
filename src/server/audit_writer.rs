//! Writes the proxy's audit entries and use counts off the request path.
//!
//! Requests hand their entry to a bounded channel and go on; one task writes
//! what has gathered in a single transaction every `FLUSH_EVERY` or every
//! `MAX_BATCH` entries, whichever comes first, and applies the retention
//! policy now and then. When the channel is full, requests wait for room
//! (back-pressure) rather than lose an entry: the proxy takes a [`Slot`]
//! before it decides, and answers 503, saying why in the log, when none frees
//! up within `SLOT_WAIT`; so every request it answers otherwise has its entry.
//! A batch that cannot be written (the store busy past its timeout, a full
//! disk) is kept and tried again with growing pauses for as long as the server
//! runs, while the channel fills and pushes back. On shutdown the task drains
//! the channel and writes the rest, giving up, loudly, only after about a
//! minute of failures.

use crate::store::any::AnyStore;
use crate::store::audit::{Entry, Retention, Uses};
use crate::store::backend::Backend;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
pub const MAX_BATCH: usize = 1_000;
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How long a request waits for room in the audit channel before it is
/// refused with 503.
pub const SLOT_WAIT: Duration = Duration::from_secs(5);

enum Record {
    Entry(Entry),
    /// An allowed request's entry and a use of its token, which has no use
    /// limit: counted and timed in the batch.
    EntryAndUse(Entry),
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
        let _ = self.tx.send(Record::Entry(e)).await;
    }

    /// Room for one entry, waited for up to `SLOT_WAIT`; None when the writer
    /// is that far behind.
    pub async fn slot(&self) -> Option<Slot<'_>> {
        match tokio::time::timeout(SLOT_WAIT, self.tx.reserve()).await {
            Ok(Ok(permit)) => Some(Slot(permit)),
            _ => None,
        }
    }
}

/// Room in the audit channel, held while a request is decided: sending into it
/// cannot wait or fail.
pub struct Slot<'a>(mpsc::Permit<'a, Record>);

impl Slot<'_> {
    pub fn entry(self, e: Entry) {
        self.0.send(Record::Entry(e));
    }

    /// An allowed request of a token without a use limit: its entry, and a use
    /// counted with its time in the same batch.
    pub fn entry_and_use(self, e: Entry) {
        self.0.send(Record::EntryAndUse(e));
    }
}

/// Starts the writer task over `store`; up to `queue` entries may wait for it.
pub fn spawn(
    store: Arc<AnyStore>,
    retention: Retention,
    queue: usize,
) -> (AuditSink, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(queue.max(1));
    let handle = tokio::spawn(run(store, rx, retention));
    (AuditSink { tx }, handle)
}

async fn run(store: Arc<AnyStore>, mut rx: mpsc::Receiver<Record>, retention: Retention) {
    let mut last_prune = tokio::time::Instant::now();
    let mut open = true;
    while open {
        let mut batch: Vec<Record> = Vec::new();
        // Wait for the first record, then gather for at most FLUSH_EVERY.
        match rx.recv().await {
            Some(r) => batch.push(r),
            None => break,
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
        let prune = last_prune.elapsed() >= PRUNE_EVERY;
        if prune {
            last_prune = tokio::time::Instant::now();
        }
        let batch = split(batch);
        let mut pause = Duration::from_millis(100);
        let mut given = Duration::ZERO;
        loop {
            match store.write_batch(&batch.0, &batch.1).await {
                Ok(()) => break,
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
                    tracing::error!(error = %e, lost = batch.0.len(), "audit entries could not be written and are dropped");
                    break;
                }
            }
        }
        if prune {
            if let Err(e) = store.prune_audit(retention, Utc::now()).await {
                tracing::warn!(error = %e, "could not apply the audit retention; will try again");
            }
        }
    }
}

/// Retries of a batch double their pause up to this one.
const MAX_PAUSE: Duration = Duration::from_secs(10);
/// On shutdown, a batch that still cannot be written after this long is dropped.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Audit entries, and uses per token (count, latest time).
fn split(batch: Vec<Record>) -> (Vec<Entry>, Box<Uses>) {
    let mut entries = Vec::new();
    let mut uses: HashMap<String, (u64, DateTime<Utc>)> = HashMap::new();
    for r in batch {
        match r {
            Record::Entry(e) => entries.push(e),
            Record::EntryAndUse(e) => {
                if let Some(id) = &e.token_id {
                    let u = uses.entry(id.clone()).or_insert((0, e.at));
                    u.0 += 1;
                    u.1 = u.1.max(e.at);
                }
                entries.push(e);
            }
        }
    }
    let uses: Box<Uses> = uses.into_iter().map(|(id, (n, at))| (id, n, at)).collect();
    (entries, uses)
}

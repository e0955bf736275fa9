//! Writes the proxy's audit entries and use counts off the request path.
//!
//! Requests hand their entry to a bounded channel and go on; one task writes
//! what has gathered in a single transaction every `FLUSH_EVERY` or every
//! `MAX_BATCH` entries, whichever comes first, and applies the retention
//! policy now and then. When the channel is full, requests wait for room
//! (back-pressure) rather than lose an entry. A batch that cannot be written
//! (the store busy past its timeout, a full disk) is kept and tried again with
//! growing pauses, and only given up, loudly, after about a minute. On
//! shutdown the task drains the channel and writes the rest.

use super::metrics::{StoreOp, METRICS};
use crate::store::audit::{Entry, Retention, Uses};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
pub const MAX_BATCH: usize = 1_000;
const CHANNEL: usize = 10_000;
const PRUNE_EVERY: Duration = Duration::from_secs(60);

enum Record {
    Entry(Entry),
    /// A use of a token without a use limit: counted and timed in the batch.
    Use {
        id: String,
        at: DateTime<Utc>,
    },
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

    pub async fn used(&self, id: String, at: DateTime<Utc>) {
        let _ = self.tx.send(Record::Use { id, at }).await;
    }

    /// Records waiting, and how many the queue holds.
    pub fn depth(&self) -> (usize, usize) {
        let max = self.tx.max_capacity();
        (max - self.tx.capacity(), max)
    }
}

/// Starts the writer task over the store in `dir`. The retention is read
/// each time it is applied, so a reload (SIGHUP) changes it.
pub fn spawn(
    dir: PathBuf,
    retention: watch::Receiver<Retention>,
) -> Result<(AuditSink, tokio::task::JoinHandle<()>), crate::store::StoreError> {
    let store = Store::open(&dir)?;
    let (tx, rx) = mpsc::channel(CHANNEL);
    let handle = tokio::spawn(run(store, rx, retention));
    Ok((AuditSink { tx }, handle))
}

async fn run(store: Store, mut rx: mpsc::Receiver<Record>, retention: watch::Receiver<Retention>) {
    let store: Shared = std::sync::Arc::new(std::sync::Mutex::new(store));
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
        let batch = std::sync::Arc::new(split(batch));
        let mut pause = Duration::from_millis(100);
        loop {
            let (store, b) = (std::sync::Arc::clone(&store), std::sync::Arc::clone(&batch));
            let started = std::time::Instant::now();
            let written = blocking(move || lock(&store).write_batch(&b.0, &b.1)).await;
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
                Err(e) if pause <= GIVE_UP_AFTER => {
                    tracing::error!(error = %e, entries = batch.0.len(), retry_in_ms = pause.as_millis() as u64, "could not write audit entries; will retry");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => {
                    METRICS.audit_refused.add(batch.0.len() as u64);
                    tracing::error!(error = %e, lost = batch.0.len(), "audit entries could not be written and are dropped");
                    break;
                }
            }
        }
        if prune {
            let store = std::sync::Arc::clone(&store);
            let retention = *retention.borrow();
            if let Err(e) =
                blocking(move || lock(&store).prune_audit(retention, Utc::now()).map(drop)).await
            {
                tracing::warn!(error = %e, "could not apply the audit retention; will try again");
            }
        }
    }
}

type Shared = std::sync::Arc<std::sync::Mutex<Store>>;

fn lock(store: &Shared) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))
        .and_then(|r| r)
}

/// Retries of a batch double their pause up to this one (about a minute in all).
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

/// Audit entries, and uses per token (count, latest time).
fn split(batch: Vec<Record>) -> (Vec<Entry>, Box<Uses>) {
    let mut entries = Vec::new();
    let mut uses: HashMap<String, (u64, DateTime<Utc>)> = HashMap::new();
    for r in batch {
        match r {
            Record::Entry(e) => entries.push(e),
            Record::Use { id, at } => {
                let u = uses.entry(id).or_insert((0, at));
                u.0 += 1;
                u.1 = u.1.max(at);
            }
        }
    }
    let uses: Box<Uses> = uses.into_iter().map(|(id, (n, at))| (id, n, at)).collect();
    (entries, uses)
}

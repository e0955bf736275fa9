//! Writes the proxy's audit entries and use counts off the request path.
//!
//! Requests hand their entry to a bounded channel and go on; one task writes
//! what has gathered in a single transaction every `FLUSH_EVERY` or every
//! `MAX_BATCH` entries, whichever comes first, and applies the retention
//! policy now and then. When the channel is full, requests wait for room
//! (back-pressure) rather than lose an entry. On shutdown the task drains the
//! channel and writes the rest.

use crate::store::audit::{Entry, Retention};
use crate::store::Store;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

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
}

/// Starts the writer task over the store in `dir`.
pub fn spawn(
    dir: PathBuf,
    retention: Retention,
) -> Result<(AuditSink, tokio::task::JoinHandle<()>), crate::store::StoreError> {
    let store = Store::open(&dir)?;
    let (tx, rx) = mpsc::channel(CHANNEL);
    let handle = tokio::spawn(run(store, rx, retention));
    Ok((AuditSink { tx }, handle))
}

async fn run(store: Store, mut rx: mpsc::Receiver<Record>, retention: Retention) {
    let store = std::sync::Arc::new(std::sync::Mutex::new(store));
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
        let store = std::sync::Arc::clone(&store);
        let written = tokio::task::spawn_blocking(move || {
            let store = store.lock().unwrap_or_else(|p| p.into_inner());
            write(&store, batch)?;
            if prune {
                store.prune_audit(retention, Utc::now())?;
            }
            Ok::<_, crate::store::StoreError>(())
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "could not write audit entries"),
            Err(e) => tracing::error!(error = %e, "the audit writer task failed"),
        }
    }
}

fn write(store: &Store, batch: Vec<Record>) -> Result<(), crate::store::StoreError> {
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
    let touches: Vec<(String, u64, DateTime<Utc>)> =
        uses.into_iter().map(|(id, (n, at))| (id, n, at)).collect();
    store.touch(&touches)?;
    store.record(&entries)
}

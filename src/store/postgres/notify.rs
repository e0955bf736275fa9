//! Changes made by other nodes, heard through LISTEN/NOTIFY.
//!
//! A trigger (migration 1) calls `pg_notify('tok_changes', …)` when a token
//! is made (`create`: a cache may hold its secret as unknown), stops being
//! usable: revoked or rotated (`revoke`, `rotate`), its expiry moved
//! (`expire`), its last use spent (`spent`), or is deleted (`delete`).
//! PostgreSQL delivers a notification when its transaction commits, to every
//! session listening, including the writer's own (PostgreSQL docs, "NOTIFY").
//! The payload is JSON: `{"op", "id", "hash" (hex SHA-256 of the secret),
//! "at" (ms since the epoch, the database's clock)}`.
//!
//! One dedicated connection listens; the pool's connections cannot, as
//! deadpool may drop them at any time. While that connection is down,
//! notifications are missed: `Listener::is_live` is false, and callers must
//! read through to the database instead of trusting a cache. Every time the
//! connection is lost or comes back, `Change::Resync` tells them to forget
//! everything cached. Reconnects back off from 100 ms to 5 s.
//!
//! Followed: tokio-postgres `Connection::poll_message` and `AsyncMessage`
//! (docs.rs), which is how its own tests receive notifications.

use super::target::{Target, Tls};
use super::tls::Rustls;
use futures_util::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;

/// What another node (or this one) changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Token `id`, whose secret hashes to `hash`, changed: drop what is cached.
    Token {
        op: String,
        id: String,
        hash: [u8; 32],
        /// When the database sent it, in ms since the epoch.
        at_ms: i64,
    },
    /// Notifications may have been missed: drop everything cached.
    Resync,
}

/// The listening side; dropping it stops the task.
pub struct Listener {
    live: Arc<AtomicBool>,
    tx: broadcast::Sender<Change>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Starts listening on its own connection to `target`.
    pub fn start(target: Target) -> Listener {
        let live = Arc::new(AtomicBool::new(false));
        let (tx, _) = broadcast::channel(4096);
        let task = tokio::spawn(run(target, Arc::clone(&live), tx.clone()));
        Listener { live, tx, task }
    }

    /// Whether notifications are being heard now. When false, read through.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }
}

async fn run(target: Target, live: Arc<AtomicBool>, tx: broadcast::Sender<Change>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = match &target.tls {
            Tls::Disable => listen(&target, tokio_postgres::NoTls, &live, &tx).await,
            Tls::Verify(c) => listen(&target, Rustls(c.clone()), &live, &tx).await,
        };
        let was_live = live.swap(false, Ordering::AcqRel);
        if was_live {
            backoff = Duration::from_millis(100);
            let _ = tx.send(Change::Resync);
        }
        if let Err(e) = result {
            tracing::warn!(
                "notifications from {} lost: {e}; retrying in {:?}",
                target.display,
                backoff
            );
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Connects, listens, and forwards notifications until the connection ends.
async fn listen<T>(
    target: &Target,
    tls: T,
    live: &AtomicBool,
    tx: &broadcast::Sender<Change>,
) -> Result<(), tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, mut conn) = target.config.connect(tls).await?;
    let (msg_tx, mut msg_rx) = tokio::sync::mpsc::unbounded_channel();
    // The connection must be polled for the LISTEN below to complete, so it
    // runs in a task of its own, handing notifications over.
    let driver = tokio::spawn(async move {
        loop {
            match poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if msg_tx.send(n.payload().to_string()).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    let listening = client
        .batch_execute(&format!("LISTEN {}", super::schema::CHANNEL))
        .await;
    if let Err(e) = listening {
        driver.abort();
        return Err(e);
    }
    live.store(true, Ordering::Release);
    // Anything cached before now may have missed a change.
    let _ = tx.send(Change::Resync);
    while let Some(payload) = msg_rx.recv().await {
        if let Some(change) = parse(&payload) {
            let _ = tx.send(change);
        }
    }
    drop(client);
    match driver.await {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

fn parse(payload: &str) -> Option<Change> {
    #[derive(serde::Deserialize)]
    struct P {
        op: String,
        id: String,
        hash: String,
        at: i64,
    }
    let p: P = serde_json::from_str(payload).ok()?;
    let mut hash = [0u8; 32];
    if p.hash.len() != 64 {
        return None;
    }
    for (i, b) in hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(p.hash.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Change::Token {
        op: p.op,
        id: p.id,
        hash,
        at_ms: p.at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse() {
        let hash = "ab".repeat(32);
        let p = format!(r#"{{"op":"revoke","id":"tk_1","hash":"{hash}","at":5}}"#);
        assert_eq!(
            parse(&p),
            Some(Change::Token {
                op: "revoke".into(),
                id: "tk_1".into(),
                hash: [0xab; 32],
                at_ms: 5
            })
        );
        assert_eq!(parse(r#"{"op":"x","id":"a","hash":"zz","at":1}"#), None);
        assert_eq!(parse("not json"), None);
    }
}

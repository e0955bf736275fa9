//! Changes made by other nodes, heard through LISTEN/NOTIFY.
//!
//! A trigger (migration 1) calls `pg_notify('tok_changes', …)` when a token
//! is made (`create`: a cache may hold its secret as unknown), stops being
//! usable: revoked or rotated (`revoke`, `rotate`), its expiry moved
//! (`expire`), its last use spent (`spent`), its limits changed (`limits`,
//! migration 3), or is deleted (`delete`).
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// How often the listening connection is checked, and how long an answer may
/// take: a connection that died without a word (a cut network) is noticed
/// within about two seconds, not at TCP keepalive's pace.
/// How the listening session shows in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "tok listen";
const HEARTBEAT: Duration = Duration::from_secs(1);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether notifications are heard, and since when: incremented at every
/// connect and every loss, so it is odd while live, and a reader can tell
/// whether the connection changed between two looks.
#[derive(Default)]
struct Live(AtomicU64);

impl Live {
    fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
    fn up(&self) {
        if self.get() % 2 == 0 {
            self.0.fetch_add(1, Ordering::AcqRel);
        }
    }
    /// Marks it down; true when it was up.
    fn down(&self) -> bool {
        let was = self.get();
        if was % 2 == 1 {
            self.0.fetch_add(1, Ordering::AcqRel);
            true
        } else {
            false
        }
    }
}

/// The listening side; dropping it stops the task.
pub struct Listener {
    live: Arc<Live>,
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
        let live = Arc::new(Live::default());
        let (tx, _) = broadcast::channel(4096);
        let task = tokio::spawn(run(target, Arc::clone(&live), tx.clone()));
        Listener { live, tx, task }
    }

    /// Whether notifications are being heard now. When false, read through.
    pub fn is_live(&self) -> bool {
        self.live.get() % 2 == 1
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }
}

async fn run(target: Target, live: Arc<Live>, tx: broadcast::Sender<Change>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = match &target.tls {
            Tls::Disable => listen(&target, tokio_postgres::NoTls, &live, &tx).await,
            Tls::Verify(c) => listen(&target, Rustls(c.clone()), &live, &tx).await,
        };
        if live.down() {
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
    live: &Live,
    tx: &broadcast::Sender<Change>,
) -> Result<(), tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut config = target.config.clone();
    config.application_name(APPLICATION_NAME);
    let (client, mut conn) = config.connect(tls).await?;
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
    live.up();
    // Anything cached before now may have missed a change.
    let _ = tx.send(Change::Resync);
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ended = loop {
        tokio::select! {
            payload = msg_rx.recv() => match payload {
                Some(p) => {
                    if let Some(change) = parse(&p) {
                        let _ = tx.send(change);
                    }
                }
                None => break Ok(()),
            },
            _ = beat.tick() => {
                match tokio::time::timeout(HEARTBEAT_TIMEOUT, client.simple_query("")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => break Err(e),
                    Err(_) => {
                        tracing::warn!("the notification connection to {} stopped answering", target.display);
                        break Ok(());
                    }
                }
            }
        }
    };
    drop(client);
    driver.abort();
    ended
}

/// Follows the changes for a cache: what the admission cache of `tok serve`
/// asks before each use on PostgreSQL.
pub struct Follower {
    listener: Listener,
    rx: Mutex<broadcast::Receiver<Change>>,
}

/// Notifications are not being heard: read the store instead of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not hearing the store's change notifications; reading through to the database")]
pub struct NotLive;

impl Follower {
    pub fn start(target: Target) -> Follower {
        let listener = Listener::start(target);
        let rx = Mutex::new(listener.subscribe());
        Follower { listener, rx }
    }

    pub fn is_live(&self) -> bool {
        self.listener.is_live()
    }

    /// Hands `apply` every change heard so far (`Resync` when some may have
    /// been missed). Fails, after applying what there was, when the
    /// notifications were not heard throughout: then nothing cached may be
    /// trusted, and the caller reads through.
    pub fn catch_up(&self, mut apply: impl FnMut(Change)) -> Result<(), NotLive> {
        let before = self.listener.live.get();
        let mut rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match rx.try_recv() {
                Ok(c) => apply(c),
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(broadcast::error::TryRecvError::Lagged(_)) => apply(Change::Resync),
                Err(broadcast::error::TryRecvError::Closed) => {
                    apply(Change::Resync);
                    return Err(NotLive);
                }
            }
        }
        let after = self.listener.live.get();
        if before % 2 == 1 && before == after {
            Ok(())
        } else {
            apply(Change::Resync);
            Err(NotLive)
        }
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

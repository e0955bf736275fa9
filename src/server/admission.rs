//! Admission: may this secret pass, with these scopes? One answer for the
//! enforcing proxy and the forward-auth endpoint, so use limits, revocation,
//! expiry, scopes and audit mean the same for both.
//!
//! The hot path asks the [`Cache`] and touches the store only when it must:
//! 1. the change source catches the cache up ([`SqliteFollower`]: one
//!    `PRAGMA data_version` on a connection of its own, and only when that
//!    moved, one indexed read of the change log), so a revoke committed by any
//!    process before the request arrived is applied before the cache is read;
//! 2. a cached answer decides on the spot: the token row is judged against the
//!    clock on each request, so expiry holds to the second;
//! 3. a miss reads the token by its secret's hash on the blocking pool and keeps
//!    the answer (positive or negative);
//! 4. a token with a use limit spends its use in the store, in one conditional
//!    `UPDATE ... RETURNING`, so limits stay exact across processes.
//!
//! Steps 1 and 2 run on the request's own task: a token seen before costs no
//! trip to the blocking pool. See docs/proxy.md for why each guarantee holds.

use super::cache::{Bounds, Cache, Change, Freshness, Hit};
use super::dpop::{Replay, Unbound};
use super::limiter::{Fields, Grant, Limiter};
use super::metrics::{StoreOp, METRICS};
use crate::dpop::Proof;
use crate::limits::Over;
use crate::model::{State, Token};
use crate::secret::Secret;
use crate::store::any::AnyStore;
use crate::store::backend::{self, Backend};
use crate::store::postgres::notify::{self, Follower};
use crate::store::{Refusal, Store, StoreError};
use chrono::{DateTime, Utc};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What admission decided.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Let through; a use-limited token has spent its use, a quota its share.
    Admitted(Arc<Token>, Grant),
    /// Valid, but presented from outside its `--allow-ip` ranges; nothing was spent.
    Elsewhere(Arc<Token>),
    /// Usable, but over its rate or quota (429); nothing was spent.
    Limited(Arc<Token>, Over, Fields),
    /// Not usable: unknown, expired, revoked or used up; with the token's id
    /// when the secret is known, for the audit trail.
    Refused(Refusal, Option<String>),
    /// Usable, but without a needed scope; no use was spent.
    Forbidden(Arc<Token>),
    /// Valid, but its DPoP binding and the request's proof do not go
    /// together (`server::dpop`); nothing was spent.
    Unbound(Arc<Token>, Unbound),
}

pub struct Admitter {
    store: Arc<AnyStore>,
    cache: Cache,
    fresh: Box<dyn Freshness>,
    limiter: Arc<Limiter>,
    replay: Replay,
}

impl Admitter {
    /// Admission over `store`, following its changes: SQLite's commits from
    /// any process, or PostgreSQL's notifications from every node.
    pub fn new(store: Arc<AnyStore>, bounds: Bounds) -> Result<Admitter, StoreError> {
        let fresh: Box<dyn Freshness> = match &*store {
            AnyStore::Sqlite(s) => Box::new(SqliteFollower::open(s.dir())?),
            AnyStore::Postgres(p) => Box::new(PgFollower(Follower::start(p.target().clone()))),
        };
        Ok(Admitter {
            store,
            cache: Cache::new(bounds),
            fresh,
            limiter: Arc::new(Limiter::default()),
            replay: Replay::default(),
        })
    }

    /// The rate and quota counts, for the task that audits refusals.
    pub fn limiter(&self) -> Arc<Limiter> {
        Arc::clone(&self.limiter)
    }

    /// Decides on `secret` for a request from `client` that needs the scopes
    /// `needed` and came with the verified DPoP `proof`, at `now`.
    pub async fn admit(
        &self,
        secret: Secret,
        needed: &[String],
        client: IpAddr,
        proof: Option<&Proof>,
        now: DateTime<Utc>,
    ) -> Result<Verdict, backend::Error> {
        if secret.validate().is_err() {
            return Ok(Verdict::Refused(Refusal::Unknown, None));
        }
        let key = secret.hash();
        // A cache that cannot be brought up to date is not used: read the store.
        let fresh = match self.fresh.catch_up(&self.cache) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not follow the store's changes; reading the store");
                false
            }
        };
        let hit = if fresh {
            self.cache.get(&key)
        } else {
            Hit::Miss
        };
        if matches!(hit, Hit::Miss) {
            METRICS.cache_misses.inc();
        } else {
            METRICS.cache_hits.inc();
        }
        let token = match hit {
            Hit::Known(t) => t,
            Hit::Unknown => return Ok(Verdict::Refused(Refusal::Unknown, None)),
            Hit::Miss => {
                let epoch = self.cache.epoch();
                let started = std::time::Instant::now();
                let found = self.store.lookup(&secret, now).await;
                METRICS.store(StoreOp::Lookup).observe(started.elapsed());
                let found = found
                    .inspect_err(|_| METRICS.store_errors.inc())?
                    .map(Arc::new);
                if fresh {
                    self.cache.insert(epoch, key, found.clone());
                }
                match found {
                    Some(t) => t,
                    None => return Ok(Verdict::Refused(Refusal::Unknown, None)),
                }
            }
        };
        match token.state_at(now) {
            State::Active => {}
            State::Expired => {
                return Ok(Verdict::Refused(Refusal::Expired, Some(token.id.clone())))
            }
            State::Revoked => {
                return Ok(Verdict::Refused(Refusal::Revoked, Some(token.id.clone())))
            }
            State::Exhausted => {
                return Ok(Verdict::Refused(Refusal::Exhausted, Some(token.id.clone())))
            }
        }
        if !token.allow_ip.is_empty() && !crate::limits::in_ranges(&token.allow_ip, client) {
            return Ok(Verdict::Elsewhere(token));
        }
        if let Err(why) = super::dpop::bind(&token, proof, &self.replay, now.timestamp()) {
            return Ok(Verdict::Unbound(token, why));
        }
        if !needed.iter().all(|n| token.scopes.contains(n)) {
            return Ok(Verdict::Forbidden(token));
        }
        let mut grant = Grant::default();
        if token.rate.is_some() || token.quota.is_some() {
            // A node meets a quota token's window once: what the store holds
            // for it (written by this or another node, before a restart say).
            if let Some(window) = self.limiter.needs_quota_use(&token, now) {
                let id = token.id.clone();
                let used = self
                    .store
                    .quota_used(&id, window)
                    .await
                    .inspect_err(|_| METRICS.store_errors.inc())?;
                self.limiter.seed_quota(&token.id, window, used);
            }
            match self.limiter.check(&token, now) {
                Ok(g) => grant = g,
                Err((over, fields)) => return Ok(Verdict::Limited(token, over, fields)),
            }
        }
        if token.max_uses.is_none() {
            return Ok(Verdict::Admitted(token, grant));
        }
        let id = token.id.clone();
        let started = std::time::Instant::now();
        let spent = backend::spend(&*self.store, &id, now).await;
        METRICS.store(StoreOp::Spend).observe(started.elapsed());
        Ok(match spent.inspect_err(|_| METRICS.store_errors.inc())? {
            Ok(_) => Verdict::Admitted(token, grant),
            Err(r) => {
                if let Some(w) = grant.quota_window {
                    self.limiter.refund(&token.id, w);
                }
                Verdict::Refused(r, Some(token.id.clone()))
            }
        })
    }

    /// Applies a change this process made or heard of.
    pub fn forget(&self, change: &Change) {
        self.cache.forget(change);
    }
}

/// Follows PostgreSQL's change notifications from every node (see
/// `store::postgres::notify`). While they are not heard, every request reads
/// through to the database.
pub struct PgFollower(Follower);

impl Freshness for PgFollower {
    fn catch_up(&self, cache: &Cache) -> Result<(), StoreError> {
        self.0
            .catch_up(|c| match c {
                notify::Change::Token { id, .. } => cache.forget(&Change::Token(id)),
                notify::Change::Resync => cache.forget(&Change::All),
            })
            .map_err(|e| StoreError::Task(e.to_string()))
    }
}

/// Follows the SQLite store's commits, from any process, through a connection
/// of its own (see `store::changes`).
pub struct SqliteFollower {
    state: Mutex<Following>,
}

struct Following {
    store: Store,
    version: i64,
    seq: i64,
}

impl SqliteFollower {
    pub fn open(dir: &Path) -> Result<SqliteFollower, StoreError> {
        let store = Store::open(dir)?;
        let version = store.data_version()?;
        let seq = store.last_change()?;
        Ok(SqliteFollower {
            state: Mutex::new(Following {
                store,
                version,
                seq,
            }),
        })
    }
}

impl Freshness for SqliteFollower {
    fn catch_up(&self, cache: &Cache) -> Result<(), StoreError> {
        let mut f = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let result = (|| {
            let version = f.store.data_version()?;
            if version == f.version {
                return Ok(());
            }
            // Read the log after the version: a commit between the two is
            // either in this read or moves the version again.
            let (ids, seq) = f.store.changes_since(f.seq)?;
            for id in ids {
                cache.forget(&Change::Token(id));
            }
            f.version = version;
            f.seq = seq;
            Ok(())
        })();
        if result.is_err() {
            cache.forget(&Change::All);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewToken;
    use chrono::TimeDelta;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn setup() -> (tempfile::TempDir, Admitter, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = AnyStore::Sqlite(crate::store::sqlite::Sqlite::open(dir.path()).unwrap());
        let a = Admitter::new(Arc::new(store), Bounds::default()).unwrap();
        let other = Store::open(dir.path()).unwrap();
        (dir, a, other)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cached_answers_follow_other_connections_commits() {
        let (_d, a, other) = setup();
        let now = Utc::now();
        let c = other.create(&NewToken::default(), None, now).unwrap();
        let s = || Secret::new(c.secret.expose());
        assert!(matches!(
            a.admit(s(), &[], LOCAL, None, now).await.unwrap(),
            Verdict::Admitted(..)
        ));
        assert_eq!(a.cache.len().0, 1, "cached");
        other.revoke(&c.token.id, None, None, now).unwrap();
        assert!(matches!(
            a.admit(s(), &[], LOCAL, None, now).await.unwrap(),
            Verdict::Refused(Refusal::Revoked, _)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expiry_is_judged_per_request_from_the_cached_row() {
        let (_d, a, other) = setup();
        let now = Utc::now();
        let new = NewToken {
            expires_at: Some(now + TimeDelta::seconds(1)),
            ..NewToken::default()
        };
        let c = other.create(&new, None, now).unwrap();
        let s = || Secret::new(c.secret.expose());
        assert!(matches!(
            a.admit(s(), &[], LOCAL, None, now).await.unwrap(),
            Verdict::Admitted(..)
        ));
        let at_expiry = now + TimeDelta::seconds(1);
        assert!(matches!(
            a.admit(s(), &[], LOCAL, None, at_expiry).await.unwrap(),
            Verdict::Refused(Refusal::Expired, _)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_secrets_are_remembered_until_a_token_changes() {
        let (_d, a, other) = setup();
        let now = Utc::now();
        let wrong = Secret::generate();
        let w = || Secret::new(wrong.expose());
        assert!(matches!(
            a.admit(w(), &[], LOCAL, None, now).await.unwrap(),
            Verdict::Refused(Refusal::Unknown, _)
        ));
        assert_eq!(a.cache.len(), (0, 1));
        other.create(&NewToken::default(), None, now).unwrap();
        a.admit(w(), &[], LOCAL, None, now).await.unwrap();
        // The create was applied (dropping the entry), then the read kept it again.
        assert_eq!(a.cache.len(), (0, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn use_limits_are_spent_in_the_store_even_when_cached() {
        let (_d, a, other) = setup();
        let now = Utc::now();
        let new = NewToken {
            max_uses: Some(2),
            scopes: vec!["x".into()],
            ..NewToken::default()
        };
        let c = other.create(&new, None, now).unwrap();
        let s = || Secret::new(c.secret.expose());
        let y = ["y".to_string()];
        assert!(matches!(
            a.admit(s(), &y, LOCAL, None, now).await.unwrap(),
            Verdict::Forbidden(_)
        ));
        for _ in 0..2 {
            assert!(matches!(
                a.admit(s(), &[], LOCAL, None, now).await.unwrap(),
                Verdict::Admitted(..)
            ));
        }
        assert!(matches!(
            a.admit(s(), &[], LOCAL, None, now).await.unwrap(),
            Verdict::Refused(Refusal::Exhausted, _)
        ));
        assert_eq!(other.get(&c.token.id, now).unwrap().unwrap().uses, 2);
    }
}

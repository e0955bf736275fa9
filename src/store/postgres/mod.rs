//! The PostgreSQL store: several `tok serve` nodes share one set of tokens,
//! one audit trail, exact use limits, and hear of each other's revokes.
//!
//! tokio-postgres with a deadpool-postgres pool; no ORM. Rooms: `target`
//! (URL, password, TLS), `schema` (migrations under an advisory lock),
//! `tokens`, `audit`, `notify` (LISTEN/NOTIFY to other nodes). Admission is
//! the shared algorithm in `backend::admit` over this store's `spend`, one
//! conditional UPDATE.
//!
//! While PostgreSQL cannot be reached every call fails with
//! `Error::Unavailable` at once (callers answer 503, fail closed), and the
//! pool is tried again after a backoff that doubles from 100 ms to 5 s.
//!
//! Followed: tokio-postgres and deadpool-postgres docs (docs.rs), PostgreSQL
//! 15 docs ("Connection URIs", "The Password File", "Advisory Locks",
//! "NOTIFY", "LISTEN", "INSERT ... ON CONFLICT").

mod audit;
pub mod notify;
mod schema;
pub mod target;
mod tls;
mod tokens;

use super::backend::{Error, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::sync::Mutex;
use std::time::{Duration, Instant};
pub use target::{is_url, Target};

/// Connections per node; the proxy's hot path needs few at a time.
const POOL_SIZE: usize = 16;
/// How long a call waits for a free connection before it is refused.
const WAIT_MAX: Duration = Duration::from_secs(10);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub struct PgStore {
    pool: Pool,
    target: Target,
    node: String,
    health: Mutex<Health>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target.display)
            .field("node", &self.node)
            .finish()
    }
}

#[derive(Default)]
struct Health {
    failures: u32,
    next_try: Option<Instant>,
}

impl PgStore {
    /// Connects, and migrates the database (creating tok's tables if it is
    /// empty). `node` names this node in the audit entries it writes.
    pub async fn open(target: Target, node: String) -> Result<PgStore> {
        let store = PgStore::connect(target, node)?;
        let mut client = store.client().await?;
        schema::migrate(&mut client, &store.target.display)
            .await
            .map_err(|e| store.failed(e))?;
        Ok(store)
    }

    fn connect(target: Target, node: String) -> Result<PgStore> {
        let mc = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &target.tls {
            target::Tls::Disable => {
                Manager::from_config(target.config.clone(), tokio_postgres::NoTls, mc)
            }
            target::Tls::Verify(c) => {
                Manager::from_config(target.config.clone(), tls::Rustls(c.clone()), mc)
            }
        };
        let timeout = Some(Duration::from_secs(10));
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT_MAX))
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(PgStore {
            pool,
            target,
            node,
            health: Mutex::new(Health::default()),
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// A pooled connection, or `Unavailable` at once while backing off.
    async fn client(&self) -> Result<deadpool_postgres::Object> {
        if let Some(wait) = self.backing_off() {
            return Err(self.unavailable("reconnecting after a failure".into(), wait));
        }
        match self.pool.get().await {
            Ok(c) => {
                self.health().failures = 0;
                Ok(c)
            }
            // Every connection busy: this node is overloaded, the database
            // is not down; refuse this call without backing off. Slow to open one more while others work: overloaded too.
            Err(e @ deadpool_postgres::PoolError::Timeout(t))
                if matches!(t, deadpool_postgres::TimeoutType::Wait)
                    || self.pool.status().size > 0 =>
            {
                Err(self.unavailable(e.to_string(), Duration::ZERO))
            }
            Err(e) => Err(self.failed(Error::Unavailable {
                target: String::new(),
                message: source_chain(&e),
                retry_after: Duration::ZERO,
            })),
        }
    }

    /// Whether the last attempt to reach PostgreSQL worked.
    pub fn is_up(&self) -> bool {
        self.health().failures == 0
    }

    /// One round trip, for readiness: the database answers, and its schema
    /// is the one this tok knows (a node started before a newer one migrated
    /// it is not ready).
    pub async fn schema_check(&self) -> Result<()> {
        let c = self.client().await?;
        let found: i32 = c
            .query_one("SELECT coalesce(max(version), 0) FROM tok_schema", &[])
            .await
            .map_err(|e| self.failed(pg(e)))?
            .get(0);
        let known = schema::MIGRATIONS.len();
        if found as usize != known {
            return Err(Error::Postgres(format!(
                "the store's schema is at version {found}, this tok knows {known}"
            )));
        }
        Ok(())
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn backing_off(&self) -> Option<Duration> {
        let h = self.health();
        let wait = h.next_try?.checked_duration_since(Instant::now())?;
        Some(wait)
    }

    /// Records a failure when `e` says the database is unreachable, and
    /// fills in where and how long to wait.
    fn failed(&self, e: Error) -> Error {
        match e {
            Error::Unavailable { message, .. } => {
                tracing::warn!("{}: {message}", self.target.display);
                let wait = {
                    let mut h = self.health();
                    h.failures = h.failures.saturating_add(1);
                    let wait = BACKOFF_FIRST
                        .saturating_mul(1 << (h.failures - 1).min(16))
                        .min(BACKOFF_MAX);
                    h.next_try = Some(Instant::now() + wait);
                    wait
                };
                self.unavailable(message, wait)
            }
            other => other,
        }
    }

    fn unavailable(&self, message: String, wait: Duration) -> Error {
        Error::Unavailable {
            target: self.target.display.clone(),
            message,
            // Retry-After is in whole seconds; never tell a client 0.
            retry_after: Duration::from_secs(wait.as_secs().max(1)),
        }
    }
}

/// Classifies a driver error: lost connections (closed, or an I/O error
/// underneath) and a server shutting down or refusing connections are
/// `Unavailable`; the rest (a statement the server refused, a value that
/// does not convert) are errors, which no backoff would cure.
pub(crate) fn pg(e: tokio_postgres::Error) -> Error {
    let unavailable = match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            // 08: connection exception; 57P: operator intervention
            // (shutdown, crash); 53300: too many connections.
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }
        None => e.is_closed() || io_underneath(&e),
    };
    let message = source_chain(&e);
    if unavailable {
        Error::Unavailable {
            target: String::new(),
            message,
            retry_after: Duration::ZERO,
        }
    } else {
        Error::Postgres(message)
    }
}

fn io_underneath(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = e.source();
    while let Some(cause) = next {
        if cause.is::<std::io::Error>() {
            return true;
        }
        next = cause.source();
    }
    false
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        next = cause.source();
    }
    s
}

/// This machine's host name: the default node name in audit entries.
pub fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "tok".to_string())
}

use super::audit::{AuditFilter, Entry, Retention};
use super::backend::{Backend, Counts, StateCounts, TokenRow};
use super::quota::QuotaUse;
use super::Cursor;
use crate::model::{Created, Filter, NewToken, RevokeOutcome, Token};
use crate::secret::Secret;
use chrono::{DateTime, Utc};

impl Backend for PgStore {
    fn describe(&self) -> String {
        self.target.display.clone()
    }
    async fn create(
        &self,
        new: &NewToken,
        by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Created> {
        self.create_token(new, by, now).await
    }
    async fn is_position(&self, c: &Cursor) -> Result<bool> {
        PgStore::is_position(self, c).await
    }
    async fn list(
        &self,
        filter: &Filter,
        after: Option<&Cursor>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Token>> {
        self.list_tokens(filter, after, now).await
    }
    async fn get(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Token>> {
        self.get_token(id, now).await
    }
    async fn lookup(&self, secret: &Secret, now: DateTime<Utc>) -> Result<Option<Token>> {
        self.lookup_token(secret, now).await
    }
    async fn revoke(
        &self,
        id: &str,
        by: Option<&str>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Token, RevokeOutcome)> {
        self.revoke_token(id, by, reason, now).await
    }
    async fn rotate(
        &self,
        id: &str,
        grace: Option<u64>,
        by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Created, Token)> {
        self.rotate_token(id, grace, by, now).await
    }
    async fn spend(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Token>> {
        self.spend_use(id, now).await
    }
    async fn quota_used(&self, id: &str, window: i64) -> Result<u64> {
        PgStore::quota_used(self, id, window).await
    }
    async fn not_ready(&self) -> Option<String> {
        self.schema_check().await.err().map(|e| e.to_string())
    }
    async fn count_by_state(&self, now: DateTime<Utc>) -> Result<StateCounts> {
        PgStore::count_by_state(self, now).await
    }
    async fn write_batch(
        &self,
        entries: &[Entry],
        uses: &[(String, u64, DateTime<Utc>)],
        quota: &QuotaUse,
    ) -> Result<()> {
        self.write_audit_batch(entries, uses, quota).await
    }
    async fn audit(&self, filter: &AuditFilter, max: Option<u64>) -> Result<Vec<Entry>> {
        self.read_audit(filter, max).await
    }
    async fn prune_audit(&self, r: Retention, now: DateTime<Utc>) -> Result<usize> {
        self.prune(r, now).await
    }
    async fn counts(&self) -> Result<Counts> {
        let (tokens, audit) = self.count_rows().await?;
        Ok(Counts { tokens, audit })
    }
    async fn token_rows(&self, after: Option<&str>, limit: u32) -> Result<Vec<TokenRow>> {
        self.token_rows_after(after, limit).await
    }
    async fn put_token_rows(&self, rows: &[TokenRow]) -> Result<u64> {
        self.put_tokens(rows).await
    }
    async fn audit_rows(&self, after: i64, limit: u32) -> Result<Vec<Entry>> {
        self.audit_rows_after(after, limit).await
    }
    async fn put_audit_rows(&self, rows: &[Entry]) -> Result<u64> {
        self.put_audit(rows).await
    }
}

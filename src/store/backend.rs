//! The store interface: what `tok serve`, the local driver and `tok store copy`
//! ask of a token store, whichever engine keeps it. Two backends implement it:
//! SQLite (`super::sqlite`, the embedded default) and PostgreSQL
//! (`super::postgres`, for several nodes sharing one store).
//!
//! The rooms are the same on both: opening and migrations (each backend's
//! constructor), tokens, admission, audit, and the raw rows `tok store copy`
//! moves (hashes only). Pagination is the caller's: `list` takes the position
//! after which to start and a limit in the filter, nothing more.

use super::audit::{AuditFilter, Entry, Retention};
use super::quota::QuotaUse;
use super::{Admission, Cursor, Refusal, Spend, StoreError};
use crate::error::Kind;
use crate::model::{Created, Filter, NewToken, RevokeOutcome, State, Token};
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database cannot be reached now; callers fail closed (HTTP 503).
    #[error("the token store at {target} is unavailable: {message}")]
    Unavailable {
        target: String,
        message: String,
        retry_after: Duration,
    },
    #[error("the store URL is not usable: {0}")]
    Config(String),
    #[error("the database at {target} was set up by a newer tok (schema {found}, this tok knows {known})")]
    TooNew {
        target: String,
        found: i64,
        known: usize,
    },
    #[error("{target} already holds {tokens} tokens and {audit} audit entries")]
    NotEmpty {
        target: String,
        tokens: u64,
        audit: u64,
    },
    #[error("the copy to {target} does not verify: {message}")]
    CopyMismatch { target: String, message: String },
    #[error("PostgreSQL error: {0}")]
    Postgres(String),
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::Store(e) => e.kind(),
            Error::Config(_) | Error::NotEmpty { .. } => Kind::Usage,
            _ => Kind::Failure,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Store(e) => e.hint(),
            Error::Unavailable { .. } => Some(
                "check that PostgreSQL is running and reachable; tok retries with backoff".into(),
            ),
            Error::Config(_) => Some(
                "the form is postgres://USER@HOST:PORT/DB?sslmode=verify-full; the password \
                 comes from PGPASSWORD, a .pgpass file, or a URL in TOK_STORE"
                    .into(),
            ),
            Error::TooNew { .. } => Some("upgrade tok on this node".into()),
            Error::NotEmpty { .. } => {
                Some("pass --force to copy into it anyway (rows already there are kept)".into())
            }
            _ => None,
        }
    }

    /// How long a client should wait before trying again, when unavailable.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Unavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One token as stored: the hash of its secret instead of the secret, the
/// id it was rotated from, and its quota's use (window start in ms, uses).
/// What `tok store copy` moves.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    pub token: Token,
    pub secret_hash: Vec<u8>,
    pub rotated_from: Option<String>,
    pub quota_use: Option<(i64, u64)>,
}

/// Tokens per state (active, expired, revoked, exhausted), for a gauge.
pub type StateCounts = Vec<(&'static str, u64)>;

/// How many rows a store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub tokens: u64,
    pub audit: u64,
}

/// The store interface. Futures are `Send`, so handlers can await them on any
/// worker thread.
pub trait Backend: Send + Sync {
    /// What to call this store in messages: a path, or a URL without password.
    fn describe(&self) -> String;

    // -- tokens --

    /// Inserts a new token (and its audit entry) and returns it with its secret.
    fn create(
        &self,
        new: &NewToken,
        created_by: Option<&str>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Created>> + Send;

    /// Whether `c` is the position of a token that exists: every cursor the
    /// server gives out is (tokens are never deleted), so any other is forged.
    fn is_position(&self, c: &Cursor) -> impl Future<Output = Result<bool>> + Send;

    /// Tokens matching `filter` in (created_at, id) order, after `after`.
    fn list(
        &self,
        filter: &Filter,
        after: Option<&Cursor>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Token>>> + Send;

    /// The token with exactly this id.
    fn get(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Token>>> + Send;

    /// The token whose secret hashes to the secret's hash, whatever its state.
    fn lookup(
        &self,
        secret: &Secret,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Token>>> + Send;

    /// Revokes `id` (exact). Revoking a revoked token succeeds and says so.
    fn revoke(
        &self,
        id: &str,
        by: Option<&str>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(Token, RevokeOutcome)>> + Send;

    /// Makes a successor with the old token's settings; revokes the old one
    /// now, or with `grace` lets it expire then. One transaction.
    fn rotate(
        &self,
        id: &str,
        grace: Option<u64>,
        by: Option<&str>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(Created, Token)>> + Send;

    // -- admission --

    /// Spends one use of `id` in one conditional UPDATE (still active, under
    /// its limit) and returns the token after it, or None when nothing was
    /// spent: use limits stay exact under concurrency, across nodes.
    fn spend(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Token>>> + Send;

    /// How much of token `id`'s quota is used in the window starting at
    /// `window` (ms): 0 when nothing was recorded for that window.
    fn quota_used(&self, id: &str, window: i64) -> impl Future<Output = Result<u64>> + Send;

    // -- operators --

    /// Whether the store can be reached now and its schema is this tok's:
    /// None when ready, else why not.
    fn not_ready(&self) -> impl Future<Output = Option<String>> + Send;

    /// How many tokens are in each state at `now`.
    fn count_by_state(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<StateCounts>> + Send;

    // -- audit --

    /// Appends entries, counts batched uses of unlimited tokens and adds
    /// quota use (`store::quota`), in one transaction.
    fn write_batch(
        &self,
        entries: &[Entry],
        uses: &[(String, u64, DateTime<Utc>)],
        quota: &QuotaUse,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Matching entries, oldest first; at most `max` of them (the oldest)
    /// when given. (`filter.limit` asks for the newest instead.)
    fn audit(
        &self,
        filter: &AuditFilter,
        max: Option<u64>,
    ) -> impl Future<Output = Result<Vec<Entry>>> + Send;

    /// Deletes entries past the retention; returns how many.
    fn prune_audit(
        &self,
        r: Retention,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<usize>> + Send;

    // -- copy --

    fn counts(&self) -> impl Future<Output = Result<Counts>> + Send;

    /// Up to `limit` token rows after id `after`, in id order.
    fn token_rows(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<TokenRow>>> + Send;

    /// Inserts rows whose id is not there yet; returns how many were new.
    fn put_token_rows(&self, rows: &[TokenRow]) -> impl Future<Output = Result<u64>> + Send;

    /// Up to `limit` audit entries after sequence number `after`, in order.
    fn audit_rows(&self, after: i64, limit: u32)
        -> impl Future<Output = Result<Vec<Entry>>> + Send;

    /// Inserts entries whose sequence number is not there yet, keeping it;
    /// returns how many were new.
    fn put_audit_rows(&self, rows: &[Entry]) -> impl Future<Output = Result<u64>> + Send;
}

/// Checks a presented secret, then `allowed` (scopes, say), and only then
/// spends a use: a request refused for any reason costs the token nothing.
/// Written once over `lookup`, `spend` and `get`, for every backend.
pub async fn admit<B: Backend>(
    b: &B,
    secret: &Secret,
    now: DateTime<Utc>,
    spend: Spend,
    allowed: impl FnOnce(&Token) -> bool,
) -> Result<Admission> {
    if secret.validate().is_err() {
        return Ok(Admission::Refused(Refusal::Unknown));
    }
    let Some(t) = b.lookup(secret, now).await? else {
        return Ok(Admission::Refused(Refusal::Unknown));
    };
    match t.state {
        State::Active => {}
        State::Expired => return Ok(Admission::Refused(Refusal::Expired)),
        State::Revoked => return Ok(Admission::Refused(Refusal::Revoked)),
        State::Exhausted => return Ok(Admission::Refused(Refusal::Exhausted)),
    }
    if !allowed(&t) {
        return Ok(Admission::Forbidden(t));
    }
    let write = match spend {
        Spend::Never => false,
        Spend::Limited => t.max_uses.is_some(),
        Spend::Always => true,
    };
    if !write {
        return Ok(Admission::Admitted(t));
    }
    Ok(match self::spend(b, &t.id, now).await? {
        Ok(t) => Admission::Admitted(t),
        Err(r) => Admission::Refused(r),
    })
}

/// Spends one use of `id`: the token after, or why not (another request took
/// the last use, or a revoke or the expiry landed first).
pub async fn spend<B: Backend>(
    b: &B,
    id: &str,
    now: DateTime<Utc>,
) -> Result<std::result::Result<Token, Refusal>> {
    if let Some(t) = b.spend(id, now).await? {
        return Ok(Ok(t));
    }
    let now_state = b.get(id, now).await?.map(|t| t.state);
    Ok(Err(match now_state {
        Some(State::Revoked) => Refusal::Revoked,
        Some(State::Expired) => Refusal::Expired,
        None => Refusal::Unknown,
        _ => Refusal::Exhausted,
    }))
}

/// The successor `rotate` makes: the old token's name, description, scopes,
/// labels, lifetime, use limit, rate, quota, address ranges and DPoP key, from `now`.
pub fn successor(old: &Token, now: DateTime<Utc>) -> NewToken {
    let lifetime = old.expires_at.map(|e| e - old.created_at);
    NewToken {
        name: old.name.clone(),
        description: old.description.clone(),
        scopes: old.scopes.clone(),
        labels: old.labels.clone(),
        // An expiry from the admin API can be so far out that the same
        // lifetime from now is past chrono's last date: end there.
        expires_at: lifetime.map(|l| {
            now.checked_add_signed(l)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        }),
        max_uses: old.max_uses,
        rate: old.rate,
        quota: old.quota,
        allow_ip: old.allow_ip.clone(),
        cnf: old.cnf.clone(),
    }
}

/// The audit reason of a rotation.
pub fn rotate_reason(new_id: &str, grace: Option<u64>) -> String {
    match grace {
        None => format!("rotated to {new_id}; revoked now"),
        Some(g) => format!("rotated to {new_id}; valid {g}s more"),
    }
}

//! Either backend, chosen at run time from a store spec: a SQLite data
//! directory (or its tok.db), or a postgres:// URL.

use super::audit::{AuditFilter, Entry, Retention};
use super::backend::{Backend, Counts, Result, StateCounts, TokenRow};
use super::postgres::{self, PgStore, Target};
use super::quota::QuotaUse;
use super::sqlite::Sqlite;
use super::Cursor;
use crate::model::{Created, Filter, NewToken, RevokeOutcome, Token};
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

pub enum AnyStore {
    Sqlite(Sqlite),
    Postgres(Box<PgStore>),
}

/// Where a store is, before it is opened.
#[derive(Debug, Clone)]
pub enum Spec {
    Sqlite(PathBuf),
    Postgres(Box<Target>),
}

impl Spec {
    /// Reads a spec. `from_env` says whether it came from the environment,
    /// the only place a URL may carry a password.
    pub fn parse(s: &str, from_env: bool) -> Result<Spec> {
        if postgres::is_url(s) {
            return Ok(Spec::Postgres(Box::new(Target::parse(s, from_env)?)));
        }
        let p = Path::new(s);
        // A tok.db named directly stands for its directory.
        let dir = if p.file_name() == Some(std::ffi::OsStr::new(super::DB_FILE)) && !p.is_dir() {
            p.parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        } else {
            p.to_path_buf()
        };
        Ok(Spec::Sqlite(dir))
    }

    /// Opens (creating and migrating) the store; `node` names this node in
    /// the audit entries it writes to PostgreSQL.
    pub async fn open(self, node: &str) -> Result<AnyStore> {
        Ok(match self {
            Spec::Sqlite(dir) => AnyStore::Sqlite(Sqlite::open(&dir)?),
            Spec::Postgres(t) => {
                AnyStore::Postgres(Box::new(PgStore::open(*t, node.to_string()).await?))
            }
        })
    }
}

/// Calls the same method on whichever backend this is.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            AnyStore::Postgres($s) => {
                let $s: &PgStore = $s;
                $e
            }
        }
    };
}

impl Backend for AnyStore {
    fn describe(&self) -> String {
        each!(self, s => s.describe())
    }
    async fn create(
        &self,
        new: &NewToken,
        by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Created> {
        each!(self, s => s.create(new, by, now).await)
    }
    async fn is_position(&self, c: &Cursor) -> Result<bool> {
        each!(self, s => s.is_position(c).await)
    }
    async fn list(
        &self,
        filter: &Filter,
        after: Option<&Cursor>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Token>> {
        each!(self, s => s.list(filter, after, now).await)
    }
    async fn get(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Token>> {
        each!(self, s => s.get(id, now).await)
    }
    async fn lookup(&self, secret: &Secret, now: DateTime<Utc>) -> Result<Option<Token>> {
        each!(self, s => s.lookup(secret, now).await)
    }
    async fn revoke(
        &self,
        id: &str,
        by: Option<&str>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Token, RevokeOutcome)> {
        each!(self, s => s.revoke(id, by, reason, now).await)
    }
    async fn rotate(
        &self,
        id: &str,
        grace: Option<u64>,
        by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Created, Token)> {
        each!(self, s => s.rotate(id, grace, by, now).await)
    }
    async fn spend(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Token>> {
        each!(self, s => s.spend(id, now).await)
    }
    async fn quota_used(&self, id: &str, window: i64) -> Result<u64> {
        each!(self, s => s.quota_used(id, window).await)
    }
    async fn not_ready(&self) -> Option<String> {
        each!(self, s => s.not_ready().await)
    }
    async fn count_by_state(&self, now: DateTime<Utc>) -> Result<StateCounts> {
        each!(self, s => s.count_by_state(now).await)
    }
    async fn write_batch(
        &self,
        entries: &[Entry],
        uses: &[(String, u64, DateTime<Utc>)],
        quota: &QuotaUse,
    ) -> Result<()> {
        each!(self, s => s.write_batch(entries, uses, quota).await)
    }
    async fn audit(&self, filter: &AuditFilter, max: Option<u64>) -> Result<Vec<Entry>> {
        each!(self, s => s.audit(filter, max).await)
    }
    async fn prune_audit(&self, r: Retention, now: DateTime<Utc>) -> Result<usize> {
        each!(self, s => s.prune_audit(r, now).await)
    }
    async fn counts(&self) -> Result<Counts> {
        each!(self, s => s.counts().await)
    }
    async fn token_rows(&self, after: Option<&str>, limit: u32) -> Result<Vec<TokenRow>> {
        each!(self, s => s.token_rows(after, limit).await)
    }
    async fn put_token_rows(&self, rows: &[TokenRow]) -> Result<u64> {
        each!(self, s => s.put_token_rows(rows).await)
    }
    async fn audit_rows(&self, after: i64, limit: u32) -> Result<Vec<Entry>> {
        each!(self, s => s.audit_rows(after, limit).await)
    }
    async fn put_audit_rows(&self, rows: &[Entry]) -> Result<u64> {
        each!(self, s => s.put_audit_rows(rows).await)
    }
}

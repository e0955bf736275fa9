//! The SQLite backend of the store interface: the embedded `Store` (one
//! synchronous rusqlite connection each) run on tokio's blocking pool, with
//! idle connections kept for the next call.

use super::audit::{AuditFilter, Entry, Retention};
use super::backend::{Backend, Counts, Error, Result, StateCounts, TokenRow};
use super::quota::QuotaUse;
use super::{token_from_row_at, Cursor, Store, StoreError, COLUMNS};
use crate::model::{Created, Filter, NewToken, RevokeOutcome, Token};
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use rusqlite::params;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How many idle connections are kept; more are opened under load.
const IDLE_MAX: usize = 8;

pub struct Sqlite {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    idle: Mutex<Vec<Store>>,
}

impl Sqlite {
    /// Opens (creating and migrating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Sqlite> {
        let first = Store::open(dir)?;
        Ok(Sqlite {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                idle: Mutex::new(vec![first]),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Runs `f` with a connection of its own on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let joined = tokio::task::spawn_blocking(move || {
            let taken = inner.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let store = match taken {
                Some(s) => s,
                None => Store::open(&inner.dir)?,
            };
            let result = f(&store);
            let mut idle = inner.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < IDLE_MAX {
                idle.push(store);
            }
            result
        })
        .await;
        match joined {
            Ok(r) => Ok(r?),
            Err(e) => Err(Error::Store(StoreError::Task(e.to_string()))),
        }
    }
}

/// Why a scan stopped.
enum Stop {
    Full,
    Store(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Store(e)
    }
}

impl Backend for Sqlite {
    fn describe(&self) -> String {
        self.inner.dir.join(super::DB_FILE).display().to_string()
    }
    async fn create(
        &self,
        new: &NewToken,
        by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Created> {
        let (new, by) = (new.clone(), by.map(str::to_string));
        self.run(move |s| s.create(&new, by.as_deref(), now)).await
    }
    async fn is_position(&self, c: &Cursor) -> Result<bool> {
        let c = c.clone();
        self.run(move |s| s.is_position(&c)).await
    }
    async fn list(
        &self,
        filter: &Filter,
        after: Option<&Cursor>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Token>> {
        let (filter, after) = (filter.clone(), after.cloned());
        self.run(move |s| {
            let mut found = Vec::new();
            s.list::<StoreError>(&filter, after.as_ref(), now, &mut |t| {
                found.push(t);
                Ok(())
            })?;
            Ok(found)
        })
        .await
    }
    async fn get(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Token>> {
        let id = id.to_string();
        self.run(move |s| s.get(&id, now)).await
    }
    async fn lookup(&self, secret: &Secret, now: DateTime<Utc>) -> Result<Option<Token>> {
        let secret = secret.clone();
        self.run(move |s| s.lookup(&secret, now)).await
    }
    async fn revoke(
        &self,
        id: &str,
        by: Option<&str>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Token, RevokeOutcome)> {
        let (id, by, reason) = (
            id.to_string(),
            by.map(str::to_string),
            reason.map(str::to_string),
        );
        self.run(move |s| s.revoke(&id, by.as_deref(), reason.as_deref(), now))
            .await
    }
    async fn rotate(
        &self,
        id: &str,
        grace: Option<u64>,
        by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Created, Token)> {
        let (id, by) = (id.to_string(), by.map(str::to_string));
        self.run(move |s| s.rotate(&id, grace, by.as_deref(), now))
            .await
    }
    async fn spend(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Token>> {
        let id = id.to_string();
        self.run(move |s| match s.spend(&id, now)? {
            Ok(_) => s.get(&id, now),
            Err(_) => Ok(None),
        })
        .await
    }
    async fn quota_used(&self, id: &str, window: i64) -> Result<u64> {
        let id = id.to_string();
        self.run(move |s| s.quota_used(&id, window)).await
    }
    async fn not_ready(&self) -> Option<String> {
        // Opened afresh (never created), so a store that went away is seen
        // as gone.
        let dir = self.inner.dir.clone();
        match tokio::task::spawn_blocking(move || super::probe::probe(&dir)).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("the store check did not finish: {e}")),
        }
    }
    async fn count_by_state(&self, now: DateTime<Utc>) -> Result<StateCounts> {
        self.run(move |s| s.count_by_state(now)).await
    }
    async fn write_batch(
        &self,
        entries: &[Entry],
        uses: &[(String, u64, DateTime<Utc>)],
        quota: &QuotaUse,
    ) -> Result<()> {
        let (entries, uses, quota) = (entries.to_vec(), uses.to_vec(), quota.to_vec());
        self.run(move |s| s.write_batch(&entries, &uses, &quota))
            .await
    }
    async fn audit(&self, filter: &AuditFilter, max: Option<u64>) -> Result<Vec<Entry>> {
        let filter = filter.clone();
        self.run(move |s| {
            let mut found = Vec::new();
            // A full page ends the scan early; that stop is not an error.
            let full = |n: usize| max.is_some_and(|m| n as u64 >= m);
            let scan = s.audit::<Stop>(&filter, &mut |e| {
                if full(found.len()) {
                    return Err(Stop::Full);
                }
                found.push(e);
                Ok(())
            });
            match scan {
                Ok(()) | Err(Stop::Full) => Ok(found),
                Err(Stop::Store(e)) => Err(e),
            }
        })
        .await
    }
    async fn prune_audit(&self, r: Retention, now: DateTime<Utc>) -> Result<usize> {
        self.run(move |s| s.prune_audit(r, now)).await
    }
    async fn counts(&self) -> Result<Counts> {
        self.run(|s| {
            let (tokens, audit): (i64, i64) = s.conn.query_row(
                "SELECT (SELECT count(*) FROM tokens), (SELECT count(*) FROM audit)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(Counts {
                tokens: tokens.max(0) as u64,
                audit: audit.max(0) as u64,
            })
        })
        .await
    }
    async fn token_rows(&self, after: Option<&str>, limit: u32) -> Result<Vec<TokenRow>> {
        let after = after.map(str::to_string);
        self.run(move |s| {
            let now = Utc::now();
            let mut stmt = s.conn.prepare(&format!(
                "SELECT secret_hash, rotated_from, q.window_start, q.used, {COLUMNS}
                 FROM tokens LEFT JOIN quota_use AS q ON q.token_id = tokens.id
                 WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![after, limit], |r| {
                let window: Option<i64> = r.get(2)?;
                let used: Option<i64> = r.get(3)?;
                Ok(TokenRow {
                    secret_hash: r.get(0)?,
                    rotated_from: r.get(1)?,
                    quota_use: window.zip(used).map(|(w, u)| (w, u.max(0) as u64)),
                    token: token_from_row_at(r, 4, now)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
    async fn put_token_rows(&self, rows: &[TokenRow]) -> Result<u64> {
        let rows = rows.to_vec();
        self.run(move |s| {
            s.immediate(|c| {
                let mut stmt = c.prepare(
                    "INSERT OR IGNORE INTO tokens (id, secret_hash, fingerprint, name,
                        description, scopes, labels, created_at, created_by, expires_at,
                        max_uses, uses, last_used_at, revoked_at, revoked_by, revoke_reason,
                        rotated_from, limits)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                        ?16, ?17, ?18)",
                )?;
                let mut quota = c.prepare(
                    "INSERT OR IGNORE INTO quota_use (token_id, window_start, used)
                     VALUES (?1, ?2, ?3)",
                )?;
                let mut added = 0u64;
                for row in &rows {
                    let t = &row.token;
                    let ms = |d: Option<DateTime<Utc>>| d.map(|d| d.timestamp_millis());
                    added += stmt.execute(params![
                        t.id,
                        row.secret_hash,
                        t.fingerprint,
                        t.name,
                        t.description,
                        serde_json::to_string(&t.scopes).expect("strings serialize"),
                        serde_json::to_string(&t.labels).expect("strings serialize"),
                        t.created_at.timestamp_millis(),
                        t.created_by,
                        ms(t.expires_at),
                        t.max_uses.map(super::clamp_i64),
                        super::clamp_i64(t.uses),
                        ms(t.last_used_at),
                        ms(t.revoked_at),
                        t.revoked_by,
                        t.revoke_reason,
                        row.rotated_from,
                        super::quota::token_limits_json(t),
                    ])? as u64;
                    if let Some((window, used)) = row.quota_use {
                        quota.execute(params![t.id, window, super::clamp_i64(used)])?;
                    }
                }
                Ok(added)
            })
        })
        .await
    }
    async fn audit_rows(&self, after: i64, limit: u32) -> Result<Vec<Entry>> {
        self.run(move |s| {
            let mut stmt = s.conn.prepare(
                "SELECT seq, at, event, token_id, actor, method, path, client, decision, reason,
                    upstream_status, latency_ms, count, request_id
                 FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], |r| {
                Ok(Entry {
                    seq: r.get(0)?,
                    at: super::from_ms(r.get(1)?).unwrap_or_default(),
                    event: serde_json::from_value(serde_json::Value::String(r.get(2)?))
                        .unwrap_or(super::audit::Event::Request),
                    token_id: r.get(3)?,
                    actor: r.get(4)?,
                    method: r.get(5)?,
                    path: r.get(6)?,
                    client: r.get(7)?,
                    decision: r
                        .get::<_, Option<String>>(8)?
                        .and_then(|d| serde_json::from_value(serde_json::Value::String(d)).ok()),
                    reason: r.get(9)?,
                    upstream_status: r.get::<_, Option<i64>>(10)?.map(|v| v as u16),
                    latency_ms: r.get::<_, Option<i64>>(11)?.map(|v| v.max(0) as u64),
                    count: r.get::<_, i64>(12)?.max(1) as u64,
                    request_id: r.get(13)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
    async fn put_audit_rows(&self, rows: &[Entry]) -> Result<u64> {
        let rows = rows.to_vec();
        self.run(move |s| {
            s.immediate(|c| {
                let mut added = 0u64;
                for e in &rows {
                    added += super::audit::put(c, e, true)? as u64;
                }
                Ok(added)
            })
        })
        .await
    }
}

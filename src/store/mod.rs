//! The SQLite store behind the `local` driver and `tok serve`.
//!
//! One file, `tok.db`, 0600 in a 0700 directory; WAL mode with a busy timeout so
//! that many tok processes can write at once; `synchronous=FULL` so that a create
//! or revoke that returned is on disk. Only SHA-256 hashes of secrets are kept.

pub mod any;
pub mod audit;
pub mod backend;
pub mod changes;
pub mod copy;
pub mod postgres;
pub mod probe;
pub mod quota;
mod schema;
pub mod sqlite;

use crate::error::Kind;
use crate::model::{Created, Filter, NewToken, RevokeOutcome, State, StateFilter, Token};
use crate::secret::{self, Secret};
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, ToSql, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DB_FILE: &str = "tok.db";
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Length of the random part of an id (`tk_` + this many base36 characters).
pub const ID_LEN: usize = 12;
pub const ID_PREFIX: &str = "tk_";

/// Whether `s` is a token id of this store or a prefix of one (`tk_` optional).
pub fn looks_like_id(s: &str) -> bool {
    let body = s.strip_prefix(ID_PREFIX).unwrap_or(s);
    !body.is_empty() && body.len() <= ID_LEN && body.chars().all(|c| c.is_ascii_alphanumeric())
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not open the token store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the token store at {path} is not a tok database or is damaged: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("the token store at {path} was written by a newer tok (schema {found}, this tok knows {known})")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    #[error("no token matches `{0}`")]
    NotFound(String),
    #[error("{}", crate::model::ambiguous(prefix, *total, candidates))]
    Ambiguous {
        prefix: String,
        /// How many tokens match; None when it is only known to be more
        /// than the candidates found.
        total: Option<usize>,
        candidates: Vec<String>,
    },
    #[error("token {0} is revoked; create a new token instead")]
    Revoked(String),
    #[error("token {id} was already rotated to {successor}")]
    AlreadyRotated { id: String, successor: String },
    #[error("token store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("a token store task failed: {0}")]
    Task(String),
}

impl StoreError {
    pub fn kind(&self) -> Kind {
        match self {
            StoreError::NotFound(_) => Kind::NotFound,
            StoreError::Ambiguous { .. } | StoreError::Revoked(_) => Kind::Usage,
            _ => Kind::Failure,
        }
    }
    pub fn hint(&self) -> Option<String> {
        match self {
            StoreError::Open { .. } => Some(format!(
                "check that the data directory is a writable directory, or point {} at another one",
                crate::env::DATA_DIR
            )),
            StoreError::Corrupt { path, .. } => Some(format!(
                "move {} aside to start a new store, or restore it from a backup",
                path.display()
            )),
            StoreError::TooNew { .. } => Some("upgrade tok".into()),
            StoreError::AlreadyRotated { successor, .. } => Some(format!(
                "use {successor}'s secret, or rotate {successor} for a new one"
            )),
            StoreError::NotFound(_) => {
                Some("run `tok list --state all` to see revoked and expired tokens too".into())
            }
            StoreError::Ambiguous { .. } => {
                Some("type more characters of the id to pick one".into())
            }
            _ => None,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A token's use count and last-used time after one use was spent.
pub type Spent = (u64, Option<DateTime<Utc>>);

/// Why a presented secret was refused, for enforcement and admin auth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Expired,
    Revoked,
    Exhausted,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown token",
            Refusal::Expired => "token expired",
            Refusal::Revoked => "token revoked",
            Refusal::Exhausted => "token used up",
        }
    }
}

/// Which admitted requests spend a use of their token at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// Only look (introspection of an unlimited token, say).
    Never,
    /// Only tokens with a use limit, whose count must be exact; others are
    /// counted later, in batches (the proxy's hot path).
    Limited,
    /// Every token: count the use and its time now (admin calls).
    Always,
}

/// What `Store::admit` decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Admitted(Token),
    /// Not usable: unknown, expired, revoked or used up.
    Refused(Refusal),
    /// Usable, but `allowed` said no (a missing scope); no use was spent.
    Forbidden(Token),
}

/// A position in the (created_at, id) order, for cursor pagination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at_ms: i64,
    pub id: String,
}

impl Cursor {
    pub fn of(t: &Token) -> Self {
        Cursor {
            created_at_ms: t.created_at.timestamp_millis(),
            id: t.id.clone(),
        }
    }
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_at_ms, self.id)
    }
    pub fn decode(s: &str) -> Option<Self> {
        let (ms, id) = s.split_once('.')?;
        Some(Cursor {
            created_at_ms: ms.parse().ok()?,
            id: id.to_string(),
        })
    }
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`. A store this process may
    /// read but not write (a read-only mount, another user's directory) is
    /// opened read-only, so that listing and inspecting still work; writes to
    /// it fail with SQLite's read-only error.
    pub fn open(dir: &Path) -> Result<Store> {
        let path = dir.join(DB_FILE);
        refuse_empty_file(&path)?;
        match Self::open_writable(dir, &path) {
            Err(StoreError::Open { source, .. })
                if is_write_refused(&source) && std::fs::metadata(&path).is_ok() =>
            {
                Self::open_read_only(&path).map_err(|_| StoreError::Open { path, source })
            }
            other => other,
        }
    }

    fn open_read_only(path: &Path) -> Result<Store> {
        use rusqlite::OpenFlags;
        // `immutable`: no lock or -shm file is needed, which a directory that
        // cannot be written could not hold (https://sqlite.org/uri.html).
        let uri = format!(
            "file:{}?immutable=1",
            percent_encoding::utf8_percent_encode(
                &path.to_string_lossy(),
                percent_encoding::NON_ALPHANUMERIC
            )
            .to_string()
            .replace("%2F", "/")
        );
        let conn = Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(|e| classify_open(path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        let current: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| classify_open(path, e))?;
        if current as usize != schema::MIGRATIONS.len() {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "read-only, and its schema needs an upgrade that only a write can make",
                ),
            });
        }
        Ok(store)
    }

    fn open_writable(dir: &Path, path: &Path) -> Result<Store> {
        let path = path.to_path_buf();
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        crate::config::create_private_dir(dir).map_err(open_err)?;
        create_private_file(&path).map_err(open_err)?;
        let conn = Connection::open(&path).map_err(|e| classify_open(&path, e))?;
        let store = Store { conn, path };
        store
            .configure()
            .map_err(|e| classify_open(&store.path, e))?;
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        // Reading the mode forces SQLite to read the header: a non-database fails here.
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        debug_assert_eq!(mode.to_lowercase(), "wal");
        self.conn.execute_batch(
            "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA trusted_schema=OFF;",
        )?;
        Ok(())
    }

    fn migrate(&self) -> Result<()> {
        let known = schema::MIGRATIONS.len();
        let current: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| classify_open(&self.path, e))?;
        if current as usize == known {
            return Ok(());
        }
        if current as usize > known {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: current,
                known,
            });
        }
        let mut conn = Connection::open(&self.path).map_err(|e| classify_open(&self.path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the lock.
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Whether `c` is the position of a token that exists: every cursor the
    /// server gives out is (tokens are never deleted), so any other is forged.
    pub fn is_position(&self, c: &Cursor) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM tokens WHERE id = ?1 AND created_at = ?2)",
            params![c.id, c.created_at_ms],
            |r| r.get(0),
        )?)
    }

    /// Inserts a new token and returns it with its secret (the only time it exists).
    pub fn create(
        &self,
        new: &NewToken,
        created_by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Created> {
        let (id, secret) = self.immediate(|c| {
            let (id, secret) = insert_row(c, new, created_by, None, now)?;
            let mut e = audit::Entry::new(audit::Event::Create, now);
            e.token_id = Some(id.clone());
            e.actor = created_by.map(str::to_string);
            audit::insert(c, &e)?;
            Ok((id, secret))
        })?;
        let token = self.get(&id, now)?.ok_or(StoreError::NotFound(id))?;
        Ok(Created { token, secret })
    }

    /// Calls `sink` for each token matching `filter`, in (created_at, id) order,
    /// after `after` when given. Rows are streamed, never collected.
    pub fn list<E: From<StoreError>>(
        &self,
        filter: &Filter,
        after: Option<&Cursor>,
        now: DateTime<Utc>,
        sink: &mut dyn FnMut(Token) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let now_ms = now.timestamp_millis();
        let mut clauses: Vec<String> = Vec::new();
        let mut args: Vec<Box<dyn ToSql>> = Vec::new();
        let live = "(expires_at IS NULL OR expires_at > :now)";
        match filter.state {
            StateFilter::All => {}
            StateFilter::Active => clauses.push(format!(
                "revoked_at IS NULL AND {live} AND (max_uses IS NULL OR uses < max_uses)"
            )),
            StateFilter::Expired => clauses.push(
                "revoked_at IS NULL AND expires_at IS NOT NULL AND expires_at <= :now".into(),
            ),
            StateFilter::Exhausted => clauses.push(format!(
                "revoked_at IS NULL AND {live} AND max_uses IS NOT NULL AND uses >= max_uses"
            )),
            StateFilter::Revoked => clauses.push("revoked_at IS NOT NULL".into()),
        }
        // Each `?` in a clause takes the next value, numbered across all clauses.
        let mut push = |clause: &str, values: Vec<Box<dyn ToSql>>| {
            let mut values = values.into_iter();
            let mut c = String::with_capacity(clause.len() + 8);
            for ch in clause.chars() {
                if ch == '?' {
                    args.push(values.next().expect("a value for each `?`"));
                    c.push_str(&format!("?{}", args.len()));
                } else {
                    c.push(ch);
                }
            }
            clauses.push(c);
        };
        if let Some(g) = &filter.name {
            push("name GLOB ?", vec![Box::new(g.clone())]);
        }
        for (k, v) in &filter.labels {
            push(
                "EXISTS (SELECT 1 FROM json_each(tokens.labels) WHERE key = ? AND value = ?)",
                vec![Box::new(k.clone()), Box::new(v.clone())],
            );
        }
        for s in &filter.scopes {
            push(
                "EXISTS (SELECT 1 FROM json_each(tokens.scopes) WHERE value = ?)",
                vec![Box::new(s.clone())],
            );
        }
        if let Some(w) = filter.expiring_within {
            let until = now_ms.saturating_add(clamp_i64(w).saturating_mul(1000));
            push(
                "expires_at > :now AND expires_at <= ?",
                vec![Box::new(until)],
            );
        }
        if let Some(c) = &filter.created_by {
            push("created_by = ?", vec![Box::new(c.clone())]);
        }
        if let Some(p) = &filter.id_prefix {
            push(
                "substr(id, 1, length(?)) = ?",
                vec![Box::new(p.clone()), Box::new(p.clone())],
            );
        }
        if let Some(c) = after {
            push(
                "(created_at, id) > (?, ?)",
                vec![Box::new(c.created_at_ms), Box::new(c.id.clone())],
            );
        }
        let where_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let limit_sql = match filter.limit {
            Some(n) => format!("LIMIT {}", clamp_i64(n)),
            None => String::new(),
        };
        let sql =
            format!("SELECT {COLUMNS} FROM tokens {where_sql} ORDER BY created_at, id {limit_sql}");
        let uses_now = sql.contains(":now");
        let sql = sql.replace(":now", &format!("?{}", args.len() + 1));
        if uses_now {
            args.push(Box::new(now_ms));
        }
        let mut stmt = self.conn.prepare(&sql).map_err(StoreError::from)?;
        let params: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
        let mut rows = stmt.query(params.as_slice()).map_err(StoreError::from)?;
        while let Some(row) = rows.next().map_err(StoreError::from)? {
            sink(token_from_row(row, now).map_err(StoreError::from)?)?;
        }
        Ok(())
    }

    /// The token with exactly this id.
    pub fn get(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Token>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1"),
                [id],
                |r| token_from_row(r, now),
            )
            .optional()?)
    }

    /// The token whose id is `input` or starts with it (`tk_` may be left off).
    pub fn resolve(&self, input: &str, now: DateTime<Utc>) -> Result<Token> {
        let wanted = if input.starts_with(ID_PREFIX) {
            input.to_string()
        } else {
            format!("{ID_PREFIX}{input}")
        };
        if let Some(t) = self.get(&wanted, now)? {
            return Ok(t);
        }
        let filter = Filter {
            state: StateFilter::All,
            id_prefix: Some(wanted.clone()),
            limit: Some(crate::model::AMBIGUOUS_SHOWN as u64),
            ..Filter::default()
        };
        let mut found: Vec<Token> = Vec::new();
        self.list::<StoreError>(&filter, None, now, &mut |t| {
            found.push(t);
            Ok(())
        })?;
        match found.len() {
            0 => Err(StoreError::NotFound(input.to_string())),
            1 => Ok(found.remove(0)),
            _ => Err(StoreError::Ambiguous {
                prefix: input.to_string(),
                total: Some(self.conn.query_row(
                    "SELECT count(*) FROM tokens WHERE substr(id, 1, length(?1)) = ?1",
                    [&wanted],
                    |r| r.get::<_, i64>(0),
                )? as usize),
                candidates: found
                    .iter()
                    .map(|t| match &t.name {
                        Some(n) => format!("{} ({n})", t.id),
                        None => t.id.clone(),
                    })
                    .collect(),
            }),
        }
    }

    /// The token whose secret hashes to `hash`, whatever its state.
    pub fn lookup(&self, secret: &Secret, now: DateTime<Utc>) -> Result<Option<Token>> {
        let hash = secret.hash();
        let found: Option<(Vec<u8>, Token)> = self
            .conn
            .query_row(
                &format!("SELECT secret_hash, {COLUMNS} FROM tokens WHERE secret_hash = ?1"),
                [hash.as_slice()],
                |r| Ok((r.get(0)?, token_from_row_at(r, 1, now)?)),
            )
            .optional()?;
        // The index finds the row; the final say is a constant-time comparison.
        Ok(found.and_then(|(stored, t)| secret::ct_eq(&stored, &hash).then_some(t)))
    }

    /// Spends one use of token `id` in one conditional UPDATE, so use limits
    /// hold exactly under concurrency, across processes: Ok with its use count
    /// and last-used time after, or why it could not (another request took the
    /// last use, or a revoke or the expiry landed first).
    pub fn spend(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<std::result::Result<Spent, Refusal>> {
        let now_ms = now.timestamp_millis();
        let spent: Option<(i64, Option<i64>)> = self
            .conn
            .query_row(
                "UPDATE tokens SET uses = uses + 1, last_used_at = ?2
                 WHERE id = ?1 AND revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > ?2)
                   AND (max_uses IS NULL OR uses < max_uses)
                 RETURNING uses, last_used_at",
                params![id, now_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((uses, at)) = spent {
            return Ok(Ok((uses.max(0) as u64, at.and_then(from_ms))));
        }
        let now_state = self.get(id, now)?.map(|t| t.state);
        Ok(Err(match now_state {
            Some(State::Revoked) => Refusal::Revoked,
            Some(State::Expired) => Refusal::Expired,
            None => Refusal::Unknown,
            _ => Refusal::Exhausted,
        }))
    }

    /// Revokes `id` (exact). Revoking a revoked token succeeds and says so.
    pub fn revoke(
        &self,
        id: &str,
        by: Option<&str>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Token, RevokeOutcome)> {
        let changed = self.immediate(|c| {
            let changed = c.execute(
                "UPDATE tokens SET revoked_at = ?2, revoked_by = ?3, revoke_reason = ?4
                 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now.timestamp_millis(), by, reason],
            )?;
            if changed == 1 {
                let mut e = audit::Entry::new(audit::Event::Revoke, now);
                e.token_id = Some(id.to_string());
                e.actor = by.map(str::to_string);
                e.reason = reason.map(str::to_string);
                audit::insert(c, &e)?;
            }
            Ok(changed)
        })?;
        let token = self
            .get(id, now)?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let outcome = if changed == 1 {
            RevokeOutcome::Revoked
        } else {
            RevokeOutcome::AlreadyRevoked
        };
        Ok((token, outcome))
    }

    /// Makes a new token with the old one's name, description, scopes, labels,
    /// lifetime and use limit. The old one is revoked now, or, with `grace`,
    /// set to expire then (never later than it would have). One transaction.
    pub fn rotate(
        &self,
        id: &str,
        grace: Option<u64>,
        by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Created, Token)> {
        let (secret, new_id, old_id) = self.immediate(|tx| {
            let old = tx
                .query_row(
                    &format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1"),
                    [id],
                    |r| token_from_row(r, now),
                )
                .optional()?
                .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
            if old.state == State::Revoked {
                return Err(StoreError::Revoked(old.id));
            }
            // One successor per token: a second rotation of a token kept alive
            // by --grace (two at once, or a retry) would fork its line.
            let successor: Option<String> = tx
                .query_row(
                    "SELECT id FROM tokens WHERE rotated_from = ?1 LIMIT 1",
                    [&old.id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(successor) = successor {
                return Err(StoreError::AlreadyRotated {
                    id: old.id,
                    successor,
                });
            }
            let lifetime = old.expires_at.map(|e| e - old.created_at);
            let new = NewToken {
                name: old.name.clone(),
                description: old.description.clone(),
                scopes: old.scopes.clone(),
                labels: old.labels.clone(),
                // An expiry from the admin API can be so far out that the same
                // lifetime from now is past chrono's last date: end there.
                expires_at: lifetime
                    .map(|l| now.checked_add_signed(l).unwrap_or(DateTime::<Utc>::MAX_UTC)),
                max_uses: old.max_uses,
                rate: old.rate,
                quota: old.quota,
                allow_ip: old.allow_ip.clone(),
                cnf: old.cnf.clone(),
            };
            let (new_id, secret) = insert_row(tx, &new, by, Some(&old.id), now)?;
            let reason = format!("rotated to {new_id}");
            match grace {
                None => tx.execute(
                    "UPDATE tokens SET revoked_at = ?2, revoked_by = ?3, revoke_reason = ?4 WHERE id = ?1",
                    params![old.id, now.timestamp_millis(), by, reason],
                )?,
                Some(g) => {
                    let until = now.timestamp_millis() + clamp_i64(g).saturating_mul(1000);
                    tx.execute(
                        "UPDATE tokens SET expires_at = min(coalesce(expires_at, ?2), ?2) WHERE id = ?1",
                        params![old.id, until],
                    )?
                }
            };
            let mut e = audit::Entry::new(audit::Event::Rotate, now);
            e.token_id = Some(old.id.clone());
            e.actor = by.map(str::to_string);
            e.reason = Some(match grace {
                None => format!("rotated to {new_id}; revoked now"),
                Some(g) => format!("rotated to {new_id}; valid {g}s more"),
            });
            audit::insert(tx, &e)?;
            Ok((secret, new_id, old.id))
        })?;
        let token = self
            .get(&new_id, now)?
            .ok_or_else(|| StoreError::NotFound(new_id.clone()))?;
        let old = self
            .get(&old_id, now)?
            .ok_or(StoreError::NotFound(old_id))?;
        Ok((Created { token, secret }, old))
    }
}

/// Inserts one token row on `conn` (a connection or an open transaction).
fn insert_row(
    conn: &Connection,
    new: &NewToken,
    created_by: Option<&str>,
    rotated_from: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(String, Secret)> {
    let secret = Secret::generate();
    let id = format!("{ID_PREFIX}{}", secret::random_handle(ID_LEN));
    conn.execute(
        "INSERT INTO tokens (id, secret_hash, fingerprint, name, description, scopes, labels,
            created_at, created_by, expires_at, max_uses, rotated_from, limits)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            id,
            secret.hash().as_slice(),
            secret.fingerprint(),
            new.name,
            new.description,
            serde_json::to_string(&new.scopes).expect("strings serialize"),
            serde_json::to_string(&new.labels).expect("strings serialize"),
            now.timestamp_millis(),
            created_by,
            new.expires_at.map(|t| t.timestamp_millis()),
            new.max_uses.map(clamp_i64),
            rotated_from,
            quota::limits_json(new),
        ],
    )?;
    Ok((id, secret))
}

impl Store {
    /// Runs `f` in a transaction that holds the write lock from its start, so a
    /// concurrent writer makes it wait (busy timeout) rather than fail midway.
    fn immediate<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match f(&self.conn) {
            Ok(v) => {
                if let Err(e) = self.conn.execute_batch("COMMIT") {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(e.into());
                }
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

const COLUMNS: &str = "id, name, description, scopes, labels, created_at, created_by, expires_at,
    max_uses, uses, last_used_at, revoked_at, revoked_by, revoke_reason, fingerprint, limits";

fn token_from_row(r: &Row<'_>, now: DateTime<Utc>) -> rusqlite::Result<Token> {
    token_from_row_at(r, 0, now)
}

fn token_from_row_at(r: &Row<'_>, base: usize, now: DateTime<Utc>) -> rusqlite::Result<Token> {
    let json_col = |i: usize| -> rusqlite::Result<String> { r.get(base + i) };
    let scopes: Vec<String> = serde_json::from_str(&json_col(3)?).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(base + 3, rusqlite::types::Type::Text, e.into())
    })?;
    let labels = serde_json::from_str(&json_col(4)?).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(base + 4, rusqlite::types::Type::Text, e.into())
    })?;
    let time = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
        Ok(r.get::<_, Option<i64>>(base + i)?.and_then(from_ms))
    };
    let created_at = time(5)?.unwrap_or_default();
    let expires_at = time(7)?;
    let max_uses = r.get::<_, Option<i64>>(base + 8)?.map(|v| v.max(0) as u64);
    let uses = r.get::<_, i64>(base + 9)?.max(0) as u64;
    let revoked_at = time(11)?;
    let mut t = Token {
        id: r.get(base)?,
        name: r.get(base + 1)?,
        description: r.get(base + 2)?,
        scopes,
        labels,
        created_at,
        created_by: r.get(base + 6)?,
        expires_at,
        max_uses,
        uses,
        last_used_at: time(10)?,
        state: State::Active,
        revoked_at,
        revoked_by: r.get(base + 12)?,
        revoke_reason: r.get(base + 13)?,
        fingerprint: r.get(base + 14)?,
        rate: None,
        quota: None,
        allow_ip: Vec::new(),
        cnf: None,
    };
    quota::apply_limits(&mut t, r.get::<_, Option<String>>(base + 15)?.as_deref()).map_err(
        |e| {
            rusqlite::Error::FromSqlConversionFailure(
                base + 15,
                rusqlite::types::Type::Text,
                e.into(),
            )
        },
    )?;
    t.state = t.state_at(now);
    Ok(t)
}

pub(crate) fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn classify_open(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            StoreError::Open {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.to_string()),
            }
        }
        _ => StoreError::Sqlite(e),
    }
}

/// Whether an error means "this process may not write here".
fn is_write_refused(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied
        || e.kind() == std::io::ErrorKind::ReadOnlyFilesystem
        || e.raw_os_error() == Some(1) // EPERM: chmod of another user's file
}

/// A database file of 0 bytes (truncated, or a copy that failed) is damaged:
/// SQLite would read it as a new empty store and every token would be gone
/// without a word. Its write-ahead log may still hold the data, so a
/// non-empty `-wal` file next to it lets SQLite recover instead.
fn refuse_empty_file(path: &Path) -> Result<()> {
    let empty = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal_has_data = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
    if empty && !wal_has_data {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            message: "the file is empty (0 bytes)".into(),
        });
    }
    Ok(())
}

/// Makes the database file 0600, creating it if missing. An existing file is
/// never opened here: closing any descriptor of a file drops every POSIX lock
/// this process holds on it, which would strip the locks of the store's other
/// open connections (as in `tok serve`) and let another process delete the WAL
/// under them.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(_meta) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if _meta.permissions().mode() & 0o777 != 0o600 {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut o = std::fs::OpenOptions::new();
            o.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            let f = o.open(path)?;
            #[cfg(unix)]
            {
                // The umask may have narrowed the mode; never widened it.
                use std::os::unix::fs::PermissionsExt;
                if f.metadata()?.permissions().mode() & 0o777 != 0o600 {
                    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::audit::{Entry, Event, Retention};
    use super::*;
    use chrono::TimeDelta;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        (dir, s)
    }

    /// Admission, written once in `backend`, over this store.
    async fn admit(dir: &Path, secret: &Secret, now: DateTime<Utc>) -> Admission {
        let b = sqlite::Sqlite::open(dir).unwrap();
        backend::admit(&b, secret, now, Spend::Always, |_| true)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admission_spends_uses_exactly() {
        let (d, s) = store();
        let now = Utc::now();
        let new = NewToken {
            max_uses: Some(2),
            ..NewToken::default()
        };
        let c = s.create(&new, None, now).unwrap();
        for _ in 0..2 {
            assert!(matches!(
                admit(d.path(), &c.secret, now).await,
                Admission::Admitted(_)
            ));
        }
        assert_eq!(
            admit(d.path(), &c.secret, now).await,
            Admission::Refused(Refusal::Exhausted)
        );
        let t = s.get(&c.token.id, now).unwrap().unwrap();
        assert_eq!((t.uses, t.state), (2, State::Exhausted));
        assert_eq!(
            admit(d.path(), &Secret::generate(), now).await,
            Admission::Refused(Refusal::Unknown)
        );
    }

    #[test]
    fn rotating_a_token_that_expires_at_the_end_of_time_does_not_panic() {
        let (_d, s) = store();
        let long_ago = DateTime::<Utc>::MIN_UTC + TimeDelta::days(1);
        let last = DateTime::<Utc>::MAX_UTC - TimeDelta::days(1);
        let new = NewToken {
            expires_at: Some(last),
            ..NewToken::default()
        };
        let c = s.create(&new, None, long_ago).unwrap();
        let (created, _) = s.rotate(&c.token.id, None, None, Utc::now()).unwrap();
        let expires_at = created.token.expires_at.unwrap();
        assert!(expires_at >= last, "{expires_at}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admission_refuses_expired_and_revoked() {
        let (d, s) = store();
        let now = Utc::now();
        let new = NewToken {
            expires_at: Some(now + TimeDelta::seconds(1)),
            ..NewToken::default()
        };
        let c = s.create(&new, None, now).unwrap();
        let later = now + TimeDelta::seconds(2);
        assert_eq!(
            admit(d.path(), &c.secret, later).await,
            Admission::Refused(Refusal::Expired)
        );
        let c2 = s.create(&NewToken::default(), None, now).unwrap();
        s.revoke(&c2.token.id, None, None, now).unwrap();
        assert_eq!(
            admit(d.path(), &c2.secret, now).await,
            Admission::Refused(Refusal::Revoked)
        );
    }

    #[test]
    fn retention_prunes_by_age_and_row_cap() {
        let (_d, s) = store();
        let now = Utc::now();
        let old = Entry::new(Event::Request, now - TimeDelta::days(10));
        let fresh: Vec<Entry> = (0..5).map(|_| Entry::new(Event::Request, now)).collect();
        s.record(&[old]).unwrap();
        s.record(&fresh).unwrap();
        let r = Retention {
            max_age_secs: 86_400,
            max_rows: 3,
            ..Retention::default()
        };
        assert_eq!(s.prune_audit(r, now).unwrap(), 3);
        let mut left = Vec::new();
        s.audit::<StoreError>(&Default::default(), &mut |e| {
            left.push(e.seq);
            Ok(())
        })
        .unwrap();
        assert_eq!(left, [4, 5, 6]);
    }

    #[test]
    fn request_floods_never_evict_admin_actions() {
        let (_d, s) = store();
        let now = Utc::now();
        let admin: Vec<Entry> = [Event::Create, Event::Revoke, Event::Rotate]
            .into_iter()
            .map(|ev| Entry::new(ev, now - TimeDelta::days(100)))
            .collect();
        s.record(&admin).unwrap();
        let flood: Vec<Entry> = (0..50)
            .flat_map(|_| [Event::Request, Event::Introspect])
            .map(|ev| Entry::new(ev, now))
            .collect();
        s.record(&flood).unwrap();
        let r = Retention {
            max_age_secs: 90 * 86_400,
            max_rows: 10,
            ..Retention::default()
        };
        assert_eq!(s.prune_audit(r, now).unwrap(), 90);
        let mut left = Vec::new();
        s.audit::<StoreError>(&Default::default(), &mut |e| {
            left.push(e.event);
            Ok(())
        })
        .unwrap();
        assert_eq!(left.len(), 13);
        assert_eq!(left[..3], [Event::Create, Event::Revoke, Event::Rotate]);
        // Admin actions go by their own limits only.
        let r = Retention {
            admin_max_age_secs: 30 * 86_400,
            ..r
        };
        assert_eq!(s.prune_audit(r, now).unwrap(), 3);
        let r = Retention {
            admin_max_rows: 1,
            ..Retention::default()
        };
        s.record(&admin).unwrap();
        assert_eq!(s.prune_audit(r, now).unwrap(), 2);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let (d, s) = store();
        s.conn.pragma_update(None, "user_version", 999).unwrap();
        drop(s);
        assert!(matches!(
            Store::open(d.path()).unwrap_err(),
            StoreError::TooNew { found: 999, .. }
        ));
    }
}

//! What `tok serve` asks the store for its operators: whether it can be
//! reached right now (readiness), and how many tokens are in each state
//! (a metrics gauge).

use super::{schema, Store, DB_FILE};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// Why the store is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// The file cannot be opened or read.
    Unreachable(String),
    /// The schema is behind this build (another process is migrating, or
    /// the file was swapped for an older one).
    Migrations { found: i64, want: usize },
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Unreachable(e) => write!(f, "the store cannot be read: {e}"),
            NotReady::Migrations { found, want } => write!(
                f,
                "the store's schema is at version {found}, this tok needs {want}"
            ),
        }
    }
}

/// Opens the store file in `dir` afresh (never creating it, unlike
/// [`Store::open`], so a store that went away is seen as gone) and reads its
/// schema version and one row.
pub fn probe(dir: &Path) -> Result<(), NotReady> {
    let path = dir.join(DB_FILE);
    let unreachable = |e: rusqlite::Error| NotReady::Unreachable(e.to_string());
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(unreachable)?;
    conn.busy_timeout(Duration::from_secs(1))
        .map_err(unreachable)?;
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(unreachable)?;
    if found < schema::MIGRATIONS.len() as i64 {
        return Err(NotReady::Migrations {
            found,
            want: schema::MIGRATIONS.len(),
        });
    }
    conn.query_row("SELECT count(*) FROM tokens WHERE 0", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(unreachable)?;
    Ok(())
}

impl Store {
    /// How many tokens are active, expired, revoked and used up at `now`
    /// (the order of [`crate::model::state_of`]).
    pub fn count_by_state(&self, now: DateTime<Utc>) -> super::Result<Vec<(&'static str, u64)>> {
        let now = now.timestamp_millis();
        let (total, revoked, expired, exhausted): (i64, i64, i64, i64) = self.conn.query_row(
            "SELECT count(*),
                coalesce(sum(revoked_at IS NOT NULL), 0),
                coalesce(sum(revoked_at IS NULL AND expires_at IS NOT NULL AND expires_at <= ?1), 0),
                coalesce(sum(revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1)
                    AND max_uses IS NOT NULL AND uses >= max_uses), 0)
             FROM tokens",
            [now],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let n = |v: i64| v.max(0) as u64;
        Ok(vec![
            ("active", n(total - revoked - expired - exhausted)),
            ("expired", n(expired)),
            ("revoked", n(revoked)),
            ("exhausted", n(exhausted)),
        ])
    }
}

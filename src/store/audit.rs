//! The audit trail: every authorization decision of the proxy and every admin
//! action (create, revoke, rotate), in the same SQLite file as the tokens.

use super::{from_ms, Result, Store};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, ToSql};
use serde::{Deserialize, Serialize};

/// Uses of tokens without a use limit, counted off the hot path: per token
/// id, how many more uses and the latest time.
pub type Uses = [(String, u64, DateTime<Utc>)];

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// A request through the proxy, allowed or denied.
    Request,
    /// A token check at the introspection endpoint.
    Introspect,
    Create,
    Revoke,
    Rotate,
    /// A token exchange (RFC 8693) at `/oauth/token`, allowed or refused.
    Exchange,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Request => "request",
            Event::Introspect => "introspect",
            Event::Create => "create",
            Event::Revoke => "revoke",
            Event::Rotate => "rotate",
            Event::Exchange => "exchange",
        }
    }
    fn parse(s: &str) -> Event {
        match s {
            "request" => Event::Request,
            "introspect" => Event::Introspect,
            "create" => Event::Create,
            "revoke" => Event::Revoke,
            "exchange" => Event::Exchange,
            _ => Event::Rotate,
        }
    }
}

/// An authorization decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The request was let through.
    Allow,
    /// The request was refused.
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// One audit entry. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Increasing sequence number; `--follow` resumes after the last one seen.
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub event: Event,
    pub token_id: Option<String>,
    /// Who acted: the admin principal for admin actions.
    pub actor: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub client: Option<String>,
    pub decision: Option<Decision>,
    pub reason: Option<String>,
    pub upstream_status: Option<u16>,
    pub latency_ms: Option<u64>,
    /// How many identical denials this entry stands for (1 for most): a flood
    /// of the same refused request is kept as one entry, counted, from the
    /// first one's time.
    #[serde(default = "one")]
    pub count: u64,
    /// The request's `X-Request-Id`, also in its log lines.
    pub request_id: Option<String>,
}

fn one() -> u64 {
    1
}

impl Entry {
    /// An entry for `event` at `at`, every other field empty.
    pub fn new(event: Event, at: DateTime<Utc>) -> Entry {
        Entry {
            seq: 0,
            at,
            event,
            token_id: None,
            actor: None,
            method: None,
            path: None,
            client: None,
            decision: None,
            reason: None,
            upstream_status: None,
            latency_ms: None,
            count: 1,
            request_id: None,
        }
    }

    /// Whether `other` is the same denial of a proxy request as this one (all
    /// but time, latency and count), so that the two may be kept as one entry.
    pub fn same_denial(&self, other: &Entry) -> bool {
        // Proxy requests only: that is where anyone can flood; every other
        // decision (an introspection, a token exchange) keeps its own row.
        self.event == Event::Request
            && self.decision == Some(Decision::Deny)
            && other.decision == Some(Decision::Deny)
            && self.event == other.event
            && self.token_id == other.token_id
            && self.actor == other.actor
            && self.method == other.method
            && self.path == other.path
            && self.client == other.client
            && self.reason == other.reason
            && self.upstream_status == other.upstream_status
    }
}

/// Which entries `tok audit` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub token_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub decision: Option<Decision>,
    /// Only entries after this sequence number.
    pub after_seq: Option<i64>,
    /// The newest this many (still printed oldest first).
    pub limit: Option<u64>,
}

/// How long and how much of the trail to keep. Request entries (the proxy's
/// decisions, introspections and token exchanges, which anyone who reaches a
/// listener can cause)
/// and admin actions (create, revoke, rotate) have caps of their own, so that
/// no amount of traffic evicts an admin action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Request entries older than this go.
    pub max_age_secs: u64,
    /// At most this many request entries (the oldest go first).
    pub max_rows: u64,
    /// Admin actions older than this go.
    pub admin_max_age_secs: u64,
    /// At most this many admin actions.
    pub admin_max_rows: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age_secs: 90 * 86_400,
            max_rows: 1_000_000,
            admin_max_age_secs: 730 * 86_400,
            admin_max_rows: 1_000_000,
        }
    }
}

/// The events of admin actions, as stored; every other event is a request entry.
const ADMIN_EVENTS: &str = "('create', 'revoke', 'rotate')";

pub(super) fn insert(conn: &Connection, e: &Entry) -> rusqlite::Result<()> {
    put(conn, e, false).map(|_| ())
}

/// Appends `e`; with `keep_seq` under its own sequence number, and not at
/// all when an entry already has it (`tok store copy`). How many were added.
pub(super) fn put(conn: &Connection, e: &Entry, keep_seq: bool) -> rusqlite::Result<usize> {
    let verb = if keep_seq {
        "INSERT OR IGNORE"
    } else {
        "INSERT"
    };
    // A NULL seq takes the next number.
    conn.prepare_cached(&format!(
        "{verb} INTO audit (seq, at, event, token_id, actor, method, path, client, decision,
            reason, upstream_status, latency_ms, count, request_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?
    .execute(params![
        keep_seq.then_some(e.seq),
        e.at.timestamp_millis(),
        e.event.as_str(),
        e.token_id,
        e.actor,
        e.method,
        e.path,
        e.client,
        e.decision.map(Decision::as_str),
        e.reason,
        e.upstream_status,
        e.latency_ms.map(|v| v.min(i64::MAX as u64) as i64),
        e.count.clamp(1, i64::MAX as u64) as i64,
        e.request_id,
    ])
}

impl Store {
    /// Appends entries in one transaction.
    pub fn record(&self, entries: &[Entry]) -> Result<()> {
        self.write_batch(entries, &[], &[])
    }

    /// The proxy's batch, in one transaction: audit entries, and for tokens
    /// without a use limit, `uses` more uses and a last-used time each; and
    /// the quota use of tokens with a quota (`store::quota`).
    pub fn write_batch(
        &self,
        entries: &[Entry],
        uses: &[(String, u64, DateTime<Utc>)],
        quota: &super::quota::QuotaUse,
    ) -> Result<()> {
        if entries.is_empty() && uses.is_empty() && quota.is_empty() {
            return Ok(());
        }
        self.immediate(|c| {
            super::quota::add(c, quota)?;
            for (id, n, at) in uses {
                c.execute(
                    "UPDATE tokens SET uses = uses + ?2,
                        last_used_at = max(coalesce(last_used_at, 0), ?3) WHERE id = ?1",
                    params![id, (*n).min(i64::MAX as u64) as i64, at.timestamp_millis()],
                )?;
            }
            for e in entries {
                insert(c, e)?;
            }
            Ok(())
        })
    }

    /// Calls `sink` for each matching entry, oldest first.
    pub fn audit<E: From<super::StoreError>>(
        &self,
        f: &AuditFilter,
        sink: &mut dyn FnMut(Entry) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let mut clauses = Vec::new();
        let mut args: Vec<Box<dyn ToSql>> = Vec::new();
        if let Some(t) = &f.token_id {
            args.push(Box::new(t.clone()));
            clauses.push(format!("token_id = ?{}", args.len()));
        }
        if let Some(s) = f.since {
            args.push(Box::new(s.timestamp_millis()));
            clauses.push(format!("at >= ?{}", args.len()));
        }
        if let Some(d) = f.decision {
            args.push(Box::new(d.as_str()));
            clauses.push(format!("decision = ?{}", args.len()));
        }
        if let Some(a) = f.after_seq {
            args.push(Box::new(a));
            clauses.push(format!("seq > ?{}", args.len()));
        }
        let where_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let cols = "seq, at, event, token_id, actor, method, path, client, decision, reason,
            upstream_status, latency_ms, count, request_id";
        let sql = match f.limit {
            Some(n) => format!(
                "SELECT * FROM (SELECT {cols} FROM audit {where_sql} ORDER BY seq DESC LIMIT {})
                 ORDER BY seq",
                n.min(i64::MAX as u64)
            ),
            None => format!("SELECT {cols} FROM audit {where_sql} ORDER BY seq"),
        };
        let mut stmt = self.conn.prepare(&sql).map_err(super::StoreError::from)?;
        let params: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
        let mut rows = stmt
            .query(params.as_slice())
            .map_err(super::StoreError::from)?;
        while let Some(r) = rows.next().map_err(super::StoreError::from)? {
            let entry = (|| -> rusqlite::Result<Entry> {
                Ok(Entry {
                    seq: r.get(0)?,
                    at: from_ms(r.get(1)?).unwrap_or_default(),
                    event: Event::parse(&r.get::<_, String>(2)?),
                    token_id: r.get(3)?,
                    actor: r.get(4)?,
                    method: r.get(5)?,
                    path: r.get(6)?,
                    client: r.get(7)?,
                    decision: r.get::<_, Option<String>>(8)?.map(|d| {
                        if d == "allow" {
                            Decision::Allow
                        } else {
                            Decision::Deny
                        }
                    }),
                    reason: r.get(9)?,
                    upstream_status: r.get::<_, Option<i64>>(10)?.map(|v| v as u16),
                    latency_ms: r.get::<_, Option<i64>>(11)?.map(|v| v.max(0) as u64),
                    count: r.get::<_, i64>(12)?.max(1) as u64,
                    request_id: r.get(13)?,
                })
            })()
            .map_err(super::StoreError::from)?;
            sink(entry)?;
        }
        Ok(())
    }

    /// Deletes entries older than the retention age and beyond the row cap,
    /// request entries and admin actions each by their own limits. Returns how
    /// many were deleted.
    pub fn prune_audit(&self, r: Retention, now: DateTime<Utc>) -> Result<usize> {
        let cutoff =
            |age: u64| now.timestamp_millis() - (age.min(i64::MAX as u64 / 1000) as i64) * 1000;
        let cap = |rows: u64| rows.clamp(1, i64::MAX as u64) as i64;
        let mut n = 0;
        for (kind, age, rows) in [
            ("NOT IN", r.max_age_secs, r.max_rows),
            ("IN", r.admin_max_age_secs, r.admin_max_rows),
        ] {
            n += self.conn.execute(
                &format!("DELETE FROM audit WHERE event {kind} {ADMIN_EVENTS} AND at < ?1"),
                params![cutoff(age)],
            )?;
            // The newest `rows` of this kind stay: delete below the seq of the
            // last one kept (nothing when there are fewer).
            n += self.conn.execute(
                &format!(
                    "DELETE FROM audit WHERE event {kind} {ADMIN_EVENTS} AND seq < (
                        SELECT seq FROM audit WHERE event {kind} {ADMIN_EVENTS}
                        ORDER BY seq DESC LIMIT 1 OFFSET ?1 - 1)"
                ),
                params![cap(rows)],
            )?;
        }
        Ok(n)
    }
}

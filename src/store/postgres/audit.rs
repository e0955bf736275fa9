//! The audit room on PostgreSQL: one trail for every node, each entry naming
//! the node that wrote it; retention on one node at a time.

use super::super::audit::{AuditFilter, Decision, Entry, Event, Retention};
use super::super::backend::{Error, Result};
use super::super::from_ms;
use super::super::quota::QuotaUse;
use super::tokens::clamp_i64;
use super::{pg, schema, PgStore};
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

const COLUMNS: &str = "seq, at, event, token_id, actor, method, path, client, decision, reason,
    upstream_status, latency_ms, count, request_id";

/// The events of admin actions, as stored; every other event is a request
/// entry (as on SQLite: `store::audit`).
const ADMIN_EVENTS: &str = "('create', 'revoke', 'rotate')";

impl PgStore {
    /// Appends entries in one statement (arrays unnested), on `c`, naming
    /// this node. With `keep_seq` their own sequence numbers are kept and
    /// entries already there are skipped (`store copy`).
    pub(super) async fn insert_audit<C: deadpool_postgres::GenericClient>(
        &self,
        c: &C,
        entries: &[Entry],
    ) -> Result<u64> {
        self.insert_audit_rows(c, entries, false).await
    }

    async fn insert_audit_rows<C: deadpool_postgres::GenericClient>(
        &self,
        c: &C,
        entries: &[Entry],
        keep_seq: bool,
    ) -> Result<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let col = |f: &dyn Fn(&Entry) -> Option<String>| -> Vec<Option<String>> {
            entries.iter().map(f).collect()
        };
        let seq: Vec<i64> = entries.iter().map(|e| e.seq).collect();
        let at: Vec<i64> = entries.iter().map(|e| e.at.timestamp_millis()).collect();
        let event = col(&|e| Some(e.event.as_str().to_string()));
        let token_id = col(&|e| e.token_id.clone());
        let actor = col(&|e| e.actor.clone());
        let method = col(&|e| e.method.clone());
        let path = col(&|e| e.path.clone());
        let client = col(&|e| e.client.clone());
        let decision = col(&|e| e.decision.map(|d| d.as_str().to_string()));
        let reason = col(&|e| e.reason.clone());
        let status: Vec<Option<i32>> = entries
            .iter()
            .map(|e| e.upstream_status.map(i32::from))
            .collect();
        let latency: Vec<Option<i64>> = entries
            .iter()
            .map(|e| e.latency_ms.map(clamp_i64))
            .collect();
        let count: Vec<i64> = entries.iter().map(|e| clamp_i64(e.count.max(1))).collect();
        let request_id = col(&|e| e.request_id.clone());
        let node: Option<&str> = if keep_seq { None } else { Some(&self.node) };
        let (seq_col, seq_val, conflict) = if keep_seq {
            ("seq, ", "s, ", "ON CONFLICT (seq) DO NOTHING")
        } else {
            ("", "", "")
        };
        let sql = format!(
            "INSERT INTO audit ({seq_col}at, event, token_id, actor, method, path, client,
                decision, reason, upstream_status, latency_ms, count, request_id, node)
             SELECT {seq_val}a, ev, t, ac, m, p, cl, d, r, st, l, n, rq, $15::text
             FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int4[],
                $12::bigint[], $13::bigint[], $14::text[])
                AS x(s, a, ev, t, ac, m, p, cl, d, r, st, l, n, rq)
             {conflict}"
        );
        let params: [&(dyn ToSql + Sync); 15] = [
            &seq,
            &at,
            &event,
            &token_id,
            &actor,
            &method,
            &path,
            &client,
            &decision,
            &reason,
            &status,
            &latency,
            &count,
            &request_id,
            &node,
        ];
        c.execute(&sql, &params).await.map_err(pg)
    }

    pub(super) async fn write_audit_batch(
        &self,
        entries: &[Entry],
        uses: &[(String, u64, DateTime<Utc>)],
        quota: &QuotaUse,
    ) -> Result<()> {
        if entries.is_empty() && uses.is_empty() && quota.is_empty() {
            return Ok(());
        }
        let mut c = self.client().await?;
        let r = async {
            let tx = c.transaction().await.map_err(pg)?;
            if !uses.is_empty() {
                let ids: Vec<&str> = uses.iter().map(|u| u.0.as_str()).collect();
                let n: Vec<i64> = uses.iter().map(|u| clamp_i64(u.1)).collect();
                let at: Vec<i64> = uses.iter().map(|u| u.2.timestamp_millis()).collect();
                tx.execute(
                    "UPDATE tokens SET uses = tokens.uses + x.n,
                        last_used_at = greatest(coalesce(tokens.last_used_at, 0), x.at)
                     FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS x(id, n, at)
                     WHERE tokens.id = x.id",
                    &[&ids, &n, &at],
                )
                .await
                .map_err(pg)?;
            }
            // Quota use, as on SQLite (`store::quota::add`): a later window
            // starts the count again, a late batch of an older one is ignored.
            // The batch is sorted by window, so one token's rows apply in order.
            for (id, window, n) in quota {
                tx.execute(
                    "INSERT INTO quota_use AS q (token_id, window_start, used)
                     VALUES ($1, $2, $3)
                     ON CONFLICT (token_id) DO UPDATE SET
                        used = CASE
                            WHEN excluded.window_start = q.window_start THEN q.used + excluded.used
                            WHEN excluded.window_start > q.window_start THEN excluded.used
                            ELSE q.used END,
                        window_start = greatest(q.window_start, excluded.window_start)",
                    &[id, window, &clamp_i64(*n)],
                )
                .await
                .map_err(pg)?;
            }
            self.insert_audit(&tx, entries).await?;
            tx.commit().await.map_err(pg)?;
            Ok(())
        }
        .await;
        r.map_err(|e| self.failed(e))
    }

    pub(super) async fn read_audit(&self, f: &AuditFilter, max: Option<u64>) -> Result<Vec<Entry>> {
        let mut clauses = Vec::new();
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if let Some(t) = &f.token_id {
            args.push(Box::new(t.clone()));
            clauses.push(format!("token_id = ${}", args.len()));
        }
        if let Some(s) = f.since {
            args.push(Box::new(s.timestamp_millis()));
            clauses.push(format!("at >= ${}", args.len()));
        }
        if let Some(d) = f.decision {
            args.push(Box::new(d.as_str()));
            clauses.push(format!("decision = ${}", args.len()));
        }
        if let Some(a) = f.after_seq {
            args.push(Box::new(a));
            clauses.push(format!("seq > ${}", args.len()));
        }
        let where_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = match f.limit {
            Some(n) => format!(
                "SELECT * FROM (SELECT {COLUMNS} FROM audit {where_sql} ORDER BY seq DESC LIMIT {})
                 AS newest ORDER BY seq",
                clamp_i64(n)
            ),
            None => format!(
                "SELECT {COLUMNS} FROM audit {where_sql} ORDER BY seq {}",
                max.map_or_else(String::new, |m| format!("LIMIT {}", clamp_i64(m)))
            ),
        };
        self.query_entries(&sql, &args).await
    }

    pub(super) async fn audit_rows_after(&self, after: i64, limit: u32) -> Result<Vec<Entry>> {
        let sql = format!("SELECT {COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2");
        let args: Vec<Box<dyn ToSql + Sync + Send>> =
            vec![Box::new(after), Box::new(i64::from(limit))];
        self.query_entries(&sql, &args).await
    }

    async fn query_entries(
        &self,
        sql: &str,
        args: &[Box<dyn ToSql + Sync + Send>],
    ) -> Result<Vec<Entry>> {
        let c = self.client().await?;
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = c
            .query(sql, &params)
            .await
            .map_err(|e| self.failed(pg(e)))?;
        Ok(rows
            .iter()
            .map(|r| Entry {
                seq: r.get(0),
                at: from_ms(r.get(1)).unwrap_or_default(),
                event: event_of(r.get(2)),
                token_id: r.get(3),
                actor: r.get(4),
                method: r.get(5),
                path: r.get(6),
                client: r.get(7),
                decision: r.get::<_, Option<&str>>(8).map(|d| {
                    if d == "allow" {
                        Decision::Allow
                    } else {
                        Decision::Deny
                    }
                }),
                reason: r.get(9),
                upstream_status: r.get::<_, Option<i32>>(10).map(|v| v as u16),
                latency_ms: r.get::<_, Option<i64>>(11).map(|v| v.max(0) as u64),
                count: r.get::<_, i64>(12).max(1) as u64,
                request_id: r.get(13),
            })
            .collect())
    }

    pub(super) async fn put_audit(&self, rows: &[Entry]) -> Result<u64> {
        let mut c = self.client().await?;
        let r = async {
            let tx = c.transaction().await.map_err(pg)?;
            let added = self.insert_audit_rows(&tx, rows, true).await?;
            // Entries written later by a node must number after the copied ones.
            tx.execute(
                "SELECT setval(pg_get_serial_sequence('audit', 'seq'), m, true)
                 FROM (SELECT max(seq) AS m FROM audit) AS x WHERE m IS NOT NULL",
                &[],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(added)
        }
        .await;
        r.map_err(|e| self.failed(e))
    }

    /// Deletes entries past the retention, request entries and admin actions
    /// each by their own limits (as on SQLite). One node at a time: a node
    /// that finds another pruning (the advisory lock taken) skips this round.
    pub(super) async fn prune(&self, r: Retention, now: DateTime<Utc>) -> Result<usize> {
        let cutoff = |age: u64| {
            now.timestamp_millis()
                .saturating_sub(clamp_i64(age.min(i64::MAX as u64 / 1000)) * 1000)
        };
        let cap = |rows: u64| clamp_i64(rows.max(1));
        let mut c = self.client().await?;
        let res = async {
            let tx = c.transaction().await.map_err(pg)?;
            let mine: bool = tx
                .query_one(
                    "SELECT pg_try_advisory_xact_lock($1)",
                    &[&schema::LOCK_PRUNE],
                )
                .await
                .map_err(pg)?
                .get(0);
            if !mine {
                return Ok(0);
            }
            let mut n = 0;
            for (kind, age, rows) in [
                ("NOT IN", r.max_age_secs, r.max_rows),
                ("IN", r.admin_max_age_secs, r.admin_max_rows),
            ] {
                n += tx
                    .execute(
                        &format!("DELETE FROM audit WHERE event {kind} {ADMIN_EVENTS} AND at < $1"),
                        &[&cutoff(age)],
                    )
                    .await
                    .map_err(pg)?;
                // The newest `rows` of this kind stay: delete below the seq of
                // the last one kept (nothing when there are fewer).
                n += tx
                    .execute(
                        &format!(
                            "DELETE FROM audit WHERE event {kind} {ADMIN_EVENTS} AND seq < (
                                SELECT seq FROM audit WHERE event {kind} {ADMIN_EVENTS}
                                ORDER BY seq DESC LIMIT 1 OFFSET $1::bigint - 1)"
                        ),
                        &[&cap(rows)],
                    )
                    .await
                    .map_err(pg)?;
            }
            tx.commit().await.map_err(pg)?;
            Ok(n as usize)
        }
        .await;
        res.map_err(|e: Error| self.failed(e))
    }
}

fn event_of(s: &str) -> Event {
    match s {
        "request" => Event::Request,
        "introspect" => Event::Introspect,
        "create" => Event::Create,
        "revoke" => Event::Revoke,
        _ => Event::Rotate,
    }
}

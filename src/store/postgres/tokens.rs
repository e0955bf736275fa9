//! The tokens room on PostgreSQL: create, list, get, lookup, revoke, rotate,
//! the conditional UPDATE that spends a use, and raw rows for `store copy`.

use super::super::audit::{Entry, Event};
use super::super::backend::{self, Error, Result, TokenRow};
use super::super::{from_ms, Cursor, ID_LEN, ID_PREFIX};
use super::{pg, PgStore};
use crate::model::{Created, Filter, NewToken, RevokeOutcome, State, StateFilter, Token};
use crate::secret::{self, Secret};
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

const COLUMNS: &str = "id, name, description, scopes::text, labels::text, created_at, created_by,
    expires_at, max_uses, uses, last_used_at, revoked_at, revoked_by, revoke_reason, fingerprint,
    limits";

type Param = Box<dyn ToSql + Sync + Send>;

impl PgStore {
    pub(super) async fn create_token(
        &self,
        new: &NewToken,
        created_by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Created> {
        let mut c = self.client().await?;
        let r = async {
            let tx = c.transaction().await.map_err(pg)?;
            let (id, secret) = insert_new(&tx, new, created_by, None, now).await?;
            let mut e = Entry::new(Event::Create, now);
            e.token_id = Some(id.clone());
            e.actor = created_by.map(str::to_string);
            self.insert_audit(&tx, std::slice::from_ref(&e)).await?;
            let token = get_on(&tx, &id, now).await?.ok_or_else(|| gone(&id))?;
            tx.commit().await.map_err(pg)?;
            Ok(Created { token, secret })
        }
        .await;
        r.map_err(|e| self.failed(e))
    }

    pub(super) async fn list_tokens(
        &self,
        filter: &Filter,
        after: Option<&Cursor>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Token>> {
        let now_ms = now.timestamp_millis();
        let mut clauses: Vec<String> = Vec::new();
        let mut args: Vec<Param> = vec![Box::new(now_ms)];
        let live = "(expires_at IS NULL OR expires_at > $1)";
        match filter.state {
            StateFilter::All => {}
            StateFilter::Active => clauses.push(format!(
                "revoked_at IS NULL AND {live} AND (max_uses IS NULL OR uses < max_uses)"
            )),
            StateFilter::Expired => clauses
                .push("revoked_at IS NULL AND expires_at IS NOT NULL AND expires_at <= $1".into()),
            StateFilter::Exhausted => clauses.push(format!(
                "revoked_at IS NULL AND {live} AND max_uses IS NOT NULL AND uses >= max_uses"
            )),
            StateFilter::Revoked => clauses.push("revoked_at IS NOT NULL".into()),
        }
        // Each `?` in a clause takes the next value, numbered across all clauses.
        let mut push = |clause: &str, values: Vec<Param>| {
            let mut values = values.into_iter();
            let mut c = String::with_capacity(clause.len() + 8);
            for ch in clause.chars() {
                if ch == '?' {
                    args.push(values.next().expect("a value for each `?`"));
                    c.push_str(&format!("${}", args.len()));
                } else {
                    c.push(ch);
                }
            }
            clauses.push(c);
        };
        if let Some(g) = &filter.name {
            push("name ~ ?", vec![Box::new(glob_to_regex(g))]);
        }
        for (k, v) in &filter.labels {
            push(
                "labels @> jsonb_build_object(?::text, ?::text)",
                vec![Box::new(k.clone()), Box::new(v.clone())],
            );
        }
        for s in &filter.scopes {
            push(
                "scopes @> jsonb_build_array(?::text)",
                vec![Box::new(s.clone())],
            );
        }
        if let Some(w) = filter.expiring_within {
            let until = now_ms.saturating_add(clamp_i64(w).saturating_mul(1000));
            push("expires_at > $1 AND expires_at <= ?", vec![Box::new(until)]);
        }
        if let Some(c) = &filter.created_by {
            push("created_by = ?", vec![Box::new(c.clone())]);
        }
        if let Some(p) = &filter.id_prefix {
            push("starts_with(id, ?)", vec![Box::new(p.clone())]);
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
        // $1 (now) is always passed; say its type for when no clause uses it.
        let sql = format!(
            "SELECT {COLUMNS} FROM tokens {where_sql} {} ORDER BY created_at, id {limit_sql}",
            if where_sql.contains("$1") {
                ""
            } else if where_sql.is_empty() {
                "WHERE $1::bigint IS NOT NULL"
            } else {
                "AND $1::bigint IS NOT NULL"
            }
        );
        let c = self.client().await?;
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = c
            .query(&sql, &params)
            .await
            .map_err(|e| self.failed(pg(e)))?;
        rows.iter().map(|r| token_from_row(r, 0, now)).collect()
    }

    pub(super) async fn get_token(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Token>> {
        let c = self.client().await?;
        get_on(&c, id, now).await.map_err(|e| self.failed(e))
    }

    pub(super) async fn lookup_token(
        &self,
        secret: &Secret,
        now: DateTime<Utc>,
    ) -> Result<Option<Token>> {
        let hash = secret.hash();
        let c = self.client().await?;
        let r = async {
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT secret_hash, {COLUMNS} FROM tokens WHERE secret_hash = $1"
                ))
                .await
                .map_err(pg)?;
            let row = c.query_opt(&stmt, &[&hash.as_slice()]).await.map_err(pg)?;
            let Some(row) = row else { return Ok(None) };
            let stored: Vec<u8> = row.get(0);
            // The index finds the row; the final say is a constant-time comparison.
            if !secret::ct_eq(&stored, &hash) {
                return Ok(None);
            }
            token_from_row(&row, 1, now).map(Some)
        }
        .await;
        r.map_err(|e| self.failed(e))
    }

    pub(super) async fn spend_use(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Token>> {
        let c = self.client().await?;
        let r = async {
            let stmt = c
                .prepare_cached(&format!(
                    "UPDATE tokens SET uses = uses + 1, last_used_at = $2
                     WHERE id = $1 AND revoked_at IS NULL
                       AND (expires_at IS NULL OR expires_at > $2)
                       AND (max_uses IS NULL OR uses < max_uses)
                     RETURNING {COLUMNS}"
                ))
                .await
                .map_err(pg)?;
            let row = c
                .query_opt(&stmt, &[&id, &now.timestamp_millis()])
                .await
                .map_err(pg)?;
            row.map(|r| token_from_row(&r, 0, now)).transpose()
        }
        .await;
        r.map_err(|e| self.failed(e))
    }

    pub(super) async fn revoke_token(
        &self,
        id: &str,
        by: Option<&str>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Token, RevokeOutcome)> {
        let mut c = self.client().await?;
        let r = async {
            let tx = c.transaction().await.map_err(pg)?;
            let changed = tx
                .execute(
                    "UPDATE tokens SET revoked_at = $2, revoked_by = $3, revoke_reason = $4
                     WHERE id = $1 AND revoked_at IS NULL",
                    &[&id, &now.timestamp_millis(), &by, &reason],
                )
                .await
                .map_err(pg)?;
            if changed == 1 {
                let mut e = Entry::new(Event::Revoke, now);
                e.token_id = Some(id.to_string());
                e.actor = by.map(str::to_string);
                e.reason = reason.map(str::to_string);
                self.insert_audit(&tx, std::slice::from_ref(&e)).await?;
            }
            let token = get_on(&tx, id, now).await?.ok_or_else(|| gone(id))?;
            tx.commit().await.map_err(pg)?;
            let outcome = if changed == 1 {
                RevokeOutcome::Revoked
            } else {
                RevokeOutcome::AlreadyRevoked
            };
            Ok((token, outcome))
        }
        .await;
        r.map_err(|e| self.failed(e))
    }

    pub(super) async fn rotate_token(
        &self,
        id: &str,
        grace: Option<u64>,
        by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Created, Token)> {
        let mut c = self.client().await?;
        let r = async {
            let tx = c.transaction().await.map_err(pg)?;
            // FOR UPDATE: two rotations of one token at once make one successor.
            let old = tx
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM tokens WHERE id = $1 FOR UPDATE"),
                    &[&id],
                )
                .await
                .map_err(pg)?
                .map(|r| token_from_row(&r, 0, now))
                .transpose()?
                .ok_or_else(|| gone(id))?;
            if old.state == State::Revoked {
                return Err(super::super::StoreError::Revoked(old.id).into());
            }
            // One successor per token: a second rotation of a token kept alive
            // by --grace (two at once, or a retry) would fork its line. The
            // row lock above makes the second wait for the first's commit.
            let successor = tx
                .query_opt(
                    "SELECT id FROM tokens WHERE rotated_from = $1 LIMIT 1",
                    &[&old.id],
                )
                .await
                .map_err(pg)?;
            if let Some(successor) = successor {
                return Err(super::super::StoreError::AlreadyRotated {
                    id: old.id,
                    successor: successor.get(0),
                }
                .into());
            }
            let new = backend::successor(&old, now);
            let (new_id, secret) = insert_new(&tx, &new, by, Some(&old.id), now).await?;
            let now_ms = now.timestamp_millis();
            match grace {
                None => {
                    let reason = format!("rotated to {new_id}");
                    tx.execute(
                        "UPDATE tokens SET revoked_at = $2, revoked_by = $3, revoke_reason = $4
                         WHERE id = $1",
                        &[&old.id, &now_ms, &by, &reason],
                    )
                    .await
                    .map_err(pg)?
                }
                Some(g) => {
                    let until = now_ms.saturating_add(clamp_i64(g).saturating_mul(1000));
                    tx.execute(
                        "UPDATE tokens SET expires_at = least(coalesce(expires_at, $2), $2)
                         WHERE id = $1",
                        &[&old.id, &until],
                    )
                    .await
                    .map_err(pg)?
                }
            };
            let mut e = Entry::new(Event::Rotate, now);
            e.token_id = Some(old.id.clone());
            e.actor = by.map(str::to_string);
            e.reason = Some(backend::rotate_reason(&new_id, grace));
            self.insert_audit(&tx, std::slice::from_ref(&e)).await?;
            let token = get_on(&tx, &new_id, now)
                .await?
                .ok_or_else(|| gone(&new_id))?;
            let old = get_on(&tx, &old.id, now)
                .await?
                .ok_or_else(|| gone(&old.id))?;
            tx.commit().await.map_err(pg)?;
            Ok((Created { token, secret }, old))
        }
        .await;
        r.map_err(|e| self.failed(e))
    }

    pub(super) async fn is_position(&self, c: &Cursor) -> Result<bool> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM tokens WHERE id = $1 AND created_at = $2)",
                &[&c.id, &c.created_at_ms],
            )
            .await
            .map_err(|e| self.failed(pg(e)))?;
        Ok(row.get(0))
    }

    /// How many tokens are active, expired, revoked and used up at `now`
    /// (as the SQLite store counts them).
    pub(super) async fn count_by_state(&self, now: DateTime<Utc>) -> Result<backend::StateCounts> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT count(*),
                    count(*) FILTER (WHERE revoked_at IS NOT NULL),
                    count(*) FILTER (WHERE revoked_at IS NULL AND expires_at IS NOT NULL
                        AND expires_at <= $1),
                    count(*) FILTER (WHERE revoked_at IS NULL
                        AND (expires_at IS NULL OR expires_at > $1)
                        AND max_uses IS NOT NULL AND uses >= max_uses)
                 FROM tokens",
                &[&now.timestamp_millis()],
            )
            .await
            .map_err(|e| self.failed(pg(e)))?;
        let n = |i: usize| row.get::<_, i64>(i).max(0) as u64;
        let (total, revoked, expired, exhausted) = (n(0), n(1), n(2), n(3));
        Ok(vec![
            (
                "active",
                total.saturating_sub(revoked + expired + exhausted),
            ),
            ("expired", expired),
            ("revoked", revoked),
            ("exhausted", exhausted),
        ])
    }

    pub(super) async fn quota_used(&self, id: &str, window: i64) -> Result<u64> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "SELECT used FROM quota_use WHERE token_id = $1 AND window_start = $2",
                &[&id, &window],
            )
            .await
            .map_err(|e| self.failed(pg(e)))?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
    }

    pub(super) async fn count_rows(&self) -> Result<(u64, u64)> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT (SELECT count(*) FROM tokens), (SELECT count(*) FROM audit)",
                &[],
            )
            .await
            .map_err(|e| self.failed(pg(e)))?;
        let n = |i: usize| row.get::<_, i64>(i).max(0) as u64;
        Ok((n(0), n(1)))
    }

    pub(super) async fn token_rows_after(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TokenRow>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT secret_hash, rotated_from, q.window_start, q.used, {COLUMNS}
                     FROM tokens LEFT JOIN quota_use AS q ON q.token_id = tokens.id
                     WHERE $1::text IS NULL OR id > $1 ORDER BY id LIMIT $2"
                ),
                &[&after, &i64::from(limit)],
            )
            .await
            .map_err(|e| self.failed(pg(e)))?;
        let now = Utc::now();
        rows.iter()
            .map(|r| {
                let window: Option<i64> = r.get(2);
                let used: Option<i64> = r.get(3);
                Ok(TokenRow {
                    secret_hash: r.get(0),
                    rotated_from: r.get(1),
                    quota_use: window.zip(used).map(|(w, u)| (w, u.max(0) as u64)),
                    token: token_from_row(r, 4, now)?,
                })
            })
            .collect()
    }

    pub(super) async fn put_tokens(&self, rows: &[TokenRow]) -> Result<u64> {
        let mut c = self.client().await?;
        let r = async {
            let tx = c.transaction().await.map_err(pg)?;
            let stmt = tx
                .prepare(
                    "INSERT INTO tokens (id, secret_hash, fingerprint, name, description, scopes,
                        labels, created_at, created_by, expires_at, max_uses, uses, last_used_at,
                        revoked_at, revoked_by, revoke_reason, rotated_from, limits)
                     VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7::text::jsonb, $8, $9, $10,
                        $11, $12, $13, $14, $15, $16, $17, $18)
                     ON CONFLICT (id) DO NOTHING",
                )
                .await
                .map_err(pg)?;
            let quota = tx
                .prepare(
                    "INSERT INTO quota_use (token_id, window_start, used) VALUES ($1, $2, $3)
                     ON CONFLICT (token_id) DO NOTHING",
                )
                .await
                .map_err(pg)?;
            let mut added = 0;
            for row in rows {
                let t = &row.token;
                let ms = |d: Option<DateTime<Utc>>| d.map(|d| d.timestamp_millis());
                added += tx
                    .execute(
                        &stmt,
                        &[
                            &t.id,
                            &row.secret_hash,
                            &t.fingerprint,
                            &t.name,
                            &t.description,
                            &json(&t.scopes),
                            &json(&t.labels),
                            &t.created_at.timestamp_millis(),
                            &t.created_by,
                            &ms(t.expires_at),
                            &t.max_uses.map(clamp_i64),
                            &clamp_i64(t.uses),
                            &ms(t.last_used_at),
                            &ms(t.revoked_at),
                            &t.revoked_by,
                            &t.revoke_reason,
                            &row.rotated_from,
                            &super::super::quota::token_limits_json(t),
                        ],
                    )
                    .await
                    .map_err(pg)?;
                if let Some((window, used)) = row.quota_use {
                    tx.execute(&quota, &[&t.id, &window, &clamp_i64(used)])
                        .await
                        .map_err(pg)?;
                }
            }
            tx.commit().await.map_err(pg)?;
            Ok(added)
        }
        .await;
        r.map_err(|e| self.failed(e))
    }
}

/// Inserts a fresh token row (new id, new secret) on a transaction.
async fn insert_new(
    tx: &deadpool_postgres::Transaction<'_>,
    new: &NewToken,
    created_by: Option<&str>,
    rotated_from: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(String, Secret)> {
    let secret = Secret::generate();
    let id = format!("{ID_PREFIX}{}", secret::random_handle(ID_LEN));
    tx.execute(
        "INSERT INTO tokens (id, secret_hash, fingerprint, name, description, scopes, labels,
            created_at, created_by, expires_at, max_uses, rotated_from, limits)
         VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7::text::jsonb, $8, $9, $10, $11, $12,
            $13)",
        &[
            &id,
            &secret.hash().as_slice(),
            &secret.fingerprint(),
            &new.name,
            &new.description,
            &json(&new.scopes),
            &json(&new.labels),
            &now.timestamp_millis(),
            &created_by,
            &new.expires_at.map(|t| t.timestamp_millis()),
            &new.max_uses.map(clamp_i64),
            &rotated_from,
            &super::super::quota::limits_json(new),
        ],
    )
    .await
    .map_err(pg)?;
    Ok((id, secret))
}

async fn get_on<C: deadpool_postgres::GenericClient>(
    c: &C,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<Token>> {
    let row = c
        .query_opt(
            &format!("SELECT {COLUMNS} FROM tokens WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(pg)?;
    row.map(|r| token_from_row(&r, 0, now)).transpose()
}

fn gone(id: &str) -> Error {
    super::super::StoreError::NotFound(id.to_string()).into()
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("strings serialize")
}

fn token_from_row(r: &Row, base: usize, now: DateTime<Utc>) -> Result<Token> {
    let bad = |what: &str, e: serde_json::Error| {
        Error::Postgres(format!("a token row holds bad {what} JSON: {e}"))
    };
    let scopes: Vec<String> =
        serde_json::from_str(r.get::<_, &str>(base + 3)).map_err(|e| bad("scopes", e))?;
    let labels = serde_json::from_str(r.get::<_, &str>(base + 4)).map_err(|e| bad("labels", e))?;
    let time = |i: usize| r.get::<_, Option<i64>>(base + i).and_then(from_ms);
    let mut t = Token {
        id: r.get(base),
        name: r.get(base + 1),
        description: r.get(base + 2),
        scopes,
        labels,
        created_at: time(5).unwrap_or_default(),
        created_by: r.get(base + 6),
        expires_at: time(7),
        max_uses: r.get::<_, Option<i64>>(base + 8).map(|v| v.max(0) as u64),
        uses: r.get::<_, i64>(base + 9).max(0) as u64,
        last_used_at: time(10),
        state: State::Active,
        revoked_at: time(11),
        revoked_by: r.get(base + 12),
        revoke_reason: r.get(base + 13),
        fingerprint: r.get(base + 14),
        rate: None,
        quota: None,
        allow_ip: Vec::new(),
        cnf: None,
    };
    super::super::quota::apply_limits(&mut t, r.get::<_, Option<&str>>(base + 15))
        .map_err(|e| Error::Postgres(format!("a token row holds bad limits JSON: {e}")))?;
    t.state = t.state_at(now);
    Ok(t)
}

pub(super) fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A name glob (`*` any run, `?` one character, `[...]` a class, as SQLite's
/// GLOB) as an anchored POSIX regular expression for `~`.
fn glob_to_regex(glob: &str) -> String {
    let mut re = String::with_capacity(glob.len() + 8);
    re.push('^');
    let mut chars = glob.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                // A class runs to the next `]` (a `]` first is literal); an
                // unclosed `[` is literal, as in SQLite.
                let rest: Vec<char> = chars.clone().collect();
                match rest.iter().skip(1).position(|&c| c == ']') {
                    Some(p) => {
                        let body = &rest[..p + 1];
                        re.push('[');
                        for (i, &c) in body.iter().enumerate() {
                            match c {
                                '^' if i == 0 => re.push('^'),
                                '\\' => re.push_str("\\\\"),
                                c => re.push(c),
                            }
                        }
                        re.push(']');
                        for _ in 0..p + 2 {
                            chars.next();
                        }
                    }
                    None => re.push_str("\\["),
                }
            }
            c if c.is_ascii_alphanumeric() || !c.is_ascii() => re.push(c),
            c => {
                re.push('\\');
                re.push(c);
            }
        }
    }
    re.push('$');
    re
}

#[cfg(test)]
mod tests {
    use super::glob_to_regex;

    #[test]
    fn globs_become_anchored_regexes() {
        assert_eq!(glob_to_regex("ci-*"), "^ci\\-.*$");
        assert_eq!(glob_to_regex("a?c"), "^a.c$");
        assert_eq!(glob_to_regex("v[12].x"), "^v[12]\\.x$");
        assert_eq!(glob_to_regex("[^a]"), "^[^a]$");
        assert_eq!(glob_to_regex("a["), "^a\\[$");
        assert_eq!(glob_to_regex("x$(y)"), "^x\\$\\(y\\)$");
    }
}

//! The columns of the model's row kinds: tokens and audit entries. (Revoke
//! reports, profiles, drivers and auth status declare theirs beside the
//! command that makes them.)

use super::{col, labels, Cell, Column, Record, Show::*};
use crate::model::Token;
use crate::store::audit::Entry;

impl Record for Token {
    // TSV order is documented (docs/json-output.md): new columns go last.
    const COLUMNS: &'static [Column] = &[
        col("id", "ID", Always, 0),
        col("name", "NAME", Always, 1),
        col("state", "STATE", Always, 2),
        col("scopes", "SCOPES", Always, 4),
        col("labels", "LABELS", Wide, 10),
        col("created_at", "CREATED", Wide, 9),
        col("created_by", "CREATED BY", Fit, 7),
        col("expires_at", "EXPIRES", Always, 3),
        col("last_used_at", "LAST USED", Fit, 5),
        col("uses", "USES", Fit, 6),
        col("max_uses", "MAX USES", Data, 99),
        col("fingerprint", "FINGERPRINT", Fit, 8),
        col("description", "DESCRIPTION", Wide, 11),
        col("revoked_at", "REVOKED", Wide, 12),
        col("revoked_by", "REVOKED BY", Wide, 13),
        col("revoke_reason", "REASON", Wide, 14),
    ];
    const NONE: &'static str = "no tokens match";

    fn cell(&self, i: usize, human: bool) -> Cell {
        match Self::COLUMNS[i].key {
            "id" => Cell::Text(self.id.clone()),
            "name" => Cell::opt(self.name.as_deref()),
            "state" => Cell::State(self.state),
            "scopes" => Cell::Text(self.scopes.join(",")),
            "labels" => Cell::Text(labels(self)),
            "created_at" => Cell::Time(Some(self.created_at), "-"),
            "created_by" => Cell::opt(self.created_by.as_deref()),
            "expires_at" => Cell::Time(self.expires_at, "never"),
            "last_used_at" => Cell::Time(self.last_used_at, "never"),
            "uses" => Cell::Text(match self.max_uses {
                Some(m) if human => format!("{}/{m}", self.uses),
                _ => self.uses.to_string(),
            }),
            "max_uses" => Cell::Text(self.max_uses.map(|m| m.to_string()).unwrap_or_default()),
            "fingerprint" => Cell::Text(self.fingerprint.clone()),
            "description" => Cell::opt(self.description.as_deref()),
            "revoked_at" => Cell::Time(self.revoked_at, "-"),
            "revoked_by" => Cell::opt(self.revoked_by.as_deref()),
            "revoke_reason" => Cell::opt(self.revoke_reason.as_deref()),
            _ => unreachable!("a column of Token"),
        }
    }

    fn env(&self) -> Option<Vec<(String, String)>> {
        let opt = |s: &Option<String>| s.clone().unwrap_or_default();
        let time =
            |t: Option<chrono::DateTime<chrono::Utc>>| t.map(super::rfc3339).unwrap_or_default();
        Some(vec![
            ("TOK_ID".into(), self.id.clone()),
            ("TOK_NAME".into(), opt(&self.name)),
            ("TOK_STATE".into(), self.state.as_str().into()),
            ("TOK_SCOPES".into(), self.scopes.join(",")),
            ("TOK_EXPIRES_AT".into(), time(self.expires_at)),
            ("TOK_FINGERPRINT".into(), self.fingerprint.clone()),
        ])
    }
}

impl Record for Entry {
    const COLUMNS: &'static [Column] = &[
        col("seq", "SEQ", Wide, 0),
        col("at", "AT", Always, 1),
        col("event", "EVENT", Always, 2),
        col("token_id", "TOKEN", Always, 3),
        col("decision", "DECISION", Always, 4),
        col("method", "METHOD", Fit, 5),
        col("path", "PATH", Fit, 6),
        col("upstream_status", "STATUS", Fit, 7),
        col("latency_ms", "MS", Wide, 8),
        col("client", "CLIENT", Fit, 9),
        col("actor", "ACTOR", Fit, 10),
        col("reason", "REASON", Fit, 11),
        col("count", "COUNT", Fit, 12),
    ];
    const NONE: &'static str = "no audit entries match";

    fn cell(&self, i: usize, _human: bool) -> Cell {
        let num = |n: Option<u64>| Cell::Text(n.map(|n| n.to_string()).unwrap_or_default());
        match Self::COLUMNS[i].key {
            "seq" => Cell::Text(self.seq.to_string()),
            "at" => Cell::Time(Some(self.at), "-"),
            "event" => Cell::Text(self.event.as_str().into()),
            "token_id" => Cell::opt(self.token_id.as_deref()),
            "decision" => Cell::Text(self.decision.map(|d| d.as_str().into()).unwrap_or_default()),
            "method" => Cell::opt(self.method.as_deref()),
            "path" => Cell::opt(self.path.as_deref()),
            "upstream_status" => num(self.upstream_status.map(u64::from)),
            "latency_ms" => num(self.latency_ms),
            "client" => Cell::opt(self.client.as_deref()),
            "actor" => Cell::opt(self.actor.as_deref()),
            "reason" => Cell::opt(self.reason.as_deref()),
            "count" => Cell::Text(self.count.to_string()),
            _ => unreachable!("a column of Entry"),
        }
    }
}

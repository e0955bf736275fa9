//! Where a token's rate limit and quota live in the store, and how much of
//! its quota is used. The only code that reads or writes the `limits` column
//! and the `quota_use` table (a second backend implements these few calls).
//!
//! The proxy counts quota use in memory, exactly, and hands the counts to the
//! audit writer, which adds them here in its batch (every 100 ms under load):
//! no store write per request. A server killed without warning loses at most
//! that last batch of counts, as it loses that batch of audit entries;
//! a graceful stop writes everything.

use super::Result;
use crate::limits::{Quota, Rate};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// The `limits` column: JSON, NULL when the token has neither.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "crate::limits::cidrs"
    )]
    pub allow_ip: Vec<ipnet::IpNet>,
    /// The DPoP binding (`cnf.jkt`): kept here rather than in a column of
    /// its own so that every backend stores the same one JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

/// The `limits` column of a new token; NULL when it has no limit.
pub(super) fn limits_json(new: &crate::model::NewToken) -> Option<String> {
    json_of(new.rate, new.quota, &new.allow_ip, new.cnf.as_ref())
}

/// The `limits` column of a stored token (what `tok store copy` writes).
pub(super) fn token_limits_json(t: &crate::model::Token) -> Option<String> {
    json_of(t.rate, t.quota, &t.allow_ip, t.cnf.as_ref())
}

fn json_of(
    rate: Option<Rate>,
    quota: Option<Quota>,
    allow_ip: &[ipnet::IpNet],
    cnf: Option<&crate::model::Cnf>,
) -> Option<String> {
    if rate.is_none() && quota.is_none() && allow_ip.is_empty() && cnf.is_none() {
        return None;
    }
    let l = Limits {
        rate,
        quota,
        allow_ip: allow_ip.to_vec(),
        dpop_jkt: cnf.map(|c| c.jkt.clone()),
    };
    Some(serde_json::to_string(&l).expect("numbers and strings serialize"))
}

/// Sets a token's rate, quota, address ranges and DPoP key from its `limits` column.
pub(super) fn apply_limits(
    t: &mut crate::model::Token,
    json: Option<&str>,
) -> std::result::Result<(), serde_json::Error> {
    if let Some(json) = json {
        let l: Limits = serde_json::from_str(json)?;
        (t.rate, t.quota, t.allow_ip) = (l.rate, l.quota, l.allow_ip);
        t.cnf = l.dpop_jkt.map(|jkt| crate::model::Cnf { jkt });
    }
    Ok(())
}

/// Quota use to add: per token id, the window's start (ms) and how many.
pub type QuotaUse = [(String, i64, u64)];

/// Adds quota use, starting the count again when a later window began.
pub(super) fn add(c: &Connection, quota: &QuotaUse) -> Result<()> {
    for (id, window, n) in quota {
        c.execute(
            "INSERT INTO quota_use (token_id, window_start, used) VALUES (?1, ?2, ?3)
             ON CONFLICT (token_id) DO UPDATE SET
                used = CASE
                    WHEN excluded.window_start = window_start THEN used + excluded.used
                    WHEN excluded.window_start > window_start THEN excluded.used
                    ELSE used END,
                window_start = max(window_start, excluded.window_start)",
            params![id, window, (*n).min(i64::MAX as u64) as i64],
        )?;
    }
    Ok(())
}

impl super::Store {
    /// How much of token `id`'s quota is used in the window starting at
    /// `window` (ms): 0 when nothing was recorded for that window.
    pub fn quota_used(&self, id: &str, window: i64) -> Result<u64> {
        let row: Option<(i64, i64)> = self
            .conn
            .query_row(
                "SELECT window_start, used FROM quota_use WHERE token_id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(match row {
            Some((w, used)) if w == window => used.max(0) as u64,
            _ => 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use crate::model::NewToken;
    use chrono::Utc;

    #[test]
    fn quota_use_adds_up_within_a_window_and_restarts_after() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let new = NewToken {
            quota: Some("10/1h".parse().unwrap()),
            rate: Some(
                "5/s"
                    .parse::<crate::limits::RateArg>()
                    .unwrap()
                    .with_burst(Some(2)),
            ),
            ..NewToken::default()
        };
        let c = s.create(&new, None, Utc::now()).unwrap();
        assert_eq!(c.token.quota, new.quota);
        assert_eq!(c.token.rate, new.rate);
        let id = c.token.id.clone();
        s.write_batch(&[], &[], &[(id.clone(), 1000, 3)]).unwrap();
        s.write_batch(&[], &[], &[(id.clone(), 1000, 2)]).unwrap();
        assert_eq!(s.quota_used(&id, 1000).unwrap(), 5);
        // A late batch of an older window never undoes a newer one.
        s.write_batch(&[], &[], &[(id.clone(), 2000, 1)]).unwrap();
        s.write_batch(&[], &[], &[(id.clone(), 1000, 4)]).unwrap();
        assert_eq!(s.quota_used(&id, 2000).unwrap(), 1);
        assert_eq!(s.quota_used(&id, 1000).unwrap(), 0);
    }
}

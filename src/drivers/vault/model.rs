//! How Vault's JSON maps onto tok's token model, and back.

use super::USES_KEY;
use crate::drivers::{DriverError, Result};
use crate::model::{State, Token};
use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// `data` of `lookup`, `lookup-accessor` and `lookup-self`. The token's own
/// `id` (its secret, on lookups by secret) is deliberately not read.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct TokenData {
    pub(super) accessor: String,
    pub(super) creation_time: Option<i64>,
    pub(super) creation_ttl: Option<u64>,
    pub(super) display_name: Option<String>,
    pub(super) expire_time: Option<String>,
    pub(super) explicit_max_ttl: Option<u64>,
    pub(super) issue_time: Option<String>,
    pub(super) meta: Option<BTreeMap<String, String>>,
    pub(super) num_uses: Option<u64>,
    pub(super) period: Option<u64>,
    pub(super) policies: Option<Vec<String>>,
    pub(super) renewable: Option<bool>,
    pub(super) ttl: Option<i64>,
}

/// `auth` of `create`.
#[derive(Deserialize)]
pub(super) struct CreateAuth {
    pub(super) client_token: String,
    pub(super) accessor: String,
    pub(super) policies: Option<Vec<String>>,
    pub(super) metadata: Option<BTreeMap<String, String>>,
    pub(super) lease_duration: Option<u64>,
    pub(super) num_uses: Option<u64>,
}

/// Vault's multierror text (`1 error occurred:\n\t* invalid accessor\n\n`)
/// as its plain message.
pub(super) fn clean_error(e: &str) -> String {
    let items: Vec<&str> = e
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("* "))
        .collect();
    if e.contains("error occurred") && !items.is_empty() {
        items.join("; ")
    } else {
        e.trim().to_string()
    }
}

pub(super) fn protocol(url: &str, message: &str) -> DriverError {
    DriverError::Protocol {
        url: url.to_string(),
        message: message.to_string(),
    }
}

pub(super) fn data_of(v: &Value, url: &str) -> Result<TokenData> {
    let data = v
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| protocol(url, "the answer has no `data`"))?;
    serde_json::from_value(data.clone()).map_err(|e| protocol(url, &e.to_string()))
}

/// What the fingerprint column shows: Vault never returns a secret by accessor.
pub(super) const NO_FINGERPRINT: &str = "-";

/// Whether `s` is a Vault token rather than an accessor: tokens carry a type
/// prefix (`hvs.`, `hvb.`, `hvr.`, or the older `s.`, `b.`, `r.`); accessors
/// are plain base62, with at most a `.namespace` suffix.
pub fn looks_like_vault_token(s: &str) -> bool {
    matches!(
        s.split_once('.').map(|(p, _)| p),
        Some("hvs" | "hvb" | "hvr" | "s" | "b" | "r")
    )
}

pub(super) fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// (max_uses, uses) from what Vault reports: `num_uses` is the uses left, 0
/// for no limit; the limit itself is in tok's meta key when tok made the token.
pub(super) fn uses_of(
    num_uses: Option<u64>,
    meta: Option<&BTreeMap<String, String>>,
) -> (Option<u64>, u64) {
    match num_uses.unwrap_or(0) {
        0 => (None, 0),
        left => {
            let max = meta
                .and_then(|m| m.get(USES_KEY))
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|m| *m >= left);
            match max {
                Some(m) => (Some(m), m - left),
                None => (Some(left), 0),
            }
        }
    }
}

pub(super) fn labels_of(meta: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    meta.map(|m| {
        m.iter()
            .filter(|(k, _)| k.as_str() != USES_KEY)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
    .unwrap_or_default()
}

/// Vault prefixes display names with the auth method (`token-deploy`); a
/// token made without one is just `token`.
pub(super) fn name_of(display_name: Option<&str>) -> Option<String> {
    match display_name {
        None | Some("") | Some("token") => None,
        Some(d) => Some(d.strip_prefix("token-").unwrap_or(d).to_string()),
    }
}

pub(super) fn to_token(d: &TokenData, now: DateTime<Utc>) -> Token {
    let (max_uses, uses) = uses_of(d.num_uses, d.meta.as_ref());
    let created_at = parse_time(d.issue_time.as_deref())
        .or_else(|| {
            d.creation_time
                .and_then(|s| Utc.timestamp_opt(s, 0).single())
        })
        .unwrap_or(now);
    let expires_at = parse_time(d.expire_time.as_deref());
    let mut t = Token {
        name: name_of(d.display_name.as_deref()),
        scopes: d.policies.clone().unwrap_or_default(),
        labels: labels_of(d.meta.as_ref()),
        max_uses,
        uses,
        fingerprint: NO_FINGERPRINT.into(),
        ..Token::bare(d.accessor.clone(), created_at, expires_at)
    };
    t.state = t.state_at(now);
    t
}

pub(super) fn mark_revoked(mut t: Token, now: DateTime<Utc>) -> Token {
    t.revoked_at = Some(now);
    t.state = State::Revoked;
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multierror_text_is_cleaned() {
        assert_eq!(
            clean_error("1 error occurred:\n\t* invalid accessor\n\n"),
            "invalid accessor"
        );
        assert_eq!(clean_error("permission denied"), "permission denied");
    }

    #[test]
    fn tokens_and_accessors_are_told_apart() {
        assert!(looks_like_vault_token("s.VabI4UKVu4BfJIXootLceCTY"));
        assert!(looks_like_vault_token("hvs.CAESIJ"));
        assert!(!looks_like_vault_token("wNStR33m7TIvtuIxyjc6tqj4"));
        assert!(!looks_like_vault_token("wNStR33m7TIvtuIxyjc6tqj4.abcde"));
    }

    #[test]
    fn uses_come_from_the_uses_left() {
        let mut meta = BTreeMap::new();
        assert_eq!(uses_of(Some(0), None), (None, 0));
        assert_eq!(uses_of(Some(2), None), (Some(2), 0));
        meta.insert(USES_KEY.to_string(), "3".to_string());
        assert_eq!(uses_of(Some(2), Some(&meta)), (Some(3), 1));
        // A meta value that cannot be right is ignored.
        meta.insert(USES_KEY.to_string(), "1".to_string());
        assert_eq!(uses_of(Some(2), Some(&meta)), (Some(2), 0));
    }

    #[test]
    fn display_names_lose_the_method_prefix() {
        assert_eq!(name_of(Some("token-deploy")), Some("deploy".into()));
        assert_eq!(name_of(Some("token")), None);
        assert_eq!(name_of(Some("userpass-bob")), Some("userpass-bob".into()));
    }
}

//! The OAuth 2 wire formats tok reads (server metadata, token answers,
//! introspection) and how a token known only by its secret maps onto tok's
//! model.

use crate::drivers::{DriverError, Result};
use crate::model::Token;
use crate::secret::Secret;
use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The parts of OpenID Connect Discovery / RFC 8414 metadata that tok reads.
#[derive(Debug, Deserialize)]
pub(super) struct Metadata {
    pub(super) issuer: Option<String>,
    pub(super) token_endpoint: Option<String>,
    pub(super) introspection_endpoint: Option<String>,
    pub(super) revocation_endpoint: Option<String>,
    pub(super) token_endpoint_auth_methods_supported: Option<Vec<String>>,
    pub(super) scopes_supported: Option<Vec<String>>,
}

/// RFC 6749 §5.1.
#[derive(Deserialize)]
pub(super) struct TokenAnswer {
    pub(super) access_token: String,
    pub(super) expires_in: Option<i64>,
    pub(super) scope: Option<String>,
}

/// RFC 7662 §2.2, the members tok shows.
#[derive(Debug, Deserialize)]
pub(super) struct Introspection {
    pub(super) active: bool,
    pub(super) scope: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) username: Option<String>,
    pub(super) token_type: Option<String>,
    pub(super) exp: Option<i64>,
    pub(super) iat: Option<i64>,
    pub(super) sub: Option<String>,
    pub(super) aud: Option<Value>,
    pub(super) iss: Option<String>,
}

/// Where the metadata of issuer `base` may be: OpenID Connect Discovery
/// first, then RFC 8414 (whose well-known part goes between host and path).
/// A URL that already names a well-known document is used as it is.
pub(super) fn discovery_urls(base: &str) -> Result<Vec<String>> {
    if base.contains("/.well-known/") {
        return Ok(vec![base.to_string()]);
    }
    let url = reqwest::Url::parse(base).map_err(|e| DriverError::Invalid(e.to_string()))?;
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    Ok(vec![
        format!("{base}/.well-known/openid-configuration"),
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
    ])
}

/// A stable, non-secret handle for a token known only by its secret.
pub fn handle_of(secret: &Secret) -> String {
    let digest = Sha256::digest(secret.expose().as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

pub(super) fn split_scopes(s: Option<&str>) -> Vec<String> {
    s.unwrap_or("")
        .split(' ')
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

pub(super) fn epoch(s: Option<i64>) -> Option<DateTime<Utc>> {
    s.and_then(|s| Utc.timestamp_opt(s, 0).single())
}

/// The Unix time `expires_in` seconds after `now` (RFC 6749 §5.1), or None
/// when that is past any date (a number from the server; `+` would overflow).
pub(super) fn expiry_after(now: DateTime<Utc>, expires_in: i64) -> Option<i64> {
    crate::duration::checked_after(now, expires_in).map(|t| t.timestamp())
}

pub(super) fn to_token(secret: &Secret, i: &Introspection, now: DateTime<Utc>) -> Token {
    let mut labels = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            labels.insert(k.to_string(), v);
        }
    };
    put("iss", i.iss.clone());
    put("sub", i.sub.clone());
    put(
        "aud",
        i.aud.as_ref().map(|a| match a {
            Value::String(s) => s.clone(),
            Value::Array(xs) => xs
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        }),
    );
    put("token_type", i.token_type.clone());
    let created_at = epoch(i.iat).unwrap_or(now);
    let mut t = Token {
        name: i.username.clone(),
        scopes: split_scopes(i.scope.as_deref()),
        labels,
        created_by: i.client_id.clone(),
        fingerprint: secret.fingerprint(),
        ..Token::bare(handle_of(secret), created_at, epoch(i.exp))
    };
    t.state = t.state_at(now);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expires_in_past_any_date_is_none_not_a_panic() {
        let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        assert_eq!(expiry_after(now, 3600), Some(1_700_003_600));
        assert_eq!(expiry_after(now, 0), Some(1_700_000_000));
        for e in [
            i64::MAX,
            i64::MAX - 1_000,
            i64::MAX / 1000,
            10_000_000_000_000,
        ] {
            assert_eq!(expiry_after(now, e), None, "{e}");
        }
    }

    #[test]
    fn discovery_follows_oidc_then_rfc_8414() {
        assert_eq!(
            discovery_urls("https://idp.example/tenant1").unwrap(),
            [
                "https://idp.example/tenant1/.well-known/openid-configuration",
                "https://idp.example/.well-known/oauth-authorization-server/tenant1",
            ]
        );
        assert_eq!(
            discovery_urls("https://idp.example").unwrap()[1],
            "https://idp.example/.well-known/oauth-authorization-server"
        );
        let doc = "https://idp.example/.well-known/oauth-authorization-server";
        assert_eq!(discovery_urls(doc).unwrap(), [doc]);
    }

    #[test]
    fn handles_are_stable_and_reveal_nothing() {
        let s = Secret::new("cjHPslqRAZxp97TbAAaXk4rsYl9galFgiKFopSjUmMy");
        let h = handle_of(&s);
        assert_eq!(h, handle_of(&s));
        assert!(h.starts_with("sha256:") && h.len() == 23);
        assert!(!h.contains("cjHP"));
    }
}

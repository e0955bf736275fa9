//! The JSON the admin API speaks, shared by the server and the `tok` driver so
//! that the two cannot drift apart. docs/openapi.yaml describes the same shapes.

use crate::model::{RevokeOutcome, Token};
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// Largest request body the server reads; larger ones get 413.
pub const BODY_MAX: usize = 64 * 1024;
/// Largest page `GET /v1/tokens` returns (`limit` above it is refused).
pub const PAGE_MAX: u64 = 1000;
/// Longest token id or id prefix the API looks up; longer ones match nothing.
pub const ID_MAX: usize = 64;
/// The page size when `limit` is not given.
pub const PAGE_DEFAULT: u64 = 100;

/// A secret in a JSON body: serialized in clear (it is the payload), but its
/// `Debug` stays redacted like `Secret`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireSecret(pub Secret);

impl Serialize for WireSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose())
    }
}

impl<'de> Deserialize<'de> for WireSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| WireSecret(Secret::new(s)))
    }
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Required: a time, or `null` for a token that never expires, so that a
    /// forgotten field never makes an eternal token.
    #[serde(default, deserialize_with = "present")]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<crate::limits::Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<crate::limits::Quota>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "crate::limits::cidrs"
    )]
    pub allow_ip: Vec<ipnet::IpNet>,
    /// `{"jkt": THUMBPRINT}`: bind the token to a DPoP key (RFC 9449 §6.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<crate::model::Cnf>,
}

impl CreateRequest {
    /// The token this request asks for, with the expiry the server settled on
    /// (the admin API and its fuzz target build it the same way).
    pub fn into_new_token(self, expires_at: Option<DateTime<Utc>>) -> crate::model::NewToken {
        crate::model::NewToken {
            name: self.name,
            description: self.description,
            scopes: self.scopes,
            labels: self.labels,
            expires_at,
            max_uses: self.max_uses,
            rate: self.rate,
            quota: self.quota,
            allow_ip: self.allow_ip,
            cnf: self.cnf,
        }
    }
}

/// Tells a field given as `null` (`Some(None)`) from a missing one (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The answer to a create or a rotate: the only time a secret is sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedResponse {
    pub token: Token,
    pub secret: WireSecret,
}

/// `GET /v1/tokens`: one page, and the cursor of the next when there may be more.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResponse {
    pub tokens: Vec<Token>,
    pub next_cursor: Option<String>,
}

/// `POST /v1/tokens/lookup`: the secret travels in the body, never in a URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    pub secret: WireSecret,
}

/// `POST /v1/tokens/{id}/revoke`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeResponse {
    pub token: Token,
    pub outcome: RevokeOutcome,
}

/// `POST /v1/tokens/{id}/rotate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Keep the old token valid this many seconds more; absent: revoke it now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotateResponse {
    /// The new token.
    pub token: Token,
    pub secret: WireSecret,
    /// The old token, revoked or with its shortened expiry.
    pub old: Token,
}

/// `GET /v1/audit`: entries oldest first, and where the next page starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<crate::store::audit::Entry>,
    /// Pass back as `after_seq` for the next page; null when this one is the last.
    pub next_after_seq: Option<i64>,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// Every error the API answers: `{"error":{"code":...,"message":...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, for programs: see docs/admin-api.md.
    pub code: String,
    /// For people; never holds a secret.
    pub message: String,
}

/// The stable error codes.
pub mod code {
    pub const INVALID_REQUEST: &str = "invalid_request";
    pub const INVALID_TOKEN: &str = "invalid_token";
    pub const INSUFFICIENT_SCOPE: &str = "insufficient_scope";
    pub const NOT_FOUND: &str = "not_found";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const TOKEN_REVOKED: &str = "token_revoked";
    pub const TOKEN_ROTATED: &str = "token_rotated";
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    pub const INTERNAL: &str = "internal_error";
    /// 503: the token store cannot be reached; retry after `Retry-After`.
    pub const UNAVAILABLE: &str = "unavailable";
}

/// How a caller is recorded in created_by and revoked_by: `tk_abc (ci-admin)`.
pub fn principal_of(t: &Token) -> String {
    match &t.name {
        Some(n) => format!("{} ({n})", t.id),
        None => t.id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_at_must_be_present_but_may_be_null() {
        let r: CreateRequest = serde_json::from_str(r#"{"expires_at":null}"#).unwrap();
        assert_eq!(r.expires_at, Some(None));
        let r: CreateRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(r.expires_at, None);
        let r: CreateRequest =
            serde_json::from_str(r#"{"expires_at":"2030-01-01T00:00:00Z"}"#).unwrap();
        assert!(matches!(r.expires_at, Some(Some(_))));
        let e = serde_json::from_str::<CreateRequest>(r#"{"expires_at":null,"nmae":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `nmae`"), "{e}");
    }

    #[test]
    fn a_wire_secret_is_redacted_in_debug() {
        let s = Secret::generate();
        let body = LookupRequest {
            secret: WireSecret(s.clone()),
        };
        assert!(!format!("{body:?}").contains(s.expose()));
        assert!(serde_json::to_string(&body).unwrap().contains(s.expose()));
    }
}

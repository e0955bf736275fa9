//! The `kong` driver: key-auth credentials of Kong consumers, through the
//! Admin API (Kong Gateway 3.9; `kong/plugins/key-auth/daos.lua` and the
//! generated endpoints of `kong/api/endpoints.lua`).
//!
//! A token is a credential; its id is the credential's UUID. tok makes the key
//! itself (`Secret::generate`). Labels are the credential's tags (`key=value`),
//! the expiry its `ttl`. Kong reports the ttl that is left and drops a
//! credential once it expires (404 from then on), so expired keys vanish
//! rather than list as expired. Revoking deletes. Kong OSS has no Admin API
//! authentication; Kong Enterprise takes a `Kong-Admin-Token`.
//!
//! `whoami` reads the node information, `GET /` (kong/api/routes/kong.lua):
//! with RBAC on, a wrong or missing token gets 401. Kong OSS and Enterprise
//! with RBAC off answer anyone, so a token they accept is reported as not
//! checked (`configuration.rbac` says which).

use super::gateway_api::{self, AdminApi, Answer};
use super::{DriverError, DriverKind, Gateway, Identity, Result, Settings};
use crate::error::Kind;
use crate::model::{check_new_token, Created, Filter, NewToken, RevokeOutcome, Token};
use crate::secret::{self, Secret};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Kong's largest page (`max_page_size` in endpoints.lua).
const PAGE_SIZE: &str = "1000";
/// Kong refuses a ttl above this many seconds.
const TTL_MAX: i64 = 100_000_000;

pub struct Kong {
    api: AdminApi,
    owner: Option<String>,
    /// Whether a `Kong-Admin-Token` goes with every request.
    token: bool,
}

/// `GET /`: what whoami reads of the node information.
#[derive(Deserialize)]
struct Node {
    version: String,
    #[serde(default)]
    configuration: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
struct Credential {
    id: String,
    #[serde(default)]
    created_at: i64,
    #[serde(default)]
    consumer: Option<Ref>,
    #[serde(default)]
    key: String,
    /// Seconds left, as Kong counts at read time; null without a ttl.
    #[serde(default)]
    ttl: Option<i64>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Ref {
    id: String,
}

#[derive(Deserialize)]
struct Page {
    data: Vec<Credential>,
    #[serde(default)]
    offset: Option<String>,
}

impl Kong {
    pub fn new(settings: Settings, owner: Option<String>) -> Result<Kong> {
        let auth = settings
            .credential
            .as_ref()
            .map(|c| ("kong-admin-token", &c.secret));
        Ok(Kong {
            api: AdminApi::new(&settings, auth)?,
            owner: owner.filter(|o| !o.trim().is_empty()),
            token: auth.is_some(),
        })
    }

    /// Maps Kong's error answers; `missing` names what a 404 means.
    fn check(
        &self,
        answer: Answer,
        secrets: &[&Secret],
        missing: impl FnOnce() -> DriverError,
    ) -> Result<Answer> {
        if answer.ok() {
            return Ok(answer);
        }
        let message = answer
            .value()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
            .map(|m| gateway_api::redact(&m, secrets));
        match answer.status {
            401 | 403 => Err(gateway_api::refused_credential(
                DriverKind::Kong,
                &answer,
                message.as_deref().unwrap_or("refused"),
                "an RBAC token with rights on consumers and key-auths (Kong Enterprise); Kong OSS needs none",
            )),
            404 => Err(missing()),
            400 | 409 if message.is_some() => Err(DriverError::Gateway {
                message: format!(
                    "Kong refused the request (HTTP {} from {}): {}",
                    answer.status,
                    answer.url,
                    message.unwrap_or_default()
                ),
                kind: if answer.status == 400 { Kind::Usage } else { Kind::Failure },
                hint: None,
            }),
            _ => Err(answer.http_error(secrets)),
        }
    }

    fn no_consumer(consumer: &str) -> DriverError {
        DriverError::Gateway {
            message: format!("Kong has no consumer `{consumer}`"),
            kind: Kind::NotFound,
            hint: Some(
                "check --owner (or TOK_OWNER, or the profile's `owner`): it takes a consumer's username or id"
                    .into(),
            ),
        }
    }

    /// Every credential (of the owner, when one is set), all pages.
    fn all(&self, owner: Option<&str>) -> Result<Vec<(Credential, DateTime<Utc>)>> {
        let path = match owner {
            Some(c) => format!("/consumers/{}/key-auth", gateway_api::encode_segment(c)),
            None => "/key-auths".to_string(),
        };
        let mut out = Vec::new();
        let mut offset: Option<String> = None;
        loop {
            let mut query = vec![("size", PAGE_SIZE)];
            if let Some(o) = &offset {
                query.push(("offset", o.as_str()));
            }
            let read_at = Utc::now();
            let answer = self.api.call(Method::GET, &path, &query, None)?;
            let answer = self.check(answer, &[], || match owner {
                Some(c) => Self::no_consumer(c),
                None => DriverError::Protocol {
                    url: path.clone(),
                    message: "GET /key-auths answered 404: is the key-auth plugin enabled?".into(),
                },
            })?;
            let page: Page = answer.json()?;
            out.extend(page.data.into_iter().map(|c| (c, read_at)));
            match page.offset {
                Some(o) if !o.is_empty() => offset = Some(o),
                _ => break,
            }
        }
        Ok(out)
    }

    fn fetch(&self, id: &str) -> Result<(Credential, DateTime<Utc>)> {
        let read_at = Utc::now();
        let answer = self.api.call(
            Method::GET,
            &format!("/key-auths/{}", gateway_api::encode_segment(id)),
            &[],
            None,
        )?;
        let answer = self.check(answer, &[], || DriverError::NotFound(id.to_string()))?;
        Ok((answer.json()?, read_at))
    }

    /// A credential by exact id or unique id prefix.
    fn find(&self, id_or_prefix: &str) -> Result<(Credential, DateTime<Utc>)> {
        if is_uuid(id_or_prefix) {
            return self.fetch(id_or_prefix);
        }
        // Not a whole id: Kong would read it as a key, so match prefixes here.
        let all = self.all(None)?;
        let id = gateway_api::resolve_prefix(all.iter().map(|(c, _)| c.id.as_str()), id_or_prefix)?;
        all.into_iter()
            .find(|(c, _)| c.id == id)
            .ok_or(DriverError::NotFound(id))
    }

    fn post(
        &self,
        consumer: &str,
        key: &Secret,
        expires_at: Option<DateTime<Utc>>,
        tags: Vec<String>,
    ) -> Result<Token> {
        let now = Utc::now();
        let mut body = json!({ "key": key.expose() });
        if let Some(e) = expires_at {
            let ttl = gateway_api::seconds_until(e, now);
            if ttl > TTL_MAX {
                return Err(DriverError::Invalid(format!(
                    "Kong keeps a ttl of at most {TTL_MAX} seconds (about 3 years); choose a shorter --ttl or an earlier --expires-at"
                )));
            }
            body["ttl"] = json!(ttl);
        }
        if !tags.is_empty() {
            body["tags"] = json!(tags);
        }
        let answer = self.api.call(
            Method::POST,
            &format!(
                "/consumers/{}/key-auth",
                gateway_api::encode_segment(consumer)
            ),
            &[],
            Some(&body),
        )?;
        let answer = self.check(answer, &[key], || Self::no_consumer(consumer))?;
        let cred: Credential = answer.json()?;
        to_token(&cred, now, self.api.base())
    }

    /// A new ttl, counted from now by Kong.
    fn set_ttl(&self, id: &str, ttl: i64) -> Result<Token> {
        if ttl > TTL_MAX {
            return Err(DriverError::Invalid(format!(
                "Kong keeps a ttl of at most {TTL_MAX} seconds (about 3 years); choose a shorter --increment"
            )));
        }
        let now = Utc::now();
        let answer = self.api.call(
            Method::PATCH,
            &format!("/key-auths/{}", gateway_api::encode_segment(id)),
            &[],
            Some(&json!({ "ttl": ttl })),
        )?;
        let answer = self.check(answer, &[], || DriverError::NotFound(id.to_string()))?;
        let updated: Credential = answer.json()?;
        let mut t = to_token(&updated, now, self.api.base())?;
        if t.expires_at.is_none() {
            // `ttl` is at most TTL_MAX (checked above).
            t.expires_at = Some(now + chrono::TimeDelta::seconds(ttl));
        }
        Ok(t)
    }

    fn delete(&self, cred: &Credential) -> Result<()> {
        let consumer = cred
            .consumer
            .as_ref()
            .ok_or_else(|| DriverError::Protocol {
                url: self.api.base().to_string(),
                message: format!("credential {} has no consumer", cred.id),
            })?;
        let answer = self.api.call(
            Method::DELETE,
            &format!(
                "/consumers/{}/key-auth/{}",
                gateway_api::encode_segment(&consumer.id),
                gateway_api::encode_segment(&cred.id)
            ),
            &[],
            None,
        )?;
        self.check(answer, &[], || DriverError::NotFound(cred.id.clone()))?;
        Ok(())
    }
}

impl Gateway for Kong {
    fn kind(&self) -> DriverKind {
        DriverKind::Kong
    }

    fn usage_note(&self) -> Option<String> {
        Some(
            "clients send this key in the `apikey` header (key-auth's default key_names), without `Bearer `"
                .into(),
        )
    }

    fn create(&self, new: &NewToken) -> Result<Created> {
        check_new_token(new).map_err(DriverError::Invalid)?;
        let consumer = self.owner.as_deref().ok_or_else(|| DriverError::Gateway {
            message: "a Kong key belongs to a consumer, and none was named".into(),
            kind: Kind::Usage,
            hint: Some(
                "pass --owner CONSUMER (or set TOK_OWNER, or `owner` in the profile)".into(),
            ),
        })?;
        let tags = tags_of(&new.labels)?;
        let secret = Secret::generate();
        let token = self.post(consumer, &secret, new.expires_at, tags)?;
        Ok(Created { token, secret })
    }

    fn list(&self, filter: &Filter, sink: &mut dyn FnMut(Token) -> Result<()>) -> Result<()> {
        let tokens = self
            .all(self.owner.as_deref())?
            .iter()
            .map(|(c, at)| to_token(c, *at, self.api.base()))
            .collect::<Result<_>>()?;
        gateway_api::emit(tokens, filter, sink)
    }

    fn get(&self, id_or_prefix: &str) -> Result<Token> {
        let (cred, at) = self.find(id_or_prefix)?;
        to_token(&cred, at, self.api.base())
    }

    /// Kong ids are UUIDs.
    fn looks_like_id(&self, s: &str) -> bool {
        super::hex_shaped(s, 36)
    }

    fn lookup(&self, secret: &Secret) -> Result<Token> {
        let unknown = || DriverError::UnknownSecret {
            fingerprint: gateway_api::fingerprint(secret.expose()),
        };
        if is_uuid(secret.expose()) {
            // Kong reads a UUID in that place as an id, not a key.
            return self
                .all(None)?
                .iter()
                .find(|(c, _)| secret::ct_eq(c.key.as_bytes(), secret.expose().as_bytes()))
                .ok_or_else(unknown)
                .and_then(|(c, at)| to_token(c, *at, self.api.base()));
        }
        let read_at = Utc::now();
        let answer = self
            .api
            .call_with_secret(Method::GET, "/key-auths/", secret, "", &[])?;
        let answer = self.check(answer, &[secret], unknown)?;
        let cred: Credential = answer.json()?;
        to_token(&cred, read_at, self.api.base())
    }

    fn whoami(&self) -> Result<Identity> {
        let answer = self.api.call(Method::GET, "/", &[], None)?;
        let url = answer.url.clone();
        let answer = self.check(answer, &[], || DriverError::Protocol {
            url: url.clone(),
            message: "GET / answered 404: is this Kong's Admin API (port 8001), not its proxy?"
                .into(),
        })?;
        let node: Node = answer.json()?;
        // Kong Enterprise's `enforce_rbac`: on, both and entity check tokens.
        let rbac = node
            .configuration
            .get("rbac")
            .and_then(Value::as_str)
            .is_some_and(|r| matches!(r, "on" | "both" | "entity"));
        let api = format!("Kong Admin API {}", node.version);
        let (principal, checked) = match (self.token, rbac) {
            (true, true) => (format!("{api}, RBAC token"), true),
            (true, false) => (
                format!("{api}, which checks no admin token (Kong OSS, or RBAC off)"),
                false,
            ),
            (false, _) => (format!("{api}, without an admin token"), true),
        };
        Ok(Identity {
            principal,
            expires_at: None,
            scopes: Vec::new(),
            checked,
        })
    }

    fn revoke(&self, id: &str, reason: Option<&str>) -> Result<(Token, RevokeOutcome)> {
        let (cred, at) = self.find(id)?;
        let token = to_token(&cred, at, self.api.base())?;
        self.delete(&cred)?;
        Ok((gateway_api::revoked(token, reason), RevokeOutcome::Revoked))
    }

    fn renew(&self, id: &str, increment: Option<u64>) -> Result<Token> {
        let (cred, at) = self.find(id)?;
        let now = Utc::now();
        let until = gateway_api::renewed_until(
            &to_token(&cred, at, self.api.base())?,
            increment,
            now,
            self.api.base(),
        )?;
        self.set_ttl(&cred.id, gateway_api::seconds_until(until, now))
    }

    fn rotate(&self, id: &str, grace: Option<u64>) -> Result<(Created, Token)> {
        let (cred, at) = self.find(id)?;
        let old = to_token(&cred, at, self.api.base())?;
        let consumer = cred
            .consumer
            .as_ref()
            .map(|c| c.id.clone())
            .ok_or_else(|| DriverError::Protocol {
                url: self.api.base().to_string(),
                message: format!("credential {} has no consumer", cred.id),
            })?;
        let now = Utc::now();
        let secret = Secret::generate();
        // The tags go over as they are, labels or not.
        let token = self.post(
            &consumer,
            &secret,
            gateway_api::same_lifetime(&old, now, self.api.base())?,
            cred.tags.clone().unwrap_or_default(),
        )?;
        let created = Created { token, secret };
        let old = match grace {
            None => {
                self.delete(&cred)?;
                gateway_api::revoked(old, Some(&format!("rotated to {}", created.token.id)))
            }
            Some(g) => {
                let g = g.min(TTL_MAX as u64) as i64;
                let ttl = cred.ttl.map_or(g, |left| left.clamp(1, g.max(1)));
                self.set_ttl(&cred.id, ttl)?
            }
        };
        Ok((created, old))
    }
}

/// The token of credential `c` as read at `read_at` from the gateway at `url`;
/// a ttl past any date is a `Protocol` error (Kong itself allows 100000000s).
fn to_token(c: &Credential, read_at: DateTime<Utc>, url: &str) -> Result<Token> {
    let created_at = gateway_api::from_unix(c.created_at).unwrap_or(read_at);
    let expires_at = c
        .ttl
        .map(|left| {
            crate::duration::checked_after(read_at, left.max(0)).ok_or_else(|| {
                DriverError::Protocol {
                    url: url.to_string(),
                    message: format!(
                        "key-auth credential {} has a ttl of {left} seconds, past any date",
                        c.id
                    ),
                }
            })
        })
        .transpose()?;
    let mut t = gateway_api::token(c.id.clone(), created_at, expires_at);
    t.labels = labels_of(c.tags.as_deref().unwrap_or_default());
    t.fingerprint = gateway_api::fingerprint(&c.key);
    Ok(t)
}

/// `key=value` tags become labels; a tag without `=` is a label with no value.
fn labels_of(tags: &[String]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (t.clone(), String::new()),
        })
        .collect()
}

/// Labels as Kong tags, checked against Kong's tag rules before any request.
fn tags_of(labels: &BTreeMap<String, String>) -> Result<Vec<String>> {
    labels
        .iter()
        .map(|(k, v)| {
            let tag = format!("{k}={v}");
            if tag.contains([',', '/']) || tag.chars().any(char::is_control) {
                Err(DriverError::Invalid(format!(
                    "label `{tag}` cannot be a Kong tag: tags may not hold `,`, `/` or control characters"
                )))
            } else {
                Ok(tag)
            }
        })
        .collect()
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_labels_round_trip() {
        let labels: BTreeMap<String, String> =
            [("team".to_string(), "payments".to_string())].into();
        let tags = tags_of(&labels).unwrap();
        assert_eq!(tags, vec!["team=payments"]);
        assert_eq!(labels_of(&tags), labels);
        assert_eq!(labels_of(&["plain".into()])["plain"], "");
        let bad: BTreeMap<String, String> = [("a".to_string(), "x/y".to_string())].into();
        assert!(tags_of(&bad).is_err());
    }

    #[test]
    fn a_ttl_past_any_date_is_a_protocol_error_not_a_panic() {
        let cred = |ttl| Credential {
            id: "4e3ad2e4-0bc4-4638-8e34-c84a417ba39b".into(),
            created_at: 1_700_000_000,
            consumer: None,
            key: "k".repeat(32),
            ttl: Some(ttl),
            tags: None,
        };
        let now = Utc::now();
        let t = to_token(&cred(60), now, "http://kong:8001").unwrap();
        assert_eq!(t.expires_at, Some(now + chrono::TimeDelta::seconds(60)));
        for ttl in [i64::MAX, i64::MAX / 1000 + 1, 9_000_000_000_000] {
            let e = to_token(&cred(ttl), now, "http://kong:8001").unwrap_err();
            assert!(matches!(e, DriverError::Protocol { .. }), "{e}");
            assert!(e.to_string().contains("past any date"), "{e}");
        }
        // A negative ttl (Kong's clock ran past it) reads as expired now.
        let t = to_token(&cred(-5), now, "http://kong:8001").unwrap();
        assert_eq!(t.expires_at, Some(now));
    }

    #[test]
    fn uuids() {
        assert!(is_uuid("4e3ad2e4-0bc4-4638-8e34-c84a417ba39b"));
        assert!(!is_uuid("4e3ad2e4"));
        assert!(!is_uuid("tok_4e3ad2e40bc446388e34c84a417ba39b0123456789ab"));
    }
}

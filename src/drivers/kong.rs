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

use super::http_client::{encode_segment, AdminApi, Dialect};
use super::keys::{self, KeyGateway, Reach};
use super::{DriverError, DriverKind, Identity, Result, Settings};
use crate::error::Kind;
use crate::model::{Created, NewToken, Token};
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Kong's largest page (`max_page_size` in endpoints.lua).
const PAGE_SIZE: &str = "1000";
/// Kong refuses a ttl above this many seconds.
const TTL_MAX: i64 = 100_000_000;

static DIALECT: Dialect = Dialect {
    refusals: &[(400, Kind::Usage), (409, Kind::Failure)],
    ..Dialect::new(DriverKind::Kong, "Kong", "kong-admin-token")
};

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
pub struct Credential {
    pub id: String,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub consumer: Option<Ref>,
    #[serde(default)]
    pub key: String,
    /// Seconds left, as Kong counts at read time; null without a ttl.
    #[serde(default)]
    pub ttl: Option<i64>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
pub struct Ref {
    pub id: String,
}

#[derive(Deserialize)]
struct Page {
    data: Vec<Credential>,
    #[serde(default)]
    offset: Option<String>,
}

/// A credential and when it was read (its ttl counts from then).
type Raw = (Credential, DateTime<Utc>);

impl Kong {
    pub fn new(settings: Settings, owner: Option<String>) -> Result<Kong> {
        let secret = settings.credential.as_ref().map(|c| &c.secret);
        Ok(Kong {
            api: AdminApi::new(&settings, &DIALECT, secret)?,
            owner,
            token: secret.is_some(),
        })
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

    /// Every credential (of `owner`, when one is given), all pages.
    fn all(&self, owner: Option<&str>) -> Result<Vec<Raw>> {
        let path = match owner {
            Some(c) => format!("/consumers/{}/key-auth", encode_segment(c)),
            None => "/key-auths".to_string(),
        };
        let mut out = Vec::new();
        let mut offset: Option<String> = None;
        loop {
            let mut query = vec![("size", PAGE_SIZE)];
            query.extend(offset.as_deref().map(|o| ("offset", o)));
            let read_at = Utc::now();
            let answer =
                self.api
                    .expect(Method::GET, &path, &query, None, &[], |_| match owner {
                        Some(c) => Self::no_consumer(c),
                        None => DriverError::Protocol {
                            url: path.clone(),
                            message: "GET /key-auths answered 404: is the key-auth plugin enabled?"
                                .into(),
                        },
                    })?;
            let page: Page = answer.json()?;
            out.extend(page.data.into_iter().map(|c| (c, read_at)));
            match page.offset {
                Some(o) if !o.is_empty() => offset = Some(o),
                _ => return Ok(out),
            }
        }
    }

    fn post(
        &self,
        consumer: &str,
        key: &Secret,
        expires_at: Option<DateTime<Utc>>,
        tags: Vec<String>,
    ) -> Result<Created> {
        let now = Utc::now();
        let mut body = json!({ "key": key.expose() });
        if let Some(e) = expires_at {
            body["ttl"] = json!(ttl(
                keys::seconds_until(e, now),
                "--ttl or an earlier --expires-at"
            )?);
        }
        if !tags.is_empty() {
            body["tags"] = json!(tags);
        }
        let path = format!("/consumers/{}/key-auth", encode_segment(consumer));
        let answer = self
            .api
            .expect(Method::POST, &path, &[], Some(&body), &[key], |_| {
                Self::no_consumer(consumer)
            })?;
        Ok(Created {
            token: to_token(&answer.json()?, now, self.api.base())?,
            secret: key.clone(),
        })
    }
}

/// `secs` as a ttl Kong takes, or advice to choose a shorter `what`.
fn ttl(secs: i64, what: &str) -> Result<i64> {
    if secs > TTL_MAX {
        return Err(DriverError::Invalid(format!(
            "Kong keeps a ttl of at most {TTL_MAX} seconds (about 3 years); choose a shorter {what}"
        )));
    }
    Ok(secs)
}

fn consumer_of(c: &Credential, url: &str) -> Result<String> {
    c.consumer
        .as_ref()
        .map(|r| r.id.clone())
        .ok_or_else(|| DriverError::Protocol {
            url: url.to_string(),
            message: format!("credential {} has no consumer", c.id),
        })
}

impl KeyGateway for Kong {
    type Raw = Raw;

    fn api(&self) -> &AdminApi {
        &self.api
    }

    fn list_raw(&self, reach: Reach) -> Result<Vec<Raw>> {
        // Ids and secrets are looked for among every consumer's keys.
        self.all(self.owner.as_deref().filter(|_| reach == Reach::List))
    }

    /// Only a whole id: Kong would read anything else in that place as a key.
    fn fetch(&self, id: &str) -> Result<Option<Raw>> {
        if !is_uuid(id) {
            return Ok(None);
        }
        let read_at = Utc::now();
        let path = format!("/key-auths/{}", encode_segment(id));
        let answer = self.api.expect(Method::GET, &path, &[], None, &[], |_| {
            DriverError::NotFound(id.into())
        })?;
        Ok(Some((answer.json()?, read_at)))
    }

    fn id_of(&self, raw: &Raw) -> Option<String> {
        Some(raw.0.id.clone())
    }

    fn key_of<'a>(&self, raw: &'a Raw) -> Option<&'a str> {
        Some(&raw.0.key)
    }

    fn to_token(&self, raw: &Raw) -> Result<Token> {
        to_token(&raw.0, raw.1, self.api.base())
    }

    fn create(&self, new: &NewToken) -> Result<Created> {
        let consumer = self
            .owner
            .as_deref()
            .ok_or_else(|| keys::owner_needed("Kong"))?;
        let tags = tags_of(&new.labels)?;
        self.post(consumer, &Secret::generate(), new.expires_at, tags)
    }

    /// The tags go over as they are, labels or not.
    fn recreate(
        &self,
        raw: &Raw,
        _old: &Token,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Created> {
        let consumer = consumer_of(&raw.0, self.api.base())?;
        self.post(
            &consumer,
            &Secret::generate(),
            expires_at,
            raw.0.tags.clone().unwrap_or_default(),
        )
    }

    fn delete(&self, (cred, _): &Raw) -> Result<()> {
        let path = format!(
            "/consumers/{}/key-auth/{}",
            encode_segment(&consumer_of(cred, self.api.base())?),
            encode_segment(&cred.id)
        );
        self.api
            .expect(Method::DELETE, &path, &[], None, &[], |_| {
                DriverError::NotFound(cred.id.clone())
            })?;
        Ok(())
    }

    /// A new ttl, counted from now by Kong.
    fn set_expiry(&self, (cred, _): Raw, until: DateTime<Utc>) -> Result<Token> {
        let now = Utc::now();
        let ttl = ttl(keys::seconds_until(until, now), "--increment")?;
        let path = format!("/key-auths/{}", encode_segment(&cred.id));
        let body = json!({ "ttl": ttl });
        let answer = self
            .api
            .expect(Method::PATCH, &path, &[], Some(&body), &[], |_| {
                DriverError::NotFound(cred.id.clone())
            })?;
        let mut t = to_token(&answer.json()?, now, self.api.base())?;
        // `ttl` is at most TTL_MAX (checked above).
        t.expires_at = t.expires_at.or(Some(now + chrono::TimeDelta::seconds(ttl)));
        Ok(t)
    }

    /// Kong looks a key up itself, but reads a UUID in that place as an id.
    fn lookup(&self, secret: &Secret) -> Result<Option<Token>> {
        if is_uuid(secret.expose()) {
            return Ok(None);
        }
        let read_at = Utc::now();
        let answer = self
            .api
            .call_with_secret(Method::GET, "/key-auths/", secret)?;
        let answer = self
            .api
            .check(answer, &[secret], |_| keys::unknown_secret(secret))?;
        to_token(&answer.json()?, read_at, self.api.base()).map(Some)
    }

    fn whoami(&self) -> Result<Identity> {
        let answer = self.api.expect(Method::GET, "/", &[], None, &[], |_| {
            DriverError::Protocol {
                url: format!("{}/", self.api.base()),
                message: "GET / answered 404: is this Kong's Admin API (port 8001), not its proxy?"
                    .into(),
            }
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

    /// Kong ids are UUIDs.
    fn looks_like_id(&self, s: &str) -> bool {
        super::hex_shaped(s, 36)
    }
}

/// The token of credential `c` as read at `read_at` from the gateway at `url`;
/// a ttl past any date is a `Protocol` error (Kong itself allows 100000000s).
pub fn to_token(c: &Credential, read_at: DateTime<Utc>, url: &str) -> Result<Token> {
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
    let created_at = keys::from_unix(c.created_at).unwrap_or(read_at);
    let mut t = Token::bare(c.id.clone(), created_at, expires_at);
    t.labels = labels_of(c.tags.as_deref().unwrap_or_default());
    t.fingerprint = keys::fingerprint(&c.key);
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

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

use super::http_client::{encode_segment, AdminApi, Dialect, Req};
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
    admin_api: "Kong's Admin API (port 8001), not its proxy",
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
    pub consumer: Option<Ref>,
    #[serde(default)]
    pub key: String,
    /// Seconds left, as Kong counts at read time; null without a ttl.
    pub ttl: Option<i64>,
    pub tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
pub struct Ref {
    pub id: String,
}

#[derive(Deserialize)]
struct Page {
    data: Vec<Credential>,
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
        let how = ": it takes a consumer's username or id";
        keys::no_such("Kong", ("consumer", "owner"), consumer, how)
    }

    /// Every credential (of `owner`, when one is given), all pages.
    fn all(&self, owner: Option<&str>) -> Result<Vec<Raw>> {
        let path = match owner {
            Some(c) => consumer_path(c),
            None => "/key-auths".to_string(),
        };
        let no_consumer = owner.map(|c| move || Self::no_consumer(c));
        keys::all_pages(|offset: Option<String>| {
            let mut query = vec![("size", PAGE_SIZE)];
            query.extend(offset.as_deref().map(|o| ("offset", o)));
            let read_at = Utc::now();
            let missing = no_consumer.as_ref().map(|m| m as &dyn Fn() -> DriverError);
            let page: Page = self
                .api
                .get_or(Req::get(&path).query(&query), missing)?
                .json()?;
            let creds = page.data.into_iter().map(|c| (c, read_at)).collect();
            Ok((creds, page.offset.filter(|o| !o.is_empty())))
        })
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
        let path = consumer_path(consumer);
        let post = Req::new(Method::POST, &path).body(&body).hiding(key);
        let answer = self.api.expect(post, |_| Self::no_consumer(consumer))?;
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

/// One credential, by id.
fn one(id: &str) -> String {
    format!("/key-auths/{}", encode_segment(id))
}

/// Where a consumer's key-auth credentials live.
fn consumer_path(consumer: &str) -> String {
    format!("/consumers/{}/key-auth", encode_segment(consumer))
}

fn consumer_of(c: &Credential, url: &str) -> Result<String> {
    c.consumer
        .as_ref()
        .map(|r| r.id.clone())
        .ok_or_else(|| DriverError::protocol(url, format!("credential {} has no consumer", c.id)))
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
        let answer = self.api.on_key(Req::get(&one(id)), id)?;
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
        let consumer = keys::owner(&self.owner, "Kong")?;
        let tags = tags_of(&new.labels)?;
        self.post(consumer, &Secret::generate(), new.expires_at, tags)
    }

    /// The tags go over as they are, labels or not.
    fn recreate(&self, (cred, _): &Raw, like: &NewToken) -> Result<Created> {
        let consumer = consumer_of(cred, self.api.base())?;
        let tags = cred.tags.clone().unwrap_or_default();
        self.post(&consumer, &Secret::generate(), like.expires_at, tags)
    }

    fn delete(&self, (cred, _): &Raw) -> Result<()> {
        let consumer = consumer_of(cred, self.api.base())?;
        let path = format!("{}/{}", consumer_path(&consumer), encode_segment(&cred.id));
        self.api.on_key(Req::new(Method::DELETE, &path), &cred.id)?;
        Ok(())
    }

    /// A new ttl, counted from now by Kong.
    fn set_expiry(&self, (cred, _): Raw, until: DateTime<Utc>) -> Result<Token> {
        let now = Utc::now();
        let ttl = ttl(keys::seconds_until(until, now), "--increment")?;
        let (path, body) = (one(&cred.id), json!({ "ttl": ttl }));
        let answer = self
            .api
            .on_key(Req::new(Method::PATCH, &path).body(&body), &cred.id)?;
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
        let answer = keys::look_up(&self.api, "/key-auths/", secret)?;
        to_token(&answer.json()?, read_at, self.api.base()).map(Some)
    }

    fn whoami(&self) -> Result<Identity> {
        let node: Node = self.api.probe(Req::get("/"))?.json()?;
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
            checked,
            ..Identity::checked(principal)
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
                let m = format!("key-auth credential {} has a ttl of {left} seconds", c.id);
                DriverError::protocol(url, format!("{m}, past any date"))
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

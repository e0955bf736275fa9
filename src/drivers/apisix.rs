//! The `apisix` driver: key-auth credentials of APISIX consumers, through the
//! Admin API (Apache APISIX 3.11+: `apisix/admin/credentials.lua`, the v3
//! list format of `apisix/admin/v3_adapter.lua`).
//!
//! A token is a credential; its id is `<consumer>/<credential id>` (tok picks
//! the credential id, `tok-` and 16 random characters, and the key itself).
//! `desc` is the description, `labels` the labels. There is no lookup by
//! secret: tok walks the consumers' credentials and compares in constant time.
//! Revoking deletes.
//!
//! Lifetimes are APISIX's own: the Admin API takes `?ttl=N` on PUT
//! (`apisix/admin/init.lua` validates it, `resource.lua` `_M:put` hands it to
//! `core/etcd.lua` `set`, which grants an etcd lease; `t/admin/routes4.t`
//! shows the resource gone once the lease ends). GET does not show the lease,
//! so tok also writes the expiry into the credential's labels
//! (`tok-expires-at`, RFC 3339) and reads it back from there. The lease is in
//! whole seconds, at least 2 (APISIX gives `ttl=0` 2 s too, and a fractional
//! one gets 503). A key past its expiry is gone from APISIX, so tok reports it
//! as not found, as for Kong. Renew and rotate's grace PUT the credential again
//! with a new ttl.
//!
//! A consumer with no credential answers 404 `Key not found` on its
//! credentials list (an empty etcd range: `core/etcd.lua` `get_format`,
//! `t/admin/credentials.t` TEST 13); tok reads that as an empty list when the
//! consumer itself exists.
//!
//! `whoami` reads the first page of consumers (the smallest page APISIX
//! takes): any key of the admin or viewer role reads it, a wrong one gets 401
//! `{"error_msg":"failed to check token"}` (apisix/admin/init.lua).

use super::http_client::{encode_segment, AdminApi, Dialect, Req};
use super::keys::{self, KeyGateway, Reach};
use super::{DriverError, DriverKind, Identity, Result, Settings};
use crate::error::Kind;
use crate::model::{Created, NewToken, Token};
use crate::secret::{self, Secret};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

const ADMIN: &str = "/apisix/admin";
/// APISIX's largest page (v3_adapter.lua answers 400 above it).
const PAGE_SIZE: usize = 500;
const PLUGIN: &str = "key-auth";
/// The label that carries a key's expiry (APISIX's GET does not show leases).
const EXPIRES_LABEL: &str = "tok-expires-at";
/// The shortest lease APISIX grants.
const TTL_MIN: i64 = 2;

static DIALECT: Dialect = Dialect {
    message: &["error_msg", "message"],
    refusals: &[(400, Kind::Usage)],
    bare_refusals: true,
    admin_api: "APISIX's Admin API (port 9180), not its proxy",
    ..Dialect::new(DriverKind::Apisix, "APISIX", "x-api-key")
};

pub struct Apisix {
    api: AdminApi,
    owner: Option<String>,
}

/// One entry of a v3 list, or a single v3 answer.
#[derive(Deserialize)]
pub struct Node {
    pub key: String,
    #[serde(default)]
    pub value: Map<String, Value>,
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    total: usize,
    /// An array; Lua encodes an empty one as `{}`.
    #[serde(default)]
    list: Value,
}

impl Apisix {
    pub fn new(settings: Settings, owner: Option<String>) -> Result<Apisix> {
        Ok(Apisix {
            api: AdminApi::needing(&settings, &DIALECT, "")?,
            owner,
        })
    }

    fn no_consumer(consumer: &str) -> DriverError {
        let how = "; create the consumer with PUT /apisix/admin/consumers";
        keys::no_such("APISIX", ("consumer", "owner"), consumer, how)
    }

    /// Every entry of a paged list, page after page; a 404 is `missing`, or
    /// the wrong API without it.
    fn pages(&self, path: &str, missing: Option<&dyn Fn() -> DriverError>) -> Result<Vec<Node>> {
        keys::all_pages(|page: Option<usize>| {
            let page = page.unwrap_or(1);
            let (page_s, size) = (page.to_string(), PAGE_SIZE.to_string());
            let query = [("page", page_s.as_str()), ("page_size", size.as_str())];
            let answer = self.api.get_or(Req::get(path).query(&query), missing)?;
            let list: List = answer.json()?;
            let nodes = nodes_of(list.list, &answer.url)?;
            let more = !nodes.is_empty() && page * PAGE_SIZE < list.total;
            Ok((nodes, more.then_some(page + 1)))
        })
    }

    fn consumers(&self) -> Result<Vec<String>> {
        if let Some(o) = &self.owner {
            return Ok(vec![o.clone()]);
        }
        let nodes = self.pages(&format!("{ADMIN}/consumers"), None)?;
        Ok(nodes
            .into_iter()
            // etcd keeps credentials under their consumer's prefix.
            .filter(|n| !n.key.contains("/credentials/"))
            .filter_map(|n| {
                n.value
                    .get("username")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .collect())
    }

    /// The key-auth credentials of one consumer.
    fn credentials(&self, consumer: &str) -> Result<Vec<Node>> {
        let path = format!("{ADMIN}/consumers/{}/credentials", encode_segment(consumer));
        // A consumer without credentials has no etcd range to list: 404.
        let nodes = match self.pages(&path, Some(&|| DriverError::NotFound(consumer.into()))) {
            Err(DriverError::NotFound(_)) => {
                self.consumer_exists(consumer)?;
                Vec::new()
            }
            other => other?,
        };
        Ok(nodes.into_iter().filter(|n| key_of(n).is_some()).collect())
    }

    /// Ok when APISIX has `consumer`, else "no such consumer".
    fn consumer_exists(&self, consumer: &str) -> Result<()> {
        let path = format!("{ADMIN}/consumers/{}", encode_segment(consumer));
        self.api
            .expect(Req::get(&path), |_| Self::no_consumer(consumer))?;
        Ok(())
    }

    /// Writes credential `cred` of `consumer` with `key`, leased until
    /// `expires_at` where there is one.
    fn put(
        &self,
        (consumer, cred): (&str, &str),
        desc: Option<&str>,
        labels: &BTreeMap<String, String>,
        key: &Secret,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Token> {
        check_labels(labels)?;
        let mut labels = labels.clone();
        let ttl = expires_at.map(|e| {
            labels.insert(EXPIRES_LABEL.into(), crate::output::rfc3339(e));
            keys::seconds_until(e, Utc::now()).max(TTL_MIN).to_string()
        });
        let mut body = json!({ "plugins": { PLUGIN: { "key": key.expose() } } });
        if let Some(d) = desc {
            body["desc"] = json!(d);
        }
        if !labels.is_empty() {
            body["labels"] = json!(labels);
        }
        let query: Vec<(&str, &str)> = ttl.iter().map(|t| ("ttl", t.as_str())).collect();
        let path = cred_path(consumer, cred);
        let put = Req::new(Method::PUT, &path).query(&query).body(&body);
        let answer = self
            .api
            .expect(put.hiding(key), |_| Self::no_consumer(consumer))?;
        let mut t = to_token(&answer.json()?).ok_or_else(|| {
            DriverError::protocol(&answer.url, "the answer does not hold the credential")
        })?;
        t.fingerprint = keys::fingerprint(key.expose());
        Ok(t)
    }

    /// A new credential of `consumer`, which must exist (asking first gives a
    /// clear error).
    fn add(&self, consumer: &str, new: &NewToken) -> Result<Created> {
        check_labels(&new.labels)?;
        self.consumer_exists(consumer)?;
        let cred = format!("tok-{}", secret::random_handle(16));
        let secret = Secret::generate();
        let desc = new.description.as_deref();
        let token = self.put(
            (consumer, &cred),
            desc,
            &new.labels,
            &secret,
            new.expires_at,
        )?;
        Ok(Created { token, secret })
    }
}

impl KeyGateway for Apisix {
    type Raw = Node;

    fn api(&self) -> &AdminApi {
        &self.api
    }

    fn list_raw(&self, _: Reach) -> Result<Vec<Node>> {
        let each = self.consumers()?.into_iter().map(|c| self.credentials(&c));
        Ok(each
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect())
    }

    fn fetch(&self, id: &str) -> Result<Option<Node>> {
        let Some((consumer, cred)) = id.split_once('/') else {
            return Ok(None);
        };
        let Some(answer) = self.api.get_opt(Req::get(&cred_path(consumer, cred)))? else {
            return Ok(None);
        };
        let node: Node = answer.json()?;
        if key_of(&node).is_none() {
            return Err(DriverError::Invalid(format!(
                "credential {id} is not a key-auth credential; tok manages key-auth only"
            )));
        }
        Ok(Some(node))
    }

    fn id_of(&self, n: &Node) -> Option<String> {
        id_of(n)
    }

    fn key_of<'a>(&self, n: &'a Node) -> Option<&'a str> {
        key_of(n)
    }

    fn to_token(&self, n: &Node) -> Result<Token> {
        to_token(n).ok_or_else(|| DriverError::NotFound(n.key.clone()))
    }

    fn create(&self, new: &NewToken) -> Result<Created> {
        self.add(keys::owner(&self.owner, "APISIX")?, new)
    }

    fn recreate(&self, n: &Node, like: &NewToken) -> Result<Created> {
        let id = id_of(n).unwrap_or_default();
        self.add(split(&id)?.0, like)
    }

    fn delete(&self, n: &Node) -> Result<()> {
        let id = id_of(n).unwrap_or_default();
        let (consumer, cred) = split(&id)?;
        let path = cred_path(consumer, cred);
        self.api.on_key(Req::new(Method::DELETE, &path), &id)?;
        Ok(())
    }

    /// Writes the credential again, leased until `until`.
    fn set_expiry(&self, n: Node, until: DateTime<Utc>) -> Result<Token> {
        let old = self.to_token(&n)?;
        let key = Secret::new(key_of(&n).unwrap_or_default());
        self.put(
            split(&old.id)?,
            old.description.as_deref(),
            &old.labels,
            &key,
            Some(until),
        )
    }

    fn whoami(&self) -> Result<Identity> {
        let query = [("page", "1"), ("page_size", "10")];
        let path = format!("{ADMIN}/consumers");
        let answer = self.api.probe(Req::get(&path).query(&query))?;
        nodes_of(answer.json::<List>()?.list, &answer.url)?;
        Ok(Identity::checked("APISIX Admin API key"))
    }

    /// `CONSUMER/CREDENTIAL`: APISIX's username and credential id patterns
    /// (`^[a-zA-Z0-9_-]+$`, `^[a-zA-Z0-9-_.]+$`), or a prefix.
    fn looks_like_id(&self, s: &str) -> bool {
        s.matches('/').count() <= 1 && super::id_shaped(s, 200, "-_./")
    }
}

/// The nodes of a v3 list's `list`, from `url`.
fn nodes_of(list: Value, url: &str) -> Result<Vec<Node>> {
    let protocol = |m: &str| DriverError::protocol(url, m);
    match list {
        Value::Array(_) => serde_json::from_value(list)
            .map_err(|e| protocol(&format!("`list` is not a list of {{key, value}} ({e})"))),
        Value::Object(m) if m.is_empty() => Ok(Vec::new()),
        Value::Null => Err(protocol(
            "the answer has no `list`; is the Admin API on admin_api_version v3 (APISIX 3.x)?",
        )),
        _ => Err(protocol("`list` is not a list")),
    }
}

fn split(id: &str) -> Result<(&str, &str)> {
    id.split_once('/')
        .ok_or_else(|| DriverError::NotFound(id.to_string()))
}

fn cred_path(consumer: &str, cred: &str) -> String {
    format!(
        "{ADMIN}/consumers/{}/credentials/{}",
        encode_segment(consumer),
        encode_segment(cred)
    )
}

/// `<consumer>/<credential>` from the etcd key `/apisix/consumers/<c>/credentials/<id>`.
fn id_of(n: &Node) -> Option<String> {
    let (head, cred) = n.key.rsplit_once("/credentials/")?;
    let consumer = head.rsplit('/').next()?;
    Some(format!("{consumer}/{cred}"))
}

fn key_of(n: &Node) -> Option<&str> {
    n.value.get("plugins")?.get(PLUGIN)?.get("key")?.as_str()
}

/// A credential node as a token; None when it is not a credential.
pub fn to_token(n: &Node) -> Option<Token> {
    let id = id_of(n)?;
    let time = |k: &str| {
        n.value
            .get(k)
            .and_then(Value::as_i64)
            .and_then(keys::from_unix)
    };
    let mut labels = keys::labels(n.value.get("labels"));
    let expires_at = labels
        .remove(EXPIRES_LABEL)
        .and_then(|e| DateTime::parse_from_rfc3339(&e).ok())
        .map(|e| e.with_timezone(&Utc));
    let mut t = Token::bare(id, time("create_time").unwrap_or_else(Utc::now), expires_at);
    t.labels = labels;
    t.description = n
        .value
        .get("desc")
        .and_then(Value::as_str)
        .map(String::from);
    if let Some(k) = key_of(n) {
        t.fingerprint = keys::fingerprint(k);
    }
    Some(t)
}

/// APISIX label values are 1 to 256 characters without white space
/// (`labels_def` in schema_def.lua); checked before any request. The expiry
/// label is tok's own.
fn check_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in labels {
        if k == EXPIRES_LABEL {
            return Err(DriverError::Invalid(format!(
                "label `{k}` is where tok keeps an APISIX key's expiry; give the lifetime with --ttl or --expires-at"
            )));
        }
        if v.is_empty() || v.chars().count() > 256 || v.chars().any(char::is_whitespace) {
            return Err(DriverError::Invalid(format!(
                "label `{k}={v}`: APISIX label values are 1 to 256 characters without white space"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_etcd_keys() {
        let n = Node {
            key: "/apisix/consumers/jack/credentials/tok-1".into(),
            value: Map::new(),
        };
        assert_eq!(id_of(&n).unwrap(), "jack/tok-1");
        let c = Node {
            key: "/apisix/consumers/jack".into(),
            value: Map::new(),
        };
        assert!(id_of(&c).is_none());
    }

    #[test]
    fn labels_follow_apisix_rules() {
        let ok: BTreeMap<String, String> = [("env".to_string(), "ci".to_string())].into();
        assert!(check_labels(&ok).is_ok());
        let bad: BTreeMap<String, String> = [("env".to_string(), "c i".to_string())].into();
        assert!(check_labels(&bad).is_err());
    }
}

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

use super::gateway_api::{self, AdminApi, Answer};
use super::{DriverError, DriverKind, Gateway, Identity, Result, Settings};
use crate::error::Kind;
use crate::model::{check_new_token, Created, Filter, NewToken, RevokeOutcome, Token};
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

pub struct Apisix {
    api: AdminApi,
    owner: Option<String>,
}

/// One entry of a v3 list, or a single v3 answer.
#[derive(Deserialize)]
struct Node {
    key: String,
    #[serde(default)]
    value: Map<String, Value>,
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
        let credential = settings.credential.as_ref().ok_or_else(|| {
            gateway_api::missing_credential(
                DriverKind::Apisix,
                "an APISIX admin key (deployment.admin.admin_key in config.yaml, role admin)",
            )
        })?;
        Ok(Apisix {
            api: AdminApi::new(&settings, Some(("x-api-key", &credential.secret)))?,
            owner: owner.filter(|o| !o.trim().is_empty()),
        })
    }

    fn check(
        &self,
        answer: Answer,
        secrets: &[&Secret],
        missing: impl FnOnce() -> DriverError,
    ) -> Result<Answer> {
        if answer.ok() {
            return Ok(answer);
        }
        let v = answer.value();
        let message = v
            .as_ref()
            .and_then(|v| v.get("error_msg").or_else(|| v.get("message")))
            .and_then(Value::as_str)
            .map(|m| gateway_api::redact(m, secrets));
        match answer.status {
            401 | 403 => Err(gateway_api::refused_credential(
                DriverKind::Apisix,
                &answer,
                message.as_deref().unwrap_or("refused"),
                "an admin key with the admin role (a viewer key cannot write)",
            )),
            404 => Err(missing()),
            400 => Err(DriverError::Gateway {
                message: format!(
                    "APISIX refused the request (HTTP 400 from {}): {}",
                    answer.url,
                    message.unwrap_or_else(|| answer.snippet(secrets))
                ),
                kind: Kind::Usage,
                hint: None,
            }),
            _ => Err(answer.http_error(secrets)),
        }
    }

    fn no_consumer(consumer: &str) -> DriverError {
        DriverError::Gateway {
            message: format!("APISIX has no consumer `{consumer}`"),
            kind: Kind::NotFound,
            hint: Some(
                "check --owner (or TOK_OWNER, or the profile's `owner`); create the consumer with PUT /apisix/admin/consumers"
                    .into(),
            ),
        }
    }

    /// Every entry of a paged list, page after page.
    fn pages(&self, path: &str, missing: impl Fn() -> DriverError) -> Result<Vec<Node>> {
        let mut out = Vec::new();
        let size = PAGE_SIZE.to_string();
        for page in 1.. {
            let page_s = page.to_string();
            let answer = self.api.call(
                Method::GET,
                path,
                &[("page", page_s.as_str()), ("page_size", size.as_str())],
                None,
            )?;
            let answer = self.check(answer, &[], &missing)?;
            let list: List = answer.json()?;
            let nodes: Vec<Node> = match list.list {
                Value::Array(_) => serde_json::from_value(list.list).map_err(|e| DriverError::Protocol {
                    url: answer.url.clone(),
                    message: format!("`list` is not a list of {{key, value}} ({e})"),
                })?,
                Value::Object(m) if m.is_empty() => Vec::new(),
                Value::Null => {
                    return Err(DriverError::Protocol {
                        url: answer.url.clone(),
                        message: "the answer has no `list`; is the Admin API on admin_api_version v3 (APISIX 3.x)?".into(),
                    })
                }
                _ => {
                    return Err(DriverError::Protocol {
                        url: answer.url.clone(),
                        message: "`list` is not a list".into(),
                    })
                }
            };
            let n = nodes.len();
            out.extend(nodes);
            if n == 0 || page * PAGE_SIZE >= list.total {
                break;
            }
        }
        Ok(out)
    }

    fn consumers(&self) -> Result<Vec<String>> {
        if let Some(o) = &self.owner {
            return Ok(vec![o.clone()]);
        }
        let nodes = self.pages(&format!("{ADMIN}/consumers"), || DriverError::Protocol {
            url: format!("{}{ADMIN}/consumers", self.api.base()),
            message: "GET /apisix/admin/consumers answered 404".into(),
        })?;
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
        let path = format!(
            "{ADMIN}/consumers/{}/credentials",
            gateway_api::encode_segment(consumer)
        );
        // A consumer without credentials has no etcd range to list: 404.
        let nodes = match self.pages(&path, || DriverError::NotFound(consumer.into())) {
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
        let answer = self.api.call(
            Method::GET,
            &format!(
                "{ADMIN}/consumers/{}",
                gateway_api::encode_segment(consumer)
            ),
            &[],
            None,
        )?;
        self.check(answer, &[], || Self::no_consumer(consumer))?;
        Ok(())
    }

    fn all(&self) -> Result<Vec<Node>> {
        let mut out = Vec::new();
        for c in self.consumers()? {
            out.extend(self.credentials(&c)?);
        }
        Ok(out)
    }

    fn fetch(&self, consumer: &str, cred: &str) -> Result<Node> {
        let answer = self
            .api
            .call(Method::GET, &cred_path(consumer, cred), &[], None)?;
        let answer = self.check(answer, &[], || {
            DriverError::NotFound(format!("{consumer}/{cred}"))
        })?;
        answer.json()
    }

    fn find(&self, id_or_prefix: &str) -> Result<Node> {
        if let Some((consumer, cred)) = id_or_prefix.split_once('/') {
            match self.fetch(consumer, cred) {
                Ok(n) if key_of(&n).is_some() => return Ok(n),
                Ok(_) => {
                    return Err(DriverError::Invalid(format!(
                        "credential {id_or_prefix} is not a key-auth credential; tok manages key-auth only"
                    )))
                }
                Err(DriverError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let all = self.all()?;
        let ids: Vec<String> = all.iter().filter_map(id_of).collect();
        let id = gateway_api::resolve_prefix(ids.iter().map(String::as_str), id_or_prefix)?;
        all.into_iter()
            .find(|n| id_of(n).as_deref() == Some(id.as_str()))
            .ok_or(DriverError::NotFound(id))
    }

    /// Writes credential `cred` of `consumer` with `key`, leased until
    /// `expires_at` where there is one.
    fn put(
        &self,
        consumer: &str,
        cred: &str,
        desc: Option<&str>,
        labels: &BTreeMap<String, String>,
        key: &Secret,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Token> {
        check_labels(labels)?;
        let mut labels = labels.clone();
        let ttl = expires_at.map(|e| {
            labels.insert(EXPIRES_LABEL.into(), crate::output::rfc3339(e));
            gateway_api::seconds_until(e, Utc::now())
                .max(TTL_MIN)
                .to_string()
        });
        let mut body = json!({ "plugins": { PLUGIN: { "key": key.expose() } } });
        if let Some(d) = desc {
            body["desc"] = json!(d);
        }
        if !labels.is_empty() {
            body["labels"] = json!(labels);
        }
        let query: Vec<(&str, &str)> = ttl.iter().map(|t| ("ttl", t.as_str())).collect();
        let answer = self
            .api
            .call(Method::PUT, &cred_path(consumer, cred), &query, Some(&body))?;
        let answer = self.check(answer, &[key], || Self::no_consumer(consumer))?;
        let node: Node = answer.json()?;
        let mut t = to_token(&node).ok_or_else(|| DriverError::Protocol {
            url: answer.url.clone(),
            message: "the answer does not hold the credential".into(),
        })?;
        t.fingerprint = gateway_api::fingerprint(key.expose());
        Ok(t)
    }

    /// A new credential of `consumer`, which must exist (asking first gives a
    /// clear error).
    fn add(
        &self,
        consumer: &str,
        desc: Option<&str>,
        labels: &BTreeMap<String, String>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Created> {
        check_labels(labels)?;
        self.consumer_exists(consumer)?;
        let cred = format!("tok-{}", secret::random_handle(16));
        let secret = Secret::generate();
        let token = self.put(consumer, &cred, desc, labels, &secret, expires_at)?;
        Ok(Created { token, secret })
    }

    /// Writes the credential of `node` again, leased until `until`.
    fn set_expiry(&self, node: &Node, until: DateTime<Utc>) -> Result<Token> {
        let old = to_token(node).ok_or_else(|| DriverError::NotFound(node.key.clone()))?;
        let (consumer, cred) = old
            .id
            .split_once('/')
            .ok_or_else(|| DriverError::NotFound(old.id.clone()))?;
        let key = Secret::new(key_of(node).unwrap_or_default());
        self.put(
            consumer,
            cred,
            old.description.as_deref(),
            &old.labels,
            &key,
            Some(until),
        )
    }

    fn delete(&self, id: &str) -> Result<()> {
        let (consumer, cred) = id
            .split_once('/')
            .ok_or_else(|| DriverError::NotFound(id.to_string()))?;
        let answer = self
            .api
            .call(Method::DELETE, &cred_path(consumer, cred), &[], None)?;
        self.check(answer, &[], || DriverError::NotFound(id.to_string()))?;
        Ok(())
    }
}

impl Gateway for Apisix {
    fn kind(&self) -> DriverKind {
        DriverKind::Apisix
    }

    fn usage_note(&self) -> Option<String> {
        Some(
            "clients send this key in the `apikey` header (key-auth's default), without `Bearer `; a key made with --no-expiry never expires: revoke it when done"
                .into(),
        )
    }

    fn create(&self, new: &NewToken) -> Result<Created> {
        check_new_token(new).map_err(DriverError::Invalid)?;
        let consumer = self.owner.as_deref().ok_or_else(|| DriverError::Gateway {
            message: "an APISIX key belongs to a consumer, and none was named".into(),
            kind: Kind::Usage,
            hint: Some(
                "pass --owner CONSUMER (or set TOK_OWNER, or `owner` in the profile)".into(),
            ),
        })?;
        self.add(
            consumer,
            new.description.as_deref(),
            &new.labels,
            new.expires_at,
        )
    }

    fn list(&self, filter: &Filter, sink: &mut dyn FnMut(Token) -> Result<()>) -> Result<()> {
        let tokens = self.all()?.iter().filter_map(to_token).collect();
        gateway_api::emit(tokens, filter, sink)
    }

    fn get(&self, id_or_prefix: &str) -> Result<Token> {
        let node = self.find(id_or_prefix)?;
        to_token(&node).ok_or_else(|| DriverError::NotFound(id_or_prefix.to_string()))
    }

    /// `CONSUMER/CREDENTIAL`: APISIX's username and credential id patterns
    /// (`^[a-zA-Z0-9_-]+$`, `^[a-zA-Z0-9-_.]+$`), or a prefix.
    fn looks_like_id(&self, s: &str) -> bool {
        s.matches('/').count() <= 1 && super::id_shaped(s, 200, "-_./")
    }

    fn lookup(&self, secret: &Secret) -> Result<Token> {
        self.all()?
            .iter()
            .find(|n| {
                key_of(n).is_some_and(|k| secret::ct_eq(k.as_bytes(), secret.expose().as_bytes()))
            })
            .and_then(to_token)
            .ok_or_else(|| DriverError::UnknownSecret {
                fingerprint: gateway_api::fingerprint(secret.expose()),
            })
    }

    fn whoami(&self) -> Result<Identity> {
        let path = format!("{ADMIN}/consumers");
        let answer = self.api.call(
            Method::GET,
            &path,
            &[("page", "1"), ("page_size", "10")],
            None,
        )?;
        let url = answer.url.clone();
        let answer = self.check(answer, &[], || DriverError::Protocol {
            url: url.clone(),
            message: "GET /apisix/admin/consumers answered 404: is this APISIX's Admin API (port 9180), not its proxy?".into(),
        })?;
        let list: List = answer.json()?;
        if list.list.is_null() {
            return Err(DriverError::Protocol {
                url,
                message: "the answer has no `list`; is this APISIX's Admin API on admin_api_version v3 (APISIX 3.x)?".into(),
            });
        }
        Ok(Identity {
            principal: "APISIX Admin API key".into(),
            expires_at: None,
            scopes: Vec::new(),
            checked: true,
        })
    }

    fn revoke(&self, id: &str, reason: Option<&str>) -> Result<(Token, RevokeOutcome)> {
        let node = self.find(id)?;
        let token = to_token(&node).ok_or_else(|| DriverError::NotFound(id.to_string()))?;
        self.delete(&token.id)?;
        Ok((gateway_api::revoked(token, reason), RevokeOutcome::Revoked))
    }

    fn renew(&self, id: &str, increment: Option<u64>) -> Result<Token> {
        let node = self.find(id)?;
        let old = to_token(&node).ok_or_else(|| DriverError::NotFound(id.to_string()))?;
        let until = gateway_api::renewed_until(&old, increment, Utc::now(), self.api.base())?;
        self.set_expiry(&node, until)
    }

    fn rotate(&self, id: &str, grace: Option<u64>) -> Result<(Created, Token)> {
        let node = self.find(id)?;
        let old = to_token(&node).ok_or_else(|| DriverError::NotFound(id.to_string()))?;
        let (consumer, _) = old
            .id
            .split_once('/')
            .ok_or_else(|| DriverError::NotFound(old.id.clone()))?;
        let now = Utc::now();
        let created = self.add(
            consumer,
            old.description.as_deref(),
            &old.labels,
            gateway_api::same_lifetime(&old, now, self.api.base())?,
        )?;
        let old = match grace {
            None => {
                self.delete(&old.id)?;
                gateway_api::revoked(old, Some(&format!("rotated to {}", created.token.id)))
            }
            Some(g) => {
                let g = g.min(crate::duration::MAX_SECONDS) as i64;
                let until = now + chrono::TimeDelta::seconds(g);
                self.set_expiry(&node, old.expires_at.map_or(until, |e| e.min(until)))?
            }
        };
        Ok((created, old))
    }
}

fn cred_path(consumer: &str, cred: &str) -> String {
    format!(
        "{ADMIN}/consumers/{}/credentials/{}",
        gateway_api::encode_segment(consumer),
        gateway_api::encode_segment(cred)
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

fn to_token(n: &Node) -> Option<Token> {
    let id = id_of(n)?;
    let time = |k: &str| {
        n.value
            .get(k)
            .and_then(Value::as_i64)
            .and_then(gateway_api::from_unix)
    };
    let mut labels: BTreeMap<String, String> = n
        .value
        .get("labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), String::from),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let expires_at = labels
        .remove(EXPIRES_LABEL)
        .and_then(|e| DateTime::parse_from_rfc3339(&e).ok())
        .map(|e| e.with_timezone(&Utc));
    let mut t = gateway_api::token(id, time("create_time").unwrap_or_else(Utc::now), expires_at);
    t.labels = labels;
    t.description = n
        .value
        .get("desc")
        .and_then(Value::as_str)
        .map(String::from);
    if let Some(k) = key_of(n) {
        t.fingerprint = gateway_api::fingerprint(k);
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

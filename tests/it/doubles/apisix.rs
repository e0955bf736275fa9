//! Contract double of the Apache APISIX 3.11 Admin API for consumers and
//! their credentials.
//!
//! Follows apache/apisix (3.11.0, compared with 3.18.0):
//! - apisix/admin/init.lua (key from `X-API-KEY`, `?api_key=` or the cookie;
//!   a wrong or missing one is 401 `{"error_msg":"failed to check token"}`;
//!   /consumers/<u>/credentials[/<id>] routed to the credentials resource;
//!   GET answers decrypt plugin fields, so a credential's key reads in plaintext)
//! - apisix/admin/credentials.lua (PUT, GET and DELETE; no POST or PATCH; only
//!   auth plugins; stored under /consumers/<u>/credentials/<id>)
//! - apisix/schema_def.lua (`credential`: id, plugins, labels, desc,
//!   create_time, update_time, nothing else; label values match `^\S+$`)
//! - apisix/admin/v3_adapter.lua (lists `{total, list:[{key, value,
//!   createdIndex, modifiedIndex}]}` sorted by createdIndex, `page` and
//!   `page_size` with page_size between 10 and 500, else a plain-text 400;
//!   single answers `{key, value}`)
//! - apisix/core/etcd.lua (`{"message":"Key not found"}` with 404; delete
//!   answers `{"deleted":"1","key":...}`; `get_format` answers that 404 for
//!   an empty range too, so listing the credentials of a consumer that has
//!   none is a 404, as `t/admin/credentials.t` TEST 13 expects)
//! - apisix/admin/init.lua and resource.lua `_M:put` (`?ttl=N` on PUT is an
//!   etcd lease: the resource is gone once it ends, `t/admin/routes4.t`; etcd
//!   grants at least 2 s, `ttl=0` included; a fractional ttl gets 503; GET
//!   does not show the lease)

use super::{json, now, Call, Double, Shared};
use axum::extract::State;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::{json as j, Map, Value};
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub value: Value,
    pub created_index: u64,
    pub modified_index: u64,
    /// When the etcd lease of a PUT with `?ttl=` ends.
    pub lease_until: Option<std::time::Instant>,
}

#[derive(Default)]
pub struct Inner {
    pub admin_key: String,
    /// Consumers and credentials alike, by etcd key.
    pub entries: Vec<Entry>,
    revision: u64,
}

impl Inner {
    /// Drops what outlived its lease, as etcd does.
    fn expire(&mut self) {
        let now = std::time::Instant::now();
        self.entries
            .retain(|e| e.lease_until.is_none_or(|until| until > now));
    }

    fn put(&mut self, key: String, value: Value) -> (bool, Entry) {
        self.put_leased(key, value, None)
    }

    fn put_leased(
        &mut self,
        key: String,
        mut value: Value,
        lease_until: Option<std::time::Instant>,
    ) -> (bool, Entry) {
        self.revision += 1;
        let rev = self.revision;
        let t = now();
        if let Some(e) = self.entries.iter_mut().find(|e| e.key == key) {
            value["create_time"] = e.value["create_time"].clone();
            value["update_time"] = j!(t);
            e.value = value;
            e.modified_index = rev;
            e.lease_until = lease_until;
            return (false, e.clone());
        }
        value["create_time"] = j!(t);
        value["update_time"] = j!(t);
        let e = Entry {
            key,
            value,
            created_index: rev,
            modified_index: rev,
            lease_until,
        };
        self.entries.push(e.clone());
        (true, e)
    }
}

pub type Apisix = Double<Inner>;

impl Apisix {
    pub fn start(admin_key: &str, consumers: &[&str]) -> Apisix {
        let mut inner = Inner {
            admin_key: admin_key.into(),
            ..Inner::default()
        };
        for u in consumers {
            inner.put(format!("/apisix/consumers/{u}"), j!({ "username": u }));
        }
        let router = Router::new().route("/apisix/admin/{*rest}", any(handle));
        Double::serve(inner, router)
    }

    /// The credentials the server holds: (etcd key, value).
    pub fn credentials(&self) -> Vec<(String, Value)> {
        let mut s = self.lock();
        s.expire();
        s.entries
            .iter()
            .filter(|e| e.key.contains("/credentials/"))
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect()
    }

    /// Adds `n` key-auth credentials to a consumer, as other tools would.
    pub fn seed(&self, consumer: &str, n: usize) {
        let mut s = self.lock();
        for i in 0..n {
            let id = format!("seed-{i}");
            s.put(
                format!("/apisix/consumers/{consumer}/credentials/{id}"),
                j!({ "id": id, "plugins": { "key-auth": { "key": super::hex32() } } }),
            );
        }
    }
}

fn key_not_found() -> Response {
    json(404, j!({ "message": "Key not found" }))
}

fn node(e: &Entry) -> Value {
    j!({ "key": e.key, "value": e.value, "createdIndex": e.created_index, "modifiedIndex": e.modified_index })
}

fn list(mut items: Vec<Entry>, q: &HashMap<String, String>) -> Response {
    items.sort_by_key(|e| e.created_index);
    let total = items.len();
    let (page, size) = (q.get("page"), q.get("page_size"));
    let items: Vec<Value> = match (
        page.and_then(|p| p.parse::<usize>().ok()),
        size.and_then(|p| p.parse::<usize>().ok()),
    ) {
        (Some(p), Some(n)) => {
            if !(10..=500).contains(&n) {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    [(header::CONTENT_TYPE, "text/plain")],
                    "page_size must be between 10 and 500",
                )
                    .into_response();
            }
            let p = p.max(1);
            items.iter().skip((p - 1) * n).take(n).map(node).collect()
        }
        _ => items.iter().map(node).collect(),
    };
    json(200, j!({ "total": total, "list": items }))
}

fn check_credential(v: &Value) -> Option<String> {
    let Some(obj) = v.as_object() else {
        return Some("invalid configuration: wrong type: expected object, got string".into());
    };
    for k in obj.keys() {
        if ![
            "id",
            "plugins",
            "labels",
            "desc",
            "create_time",
            "update_time",
        ]
        .contains(&k.as_str())
        {
            return Some(format!(
                "invalid configuration: additional properties forbidden, found {k}"
            ));
        }
    }
    if let Some(labels) = obj.get("labels").and_then(Value::as_object) {
        for (k, l) in labels {
            let s = l.as_str().unwrap_or_default();
            if s.is_empty() || s.chars().any(char::is_whitespace) || s.chars().count() > 256 {
                return Some(format!(
                    "invalid configuration: property \"labels\" validation failed: failed to validate {k} (matching \".*\"): failed to match pattern \"^\\\\S+$\" with \"{s}\""
                ));
            }
        }
    }
    let plugins: Map<String, Value> = obj
        .get("plugins")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (name, conf) in &plugins {
        if !["key-auth", "basic-auth", "jwt-auth", "hmac-auth"].contains(&name.as_str()) {
            return Some("only supports auth type plugins in consumer credential".into());
        }
        if name == "key-auth" && conf.get("key").and_then(Value::as_str).is_none() {
            return Some(
                "invalid plugins configuration: failed to check the configuration of plugin key-auth err: property \"key\" is required".into(),
            );
        }
    }
    None
}

async fn handle(State(state): Shared<Inner>, call: Call) -> Response {
    let (method, path, body, q) = (call.method, call.path, call.body, call.query);
    let mut s = state.lock().unwrap();
    s.expire();
    let presented = q.get("api_key").cloned().or_else(|| {
        call.headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    });
    if presented.as_deref() != Some(s.admin_key.as_str()) {
        return json(401, j!({ "error_msg": "failed to check token" }));
    }
    let segs: Vec<&str> = path
        .trim_start_matches("/apisix/admin/")
        .split('/')
        .collect();
    match (method, segs.as_slice()) {
        (Method::GET, ["consumers"]) => {
            // Consumers only: credentials live below them in etcd.
            let items = s
                .entries
                .iter()
                .filter(|e| e.key.matches('/').count() == 3)
                .cloned()
                .collect();
            list(items, &q)
        }
        (Method::GET, ["consumers", u]) => {
            match s
                .entries
                .iter()
                .find(|e| e.key == format!("/apisix/consumers/{u}"))
            {
                Some(e) => json(200, j!({ "key": e.key, "value": e.value })),
                None => key_not_found(),
            }
        }
        (Method::GET, ["consumers", u, "credentials"]) => {
            let prefix = format!("/apisix/consumers/{u}/credentials/");
            let items: Vec<Entry> = s
                .entries
                .iter()
                .filter(|e| e.key.starts_with(&prefix))
                .cloned()
                .collect();
            if items.is_empty() {
                // Nothing under the prefix yet: etcd has no range to answer.
                return key_not_found();
            }
            list(items, &q)
        }
        (Method::GET, ["consumers", u, "credentials", id]) => {
            let key = format!("/apisix/consumers/{u}/credentials/{id}");
            match s.entries.iter().find(|e| e.key == key) {
                Some(e) => json(200, j!({ "key": e.key, "value": e.value })),
                None => key_not_found(),
            }
        }
        (Method::PUT, ["consumers", u, "credentials", id]) => {
            let mut v: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return json(
                        400,
                        j!({ "error_msg": format!("invalid request body: {e}") }),
                    )
                }
            };
            if let Some(err) = check_credential(&v) {
                return json(400, j!({ "error_msg": err }));
            }
            let lease = match q.get("ttl") {
                None => None,
                Some(t) => match t.parse::<f64>() {
                    Err(_) => {
                        return json(
                            400,
                            j!({ "error_msg": "invalid argument ttl: should be a number" }),
                        )
                    }
                    // etcd's grant refuses a fractional lease; APISIX passes that on.
                    Ok(t) if t.fract() != 0.0 => {
                        return json(503, j!({ "error_msg": "etcd grant lease failed" }))
                    }
                    Ok(t) => Some(
                        std::time::Instant::now()
                            + std::time::Duration::from_secs((t as u64).max(2)),
                    ),
                },
            };
            v["id"] = j!(id);
            let (created, e) =
                s.put_leased(format!("/apisix/consumers/{u}/credentials/{id}"), v, lease);
            json(
                if created { 201 } else { 200 },
                j!({ "key": e.key, "value": e.value }),
            )
        }
        (Method::DELETE, ["consumers", u, "credentials", id]) => {
            let key = format!("/apisix/consumers/{u}/credentials/{id}");
            let before = s.entries.len();
            s.entries.retain(|e| e.key != key);
            if s.entries.len() == before {
                return key_not_found();
            }
            json(200, j!({ "deleted": "1", "key": key }))
        }
        (Method::POST | Method::PATCH, ["consumers", _, "credentials", ..]) => {
            json(404, j!({ "error_msg": "not found" }))
        }
        _ => json(
            404,
            j!({ "error_msg": format!("Unsupported resource type: {}", segs[0]) }),
        ),
    }
}

//! Contract double of the Kong Gateway 3.9 Admin API for key-auth credentials.
//!
//! Follows Kong/kong:
//! - kong/plugins/key-auth/daos.lua (`keyauth_credentials`: ttl = true,
//!   endpoint_key = "key", admin_api_name "key-auths", nested name "key-auth",
//!   fields id, created_at, consumer, key (auto), tags)
//! - kong/plugins/key-auth/api.lua (/consumers/:c/key-auth, /consumers/:c/key-auth/:id
//!   answering 404 when the credential is another consumer's, /key-auths)
//! - kong/api/endpoints.lua (pages `{data, offset, next}`, page size 100 by default
//!   and at most 1000, `{"message":"Not found"}`, 201 on create, 204 on delete,
//!   a non-UUID in the id place read as the `key`, ttl taken out of the body
//!   as an option on insert and update)
//! - kong/db/strategies/postgres/init.lua (rows past their ttl are not
//!   selected; `ttl` is reported as the whole seconds left)
//! - kong/db/dao/init.lua (ttl must be an integer between 0 and 100000000)
//!
//! - kong/api/routes/kong.lua (`GET /`, the node information: tagline,
//!   version, edition, hostname, node_id, timers, plugins, lua_version,
//!   configuration with sensitive values removed, pids)
//!
//! Kong OSS has no Admin API authentication; built with a token, the double
//! answers 401 without the matching `Kong-Admin-Token`, as Kong Enterprise's RBAC
//! does, and its node information says so (`configuration.rbac = "on"`, the
//! value of `enforce_rbac`; Kong Enterprise's version and edition).

use super::{json, now, Call, Double, Shared};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::{json as j, Value};
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub struct Consumer {
    pub id: String,
    pub username: String,
}

#[derive(Clone, Debug)]
pub struct Cred {
    pub id: String,
    pub created_at: i64,
    pub consumer: String,
    pub key: String,
    /// Unix seconds; None without a ttl.
    pub expires_at: Option<i64>,
    pub tags: Option<Vec<String>>,
}

#[derive(Default)]
pub struct Inner {
    pub admin_token: Option<String>,
    pub consumers: Vec<Consumer>,
    pub creds: Vec<Cred>,
}

impl Inner {
    fn consumer(&self, id_or_name: &str) -> Option<Consumer> {
        self.consumers
            .iter()
            .find(|c| c.id == id_or_name || c.username == id_or_name)
            .cloned()
    }
    fn live(&self) -> Vec<Cred> {
        let t = now();
        let mut v: Vec<Cred> = self
            .creds
            .iter()
            .filter(|c| c.expires_at.is_none_or(|e| e >= t))
            .cloned()
            .collect();
        // Postgres pages by primary key.
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

pub type Kong = Double<Inner>;

impl Kong {
    pub fn start(admin_token: Option<&str>, consumers: &[&str]) -> Kong {
        let inner = Inner {
            admin_token: admin_token.map(String::from),
            consumers: consumers
                .iter()
                .map(|u| Consumer {
                    id: super::uuid4(),
                    username: u.to_string(),
                })
                .collect(),
            creds: Vec::new(),
        };
        let routes = Router::new()
            .route("/consumers/{c}/key-auth", any(nested_collection))
            .route("/consumers/{c}/key-auth/{id}", any(nested_entity))
            .route("/", any(root))
            .route("/key-auths", any(collection))
            .route("/key-auths/{id}", any(entity));
        Double::serve(inner, routes)
    }

    /// Live credentials as Kong would select them.
    pub fn creds(&self) -> Vec<Cred> {
        self.lock().live()
    }

    pub fn consumer_id(&self, username: &str) -> String {
        self.lock().consumer(username).unwrap().id
    }

    /// Adds `n` credentials to a consumer directly, as other tools would.
    pub fn seed(&self, username: &str, n: usize) {
        let mut s = self.lock();
        let c = s.consumer(username).unwrap();
        for i in 0..n {
            s.creds.push(Cred {
                id: super::uuid4(),
                created_at: now() - 100 + (i as i64 % 50),
                consumer: c.id.clone(),
                key: super::hex32(),
                expires_at: None,
                tags: None,
            });
        }
    }

    /// Moves a credential's expiry into the past, as time passing would.
    pub fn expire(&self, id: &str) {
        let mut s = self.lock();
        if let Some(c) = s.creds.iter_mut().find(|c| c.id == id) {
            c.expires_at = Some(now() - 1);
        }
    }
}

/// A read-only endpoint: the credential, then GET alone.
fn get_only(s: &Inner, call: &Call) -> Option<Response> {
    auth(s, &call.headers).or_else(|| {
        (call.method != Method::GET).then(|| json(405, j!({ "message": "Method not allowed" })))
    })
}

async fn root(State(state): Shared<Inner>, call: Call) -> Response {
    let s = state.lock().unwrap();
    if let Some(r) = get_only(&s, &call) {
        return r;
    }
    let enterprise = s.admin_token.is_some();
    let mut configuration = j!({
        "admin_listen": ["127.0.0.1:8001"],
        "proxy_listen": ["0.0.0.0:8000"],
        "database": "postgres",
        "loaded_plugins": { "key-auth": true, "acl": true },
    });
    if enterprise {
        configuration["rbac"] = j!("on");
        configuration["admin_gui_auth"] = Value::Null;
    }
    json(
        200,
        j!({
            "tagline": "Welcome to kong",
            "version": if enterprise { "3.9.0.0" } else { "3.9.0" },
            "edition": if enterprise { "enterprise" } else { "community" },
            "hostname": "kong-double",
            "node_id": "9b3a1c52-3c47-4f5e-9d6c-0c1d2e3f4a5b",
            "timers": { "running": 0, "pending": 1 },
            "plugins": {
                "available_on_server": { "key-auth": { "version": "3.9.0", "priority": 1250 } },
                "enabled_in_cluster": [],
            },
            "lua_version": "LuaJIT 2.1.0-20231117",
            "configuration": configuration,
            "pids": { "master": 1, "workers": [1254] },
        }),
    )
}

fn not_found() -> Response {
    json(404, j!({ "message": "Not found" }))
}

fn render(c: &Cred) -> Value {
    let ttl = c.expires_at.map(|e| (e - now()).max(0));
    j!({
        "id": c.id, "created_at": c.created_at, "consumer": { "id": c.consumer },
        "key": c.key, "ttl": ttl, "tags": c.tags,
    })
}

fn auth(s: &Inner, headers: &HeaderMap) -> Option<Response> {
    let want = s.admin_token.as_ref()?;
    let got = headers
        .get("kong-admin-token")
        .and_then(|v| v.to_str().ok());
    if got == Some(want.as_str()) {
        None
    } else {
        Some(json(
            401,
            j!({ "message": "Invalid credentials. Token or User credentials required" }),
        ))
    }
}

fn page(list: Vec<Cred>, q: &HashMap<String, String>, next_base: &str) -> Response {
    let size = match q.get("size").map(|s| s.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return json(
                400,
                j!({ "code": 10, "name": "invalid size", "message": "size must be an integer between 1 and 1000" }),
            )
        }
    };
    let start = match q.get("offset") {
        None => 0,
        Some(o) => match o.strip_prefix("off-").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => {
                return json(
                    400,
                    j!({ "code": 7, "name": "invalid offset", "message": format!("'{o}' is not a valid offset: bad base64 encoding") }),
                )
            }
        },
    };
    let data: Vec<Value> = list.iter().skip(start).take(size).map(render).collect();
    let end = start + data.len();
    if end < list.len() {
        let off = format!("off-{end}");
        json(
            200,
            j!({ "data": data, "offset": off, "next": format!("{next_base}?offset={off}&size={size}") }),
        )
    } else {
        json(200, j!({ "data": data, "next": null }))
    }
}

fn parse_body(body: &Bytes) -> Result<Value, Box<Response>> {
    if body.is_empty() {
        return Ok(j!({}));
    }
    serde_json::from_slice(body)
        .map_err(|_| Box::new(json(400, j!({ "message": "Cannot parse JSON body" }))))
}

fn check_ttl(v: &Value) -> Result<Option<i64>, Box<Response>> {
    match v.get("ttl") {
        None | Some(Value::Null) => Ok(None),
        Some(t) => match t.as_i64() {
            Some(n) if (0..=100_000_000).contains(&n) => Ok(Some(n)),
            _ => Err(Box::new(json(
                400,
                j!({
                    "code": 11, "name": "invalid options",
                    "message": "invalid option (ttl: must be an integer between 0 and 100000000)",
                    "options": { "ttl": "must be an integer between 0 and 100000000" },
                }),
            ))),
        },
    }
}

async fn nested_collection(
    State(state): Shared<Inner>,
    Path(c): Path<String>,
    call: Call,
) -> Response {
    let (q, body) = (&call.query, &call.body);
    let mut s = state.lock().unwrap();
    if let Some(r) = auth(&s, &call.headers) {
        return r;
    }
    let Some(consumer) = s.consumer(&c) else {
        return not_found();
    };
    match call.method {
        Method::GET => {
            let list = s
                .live()
                .into_iter()
                .filter(|x| x.consumer == consumer.id)
                .collect();
            page(list, q, &format!("/consumers/{}/key-auth", consumer.id))
        }
        Method::POST => {
            let v = match parse_body(body) {
                Ok(v) => v,
                Err(r) => return *r,
            };
            let ttl = match check_ttl(&v) {
                Ok(t) => t,
                Err(r) => return *r,
            };
            let key = v["key"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(super::hex32);
            if s.live().iter().any(|x| x.key == key) {
                return json(
                    409,
                    j!({
                        "code": 5, "name": "unique constraint violation",
                        "message": format!("UNIQUE violation detected on '{{key=\"{key}\"}}'"),
                        "fields": { "key": key },
                    }),
                );
            }
            let tags = v["tags"].as_array().map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect::<Vec<_>>()
            });
            let cred = Cred {
                id: super::uuid4(),
                created_at: now(),
                consumer: consumer.id.clone(),
                key,
                expires_at: ttl.filter(|t| *t > 0).map(|t| now() + t),
                tags,
            };
            let out = render(&cred);
            s.creds.push(cred);
            json(201, out)
        }
        _ => json(405, j!({ "message": "Method not allowed" })),
    }
}

async fn nested_entity(
    State(state): Shared<Inner>,
    Path((c, id)): Path<(String, String)>,
    call: Call,
) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(r) = auth(&s, &call.headers) {
        return r;
    }
    let Some(consumer) = s.consumer(&c) else {
        return not_found();
    };
    let live = s.live();
    let Some(cred) = live.iter().find(|x| x.id == id || x.key == id) else {
        return not_found();
    };
    if cred.consumer != consumer.id {
        return not_found();
    }
    match call.method {
        Method::GET => json(200, render(cred)),
        Method::DELETE => {
            let cid = cred.id.clone();
            s.creds.retain(|x| x.id != cid);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => json(405, j!({ "message": "Method not allowed" })),
    }
}

async fn collection(State(state): Shared<Inner>, call: Call) -> Response {
    let s = state.lock().unwrap();
    if let Some(r) = get_only(&s, &call) {
        return r;
    }
    page(s.live(), &call.query, "/key-auths")
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

async fn entity(State(state): Shared<Inner>, Path(id): Path<String>, call: Call) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(r) = auth(&s, &call.headers) {
        return r;
    }
    // A UUID is the primary key; anything else is read as the endpoint key.
    let live = s.live();
    let found = if is_uuid(&id) {
        live.iter().find(|x| x.id == id)
    } else {
        live.iter().find(|x| x.key == id)
    };
    let Some(cred) = found.cloned() else {
        return not_found();
    };
    match call.method {
        Method::GET => json(200, render(&cred)),
        Method::PATCH => {
            let v = match parse_body(&call.body) {
                Ok(v) => v,
                Err(r) => return *r,
            };
            let ttl = match check_ttl(&v) {
                Ok(t) => t,
                Err(r) => return *r,
            };
            let c = s.creds.iter_mut().find(|x| x.id == cred.id).unwrap();
            if let Some(t) = ttl {
                c.expires_at = (t > 0).then(|| now() + t);
            }
            if let Some(tags) = v["tags"].as_array() {
                c.tags = Some(
                    tags.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect(),
                );
            }
            json(200, render(c))
        }
        Method::DELETE => {
            s.creds.retain(|x| x.id != cred.id);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => json(405, j!({ "message": "Method not allowed" })),
    }
}

//! Contract double of the Tyk Gateway 5.14 Gateway API for keys.
//!
//! Follows TykTechnologies/tyk:
//! - gateway/api.go: checkIsAPIOwner (403 `{"status":"error","message":
//!   "Attempted administrative access with invalid or missing key!"}`);
//!   keyHandler (POST /tyk/keys makes a key; `?hashed=` on GET, PUT and
//!   DELETE takes the key's hash; GET /tyk/keys answers 404 "Hashed key
//!   listing is disabled in config (enable_hashed_keys_listing)" when keys
//!   are hashed and listing is off, and lists hashes when it is on);
//!   handleAddOrUpdate (`{key, status:"ok", action:"added", key_hash}` with
//!   key_hash only when hash_keys is on; "Request malformed"; a key without
//!   access rights refused when master keys are not allowed);
//!   handleGetDetail ("Key not found", "Key requested by hash but key hashing
//!   is not enabled"); handleDeleteKey ("There is no such key found").
//! - storage/storage.go: GenerateToken (base64 of `{"org":..,"id":..,"h":..}`)
//!   and HashStr (the hash named by the key's `h`; this double is configured
//!   with `hash_key_function: sha256`).
//! - user/session.go: the session fields (expires, access_rights,
//!   apply_policies, meta_data, alias, date_created, last_updated, is_inactive...).

use super::{json, now, Call, Double, Shared};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use base64::Engine;
use serde_json::{json as j, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub struct Inner {
    pub secret: String,
    pub hash_keys: bool,
    pub listing: bool,
    pub org: String,
    /// Policies by id: the API ids they grant.
    pub policies: BTreeMap<String, Vec<String>>,
    /// Sessions by storage name: the hash when hashing, else the raw key.
    pub sessions: BTreeMap<String, Map<String, Value>>,
}

pub type Tyk = Double<Inner>;

/// `hex(sha256(key))`, as HashStr does for keys whose `h` is "sha256".
pub fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Tyk {
    pub fn start(secret: &str, hash_keys: bool, listing: bool) -> Tyk {
        let inner = Inner {
            secret: secret.into(),
            hash_keys,
            listing,
            org: "5e9d9544a1dcd60001d0ed20".into(),
            policies: BTreeMap::new(),
            sessions: BTreeMap::new(),
        };
        let router = Router::new()
            .route("/tyk/keys", any(collection))
            .route("/tyk/keys/{key}", any(entity));
        Double::serve(inner, router)
    }

    pub fn sessions(&self) -> BTreeMap<String, Map<String, Value>> {
        self.lock().sessions.clone()
    }

    pub fn add_policy(&self, id: &str, apis: &[&str]) {
        self.lock()
            .policies
            .insert(id.into(), apis.iter().map(|a| a.to_string()).collect());
    }

    /// Moves a key's expiry into the past; Tyk keeps the session until its lifetime ends.
    pub fn expire(&self, hash: &str) {
        let mut s = self.lock();
        if let Some(sess) = s.sessions.get_mut(hash) {
            sess.insert("expires".into(), j!(now() - 10));
        }
    }
}

fn error(status: u16, message: &str) -> Response {
    json(status, j!({ "status": "error", "message": message }))
}

fn authorized(s: &Inner, headers: &HeaderMap) -> bool {
    headers
        .get("x-tyk-authorization")
        .and_then(|v| v.to_str().ok())
        == Some(s.secret.as_str())
}

fn storage_name(s: &Inner, key: &str) -> String {
    if s.hash_keys {
        sha256_hex(key)
    } else {
        key.to_string()
    }
}

fn apply_policies(s: &Inner, sess: &mut Map<String, Value>) {
    let ids: Vec<String> = sess
        .get("apply_policies")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    for id in ids {
        if let Some(apis) = s.policies.get(&id) {
            let rights = sess
                .entry("access_rights")
                .or_insert_with(|| j!({}))
                .as_object_mut()
                .expect("access_rights is an object");
            for a in apis {
                rights.entry(a.clone()).or_insert_with(
                    || j!({ "api_id": a, "api_name": "", "versions": ["Default"] }),
                );
            }
        }
    }
}

fn defaults(org: &str) -> Map<String, Value> {
    let v = j!({
        "last_check": 0, "allowance": 0, "rate": 0, "per": 0, "throttle_interval": 0,
        "throttle_retry_limit": 0, "max_query_depth": 0, "date_created": "", "expires": 0,
        "quota_max": 0, "quota_renews": 0, "quota_remaining": 0, "quota_renewal_rate": 0,
        "access_rights": {}, "org_id": org, "oauth_client_id": "", "basic_auth_data": { "password": "", "hash_type": "" },
        "jwt_data": { "secret": "" }, "hmac_enabled": false, "hmac_string": "", "is_inactive": false,
        "apply_policy_id": "", "apply_policies": [], "data_expires": 0, "monitor": { "trigger_limits": null },
        "enable_detailed_recording": false, "meta_data": {}, "tags": [], "alias": "",
        "last_updated": "", "id_extractor_deadline": 0, "session_lifetime": 0,
    });
    v.as_object().cloned().unwrap()
}

/// Every /tyk/ route is guarded by checkIsAPIOwner.
fn refused() -> Response {
    error(
        403,
        "Attempted administrative access with invalid or missing key!",
    )
}

async fn collection(State(state): Shared<Inner>, call: Call) -> Response {
    let body = &call.body;
    let mut s = state.lock().unwrap();
    if !authorized(&s, &call.headers) {
        return refused();
    }
    match call.method {
        Method::GET => {
            if s.hash_keys && !s.listing {
                return error(
                    404,
                    "Hashed key listing is disabled in config (enable_hashed_keys_listing)",
                );
            }
            let keys: Vec<&String> = s.sessions.keys().collect();
            json(200, j!({ "keys": keys }))
        }
        Method::POST => {
            let input: Map<String, Value> = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(_) => return error(400, "Request malformed"),
            };
            let mut sess = defaults(&s.org);
            sess.extend(input);
            apply_policies(&s, &mut sess);
            let no_rights = sess
                .get("access_rights")
                .and_then(Value::as_object)
                .is_none_or(|m| m.is_empty());
            if no_rights {
                return error(
                    500,
                    "Failed to create key, ensure security settings are correct.",
                );
            }
            let t = chrono::Utc::now();
            sess.insert(
                "date_created".into(),
                j!(t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
            );
            sess.insert("last_updated".into(), j!(t.timestamp().to_string()));
            let org = sess
                .get("org_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let raw = format!(
                r#"{{"org":"{org}","id":"{}","h":"sha256"}}"#,
                super::hex32()
            );
            let key = base64::engine::general_purpose::STANDARD.encode(raw);
            let name = storage_name(&s, &key);
            s.sessions.insert(name.clone(), sess);
            let mut out = j!({ "key": key, "status": "ok", "action": "added" });
            if s.hash_keys {
                out["key_hash"] = j!(name);
            }
            json(200, out)
        }
        _ => error(405, "Method not supported"),
    }
}

async fn entity(State(state): Shared<Inner>, Path(key): Path<String>, call: Call) -> Response {
    let Call {
        method,
        body,
        query: q,
        ..
    } = call;
    let mut s = state.lock().unwrap();
    if !authorized(&s, &call.headers) {
        return refused();
    }
    let hashed = q.get("hashed").is_some_and(|h| !h.is_empty());
    if hashed && !s.hash_keys && method == Method::GET {
        return error(400, "Key requested by hash but key hashing is not enabled");
    }
    let name = if hashed {
        key.clone()
    } else {
        storage_name(&s, &key)
    };
    match method {
        Method::GET => match s.sessions.get(&name) {
            Some(sess) => json(200, Value::Object(sess.clone())),
            None => error(404, "Key not found"),
        },
        Method::PUT => {
            let input: Map<String, Value> = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(_) => return error(400, "Request malformed"),
            };
            let Some(old) = s.sessions.get(&name).cloned() else {
                return error(404, "Key is not found");
            };
            let mut sess = defaults(&s.org);
            sess.extend(input);
            sess.insert("date_created".into(), old["date_created"].clone());
            let past = sess
                .get("expires")
                .and_then(Value::as_i64)
                .is_some_and(|e| e > 1 && e < now());
            if past {
                sess.insert("expires".into(), old["expires"].clone());
            }
            s.sessions.insert(name.clone(), sess);
            json(
                200,
                j!({ "key": name, "status": "ok", "action": "modified" }),
            )
        }
        Method::DELETE => {
            if s.sessions.remove(&name).is_none() {
                return error(404, "There is no such key found");
            }
            json(
                200,
                j!({ "key": name, "status": "ok", "action": "deleted" }),
            )
        }
        _ => error(405, "Method not supported"),
    }
}

//! Contract double of APIPark v1.9.6's automation API for app authorizations.
//!
//! Follows APIParkLab/APIPark:
//! - plugins/openapi/authorization.go (the six /openapi/v1/app/authorization* routes)
//! - plugins/openapi/check.go (the key check: `Authorization` header, `Bearer `
//!   stripped, or `?apikey=`; failure is HTTP 403 `{"code":-8,"msg":"invalid token","success":"fail"}`)
//! - module/application-authorization/iml.go (app looked up first, "record not
//!   found"; Info and Delete look the authorization up by id alone; delete of a
//!   missing one says "partition <id> not exists")
//! - module/application-authorization/dto/{input,output}.go (field names; list
//!   items carry no config, the single GET carries the secret in plaintext)
//! - module/application-authorization/auth-driver/apikey/apikey.go ("apikey is empty")
//! - service/application-authorization/iml.go (list ordered by update_at desc)
//! - eolinker/go-common pm3/api-doc.go: every error is HTTP 200 with
//!   `{"code":-1,"success":"fail","msg":...}`, success `{"code":0,"success":"success","data":{...}}`
//!   (`data` omitted when empty); auto.TimeLabel renders "2006-01-02 15:04:05".

use super::{json, Call, Double, Shared};
use axum::extract::State;
use axum::http::Method;
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use serde_json::{json as j, Value};
use std::collections::BTreeSet;

#[derive(Clone, Debug)]
pub struct Auth {
    pub app: String,
    pub id: String,
    pub name: String,
    pub driver: String,
    pub position: String,
    pub token_name: String,
    pub expire_time: i64,
    pub config: Value,
    pub hide_credential: bool,
    pub create_time: String,
    pub update_seq: u64,
}

#[derive(Default)]
pub struct Inner {
    pub api_key: String,
    pub apps: BTreeSet<String>,
    pub auths: Vec<Auth>,
    seq: u64,
}

pub type Apipark = Double<Inner>;

impl Apipark {
    pub fn start(api_key: &str, apps: &[&str]) -> Apipark {
        let inner = Inner {
            api_key: api_key.into(),
            apps: apps.iter().map(|a| a.to_string()).collect(),
            ..Inner::default()
        };
        let router = Router::new().route("/openapi/v1/{*rest}", any(handle));
        Double::serve(inner, router)
    }

    /// The authorizations of `app` as the server holds them.
    pub fn auths(&self, app: &str) -> Vec<Auth> {
        let s = self.lock();
        s.auths.iter().filter(|a| a.app == app).cloned().collect()
    }

    /// Adds an authorization as the console would (a UUID key, another driver...).
    pub fn seed(
        &self,
        app: &str,
        name: &str,
        driver: &str,
        apikey: &str,
        expire_time: i64,
    ) -> String {
        let mut s = self.lock();
        s.seq += 1;
        let id = super::uuid4();
        let seq = s.seq;
        s.auths.push(Auth {
            app: app.into(),
            id: id.clone(),
            name: name.into(),
            driver: driver.into(),
            position: "Header".into(),
            token_name: "Authorization".into(),
            expire_time,
            config: j!({ "apikey": apikey }),
            hide_credential: false,
            create_time: time_label(),
            update_seq: seq,
        });
        id
    }
}

fn time_label() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

fn fail(msg: &str) -> Response {
    json(200, j!({ "code": -1, "success": "fail", "msg": msg }))
}

fn ok(data: Option<Value>) -> Response {
    match data {
        Some(d) => json(200, j!({ "code": 0, "success": "success", "data": d })),
        None => json(200, j!({ "code": 0, "success": "success" })),
    }
}

fn detail(a: &Auth) -> Value {
    j!({
        "id": a.id, "name": a.name, "driver": a.driver, "position": a.position,
        "token_name": a.token_name, "config": a.config, "expire_time": a.expire_time,
        "hide_credential": a.hide_credential,
    })
}

/// What create and edit refuse: an apikey authorization without a key, and
/// an app that does not exist.
fn refuse_input(input: &Value, needs_key: bool, app_exists: bool) -> Option<Response> {
    let key = input["config"]["apikey"].as_str().unwrap_or_default();
    if needs_key && key.is_empty() {
        return Some(fail("apikey is empty"));
    }
    (!app_exists).then(|| fail("record not found"))
}

async fn handle(State(state): Shared<Inner>, call: Call) -> Response {
    let (q, body) = (&call.query, &call.body);
    let mut s = state.lock().unwrap();

    // check.go: header (Bearer stripped) or ?apikey=, else 403 code -8.
    let presented = call
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
        .or_else(|| q.get("apikey").cloned());
    let good = presented.is_some_and(|p| p.strip_prefix("Bearer ").unwrap_or(&p) == s.api_key);
    if !good {
        return json(
            403,
            j!({ "code": -8, "msg": "invalid token", "success": "fail" }),
        );
    }

    let app = q.get("app").cloned().unwrap_or_default();
    let aid = q.get("authorization").cloned().unwrap_or_default();
    let app_exists = s.apps.contains(&app);
    match (call.method.clone(), call.path.as_str()) {
        (Method::GET, "/openapi/v1/app/authorizations") => {
            if !app_exists {
                return fail("record not found");
            }
            let mut items: Vec<&Auth> = s.auths.iter().filter(|a| a.app == app).collect();
            items.sort_by_key(|a| std::cmp::Reverse(a.update_seq));
            let list: Vec<Value> = items
                .iter()
                .map(|a| {
                    j!({
                        "id": a.id, "name": a.name, "driver": a.driver, "expire_time": a.expire_time,
                        "position": a.position, "token_name": a.token_name,
                        "creator": { "id": "", "name": "unknown" },
                        "updater": { "id": "", "name": "unknown" },
                        "create_time": a.create_time, "update_time": a.create_time,
                        "hide_credential": a.hide_credential,
                    })
                })
                .collect();
            ok(Some(j!({ "authorizations": list })))
        }
        (Method::GET, "/openapi/v1/app/authorization") => {
            if !app_exists {
                return fail("record not found");
            }
            // Info looks the authorization up by id alone, whatever the app.
            match s.auths.iter().find(|a| a.id == aid) {
                Some(a) => ok(Some(j!({ "authorization": detail(a) }))),
                None => fail("record not found"),
            }
        }
        (Method::POST, "/openapi/v1/app/authorization") => {
            let input: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return fail(&format!("invald request:{e}")),
            };
            let driver = input["driver"].as_str().unwrap_or_default().to_string();
            if !["apikey", "basic", "jwt", "aksk", "oauth2"].contains(&driver.as_str()) {
                return fail(&format!("unknown driver {driver}"));
            }
            if let Some(r) = refuse_input(&input, driver == "apikey", app_exists) {
                return r;
            }
            s.seq += 1;
            let id = input["uuid"]
                .as_str()
                .filter(|u| !u.is_empty())
                .map(String::from)
                .unwrap_or_else(super::uuid4);
            let auth = Auth {
                app: app.clone(),
                id: id.clone(),
                name: input["name"].as_str().unwrap_or_default().into(),
                driver,
                position: input["position"].as_str().unwrap_or_default().into(),
                token_name: input["token_name"].as_str().unwrap_or_default().into(),
                expire_time: input["expire_time"].as_i64().unwrap_or(0),
                config: input["config"].clone(),
                hide_credential: input["hide_credential"].as_bool().unwrap_or(false),
                create_time: time_label(),
                update_seq: s.seq,
            };
            let d = detail(&auth);
            s.auths.push(auth);
            ok(Some(j!({ "authorization": d })))
        }
        (Method::PUT, "/openapi/v1/app/authorization") => {
            let input: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return fail(&format!("invald request:{e}")),
            };
            if !s.auths.iter().any(|a| a.id == aid) {
                return fail("record not found");
            }
            // Edit builds the driver config from the input: no config, no key.
            if let Some(r) = refuse_input(&input, true, app_exists) {
                return r;
            }
            s.seq += 1;
            let seq = s.seq;
            let a = s.auths.iter_mut().find(|a| a.id == aid).unwrap();
            if let Some(n) = input["name"].as_str() {
                a.name = n.into();
            }
            if let Some(e) = input["expire_time"].as_i64() {
                a.expire_time = e;
            }
            if let Some(h) = input["hide_credential"].as_bool() {
                a.hide_credential = h;
            }
            a.config = input["config"].clone();
            a.update_seq = seq;
            let d = detail(a);
            ok(Some(j!({ "authorization": d })))
        }
        (Method::DELETE, "/openapi/v1/app/authorization") => {
            if !app_exists {
                return fail("record not found");
            }
            let before = s.auths.len();
            s.auths.retain(|a| a.id != aid);
            if s.auths.len() == before {
                return fail(&format!("partition {aid} not exists"));
            }
            ok(None)
        }
        _ => json(
            404,
            j!({ "code": -1, "success": "fail", "msg": "404 page not found" }),
        ),
    }
}

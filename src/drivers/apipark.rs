//! The `apipark` driver: `apikey` authorizations of one APIPark app, through
//! the `/openapi/v1` automation API (APIPark v1.9.6).
//!
//! A token is an authorization; its id is the authorization's id (a UUID that
//! APIPark assigns). tok makes the secret itself (`Secret::generate`) and hands
//! it to APIPark as `config.apikey`. APIPark answers most errors with HTTP 200
//! and `{"code":-1,"success":"fail","msg":...}`, so every answer's `code` is
//! checked. It has no lookup by secret and its list carries no secret: lookup
//! reads each authorization and compares in constant time. Revoking deletes.
//!
//! `whoami` lists the app's authorizations: a valid system API key reads them,
//! a refused one gets HTTP 403 code -8 (plugins/openapi/check.go), and an app
//! that does not exist says so. System API keys carry no name or expiry that
//! the automation API shows.

use super::gateway_api::{self, AdminApi, Answer};
use super::{DriverError, DriverKind, Gateway, Identity, Result, Settings};
use crate::error::Kind;
use crate::model::{check_new_token, Created, Filter, NewToken, RevokeOutcome, Token};
use crate::secret::{self, Secret};
use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

const BASE: &str = "/openapi/v1";
const DRIVER_APIKEY: &str = "apikey";
/// Where clients put the key. APIPark's console uses the same default.
const TOKEN_HEADER: &str = "Authorization";

pub struct Apipark {
    api: AdminApi,
    app: String,
}

/// APIPark's envelope, on every answer.
#[derive(Deserialize)]
struct Envelope {
    code: i64,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    data: Option<Map<String, Value>>,
}

/// An item of `GET /app/authorizations` (no secret in it).
#[derive(Deserialize, Clone)]
struct Item {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    driver: String,
    #[serde(default)]
    expire_time: i64,
    #[serde(default)]
    creator: Option<Label>,
    #[serde(default)]
    create_time: Option<String>,
}

#[derive(Deserialize, Clone, Default)]
struct Label {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
}

/// `data.authorization` of create, edit and get: this one holds the secret.
#[derive(Deserialize)]
struct Authorization {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    driver: String,
    #[serde(default)]
    expire_time: i64,
    #[serde(default)]
    position: String,
    #[serde(default)]
    token_name: String,
    #[serde(default)]
    hide_credential: bool,
    #[serde(default)]
    config: Option<Map<String, Value>>,
}

impl Authorization {
    fn apikey(&self) -> Option<&str> {
        self.config.as_ref()?.get("apikey")?.as_str()
    }

    fn labels(&self) -> BTreeMap<String, String> {
        self.config
            .as_ref()
            .and_then(|c| c.get("label"))
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
            .unwrap_or_default()
    }
}

impl Apipark {
    pub fn new(settings: Settings, app: Option<String>) -> Result<Apipark> {
        let credential = settings.credential.as_ref().ok_or_else(|| {
            gateway_api::missing_credential(
                DriverKind::Apipark,
                "an APIPark system API key (console: System settings > API keys)",
            )
        })?;
        let app = app.filter(|a| !a.trim().is_empty()).ok_or_else(|| DriverError::Gateway {
            message: "the apipark driver needs the app whose keys it manages".into(),
            kind: Kind::Usage,
            hint: Some(
                "pass --app APP_ID (or set TOK_APP, or `app` in the profile); the id is in the APIPark console under the app's settings"
                    .into(),
            ),
        })?;
        let bearer = Secret::new(format!("Bearer {}", credential.secret.expose()));
        Ok(Apipark {
            api: AdminApi::new(&settings, Some(("authorization", &bearer)))?,
            app,
        })
    }

    /// Sends a request and opens the envelope; `secrets` are blanked from errors.
    fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        secrets: &[&Secret],
    ) -> Result<Map<String, Value>> {
        let answer = self
            .api
            .call(method, &format!("{BASE}{path}"), query, body)?;
        open(&answer, secrets)
    }

    /// Every `apikey` authorization of the app (other drivers are not bearer keys).
    fn items(&self) -> Result<Vec<Item>> {
        let answer = self.api.call(
            Method::GET,
            &format!("{BASE}/app/authorizations"),
            &[("app", &self.app)],
            None,
        )?;
        let data = open(&answer, &[]).map_err(|e| self.app_not_found(e))?;
        let items: Vec<Item> = field(&answer, data, "authorizations")?;
        Ok(items
            .into_iter()
            .filter(|i| i.driver == DRIVER_APIKEY)
            .collect())
    }

    /// "record not found" on the app-level list means the app does not exist.
    fn app_not_found(&self, e: DriverError) -> DriverError {
        match e {
            DriverError::NotFound(_) => DriverError::Gateway {
                message: format!("APIPark has no app `{}`", self.app),
                kind: Kind::NotFound,
                hint: Some(
                    "check --app (or TOK_APP, or the profile's `app`): it takes the app's id, shown in the APIPark console"
                        .into(),
                ),
            },
            other => other,
        }
    }

    fn detail(&self, id: &str) -> Result<Authorization> {
        let answer = self.api.call(
            Method::GET,
            &format!("{BASE}/app/authorization"),
            &[("app", &self.app), ("authorization", id)],
            None,
        )?;
        let data = open(&answer, &[]).map_err(|e| match e {
            DriverError::NotFound(_) => DriverError::NotFound(id.to_string()),
            other => other,
        })?;
        field(&answer, data, "authorization")
    }

    fn to_token(&self, item: &Item, auth: Option<&Authorization>) -> Token {
        let created_at = item
            .create_time
            .as_deref()
            .and_then(parse_time)
            .unwrap_or_else(Utc::now);
        let mut t = gateway_api::token(item.id.clone(), created_at, expiry(item.expire_time));
        t.name = Some(item.name.clone()).filter(|n| !n.is_empty());
        t.created_by = item.creator.as_ref().and_then(|c| {
            if !c.name.is_empty() && c.name != "unknown" {
                Some(c.name.clone())
            } else {
                Some(c.id.clone()).filter(|i| !i.is_empty())
            }
        });
        if let Some(a) = auth {
            t.labels = a.labels();
            if let Some(key) = a.apikey() {
                t.fingerprint = gateway_api::fingerprint(key);
            }
        }
        t
    }

    /// A token by exact id or prefix, with its details.
    fn find(&self, id_or_prefix: &str) -> Result<(Item, Authorization)> {
        let items = self.items()?;
        let id = gateway_api::resolve_prefix(items.iter().map(|i| i.id.as_str()), id_or_prefix)?;
        let item = items
            .into_iter()
            .find(|i| i.id == id)
            .ok_or_else(|| DriverError::NotFound(id.clone()))?;
        let auth = self.detail(&item.id)?;
        Ok((item, auth))
    }

    fn body(
        name: &str,
        expires_at: Option<DateTime<Utc>>,
        key: &Secret,
        labels: &BTreeMap<String, String>,
    ) -> Value {
        let mut config = json!({ "apikey": key.expose() });
        if !labels.is_empty() {
            config["label"] = json!(labels);
        }
        json!({
            "name": name,
            "driver": DRIVER_APIKEY,
            "position": "Header",
            "token_name": TOKEN_HEADER,
            "expire_time": expires_at.map_or(0, |e| e.timestamp()),
            "config": config,
            "hide_credential": false,
        })
    }

    /// Sets a new `expire_time`. An edit must carry the config again, or
    /// APIPark rejects it, so the key goes back as it was.
    fn edit_expiry(&self, id: &str, auth: &Authorization, until: DateTime<Utc>) -> Result<()> {
        let key = Secret::new(auth.apikey().unwrap_or_default());
        let mut body = Self::body(&auth.name, Some(until), &key, &auth.labels());
        body["position"] = json!(auth.position);
        body["token_name"] = json!(auth.token_name);
        body["hide_credential"] = json!(auth.hide_credential);
        if let Some(obj) = body.as_object_mut() {
            obj.remove("driver");
        }
        self.call(
            Method::PUT,
            "/app/authorization",
            &[("app", &self.app), ("authorization", id)],
            Some(&body),
            &[&key],
        )?;
        Ok(())
    }

    fn delete(&self, id: &str) -> Result<()> {
        self.call(
            Method::DELETE,
            "/app/authorization",
            &[("app", &self.app), ("authorization", id)],
            None,
            &[],
        )
        .map_err(|e| match e {
            DriverError::NotFound(_) => DriverError::NotFound(id.to_string()),
            other => other,
        })?;
        Ok(())
    }
}

impl Gateway for Apipark {
    fn kind(&self) -> DriverKind {
        DriverKind::Apipark
    }

    fn usage_note(&self) -> Option<String> {
        Some(format!(
            "clients send this key as is in the `{TOKEN_HEADER}` header, without `Bearer ` (APIPark apikey authorization)"
        ))
    }

    fn create(&self, new: &NewToken) -> Result<Created> {
        check_new_token(new).map_err(DriverError::Invalid)?;
        let secret = Secret::generate();
        let name = new.name.clone().unwrap_or_default();
        let body = Self::body(&name, new.expires_at, &secret, &new.labels);
        let answer = self.api.call(
            Method::POST,
            &format!("{BASE}/app/authorization"),
            &[("app", &self.app)],
            Some(&body),
        )?;
        let data = open(&answer, &[&secret]).map_err(|e| self.app_not_found(e))?;
        let auth: Authorization = field(&answer, data, "authorization")?;
        if auth
            .apikey()
            .is_some_and(|k| !secret::ct_eq(k.as_bytes(), secret.expose().as_bytes()))
        {
            return Err(DriverError::Protocol {
                url: answer.url,
                message: "APIPark stored another key than the one tok sent".into(),
            });
        }
        let item = Item {
            id: auth.id.clone(),
            name: auth.name.clone(),
            driver: auth.driver.clone(),
            expire_time: auth.expire_time,
            creator: None,
            create_time: None,
        };
        let mut token = self.to_token(&item, Some(&auth));
        token.created_at = Utc::now();
        Ok(Created { token, secret })
    }

    fn list(&self, filter: &Filter, sink: &mut dyn FnMut(Token) -> Result<()>) -> Result<()> {
        let mut tokens = Vec::new();
        for item in self.items()? {
            // The detail holds the key, read only for the fingerprint and labels.
            let auth = self.detail(&item.id)?;
            tokens.push(self.to_token(&item, Some(&auth)));
        }
        gateway_api::emit(tokens, filter, sink)
    }

    fn get(&self, id_or_prefix: &str) -> Result<Token> {
        let (item, auth) = self.find(id_or_prefix)?;
        Ok(self.to_token(&item, Some(&auth)))
    }

    fn lookup(&self, secret: &Secret) -> Result<Token> {
        for item in self.items()? {
            let auth = self.detail(&item.id)?;
            if auth
                .apikey()
                .is_some_and(|k| secret::ct_eq(k.as_bytes(), secret.expose().as_bytes()))
            {
                return Ok(self.to_token(&item, Some(&auth)));
            }
        }
        Err(DriverError::UnknownSecret {
            fingerprint: gateway_api::fingerprint(secret.expose()),
        })
    }

    fn whoami(&self) -> Result<Identity> {
        let keys = self.items()?.len();
        Ok(Identity {
            principal: format!(
                "APIPark system API key, for app `{}` ({keys} apikey authorization{})",
                self.app,
                if keys == 1 { "" } else { "s" }
            ),
            expires_at: None,
            scopes: Vec::new(),
            checked: true,
        })
    }

    fn revoke(&self, id: &str, reason: Option<&str>) -> Result<(Token, RevokeOutcome)> {
        let (item, auth) = self.find(id)?;
        let token = self.to_token(&item, Some(&auth));
        self.delete(&item.id)?;
        Ok((gateway_api::revoked(token, reason), RevokeOutcome::Revoked))
    }

    fn renew(&self, id: &str, increment: Option<u64>) -> Result<Token> {
        let (item, auth) = self.find(id)?;
        let old = self.to_token(&item, Some(&auth));
        let until = gateway_api::renewed_until(&old, increment, Utc::now(), self.api.base())?;
        self.edit_expiry(&item.id, &auth, until)?;
        let mut t = old;
        t.expires_at = Some(until);
        t.state = t.state_at(Utc::now());
        Ok(t)
    }

    fn rotate(&self, id: &str, grace: Option<u64>) -> Result<(Created, Token)> {
        let (item, auth) = self.find(id)?;
        let old = self.to_token(&item, Some(&auth));
        let now = Utc::now();
        let new = NewToken {
            name: old.name.clone(),
            labels: old.labels.clone(),
            expires_at: gateway_api::same_lifetime(&old, now, self.api.base())?,
            ..NewToken::default()
        };
        let created = self.create(&new)?;
        let reason = format!("rotated to {}", created.token.id);
        let old = match grace {
            None => {
                self.delete(&item.id)?;
                gateway_api::revoked(old, Some(&reason))
            }
            Some(g) => {
                let g = g.min(crate::duration::MAX_SECONDS) as i64;
                let until = now + chrono::TimeDelta::seconds(g);
                let until = old.expires_at.map_or(until, |e| e.min(until));
                self.edit_expiry(&item.id, &auth, until)?;
                let mut old = old;
                old.expires_at = Some(until);
                old
            }
        };
        Ok((created, old))
    }
}

/// Opens APIPark's envelope: HTTP 403 code -8 is a refused key; code 0 is
/// success whatever else; a non-zero code is an error even with HTTP 200.
fn open(answer: &Answer, secrets: &[&Secret]) -> Result<Map<String, Value>> {
    if answer.status >= 500 {
        return Err(answer.http_error(secrets));
    }
    let env: Envelope = match serde_json::from_slice(&answer.body) {
        Ok(e) => e,
        Err(_) if !answer.ok() => return Err(answer.http_error(secrets)),
        Err(e) => {
            return Err(DriverError::Protocol {
                url: answer.url.clone(),
                message: format!(
                    "HTTP {} with a body that is not APIPark's JSON envelope ({e})",
                    answer.status
                ),
            })
        }
    };
    if answer.status == 401 || answer.status == 403 || env.code == -8 {
        return Err(gateway_api::refused_credential(
            DriverKind::Apipark,
            answer,
            &gateway_api::redact(&env.msg, secrets),
            "a valid, unexpired APIPark system API key",
        ));
    }
    if env.code != 0 {
        let msg = gateway_api::redact(&env.msg, secrets);
        // gorm's "record not found" and APIPark's "... not exists".
        if msg.contains("not found") || msg.contains("not exist") {
            return Err(DriverError::NotFound(msg));
        }
        return Err(DriverError::Gateway {
            message: format!(
                "APIPark refused the request (code {} in an HTTP {} answer from {}): {msg}",
                env.code, answer.status, answer.url
            ),
            kind: Kind::Failure,
            hint: None,
        });
    }
    if !answer.ok() {
        return Err(answer.http_error(secrets));
    }
    Ok(env.data.unwrap_or_default())
}

/// `data.<name>` as `T`.
fn field<T: serde::de::DeserializeOwned>(
    answer: &Answer,
    mut data: Map<String, Value>,
    name: &str,
) -> Result<T> {
    let v = data.remove(name).ok_or_else(|| DriverError::Protocol {
        url: answer.url.clone(),
        message: format!("the answer has no `data.{name}`"),
    })?;
    serde_json::from_value(v).map_err(|e| DriverError::Protocol {
        url: answer.url.clone(),
        message: format!("`data.{name}` is not what APIPark v1.9 sends ({e})"),
    })
}

fn expiry(expire_time: i64) -> Option<DateTime<Utc>> {
    (expire_time > 0)
        .then(|| gateway_api::from_unix(expire_time))
        .flatten()
}

/// APIPark writes times as `2006-01-02 15:04:05` in the server's zone; tok
/// reads them as UTC (APIPark's containers run in UTC).
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_expiry() {
        assert_eq!(
            parse_time("2025-01-02 03:04:05").unwrap().to_rfc3339(),
            "2025-01-02T03:04:05+00:00"
        );
        assert!(parse_time("yesterday").is_none());
        assert_eq!(expiry(0), None);
        assert!(expiry(1_900_000_000).is_some());
    }
}

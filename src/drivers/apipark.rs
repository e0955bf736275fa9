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

use super::http_client::{self, AdminApi, Answer, Dialect, Req};
use super::keys::{self, KeyGateway, Reach};
use super::{DriverError, DriverKind, Identity, Result, Settings};
use crate::error::Kind;
use crate::model::{Created, NewToken, Token};
use crate::secret::{self, Secret};
use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

const BASE: &str = "/openapi/v1";
const DRIVER_APIKEY: &str = "apikey";
/// One authorization of the app.
const ONE: &str = "/app/authorization";
/// Where clients put the key. APIPark's console uses the same default.
const TOKEN_HEADER: &str = "Authorization";

/// APIPark answers errors inside its envelope (`open`); only the credential
/// header and a refused credential go through the shared dialect.
static DIALECT: Dialect = Dialect {
    message: &["msg"],
    ..Dialect::new(DriverKind::Apipark, "APIPark", "authorization")
};

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
    data: Option<Map<String, Value>>,
}

/// What an authorization says of itself, in the list and in its details.
#[derive(Deserialize, Clone)]
pub struct Head {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub expire_time: i64,
}

/// An item of `GET /app/authorizations` (no secret in it).
#[derive(Deserialize, Clone)]
pub struct Item {
    #[serde(flatten)]
    pub head: Head,
    pub creator: Option<Label>,
    pub create_time: Option<String>,
}

#[derive(Deserialize, Clone, Default)]
#[serde(default)]
pub struct Label {
    pub id: String,
    pub name: String,
}

/// `data.authorization` of create, edit and get: this one holds the secret.
#[derive(Deserialize)]
pub struct Authorization {
    #[serde(flatten)]
    pub head: Head,
    #[serde(default)]
    pub position: String,
    #[serde(default)]
    pub token_name: String,
    #[serde(default)]
    pub hide_credential: bool,
    pub config: Option<Map<String, Value>>,
}

impl Authorization {
    fn apikey(&self) -> Option<&str> {
        self.config.as_ref()?.get("apikey")?.as_str()
    }

    fn labels(&self) -> BTreeMap<String, String> {
        keys::labels(self.config.as_ref().and_then(|c| c.get("label")))
    }
}

/// An authorization as listed, and its details once read (they hold the key).
pub type Raw = (Item, Option<Authorization>);

impl Apipark {
    pub fn new(settings: Settings, app: Option<String>) -> Result<Apipark> {
        let api = AdminApi::needing(&settings, &DIALECT, "Bearer ")?;
        let app = app.ok_or_else(|| {
            DriverError::gateway(
                Kind::Usage,
                "the apipark driver needs the app whose keys it manages",
                Some("pass --app APP_ID (or set TOK_APP, or `app` in the profile); the id is in the APIPark console under the app's settings"),
            )
        })?;
        Ok(Apipark { api, app })
    }

    /// A request about the app's authorizations (or the one with `id`) at
    /// `req.path` under the API's base, its envelope opened; "not found" is
    /// `missing`.
    fn call(
        &self,
        req: Req,
        id: Option<&str>,
        missing: impl FnOnce() -> DriverError,
    ) -> Result<(Answer, Map<String, Value>)> {
        let mut query = vec![("app", self.app.as_str())];
        query.extend(id.map(|i| ("authorization", i)));
        let path = format!("{BASE}{}", req.path);
        let secret = req.secret;
        let answer = self.api.call(Req {
            path: &path,
            query: &query,
            ..req
        })?;
        match open(&answer, secret.as_slice()) {
            Ok(data) => Ok((answer, data)),
            Err(DriverError::NotFound(_)) => Err(missing()),
            Err(e) => Err(e),
        }
    }

    /// "record not found" on the app-level list means the app does not exist.
    fn no_app(&self) -> DriverError {
        let how = ": it takes the app's id, shown in the APIPark console";
        keys::no_such("APIPark", ("app", "app"), &self.app, how)
    }

    /// Every `apikey` authorization of the app (other drivers are not bearer keys).
    fn items(&self) -> Result<Vec<Item>> {
        let list = Req::get("/app/authorizations");
        let (answer, data) = self.call(list, None, || self.no_app())?;
        let items: Vec<Item> = field(&answer, data, "authorizations")?;
        Ok(items
            .into_iter()
            .filter(|i| i.head.driver == DRIVER_APIKEY)
            .collect())
    }

    /// A request about authorization `id`, which must exist.
    fn on_auth(&self, req: Req, id: &str) -> Result<(Answer, Map<String, Value>)> {
        self.call(req, Some(id), || DriverError::NotFound(id.to_string()))
    }

    fn detail(&self, id: &str) -> Result<Authorization> {
        let (answer, data) = self.on_auth(Req::get(ONE), id)?;
        field(&answer, data, "authorization")
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
}

impl KeyGateway for Apipark {
    type Raw = Raw;

    fn api(&self) -> &AdminApi {
        &self.api
    }

    /// The list carries no key: the details are read for every key, but for
    /// prefix resolution.
    fn list_raw(&self, reach: Reach) -> Result<Vec<Raw>> {
        self.items()?
            .into_iter()
            .map(|i| match reach {
                Reach::Ids => Ok((i, None)),
                _ => self.complete((i, None)),
            })
            .collect()
    }

    /// APIPark has no read by id without the app's list: prefixes do it.
    fn fetch(&self, _: &str) -> Result<Option<Raw>> {
        Ok(None)
    }

    fn complete(&self, (item, _): Raw) -> Result<Raw> {
        let auth = self.detail(&item.head.id)?;
        Ok((item, Some(auth)))
    }

    fn id_of(&self, raw: &Raw) -> Option<String> {
        Some(raw.0.head.id.clone())
    }

    fn key_of<'a>(&self, raw: &'a Raw) -> Option<&'a str> {
        raw.1.as_ref()?.apikey()
    }

    fn to_token(&self, raw: &Raw) -> Result<Token> {
        Ok(to_token(raw))
    }

    fn create(&self, new: &NewToken) -> Result<Created> {
        let secret = Secret::generate();
        let name = new.name.clone().unwrap_or_default();
        let body = Self::body(&name, new.expires_at, &secret, &new.labels);
        let post = Req::new(Method::POST, ONE).body(&body).hiding(&secret);
        let (answer, data) = self.call(post, None, || self.no_app())?;
        let auth: Authorization = field(&answer, data, "authorization")?;
        if auth
            .apikey()
            .is_some_and(|k| !secret::ct_eq(k.as_bytes(), secret.expose().as_bytes()))
        {
            let m = "APIPark stored another key than the one tok sent";
            return Err(DriverError::protocol(answer.url, m));
        }
        let item = Item {
            head: auth.head.clone(),
            creator: None,
            create_time: None,
        };
        let mut token = to_token(&(item, Some(auth)));
        token.created_at = Utc::now();
        Ok(Created { token, secret })
    }

    fn recreate(&self, _: &Raw, like: &NewToken) -> Result<Created> {
        self.create(like)
    }

    fn delete(&self, (item, _): &Raw) -> Result<()> {
        self.on_auth(Req::new(Method::DELETE, ONE), &item.head.id)?;
        Ok(())
    }

    /// Sets a new `expire_time`. An edit must carry the config again, or
    /// APIPark rejects it, so the key goes back as it was.
    fn set_expiry(&self, raw: Raw, until: DateTime<Utc>) -> Result<Token> {
        let auth = match raw.1 {
            Some(a) => a,
            None => self.detail(&raw.0.head.id)?,
        };
        let item = raw.0;
        let key = Secret::new(auth.apikey().unwrap_or_default());
        let mut body = Self::body(&auth.head.name, Some(until), &key, &auth.labels());
        body["position"] = json!(auth.position);
        body["token_name"] = json!(auth.token_name);
        body["hide_credential"] = json!(auth.hide_credential);
        if let Some(obj) = body.as_object_mut() {
            obj.remove("driver");
        }
        let put = Req::new(Method::PUT, ONE).body(&body).hiding(&key);
        self.on_auth(put, &item.head.id)?;
        let mut t = to_token(&(item, Some(auth)));
        t.expires_at = Some(until);
        t.state = t.state_at(Utc::now());
        Ok(t)
    }

    fn whoami(&self) -> Result<Identity> {
        let keys = self.items()?.len();
        Ok(Identity::checked(format!(
            "APIPark system API key, for app `{}` ({keys} apikey authorization{})",
            self.app,
            if keys == 1 { "" } else { "s" }
        )))
    }
}

/// An authorization as a token (the details, where read, give labels and fingerprint).
pub fn to_token((item, auth): &Raw) -> Token {
    let created_at = item
        .create_time
        .as_deref()
        .and_then(parse_time)
        .unwrap_or_else(Utc::now);
    let mut t = Token::bare(
        item.head.id.clone(),
        created_at,
        keys::from_unix(item.head.expire_time),
    );
    t.name = Some(item.head.name.clone()).filter(|n| !n.is_empty());
    t.created_by = item.creator.as_ref().and_then(|c| {
        if !c.name.is_empty() && c.name != "unknown" {
            Some(c.name.clone())
        } else {
            Some(c.id.clone()).filter(|i| !i.is_empty())
        }
    });
    if let Some(a) = auth {
        t.labels = a.labels();
        t.fingerprint = a.apikey().map_or(t.fingerprint, keys::fingerprint);
    }
    t
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
            let m = format!(
                "HTTP {} with a body that is not APIPark's JSON envelope ({e})",
                answer.status
            );
            return Err(DriverError::protocol(&answer.url, m));
        }
    };
    if answer.status == 401 || answer.status == 403 || env.code == -8 {
        return Err(http_client::refused_credential(
            DriverKind::Apipark,
            answer,
            &http_client::redact(&env.msg, secrets),
        ));
    }
    if env.code != 0 {
        let msg = http_client::redact(&env.msg, secrets);
        // gorm's "record not found" and APIPark's "... not exists".
        if msg.contains("not found") || msg.contains("not exist") {
            return Err(DriverError::NotFound(msg));
        }
        let at = format!(
            "code {} in an HTTP {} answer from {}",
            env.code, answer.status, answer.url
        );
        let m = format!("APIPark refused the request ({at}): {msg}");
        return Err(DriverError::gateway(Kind::Failure, m, None));
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
    let protocol = |m: String| DriverError::protocol(&answer.url, m);
    let v = data
        .remove(name)
        .ok_or_else(|| protocol(format!("the answer has no `data.{name}`")))?;
    serde_json::from_value(v).map_err(|e| {
        protocol(format!(
            "`data.{name}` is not what APIPark v1.9 sends ({e})"
        ))
    })
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
        assert_eq!(keys::from_unix(0), None);
        assert!(keys::from_unix(1_900_000_000).is_some());
    }
}

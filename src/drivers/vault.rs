//! The `vault` driver: OpenBao and HashiCorp Vault token auth (`auth/token`).
//!
//! A token's id in tok is its accessor, Vault's non-secret handle. Vault keeps
//! no record of a token once it is revoked, expires or runs out of uses, so
//! every token this driver sees is live. Routes and JSON follow OpenBao 2.7
//! (`vault/token_store.go`), which matches Vault's documented API.

use super::http_client::{redact_url, snippet, Http};
use super::{
    Capabilities, DriverError, DriverKind, Gateway, Identity, Result, TransportCause, Warn,
};
use crate::credentials::Credential;
use crate::model::{check_new_token, Created, Filter, NewToken, RevokeOutcome, State, Token};
use crate::secret::Secret;
use chrono::{DateTime, TimeZone, Utc};
use reqwest::blocking::Response;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Where token auth is mounted unless the profile or --vault-mount says otherwise.
pub const DEFAULT_MOUNT: &str = "auth/token";

/// How many lookups `list` keeps in flight at once.
const LIST_CONCURRENCY: usize = 8;

/// The meta key in which tok records a token's use limit at creation: Vault
/// reports only the uses left, and tok shows uses made as well.
pub const USES_KEY: &str = "tok_max_uses";

const CREDENTIAL_HINT: &str =
    "set VAULT_TOKEN (or TOK_ADMIN_TOKEN) to a Vault token whose policies allow managing tokens";

pub struct Vault {
    http: Http,
    credential: Option<Credential>,
    /// Mount path without slashes at either end, e.g. `auth/token`.
    mount: String,
    namespace: Option<String>,
    warn: Warn,
}

/// A Vault error answer: `{"errors": [...]}` with its status.
#[derive(Debug)]
struct Refusal {
    status: u16,
    url: String,
    errors: Vec<String>,
}

impl Refusal {
    fn says(&self, needle: &str) -> bool {
        self.errors.iter().any(|e| e.contains(needle))
    }

    fn message(&self) -> String {
        if self.errors.is_empty() {
            format!("HTTP {} from {}", self.status, self.url)
        } else {
            self.errors.join("; ")
        }
    }
}

enum CallError {
    Driver(DriverError),
    Refused(Refusal),
}

impl From<DriverError> for CallError {
    fn from(e: DriverError) -> Self {
        CallError::Driver(e)
    }
}

type Call<T> = std::result::Result<T, CallError>;

/// `data` of `lookup`, `lookup-accessor` and `lookup-self`. The token's own
/// `id` (its secret, on lookups by secret) is deliberately not read.
#[derive(Debug, Clone, Deserialize)]
struct TokenData {
    accessor: String,
    #[serde(default)]
    creation_time: Option<i64>,
    #[serde(default)]
    creation_ttl: Option<u64>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    expire_time: Option<String>,
    #[serde(default)]
    explicit_max_ttl: Option<u64>,
    #[serde(default)]
    issue_time: Option<String>,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
    #[serde(default)]
    num_uses: Option<u64>,
    #[serde(default)]
    period: Option<u64>,
    #[serde(default)]
    policies: Option<Vec<String>>,
    #[serde(default)]
    renewable: Option<bool>,
    #[serde(default)]
    ttl: Option<i64>,
}

/// `auth` of `create`.
#[derive(Deserialize)]
struct CreateAuth {
    client_token: String,
    accessor: String,
    #[serde(default)]
    policies: Option<Vec<String>>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    lease_duration: Option<u64>,
    #[serde(default)]
    num_uses: Option<u64>,
}

impl Vault {
    pub fn new(settings: &super::Settings, warn: Warn) -> Result<Vault> {
        let mount = settings
            .profile
            .vault_mount
            .as_deref()
            .unwrap_or(DEFAULT_MOUNT)
            .trim_matches('/')
            .to_string();
        if mount.is_empty()
            || mount
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            || mount.contains(['?', '#', ' '])
        {
            return Err(
                DriverError::Invalid(format!("`{mount}` is not a Vault mount path")).with_hint(
                    "give the path token auth is mounted at, e.g. --vault-mount auth/token",
                ),
            );
        }
        let namespace = settings
            .profile
            .vault_namespace
            .as_deref()
            .map(|n| n.trim_matches('/').to_string())
            .filter(|n| !n.is_empty());
        Ok(Vault {
            http: Http::new(&settings.http)?,
            credential: settings.credential.clone(),
            mount,
            namespace,
            warn,
        })
    }

    fn url(&self, path: &str) -> String {
        self.http.url(&format!("/v1/{}/{path}", self.mount))
    }

    /// One request to `path` under the mount, with the admin token.
    fn call(&self, method: Method, path: &str, body: Option<Value>) -> Call<Value> {
        let cred = self.credential.as_ref().ok_or_else(|| {
            DriverError::Unauthorized("no Vault token to act with".into())
                .with_hint(CREDENTIAL_HINT)
        })?;
        let url = self.url(path);
        let mut req = self.http.client().request(method, &url);
        let mut token =
            reqwest::header::HeaderValue::from_str(cred.secret.expose()).map_err(|_| {
                DriverError::Invalid(format!(
                    "the Vault token from {} contains characters that cannot go in a header",
                    cred.source
                ))
            })?;
        token.set_sensitive(true);
        req = req.header("X-Vault-Token", token);
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = self.http.send(req)?;
        self.answer(resp)
    }

    fn post(&self, path: &str, body: Value) -> Call<Value> {
        self.call(Method::POST, path, Some(body))
    }

    /// Reads an answer: prints Vault's warnings, returns the body of a success
    /// and the `errors` of a failure.
    fn answer(&self, resp: Response) -> Call<Value> {
        let url = redact_url(resp.url().as_str());
        let status = resp.status();
        let bytes = resp.bytes().map_err(|e| DriverError::Transport {
            url: url.clone(),
            cause: TransportCause::Other,
            message: format!("the answer was cut off: {e}"),
        })?;
        let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                // A success may carry a secret: never quote its body.
                Err(_) if status.is_success() => {
                    return Err(DriverError::Protocol {
                        url,
                        message: format!(
                        "HTTP {status} with {} bytes that are not JSON; is this a Vault server?",
                        bytes.len()
                    ),
                    }
                    .into())
                }
                Err(_) => {
                    return Err(DriverError::Http {
                        status: status.as_u16(),
                        url,
                        body: snippet(&bytes),
                    }
                    .into())
                }
            }
        };
        if let Some(ws) = body.get("warnings").and_then(Value::as_array) {
            for w in ws.iter().filter_map(Value::as_str) {
                (self.warn)(&format!("Vault: {}", clean_error(w)));
            }
        }
        if status.is_success() {
            return Ok(body);
        }
        let errors = body
            .get("errors")
            .and_then(Value::as_array)
            .map(|es| {
                es.iter()
                    .filter_map(Value::as_str)
                    .map(clean_error)
                    .collect()
            })
            .unwrap_or_default();
        Err(CallError::Refused(Refusal {
            status: status.as_u16(),
            url,
            errors,
        }))
    }

    /// The generic meaning of a refusal; callers catch the special cases first.
    fn refusal(&self, r: Refusal) -> DriverError {
        let msg = r.message();
        match r.status {
            403 => {
                let source = self
                    .credential
                    .as_ref()
                    .map(|c| c.source.to_string())
                    .unwrap_or_else(|| "nowhere".into());
                DriverError::Forbidden(format!("Vault said `{msg}` at {}", r.url)).with_hint(
                    format!(
                        "the Vault token from {source} is wrong or expired, or its policies do not allow this; {CREDENTIAL_HINT}"
                    ),
                )
            }
            400 if r.says("child policies must be subset of parent") => DriverError::Invalid(
                format!("Vault refused the request: {msg}"),
            )
            .with_hint("the admin token can only give policies it holds itself (unless it has sudo on auth/token/create); drop the other --scope values or use another admin token"),
            400 => DriverError::Invalid(format!("Vault refused the request: {msg}")),
            404 if r.errors.is_empty() || r.says("no handler for route") => DriverError::Invalid(
                format!("there is no token auth at {}", r.url),
            )
            .with_hint(format!(
                "check --vault-mount (now `{}`, default `{DEFAULT_MOUNT}`) and --vault-namespace",
                self.mount
            )),
            503 if r.says("sealed") => DriverError::Http {
                status: 503,
                url: r.url,
                body: msg,
            }
            .with_hint("Vault is sealed; unseal it (`bao operator unseal`) and try again"),
            status => DriverError::Http {
                status,
                url: r.url,
                body: msg,
            },
        }
    }

    fn lift<T>(&self, r: Call<T>) -> Result<T> {
        r.map_err(|e| match e {
            CallError::Driver(d) => d,
            CallError::Refused(r) => self.refusal(r),
        })
    }

    /// `lookup-accessor`; `None` when Vault knows no such accessor.
    fn lookup_accessor(&self, accessor: &str) -> Result<Option<TokenData>> {
        match self.post("lookup-accessor", json!({ "accessor": accessor })) {
            Ok(v) => data_of(&v, &self.url("lookup-accessor")).map(Some),
            Err(CallError::Refused(r)) if r.status == 400 && r.says("invalid accessor") => Ok(None),
            Err(e) => self.lift(Err(e)),
        }
    }

    /// Every accessor Vault holds (an empty list is a 404 in Vault).
    fn accessors(&self) -> Result<Vec<String>> {
        match self.call(Method::GET, "accessors?list=true", None) {
            Ok(v) => Ok(v
                .pointer("/data/keys")
                .and_then(Value::as_array)
                .map(|ks| {
                    ks.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()),
            Err(CallError::Refused(r)) if r.status == 404 && r.errors.is_empty() => Ok(Vec::new()),
            Err(e) => self.lift(Err(e)),
        }
    }

    /// The token data for an exact accessor or a unique accessor prefix.
    fn resolve(&self, id_or_prefix: &str) -> Result<TokenData> {
        let id = id_or_prefix.trim();
        if id.is_empty() {
            return Err(DriverError::Invalid("the token id is empty".into())
                .with_hint("give a token's accessor, as `tok list` shows it"));
        }
        if looks_like_vault_token(id) {
            return Err(DriverError::Invalid(
                "that is a Vault token (a secret), not an accessor".into(),
            )
            .with_hint("pipe the token in instead: `printf %s \"$TOKEN\" | tok inspect -`"));
        }
        if let Some(d) = self.lookup_accessor(id)? {
            return Ok(d);
        }
        let matches: Vec<String> = self
            .accessors()?
            .into_iter()
            .filter(|a| a.starts_with(id))
            .collect();
        match matches.as_slice() {
            [one] => self.lookup_accessor(one)?.ok_or_else(|| gone(one)),
            [] => Err(gone(id)),
            _ => Err(DriverError::Ambiguous {
                prefix: id.to_string(),
                candidates: matches,
            }),
        }
    }

    fn create_body(&self, new: &NewToken, now: DateTime<Utc>) -> Result<Value> {
        check_new_token(new).map_err(DriverError::Invalid)?;
        if new.description.is_some() {
            return Err(
                DriverError::Invalid("Vault tokens have no description".into())
                    .with_hint("drop --description; a --label key=value is kept as token meta"),
            );
        }
        if new.labels.contains_key(USES_KEY) {
            return Err(DriverError::Invalid(format!(
                "the label `{USES_KEY}` is tok's own record of the use limit"
            ))
            .with_hint("use another label key"));
        }
        let Some(expires_at) = new.expires_at else {
            return Err(DriverError::Invalid(
                "Vault tokens always expire: without a TTL Vault gives the mount's default".into(),
            )
            .with_hint("give --ttl or --expires-at (a periodic token can only be made with Vault's own CLI)"));
        };
        if new.scopes.is_empty() {
            return Err(DriverError::Invalid(
                "name the token's policies with --scope".into(),
            )
            .with_hint("without policies Vault copies the admin token's own (often `root`); use --scope default for the default policy alone"));
        }
        // Round up so that a TTL asked as 15m is not sent as 14m59s.
        let ms = (expires_at - now).num_milliseconds();
        if ms <= 0 {
            return Err(DriverError::Invalid(
                "the expiry time is in the past".into(),
            ));
        }
        let ttl = (ms as u64).div_ceil(1000);
        let mut meta = new.labels.clone();
        if let Some(m) = new.max_uses {
            meta.insert(USES_KEY.into(), m.to_string());
        }
        let mut body = json!({
            "ttl": format!("{ttl}s"),
            "policies": new.scopes,
            "meta": meta,
            "renewable": true,
            "num_uses": new.max_uses.unwrap_or(0),
        });
        if let Some(n) = &new.name {
            body["display_name"] = json!(n);
        }
        Ok(body)
    }

    /// POST create; the new token as Vault holds it.
    fn create_with(&self, body: Value) -> Result<Created> {
        let v = self.lift(self.post("create", body))?;
        let auth: CreateAuth = v
            .get("auth")
            .cloned()
            .ok_or_else(|| protocol(&self.url("create"), "the answer has no `auth`"))
            .and_then(|a| {
                serde_json::from_value(a).map_err(|e| protocol(&self.url("create"), &e.to_string()))
            })?;
        let secret = Secret::new(auth.client_token);
        let now = Utc::now();
        let token = match self.lookup_accessor(&auth.accessor) {
            Ok(Some(d)) => to_token(&d, now),
            // The token exists and its secret is in hand: report what the
            // create answer said rather than lose the secret.
            other => {
                let why = match other {
                    Err(e) => e.to_string(),
                    _ => "Vault no longer knows its accessor".into(),
                };
                (self.warn)(&format!(
                    "created token {} but could not read it back ({why}); its details come from the create answer",
                    auth.accessor
                ));
                let (max_uses, uses) = uses_of(auth.num_uses, auth.metadata.as_ref());
                Token {
                    id: auth.accessor.clone(),
                    name: None,
                    description: None,
                    scopes: auth.policies.unwrap_or_default(),
                    labels: labels_of(auth.metadata.as_ref()),
                    created_at: now,
                    created_by: None,
                    expires_at: auth
                        .lease_duration
                        .filter(|d| *d > 0)
                        .map(|d| now + chrono::TimeDelta::seconds(d as i64)),
                    max_uses,
                    uses,
                    last_used_at: None,
                    state: State::Active,
                    revoked_at: None,
                    revoked_by: None,
                    revoke_reason: None,
                    fingerprint: NO_FINGERPRINT.into(),
                }
            }
        };
        Ok(Created { token, secret })
    }

    fn revoke_accessor(&self, accessor: &str) -> Result<RevokeOutcome> {
        match self.post("revoke-accessor", json!({ "accessor": accessor })) {
            Ok(v) => {
                let gone = v
                    .get("warnings")
                    .and_then(Value::as_array)
                    .is_some_and(|ws| {
                        ws.iter()
                            .filter_map(Value::as_str)
                            .any(|w| w.contains("No token found"))
                    });
                Ok(if gone {
                    RevokeOutcome::AlreadyRevoked
                } else {
                    RevokeOutcome::Revoked
                })
            }
            Err(CallError::Refused(r)) if r.status == 400 && r.says("invalid accessor") => {
                Ok(RevokeOutcome::AlreadyRevoked)
            }
            Err(e) => self.lift(Err(e)),
        }
    }

    fn renew_accessor(&self, accessor: &str, increment: Option<u64>) -> Result<()> {
        let mut body = json!({ "accessor": accessor });
        if let Some(i) = increment {
            body["increment"] = json!(format!("{i}s"));
        }
        self.lift(self.post("renew-accessor", body)).map(|_| ())
    }
}

/// Vault's multierror text (`1 error occurred:\n\t* invalid accessor\n\n`)
/// as its plain message.
fn clean_error(e: &str) -> String {
    let items: Vec<&str> = e
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("* "))
        .collect();
    if e.contains("error occurred") && !items.is_empty() {
        items.join("; ")
    } else {
        e.trim().to_string()
    }
}

fn protocol(url: &str, message: &str) -> DriverError {
    DriverError::Protocol {
        url: url.to_string(),
        message: message.to_string(),
    }
}

fn data_of(v: &Value, url: &str) -> Result<TokenData> {
    let data = v
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| protocol(url, "the answer has no `data`"))?;
    serde_json::from_value(data.clone()).map_err(|e| protocol(url, &e.to_string()))
}

/// Vault forgets a token when it is revoked, expires or is used up.
fn gone(id: &str) -> DriverError {
    DriverError::NotFound(id.to_string()).with_hint(
        "Vault keeps no record of revoked, expired or used-up tokens; run `tok list` to see the live ones",
    )
}

/// What the fingerprint column shows: Vault never returns a secret by accessor.
const NO_FINGERPRINT: &str = "-";

/// Whether `s` is a Vault token rather than an accessor: tokens carry a type
/// prefix (`hvs.`, `hvb.`, `hvr.`, or the older `s.`, `b.`, `r.`); accessors
/// are plain base62, with at most a `.namespace` suffix.
pub fn looks_like_vault_token(s: &str) -> bool {
    matches!(
        s.split_once('.').map(|(p, _)| p),
        Some("hvs" | "hvb" | "hvr" | "s" | "b" | "r")
    )
}

fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// (max_uses, uses) from what Vault reports: `num_uses` is the uses left, 0
/// for no limit; the limit itself is in tok's meta key when tok made the token.
fn uses_of(num_uses: Option<u64>, meta: Option<&BTreeMap<String, String>>) -> (Option<u64>, u64) {
    match num_uses.unwrap_or(0) {
        0 => (None, 0),
        left => {
            let max = meta
                .and_then(|m| m.get(USES_KEY))
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|m| *m >= left);
            match max {
                Some(m) => (Some(m), m - left),
                None => (Some(left), 0),
            }
        }
    }
}

fn labels_of(meta: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    meta.map(|m| {
        m.iter()
            .filter(|(k, _)| k.as_str() != USES_KEY)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
    .unwrap_or_default()
}

/// Vault prefixes display names with the auth method (`token-deploy`); a
/// token made without one is just `token`.
fn name_of(display_name: Option<&str>) -> Option<String> {
    match display_name {
        None | Some("") | Some("token") => None,
        Some(d) => Some(d.strip_prefix("token-").unwrap_or(d).to_string()),
    }
}

fn to_token(d: &TokenData, now: DateTime<Utc>) -> Token {
    let (max_uses, uses) = uses_of(d.num_uses, d.meta.as_ref());
    let created_at = parse_time(d.issue_time.as_deref())
        .or_else(|| {
            d.creation_time
                .and_then(|s| Utc.timestamp_opt(s, 0).single())
        })
        .unwrap_or(now);
    let mut t = Token {
        id: d.accessor.clone(),
        name: name_of(d.display_name.as_deref()),
        description: None,
        scopes: d.policies.clone().unwrap_or_default(),
        labels: labels_of(d.meta.as_ref()),
        created_at,
        created_by: None,
        expires_at: parse_time(d.expire_time.as_deref()),
        max_uses,
        uses,
        last_used_at: None,
        state: State::Active,
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
        fingerprint: NO_FINGERPRINT.into(),
    };
    t.state = t.state_at(now);
    t
}

fn mark_revoked(mut t: Token, now: DateTime<Utc>) -> Token {
    t.revoked_at = Some(now);
    t.state = State::Revoked;
    t
}

impl Gateway for Vault {
    fn kind(&self) -> DriverKind {
        DriverKind::Vault
    }

    fn capabilities(&self) -> Capabilities {
        DriverKind::Vault.capabilities()
    }

    fn create(&self, new: &NewToken) -> Result<Created> {
        let body = self.create_body(new, Utc::now())?;
        self.create_with(body)
    }

    fn list(&self, filter: &Filter, sink: &mut dyn FnMut(Token) -> Result<()>) -> Result<()> {
        let mut keys = self.accessors()?;
        if let Some(p) = &filter.id_prefix {
            keys.retain(|k| k.starts_with(p.as_str()));
        }
        // Vault has no bulk lookup: fetch the details with a bounded number of
        // blocking requests in flight, each thread taking the next accessor.
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<TokenData>>>> =
            Mutex::new((0..keys.len()).map(|_| None).collect());
        let workers = LIST_CONCURRENCY.min(keys.len());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(key) = keys.get(i) else { break };
                    let r = self.lookup_accessor(key).transpose();
                    let failed = matches!(r, Some(Err(_)));
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = r;
                    if failed {
                        // Stop early: the first error fails the listing.
                        next.store(keys.len(), Ordering::Relaxed);
                    }
                });
            }
        });
        let now = Utc::now();
        let mut tokens = Vec::with_capacity(keys.len());
        for r in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
            match r {
                // Revoked or expired between the listing and the lookup.
                None => {}
                Some(Ok(d)) => tokens.push(to_token(&d, now)),
                Some(Err(e)) => return Err(e),
            }
        }
        tokens.retain(|t| filter.matches(t, now));
        tokens.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        let limit = filter.limit.map_or(usize::MAX, |l| l as usize);
        for t in tokens.into_iter().take(limit) {
            sink(t)?;
        }
        Ok(())
    }

    fn get(&self, id_or_prefix: &str) -> Result<Token> {
        Ok(to_token(&self.resolve(id_or_prefix)?, Utc::now()))
    }

    fn lookup(&self, secret: &Secret) -> Result<Token> {
        match self.post("lookup", json!({ "token": secret.expose() })) {
            Ok(v) => Ok(to_token(&data_of(&v, &self.url("lookup"))?, Utc::now())),
            Err(CallError::Refused(r))
                if (r.status == 403 && r.says("bad token"))
                    || (r.status == 400 && r.says("invalid token")) =>
            {
                Err(DriverError::UnknownSecret {
                    fingerprint: secret.fingerprint(),
                }
                .with_hint(
                    "Vault knows no live token with that secret: it was revoked, expired, used up, or belongs to another Vault or namespace",
                ))
            }
            Err(e) => self.lift(Err(e)),
        }
    }

    fn revoke(&self, id: &str, reason: Option<&str>) -> Result<(Token, RevokeOutcome)> {
        let d = self.resolve(id)?;
        if reason.is_some() {
            (self.warn)("Vault keeps no revoke reason; --reason was not recorded");
        }
        let outcome = self.revoke_accessor(&d.accessor)?;
        Ok((mark_revoked(to_token(&d, Utc::now()), Utc::now()), outcome))
    }

    fn rotate(&self, id: &str, grace: Option<u64>) -> Result<(Created, Token)> {
        let old = self.resolve(id)?;
        let renewable = old.renewable.unwrap_or(false);
        let ttl_left = old.ttl.unwrap_or(0).max(0) as u64;
        let expires = old.expire_time.is_some();
        // Vault cannot schedule a revocation; a grace period is the old token
        // renewed to exactly that much time, which needs a renewable token.
        let shorten = match grace {
            Some(g) if expires && g >= ttl_left => false,
            Some(_) if !renewable => {
                return Err(DriverError::Invalid(format!(
                    "token {} is not renewable, so Vault cannot cut it to a grace period",
                    old.accessor
                ))
                .with_hint(match parse_time(old.expire_time.as_deref()) {
                    Some(e) => format!(
                        "rotate without --grace to revoke it at once; or leave it to expire at {}",
                        crate::output::rfc3339(e)
                    ),
                    None => "rotate without --grace to revoke it at once".into(),
                }))
            }
            Some(_) => true,
            None => false,
        };
        let mut body = json!({
            "policies": old.policies.clone().unwrap_or_default(),
            "meta": old.meta.clone().unwrap_or_default(),
            "renewable": renewable,
        });
        let (max_uses, _) = uses_of(old.num_uses, old.meta.as_ref());
        if let Some(m) = max_uses {
            body["num_uses"] = json!(m);
        }
        if let Some(ttl) = old.creation_ttl.filter(|t| *t > 0) {
            body["ttl"] = json!(format!("{ttl}s"));
        }
        if let Some(m) = old.explicit_max_ttl.filter(|t| *t > 0) {
            body["explicit_max_ttl"] = json!(format!("{m}s"));
        }
        if let Some(p) = old.period.filter(|p| *p > 0) {
            body["period"] = json!(format!("{p}s"));
        }
        if let Some(n) = name_of(old.display_name.as_deref()) {
            body["display_name"] = json!(n);
        }
        let created = self.create_with(body)?;
        let now = Utc::now();
        let old_token = match grace {
            None => {
                self.revoke_accessor(&old.accessor)?;
                mark_revoked(to_token(&old, now), now)
            }
            Some(g) if shorten => {
                self.renew_accessor(&old.accessor, Some(g))?;
                match self.lookup_accessor(&old.accessor)? {
                    Some(d) => to_token(&d, Utc::now()),
                    None => return Err(gone(&old.accessor)),
                }
            }
            // It expires within the grace period anyway.
            Some(_) => to_token(&old, now),
        };
        Ok((created, old_token))
    }

    fn renew(&self, id: &str, increment: Option<u64>) -> Result<Token> {
        let d = self.resolve(id)?;
        if !d.renewable.unwrap_or(false) {
            return Err(DriverError::Conflict(format!(
                "token {} is not renewable (it was created with renewable=false, or never expires)",
                d.accessor
            ))
            .with_hint("rotate it instead: `tok rotate ID` makes a new token like it"));
        }
        self.renew_accessor(&d.accessor, increment)?;
        match self.lookup_accessor(&d.accessor)? {
            Some(d) => Ok(to_token(&d, Utc::now())),
            None => Err(gone(&d.accessor)),
        }
    }

    fn whoami(&self) -> Result<Identity> {
        let v = self.lift(self.call(Method::GET, "lookup-self", None))?;
        let d = data_of(&v, &self.url("lookup-self"))?;
        let name = d.display_name.clone().unwrap_or_else(|| "token".into());
        Ok(Identity {
            principal: format!("{name} (accessor {})", d.accessor),
            expires_at: parse_time(d.expire_time.as_deref()),
            scopes: d.policies.unwrap_or_default(),
        })
    }

    fn is_secret(&self, s: &str) -> bool {
        crate::secret::looks_like_secret(s) || looks_like_vault_token(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multierror_text_is_cleaned() {
        assert_eq!(
            clean_error("1 error occurred:\n\t* invalid accessor\n\n"),
            "invalid accessor"
        );
        assert_eq!(clean_error("permission denied"), "permission denied");
    }

    #[test]
    fn tokens_and_accessors_are_told_apart() {
        assert!(looks_like_vault_token("s.VabI4UKVu4BfJIXootLceCTY"));
        assert!(looks_like_vault_token("hvs.CAESIJ"));
        assert!(!looks_like_vault_token("wNStR33m7TIvtuIxyjc6tqj4"));
        assert!(!looks_like_vault_token("wNStR33m7TIvtuIxyjc6tqj4.abcde"));
    }

    #[test]
    fn uses_come_from_the_uses_left() {
        let mut meta = BTreeMap::new();
        assert_eq!(uses_of(Some(0), None), (None, 0));
        assert_eq!(uses_of(Some(2), None), (Some(2), 0));
        meta.insert(USES_KEY.to_string(), "3".to_string());
        assert_eq!(uses_of(Some(2), Some(&meta)), (Some(3), 1));
        // A meta value that cannot be right is ignored.
        meta.insert(USES_KEY.to_string(), "1".to_string());
        assert_eq!(uses_of(Some(2), Some(&meta)), (Some(2), 0));
    }

    #[test]
    fn display_names_lose_the_method_prefix() {
        assert_eq!(name_of(Some("token-deploy")), Some("deploy".into()));
        assert_eq!(name_of(Some("token")), None);
        assert_eq!(name_of(Some("userpass-bob")), Some("userpass-bob".into()));
    }
}

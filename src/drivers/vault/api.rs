//! Vault's HTTP API as the driver uses it: requests with the admin token and
//! namespace, warnings passed on, `{"errors": [...]}` answers classified.

use super::model::{clean_error, data_of, TokenData};
use super::{Vault, CREDENTIAL_HINT, DEFAULT_MOUNT};
use crate::drivers::http_client::{cut_off, redact_url, snippet};
use crate::drivers::{DriverError, Result};
use crate::model::RevokeOutcome;
use reqwest::blocking::Response;
use reqwest::Method;
use serde_json::{json, Value};

/// A Vault error answer: `{"errors": [...]}` with its status.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) url: String,
    pub(super) errors: Vec<String>,
}

impl Refusal {
    pub(super) fn says(&self, needle: &str) -> bool {
        self.errors.iter().any(|e| e.contains(needle))
    }

    pub(super) fn message(&self) -> String {
        if self.errors.is_empty() {
            format!("HTTP {} from {}", self.status, self.url)
        } else {
            self.errors.join("; ")
        }
    }
}

pub(super) enum CallError {
    Driver(DriverError),
    Refused(Refusal),
}

impl From<DriverError> for CallError {
    fn from(e: DriverError) -> Self {
        CallError::Driver(e)
    }
}

pub(super) type Call<T> = std::result::Result<T, CallError>;
impl Vault {
    pub(super) fn url(&self, path: &str) -> String {
        self.http.url(&format!("/v1/{}/{path}", self.mount))
    }

    /// One request to `path` under the mount, with the admin token.
    pub(super) fn call(&self, method: Method, path: &str, body: Option<Value>) -> Call<Value> {
        let cred = self.credential.as_ref().ok_or_else(|| {
            DriverError::Unauthorized("no Vault token to act with".into())
                .with_hint(CREDENTIAL_HINT)
        })?;
        let url = self.url(path);
        let mut req = self.http.client().request(method, &url);
        let what = format!("the Vault token from {}", cred.source);
        req = req.header(
            "X-Vault-Token",
            super::super::http_client::sensitive(cred.secret.expose(), &what)?,
        );
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = self.http.send(req)?;
        self.answer(resp)
    }

    pub(super) fn post(&self, path: &str, body: Value) -> Call<Value> {
        self.call(Method::POST, path, Some(body))
    }

    /// Reads an answer: prints Vault's warnings, returns the body of a success
    /// and the `errors` of a failure.
    pub(super) fn answer(&self, resp: Response) -> Call<Value> {
        let url = redact_url(resp.url().as_str());
        let status = resp.status();
        let bytes = resp.bytes().map_err(|e| cut_off(&url, e))?;
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
        for w in strings(&body, "/warnings") {
            (self.warn)(&format!("Vault: {}", clean_error(w)));
        }
        if status.is_success() {
            return Ok(body);
        }
        let errors = strings(&body, "/errors").map(clean_error).collect();
        Err(CallError::Refused(Refusal {
            status: status.as_u16(),
            url,
            errors,
        }))
    }

    /// The generic meaning of a refusal; callers catch the special cases first.
    pub(super) fn refusal(&self, r: Refusal) -> DriverError {
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

    pub(super) fn lift<T>(&self, r: Call<T>) -> Result<T> {
        r.map_err(|e| match e {
            CallError::Driver(d) => d,
            CallError::Refused(r) => self.refusal(r),
        })
    }

    /// `lookup-accessor`; `None` when Vault knows no such accessor.
    pub(super) fn lookup_accessor(&self, accessor: &str) -> Result<Option<TokenData>> {
        match self.post("lookup-accessor", json!({ "accessor": accessor })) {
            Ok(v) => data_of(&v, &self.url("lookup-accessor")).map(Some),
            Err(CallError::Refused(r)) if r.status == 400 && r.says("invalid accessor") => Ok(None),
            Err(e) => self.lift(Err(e)),
        }
    }

    /// Every accessor Vault holds (an empty list is a 404 in Vault).
    pub(super) fn accessors(&self) -> Result<Vec<String>> {
        match self.call(Method::GET, "accessors?list=true", None) {
            Ok(v) => Ok(strings(&v, "/data/keys").map(String::from).collect()),
            Err(CallError::Refused(r)) if r.status == 404 && r.errors.is_empty() => Ok(Vec::new()),
            Err(e) => self.lift(Err(e)),
        }
    }

    pub(super) fn revoke_accessor(&self, accessor: &str) -> Result<RevokeOutcome> {
        match self.post("revoke-accessor", json!({ "accessor": accessor })) {
            Ok(v) => {
                let gone = strings(&v, "/warnings").any(|w| w.contains("No token found"));
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

    pub(super) fn renew_accessor(&self, accessor: &str, increment: Option<u64>) -> Result<()> {
        let mut body = json!({ "accessor": accessor });
        if let Some(i) = increment {
            body["increment"] = json!(format!("{i}s"));
        }
        self.lift(self.post("renew-accessor", body)).map(|_| ())
    }
}

/// The strings of the array at JSON `pointer` in `v` (none where there is none).
fn strings<'a>(v: &'a Value, pointer: &str) -> impl Iterator<Item = &'a str> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

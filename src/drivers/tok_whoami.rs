//! The credential check of the `tok` driver: `GET /v1/auth/self` on tok serve
//! answers with the admin token the request carries (its id, name, scopes and
//! `expires_at`, as in the token model); 401 when it is missing or invalid.
//!
//! `whoami` is what `tok login` and `tok auth status` need. The rest of the tok
//! driver (create, list, ...) belongs to the serve issue; until it is merged,
//! `TokWhoami` is the `Gateway` for the tok driver and refuses those operations
//! as unsupported. When the full driver lands, its `Gateway::whoami` can call
//! `whoami` below and this type goes.

use super::http_client::{read_json, snippet, Http, HttpSettings};
use super::{Capabilities, DriverError, DriverKind, Gateway, Identity, Op, Result};
use crate::credentials::Credential;
use crate::model::{Created, Filter, NewToken, RevokeOutcome, Token};
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// The path that names the caller's own admin token.
pub const AUTH_SELF: &str = "/v1/auth/self";

/// The fields of `GET /v1/auth/self` that whoami needs; others are ignored.
#[derive(Debug, Deserialize)]
struct SelfAnswer {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// Asks tok serve whose `credential` it is. Without a credential no request is
/// sent: there is nobody to ask about.
pub fn whoami(http: &Http, credential: Option<&Credential>) -> Result<Identity> {
    let Some(cred) = credential else {
        return Err(DriverError::Unauthorized(format!(
            "no credential for {}",
            http.base()
        )));
    };
    let url = http.url(AUTH_SELF);
    let resp = http.send(http.client().get(&url).bearer_auth(cred.secret.expose()))?;
    let status = resp.status().as_u16();
    match status {
        200 => {
            let a: SelfAnswer = read_json(resp)?;
            Ok(Identity {
                principal: match a.name {
                    Some(n) if !n.is_empty() => format!("{} ({n})", a.id),
                    _ => a.id,
                },
                expires_at: a.expires_at,
                scopes: a.scopes,
            })
        }
        401 => Err(DriverError::Unauthorized(format!(
            "{} rejected the credential from {} (missing, unknown, expired or revoked)",
            http.base(),
            cred.source
        ))),
        403 => Err(DriverError::Forbidden(format!(
            "{} does not let this credential see itself",
            http.base()
        ))),
        _ => {
            let body = resp.bytes().map(|b| snippet(&b)).unwrap_or_default();
            Err(DriverError::Http { status, url, body })
        }
    }
}

/// The tok driver as far as this branch has it: whoami only.
pub struct TokWhoami {
    http: Http,
    credential: Option<Credential>,
}

impl TokWhoami {
    pub fn new(http: &HttpSettings, credential: Option<Credential>) -> Result<TokWhoami> {
        Ok(TokWhoami {
            http: Http::new(http)?,
            credential,
        })
    }

    fn unsupported<T>(&self, op: Op) -> Result<T> {
        Err(DriverError::Unsupported { driver: "tok", op })
    }
}

impl Gateway for TokWhoami {
    fn kind(&self) -> DriverKind {
        DriverKind::Tok
    }

    /// What the full driver will do; until then each operation but whoami
    /// answers `Unsupported` itself.
    fn capabilities(&self) -> Capabilities {
        DriverKind::Tok.capabilities()
    }

    fn create(&self, _: &NewToken) -> Result<Created> {
        self.unsupported(Op::Create)
    }

    fn list(&self, _: &Filter, _: &mut dyn FnMut(Token) -> Result<()>) -> Result<()> {
        self.unsupported(Op::List)
    }

    fn get(&self, _: &str) -> Result<Token> {
        self.unsupported(Op::InspectById)
    }

    fn lookup(&self, _: &Secret) -> Result<Token> {
        self.unsupported(Op::InspectBySecret)
    }

    fn revoke(&self, _: &str, _: Option<&str>) -> Result<(Token, RevokeOutcome)> {
        self.unsupported(Op::Revoke)
    }

    fn rotate(&self, _: &str, _: Option<u64>) -> Result<(Created, Token)> {
        self.unsupported(Op::Rotate)
    }

    fn whoami(&self) -> Result<Identity> {
        whoami(&self.http, self.credential.as_ref())
    }
}

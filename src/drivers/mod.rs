//! The `Gateway` trait that every driver implements, its capability flags, and
//! the errors drivers raise at their seam.

pub mod apipark;
pub mod apisix;
pub mod http_client;
pub mod keys;
pub mod kong;
pub mod local;
pub mod oauth2;
pub mod tok;
pub mod tyk;
pub mod vault;

use crate::error::Kind;
use crate::model::{Created, Filter, NewToken, RevokeOutcome, Token};
pub use crate::registry::{Capabilities, DriverKind, Identity, Op, Scope, OP_NAMES};

/// A revoked token and what the revoke did.
pub type Revoked = (Token, RevokeOutcome);
use crate::secret::Secret;

/// How a driver shows a gateway's warnings (a TTL capped by the server, a
/// policy that does not exist): on stderr, through the command's `Out`.
pub type Warn = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// What opening a driver takes; each driver reads what it needs.
pub struct Opening {
    pub settings: Settings,
    /// The local store's directory (the local driver only).
    pub data_dir: Option<std::path::PathBuf>,
    /// `--owner`, `TOK_OWNER` or the profile's `owner`.
    pub owner: Option<String>,
    /// `--app`, `TOK_APP` or the profile's `app`.
    pub app: Option<String>,
    pub warn: Warn,
}

/// The driver of `kind`: the one place that turns a registry entry into code.
pub fn open(kind: DriverKind, o: Opening) -> Result<Box<dyn Gateway>> {
    use keys::Keys;
    let owner = o.owner.filter(|v| !v.trim().is_empty());
    let app = o.app.filter(|v| !v.trim().is_empty());
    Ok(match kind {
        DriverKind::Local => Box::new(local::Local::open(&o.data_dir.unwrap_or_default())?),
        DriverKind::Tok => Box::new(tok::TokDriver::new(&o.settings)?),
        DriverKind::Vault => Box::new(vault::Vault::new(&o.settings, o.warn)?),
        DriverKind::Oauth2 => Box::new(oauth2::OAuth2::new(&o.settings, o.warn)?),
        DriverKind::Apipark => Box::new(Keys(apipark::Apipark::new(o.settings, app)?)),
        DriverKind::Kong => Box::new(Keys(kong::Kong::new(o.settings, owner)?)),
        DriverKind::Apisix => Box::new(Keys(apisix::Apisix::new(o.settings, owner)?)),
        DriverKind::Tyk => Box::new(Keys(tyk::Tyk::new(o.settings)?)),
    })
}

/// Refuses `--app` and `--owner` where the driver takes neither: given to
/// another, they would be silently ignored.
pub fn check_scopes(
    kind: DriverKind,
    given: &[(Scope, bool)],
) -> Result<(), crate::error::UserError> {
    for &(scope, set) in given {
        if !set || kind.spec().scopes.contains(&scope) {
            continue;
        }
        let takers: Vec<&str> = DriverKind::taking(scope)
            .iter()
            .map(|k| k.as_str())
            .collect();
        let hint = match kind.spec().scopes.first() {
            Some(other) => other.instead().to_string(),
            None => format!("drop {} (or {})", scope.flag(), scope.env()),
        };
        return Err(crate::error::UserError::usage(format!(
            "{} is for the {} driver{}, not {}",
            scope.flag(),
            takers.join(" and "),
            if takers.len() == 1 { "" } else { "s" },
            kind.as_str()
        ))
        .hint(hint));
    }
    Ok(())
}

/// What a network driver is given to connect with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http: http_client::HttpSettings,
    /// None when no credential was found; the driver decides if it needs one.
    pub credential: Option<crate::credentials::Credential>,
    pub profile: crate::config::Profile,
}

/// Why a request got no answer, for the hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportCause {
    Refused,
    Dns,
    Tls,
    Timeout,
    Other,
}

/// Whether `s` is 1 to `max` ASCII letters and digits and characters of `extra`:
/// the shape of a token id (or a prefix of one) for `Gateway::looks_like_id`.
pub fn id_shaped(s: &str, max: usize, extra: &str) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// Refuses what is not a tok secret before tok's own stores look it up.
pub fn check_tok_secret(secret: &Secret) -> Result<()> {
    secret
        .validate()
        .map_err(|e| DriverError::Invalid(format!("that is not a valid tok secret: {e}")))
}

/// Whether `s` is hexadecimal digits and `-`, at most `max` of them: a UUID
/// (36) or a hash, or a prefix of one.
pub fn hex_shaped(s: &str, max: usize) -> bool {
    id_shaped(s, max, "-") && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Errors at the driver seam. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("not authenticated: {0}")]
    Unauthorized(String),
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("no token matches `{0}`")]
    NotFound(String),
    #[error("no token has that secret ({fingerprint})")]
    UnknownSecret { fingerprint: String },
    #[error("{}", crate::model::ambiguous(prefix, *total, candidates))]
    Ambiguous {
        prefix: String,
        /// How many tokens match; None when it is only known to be more
        /// than the candidates found.
        total: Option<usize>,
        candidates: Vec<String>,
    },
    #[error("the {driver} driver cannot {}", op.describe())]
    Unsupported { driver: &'static str, op: Op },
    #[error("{0}")]
    Invalid(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("HTTP {status} from {url}: {body}")]
    Http {
        status: u16,
        url: String,
        body: String,
    },
    #[error("could not reach {url}: {message}")]
    Transport {
        url: String,
        cause: TransportCause,
        message: String,
    },
    #[error("unexpected answer from {url}: {message}")]
    Protocol { url: String, message: String },
    /// The gateway refused in a way only the driver can explain: its own
    /// message, the kind that fixes the exit code, and its advice.
    #[error("{message}")]
    Gateway {
        message: String,
        kind: Kind,
        hint: Option<String>,
    },
    /// Any of the above with advice that only the driver can give (which
    /// variable holds its credential, what the gateway forgets).
    #[error("{inner}")]
    Hinted {
        inner: Box<DriverError>,
        hint: String,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("could not write the output")]
    Io(#[from] std::io::Error),
}

impl DriverError {
    /// An answer from `url` that is not what the gateway should send.
    pub fn protocol(url: impl Into<String>, message: impl Into<String>) -> DriverError {
        DriverError::Protocol {
            url: url.into(),
            message: message.into(),
        }
    }

    /// A refusal only the driver can explain, of `kind`, with its advice.
    pub fn gateway(kind: Kind, message: impl Into<String>, hint: Option<&str>) -> DriverError {
        DriverError::Gateway {
            message: message.into(),
            kind,
            hint: hint.map(String::from),
        }
    }

    /// This error with the driver's own advice in place of the generic hint.
    pub fn with_hint(self, hint: impl Into<String>) -> DriverError {
        DriverError::Hinted {
            inner: Box::new(self),
            hint: hint.into(),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            DriverError::Unauthorized(_) | DriverError::Forbidden(_) => Kind::Auth,
            DriverError::NotFound(_) | DriverError::UnknownSecret { .. } => Kind::NotFound,
            DriverError::Ambiguous { .. } | DriverError::Invalid(_) => Kind::Usage,
            DriverError::Unsupported { .. } => Kind::Unsupported,
            DriverError::Http { status: 404, .. } => Kind::NotFound,
            DriverError::Http {
                status: 401 | 403, ..
            } => Kind::Auth,
            DriverError::Store(e) => e.kind(),
            DriverError::Hinted { inner, .. } => inner.kind(),
            DriverError::Gateway { kind, .. } => *kind,
            _ => Kind::Failure,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            DriverError::NotFound(_) => {
                Some("run `tok list --state all` to see revoked and expired tokens too".into())
            }
            DriverError::UnknownSecret { .. } => Some(
                "the secret may belong to another gateway or profile; check --profile and --url"
                    .into(),
            ),
            DriverError::Ambiguous { .. } => {
                Some("type more characters of the id to pick one".into())
            }
            DriverError::Unsupported { driver, op } => Some(
                match DriverKind::from_name(driver) {
                    Some(k) if k.unsupported_hint(*op).is_some() => {
                        k.unsupported_hint(*op).unwrap_or_default().to_string()
                    }
                    Some(k) => format!(
                        "the {driver} driver can: {}; run `tok drivers` to compare drivers",
                        k.capabilities().names().join(", ")
                    ),
                    None => "run `tok drivers` to see what each driver supports".into(),
                },
            ),
            DriverError::Hinted { hint, .. } => Some(hint.clone()),
            DriverError::Gateway { hint, .. } => hint.clone(),
            DriverError::Unauthorized(_) => Some(format!(
                "store a working admin credential with `tok login`, or set {} to one",
                crate::env::ADMIN_TOKEN
            )),
            DriverError::Forbidden(_) => {
                Some("the admin token lacks the scope for this; use one with `tok:admin`".into())
            }
            DriverError::Store(e) => e.hint(),
            DriverError::Transport { cause, .. } => Some(
                match cause {
                    TransportCause::Refused => {
                        "is the server running there? check --url, TOK_URL or the profile"
                    }
                    TransportCause::Dns => "check the host name in --url, TOK_URL or the profile",
                    TransportCause::Tls => {
                        "trust the server's CA with --ca-cert FILE (or, at your own risk, --insecure)"
                    }
                    TransportCause::Timeout => "the server is slow or unreachable; raise --timeout or check the network",
                    TransportCause::Other => "check --url, TOK_URL or the profile",
                }
                .into(),
            ),
            DriverError::Http { status, .. } if *status >= 500 => {
                Some("the gateway failed; try again later or check its logs".into())
            }
            _ => None,
        }
    }
}

pub type Result<T, E = DriverError> = std::result::Result<T, E>;

/// A token gateway. Every command talks to its driver only through this trait.
pub trait Gateway {
    fn kind(&self) -> DriverKind;
    /// What this driver can do; fixed per kind, so known before any request.
    fn capabilities(&self) -> Capabilities {
        self.kind().capabilities()
    }

    fn create(&self, new: &NewToken) -> Result<Created>;

    /// Streams the matching tokens to `sink`, oldest first, without collecting.
    fn list(&self, filter: &Filter, sink: &mut dyn FnMut(Token) -> Result<()>) -> Result<()>;

    /// A token by exact id or unique id prefix.
    fn get(&self, id_or_prefix: &str) -> Result<Token>;

    /// A token by its secret; the secret never leaves the process but in a body.
    fn lookup(&self, secret: &Secret) -> Result<Token>;

    fn revoke(&self, id: &str, reason: Option<&str>) -> Result<Revoked>;

    /// A new token like `id`; the old one is revoked now, or expires after `grace`.
    fn rotate(&self, id: &str, grace: Option<u64>) -> Result<(Created, Token)>;

    /// Revokes `t`, which was looked up by `secret`. Gateways that know a
    /// token only by its secret (RFC 7009) need it; the rest revoke by id.
    fn revoke_secret(&self, secret: &Secret, t: &Token, reason: Option<&str>) -> Result<Revoked> {
        let _ = secret;
        self.revoke(&t.id, reason)
    }

    /// Extends a live token's lifetime by `increment` seconds from now (or by the
    /// gateway's default); answers the token as the gateway holds it afterwards.
    fn renew(&self, id: &str, increment: Option<u64>) -> Result<Token> {
        let _ = (id, increment);
        Err(DriverError::Unsupported {
            driver: self.kind().as_str(),
            op: Op::Renew,
        })
    }

    /// How clients of the gateway present a new secret, said once after create
    /// and rotate (on stderr), when that is not `Authorization: Bearer`.
    fn usage_note(&self) -> Option<String> {
        self.kind().spec().usage.map(String::from)
    }

    /// Whether `s`, given where an id or a secret may stand, is one of this
    /// gateway's secrets (so it must not be taken from argv or echoed).
    fn is_secret(&self, s: &str) -> bool {
        crate::secret::looks_like_secret(s)
    }

    /// Whether `s` is shaped like one of this gateway's token ids, or a prefix
    /// of one. Input that is neither this nor one of its secrets may be another
    /// gateway's secret: it is never sent as an id, nor shown whole.
    fn looks_like_id(&self, s: &str) -> bool {
        id_shaped(s, 64, "-_")
    }

    /// Checks the admin credential against the gateway and says whose it is and
    /// when it expires (for `tok login` and `tok auth status`). Drivers without a
    /// credential (local, or kong without one) answer with their own identity.
    fn whoami(&self) -> Result<Identity> {
        Err(DriverError::Unsupported {
            driver: self.kind().as_str(),
            op: Op::Whoami,
        })
    }

    /// Streams audit entries, oldest first. Only tok's own stores keep one.
    fn audit(
        &self,
        _filter: &crate::store::audit::AuditFilter,
        _sink: &mut dyn FnMut(crate::store::audit::Entry) -> Result<()>,
    ) -> Result<()> {
        Err(DriverError::Unsupported {
            driver: self.kind().as_str(),
            op: Op::Audit,
        })
    }

    /// Refuses `op` early when this driver cannot do it.
    fn require(&self, op: Op) -> Result<()> {
        if self.capabilities().supports(op) {
            Ok(())
        } else {
            Err(DriverError::Unsupported {
                driver: self.kind().as_str(),
                op,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_shapes_take_ids_and_prefixes_and_leave_secrets_out() {
        assert!(crate::store::looks_like_id("tk_7q2abc0def9z"));
        assert!(crate::store::looks_like_id("tk_7q"));
        assert!(crate::store::looks_like_id("7q2abc"));
        assert!(!crate::store::looks_like_id("tk_"));
        assert!(!crate::store::looks_like_id("hvs.CAESIabcdefghijklmnop"));
        assert!(!crate::store::looks_like_id(&"a".repeat(32)));
        assert!(hex_shaped("4e3ad2e4-0bc4-4638-8e34-c84a417ba39b", 36));
        assert!(!hex_shaped("4e3ad2e4-0bc4-4638-8e34-c84a417ba39b0", 36));
        assert!(!hex_shaped("no-such-id", 36));
        assert!(id_shaped("no-such-id", 64, "-_"));
        assert!(!id_shaped("", 64, "-_"));
        assert!(!id_shaped("a/b?c", 64, "-_"));
        assert!(!id_shaped("eyJvcmciOiIxIiwiaWQiOiIyIn0=", 64, "-_"));
    }
}

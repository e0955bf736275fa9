//! The `Gateway` trait that every driver implements, its capability flags, and
//! the errors drivers raise at their seam.

pub mod http_client;
pub mod local;
pub mod tok;

use crate::error::Kind;
use crate::model::{Created, Filter, NewToken, RevokeOutcome, Token};
use crate::secret::Secret;
use serde::Serialize;

/// The drivers tok knows. `local` is the embedded default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// The embedded SQLite store in your data directory (the default).
    Local,
    /// tok's own HTTP admin API (`tok serve`).
    Tok,
}

impl DriverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriverKind::Local => "local",
            DriverKind::Tok => "tok",
        }
    }

    /// What the driver can do, known without contacting anything.
    pub fn capabilities(self) -> Capabilities {
        match self {
            DriverKind::Local | DriverKind::Tok => Capabilities::ALL,
        }
    }

    pub fn about(self) -> &'static str {
        match self {
            DriverKind::Local => "embedded SQLite store in your data directory",
            DriverKind::Tok => "tok's own HTTP admin API (tok serve)",
        }
    }
}

/// What a network driver is given to connect with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http: http_client::HttpSettings,
    /// None when no credential was found; the driver decides if it needs one.
    pub credential: Option<crate::credentials::Credential>,
    pub profile: crate::config::Profile,
}

/// What a driver can do. A command a driver cannot do is refused before any
/// request is sent, with the unsupported exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    pub create: bool,
    pub list: bool,
    pub inspect_by_id: bool,
    pub inspect_by_secret: bool,
    pub revoke: bool,
    pub rotate: bool,
    pub scopes: bool,
    pub labels: bool,
    pub expiry: bool,
    pub use_limits: bool,
}

impl Capabilities {
    pub const ALL: Capabilities = Capabilities {
        create: true,
        list: true,
        inspect_by_id: true,
        inspect_by_secret: true,
        revoke: true,
        rotate: true,
        scopes: true,
        labels: true,
        expiry: true,
        use_limits: true,
    };
}

/// One operation, for capability checks and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    List,
    InspectById,
    InspectBySecret,
    Revoke,
    Rotate,
    Scopes,
    Labels,
    Expiry,
    UseLimits,
    Whoami,
    Audit,
}

impl Op {
    pub fn describe(self) -> &'static str {
        match self {
            Op::Create => "create tokens",
            Op::List => "list tokens",
            Op::InspectById => "inspect a token by id",
            Op::InspectBySecret => "look a token up by its secret",
            Op::Revoke => "revoke tokens",
            Op::Rotate => "rotate tokens",
            Op::Scopes => "attach scopes to a token",
            Op::Labels => "attach labels to a token",
            Op::Expiry => "give a token an expiry time",
            Op::UseLimits => "limit how often a token is used",
            Op::Whoami => "check an admin credential",
            Op::Audit => "read an audit trail",
        }
    }
}

impl Capabilities {
    pub fn supports(&self, op: Op) -> bool {
        match op {
            Op::Create => self.create,
            Op::List => self.list,
            Op::InspectById => self.inspect_by_id,
            Op::InspectBySecret => self.inspect_by_secret,
            Op::Revoke => self.revoke,
            Op::Rotate => self.rotate,
            Op::Scopes => self.scopes,
            Op::Labels => self.labels,
            Op::Expiry => self.expiry,
            Op::UseLimits => self.use_limits,
            // Not capability flags: the trait's default methods refuse these.
            Op::Whoami | Op::Audit => true,
        }
    }
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
    #[error("`{prefix}` matches {} tokens: {}", candidates.len(), candidates.join(", "))]
    Ambiguous {
        prefix: String,
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
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("could not write the output")]
    Io(#[from] std::io::Error),
}

impl DriverError {
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
            DriverError::Unsupported { .. } => {
                Some("run `tok drivers` to see what each driver supports".into())
            }
            DriverError::Unauthorized(_) => Some(format!(
                "set {} to an admin token with the needed scope",
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

/// Who a credential belongs to, as the gateway says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    /// A name or id for the principal, e.g. the admin token's id and name.
    pub principal: String,
    /// When the credential itself expires, where the gateway says so.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Scopes, policies or roles the credential carries, where known.
    pub scopes: Vec<String>,
}

pub type Result<T, E = DriverError> = std::result::Result<T, E>;

/// A token gateway. Every command talks to its driver only through this trait.
pub trait Gateway {
    fn kind(&self) -> DriverKind;
    fn capabilities(&self) -> Capabilities;

    fn create(&self, new: &NewToken) -> Result<Created>;

    /// Streams the matching tokens to `sink`, oldest first, without collecting.
    fn list(&self, filter: &Filter, sink: &mut dyn FnMut(Token) -> Result<()>) -> Result<()>;

    /// A token by exact id or unique id prefix.
    fn get(&self, id_or_prefix: &str) -> Result<Token>;

    /// A token by its secret; the secret never leaves the process but in a body.
    fn lookup(&self, secret: &Secret) -> Result<Token>;

    fn revoke(&self, id: &str, reason: Option<&str>) -> Result<(Token, RevokeOutcome)>;

    /// A new token like `id`; the old one is revoked now, or expires after `grace`.
    fn rotate(&self, id: &str, grace: Option<u64>) -> Result<(Created, Token)>;

    /// Checks the admin credential against the gateway and says whose it is and
    /// when it expires (for `tok login` and `tok auth status`). Drivers without a
    /// credential (local) answer with their own identity.
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

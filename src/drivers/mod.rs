//! The `Gateway` trait that every driver implements, its capability flags, and
//! the errors drivers raise at their seam.

pub mod apipark;
pub mod apisix;
mod gateway_api;
pub mod http_client;
pub mod kong;
pub mod local;
pub mod oauth2;
pub mod tok;
pub mod tyk;
pub mod vault;

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
    /// OpenBao or HashiCorp Vault token auth: tokens by accessor, policies as scopes.
    Vault,
    /// An OAuth 2 authorization server: client_credentials, RFC 7662 and RFC 7009.
    Oauth2,
    /// APIPark: `apikey` authorizations of an app, through the /openapi/v1 automation API.
    Apipark,
    /// Kong Gateway: key-auth credentials of consumers, through the Admin API.
    Kong,
    /// Apache APISIX 3.11+: key-auth credentials of consumers, through the Admin API.
    Apisix,
    /// Tyk Gateway: keys under /tyk/keys, through the Gateway API (hashed keys).
    Tyk,
}

impl DriverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriverKind::Local => "local",
            DriverKind::Tok => "tok",
            DriverKind::Vault => "vault",
            DriverKind::Oauth2 => "oauth2",
            DriverKind::Apipark => "apipark",
            DriverKind::Kong => "kong",
            DriverKind::Apisix => "apisix",
            DriverKind::Tyk => "tyk",
        }
    }

    /// What the driver can do, known without contacting anything.
    pub fn capabilities(self) -> Capabilities {
        // What the four key gateways can hold; nothing here is emulated by tok.
        let gateway = Capabilities {
            scopes: false,
            labels: true,
            expiry: true,
            use_limits: false,
            names: false,
            descriptions: false,
            ..Capabilities::ALL
        };
        match self {
            DriverKind::Local | DriverKind::Tok => Capabilities {
                renew: false,
                ..Capabilities::ALL
            },
            // Vault keeps no description and forgets tokens once they are
            // revoked or expired, but does everything else by accessor.
            DriverKind::Vault => Capabilities {
                no_expiry: false,
                descriptions: false,
                ..Capabilities::ALL
            },
            // OAuth 2 servers know tokens only by their secret and choose the
            // lifetime themselves; there is no standard way to list tokens.
            DriverKind::Oauth2 => Capabilities {
                create: true,
                list: false,
                inspect_by_id: false,
                inspect_by_secret: true,
                revoke: true,
                rotate: false,
                renew: false,
                scopes: true,
                labels: false,
                expiry: false,
                no_expiry: false,
                use_limits: false,
                names: false,
                descriptions: false,
            },
            // Authorization names; labels in the apikey config's `label` map;
            // renew sets a new `expire_time`.
            DriverKind::Apipark => Capabilities {
                names: true,
                ..gateway
            },
            // Labels are the credential's tags; ttl is the expiry (renew: a new ttl).
            DriverKind::Kong => gateway,
            // Credentials carry `desc` and `labels`; the expiry is an etcd
            // lease (`?ttl=`), recorded in a label (renew: a new lease).
            DriverKind::Apisix => Capabilities {
                descriptions: true,
                ..gateway
            },
            // `alias` is the name, `meta_data` the labels, access rights the scopes.
            DriverKind::Tyk => Capabilities {
                scopes: true,
                names: true,
                ..gateway
            },
        }
    }

    /// Whether the driver refuses to work without an admin credential. Kong
    /// OSS has no Admin API authentication, so the kong driver takes one only
    /// where Kong Enterprise's RBAC asks for it.
    pub fn needs_credential(self) -> bool {
        !matches!(self, DriverKind::Local | DriverKind::Kong)
    }

    pub fn from_name(name: &str) -> Option<DriverKind> {
        <DriverKind as clap::ValueEnum>::value_variants()
            .iter()
            .copied()
            .find(|k| k.as_str() == name)
    }

    pub fn about(self) -> &'static str {
        match self {
            DriverKind::Local => "embedded SQLite store in your data directory",
            DriverKind::Tok => "tok's own HTTP admin API (tok serve)",
            DriverKind::Vault => "OpenBao or HashiCorp Vault token auth (VAULT_TOKEN)",
            DriverKind::Oauth2 => "OAuth 2 server: client_credentials, introspection, revocation",
            DriverKind::Apipark => "APIPark apikey authorizations of an app (/openapi/v1)",
            DriverKind::Kong => "Kong key-auth credentials of consumers (Admin API)",
            DriverKind::Apisix => "APISIX 3.11+ key-auth credentials of consumers (Admin API)",
            DriverKind::Tyk => "Tyk Gateway keys (/tyk/keys, hashed keys)",
        }
    }

    /// Why this driver cannot do `op`, and what to do instead, where there is
    /// more to say than what it can do.
    pub fn unsupported_hint(self, op: Op) -> Option<&'static str> {
        Some(match (self, op) {
            (DriverKind::Apipark, Op::Scopes) => {
                "APIPark keys carry no scopes: a key reaches what its app's approved service subscriptions allow; subscribe the app to services in the APIPark console, or use another app"
            }
            (DriverKind::Kong, Op::Scopes) => {
                "Kong scopes are ACL groups of the consumer, not of one key (POST /consumers/{consumer}/acls); give the consumer the groups, or use another consumer (--owner)"
            }
            (DriverKind::Apisix, Op::Scopes) => {
                "APISIX keys carry no scopes: restrict the consumer (consumer-restriction plugin) or use another consumer (--owner)"
            }
            (DriverKind::Kong | DriverKind::Apisix, Op::Names) => {
                "its credentials have no name field; drop --name and tell keys apart by --label"
            }
            (DriverKind::Apipark | DriverKind::Kong | DriverKind::Tyk, Op::Descriptions) => {
                "its keys have no description field; drop --description (a --label can carry a short note)"
            }
            (
                DriverKind::Apipark | DriverKind::Kong | DriverKind::Apisix | DriverKind::Tyk,
                Op::UseLimits,
            ) => "the gateway cannot limit how often one key is used; drop --uses/--single-use",
            _ => return None,
        })
    }
}

/// How a driver shows a gateway's warnings (a TTL capped by the server, a
/// policy that does not exist): on stderr, through the command's `Out`.
pub type Warn = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

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
    /// Extend a live token's lifetime (`tok renew`).
    pub renew: bool,
    pub scopes: bool,
    pub labels: bool,
    pub expiry: bool,
    /// Make a token that lives until revoked (`--no-expiry`).
    pub no_expiry: bool,
    pub use_limits: bool,
    pub names: bool,
    pub descriptions: bool,
}

impl Capabilities {
    pub const ALL: Capabilities = Capabilities {
        create: true,
        list: true,
        inspect_by_id: true,
        inspect_by_secret: true,
        revoke: true,
        rotate: true,
        renew: true,
        scopes: true,
        labels: true,
        expiry: true,
        no_expiry: true,
        use_limits: true,
        names: true,
        descriptions: true,
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
    Renew,
    Scopes,
    Labels,
    Expiry,
    NoExpiry,
    UseLimits,
    Names,
    Descriptions,
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
            Op::Renew => "renew tokens",
            Op::Scopes => "attach scopes to a token",
            Op::Labels => "attach labels to a token",
            Op::Expiry => "give a token an expiry time",
            Op::NoExpiry => "make a token that never expires",
            Op::UseLimits => "limit how often a token is used",
            Op::Names => "give a token a name",
            Op::Descriptions => "give a token a description",
            Op::Whoami => "check an admin credential",
            Op::Audit => "read an audit trail",
        }
    }
}

/// Each capability's short name, as `tok drivers` prints it.
pub const OP_NAMES: [(Op, &str); 14] = [
    (Op::Create, "create"),
    (Op::List, "list"),
    (Op::InspectById, "inspect"),
    (Op::InspectBySecret, "inspect-secret"),
    (Op::Revoke, "revoke"),
    (Op::Rotate, "rotate"),
    (Op::Renew, "renew"),
    (Op::Scopes, "scopes"),
    (Op::Labels, "labels"),
    (Op::Expiry, "expiry"),
    (Op::NoExpiry, "no-expiry"),
    (Op::UseLimits, "use-limits"),
    (Op::Names, "names"),
    (Op::Descriptions, "descriptions"),
];

impl Capabilities {
    /// The short names of what is supported, in `OP_NAMES` order.
    pub fn names(&self) -> Vec<&'static str> {
        OP_NAMES
            .iter()
            .filter(|(op, _)| self.supports(*op))
            .map(|(_, n)| *n)
            .collect()
    }

    pub fn supports(&self, op: Op) -> bool {
        match op {
            Op::Create => self.create,
            Op::List => self.list,
            Op::InspectById => self.inspect_by_id,
            Op::InspectBySecret => self.inspect_by_secret,
            Op::Revoke => self.revoke,
            Op::Rotate => self.rotate,
            Op::Renew => self.renew,
            Op::Scopes => self.scopes,
            Op::Labels => self.labels,
            Op::Expiry => self.expiry,
            Op::NoExpiry => self.no_expiry,
            Op::UseLimits => self.use_limits,
            Op::Names => self.names,
            Op::Descriptions => self.descriptions,
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

/// Whether `s` is 1 to `max` ASCII letters and digits and characters of `extra`:
/// the shape of a token id (or a prefix of one) for `Gateway::looks_like_id`.
pub fn id_shaped(s: &str, max: usize, extra: &str) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
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

/// Who a credential belongs to, as the gateway says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    /// A name or id for the principal, e.g. the admin token's id and name.
    pub principal: String,
    /// When the credential itself expires, where the gateway says so.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Scopes, policies or roles the credential carries, where known.
    pub scopes: Vec<String>,
    /// Whether the gateway checked the credential at all. Kong OSS (or Kong
    /// Enterprise with RBAC off) answers whatever it is sent, so a credential
    /// it accepted proves nothing and `tok login` does not store it.
    pub checked: bool,
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

    fn revoke(&self, id: &str, reason: Option<&str>) -> Result<(Token, RevokeOutcome)>;

    /// A new token like `id`; the old one is revoked now, or expires after `grace`.
    fn rotate(&self, id: &str, grace: Option<u64>) -> Result<(Created, Token)>;

    /// Revokes `token`, which was looked up by `secret`. Gateways that know a
    /// token only by its secret (RFC 7009) need it; the rest revoke by id.
    fn revoke_secret(
        &self,
        secret: &Secret,
        token: &Token,
        reason: Option<&str>,
    ) -> Result<(Token, RevokeOutcome)> {
        let _ = secret;
        self.revoke(&token.id, reason)
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
        None
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

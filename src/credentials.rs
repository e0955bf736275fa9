//! Where a driver's admin credential comes from. One path for every driver:
//! environment variable > OS keyring > a plaintext file the user chose with
//! `tok login --insecure-storage`.
//!
//! `tok login` stores a credential in one of the two stores and notes which in
//! its index (`logins.toml`, no secret), so tok asks the keyring only for what
//! it put there. A keyring that then fails (no D-Bus session, locked, hung) is
//! an authentication error that names the ways out; tok never falls back
//! silently to plaintext and never sends a request without the credential it
//! could not read.

pub mod expiry;
pub mod file;
pub mod index;
pub mod os_keyring;

use crate::error::{Kind, UserError};
use crate::registry::DriverKind;
use crate::secret::Secret;
use std::fmt;

pub use self::file::FileStore;
pub use self::index::{Index, Store};
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
    kind.spec().credential_env
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
    /// The gateway URL as `url::normalize` writes it.
    pub url: String,
}

impl Account {
    pub fn new(profile: Option<&str>, url: &str) -> anyhow::Result<Account> {
        Ok(Account {
            profile: profile.map(str::to_string),
            url: crate::url::normalize(url)?,
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
    match url {
        Some(url) => resolve_login(kind, profile, url),
        None => Ok(None),
    }
}

/// The credential `tok login` stored for this profile and gateway, never the
/// environment's. For a gateway other than the one this run talks to (`tok auth
/// status` checking every profile): the environment's credential was given for
/// the gateway in use, and another gateway must never receive it.
pub fn resolve_login(
    kind: DriverKind,
    profile: Option<&str>,
    url: &str,
) -> anyhow::Result<Option<Credential>> {
    if env_vars(kind).is_empty() {
        return Ok(None);
    }
    let account = Account::new(profile, url)?;
    resolve_stored(
        kind,
        &account,
        &Index::default_location()?,
        &OsKeyring::system()?,
        &FileStore::default_location()?,
    )
}

/// The credential `tok login` stored for `account`, from where it stored it.
pub fn resolve_stored(
    kind: DriverKind,
    account: &Account,
    index: &Index,
    keyring: &dyn SecretStore,
    file: &FileStore,
) -> anyhow::Result<Option<Credential>> {
    let from_file = |secret| Credential {
        secret,
        source: Source::File(file.path().to_path_buf()),
    };
    match index.get(account)? {
        Some(Store::Keyring) => match keyring.get(account) {
            Ok(Some(secret)) => Ok(Some(Credential {
                secret,
                source: Source::Keyring,
            })),
            Ok(None) => Err(gone(kind, account, "the OS keyring").into()),
            Err(e) => Err(keyring_failure(kind, account, "read", &e).into()),
        },
        Some(Store::File) => match file.get(account)? {
            Some(secret) => Ok(Some(from_file(secret))),
            None => Err(gone(kind, account, &file.path().display().to_string()).into()),
        },
        // Never logged in here: no keyring is asked. The file holds entries only
        // where the user chose it, so an entry there is still theirs to use.
        None => Ok(file.get(account)?.map(from_file)),
    }
}

/// A credential `tok login` stored that is no longer where it put it.
fn gone(kind: DriverKind, account: &Account, place: &str) -> UserError {
    UserError::new(
        Kind::Auth,
        format!(
            "tok login stored the credential for {} in {place}, but it is not there any more",
            account.describe()
        ),
    )
    .hint(format!(
        "log in again with `tok login{}`, or set {}",
        account
            .profile
            .as_deref()
            .map(|p| format!(" --profile {p}"))
            .unwrap_or_else(|| format!(" --url {}", account.url)),
        env_names(kind)
    ))
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

    fn stores(test: &str) -> (tempfile::TempDir, Index, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::at(dir.path().join(test).join("logins.toml"));
        let file = FileStore::at(dir.path().join(test).join("credentials").join("c.toml"));
        (dir, index, file)
    }

    #[test]
    fn a_credential_tok_never_stored_never_touches_the_keyring() {
        let (_d, index, file) = stores("never");
        let a = account(Some("never"), "http://127.0.0.1:1");
        // Asking this keyring would fail: not asking it is the point.
        let keyring = FailingStore("must not be asked".into());
        assert!(resolve_stored(DriverKind::Tok, &a, &index, &keyring, &file)
            .unwrap()
            .is_none());
    }

    #[test]
    fn each_login_is_read_back_from_where_it_was_stored() {
        let (_d, index, file) = stores("where");
        let kr = mock_keyring("resolve-where");
        let (k, f) = (
            account(Some("k"), "http://127.0.0.1:1"),
            account(Some("f"), "http://127.0.0.1:1"),
        );
        kr.set(&k, &Secret::new("from-keyring")).unwrap();
        index.set(&k, Store::Keyring).unwrap();
        file.set(&f, &Secret::new("from-file")).unwrap();
        index.set(&f, Store::File).unwrap();

        let c = resolve_stored(DriverKind::Tok, &k, &index, &kr, &file)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.secret.expose(), c.source),
            ("from-keyring", Source::Keyring)
        );
        let failing = FailingStore("must not be asked".into());
        let c = resolve_stored(DriverKind::Tok, &f, &index, &failing, &file)
            .unwrap()
            .unwrap();
        assert_eq!(c.secret.expose(), "from-file");
        assert_eq!(c.source, Source::File(file.path().to_path_buf()));
    }

    #[test]
    fn a_keyring_failure_is_an_auth_error_naming_the_ways_out() {
        let (_d, index, file) = stores("broken");
        let a = account(Some("broken"), "http://127.0.0.1:2");
        index.set(&a, Store::Keyring).unwrap();
        let store = FailingStore("org.freedesktop.DBus.Error.ServiceUnknown".into());
        let err = resolve_stored(DriverKind::Tok, &a, &index, &store, &file).unwrap_err();
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
    }

    #[test]
    fn a_stored_credential_that_vanished_is_an_error_not_an_anonymous_request() {
        let (_d, index, file) = stores("vanished");
        let kr = mock_keyring("resolve-vanished");
        let a = account(Some("gone"), "http://127.0.0.1:3");
        index.set(&a, Store::Keyring).unwrap();
        let err = resolve_stored(DriverKind::Tok, &a, &index, &kr, &file).unwrap_err();
        assert_eq!(crate::error::classify(&err).0, Kind::Auth);
        assert!(err.to_string().contains("not there any more"), "{err}");
        index.set(&a, Store::File).unwrap();
        let err = resolve_stored(DriverKind::Tok, &a, &index, &kr, &file).unwrap_err();
        assert!(err.to_string().contains("not there any more"), "{err}");
    }
}

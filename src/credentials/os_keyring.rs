//! The OS keyring behind a small trait: the Secret Service over D-Bus on Linux
//! (the pure-Rust zbus client), Keychain on macOS, Credential Manager on Windows.
//!
//! Every call runs on its own thread and is waited for with a timeout, so a
//! locked keyring that waits for a password prompt no one can see, or a Secret
//! Service that never answers, costs at most `TOK_KEYRING_TIMEOUT` (10s by
//! default) and then fails with an error that says so.
//!
//! Entries: service `tok`, account `PROFILE@URL` (or the URL alone without a
//! profile; see `Account::key`). On Linux the item also carries the attributes
//! `application=tok`, `tok_url=URL` and, with a profile, `tok_profile=PROFILE`,
//! beside the keyring crate's own `service`, `username` and `target=default`:
//! `secret-tool search service tok` lists what tok stored.

use super::Account;
use crate::secret::Secret;
use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// The keyring service name of every entry tok writes.
pub const SERVICE: &str = "tok";

/// How long one keyring call may take before tok gives up on it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the keyring could not do what was asked. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("the keyring did not answer within {0:?} (is it locked, waiting for a password prompt no one can see, or hung?)")]
    Timeout(Duration),
    /// The keyring's own message, with its causes.
    #[error("{0}")]
    Platform(String),
}

/// Where stored credentials live. The OS keyring in tok; a mock in tests.
pub trait SecretStore: Send + Sync {
    /// The stored secret, or None when there is no entry for `account`.
    fn get(&self, account: &Account) -> Result<Option<Secret>, KeyringError>;
    /// Stores `secret`, replacing any earlier one for `account`.
    fn set(&self, account: &Account, secret: &Secret) -> Result<(), KeyringError>;
    /// Removes the entry; false when there was none.
    fn delete(&self, account: &Account) -> Result<bool, KeyringError>;
    /// Checks that `set` could work now, without storing anything, so that
    /// `tok login` fails before it asks for a credential or sends a request.
    fn ready_to_store(&self, account: &Account) -> Result<(), KeyringError> {
        self.get(account).map(|_| ())
    }
}

/// The OS keyring through the keyring crate.
pub struct OsKeyring {
    service: String,
    timeout: Duration,
    native: bool,
    /// Entries made in this process, reused so that the keyring crate's mock
    /// store (which keeps a secret only in its entry) behaves like a store.
    entries: Mutex<HashMap<String, Arc<::keyring::Entry>>>,
}

impl OsKeyring {
    /// The platform keyring, service `tok`, timeout from `TOK_KEYRING_TIMEOUT`.
    pub fn system() -> anyhow::Result<OsKeyring> {
        let timeout = match std::env::var(crate::env::KEYRING_TIMEOUT) {
            Ok(v) if !v.trim().is_empty() => {
                let t: crate::duration::Ttl = v.parse().map_err(|e| {
                    crate::error::UserError::usage(format!(
                        "{} is not a duration: {e}",
                        crate::env::KEYRING_TIMEOUT
                    ))
                    .hint("write e.g. 5s or 1m")
                })?;
                Duration::from_secs(t.as_secs())
            }
            _ => DEFAULT_TIMEOUT,
        };
        Ok(OsKeyring {
            service: SERVICE.to_string(),
            timeout,
            native: true,
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// Entries from the keyring crate's default credential builder (the mock
    /// store in tests), under `service`.
    pub fn with_default_builder(service: &str, timeout: Duration) -> OsKeyring {
        OsKeyring {
            service: service.to_string(),
            timeout,
            native: false,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entry(&self, account: &Account) -> Result<Arc<::keyring::Entry>, KeyringError> {
        let key = account.key();
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(e) = entries.get(&key) {
            return Ok(Arc::clone(e));
        }
        let entry = if self.native {
            native_entry(&self.service, account)
        } else {
            ::keyring::Entry::new(&self.service, &key)
        }
        .map_err(platform)?;
        let entry = Arc::new(entry);
        entries.insert(key, Arc::clone(&entry));
        Ok(entry)
    }
}

/// An entry with tok's label and attributes (Linux Secret Service).
#[cfg(target_os = "linux")]
fn native_entry(service: &str, account: &Account) -> ::keyring::Result<::keyring::Entry> {
    use ::keyring::secret_service::SsCredential;
    let mut cred = SsCredential::new_with_target(None, service, &account.key())?;
    cred.attributes.insert("application".into(), "tok".into());
    cred.attributes
        .insert("tok_url".into(), account.url.clone());
    if let Some(p) = &account.profile {
        cred.attributes.insert("tok_profile".into(), p.clone());
    }
    cred.label = format!("tok credential for {}", account.describe());
    Ok(::keyring::Entry::new_with_credential(Box::new(cred)))
}

/// The platform's own entry (Keychain, Credential Manager).
#[cfg(not(target_os = "linux"))]
fn native_entry(service: &str, account: &Account) -> ::keyring::Result<::keyring::Entry> {
    ::keyring::Entry::new(service, &account.key())
}

/// Whether `e` means "nothing stored". On a Secret Service without a default
/// collection (a fresh gnome-keyring never unlocked with a login password), the
/// keyring crate's search of every collection finds nothing, and then its
/// search of the default collection for items of older versions fails with
/// NoResult: there is no entry then either.
fn no_entry(e: &::keyring::Error) -> bool {
    match e {
        ::keyring::Error::NoEntry => true,
        #[cfg(target_os = "linux")]
        ::keyring::Error::NoStorageAccess(inner) => matches!(
            inner.downcast_ref::<secret_service::Error>(),
            Some(secret_service::Error::NoResult)
        ),
        _ => false,
    }
}

/// The keyring crate's error with its causes, one line.
fn platform(e: ::keyring::Error) -> KeyringError {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        src = s.source();
    }
    KeyringError::Platform(text)
}

/// Runs `f` on its own thread and waits at most `timeout` for it. A call that
/// hangs is left behind; the process exits without waiting for it.
pub fn bounded<T, F>(timeout: Duration, f: F) -> Result<T, KeyringError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("tok-keyring".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| KeyringError::Platform(format!("could not start a thread: {e}")))?;
    match rx.recv_timeout(timeout) {
        Ok(v) => Ok(v),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(KeyringError::Timeout(timeout)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(KeyringError::Platform(
            "the keyring call failed without an answer".into(),
        )),
    }
}

impl SecretStore for OsKeyring {
    fn get(&self, account: &Account) -> Result<Option<Secret>, KeyringError> {
        let entry = self.entry(account)?;
        match bounded(self.timeout, move || entry.get_password())? {
            Ok(s) => Ok(Some(Secret::new(s))),
            Err(e) if no_entry(&e) => Ok(None),
            Err(e) => Err(platform(e)),
        }
    }

    fn set(&self, account: &Account, secret: &Secret) -> Result<(), KeyringError> {
        let entry = self.entry(account)?;
        let secret = secret.clone();
        bounded(self.timeout, move || entry.set_password(secret.expose()))?.map_err(platform)
    }

    fn delete(&self, account: &Account) -> Result<bool, KeyringError> {
        let entry = self.entry(account)?;
        match bounded(self.timeout, move || entry.delete_credential())? {
            Ok(()) => Ok(true),
            Err(e) if no_entry(&e) => Ok(false),
            Err(e) => Err(platform(e)),
        }
    }

    fn ready_to_store(&self, account: &Account) -> Result<(), KeyringError> {
        self.get(account)?;
        #[cfg(target_os = "linux")]
        if self.native {
            bounded(self.timeout, default_collection_ready)?.map_err(KeyringError::Platform)?;
        }
        Ok(())
    }
}

/// The Secret Service stores new items in the collection with the alias
/// `default`. Searching works on a locked one, so a plain read does not tell
/// whether a write would: check the collection itself. A fresh keyring without
/// one gets one (the Secret Service asks the user for its password); a locked
/// one is unlocked (it asks for the password). Where no one can answer such a
/// prompt, it is dismissed and this fails.
#[cfg(target_os = "linux")]
fn default_collection_ready() -> Result<(), String> {
    use secret_service::blocking::SecretService;
    use secret_service::{EncryptionType, Error};
    let ss = SecretService::connect(EncryptionType::Dh).map_err(|e| e.to_string())?;
    let collection = match ss.get_default_collection() {
        Ok(c) => c,
        Err(Error::NoResult) => ss.create_collection("Login", "default").map_err(|e| {
            format!(
                "the keyring has no default collection, and creating one failed: {e} (gnome-keyring creates its `login` collection when started with --unlock and a password on stdin)"
            )
        })?,
        Err(e) => return Err(e.to_string()),
    };
    if collection.is_locked().map_err(|e| e.to_string())? {
        collection.unlock().map_err(|e| {
            format!("the keyring's default collection is locked, and unlocking it failed: {e}")
        })?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ::keyring::mock::MockCredential;

    /// Installs the keyring crate's mock store, once per process.
    fn install_mock() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            ::keyring::set_default_credential_builder(::keyring::mock::default_credential_builder())
        });
    }

    /// A keyring on the mock store, with a service of its own per test.
    pub(crate) fn mock_keyring(test: &str) -> OsKeyring {
        install_mock();
        OsKeyring::with_default_builder(&format!("tok-test-{test}"), Duration::from_secs(30))
    }

    /// A store whose every call fails with `.0`.
    pub(crate) struct FailingStore(pub String);

    impl SecretStore for FailingStore {
        fn get(&self, _: &Account) -> Result<Option<Secret>, KeyringError> {
            Err(KeyringError::Platform(self.0.clone()))
        }
        fn set(&self, _: &Account, _: &Secret) -> Result<(), KeyringError> {
            Err(KeyringError::Platform(self.0.clone()))
        }
        fn delete(&self, _: &Account) -> Result<bool, KeyringError> {
            Err(KeyringError::Platform(self.0.clone()))
        }
    }

    fn account(profile: &str) -> Account {
        Account::new(Some(profile), "https://tok.example.com/").unwrap()
    }

    #[test]
    fn round_trip_on_the_mock_store() {
        let kr = mock_keyring("round-trip");
        let a = account("rt");
        assert_eq!(kr.get(&a).unwrap(), None);
        kr.set(&a, &Secret::new("s3cret")).unwrap();
        assert_eq!(kr.get(&a).unwrap().unwrap().expose(), "s3cret");
        kr.set(&a, &Secret::new("newer")).unwrap();
        assert_eq!(kr.get(&a).unwrap().unwrap().expose(), "newer");
        assert!(kr.delete(&a).unwrap());
        assert!(!kr.delete(&a).unwrap());
        assert_eq!(kr.get(&a).unwrap(), None);
    }

    #[test]
    fn two_profiles_never_overwrite_each_other() {
        let kr = mock_keyring("two-profiles");
        let (a, b) = (account("one"), account("two"));
        kr.set(&a, &Secret::new("first")).unwrap();
        kr.set(&b, &Secret::new("second")).unwrap();
        assert_eq!(kr.get(&a).unwrap().unwrap().expose(), "first");
        assert_eq!(kr.get(&b).unwrap().unwrap().expose(), "second");
        kr.delete(&a).unwrap();
        assert_eq!(kr.get(&b).unwrap().unwrap().expose(), "second");
    }

    #[test]
    fn a_platform_failure_keeps_the_keyrings_own_cause() {
        let kr = mock_keyring("platform-failure");
        let a = account("fails");
        let entry = kr.entry(&a).unwrap();
        let mock: &MockCredential = entry.get_credential().downcast_ref().unwrap();
        mock.set_error(::keyring::Error::PlatformFailure(
            "org.freedesktop.Secret.Error.IsLocked".into(),
        ));
        let err = kr.get(&a).unwrap_err();
        assert_eq!(
            err,
            KeyringError::Platform(
                "Platform secure storage failure: org.freedesktop.Secret.Error.IsLocked".into()
            )
        );
        mock.set_error(::keyring::Error::NoStorageAccess("no session bus".into()));
        let err = kr.set(&a, &Secret::new("x")).unwrap_err().to_string();
        assert!(err.contains("no session bus"), "{err}");
        // The failure did not store anything.
        assert_eq!(kr.get(&a).unwrap(), None);
    }

    #[test]
    fn a_hung_call_ends_in_a_timeout_error() {
        let (_keep, rx) = mpsc::channel::<()>();
        // The call waits for a message that never comes, like a prompt no one answers.
        let r = bounded(Duration::from_millis(50), move || rx.recv().is_ok());
        let e = r.unwrap_err();
        assert_eq!(e, KeyringError::Timeout(Duration::from_millis(50)));
        assert!(e.to_string().contains("locked"), "{e}");
        assert_eq!(bounded(Duration::from_secs(30), || 7).unwrap(), 7);
    }
}

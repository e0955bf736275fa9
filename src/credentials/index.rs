//! Which accounts `tok login` stored a credential for, and where:
//! `$XDG_CONFIG_HOME/tok/logins.toml` (no secret in it). As gh's hosts.yml, it
//! lets tok ask the OS keyring only for what it put there: a user or CI job that
//! never logged in never touches a keyring (no D-Bus needed, no prompt, no
//! delay), while a credential tok did store is never silently skipped: when the
//! keyring cannot give it back, that is an error, not an unauthenticated request.

use super::Account;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const FILE: &str = "logins.toml";
const HEADER: &str = "\
# Where `tok login` stored each credential. No secret here: the credential is in
# the OS keyring (service `tok`, account = the key below) or, for `file`, in
# credentials/credentials.toml. `tok logout` removes entries.
";

/// Where a login's credential lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    Keyring,
    File,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub url: String,
    pub store: Store,
    pub saved_at: DateTime<Utc>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Contents {
    #[serde(default, rename = "login")]
    logins: BTreeMap<String, Login>,
}

#[derive(Debug, Clone)]
pub struct Index {
    path: PathBuf,
}

impl Index {
    pub fn default_location() -> Result<Index> {
        Ok(Index::at(crate::config::config_dir()?.join(FILE)))
    }

    pub fn at(path: PathBuf) -> Index {
        Index { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `tok login` stored the credential of `account`, if it did.
    pub fn get(&self, account: &Account) -> Result<Option<Store>> {
        Ok(self.load()?.logins.remove(&account.key()).map(|l| l.store))
    }

    pub fn set(&self, account: &Account, store: Store) -> Result<()> {
        let mut c = self.load()?;
        c.logins.insert(
            account.key(),
            Login {
                profile: account.profile.clone(),
                url: account.url.clone(),
                store,
                saved_at: Utc::now(),
            },
        );
        self.save(&c)
    }

    /// Forgets `account`; what it said, if anything.
    pub fn remove(&self, account: &Account) -> Result<Option<Store>> {
        let mut c = self.load()?;
        let was = c.logins.remove(&account.key()).map(|l| l.store);
        if was.is_some() {
            self.save(&c)?;
        }
        Ok(was)
    }

    fn load(&self) -> Result<Contents> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                crate::error::UserError::usage(format!(
                    "{} is not a tok logins file: {e}",
                    self.path.display()
                ))
                .hint("remove it and log in again with `tok login`")
                .into()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contents::default()),
            Err(e) => Err(e).with_context(|| format!("could not read {}", self.path.display())),
        }
    }

    fn save(&self, c: &Contents) -> Result<()> {
        let body = toml::to_string_pretty(c).context("could not serialize the logins")?;
        crate::config::write_private_atomic(&self.path, format!("{HEADER}\n{body}").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_where_each_login_went() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::at(dir.path().join("tok").join(FILE));
        let a = Account::new(Some("a"), "http://127.0.0.1:1").unwrap();
        let b = Account::new(None, "http://127.0.0.1:1").unwrap();
        assert_eq!(idx.get(&a).unwrap(), None);
        idx.set(&a, Store::Keyring).unwrap();
        idx.set(&b, Store::File).unwrap();
        assert_eq!(idx.get(&a).unwrap(), Some(Store::Keyring));
        assert_eq!(idx.get(&b).unwrap(), Some(Store::File));
        assert_eq!(idx.remove(&a).unwrap(), Some(Store::Keyring));
        assert_eq!(idx.remove(&a).unwrap(), None);
        assert_eq!(idx.get(&b).unwrap(), Some(Store::File));
        let text = std::fs::read_to_string(idx.path()).unwrap();
        assert!(text.contains("store = \"file\""), "{text}");
    }
}

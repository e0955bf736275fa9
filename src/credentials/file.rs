//! The plaintext credential file, only ever written by
//! `tok login --insecure-storage`: `$XDG_CONFIG_HOME/tok/credentials/credentials.toml`
//! (under `TOK_CONFIG_DIR` when set), mode 0600 in a 0700 directory, replaced
//! atomically. tok refuses to read it when group or others may access it.

use super::Account;
use crate::error::{Kind, UserError};
use crate::secret::Secret;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const DIR: &str = "credentials";
const FILE: &str = "credentials.toml";
const HEADER: &str = "\
# tok credentials in PLAINTEXT, written by `tok login --insecure-storage`.
# Anyone who can read this file can act as you on these gateways.
# Keep it mode 0600; tok refuses to read it otherwise. `tok logout` removes entries.
";

/// The plaintext credential file.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Contents {
    #[serde(default, rename = "credential")]
    credentials: BTreeMap<String, Stored>,
}

/// One stored credential. No `Debug`: it holds the secret.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
    url: String,
    secret: String,
    saved_at: chrono::DateTime<chrono::Utc>,
}

impl FileStore {
    /// The file under the config directory.
    pub fn default_location() -> Result<FileStore> {
        Ok(FileStore::at(
            crate::config::config_dir()?.join(DIR).join(FILE),
        ))
    }

    pub fn at(path: PathBuf) -> FileStore {
        FileStore { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored secret for `account`; an error when the file is readable by
    /// others or not a credential file.
    pub fn get(&self, account: &Account) -> Result<Option<Secret>> {
        Ok(self
            .load(true)?
            .credentials
            .remove(&account.key())
            .map(|s| Secret::new(s.secret)))
    }

    /// Stores `secret` for `account`, replacing the file atomically with a
    /// 0600 one (so a login after a refused read makes the file private again).
    pub fn set(&self, account: &Account, secret: &Secret) -> Result<()> {
        let mut c = self.load(false)?;
        c.credentials.insert(
            account.key(),
            Stored {
                profile: account.profile.clone(),
                url: account.url.clone(),
                secret: secret.expose().to_string(),
                saved_at: chrono::Utc::now(),
            },
        );
        self.save(&c)
    }

    /// Removes the entry for `account`; false when there was none. The file
    /// goes when its last entry does. Works on a file others can read, too:
    /// removing a credential is always safe.
    pub fn delete(&self, account: &Account) -> Result<bool> {
        if !self.path.exists() {
            return Ok(false);
        }
        let mut c = self.load(false)?;
        if c.credentials.remove(&account.key()).is_none() {
            return Ok(false);
        }
        if c.credentials.is_empty() {
            std::fs::remove_file(&self.path)
                .with_context(|| format!("could not remove {}", self.path.display()))?;
        } else {
            self.save(&c)?;
        }
        Ok(true)
    }

    fn load(&self, check_private: bool) -> Result<Contents> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => crate::text::utf8_text(t, &self.path.display().to_string())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contents::default()),
            Err(e) => {
                return Err(e).with_context(|| format!("could not read {}", self.path.display()))
            }
        };
        if check_private {
            self.check_private()?;
        }
        toml::from_str(&text).map_err(|e| {
            UserError::usage(format!(
                "{} is not a tok credential file: {}",
                self.path.display(),
                parse_error(&text, &e)
            ))
            .hint("remove it and log in again with `tok login --insecure-storage`")
            .into()
        })
    }

    /// Refuses a file that group or others may read or change.
    #[cfg(unix)]
    fn check_private(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&self.path)
            .with_context(|| format!("could not read {}", self.path.display()))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(UserError::new(
                Kind::Auth,
                format!(
                    "refusing to use the plaintext credentials in {}: its mode is {mode:04o}, so other users may read it",
                    self.path.display()
                ),
            )
            .hint(format!(
                "if no one else has read it, run `chmod 600 {}`; otherwise rotate the credential on the gateway and run `tok login` again",
                self.path.display()
            ))
            .into());
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn check_private(&self) -> Result<()> {
        Ok(())
    }

    fn save(&self, c: &Contents) -> Result<()> {
        let dir = self
            .path
            .parent()
            .context("a credential file path without a directory")?;
        crate::config::create_private_dir(dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
        #[cfg(unix)]
        {
            // The directory is tok's own: keep it private even if someone loosened it.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("could not make {} private", dir.display()))?;
        }
        let body = toml::to_string_pretty(c).context("could not serialize the credentials")?;
        let text = format!("{HEADER}\n{body}");
        crate::config::write_private_atomic(&self.path, text.as_bytes())
    }
}

/// What is wrong with the file and on which line, without any of its text:
/// the error's `Display` quotes the offending line, which may be the secret's,
/// and serde's messages quote values (`invalid type: string "…"`) and unknown
/// keys, which may be a secret written in the wrong place.
/// Reads a credential file's text as `tok` does: how many credentials it
/// holds, or the message shown for a bad file (which never quotes a value).
/// The fuzz target `config_files` drives it with hostile text.
pub fn parse_text(text: &str) -> std::result::Result<usize, String> {
    toml::from_str::<Contents>(text)
        .map(|c| c.credentials.len())
        .map_err(|e| parse_error(text, &e))
}

fn parse_error(text: &str, e: &toml::de::Error) -> String {
    let mut message = String::new();
    let mut quoted = None;
    let mut prev = None;
    for c in e.message().replace('\n', "; ").chars() {
        match quoted {
            None => {
                message.push(c);
                if c == '"' || (c == '`' && masks_backticks(&message)) {
                    message.push('…');
                    quoted = Some(c);
                }
            }
            Some(q) if c == q && prev != Some('\\') => {
                message.push(c);
                quoted = None;
            }
            Some(_) => {}
        }
        prev = Some(c);
    }
    match e.span() {
        Some(span) => {
            let line = text
                .get(..span.start)
                .map_or(0, |before| before.matches('\n').count())
                + 1;
            format!("{message} (line {line})")
        }
        None => message,
    }
}

/// Whether the backtick just written opens a name taken from the file (which
/// is masked) rather than one of TOML's or tok's own (`=`, `secret`).
fn masks_backticks(message: &str) -> bool {
    ["unknown field `", "unknown variant `", "duplicate key `"]
        .iter()
        .any(|m| message.ends_with(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let f = FileStore::at(dir.path().join("cfg").join(DIR).join(FILE));
        (dir, f)
    }

    fn account(p: &str) -> Account {
        Account::new(Some(p), "http://127.0.0.1:9/").unwrap()
    }

    #[test]
    fn round_trip_keeps_accounts_apart() {
        let (_d, f) = store();
        assert!(f.get(&account("a")).unwrap().is_none());
        f.set(&account("a"), &Secret::new("one")).unwrap();
        f.set(&account("b"), &Secret::new("two")).unwrap();
        assert_eq!(f.get(&account("a")).unwrap().unwrap().expose(), "one");
        assert_eq!(f.get(&account("b")).unwrap().unwrap().expose(), "two");
        assert!(f.delete(&account("a")).unwrap());
        assert!(!f.delete(&account("a")).unwrap());
        assert_eq!(f.get(&account("b")).unwrap().unwrap().expose(), "two");
        assert!(f.delete(&account("b")).unwrap());
        assert!(!f.path().exists(), "the last delete removes the file");
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_0600_in_a_0700_dir_and_refused_when_others_can_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let (_d, f) = store();
        f.set(&account("m"), &Secret::new("s")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(f.path()), 0o600);
        assert_eq!(mode(f.path().parent().unwrap()), 0o700);

        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = f.get(&account("m")).unwrap_err();
        assert_eq!(crate::error::classify(&err).0, Kind::Auth);
        assert!(err.to_string().contains("0644"), "{err}");
        assert!(!err.to_string().contains("\"s\""));
    }

    #[test]
    fn a_broken_file_is_a_clear_error() {
        let (_d, f) = store();
        f.set(&account("x"), &Secret::new("s")).unwrap();
        std::fs::write(f.path(), "not = [toml").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let err = f.get(&account("x")).unwrap_err().to_string();
        assert!(err.contains("is not a tok credential file"), "{err}");
    }

    #[test]
    fn a_broken_file_never_quotes_its_secrets() {
        let (_d, f) = store();
        f.set(&account("x"), &Secret::new("hunter2-s3cret"))
            .unwrap();
        let good = std::fs::read_to_string(f.path()).unwrap();
        let secret_line = good
            .lines()
            .position(|l| l.starts_with("secret = "))
            .unwrap()
            + 1;
        let broken = [
            // An unterminated string, and text after the value.
            (
                good.replace("\"hunter2-s3cret\"", "\"hunter2-s3cret"),
                secret_line,
            ),
            (
                good.replace("\"hunter2-s3cret\"", "\"hunter2-s3cret\" x"),
                secret_line,
            ),
            // Unquoted, quoted with a bad escape, in the wrong place, as a key.
            (
                good.replace("\"hunter2-s3cret\"", "hunter2-s3cret"),
                secret_line,
            ),
            (
                good.replace("\"hunter2-s3cret\"", "\"hunter2\\qs3cret\""),
                secret_line,
            ),
            ("credential = \"hunter2-s3cret\"\n".to_string(), 1),
            (
                good.replace("secret = \"hunter2-s3cret\"", "hunter2-s3cret = 1"),
                secret_line,
            ),
        ];
        for (text, line) in broken {
            std::fs::write(f.path(), &text).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            let err = format!("{:#}", f.get(&account("x")).unwrap_err());
            assert!(err.contains("is not a tok credential file"), "{err}");
            assert!(err.contains(&format!("(line {line})")), "{err}\n{text}");
            assert!(!err.contains("hunter2"), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }
}

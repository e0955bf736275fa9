//! When the credential a command uses expires, without asking the gateway on
//! every command: `tok login` and `tok auth status` already ask it (whoami), and
//! remember the answer here, keyed by account, next to a short digest of the
//! credential so that a changed credential does not inherit an old expiry.
//! Every command that resolves a credential then warns from this cache when it
//! expires within 24 hours. The cache is `$XDG_CACHE_HOME/tok/credential-expiry.json`
//! (0600); losing it only loses the warning until the next login or status.

use super::{Account, Credential};
use crate::output::{rfc3339, Out};
use crate::registry::Identity;
use crate::secret::Secret;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;

const FILE: &str = "credential-expiry.json";

/// How soon an expiry must be for commands to warn about it.
pub const WARN_WITHIN: TimeDelta = TimeDelta::hours(24);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Known {
    /// The first 16 hex digits of the credential's SHA-256.
    pub digest: String,
    pub principal: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub checked_at: DateTime<Utc>,
}

fn path() -> Option<PathBuf> {
    crate::config::cache_dir().ok().map(|d| d.join(FILE))
}

fn digest(secret: &Secret) -> String {
    Sha256::digest(secret.expose().as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn load() -> BTreeMap<String, Known> {
    path()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save(all: &BTreeMap<String, Known>) -> anyhow::Result<()> {
    let p = path().ok_or_else(|| anyhow::anyhow!("no cache directory"))?;
    crate::config::write_private_atomic(&p, &serde_json::to_vec_pretty(all)?)
}

/// Remembers what the gateway said about `secret` for `account`. A cache that
/// cannot be written costs only the warning, so this never fails a command.
pub fn record(out: &Out, account: &Account, secret: &Secret, id: &Identity) {
    let mut all = load();
    all.insert(
        account.key(),
        Known {
            digest: digest(secret),
            principal: id.principal.clone(),
            expires_at: id.expires_at,
            checked_at: Utc::now(),
        },
    );
    if let Err(e) = save(&all) {
        if out.verbose > 0 {
            out.info(format!("could not remember the credential's expiry: {e:#}"));
        }
    }
}

/// Forgets `account` (on logout).
pub fn forget(account: &Account) {
    let mut all = load();
    if all.remove(&account.key()).is_some() {
        let _ = save(&all);
    }
}

/// What is known about this very credential for `account`.
pub fn known(account: &Account, secret: &Secret) -> Option<Known> {
    load()
        .remove(&account.key())
        .filter(|k| k.digest == digest(secret))
}

/// The warning for an expiry at `at`, if it is within 24 hours of `now`.
pub fn warning(what: &str, at: DateTime<Utc>, now: DateTime<Utc>) -> Option<String> {
    if at - now > WARN_WITHIN {
        return None;
    }
    let when = crate::duration::relative(at, now);
    Some(if at <= now {
        format!(
            "{what} expired at {} ({when}); run `tok login` with a new one",
            rfc3339(at)
        )
    } else {
        format!(
            "{what} expires at {} ({when}); run `tok login` with a new one before then",
            rfc3339(at)
        )
    })
}

/// Warns on stderr when the credential about to be used expires within 24 h.
pub fn warn_if_expiring(out: &Out, profile: Option<&str>, url: &str, cred: &Credential) {
    let Ok(account) = Account::new(profile, url) else {
        return;
    };
    if let Some(at) = known(&account, &cred.secret).and_then(|k| k.expires_at) {
        let what = format!(
            "the credential for {} (from {})",
            account.describe(),
            cred.source
        );
        if let Some(w) = warning(&what, at, Utc::now()) {
            out.warn(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_within_a_day_only() {
        let now = Utc::now();
        assert!(warning("x", now + TimeDelta::hours(25), now).is_none());
        let w = warning("the credential", now + TimeDelta::hours(3), now).unwrap();
        assert!(w.contains("expires at") && w.contains("tok login"), "{w}");
        let w = warning("the credential", now - TimeDelta::hours(1), now).unwrap();
        assert!(w.contains("expired at"), "{w}");
    }

    #[test]
    fn the_digest_tells_credentials_apart_and_hides_them() {
        let a = digest(&Secret::new("tok_aaaa"));
        assert_eq!(a.len(), 16);
        assert_ne!(a, digest(&Secret::new("tok_aaab")));
        assert!(!a.contains("aaaa"));
    }
}

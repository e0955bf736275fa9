//! The `vault` driver: OpenBao and HashiCorp Vault token auth (`auth/token`).
//!
//! A token's id in tok is its accessor, Vault's non-secret handle. Vault keeps
//! no record of a token once it is revoked, expires or runs out of uses, so
//! every token this driver sees is live. Routes and JSON follow OpenBao 2.7
//! (`vault/token_store.go`), which matches Vault's documented API.

mod api;
mod model;

use api::CallError;

pub use model::looks_like_vault_token;

use super::http_client::Http;
use super::{DriverError, DriverKind, Gateway, Identity, Result, Revoked, Warn};
use crate::credentials::Credential;
use crate::model::{check_new_token, Created, Filter, NewToken, State, Token};
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use model::{
    data_of, labels_of, mark_revoked, name_of, parse_time, protocol, to_token, uses_of, CreateAuth,
    TokenData, NO_FINGERPRINT,
};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Where token auth is mounted unless the profile or --vault-mount says otherwise.
pub const DEFAULT_MOUNT: &str = "auth/token";

/// How many lookups `list` keeps in flight at once.
const LIST_CONCURRENCY: usize = 8;

/// The meta key in which tok records a token's use limit at creation: Vault
/// reports only the uses left, and tok shows uses made as well.
pub const USES_KEY: &str = "tok_max_uses";

const CREDENTIAL_HINT: &str =
    "set VAULT_TOKEN (or TOK_ADMIN_TOKEN) to a Vault token whose policies allow managing tokens";

pub struct Vault {
    http: Http,
    credential: Option<Credential>,
    /// Mount path without slashes at either end, e.g. `auth/token`.
    mount: String,
    namespace: Option<String>,
    warn: Warn,
}

impl Vault {
    pub fn new(settings: &super::Settings, warn: Warn) -> Result<Vault> {
        let mount = settings
            .profile
            .vault_mount
            .as_deref()
            .unwrap_or(DEFAULT_MOUNT)
            .trim_matches('/')
            .to_string();
        if mount.is_empty()
            || mount
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            || mount.contains(['?', '#', ' '])
        {
            return Err(
                DriverError::Invalid(format!("`{mount}` is not a Vault mount path")).with_hint(
                    "give the path token auth is mounted at, e.g. --vault-mount auth/token",
                ),
            );
        }
        let namespace = settings
            .profile
            .vault_namespace
            .as_deref()
            .map(|n| n.trim_matches('/').to_string())
            .filter(|n| !n.is_empty());
        Ok(Vault {
            http: Http::new(&settings.http)?,
            credential: settings.credential.clone(),
            mount,
            namespace,
            warn,
        })
    }

    /// The token data for an exact accessor or a unique accessor prefix.
    fn resolve(&self, id_or_prefix: &str) -> Result<TokenData> {
        let id = id_or_prefix.trim();
        if id.is_empty() {
            return Err(DriverError::Invalid("the token id is empty".into())
                .with_hint("give a token's accessor, as `tok list` shows it"));
        }
        if looks_like_vault_token(id) {
            return Err(DriverError::Invalid(
                "that is a Vault token (a secret), not an accessor".into(),
            )
            .with_hint("pipe the token in instead: `printf %s \"$TOKEN\" | tok inspect -`"));
        }
        if let Some(d) = self.lookup_accessor(id)? {
            return Ok(d);
        }
        let matches: Vec<String> = self
            .accessors()?
            .into_iter()
            .filter(|a| a.starts_with(id))
            .collect();
        match matches.as_slice() {
            [one] => self.lookup_accessor(one)?.ok_or_else(|| gone(one)),
            [] => Err(gone(id)),
            _ => Err(DriverError::Ambiguous {
                prefix: id.to_string(),
                total: Some(matches.len()),
                candidates: matches,
            }),
        }
    }

    fn create_body(&self, new: &NewToken, now: DateTime<Utc>) -> Result<Value> {
        check_new_token(new).map_err(DriverError::Invalid)?;
        if new.description.is_some() {
            return Err(
                DriverError::Invalid("Vault tokens have no description".into())
                    .with_hint("drop --description; a --label key=value is kept as token meta"),
            );
        }
        if new.labels.contains_key(USES_KEY) {
            return Err(DriverError::Invalid(format!(
                "the label `{USES_KEY}` is tok's own record of the use limit"
            ))
            .with_hint("use another label key"));
        }
        let Some(expires_at) = new.expires_at else {
            return Err(DriverError::Invalid(
                "Vault tokens always expire: without a TTL Vault gives the mount's default".into(),
            )
            .with_hint("give --ttl or --expires-at (a periodic token can only be made with Vault's own CLI)"));
        };
        if new.scopes.is_empty() {
            return Err(DriverError::Invalid(
                "name the token's policies with --scope".into(),
            )
            .with_hint("without policies Vault copies the admin token's own (often `root`); use --scope default for the default policy alone"));
        }
        // Round up so that a TTL asked as 15m is not sent as 14m59s.
        let ms = (expires_at - now).num_milliseconds();
        if ms <= 0 {
            return Err(DriverError::Invalid(
                "the expiry time is in the past".into(),
            ));
        }
        let ttl = (ms as u64).div_ceil(1000);
        let mut meta = new.labels.clone();
        if let Some(m) = new.max_uses {
            meta.insert(USES_KEY.into(), m.to_string());
        }
        let mut body = json!({
            "ttl": format!("{ttl}s"),
            "policies": new.scopes,
            "meta": meta,
            "renewable": true,
            "num_uses": new.max_uses.unwrap_or(0),
        });
        if let Some(n) = &new.name {
            body["display_name"] = json!(n);
        }
        Ok(body)
    }

    /// POST create; the new token as Vault holds it.
    fn create_with(&self, body: Value) -> Result<Created> {
        let v = self.lift(self.post("create", body))?;
        let auth: CreateAuth = v
            .get("auth")
            .cloned()
            .ok_or_else(|| protocol(&self.url("create"), "the answer has no `auth`"))
            .and_then(|a| {
                serde_json::from_value(a).map_err(|e| protocol(&self.url("create"), &e.to_string()))
            })?;
        let secret = Secret::new(auth.client_token);
        let now = Utc::now();
        let token = match self.lookup_accessor(&auth.accessor) {
            Ok(Some(d)) => to_token(&d, now),
            // The token exists and its secret is in hand: report what the
            // create answer said rather than lose the secret.
            other => {
                let why = match other {
                    Err(e) => e.to_string(),
                    _ => "Vault no longer knows its accessor".into(),
                };
                let (expires_at, past_any_date) = lease_end(auth.lease_duration, now);
                (self.warn)(&format!(
                    "created token {} but could not read it back ({why}); its details come from the create answer{}",
                    auth.accessor,
                    if past_any_date {
                        ", whose lease_duration is past any date, so no expiry is shown"
                    } else {
                        ""
                    }
                ));
                let (max_uses, uses) = uses_of(auth.num_uses, auth.metadata.as_ref());
                Token {
                    scopes: auth.policies.unwrap_or_default(),
                    labels: labels_of(auth.metadata.as_ref()),
                    max_uses,
                    uses,
                    state: State::Active,
                    fingerprint: NO_FINGERPRINT.into(),
                    ..Token::bare(auth.accessor.clone(), now, expires_at)
                }
            }
        };
        Ok(Created { token, secret })
    }
}

/// When a lease of `lease_duration` seconds from `now` ends (0 or none: never),
/// and whether Vault's number was past any date. The token exists and its
/// secret is in hand, so such a number loses the expiry, not the token.
fn lease_end(lease_duration: Option<u64>, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, bool) {
    match lease_duration.filter(|d| *d > 0) {
        None => (None, false),
        Some(d) => match crate::duration::checked_after_u64(now, d) {
            Some(end) => (Some(end), false),
            None => (None, true),
        },
    }
}

/// Vault forgets a token when it is revoked, expires or is used up.
fn gone(id: &str) -> DriverError {
    DriverError::NotFound(id.to_string()).with_hint(
        "Vault keeps no record of revoked, expired or used-up tokens; run `tok list` to see the live ones",
    )
}

impl Gateway for Vault {
    fn kind(&self) -> DriverKind {
        DriverKind::Vault
    }

    fn create(&self, new: &NewToken) -> Result<Created> {
        let body = self.create_body(new, Utc::now())?;
        self.create_with(body)
    }

    fn list(&self, filter: &Filter, sink: &mut dyn FnMut(Token) -> Result<()>) -> Result<()> {
        let mut keys = self.accessors()?;
        if let Some(p) = &filter.id_prefix {
            keys.retain(|k| k.starts_with(p.as_str()));
        }
        // Vault has no bulk lookup: fetch the details with a bounded number of
        // blocking requests in flight, each thread taking the next accessor.
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<TokenData>>>> =
            Mutex::new((0..keys.len()).map(|_| None).collect());
        let workers = LIST_CONCURRENCY.min(keys.len());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(key) = keys.get(i) else { break };
                    let r = self.lookup_accessor(key).transpose();
                    let failed = matches!(r, Some(Err(_)));
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = r;
                    if failed {
                        // Stop early: the first error fails the listing.
                        next.store(keys.len(), Ordering::Relaxed);
                    }
                });
            }
        });
        let now = Utc::now();
        let mut tokens = Vec::with_capacity(keys.len());
        for r in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
            match r {
                // Revoked or expired between the listing and the lookup.
                None => {}
                Some(Ok(d)) => tokens.push(to_token(&d, now)),
                Some(Err(e)) => return Err(e),
            }
        }
        tokens.retain(|t| filter.matches(t, now));
        tokens.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        let limit = filter.limit.map_or(usize::MAX, |l| l as usize);
        for t in tokens.into_iter().take(limit) {
            sink(t)?;
        }
        Ok(())
    }

    fn get(&self, id_or_prefix: &str) -> Result<Token> {
        Ok(to_token(&self.resolve(id_or_prefix)?, Utc::now()))
    }

    fn lookup(&self, secret: &Secret) -> Result<Token> {
        match self.post("lookup", json!({ "token": secret.expose() })) {
            Ok(v) => Ok(to_token(&data_of(&v, &self.url("lookup"))?, Utc::now())),
            Err(CallError::Refused(r))
                if (r.status == 403 && r.says("bad token"))
                    || (r.status == 400 && r.says("invalid token")) =>
            {
                Err(DriverError::UnknownSecret {
                    fingerprint: secret.fingerprint(),
                }
                .with_hint(
                    "Vault knows no live token with that secret: it was revoked, expired, used up, or belongs to another Vault or namespace",
                ))
            }
            Err(e) => self.lift(Err(e)),
        }
    }

    fn revoke(&self, id: &str, reason: Option<&str>) -> Result<Revoked> {
        let d = self.resolve(id)?;
        if reason.is_some() {
            (self.warn)("Vault keeps no revoke reason; --reason was not recorded");
        }
        let outcome = self.revoke_accessor(&d.accessor)?;
        Ok((mark_revoked(to_token(&d, Utc::now()), Utc::now()), outcome))
    }

    fn rotate(&self, id: &str, grace: Option<u64>) -> Result<(Created, Token)> {
        let old = self.resolve(id)?;
        let renewable = old.renewable.unwrap_or(false);
        let ttl_left = old.ttl.unwrap_or(0).max(0) as u64;
        let expires = old.expire_time.is_some();
        // Vault cannot schedule a revocation; a grace period is the old token
        // renewed to exactly that much time, which needs a renewable token.
        let shorten = match grace {
            Some(g) if expires && g >= ttl_left => false,
            Some(_) if !renewable => {
                return Err(DriverError::Invalid(format!(
                    "token {} is not renewable, so Vault cannot cut it to a grace period",
                    old.accessor
                ))
                .with_hint(match parse_time(old.expire_time.as_deref()) {
                    Some(e) => format!(
                        "rotate without --grace to revoke it at once; or leave it to expire at {}",
                        crate::output::rfc3339(e)
                    ),
                    None => "rotate without --grace to revoke it at once".into(),
                }))
            }
            Some(_) => true,
            None => false,
        };
        let mut body = json!({
            "policies": old.policies.clone().unwrap_or_default(),
            "meta": old.meta.clone().unwrap_or_default(),
            "renewable": renewable,
        });
        let (max_uses, _) = uses_of(old.num_uses, old.meta.as_ref());
        if let Some(m) = max_uses {
            body["num_uses"] = json!(m);
        }
        if let Some(ttl) = old.creation_ttl.filter(|t| *t > 0) {
            body["ttl"] = json!(format!("{ttl}s"));
        }
        if let Some(m) = old.explicit_max_ttl.filter(|t| *t > 0) {
            body["explicit_max_ttl"] = json!(format!("{m}s"));
        }
        if let Some(p) = old.period.filter(|p| *p > 0) {
            body["period"] = json!(format!("{p}s"));
        }
        if let Some(n) = name_of(old.display_name.as_deref()) {
            body["display_name"] = json!(n);
        }
        let created = self.create_with(body)?;
        let now = Utc::now();
        let old_token = match grace {
            None => {
                self.revoke_accessor(&old.accessor)?;
                mark_revoked(to_token(&old, now), now)
            }
            Some(g) if shorten => {
                self.renew_accessor(&old.accessor, Some(g))?;
                match self.lookup_accessor(&old.accessor)? {
                    Some(d) => to_token(&d, Utc::now()),
                    None => return Err(gone(&old.accessor)),
                }
            }
            // It expires within the grace period anyway.
            Some(_) => to_token(&old, now),
        };
        Ok((created, old_token))
    }

    fn renew(&self, id: &str, increment: Option<u64>) -> Result<Token> {
        let d = self.resolve(id)?;
        if !d.renewable.unwrap_or(false) {
            return Err(DriverError::Conflict(format!(
                "token {} is not renewable (it was created with renewable=false, or never expires)",
                d.accessor
            ))
            .with_hint("rotate it instead: `tok rotate ID` makes a new token like it"));
        }
        self.renew_accessor(&d.accessor, increment)?;
        match self.lookup_accessor(&d.accessor)? {
            Some(d) => Ok(to_token(&d, Utc::now())),
            None => Err(gone(&d.accessor)),
        }
    }

    fn whoami(&self) -> Result<Identity> {
        let v = self.lift(self.call(Method::GET, "lookup-self", None))?;
        let d = data_of(&v, &self.url("lookup-self"))?;
        let name = d.display_name.clone().unwrap_or_else(|| "token".into());
        Ok(Identity {
            principal: format!("{name} (accessor {})", d.accessor),
            expires_at: parse_time(d.expire_time.as_deref()),
            scopes: d.policies.unwrap_or_default(),
            checked: true,
        })
    }

    fn is_secret(&self, s: &str) -> bool {
        crate::secret::looks_like_secret(s) || looks_like_vault_token(s)
    }

    /// Accessors: 24 letters and digits, with a `.NSID` suffix in a namespace.
    fn looks_like_id(&self, s: &str) -> bool {
        match s.split_once('.') {
            None => super::id_shaped(s, 24, ""),
            Some((accessor, ns)) => {
                super::id_shaped(accessor, 24, "") && super::id_shaped(ns, 16, "")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_past_any_date_loses_the_expiry_not_the_token() {
        let now = Utc::now();
        assert_eq!(lease_end(None, now), (None, false));
        assert_eq!(lease_end(Some(0), now), (None, false));
        assert_eq!(
            lease_end(Some(60), now),
            (Some(now + chrono::TimeDelta::seconds(60)), false)
        );
        for d in [
            u64::MAX,
            1 << 63,
            (i64::MAX / 1000) as u64 + 1,
            9_000_000_000_000,
        ] {
            assert_eq!(lease_end(Some(d), now), (None, true), "{d}");
        }
    }
}

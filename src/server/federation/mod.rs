//! Workload identity federation: a CI job trades the OIDC ID token its
//! platform issues for a short-lived tok token, with no stored secret.
//! docs/federation.md is the user's guide.
//!
//! `policy.rs` reads the trust policies, `jwks.rs` finds and caches the
//! issuers' keys, `endpoint.rs` is `POST /oauth/token`; this file checks a
//! token and decides what it may mint.
//!
//! Followed:
//! - RFC 8693 (OAuth 2.0 Token Exchange) §2.1 request (`subject_token`,
//!   `subject_token_type`, `scope`, `requested_token_type`), §2.2.1 response
//!   (`issued_token_type`), §2.2.2 errors (`invalid_target`), §3 token type
//!   URIs (`…:id_token`, `…:jwt`, `…:access_token`);
//! - RFC 6749 §5.2 error codes (`invalid_request`, `invalid_grant`,
//!   `invalid_scope`, `unsupported_grant_type`) and §3.2 (no parameter twice);
//! - RFC 7519 (JWT) §4.1 `iss`, `sub`, `aud` (a string or an array), `exp`,
//!   `nbf`, `iat`, `jti`; §7.2 validation; RFC 7515 through `crate::jose`;
//! - RFC 8725 (JWT BCP) §3.1 allowed algorithms only (RS256 and ES256 here),
//!   §3.8 the issuer checked against the key that signed, §3.9 the audience
//!   always checked, §3.10 nothing fetched from a URL the token names, §3.11
//!   a `typ` other than JWT refused;
//! - OpenID Connect Discovery 1.0 §4 through `jwks.rs`;
//! - GitHub Actions OIDC ("About security hardening with OpenID Connect":
//!   issuer `https://token.actions.githubusercontent.com`, claims
//!   `repository`, `ref`, `environment`, `job_workflow_ref`, `run_id`, …)
//!   and GitLab CI ID tokens (`id_tokens:`; claims `project_path`, `ref`,
//!   `ref_type`, `ref_protected`, `environment`, `pipeline_id`, …).
//!
//! A refused exchange gets one of a few fixed messages: why it was refused
//! (bad signature, wrong audience, no matching policy, a replay) goes to the
//! audit trail and the log, never to the caller, so nobody can probe the
//! policies by trying claims.

pub mod endpoint;
pub mod jwks;
pub mod policy;

use crate::jose::{self, Alg};
use crate::model::NewToken;
use chrono::{DateTime, Utc};
use policy::{claim_text, Policies, Policy};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

/// The algorithms an ID token may be signed with (RFC 8725 §3.1).
pub const ALGS: [Alg; 2] = [Alg::Rs256, Alg::Es256];

/// The largest `subject_token` looked at; CI ID tokens are 1–2 KiB.
pub const SUBJECT_TOKEN_MAX: usize = 16 * 1024;

/// An ID token valid for longer than this from now is refused: the replay
/// cache keeps each `jti` until its token expires, and CI tokens live minutes.
const LIFETIME_MAX_SECS: i64 = 24 * 3600;

/// How many `jti`s the replay cache holds at most.
pub const REPLAY_MAX: usize = 100_000;

/// Why an exchange was refused. The `String`s are for the audit trail only.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// 400 `invalid_request`: the request itself is malformed; the message
    /// says how, and is safe to show (it is about the request, not policies).
    Request(String),
    /// 400 `unsupported_grant_type`.
    GrantType,
    /// 400 `invalid_target`: `resource` or `audience` asked for.
    Target,
    /// 400 `invalid_grant`: the subject token is not accepted.
    Grant(String),
    /// 400 `invalid_scope`: a matching policy does not grant what was asked.
    Scope(String),
    /// 503 `temporarily_unavailable`: keys or the store could not be reached.
    Unavailable(String),
}

/// What an exchange learnt, for its audit entry.
#[derive(Debug, Default, Clone)]
pub struct Trail {
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub policy: Option<String>,
}

/// What the caller asked for besides the subject token.
#[derive(Debug, Default, Clone)]
pub struct Ask {
    pub scopes: Vec<String>,
    pub ttl_secs: Option<u64>,
    pub max_uses: Option<u64>,
}

/// The trust policies in force, the key cache and the replay cache.
pub struct Federation {
    pub path: PathBuf,
    policies: RwLock<Arc<Policies>>,
    keys: jwks::Keys,
    seen: Mutex<HashMap<(String, String), i64>>,
}

impl Federation {
    pub fn new(path: PathBuf, policies: Policies) -> reqwest::Result<Federation> {
        Ok(Federation {
            path,
            policies: RwLock::new(Arc::new(policies)),
            keys: jwks::Keys::new()?,
            seen: Mutex::new(HashMap::new()),
        })
    }

    pub fn policies(&self) -> Arc<Policies> {
        Arc::clone(&self.policies.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads the policy file again (SIGHUP); on error the old policies stay.
    pub fn reload(&self) -> Result<usize, String> {
        let p = Policies::load(&self.path)?;
        let n = p.policies.len();
        *self.policies.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(p);
        Ok(n)
    }

    /// Verifies `subject_token` and decides what it may mint. On success the
    /// token's `jti` is spent; `unspend` gives it back if minting fails.
    pub async fn decide(
        &self,
        subject_token: &str,
        ask: &Ask,
        now: DateTime<Utc>,
        trail: &mut Trail,
    ) -> Result<(NewToken, (String, String)), Refusal> {
        let cfg = self.policies();
        let bad = |why: &str| Refusal::Grant(why.to_string());
        let jws = jose::decode(subject_token).map_err(|e| Refusal::Grant(e.to_string()))?;
        let alg = jws.alg(&ALGS).map_err(|e| Refusal::Grant(e.to_string()))?;
        // RFC 8725 §3.11: a JWT typed as something else (a DPoP proof, an
        // access token) is not an ID token, whoever signed it.
        if jws.header.typ.as_deref().is_some_and(|t| {
            !t.eq_ignore_ascii_case("JWT") && !t.eq_ignore_ascii_case("application/jwt")
        }) {
            return Err(bad("`typ` is not JWT"));
        }
        let claims: Map<String, Value> = serde_json::from_slice(&jws.payload)
            .map_err(|_| bad("the claims are not a JSON object"))?;
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no `iss`"))?;
        if !cfg.trusts(iss) {
            return Err(bad("no policy trusts the token's issuer"));
        }
        let keys = self
            .keys
            .get(iss, jws.header.kid.as_deref(), &cfg)
            .await
            .map_err(|e| Refusal::Unavailable(format!("the issuer's keys: {e}")))?;
        jws.verify(alg, &keys)
            .map_err(|e| Refusal::Grant(e.to_string()))?;
        // Signed by a key of `iss`: from here the claims are the issuer's word.
        trail.issuer = Some(iss.to_string());
        trail.subject = claim_text(&claims, "sub");
        check_times(&claims, now, cfg.leeway.as_secs() as i64)?;
        let auds = audiences(&claims);
        let for_us: Vec<&Policy> = cfg
            .policies
            .iter()
            .filter(|p| p.issuer == iss && auds.iter().any(|a| *a == p.audience))
            .collect();
        if for_us.is_empty() {
            return Err(bad("the audience is not one a policy accepts"));
        }
        let matching: Vec<&Policy> = for_us.into_iter().filter(|p| p.matches(&claims)).collect();
        let Some(first) = matching.first() else {
            return Err(bad("no policy's claim conditions hold"));
        };
        trail.policy = Some(first.name.clone());
        let covers = |p: &&&Policy| ask.scopes.iter().all(|s| p.scopes.contains(s));
        let Some(policy) = matching.iter().find(covers) else {
            return Err(Refusal::Scope(format!(
                "scopes asked beyond policy `{}`: {}",
                first.name,
                ask.scopes
                    .iter()
                    .filter(|s| !first.scopes.contains(s))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
        };
        trail.policy = Some(policy.name.clone());
        let new = mint(policy, &claims, ask, now)?;
        let jti = claim_text(&claims, "jti")
            .filter(|j| !j.is_empty())
            .ok_or_else(|| bad("no `jti`, so a replay could not be told apart"))?;
        let key = (iss.to_string(), jti);
        let exp = claims.get("exp").and_then(Value::as_f64).unwrap_or(0.0) as i64;
        self.spend(key.clone(), exp + cfg.leeway.as_secs() as i64, now)?;
        Ok((new, key))
    }

    /// Records a `jti` until `until` (Unix seconds); refuses one already there.
    fn spend(&self, key: (String, String), until: i64, now: DateTime<Utc>) -> Result<(), Refusal> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let t = now.timestamp();
        if seen.get(&key).is_some_and(|&u| u >= t) {
            return Err(Refusal::Grant(
                "the token's `jti` was already exchanged".into(),
            ));
        }
        if seen.len() >= REPLAY_MAX {
            seen.retain(|_, u| *u >= t);
        }
        if seen.len() >= REPLAY_MAX {
            // Evicting a live entry would let its token be replayed.
            return Err(Refusal::Unavailable("the replay cache is full".into()));
        }
        seen.insert(key, until);
        Ok(())
    }

    /// Forgets a spent `jti` whose exchange then failed on tok's side.
    pub fn unspend(&self, key: &(String, String)) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// `exp` (required), `nbf` and `iat` (if present) against now, each with
/// `leeway` seconds of clock skew (RFC 7519 §4.1.4, §4.1.5, §4.1.6).
fn check_times(
    claims: &Map<String, Value>,
    now: DateTime<Utc>,
    leeway: i64,
) -> Result<(), Refusal> {
    let bad = |why: &str| Err(Refusal::Grant(why.into()));
    let t = now.timestamp();
    let num = |k: &str| claims.get(k).map(|v| v.as_f64().map(|f| f as i64));
    let exp = match num("exp") {
        Some(Some(e)) => e,
        _ => return bad("no numeric `exp`"),
    };
    if t >= exp.saturating_add(leeway) {
        return bad("expired");
    }
    if exp.saturating_sub(t) > LIFETIME_MAX_SECS {
        return bad("valid for more than 24h from now");
    }
    match num("nbf") {
        Some(None) => return bad("`nbf` is not a number"),
        Some(Some(n)) if t < n.saturating_sub(leeway) => return bad("not valid yet (`nbf`)"),
        _ => {}
    }
    match num("iat") {
        Some(None) => return bad("`iat` is not a number"),
        Some(Some(i)) if i > t.saturating_add(leeway) => {
            return bad("issued in the future (`iat`)")
        }
        _ => {}
    }
    Ok(())
}

/// `aud`: one string or an array of them (RFC 7519 §4.1.3).
fn audiences(claims: &Map<String, Value>) -> Vec<&str> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The token `policy` mints for these claims and this ask: the scopes asked
/// (all of the policy's when none), the TTL asked capped at `max_ttl`, the use
/// limit asked capped at `max_uses`.
fn mint(
    policy: &Policy,
    claims: &Map<String, Value>,
    ask: &Ask,
    now: DateTime<Utc>,
) -> Result<NewToken, Refusal> {
    let scopes = if ask.scopes.is_empty() {
        policy.scopes.clone()
    } else {
        ask.scopes.clone()
    };
    let ttl = ask
        .ttl_secs
        .unwrap_or(u64::MAX)
        .min(policy.max_ttl.as_secs());
    let max_uses = match (ask.max_uses, policy.max_uses) {
        (Some(a), Some(p)) => Some(a.min(p)),
        (a, p) => a.or(p),
    };
    let name = policy.token_name(claims).map_err(Refusal::Grant)?;
    let new = NewToken {
        name,
        description: Some(format!("minted by token exchange, policy {}", policy.name)),
        scopes,
        labels: policy.labels(claims),
        expires_at: Some(now + crate::duration::Ttl::from_secs(ttl).delta()),
        max_uses,
        rate: None,
        quota: None,
        allow_ip: Vec::new(),
    };
    crate::model::check_new_token(&new)
        .map_err(|e| Refusal::Grant(format!("the minted token would be invalid: {e}")))?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed() -> Federation {
        let p = Policies::parse("").unwrap();
        Federation::new(PathBuf::from("unused.toml"), p).unwrap()
    }

    #[test]
    fn a_jti_is_spent_once_until_it_expires_and_the_cache_never_evicts_a_live_one() {
        let f = fed();
        let now = Utc::now();
        let t = now.timestamp();
        let key = |j: usize| ("https://i".to_string(), j.to_string());
        f.spend(key(0), t + 60, now).unwrap();
        assert!(matches!(
            f.spend(key(0), t + 60, now),
            Err(Refusal::Grant(_))
        ));
        // Same jti from another issuer is another token.
        f.spend(("https://other".into(), "0".into()), t + 60, now)
            .unwrap();
        f.unspend(&key(0));
        f.spend(key(0), t + 60, now).unwrap();
        // Fill the cache: half expired, half live.
        for j in 1..REPLAY_MAX - 2 {
            let until = if j % 2 == 0 { t - 1 } else { t + 60 };
            f.spend(key(j), until, now).unwrap();
        }
        f.spend(key(REPLAY_MAX), t + 60, now).unwrap();
        // The expired half made room; once only live ones are left, refuse.
        for j in REPLAY_MAX + 1.. {
            match f.spend(key(j), t + 60, now) {
                Ok(()) => continue,
                Err(Refusal::Unavailable(_)) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(
            matches!(f.spend(key(1), t + 60, now), Err(Refusal::Grant(_))),
            "live entries stay"
        );
    }

    #[test]
    fn times_are_checked_with_leeway() {
        let now = Utc::now();
        let t = now.timestamp();
        let c = |v: Value| v.as_object().unwrap().clone();
        assert!(check_times(&c(serde_json::json!({"exp": t + 10})), now, 5).is_ok());
        assert!(
            check_times(&c(serde_json::json!({"exp": t - 3})), now, 5).is_ok(),
            "within leeway"
        );
        assert!(check_times(&c(serde_json::json!({"exp": t - 5})), now, 5).is_err());
        assert!(check_times(&c(serde_json::json!({"exp": t + 10, "nbf": t + 4})), now, 5).is_ok());
        assert!(check_times(&c(serde_json::json!({"exp": t + 10, "nbf": t + 6})), now, 5).is_err());
        assert!(check_times(&c(serde_json::json!({"exp": t + 10, "iat": t + 6})), now, 5).is_err());
        assert!(check_times(&c(serde_json::json!({"exp": "soon"})), now, 5).is_err());
        assert!(check_times(&c(serde_json::json!({"exp": t + 25 * 3600})), now, 5).is_err());
        assert!(check_times(&c(serde_json::json!({"exp": 1e300})), now, 5).is_err());
    }
}

//! The signing keys of trusted issuers, found through OpenID Connect Discovery
//! and cached.
//!
//! OpenID Connect Discovery 1.0 §4: the configuration is at the issuer +
//! `/.well-known/openid-configuration` (a trailing `/` of the issuer dropped
//! first), and §4.3: its `issuer` must equal the issuer it was fetched for.
//! Its `jwks_uri` names the JWK Set (RFC 7517 §5).
//!
//! Keys are fetched only for issuers a policy names, never for whatever `iss`
//! a token claims. A set is kept for `jwks_max_age`; a token whose `kid` is not
//! in it triggers a fetch, at most once per `jwks_refresh_min` per issuer, so
//! a stream of made-up `kid`s cannot turn tok into a load on the issuer. Each
//! fetch has `jwks_timeout` in all, follows no redirect and reads at most
//! `BODY_MAX`; when one fails, the keys fetched before stay in use.

use super::policy::{issuer_url, Policies};
use crate::jose::{self, Jwk};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// The largest discovery document or key set tok reads.
const BODY_MAX: usize = 256 * 1024;

#[derive(Default)]
struct Cached {
    keys: Vec<Jwk>,
    /// When keys were last fetched successfully.
    fetched: Option<Instant>,
    /// When a fetch was last tried, whatever came of it.
    tried: Option<Instant>,
}

pub struct Keys {
    client: reqwest::Client,
    issuers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Cached>>>>,
}

impl Keys {
    pub fn new() -> reqwest::Result<Keys> {
        Ok(Keys {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("tok/", env!("CARGO_PKG_VERSION")))
                .build()?,
            issuers: Mutex::new(HashMap::new()),
        })
    }

    /// The issuer's keys, fetched when none are cached, when they are older
    /// than `jwks_max_age`, or when none has `kid` and the last try is older
    /// than `jwks_refresh_min`. `Err` only when there are no keys at all.
    pub async fn get(
        &self,
        issuer: &str,
        kid: Option<&str>,
        cfg: &Policies,
    ) -> Result<Vec<Jwk>, String> {
        let slot = {
            let mut map = self.issuers.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(map.entry(issuer.to_string()).or_default())
        };
        // One fetch per issuer at a time; the others wait for its result.
        let mut c = slot.lock().await;
        let now = Instant::now();
        let stale = c
            .fetched
            .is_none_or(|t| now.duration_since(t) >= cfg.jwks_max_age);
        let unknown = kid.is_some_and(|k| !c.keys.iter().any(|j| j.kid.as_deref() == Some(k)));
        let may_try = c
            .tried
            .is_none_or(|t| now.duration_since(t) >= cfg.jwks_refresh_min);
        if (stale || unknown) && may_try {
            c.tried = Some(now);
            match self.fetch(issuer, cfg).await {
                Ok(keys) => {
                    tracing::info!(
                        issuer,
                        keys = keys.len(),
                        "fetched the issuer's signing keys"
                    );
                    c.keys = keys;
                    c.fetched = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(issuer, error = %e, "could not fetch the issuer's signing keys");
                    if c.fetched.is_none() {
                        return Err(e);
                    }
                }
            }
        }
        if c.fetched.is_none() {
            return Err("no keys yet; the last fetch failed and the next is rate-limited".into());
        }
        Ok(c.keys.clone())
    }

    async fn fetch(&self, issuer: &str, cfg: &Policies) -> Result<Vec<Jwk>, String> {
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let meta = self.json(&discovery, cfg).await?;
        if meta.get("issuer").and_then(|v| v.as_str()) != Some(issuer) {
            return Err(format!(
                "{discovery} names another issuer (OpenID Connect Discovery §4.3)"
            ));
        }
        let jwks_uri = meta
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("{discovery} has no `jwks_uri`"))?;
        issuer_url(jwks_uri).map_err(|e| format!("jwks_uri: {e}"))?;
        let set = self.json(jwks_uri, cfg).await?;
        let keys = jose::key_set(&set).map_err(|e| format!("{jwks_uri}: {e}"))?;
        if keys.is_empty() {
            return Err(format!("{jwks_uri} holds no key tok can verify with"));
        }
        Ok(keys)
    }

    /// GETs a JSON document of at most `BODY_MAX` bytes within the timeout.
    async fn json(&self, url: &str, cfg: &Policies) -> Result<serde_json::Value, String> {
        let get = async {
            let mut resp = self
                .client
                .get(url)
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("GET {url}: HTTP {}", resp.status().as_u16()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
                if body.len() + chunk.len() > BODY_MAX {
                    return Err(format!("GET {url}: more than {BODY_MAX} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            serde_json::from_slice(&body).map_err(|_| format!("GET {url}: not JSON"))
        };
        tokio::time::timeout(cfg.jwks_timeout, get)
            .await
            .map_err(|_| format!("GET {url}: no answer within {:?}", cfg.jwks_timeout))?
    }
}

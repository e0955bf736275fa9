//! The trust-policy file (`tok serve --federation FILE`): which issuers tok
//! trusts, and which of their tokens may mint what. docs/federation.md is the
//! reference; this is its parser and its matching rules.
//!
//! ```toml
//! audience = "https://tok.example.com"     # what CI jobs put in `aud`
//!
//! [[policy]]
//! name = "deploy-main"
//! issuer = "https://token.actions.githubusercontent.com"
//! scopes = ["deploy"]
//! max_ttl = "15m"
//! max_uses = 100                            # optional
//! token_name = "gh-{repository}-{run_id}"   # optional
//! labels = { repo = "repository", run = "run_id" }
//! [policy.claims]
//! repository = "octo-org/app"               # exact
//! ref = { glob = "refs/heads/release-*" }   # glob: `*` any run, `?` one character
//! ```

use crate::duration::Ttl;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    audience: Option<String>,
    leeway: Option<String>,
    jwks_timeout: Option<String>,
    jwks_refresh_min: Option<String>,
    jwks_max_age: Option<String>,
    #[serde(default, rename = "policy")]
    policies: Vec<Spec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    name: String,
    issuer: String,
    audience: Option<String>,
    #[serde(default)]
    claims: BTreeMap<String, Condition>,
    scopes: Vec<String>,
    max_ttl: String,
    max_uses: Option<u64>,
    token_name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// A duration setting; `0s` is allowed here, unlike a token lifetime.
fn duration(what: &str, s: Option<&str>, default: u64) -> Result<Duration, String> {
    match s {
        None => Ok(Duration::from_secs(default)),
        Some("0s") => Ok(Duration::ZERO),
        Some(t) => t
            .parse::<Ttl>()
            .map(|t| Duration::from_secs(t.as_secs()))
            .map_err(|e| format!("`{what}`: {e}")),
    }
}

/// A claim condition: a string is an exact match, `{ glob = "…" }` a glob.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Condition {
    Exact(String),
    Glob { glob: String },
}

impl Condition {
    fn holds(&self, value: &str) -> bool {
        match self {
            Condition::Exact(want) => want == value,
            Condition::Glob { glob } => crate::model::glob_match(glob, value),
        }
    }
}

/// One trust policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub issuer: String,
    pub audience: String,
    pub claims: BTreeMap<String, Condition>,
    pub scopes: Vec<String>,
    pub max_ttl: Ttl,
    pub max_uses: Option<u64>,
    pub token_name: Option<String>,
    /// Label key → the claim its value comes from.
    pub labels: BTreeMap<String, String>,
}

/// The whole file, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Policies {
    /// The audience clients are told to ask for, when the file names one.
    pub audience: Option<String>,
    pub leeway: Duration,
    pub jwks_timeout: Duration,
    pub jwks_refresh_min: Duration,
    pub jwks_max_age: Duration,
    pub policies: Vec<Policy>,
}

/// Claims that say what the token is, not who holds it: a policy may not
/// condition on them (they are checked on their own) nor copy them.
const RESERVED: [&str; 6] = ["iss", "aud", "exp", "nbf", "iat", "jti"];

impl Policies {
    pub fn load(path: &Path) -> Result<Policies, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("could not read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Policies, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut policies = Vec::new();
        for s in file.policies {
            let p = check(s, file.audience.as_deref())?;
            if policies.iter().any(|q: &Policy| q.name == p.name) {
                return Err(format!("two policies are named `{}`", p.name));
            }
            policies.push(p);
        }
        Ok(Policies {
            audience: file.audience,
            leeway: duration("leeway", file.leeway.as_deref(), 60)?,
            jwks_timeout: duration("jwks_timeout", file.jwks_timeout.as_deref(), 5)?,
            jwks_refresh_min: duration("jwks_refresh_min", file.jwks_refresh_min.as_deref(), 60)?,
            jwks_max_age: duration("jwks_max_age", file.jwks_max_age.as_deref(), 3600)?,
            policies,
        })
    }

    /// Whether any policy trusts `issuer` (tok fetches keys for no other).
    pub fn trusts(&self, issuer: &str) -> bool {
        self.policies.iter().any(|p| p.issuer == issuer)
    }
}

fn check(s: Spec, default_audience: Option<&str>) -> Result<Policy, String> {
    let at = |what: String| format!("policy `{}`: {what}", s.name);
    if s.name.trim().is_empty() || s.name.chars().any(char::is_control) {
        return Err("a policy has an empty name or one with control characters".into());
    }
    issuer_url(&s.issuer).map_err(at)?;
    let audience = s
        .audience
        .or(default_audience.map(str::to_string))
        .filter(|a| !a.is_empty())
        .ok_or_else(|| at("no `audience`, and none at the top of the file".into()))?;
    if s.scopes.is_empty() {
        return Err(at(
            "`scopes` is empty; a policy grants at least one scope".into()
        ));
    }
    let probe = crate::model::NewToken {
        scopes: s.scopes.clone(),
        max_uses: s.max_uses,
        ..Default::default()
    };
    crate::model::check_new_token(&probe).map_err(at)?;
    let max_ttl: Ttl = s
        .max_ttl
        .parse()
        .map_err(|e| at(format!("`max_ttl`: {e}")))?;
    for k in s.claims.keys().chain(s.labels.values()) {
        if RESERVED.contains(&k.as_str()) {
            return Err(at(format!(
                "claim `{k}` is checked by tok itself; conditions and labels take other claims"
            )));
        }
    }
    if let Some(t) = &s.token_name {
        template_claims(t).map_err(at)?;
    }
    Ok(Policy {
        name: s.name,
        issuer: s.issuer,
        audience,
        claims: s.claims,
        scopes: s.scopes,
        max_ttl,
        max_uses: s.max_uses,
        token_name: s.token_name,
        labels: s.labels,
    })
}

/// An issuer is an https URL with no query or fragment (OpenID Connect
/// Discovery §2); plain http is allowed for loopback only, for tests.
pub fn issuer_url(issuer: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(issuer).map_err(|e| format!("issuer `{issuer}`: {e}"))?;
    let loopback = match url.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err(format!(
            "issuer `{issuer}` is not an https URL (plain http is allowed on loopback only)"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "issuer `{issuer}` has a query, fragment or user name"
        ));
    }
    Ok(())
}

/// The claims a `{claim}` template names, or what is wrong with it.
fn template_claims(t: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(format!("`token_name` `{t}` has a `}}` with no `{{`"));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("`token_name` `{t}` has an unclosed `{{`"))?;
        let claim = &after[..close];
        if claim.is_empty() || claim.contains('{') {
            return Err(format!("`token_name` `{t}` has an empty or nested `{{}}`"));
        }
        out.push(claim);
        rest = &after[close + 1..];
    }
    Ok(out)
}

/// A claim as text: strings as they are, numbers and booleans as JSON writes
/// them; arrays, objects and null never match anything.
pub fn claim_text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Policy {
    /// Whether verified `claims` satisfy every condition of this policy.
    pub fn matches(&self, claims: &Map<String, Value>) -> bool {
        self.claims
            .iter()
            .all(|(k, c)| claim_text(claims, k).is_some_and(|v| c.holds(&v)))
    }

    /// The minted token's name, or `Err` naming a claim the template needs
    /// that the token does not carry.
    pub fn token_name(&self, claims: &Map<String, Value>) -> Result<Option<String>, String> {
        let Some(t) = &self.token_name else {
            return Ok(None);
        };
        let mut out = String::new();
        let mut rest = t.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}').unwrap_or(after.len());
            let claim = &after[..close];
            let v = claim_text(claims, claim)
                .ok_or_else(|| format!("the token has no claim `{claim}` for the name"))?;
            out.push_str(&v);
            rest = after.get(close + 1..).unwrap_or("");
        }
        out.push_str(rest);
        Ok(Some(
            out.chars().take(crate::model::limits::NAME_MAX).collect(),
        ))
    }

    /// Labels copied from claims; a claim the token lacks gives no label.
    pub fn labels(&self, claims: &Map<String, Value>) -> BTreeMap<String, String> {
        self.labels
            .iter()
            .filter_map(|(k, claim)| {
                let v = claim_text(claims, claim)?;
                Some((
                    k.clone(),
                    v.chars()
                        .take(crate::model::limits::LABEL_VALUE_MAX)
                        .collect(),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GITHUB: &str = r#"
        audience = "https://tok.example"
        [[policy]]
        name = "deploy"
        issuer = "https://token.actions.githubusercontent.com"
        scopes = ["deploy", "read"]
        max_ttl = "15m"
        token_name = "gh-{repository}-{run_id}"
        labels = { repo = "repository" }
        [policy.claims]
        repository = "octo/app"
        ref = { glob = "refs/heads/release-*" }
    "#;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn exact_and_glob_conditions_miss_by_one_character() {
        let p = &Policies::parse(GITHUB).unwrap().policies[0];
        assert_eq!(p.audience, "https://tok.example");
        let ok = claims(json!({"repository": "octo/app", "ref": "refs/heads/release-1"}));
        assert!(p.matches(&ok));
        for (repo, r) in [
            ("octo/ap", "refs/heads/release-1"),
            ("octo/app2", "refs/heads/release-1"),
            ("Octo/app", "refs/heads/release-1"),
            ("octo/app ", "refs/heads/release-1"),
            ("octo/app", "refs/heads/release"),
            ("octo/app", "refs/heads/releasE-1"),
            ("octo/app", "xrefs/heads/release-1"),
        ] {
            assert!(
                !p.matches(&claims(json!({"repository": repo, "ref": r}))),
                "{repo} {r}"
            );
        }
        assert!(!p.matches(&claims(json!({"repository": "octo/app"}))));
        assert!(!p.matches(&claims(
            json!({"repository": ["octo/app"], "ref": "refs/heads/release-1"})
        )));
    }

    #[test]
    fn names_and_labels_come_from_claims() {
        let p = &Policies::parse(GITHUB).unwrap().policies[0];
        let c = claims(json!({"repository": "octo/app", "run_id": 42}));
        assert_eq!(p.token_name(&c).unwrap().as_deref(), Some("gh-octo/app-42"));
        assert_eq!(
            p.labels(&c).get("repo").map(String::as_str),
            Some("octo/app")
        );
        assert!(p
            .token_name(&claims(json!({"repository": "x"})))
            .unwrap_err()
            .contains("run_id"));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let base = "[[policy]]\nname='p'\nissuer='https://i.example'\naudience='a'\nscopes=['s']\nmax_ttl='5m'\n";
        assert!(Policies::parse(base).is_ok());
        for (extra, needle) in [
            ("token_name='x-{a'\n", "unclosed"),
            ("token_name='x-{}'\n", "empty"),
            ("[policy.claims]\naud='x'\n", "checked by tok"),
            ("max_uses=0\n", "at least 1"),
            ("colour='red'\n", "colour"),
        ] {
            let e = Policies::parse(&format!("{base}{extra}")).unwrap_err();
            assert!(e.contains(needle), "{extra}: {e}");
        }
        for (issuer, needle) in [
            ("http://i.example", "https"),
            ("https://i.example/?x=1", "query"),
            ("not a url", "issuer"),
        ] {
            let e = Policies::parse(&base.replace("https://i.example", issuer)).unwrap_err();
            assert!(e.contains(needle), "{issuer}: {e}");
        }
        assert!(Policies::parse(&base.replace("https://i.example", "http://127.0.0.1:9")).is_ok());
        assert!(Policies::parse(&base.replace("audience='a'\n", ""))
            .unwrap_err()
            .contains("audience"));
        assert!(Policies::parse(&format!("{base}{base}"))
            .unwrap_err()
            .contains("two policies"));
    }
}

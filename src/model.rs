//! The vendor-neutral token model: one type for every driver and every output.

use crate::limits::{Quota, Rate};
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a token is in its life. Derived from its fields, never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Usable now.
    Active,
    /// Past its expiry time.
    Expired,
    /// Revoked by someone.
    Revoked,
    /// Used up: its use limit is reached.
    Exhausted,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Expired => "expired",
            State::Revoked => "revoked",
            State::Exhausted => "exhausted",
        }
    }
}

/// Which states `list` (and bulk revoke) selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StateFilter {
    /// Usable now (the default).
    #[default]
    Active,
    /// Past their expiry time.
    Expired,
    /// Revoked.
    Revoked,
    /// Used up.
    Exhausted,
    /// Every token, whatever its state.
    All,
}

impl StateFilter {
    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::Active => "active",
            StateFilter::Expired => "expired",
            StateFilter::Revoked => "revoked",
            StateFilter::Exhausted => "exhausted",
            StateFilter::All => "all",
        }
    }
}

/// A token as every driver reports it. Holds no secret. Unknown fields are
/// ignored when read, so an older tok keeps working with a newer server that
/// adds fields (docs/json-output.md: fields are only ever added).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub scopes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub max_uses: Option<u64>,
    pub uses: u64,
    pub last_used_at: Option<DateTime<Utc>>,
    pub state: State,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
    pub fingerprint: String,
    /// Requests per second, minute or hour, enforced by `tok serve`'s proxy.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// Admitted requests per period, enforced by `tok serve`'s proxy.
    #[serde(default)]
    pub quota: Option<Quota>,
    /// Client address ranges the proxy admits the token from; empty: any.
    #[serde(default, with = "crate::limits::cidrs")]
    pub allow_ip: Vec<ipnet::IpNet>,
}

impl Token {
    /// A token known by id, creation and expiry alone, every other field empty,
    /// its state as of now; drivers fill in what their gateway holds.
    pub fn bare(id: String, created_at: DateTime<Utc>, expires_at: Option<DateTime<Utc>>) -> Token {
        Token {
            id,
            name: None,
            description: None,
            scopes: Vec::new(),
            labels: BTreeMap::new(),
            created_at,
            created_by: None,
            expires_at,
            max_uses: None,
            uses: 0,
            last_used_at: None,
            state: state_of(false, expires_at, None, 0, Utc::now()),
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
            fingerprint: "-".into(),
            rate: None,
            quota: None,
            allow_ip: Vec::new(),
        }
    }

    /// The state implied by the fields at time `now`: revoked beats expired beats
    /// exhausted, so a revoked token always reads as revoked.
    pub fn state_at(&self, now: DateTime<Utc>) -> State {
        state_of(
            self.revoked_at.is_some(),
            self.expires_at,
            self.max_uses,
            self.uses,
            now,
        )
    }

    /// A display label: the name, or the id when there is none.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    pub fn uses_left(&self) -> Option<u64> {
        self.max_uses.map(|m| m.saturating_sub(self.uses))
    }
}

pub fn state_of(
    revoked: bool,
    expires_at: Option<DateTime<Utc>>,
    max_uses: Option<u64>,
    uses: u64,
    now: DateTime<Utc>,
) -> State {
    if revoked {
        State::Revoked
    } else if expires_at.is_some_and(|e| e <= now) {
        State::Expired
    } else if max_uses.is_some_and(|m| uses >= m) {
        State::Exhausted
    } else {
        State::Active
    }
}

/// What a caller asks a driver to create.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewToken {
    pub name: Option<String>,
    pub description: Option<String>,
    pub scopes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// None means the token never expires; callers decide that explicitly.
    pub expires_at: Option<DateTime<Utc>>,
    pub max_uses: Option<u64>,
    #[serde(default)]
    pub rate: Option<Rate>,
    #[serde(default)]
    pub quota: Option<Quota>,
    #[serde(default, with = "crate::limits::cidrs")]
    pub allow_ip: Vec<ipnet::IpNet>,
}

/// The only place a secret travels with its token: the create and rotate result.
#[derive(Debug, Clone)]
pub struct Created {
    pub token: Token,
    pub secret: Secret,
}

/// The result of a revoke. Revoking twice is not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeOutcome {
    Revoked,
    AlreadyRevoked,
}

/// The list filters shared by `list`, bulk `revoke` and the admin API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub state: StateFilter,
    /// A glob over the name: `*` any run, `?` one character.
    pub name: Option<String>,
    pub labels: Vec<(String, String)>,
    /// Tokens that carry every one of these scopes.
    pub scopes: Vec<String>,
    /// Active tokens whose expiry falls within this many seconds from now.
    pub expiring_within: Option<u64>,
    pub created_by: Option<String>,
    pub id_prefix: Option<String>,
    pub limit: Option<u64>,
}

impl Filter {
    /// Whether `t` passes this filter at time `now`. Drivers that cannot filter on
    /// the server side use this; the local store filters in SQL to the same rules.
    pub fn matches(&self, t: &Token, now: DateTime<Utc>) -> bool {
        let state = t.state_at(now);
        let state_ok = match self.state {
            StateFilter::All => true,
            StateFilter::Active => state == State::Active,
            StateFilter::Expired => state == State::Expired,
            StateFilter::Revoked => state == State::Revoked,
            StateFilter::Exhausted => state == State::Exhausted,
        };
        state_ok
            && self
                .name
                .as_deref()
                .is_none_or(|g| t.name.as_deref().is_some_and(|n| glob_match(g, n)))
            && self
                .labels
                .iter()
                .all(|(k, v)| t.labels.get(k).is_some_and(|x| x == v))
            && self.scopes.iter().all(|s| t.scopes.contains(s))
            && self.expiring_within.is_none_or(|w| {
                // A window past the last representable time holds every
                // future expiry (as the store's saturating SQL bound does).
                let until = crate::duration::checked_after_u64(now, w);
                t.expires_at
                    .is_some_and(|e| e > now && until.is_none_or(|u| e <= u))
            })
            && self
                .created_by
                .as_deref()
                .is_none_or(|c| t.created_by.as_deref() == Some(c))
            && self
                .id_prefix
                .as_deref()
                .is_none_or(|p| t.id.starts_with(p))
    }
}

/// Glob with `*` and `?`, the same rules as SQLite's GLOB for those two.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Limits on what a token may carry, shared by the CLI and the server.
/// How many ids an "ambiguous prefix" error lists.
pub const AMBIGUOUS_SHOWN: usize = 10;

/// The message for an id prefix that matches several tokens: the true count
/// (`total`; None when only "more than the ids found" is known) and at most
/// [`AMBIGUOUS_SHOWN`] of the ids.
pub fn ambiguous(prefix: &str, total: Option<usize>, candidates: &[String]) -> String {
    let shown = &candidates[..candidates.len().min(AMBIGUOUS_SHOWN)];
    let count = match total {
        Some(n) => n.to_string(),
        None => format!("more than {}", shown.len()),
    };
    let more = match total {
        Some(n) if n <= shown.len() => String::new(),
        _ => format!(" (first {} shown)", shown.len()),
    };
    format!(
        "`{prefix}` matches {count} tokens: {}{more}",
        shown.join(", ")
    )
}

pub mod limits {
    pub const NAME_MAX: usize = 128;
    pub const DESCRIPTION_MAX: usize = 1024;
    pub const SCOPE_MAX: usize = 128;
    pub const SCOPES_PER_TOKEN: usize = 64;
    pub const LABEL_KEY_MAX: usize = 64;
    pub const LABEL_VALUE_MAX: usize = 256;
    pub const LABELS_PER_TOKEN: usize = 64;
    pub const REASON_MAX: usize = 512;
    /// The largest use limit the store can hold (SQLite's INTEGER).
    pub const MAX_USES_MAX: u64 = i64::MAX as u64;
}

/// Checks a new token against the limits; the message names the limit broken.
pub fn check_new_token(t: &NewToken) -> Result<(), String> {
    use crate::duration::MAX_SECONDS;
    use limits::*;
    fn text(what: &str, s: &str, max: usize) -> Result<(), String> {
        if s.chars().count() > max {
            return Err(format!("{what} is longer than {max} characters"));
        }
        // Control characters, bidi overrides and invisible format characters
        // would let a name show one thing on a terminal and hold another.
        if let Some(c) = s.chars().find(|&c| crate::text::is_unsafe(c)) {
            return Err(format!(
                "{what} contains the control or invisible character U+{:04X}; use visible characters only",
                c as u32
            ));
        }
        Ok(())
    }
    if let Some(n) = &t.name {
        if n.trim().is_empty() {
            return Err("name is empty".into());
        }
        text("name", n, NAME_MAX)?;
    }
    if let Some(d) = &t.description {
        text("description", d, DESCRIPTION_MAX)?;
    }
    if t.scopes.len() > SCOPES_PER_TOKEN {
        return Err(format!("more than {SCOPES_PER_TOKEN} scopes"));
    }
    for (i, s) in t.scopes.iter().enumerate() {
        if t.scopes[..i].contains(s) {
            return Err(format!("scope `{s}` is given twice; give each scope once"));
        }
        if s.is_empty() || s.chars().any(char::is_whitespace) {
            return Err(format!("scope `{s}` is empty or contains white space"));
        }
        text("a scope", s, SCOPE_MAX)?;
    }
    if t.labels.len() > LABELS_PER_TOKEN {
        return Err(format!("more than {LABELS_PER_TOKEN} labels"));
    }
    for (k, v) in &t.labels {
        if k.is_empty() || k.contains('=') {
            return Err(format!("label key `{k}` is empty or contains `=`"));
        }
        text("a label key", k, LABEL_KEY_MAX)?;
        text("a label value", v, LABEL_VALUE_MAX)?;
    }
    // As far as `--ttl` reaches, plus a day of clock skew between a client
    // that computed the time and the server that checks it.
    let latest = crate::duration::checked_after_u64(Utc::now(), MAX_SECONDS + 86_400);
    if let (Some(e), Some(latest)) = (t.expires_at, latest) {
        if e > latest {
            return Err(format!(
                "expires_at {} is more than 10 years away; use no expiry for a token that never expires",
                crate::output::rfc3339(e)
            ));
        }
    }
    if t.max_uses == Some(0) {
        return Err("a use limit must be at least 1".into());
    }
    if t.max_uses.is_some_and(|m| m > MAX_USES_MAX) {
        return Err(format!("a use limit must be at most {MAX_USES_MAX}"));
    }
    if let Some(r) = &t.rate {
        r.check()?;
    }
    if let Some(q) = &t.quota {
        q.check()?;
    }
    if t.allow_ip.len() > crate::limits::RANGES_PER_TOKEN {
        return Err(format!(
            "more than {} address ranges",
            crate::limits::RANGES_PER_TOKEN
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("deploy-*", "deploy-42"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*x*y", "axbxy"));
        assert!(!glob_match("deploy-*", "ci-deploy-1"));
    }

    #[test]
    fn any_expiring_within_window_filters_without_panicking() {
        let now = Utc::now();
        let soon = now + chrono::TimeDelta::hours(1);
        let token = |expires_at| Token {
            state: State::Active,
            ..Token::bare("t".into(), now, expires_at)
        };
        let within = |w| Filter {
            expiring_within: Some(w),
            ..Filter::default()
        };
        assert!(within(7200).matches(&token(Some(soon)), now));
        assert!(!within(60).matches(&token(Some(soon)), now));
        for w in [u64::MAX, 1 << 63, (i64::MAX / 1000) as u64 + 1] {
            assert!(within(w).matches(&token(Some(soon)), now), "{w}");
            assert!(!within(w).matches(&token(None), now), "{w}");
        }
    }

    #[test]
    fn state_precedence() {
        let now = Utc::now();
        let past = Some(now - chrono::TimeDelta::seconds(1));
        assert_eq!(state_of(true, past, Some(1), 1, now), State::Revoked);
        assert_eq!(state_of(false, past, Some(1), 1, now), State::Expired);
        assert_eq!(state_of(false, None, Some(1), 1, now), State::Exhausted);
        assert_eq!(state_of(false, None, Some(2), 1, now), State::Active);
    }

    #[test]
    fn limits_name_what_is_wrong() {
        let mut t = NewToken {
            name: Some("x".repeat(200)),
            ..Default::default()
        };
        assert!(check_new_token(&t).unwrap_err().contains("128"));
        t.name = None;
        t.scopes = vec!["a b".into()];
        assert!(check_new_token(&t).unwrap_err().contains("white space"));
    }
}

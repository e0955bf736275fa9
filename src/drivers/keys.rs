//! One algorithm for the key gateways (apipark, kong, apisix, tyk). Each
//! gateway file holds its wire model and a few primitives (`KeyGateway`):
//! list, fetch, create, delete, set an expiry, wire to `Token`. `Keys<G>`
//! then does, once for all of them: prefix resolution, lookup by secret in
//! constant time, revoke, rotate with grace, renew, and sorted, filtered lists.

use super::http_client::{AdminApi, Answer};
use super::{DriverError, DriverKind, Gateway, Identity, Result, Revoked};
use crate::error::Kind;
use crate::model::{Created, Filter, NewToken, RevokeOutcome, State, Token};
use crate::secret::{self, Secret};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use std::collections::BTreeMap;

/// What a list of raw keys is for, so a gateway reads no more than it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// `tok list`: the keys in scope (the owner's, where one is set), whole.
    List,
    /// Prefix resolution: every key, whose ids are enough.
    Ids,
    /// Lookup by secret: every key, with the key itself.
    Keys,
}

/// A gateway's primitives. `Raw` is one key as the gateway answers it.
pub trait KeyGateway {
    type Raw;
    /// The admin client, whose dialect also names the driver.
    fn api(&self) -> &AdminApi;
    fn list_raw(&self, reach: Reach) -> Result<Vec<Self::Raw>>;
    /// The key whose id is exactly `id`, where the gateway can ask for one;
    /// None sends the search on to prefix resolution.
    fn fetch(&self, id: &str) -> Result<Option<Self::Raw>>;
    /// A key found by prefix, read whole (default: as listed).
    fn complete(&self, raw: Self::Raw) -> Result<Self::Raw> {
        Ok(raw)
    }
    fn id_of(&self, raw: &Self::Raw) -> Option<String>;
    /// The secret of a raw key, where the gateway shows it.
    fn key_of<'a>(&self, raw: &'a Self::Raw) -> Option<&'a str>;
    fn to_token(&self, raw: &Self::Raw) -> Result<Token>;
    fn create(&self, new: &NewToken) -> Result<Created>;
    /// A new key like `raw`, as `like` says: the old token's name,
    /// description, scopes and labels, and its lifetime from now.
    fn recreate(&self, raw: &Self::Raw, like: &NewToken) -> Result<Created>;
    fn delete(&self, raw: &Self::Raw) -> Result<()>;
    fn set_expiry(&self, raw: Self::Raw, until: DateTime<Utc>) -> Result<Token>;
    /// The token of a secret, where the gateway looks keys up itself; None
    /// makes tok compare every key in constant time.
    fn lookup(&self, secret: &Secret) -> Result<Option<Token>> {
        let _ = secret;
        Ok(None)
    }
    fn whoami(&self) -> Result<Identity>;
    fn is_secret(&self, s: &str) -> bool {
        secret::looks_like_secret(s)
    }
    fn looks_like_id(&self, s: &str) -> bool {
        super::id_shaped(s, 64, "-_")
    }
}

/// A key gateway as a `Gateway`.
pub struct Keys<G>(pub G);

impl<G: KeyGateway> Keys<G> {
    fn base(&self) -> &str {
        self.0.api().base()
    }

    /// A key by exact id, else by unique id prefix.
    fn find(&self, wanted: &str) -> Result<G::Raw> {
        if let Some(raw) = self.0.fetch(wanted)? {
            return Ok(raw);
        }
        let mut all: Vec<(String, G::Raw)> = self
            .0
            .list_raw(Reach::Ids)?
            .into_iter()
            .filter_map(|r| self.0.id_of(&r).map(|id| (id, r)))
            .collect();
        let id = resolve_prefix(all.iter().map(|(id, _)| id.as_str()), wanted)?;
        let at = all.iter().position(|(i, _)| *i == id);
        let raw = at
            .map(|i| all.swap_remove(i).1)
            .ok_or(DriverError::NotFound(id))?;
        self.0.complete(raw)
    }
}

impl<G: KeyGateway> Gateway for Keys<G> {
    fn kind(&self) -> DriverKind {
        self.0.api().dialect.kind
    }

    fn create(&self, new: &NewToken) -> Result<Created> {
        crate::model::check_new_token(new).map_err(DriverError::Invalid)?;
        self.0.create(new)
    }

    fn list(&self, filter: &Filter, sink: &mut dyn FnMut(Token) -> Result<()>) -> Result<()> {
        let mut tokens = self
            .0
            .list_raw(Reach::List)?
            .iter()
            .map(|r| self.0.to_token(r))
            .collect::<Result<Vec<_>>>()?;
        // Gateways page in their own order (by id): tok sorts before it streams.
        let now = Utc::now();
        tokens.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        let limit = filter.limit.unwrap_or(u64::MAX) as usize;
        for t in tokens
            .into_iter()
            .filter(|t| filter.matches(t, now))
            .take(limit)
        {
            sink(t)?;
        }
        Ok(())
    }

    fn get(&self, id_or_prefix: &str) -> Result<Token> {
        self.0.to_token(&self.find(id_or_prefix)?)
    }

    fn lookup(&self, secret: &Secret) -> Result<Token> {
        if let Some(t) = self.0.lookup(secret)? {
            return Ok(t);
        }
        let wanted = secret.expose().as_bytes();
        self.0
            .list_raw(Reach::Keys)?
            .iter()
            .find(|r| {
                self.0
                    .key_of(r)
                    .is_some_and(|k| secret::ct_eq(k.as_bytes(), wanted))
            })
            .map(|r| self.0.to_token(r))
            .unwrap_or_else(|| Err(unknown_secret(secret)))
    }

    fn revoke(&self, id: &str, reason: Option<&str>) -> Result<Revoked> {
        let raw = self.find(id)?;
        let token = self.0.to_token(&raw)?;
        self.0.delete(&raw)?;
        Ok((revoked(token, reason), RevokeOutcome::Revoked))
    }

    fn rotate(&self, id: &str, grace: Option<u64>) -> Result<(Created, Token)> {
        let raw = self.find(id)?;
        let old = self.0.to_token(&raw)?;
        let now = Utc::now();
        let like = NewToken {
            name: old.name.clone(),
            description: old.description.clone(),
            scopes: old.scopes.clone(),
            labels: old.labels.clone(),
            expires_at: same_lifetime(&old, now, self.base())?,
            max_uses: None,
            rate: old.rate,
            quota: old.quota,
            allow_ip: old.allow_ip.clone(),
        };
        let created = self.0.recreate(&raw, &like)?;
        let old = match grace {
            None => {
                self.0.delete(&raw)?;
                revoked(old, Some(&format!("rotated to {}", created.token.id)))
            }
            Some(g) => {
                let g = g.min(crate::duration::MAX_SECONDS) as i64;
                let until = now + TimeDelta::seconds(g);
                let until = old.expires_at.map_or(until, |e| e.min(until));
                self.0.set_expiry(raw, until)?
            }
        };
        Ok((created, old))
    }

    fn renew(&self, id: &str, increment: Option<u64>) -> Result<Token> {
        let raw = self.find(id)?;
        let old = self.0.to_token(&raw)?;
        let until = renewed_until(&old, increment, Utc::now(), self.base())?;
        self.0.set_expiry(raw, until)
    }

    fn is_secret(&self, s: &str) -> bool {
        self.0.is_secret(s)
    }

    fn looks_like_id(&self, s: &str) -> bool {
        self.0.looks_like_id(s)
    }

    fn whoami(&self) -> Result<Identity> {
        self.0.whoami()
    }
}

/// Picks the one id equal to `wanted`, else the one starting with it.
pub fn resolve_prefix<'a>(ids: impl IntoIterator<Item = &'a str>, wanted: &str) -> Result<String> {
    let mut starts: Vec<&str> = Vec::new();
    for id in ids {
        if id == wanted {
            return Ok(id.to_string());
        }
        if !wanted.is_empty() && id.starts_with(wanted) {
            starts.push(id);
        }
    }
    match starts.as_slice() {
        [] => Err(DriverError::NotFound(wanted.to_string())),
        [one] => Ok(one.to_string()),
        _ => {
            starts.sort_unstable();
            Err(DriverError::Ambiguous {
                prefix: wanted.to_string(),
                total: Some(starts.len()),
                candidates: starts.into_iter().map(String::from).collect(),
            })
        }
    }
}

/// Every item of a paged list: `page` reads the page at a cursor (None for
/// the first) and names the next one, if any.
pub fn all_pages<T, C>(
    mut page: impl FnMut(Option<C>) -> Result<(Vec<T>, Option<C>)>,
) -> Result<Vec<T>> {
    let (mut out, mut next) = page(None)?;
    while let Some(cursor) = next {
        let (more, after) = page(Some(cursor))?;
        out.extend(more);
        next = after;
    }
    Ok(out)
}

/// The key with `secret`, as a gateway that looks keys up at `prefix`{secret}
/// answers (a 404 is an unknown secret).
pub fn look_up(api: &AdminApi, prefix: &str, secret: &Secret) -> Result<Answer> {
    let answer = api.call_with_secret(reqwest::Method::GET, prefix, secret)?;
    api.check(answer, &[secret], |_| unknown_secret(secret))
}

pub fn unknown_secret(secret: &Secret) -> DriverError {
    DriverError::UnknownSecret {
        fingerprint: fingerprint(secret.expose()),
    }
}

/// The consumer new keys go to; a clear error when none was named.
pub fn owner<'a>(owner: &'a Option<String>, gateway: &str) -> Result<&'a str> {
    owner.as_deref().ok_or_else(|| {
        DriverError::gateway(
            Kind::Usage,
            format!("a {gateway} key belongs to a consumer, and none was named"),
            Some("pass --owner CONSUMER (or set TOK_OWNER, or `owner` in the profile)"),
        )
    })
}

/// The error for a `what` (consumer, app) named by `--flag` that the
/// gateway does not have; `how` says where to find or make one.
pub fn no_such(gateway: &str, (what, flag): (&str, &str), name: &str, how: &str) -> DriverError {
    let env = flag.to_uppercase();
    DriverError::gateway(
        Kind::NotFound,
        format!("{gateway} has no {what} `{name}`"),
        Some(&format!(
            "check --{flag} (or TOK_{env}, or the profile's `{flag}`){how}"
        )),
    )
}

/// A fingerprint for any key: tok's own format as tok shows it, else the first
/// six characters of a long key (a short key shows nothing of itself).
pub fn fingerprint(key: &str) -> String {
    if secret::looks_like_secret(key) {
        secret::fingerprint_of(key)
    } else if key.chars().count() >= 16 {
        let shown: String = key.chars().take(6).collect();
        format!("{shown}…")
    } else {
        "…".into()
    }
}

/// A JSON object of labels (string values as they are, others as JSON).
pub fn labels(v: Option<&Value>) -> BTreeMap<String, String> {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), String::from);
    v.and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        .unwrap_or_default()
}

/// The token as it reads once the gateway deleted it.
pub fn revoked(mut t: Token, reason: Option<&str>) -> Token {
    t.revoked_at = Some(Utc::now());
    t.revoke_reason = reason.map(String::from);
    t.state = State::Revoked;
    t
}

/// When a replacement for `old` expires: the same lifetime, from now. An
/// expiry the gateway reported so far out that the same lifetime from now is
/// past any date is a `Protocol` error for `url`.
pub fn same_lifetime(old: &Token, now: DateTime<Utc>, url: &str) -> Result<Option<DateTime<Utc>>> {
    old.expires_at
        .map(|e| {
            let life = (e - old.created_at).max(TimeDelta::seconds(60));
            now.checked_add_signed(life)
                .ok_or_else(|| too_far(old, e, url))
        })
        .transpose()
}

/// The new expiry of a renewal: `increment` from now, or by default the
/// token's original lifetime from now (a `Protocol` error for `url` when that
/// is past any date).
pub fn renewed_until(
    old: &Token,
    increment: Option<u64>,
    now: DateTime<Utc>,
    url: &str,
) -> Result<DateTime<Utc>> {
    match (increment, old.expires_at) {
        (Some(i), _) => Ok(now + TimeDelta::seconds(i.min(crate::duration::MAX_SECONDS) as i64)),
        (None, Some(e)) => {
            let secs = (e - old.created_at).num_seconds().max(60);
            crate::duration::checked_after(now, secs).ok_or_else(|| too_far(old, e, url))
        }
        (None, None) => Err(DriverError::Invalid(format!(
            "token {} never expires, so it has no lifetime to renew by; pass --increment DURATION",
            old.id
        ))),
    }
}

/// A lifetime, read from the gateway, that cannot be given again from now.
fn too_far(old: &Token, expires_at: DateTime<Utc>, url: &str) -> DriverError {
    DriverError::Protocol {
        url: url.to_string(),
        message: format!(
            "token {} expires at {}, so the same lifetime from now would end past any date tok can represent",
            old.id,
            crate::output::rfc3339(expires_at)
        ),
    }
    .with_hint("check the token's expiry on the gateway; `tok renew --increment DURATION` renews by a lifetime you give")
}

/// Whole seconds from now until `t`, at least 1.
pub fn seconds_until(t: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    let ms = (t - now).num_milliseconds();
    ((ms + 999) / 1000).max(1)
}

/// A Unix time in seconds as a UTC time, where it is one (0 and less: none).
pub fn from_unix(secs: i64) -> Option<DateTime<Utc>> {
    (secs > 0)
        .then(|| DateTime::from_timestamp(secs, 0))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_past_any_date_are_protocol_errors_not_panics() {
        let now = Utc::now();
        let old = |created_at, expires_at| Token::bare("k1".into(), created_at, Some(expires_at));
        let normal = old(now - TimeDelta::hours(2), now - TimeDelta::hours(1));
        assert_eq!(
            same_lifetime(&normal, now, "http://gw").unwrap(),
            Some(now + TimeDelta::hours(1))
        );
        assert_eq!(
            renewed_until(&normal, None, now, "http://gw").unwrap(),
            now + TimeDelta::hours(1)
        );
        let endless = old(
            DateTime::<Utc>::MIN_UTC + TimeDelta::days(1),
            DateTime::<Utc>::MAX_UTC - TimeDelta::days(1),
        );
        for e in [
            same_lifetime(&endless, now, "http://gw").unwrap_err(),
            renewed_until(&endless, None, now, "http://gw").unwrap_err(),
        ] {
            assert!(matches!(e, DriverError::Hinted { .. }), "{e}");
            assert!(e.to_string().contains("past any date"), "{e}");
            assert_eq!(e.kind(), crate::error::Kind::Failure);
        }
        // An increment the user gives still works.
        assert_eq!(
            renewed_until(&endless, Some(60), now, "http://gw").unwrap(),
            now + TimeDelta::minutes(1)
        );
    }

    #[test]
    fn fingerprints_never_show_much() {
        assert_eq!(fingerprint("short-key"), "…");
        assert_eq!(fingerprint("0123456789abcdef0123"), "012345…");
        let s = Secret::generate();
        assert_eq!(fingerprint(s.expose()), s.fingerprint());
    }

    #[test]
    fn prefixes_resolve_or_say_why_not() {
        let ids = ["abc1", "abc2", "xyz"];
        assert_eq!(resolve_prefix(ids, "xy").unwrap(), "xyz");
        assert_eq!(resolve_prefix(ids, "abc1").unwrap(), "abc1");
        assert!(matches!(
            resolve_prefix(ids, "abc"),
            Err(DriverError::Ambiguous { .. })
        ));
        assert!(matches!(
            resolve_prefix(ids, "q"),
            Err(DriverError::NotFound(_))
        ));
    }
}

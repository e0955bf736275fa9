//! What the gateway drivers (apipark, kong, apisix, tyk) share: one admin-API
//! caller over the shared HTTP client that never lets a secret into a URL it
//! shows, and the small model helpers every one of them needs.

use super::http_client::{self, Http};
use super::{DriverError, DriverKind, Result, Settings};
use crate::error::Kind;
use crate::model::{Filter, State, Token};
use crate::secret::{self, Secret};
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// A gateway's admin API: base URL, TLS and timeouts from the settings, and
/// the admin credential sent in one header on every request.
pub struct AdminApi {
    http: Http,
    auth: Option<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

/// One answer, read whole. `url` is safe to show: no query string, no secret.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub url: String,
}

impl AdminApi {
    /// `auth` is the header that carries the credential, and the credential.
    pub fn new(settings: &Settings, auth: Option<(&'static str, &Secret)>) -> Result<AdminApi> {
        let http = Http::new(&settings.http)?;
        let auth = match auth {
            None => None,
            Some((name, secret)) => {
                let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| {
                    DriverError::Invalid(
                        "the admin credential holds characters that cannot go in an HTTP header (a stray newline?)"
                            .into(),
                    )
                })?;
                value.set_sensitive(true);
                Some((HeaderName::from_static(name), value))
            }
        };
        Ok(AdminApi {
            http,
            auth,
            timeout: settings.http.timeout,
        })
    }

    pub fn base(&self) -> &str {
        self.http.base()
    }

    /// A request to `path` (which starts with `/`).
    pub fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Answer> {
        let shown = self.http.url(path);
        self.send(method, path, query, body, shown)
    }

    /// A request whose path carries a secret (`{prefix}{secret}{suffix}`), as
    /// some gateways look keys up: messages show `(secret)` in its place.
    pub fn call_with_secret(
        &self,
        method: Method,
        prefix: &str,
        secret: &Secret,
        suffix: &str,
        query: &[(&str, &str)],
    ) -> Result<Answer> {
        let path = format!("{prefix}{}{suffix}", encode_segment(secret.expose()));
        let shown = self.http.url(&format!("{prefix}(secret){suffix}"));
        self.send(method, &path, query, None, shown)
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        shown: String,
    ) -> Result<Answer> {
        let mut req = self
            .http
            .client()
            .request(method, self.http.url(path))
            .header(reqwest::header::ACCEPT, "application/json");
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some((name, value)) = &self.auth {
            req = req.header(name.clone(), value.clone());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        // reqwest errors name the URL, which may hold a secret: both helpers
        // drop it and show `shown` instead.
        let resp = req
            .send()
            .map_err(|e| http_client::transport_error(&shown, e, self.timeout))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .map_err(|e| http_client::cut_off(&shown, e))?
            .to_vec();
        Ok(Answer {
            status,
            body,
            url: shown,
        })
    }
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON of type `T`. The body itself is never quoted in the
    /// error: answers of these APIs may carry keys.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| DriverError::Protocol {
            url: self.url.clone(),
            message: format!(
                "HTTP {} with a body that is not the JSON expected ({e})",
                self.status
            ),
        })
    }

    /// The body as loose JSON, if it is JSON at all.
    pub fn value(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The start of the body for an error message, with any of `secrets` blanked.
    /// The whole body is redacted before it is cut: cut first, a secret that
    /// straddles the cut would no longer match and its first part would show.
    pub fn snippet(&self, secrets: &[&Secret]) -> String {
        let whole = redact(&String::from_utf8_lossy(&self.body), secrets);
        http_client::snippet(whole.as_bytes())
    }

    /// An HTTP error for a status no driver rule covers (5xx and the like).
    pub fn http_error(&self, secrets: &[&Secret]) -> DriverError {
        DriverError::Http {
            status: self.status,
            url: self.url.clone(),
            body: self.snippet(secrets),
        }
    }
}

/// Blanks every occurrence of the secrets in `text`.
pub fn redact(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.expose().is_empty() {
            out = out.replace(s.expose(), "(redacted)");
        }
    }
    out
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters stay).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

/// The error for a driver that needs an admin credential and found none.
pub fn missing_credential(kind: DriverKind, what: &str) -> DriverError {
    let vars = crate::credentials::env_vars(kind).join(" or ");
    DriverError::Gateway {
        message: format!("no admin credential for the {} driver", kind.as_str()),
        kind: Kind::Auth,
        hint: Some(format!("set {vars} to {what}")),
    }
}

/// The error for a credential the gateway refused.
pub fn refused_credential(
    kind: DriverKind,
    answer: &Answer,
    detail: &str,
    what: &str,
) -> DriverError {
    let vars = crate::credentials::env_vars(kind).join(" or ");
    DriverError::Gateway {
        message: format!(
            "{} refused the admin credential (HTTP {} from {}: {detail})",
            kind.as_str(),
            answer.status,
            answer.url
        ),
        kind: Kind::Auth,
        hint: Some(format!("check {vars}: it must hold {what}")),
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
    match starts.len() {
        0 => Err(DriverError::NotFound(wanted.to_string())),
        1 => Ok(starts[0].to_string()),
        _ => {
            starts.sort_unstable();
            Err(DriverError::Ambiguous {
                prefix: wanted.to_string(),
                candidates: starts.into_iter().map(String::from).collect(),
            })
        }
    }
}

/// Sorts tokens oldest first, keeps those the filter passes (up to its limit)
/// and hands them to the sink. Gateways page in their own order (by id), so
/// tok sorts before it streams.
pub fn emit(
    mut tokens: Vec<Token>,
    filter: &Filter,
    sink: &mut dyn FnMut(Token) -> Result<()>,
) -> Result<()> {
    let now = Utc::now();
    tokens.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let mut sent = 0u64;
    for t in tokens {
        if filter.limit.is_some_and(|l| sent >= l) {
            break;
        }
        if filter.matches(&t, now) {
            sent += 1;
            sink(t)?;
        }
    }
    Ok(())
}

/// A token with every field empty but those given; drivers fill in the rest.
pub fn token(id: String, created_at: DateTime<Utc>, expires_at: Option<DateTime<Utc>>) -> Token {
    let state = crate::model::state_of(false, expires_at, None, 0, Utc::now());
    Token {
        id,
        name: None,
        description: None,
        scopes: Vec::new(),
        labels: Default::default(),
        created_at,
        created_by: None,
        expires_at,
        max_uses: None,
        uses: 0,
        last_used_at: None,
        state,
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
        fingerprint: "-".into(),
        rate: None,
        quota: None,
    }
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
            let life = (e - old.created_at).max(chrono::TimeDelta::seconds(60));
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
        (Some(i), _) => {
            Ok(now + chrono::TimeDelta::seconds(i.min(crate::duration::MAX_SECONDS) as i64))
        }
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

/// A Unix time in seconds as a UTC time, where it is one.
pub fn from_unix(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn lifetimes_past_any_date_are_protocol_errors_not_panics() {
        let now = Utc::now();
        let old = |created_at, expires_at| token("k1".into(), created_at, Some(expires_at));
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
    fn segments_are_encoded() {
        assert_eq!(encode_segment("tok_Ab9-._~"), "tok_Ab9-._~");
        assert_eq!(encode_segment("a/b c+="), "a%2Fb%20c%2B%3D");
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

    #[test]
    fn a_secret_across_the_snippet_cut_is_redacted_whole() {
        let secret = Secret::new("tok_straddles_the_two_hundredth_character_0123456789");
        for at in [150, 180, 195, 199, 200] {
            let body = format!("{}{} tail", "x".repeat(at), secret.expose());
            let answer = Answer {
                status: 500,
                body: body.into_bytes(),
                url: "http://gw/x".into(),
            };
            let shown = answer.snippet(&[&secret]);
            assert!(!shown.contains("tok_straddles"), "{at}: {shown}");
            assert!(!shown.contains("tok_"), "{at}: {shown}");
            assert!(shown.chars().count() <= 201, "{at}: {shown}");
            if at <= 190 {
                assert!(shown.contains("(redacted)"), "{at}: {shown}");
            }
        }
    }

    #[test]
    fn redaction_blanks_secrets() {
        let s = Secret::new("tok_sekrit");
        assert_eq!(redact("dup key tok_sekrit!", &[&s]), "dup key (redacted)!");
    }
}

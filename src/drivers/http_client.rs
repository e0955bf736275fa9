//! The HTTP client every network driver shares: TLS settings, timeouts, one
//! mapping of transport failures onto `DriverError` with useful causes, and
//! the admin client of the key gateways (in the manner of xh's middleware):
//! the credential in one sensitive header, secrets blanked from every error,
//! and each gateway's error dialect stated as data.

use super::{DriverError, DriverKind, Result as DResult, Settings, TransportCause};
use crate::error::Kind;
use crate::secret::Secret;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::error::Error as _;
use std::path::PathBuf;
use std::time::Duration;

/// Default request timeout when neither --timeout nor the profile sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Base URL without a trailing slash, e.g. `https://tok.example.com`.
    pub base_url: String,
    pub timeout: Duration,
    pub ca_cert: Option<PathBuf>,
    /// Skip certificate verification. The caller has warned the user.
    pub insecure: bool,
}

#[derive(Debug, Clone)]
pub struct Http {
    client: Client,
    base: String,
    timeout: Duration,
}

impl Http {
    pub fn new(s: &HttpSettings) -> Result<Http, DriverError> {
        let base = normalize_url(&s.base_url)?;
        let mut b = Client::builder()
            .timeout(s.timeout)
            .connect_timeout(s.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("tok/", env!("CARGO_PKG_VERSION")))
            // Admin credentials must never follow a redirect to another host.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &s.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                DriverError::Invalid(format!("could not read CA file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                DriverError::Invalid(format!(
                    "{} is not a PEM certificate bundle: {e}",
                    path.display()
                ))
            })?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if s.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        let client = b.build().map_err(|e| DriverError::Transport {
            url: base.clone(),
            cause: TransportCause::Other,
            message: format!("could not set up the HTTP client: {}", e.without_url()),
        })?;
        Ok(Http {
            client,
            base,
            timeout: s.timeout,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `base` + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; a failure to get any answer becomes `Transport`.
    pub fn send(&self, req: RequestBuilder) -> Result<Response, DriverError> {
        let url = req
            .try_clone()
            .and_then(|r| r.build().ok())
            .map(|r| redact_url(r.url().as_str()))
            .unwrap_or_else(|| self.base.clone());
        req.send()
            .map_err(|e| transport_error(&url, e, self.timeout))
    }
}

/// Reads a response body as JSON of type `T`; anything else is `Protocol`.
pub fn read_json<T: DeserializeOwned>(resp: Response) -> Result<T, DriverError> {
    let url = redact_url(resp.url().as_str());
    let status = resp.status();
    let bytes = resp.bytes().map_err(|e| cut_off(&url, e))?;
    serde_json::from_slice(&bytes).map_err(|e| DriverError::Protocol {
        url,
        message: format!(
            "HTTP {status} with a body that is not the expected JSON ({e}): {}",
            snippet(&bytes)
        ),
    })
}

/// The first 200 characters of a body, for error messages, made safe for a
/// terminal (`text::terminal_safe`).
pub fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push('…');
    }
    // A gateway chose these bytes: no control or invisible character of
    // theirs reaches a terminal through an error message.
    crate::text::terminal_safe(&s.replace(['\n', '\r'], " ")).into_owned()
}

/// `url::normalize` as a driver error (a usage error either way).
pub fn normalize_url(raw: &str) -> Result<String, DriverError> {
    crate::url::normalize(raw).map_err(|e| DriverError::Invalid(e.message))
}

pub use crate::url::{display as display_url, redact as redact_url};

/// A request that got no answer. `url` is the one to show (query dropped):
/// reqwest's own message names the full URL, whose query may carry a key
/// (`?apikey=`), so it is taken off the error before any of it is formatted.
pub fn transport_error(url: &str, e: reqwest::Error, timeout: Duration) -> DriverError {
    let e = e.without_url();
    let sources: Vec<&(dyn std::error::Error + 'static)> =
        std::iter::successors(e.source(), |s| (*s).source()).collect();
    let mut chain = e.to_string();
    for s in &sources {
        chain = format!("{chain}: {s}");
    }
    let lower = chain.to_lowercase();
    let io_kind = sources
        .iter()
        .rev()
        .find_map(|s| s.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    let (cause, message) = if e.is_timeout() || lower.contains("timed out") {
        (
            TransportCause::Timeout,
            format!("no answer within {}s", timeout.as_secs()),
        )
    } else if io_kind == Some(std::io::ErrorKind::ConnectionRefused)
        || lower.contains("connection refused")
    {
        (TransportCause::Refused, "connection refused".to_string())
    } else if lower.contains("dns error") || lower.contains("failed to lookup address") {
        (
            TransportCause::Dns,
            "could not resolve the host name".to_string(),
        )
    } else if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
        || lower.contains("invalidcontenttype")
    {
        (TransportCause::Tls, format!("TLS failed: {chain}"))
    } else {
        (TransportCause::Other, chain)
    };
    DriverError::Transport {
        url: url.to_string(),
        cause,
        message,
    }
}

/// An answer whose body could not be read whole; `url` as for `transport_error`.
pub fn cut_off(url: &str, e: reqwest::Error) -> DriverError {
    DriverError::Transport {
        url: url.to_string(),
        cause: TransportCause::Other,
        message: format!("the answer was cut off: {}", e.without_url()),
    }
}

/// `value` as a header value that HTTP libraries never log; `what` names the
/// credential when it cannot go in a header (a stray newline).
pub fn sensitive(value: &str, what: &str) -> DResult<HeaderValue> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        DriverError::Invalid(format!(
            "{what} holds characters that cannot go in an HTTP header (a stray newline?)"
        ))
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// How a gateway says what went wrong, as data: where its message lives and
/// what a refused request means. 401/403 are always a refused credential,
/// 404 is what the caller says it is, 5xx an HTTP error.
pub struct Dialect {
    pub kind: DriverKind,
    /// The gateway's name in messages.
    pub name: &'static str,
    /// The header that carries the admin credential.
    pub auth_header: &'static str,
    /// JSON fields that may hold the message, tried in order.
    pub message: &'static [&'static str],
    /// Statuses the gateway uses to refuse a request, and the kind each means.
    pub refusals: &'static [(u16, Kind)],
    /// Whether a refusal without a message still reads as one (with the body).
    pub bare_refusals: bool,
    /// What the base URL must point at, for a 404 where that API never gives one.
    pub admin_api: &'static str,
}

impl Dialect {
    /// A dialect whose message is in `message` and that refuses nothing
    /// beyond 401/403.
    pub const fn new(kind: DriverKind, name: &'static str, auth_header: &'static str) -> Dialect {
        Dialect {
            kind,
            name,
            auth_header,
            message: &["message"],
            refusals: &[],
            bare_refusals: false,
            admin_api: "",
        }
    }
}

/// A gateway's admin API: base URL, TLS and timeouts from the settings, the
/// admin credential in one sensitive header, and the gateway's dialect.
pub struct AdminApi {
    http: Http,
    auth: Option<(HeaderName, HeaderValue)>,
    pub dialect: &'static Dialect,
}

/// One request to an admin API: a method and a path (which starts with `/`),
/// and what else it carries.
pub struct Req<'a> {
    pub method: Method,
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    pub body: Option<&'a Value>,
    /// The secret it carries, blanked from any error.
    pub secret: Option<&'a Secret>,
}

impl<'a> Req<'a> {
    pub fn new(method: Method, path: &'a str) -> Req<'a> {
        Req {
            method,
            path,
            query: &[],
            body: None,
            secret: None,
        }
    }

    pub fn get(path: &'a str) -> Req<'a> {
        Req::new(Method::GET, path)
    }

    pub fn query(self, query: &'a [(&'a str, &'a str)]) -> Req<'a> {
        Req { query, ..self }
    }

    pub fn body(self, body: impl Into<Option<&'a Value>>) -> Req<'a> {
        let body = body.into();
        Req { body, ..self }
    }

    pub fn hiding(self, secret: &'a Secret) -> Req<'a> {
        let secret = Some(secret);
        Req { secret, ..self }
    }
}

/// One answer, read whole. `url` is safe to show: no query string, no secret.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub url: String,
}

impl AdminApi {
    /// `secret` goes in the dialect's header; `None` sends none (Kong OSS).
    pub fn new(
        settings: &Settings,
        dialect: &'static Dialect,
        secret: Option<&Secret>,
    ) -> DResult<AdminApi> {
        let auth = match secret {
            None => None,
            Some(s) => Some((
                HeaderName::from_static(dialect.auth_header),
                sensitive(s.expose(), "the admin credential")?,
            )),
        };
        Ok(AdminApi {
            http: Http::new(&settings.http)?,
            auth,
            dialect,
        })
    }

    /// As `new`, with the credential the driver needs and a clear error without one.
    pub fn needing(
        settings: &Settings,
        dialect: &'static Dialect,
        prefix: &str,
    ) -> DResult<AdminApi> {
        let c = settings
            .credential
            .as_ref()
            .ok_or_else(|| missing_credential(dialect.kind))?;
        Self::new(
            settings,
            dialect,
            Some(&Secret::new(format!("{prefix}{}", c.secret.expose()))),
        )
    }

    pub fn base(&self) -> &str {
        self.http.base()
    }

    /// A request, its answer read whole whatever the status.
    pub fn call(&self, req: Req) -> DResult<Answer> {
        let shown = self.http.url(req.path);
        self.send(req, shown)
    }

    /// A request whose path carries a secret (`{prefix}{secret}`), as some
    /// gateways look keys up: messages show `(secret)` in its place.
    pub fn call_with_secret(
        &self,
        method: Method,
        prefix: &str,
        secret: &Secret,
    ) -> DResult<Answer> {
        let path = format!("{prefix}{}", encode_segment(secret.expose()));
        let shown = self.http.url(&format!("{prefix}(secret)"));
        self.send(Req::new(method, &path), shown)
    }

    fn send(&self, r: Req, shown: String) -> DResult<Answer> {
        let mut req = self
            .http
            .client()
            .request(r.method, self.http.url(r.path))
            .header(reqwest::header::ACCEPT, "application/json");
        if !r.query.is_empty() {
            req = req.query(r.query);
        }
        if let Some((name, value)) = &self.auth {
            req = req.header(name.clone(), value.clone());
        }
        if let Some(b) = r.body {
            req = req.json(b);
        }
        // reqwest errors name the URL, which may hold a secret: both helpers
        // drop it and show `shown` instead.
        let resp = req
            .send()
            .map_err(|e| transport_error(&shown, e, self.http.timeout))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().map_err(|e| cut_off(&shown, e))?.to_vec();
        Ok(Answer {
            status,
            body,
            url: shown,
        })
    }

    /// A request whose error answer is read in the gateway's dialect; a 404
    /// is `missing` (given the gateway's message), and the request's secret
    /// never shows.
    pub fn expect(&self, req: Req, missing: impl FnOnce(&str) -> DriverError) -> DResult<Answer> {
        let secret = req.secret;
        let answer = self.call(req)?;
        self.check(answer, secret.as_slice(), missing)
    }

    /// A request about key `id`, which must exist: a 404 says it is gone.
    pub fn on_key(&self, req: Req, id: &str) -> DResult<Answer> {
        self.expect(req, |_| DriverError::NotFound(id.to_string()))
    }

    /// A request whose 404 is an answer too: None.
    pub fn get_opt(&self, req: Req) -> DResult<Option<Answer>> {
        let answer = self.call(req)?;
        if answer.status == 404 {
            return Ok(None);
        }
        let answer = self.check(answer, &[], |m| DriverError::NotFound(m.into()))?;
        Ok(Some(answer))
    }

    /// A request whose 404 is `missing`, or (None) says the base URL points elsewhere.
    pub fn get_or(&self, req: Req, missing: Option<&dyn Fn() -> DriverError>) -> DResult<Answer> {
        match missing {
            Some(m) => self.expect(req, |_| m()),
            None => self.probe(req),
        }
    }

    /// A request to a path the admin API always serves: a 404 means the
    /// base URL points elsewhere.
    pub fn probe(&self, req: Req) -> DResult<Answer> {
        let path = req.path;
        self.expect(req, |m| self.not_admin(path, m))
    }

    /// The error for a 404 (saying `detail`) where the admin API has `path`.
    pub fn not_admin(&self, path: &str, detail: &str) -> DriverError {
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(" ({detail})")
        };
        DriverError::protocol(
            self.http.url(path),
            format!(
                "GET {path} answered 404{detail}: is this {}?",
                self.dialect.admin_api
            ),
        )
    }

    /// Maps an answer's error status through the dialect.
    pub fn check(
        &self,
        answer: Answer,
        secrets: &[&Secret],
        missing: impl FnOnce(&str) -> DriverError,
    ) -> DResult<Answer> {
        if answer.ok() {
            return Ok(answer);
        }
        let d = self.dialect;
        let message = answer.value().and_then(|v| {
            d.message.iter().find_map(|f| {
                v.get(*f)
                    .and_then(Value::as_str)
                    .map(|m| redact(m, secrets))
            })
        });
        let refusal = d.refusals.iter().find(|(s, _)| *s == answer.status);
        match (answer.status, refusal) {
            (401 | 403, _) => Err(refused_credential(
                d.kind,
                &answer,
                message.as_deref().unwrap_or("refused"),
            )),
            (404, _) => Err(missing(message.as_deref().unwrap_or_default())),
            (status, Some((_, kind))) if message.is_some() || d.bare_refusals => {
                Err(DriverError::Gateway {
                    message: format!(
                        "{} refused the request (HTTP {status} from {}): {}",
                        d.name,
                        answer.url,
                        message.unwrap_or_else(|| answer.snippet(secrets))
                    ),
                    kind: *kind,
                    hint: None,
                })
            }
            _ => Err(answer.http_error(secrets)),
        }
    }
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON of type `T`. The body itself is never quoted in the
    /// error: answers of these APIs may carry keys.
    pub fn json<T: DeserializeOwned>(&self) -> DResult<T> {
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
        // Redacted before and after escaping: an escape can complete a
        // secret (a tab before `ok_…` shows as `\tok_…`). The gateway_answers
        // fuzz target found that; its input is in the corpus.
        let escaped = snippet(redact(&String::from_utf8_lossy(&self.body), secrets).as_bytes());
        redact(&escaped, secrets)
    }

    /// An HTTP error for a status no dialect rule covers (5xx and the like).
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
    for s in secrets.iter().filter(|s| !s.expose().is_empty()) {
        out = out.replace(s.expose(), "(redacted)");
    }
    out
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters stay).
pub fn encode_segment(s: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

/// `application/x-www-form-urlencoded` as RFC 6749 Appendix B asks (the
/// WHATWG form encoding: `*-._` stay, a space is `+`).
pub fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The error for a driver that needs an admin credential and found none.
pub fn missing_credential(kind: DriverKind) -> DriverError {
    DriverError::Gateway {
        message: format!("no admin credential for the {} driver", kind.as_str()),
        kind: Kind::Auth,
        hint: Some(credential_hint(kind, "set {env} to")),
    }
}

/// `how` (with `{env}` for the variables) and what the credential must be.
fn credential_hint(kind: DriverKind, how: &str) -> String {
    let spec = kind.spec();
    let how = how.replace("{env}", &spec.credential_env.join(" or "));
    format!("{how} {}", spec.credential)
}

/// The error for a credential the gateway refused.
pub fn refused_credential(kind: DriverKind, answer: &Answer, detail: &str) -> DriverError {
    DriverError::Gateway {
        message: format!(
            "{} refused the admin credential (HTTP {} from {}: {detail})",
            kind.as_str(),
            answer.status,
            answer.url
        ),
        kind: Kind::Auth,
        hint: Some(credential_hint(kind, "check {env}: it must hold")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escape_cannot_complete_a_secret_in_a_snippet() {
        let sent = Secret::new("tok_FuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuz0000");
        let answer = Answer {
            status: 500,
            body: b"oops\tok_FuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuz0000 and\t".to_vec(),
            url: "https://gw.example/admin".into(),
        };
        let s = answer.snippet(&[&sent]);
        assert!(!s.contains(sent.expose()), "{s}");
        let tab = Answer {
            body: b"x\tok_FuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuz0000".to_vec(),
            ..answer
        };
        assert!(!tab.snippet(&[&sent]).contains(sent.expose()));
    }

    #[test]
    fn transport_errors_never_show_the_query_of_the_url() {
        // A port that was free a moment ago: the connection is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let raw = format!("http://127.0.0.1:{port}/keys?apikey=s3cret-in-query");
        let e = Client::new().get(&raw).send().unwrap_err();
        assert!(
            e.to_string().contains("s3cret"),
            "reqwest names the URL: {e}"
        );
        let err = transport_error(&redact_url(&raw), e, DEFAULT_TIMEOUT);
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains(&format!("127.0.0.1:{port}/keys?…")),
            "{shown}"
        );

        let e = Client::new().get(&raw).send().unwrap_err();
        let shown = format!("{:?}", cut_off("http://x/keys?…", e));
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("tok_Ab9-._~"), "tok_Ab9-._~");
        assert_eq!(encode_segment("a/b c+="), "a%2Fb%20c%2B%3D");
        assert_eq!(form_encode("a b+c:d/é"), "a+b%2Bc%3Ad%2F%C3%A9");
        assert_eq!(form_encode("Az09-._*"), "Az09-._*");
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

//! The HTTP client every network driver shares: TLS settings, timeouts, and
//! one mapping of transport failures onto `DriverError` with useful causes.

use super::{DriverError, TransportCause};
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde::de::DeserializeOwned;
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

/// Checks a base URL and drops a trailing slash. A URL with a user name or
/// password is refused (a credential has its own ways in); errors show the
/// input without either, nor its query.
pub fn normalize_url(raw: &str) -> Result<String, DriverError> {
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| {
        DriverError::Invalid(format!(
            "`{}` is not a URL ({e}); write e.g. http://127.0.0.1:8270",
            without_credentials(raw)
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(DriverError::Invalid(format!(
            "`{}` is not an http or https URL",
            without_credentials(raw)
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(DriverError::Invalid(
            "the URL carries a user name or password; give credentials another way".into(),
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// A URL as tok shows it: normalised, or where it is not a usable base URL,
/// as given with any user name, password and query taken out.
pub fn display_url(raw: &str) -> String {
    normalize_url(raw).unwrap_or_else(|_| without_credentials(raw))
}

/// `raw` with the userinfo of its authority (`user:pass@`) and its query
/// replaced by `…`, read as text so that it works on what is not a URL too.
fn without_credentials(raw: &str) -> String {
    let raw = raw.trim();
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), raw),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => authority.to_string(),
    };
    redact_url(&format!("{scheme}{authority}{tail}"))
}

/// Drops any query string, which may carry a key (`?apikey=`), from a URL.
pub fn redact_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

/// A request that got no answer. `url` is the one to show (query dropped):
/// reqwest's own message names the full URL, whose query may carry a key
/// (`?apikey=`), so it is taken off the error before any of it is formatted.
pub fn transport_error(url: &str, e: reqwest::Error, timeout: Duration) -> DriverError {
    let e = e.without_url();
    let chain = {
        let mut parts = vec![e.to_string()];
        let mut src = e.source();
        while let Some(s) = src {
            parts.push(s.to_string());
            src = s.source();
        }
        parts.join(": ")
    };
    let lower = chain.to_lowercase();
    let io_kind = {
        let mut src = e.source();
        let mut kind = None;
        while let Some(s) = src {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                kind = Some(io.kind());
            }
            src = s.source();
        }
        kind
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_normalized() {
        assert_eq!(
            normalize_url("http://127.0.0.1:8270/").unwrap(),
            "http://127.0.0.1:8270"
        );
        assert!(normalize_url("127.0.0.1:8270").is_err());
        assert!(normalize_url("ftp://x").is_err());
        assert!(normalize_url("https://u:p@x").is_err());
        for raw in [
            "https://admin:pa55word@gw.example/x",
            "https://admin:pa55 word@gw.example",
            "ftp://admin:pa55word@gw.example",
            "admin:pa55word@gw.example?k=v",
        ] {
            let e = normalize_url(raw).unwrap_err().to_string();
            assert!(!e.contains("pa55") && !e.contains("admin"), "{e}");
            let shown = display_url(raw);
            assert!(
                !shown.contains("pa55") && !shown.contains("admin"),
                "{shown}"
            );
            assert!(shown.contains("gw.example"), "{shown}");
        }
        assert_eq!(display_url("https://gw.example/a/"), "https://gw.example/a");
        assert_eq!(
            display_url("https://u@gw.example/p?apikey=s"),
            "https://…@gw.example/p?…"
        );
        assert_eq!(redact_url("http://x/a?apikey=s"), "http://x/a?…");
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
}

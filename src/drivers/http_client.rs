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

/// The first 200 characters of a body, for error messages.
pub fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push('…');
    }
    s.replace(['\n', '\r'], " ")
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

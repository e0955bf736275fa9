//! The enforcing reverse proxy: a request with a valid bearer token that has
//! the route's scopes goes to the upstream, bodies streamed both ways; any
//! other gets the RFC 6750 answer. Every decision goes to the audit trail.
//!
//! The hot path: one indexed read of the token by the hash of its secret per
//! request, so a revoke committed by any process (the admin API, or `tok
//! revoke` on the same store) refuses the very next request. Tokens with a use
//! limit spend their use in one conditional UPDATE, which keeps limits exact
//! across processes; that is their only synchronous write. Use counts of other
//! tokens, last-used times and audit entries are written in batches by the
//! audit writer, off the request path.

use super::audit_writer::AuditSink;
use super::path::{audit_path, canonical_path, encode_path, Refused};
use super::routes::Routes;
use super::state::Pool;
use crate::secret::Secret;
use crate::store::audit::{Decision, Entry, Event};
use crate::store::{Admission, Spend, StoreError};
use axum::body::Body;
use axum::extract::{ConnectInfo, State as AxState};
use axum::http::{
    header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode,
};
use chrono::Utc;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Headers that describe one hop and are never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub const TOKEN_ID_HEADER: &str = "x-tok-token-id";
pub const SCOPES_HEADER: &str = "x-tok-scopes";

pub struct Proxy {
    pub pool: Arc<Pool>,
    pub routes: Routes,
    /// Base URL of the default upstream, without a trailing slash.
    pub upstream: String,
    pub client: reqwest::Client,
    pub audit: AuditSink,
}

/// Settings for the upstream client.
pub fn upstream_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .read_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .build()
}

pub fn router(proxy: Arc<Proxy>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(proxy)
}

/// Why a request was refused, and how to say so.
struct Deny {
    status: StatusCode,
    challenge: String,
    code: &'static str,
    message: String,
}

impl Deny {
    fn missing() -> Deny {
        Deny {
            status: StatusCode::UNAUTHORIZED,
            challenge: "Bearer realm=\"tok\"".into(),
            code: "missing_token",
            message: "this endpoint needs `Authorization: Bearer <token>`".into(),
        }
    }
    fn invalid(why: &str) -> Deny {
        Deny {
            status: StatusCode::UNAUTHORIZED,
            challenge: format!(
                "Bearer realm=\"tok\", error=\"invalid_token\", error_description=\"{why}\""
            ),
            code: "invalid_token",
            message: why.to_string(),
        }
    }
    fn scope(missing: &[String]) -> Deny {
        let needed = missing.join(" ");
        Deny {
            status: StatusCode::FORBIDDEN,
            challenge: format!(
                "Bearer realm=\"tok\", error=\"insufficient_scope\", scope=\"{needed}\""
            ),
            code: "insufficient_scope",
            message: format!("the token lacks the scope {needed}"),
        }
    }
    fn response(&self) -> Response<Body> {
        let mut r = json_response(self.status, self.code, &self.message);
        if let Ok(v) = HeaderValue::from_str(&self.challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

pub fn json_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The bearer secret of a request: Ok(None) when there is no Authorization
/// header or it is not Bearer; Err when it is Bearer but empty.
fn bearer(headers: &HeaderMap) -> Result<Option<Secret>, ()> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| ())?;
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let t = rest.trim();
    if t.is_empty() {
        return Err(());
    }
    Ok(Some(Secret::new(t)))
}

impl Proxy {
    /// Checks a secret and the scopes `needed`; spends a use of a use-limited
    /// token only when the request is let through.
    async fn check(&self, secret: Secret, needed: Vec<String>) -> Result<Admission, StoreError> {
        let now = Utc::now();
        self.pool
            .run(move |s| {
                s.admit(&secret, now, Spend::Limited, |t| {
                    needed.iter().all(|n| t.scopes.contains(n))
                })
            })
            .await
    }
}

/// A request refused before any token is looked at: status, code, message.
type Refusal = (StatusCode, &'static str, &'static str);

fn refused_path(why: Refused) -> Refusal {
    (StatusCode::BAD_REQUEST, "invalid_request", why.message())
}

/// What the proxy refuses whatever the token: a method that is not forwarded
/// (CONNECT tunnels past the routes, TRACE echoes headers back), and requests
/// whose meaning depends on which of two headers a server reads (two
/// `Authorization` headers, no `Host` or two; RFC 9110 7.2, RFC 9112 3.2).
fn check_request(method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    if method == Method::CONNECT || method == Method::TRACE {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "the proxy does not forward CONNECT or TRACE",
        ));
    }
    if headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        return Err((
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request has more than one Authorization header; send one",
        ));
    }
    if headers.get_all(header::HOST).iter().count() != 1 {
        return Err((
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request needs exactly one Host header",
        ));
    }
    Ok(())
}

/// Headers a client may send that the upstream must not believe: what the
/// proxy says about the request (`X-Tok-*`, forwarding headers) is the
/// proxy's alone, and the rewrite headers some frameworks honour
/// (`X-Original-URL`, `X-Rewrite-URL`, `X-Forwarded-Prefix`) would route the
/// upstream by a path the proxy never checked.
fn client_may_not_send(name: &str) -> bool {
    name.starts_with("x-tok-")
        || matches!(
            name,
            "forwarded"
                | "x-real-ip"
                | "x-forwarded-for"
                | "x-forwarded-proto"
                | "x-forwarded-host"
                | "x-forwarded-prefix"
                | "x-original-url"
                | "x-rewrite-url"
        )
}

async fn handle(
    AxState(p): AxState<Arc<Proxy>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let mut entry = Entry::new(Event::Request, Utc::now());
    entry.method = Some(method.to_string());
    entry.client = Some(client.ip().to_string());
    let checked = check_request(&method, req.headers())
        .and_then(|()| canonical_path(req.uri().path()).map_err(refused_path));
    let path = match checked {
        Ok(path) => path,
        Err((status, code, why)) => {
            entry.path = Some(audit_path(req.uri().path()));
            entry.decision = Some(Decision::Deny);
            entry.reason = Some(why.into());
            p.audit.entry(entry).await;
            return json_response(status, code, why);
        }
    };
    entry.path = Some(audit_path(&path));
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{}?{q}", encode_path(&path)),
        None => encode_path(&path),
    };

    let route = p.routes.find(method.as_str(), &path).cloned();
    let needed = route.as_ref().map(|r| r.scopes.clone()).unwrap_or_default();
    let verdict = match bearer(req.headers()) {
        Ok(None) => Err(Deny::missing()),
        Err(()) => Err(Deny::invalid("malformed token")),
        Ok(Some(secret)) => match p.check(secret, needed.clone()).await {
            Ok(Admission::Admitted(t)) => Ok(t),
            Ok(Admission::Refused(r)) => Err(Deny::invalid(r.as_str())),
            Ok(Admission::Forbidden(t)) => {
                entry.token_id = Some(t.id.clone());
                let missing: Vec<String> = needed
                    .iter()
                    .filter(|n| !t.scopes.contains(n))
                    .cloned()
                    .collect();
                Err(Deny::scope(&missing))
            }
            Err(e) => {
                tracing::error!(error = %e, "token check failed");
                entry.decision = Some(Decision::Deny);
                entry.reason = Some("store error".into());
                entry.latency_ms = Some(started.elapsed().as_millis() as u64);
                p.audit.entry(entry).await;
                return json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the token store is not available; try again",
                );
            }
        },
    };
    let token = match verdict {
        Ok(t) => t,
        Err(d) => {
            entry.decision = Some(Decision::Deny);
            entry.reason = Some(d.message.clone());
            entry.latency_ms = Some(started.elapsed().as_millis() as u64);
            p.audit.entry(entry).await;
            return d.response();
        }
    };
    entry.token_id = Some(token.id.clone());
    entry.decision = Some(Decision::Allow);
    if token.max_uses.is_none() {
        p.audit.used(token.id.clone(), entry.at).await;
    }

    let base = route
        .as_ref()
        .and_then(|r| r.upstream.clone())
        .unwrap_or_else(|| p.upstream.clone());
    let url = format!("{base}{path_and_query}");
    let (parts, body) = req.into_parts();
    let mut headers = forwardable(&parts.headers);
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::HOST);
    let strip: Vec<HeaderName> = headers
        .keys()
        .filter(|k| client_may_not_send(k.as_str()))
        .cloned()
        .collect();
    for k in strip {
        headers.remove(k);
    }
    if let Ok(v) = HeaderValue::from_str(&token.id) {
        headers.insert(TOKEN_ID_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&token.scopes.join(" ")) {
        headers.insert(SCOPES_HEADER, v);
    }
    // The client's own X-Forwarded-For is replaced, not appended to: the
    // upstream gets the one address the proxy saw.
    if let Ok(v) = HeaderValue::from_str(&client.ip().to_string()) {
        headers.insert("x-forwarded-for", v);
    }
    if let Some(host) = parts.headers.get(header::HOST) {
        headers.insert("x-forwarded-host", host.clone());
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    let body_failed = Arc::new(AtomicBool::new(false));
    let upstream = p
        .client
        .request(parts.method, &url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(client_body(body, &body_failed)))
        .send()
        .await;
    let resp = match upstream {
        Ok(r) => r,
        Err(e) => {
            let (status, code, message) = if body_failed.load(Ordering::Relaxed) {
                // The client's body broke off or was malformed (bad chunked
                // framing): the client's fault, not the upstream's.
                (
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the request body is malformed or was cut off".to_string(),
                )
            } else if e.is_timeout() {
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    format!("the upstream {base} did not answer in time"),
                )
            } else {
                (
                    StatusCode::BAD_GATEWAY,
                    "upstream_unavailable",
                    format!("the upstream {base} could not be reached"),
                )
            };
            // reqwest's message names the URL with its query, which may hold a
            // credential (`?access_token=`).
            let e = e.without_url();
            tracing::warn!(upstream = %base, error = %e, "upstream failed");
            if status != StatusCode::BAD_REQUEST {
                entry.upstream_status = Some(status.as_u16());
            }
            entry.reason = Some(message.clone());
            entry.latency_ms = Some(started.elapsed().as_millis() as u64);
            p.audit.entry(entry).await;
            return json_response(status, code, &message);
        }
    };
    entry.upstream_status = Some(resp.status().as_u16());
    entry.latency_ms = Some(started.elapsed().as_millis() as u64);
    p.audit.entry(entry).await;

    let mut out = Response::new(Body::empty());
    *out.status_mut() = resp.status();
    *out.headers_mut() = forwardable(resp.headers());
    *out.body_mut() = Body::from_stream(resp.bytes_stream());
    out
}

/// The client's body as a stream for the upstream, noting in `failed` when
/// reading it fails, so that the failure is answered as the client's.
fn client_body(
    body: Body,
    failed: &Arc<AtomicBool>,
) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> {
    use futures_util::TryStreamExt;
    let failed = Arc::clone(failed);
    body.into_data_stream()
        .inspect_err(move |_| failed.store(true, Ordering::Relaxed))
}

/// The headers of `h` that may cross this hop.
fn forwardable(h: &HeaderMap) -> HeaderMap {
    // Connection may name more hop-by-hop headers.
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    let mut out = HeaderMap::with_capacity(h.len());
    for (k, v) in h {
        let name = k.as_str();
        if HOP_BY_HOP.contains(&name) || named.iter().any(|n| n == name) {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert!(matches!(bearer(&h), Ok(None)));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(matches!(bearer(&h), Ok(None)));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert!(bearer(&h).is_err());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer tok_x"),
        );
        assert_eq!(bearer(&h).unwrap().unwrap().expose(), "tok_x");
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-custom"),
        );
        h.insert("x-custom", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("5"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        let f = forwardable(&h);
        assert!(f.get("x-keep").is_some());
        assert!(f.get("x-custom").is_none() && f.get("keep-alive").is_none());
        assert!(f.get(header::CONNECTION).is_none());
    }
}

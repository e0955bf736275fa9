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
use super::metrics::{Listener, Outcome, StoreOp, METRICS};
use super::request_id::{self, RequestId};
use super::routes::Routes;
use super::state::Pool;
use crate::secret::Secret;
use crate::store::audit::{Decision, Entry, Event};
use crate::store::{Admission, Spend, StoreError};
use axum::body::Body;
use axum::extract::{ConnectInfo, State as AxState};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use chrono::Utc;
use std::net::SocketAddr;
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
    /// Replaced whole on SIGHUP; a request keeps the rules it started with.
    pub routes: arc_swap::ArcSwap<Routes>,
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
    fn outcome(&self, refusal: Option<crate::store::Refusal>) -> Outcome {
        use crate::store::Refusal;
        match (self.code, refusal) {
            (_, Some(Refusal::Unknown)) => Outcome::UnknownToken,
            (_, Some(Refusal::Expired)) => Outcome::Expired,
            (_, Some(Refusal::Revoked)) => Outcome::Revoked,
            (_, Some(Refusal::Exhausted)) => Outcome::UsedUp,
            ("missing_token", None) => Outcome::MissingToken,
            ("insufficient_scope", None) => Outcome::InsufficientScope,
            _ => Outcome::MalformedToken,
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
        let started = Instant::now();
        let admission = self
            .pool
            .run(move |s| {
                s.admit(&secret, now, Spend::Limited, |t| {
                    needed.iter().all(|n| t.scopes.contains(n))
                })
            })
            .await;
        METRICS.store(StoreOp::Admit).observe(started.elapsed());
        admission
    }
}

/// The path a request is routed and forwarded by: percent-decoded, with `.`,
/// `..` and empty segments resolved, so that `/public/../admin` and
/// `/%61dmin` meet the rules for `/admin`. None when it cannot be made safe
/// (an encoded `/` or `\`, a NUL, or `..` above the root).
pub fn canonical_path(raw: &str) -> Option<String> {
    let mut segs: Vec<String> = Vec::new();
    for seg in raw.split('/').skip(1) {
        let decoded = percent_encoding::percent_decode_str(seg)
            .decode_utf8()
            .ok()?;
        if decoded.contains(['/', '\\', '\0']) {
            return None;
        }
        match &*decoded {
            "" | "." => {}
            ".." => {
                segs.pop()?;
            }
            s => segs.push(s.to_string()),
        }
    }
    let trailing = raw.len() > 1 && raw.ends_with('/') && !segs.is_empty();
    let mut path = format!("/{}", segs.join("/"));
    if trailing {
        path.push('/');
    }
    Some(path)
}

/// The canonical path, encoded again for the upstream's request line.
fn encode_path(path: &str) -> String {
    /// What a path segment may hold unencoded (RFC 3986 pchar, minus `/`).
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}')
        .add(b'%')
        .add(b'/')
        .add(b'\\')
        .add(b'^')
        .add(b'|')
        .add(b'[')
        .add(b']');
    path.split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Counts and times every answer, and gives it the request's id.
async fn handle(
    AxState(p): AxState<Arc<Proxy>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    let started = Instant::now();
    let id = RequestId::next();
    let header = id.header_value();
    let (mut resp, outcome) = decide(&p, client, req, id, started).await;
    METRICS.request(Listener::Proxy, outcome);
    METRICS.proxy_request.observe(started.elapsed());
    resp.headers_mut().insert(request_id::HEADER, header);
    resp
}

async fn decide(
    p: &Proxy,
    client: SocketAddr,
    req: Request<Body>,
    id: RequestId,
    started: Instant,
) -> (Response<Body>, Outcome) {
    let method = req.method().clone();
    let mut entry = Entry::new(Event::Request, Utc::now());
    entry.request_id = Some(id.0.clone());
    entry.method = Some(method.to_string());
    entry.client = Some(client.ip().to_string());
    let Some(path) = canonical_path(req.uri().path()) else {
        entry.path = Some(req.uri().path().chars().take(512).collect());
        entry.decision = Some(Decision::Deny);
        entry.reason = Some("path cannot be made canonical".into());
        p.audit.entry(entry).await;
        let r = json_response(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the path has an encoded `/`, `\\` or NUL, or `..` above the root",
        );
        return (r, Outcome::BadPath);
    };
    entry.path = Some(path.clone());
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{}?{q}", encode_path(&path)),
        None => encode_path(&path),
    };

    let route = p.routes.load().find(method.as_str(), &path).cloned();
    let needed = route.as_ref().map(|r| r.scopes.clone()).unwrap_or_default();
    let verdict = match bearer(req.headers()) {
        Ok(None) => Err((Deny::missing(), None)),
        Err(()) => Err((Deny::invalid("malformed token"), None)),
        Ok(Some(secret)) => match p.check(secret, needed.clone()).await {
            Ok(Admission::Admitted(t)) => Ok(t),
            Ok(Admission::Refused(r)) => Err((Deny::invalid(r.as_str()), Some(r))),
            Ok(Admission::Forbidden(t)) => {
                entry.token_id = Some(t.id.clone());
                let missing: Vec<String> = needed
                    .iter()
                    .filter(|n| !t.scopes.contains(n))
                    .cloned()
                    .collect();
                Err((Deny::scope(&missing), None))
            }
            Err(e) => {
                METRICS.store_errors.inc();
                tracing::error!(error = %e, request_id = %id, "token check failed");
                entry.decision = Some(Decision::Deny);
                entry.reason = Some("store error".into());
                entry.latency_ms = Some(started.elapsed().as_millis() as u64);
                p.audit.entry(entry).await;
                let r = json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the token store is not available; try again",
                );
                return (r, Outcome::StoreError);
            }
        },
    };
    let token = match verdict {
        Ok(t) => t,
        Err((d, refusal)) => {
            entry.decision = Some(Decision::Deny);
            entry.reason = Some(d.message.clone());
            entry.latency_ms = Some(started.elapsed().as_millis() as u64);
            p.audit.entry(entry).await;
            tracing::debug!(request_id = %id, reason = d.code, "proxy request denied");
            return (d.response(), d.outcome(refusal));
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
    // What the proxy says about the request is the proxy's alone: a client's
    // own X-Tok-* or forwarding headers never reach the upstream.
    let strip: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k.starts_with("x-tok-")
                || matches!(
                    k,
                    "forwarded" | "x-real-ip" | "x-forwarded-proto" | "x-forwarded-host"
                )
        })
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
    headers.insert(request_id::HEADER, id.header_value());
    let forwarded_for = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) => format!("{prev}, {}", client.ip()),
        None => client.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    if let Some(host) = parts.headers.get(header::HOST) {
        headers.insert("x-forwarded-host", host.clone());
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    let sent = Instant::now();
    let upstream = p
        .client
        .request(parts.method, &url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    METRICS.upstream.observe(sent.elapsed());
    let resp = match upstream {
        Ok(r) => r,
        Err(e) => {
            let (status, code, message, outcome) = if e.is_timeout() {
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    format!("the upstream {base} did not answer in time"),
                    Outcome::UpstreamTimeout,
                )
            } else {
                (
                    StatusCode::BAD_GATEWAY,
                    "upstream_unavailable",
                    format!("the upstream {base} could not be reached"),
                    Outcome::UpstreamUnavailable,
                )
            };
            tracing::warn!(upstream = %base, request_id = %id, error = %e.without_url(), "upstream failed");
            entry.upstream_status = Some(status.as_u16());
            entry.reason = Some(message.clone());
            entry.latency_ms = Some(started.elapsed().as_millis() as u64);
            p.audit.entry(entry).await;
            return (json_response(status, code, &message), outcome);
        }
    };
    entry.upstream_status = Some(resp.status().as_u16());
    entry.latency_ms = Some(started.elapsed().as_millis() as u64);
    tracing::debug!(request_id = %id, status = resp.status().as_u16(), "proxy request allowed");
    p.audit.entry(entry).await;

    let mut out = Response::new(Body::empty());
    *out.status_mut() = resp.status();
    *out.headers_mut() = forwardable(resp.headers());
    *out.body_mut() = Body::from_stream(resp.bytes_stream());
    (out, Outcome::Ok)
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
    fn paths_are_made_canonical_before_routing() {
        assert_eq!(canonical_path("/admin/x").as_deref(), Some("/admin/x"));
        assert_eq!(
            canonical_path("/public/../admin/x").as_deref(),
            Some("/admin/x")
        );
        assert_eq!(
            canonical_path("/public/%2e%2e/admin/x").as_deref(),
            Some("/admin/x")
        );
        assert_eq!(canonical_path("/%61dmin/x").as_deref(), Some("/admin/x"));
        assert_eq!(
            canonical_path("//admin//x/./").as_deref(),
            Some("/admin/x/")
        );
        assert_eq!(canonical_path("/").as_deref(), Some("/"));
        assert_eq!(canonical_path("/a%20b").as_deref(), Some("/a b"));
        assert_eq!(canonical_path("/../etc"), None);
        assert_eq!(canonical_path("/a%2Fb"), None);
        assert_eq!(canonical_path("/a%5Cb"), None);
        assert_eq!(canonical_path("/a%00"), None);
        assert_eq!(encode_path("/a b/c?d"), "/a%20b/c%3Fd");
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

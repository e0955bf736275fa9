//! The enforcing reverse proxy: a request with a valid bearer token that has
//! the route's scopes goes to the upstream, bodies streamed both ways; any
//! other gets the RFC 6750 answer. Every decision goes to the audit trail.
//!
//! The hot path: admission (`admission.rs`) answers from its cache for a token
//! seen before, after one cheap check that no other process committed a change
//! since; a token with a use limit spends its use in the store. Use counts of
//! other tokens, last-used times and audit entries are written in batches by
//! the audit writer, off the request path; a request takes its room in the
//! audit channel first (see `audit_writer.rs`). The upstream is reached through
//! hyper-util's pooled client: kept-alive connections, nothing set up per
//! request.
//!
//! A request goes: audit slot -> canonical path -> route -> [`authorize`] ->
//! forward -> [`record`]. Every outcome, allowed or refused, ends in `record`.

use super::admission::{Admitter, Verdict};
use super::audit_writer::{AuditSink, Slot};
use super::routes::Routes;
use crate::model::Token;
use crate::secret::Secret;
use crate::store::audit::{Decision, Entry, Event};
use axum::body::Body;
use axum::extract::{ConnectInfo, State as AxState};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use chrono::Utc;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
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
    pub admission: Arc<Admitter>,
    pub routes: Routes,
    /// Base URL of the default upstream, without a trailing slash.
    pub upstream: String,
    pub client: UpstreamClient,
    /// How long the upstream may take to answer with its status and headers.
    pub upstream_timeout: Duration,
    pub audit: AuditSink,
}

pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// The pooled upstream client: HTTP/1.1 with keep-alive, plain or TLS (verified
/// against the system's roots), redirects passed back to the client as they are.
pub fn upstream_client(timeout: Duration) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(timeout.min(Duration::from_secs(10))));
    http.set_nodelay(true);
    http.enforce_http(false);
    let tls = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b,
        Err(e) => {
            // Plain upstreams work on; an https one fails its handshake (502).
            tracing::debug!(error = %e, "no system root certificates; https upstreams will fail");
            let roots = tokio_rustls::rustls::RootCertStore::empty();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                tokio_rustls::rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        }
    };
    let connector = tls.https_or_http().enable_http1().wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(256)
        .build(connector)
}

pub fn router(proxy: Arc<Proxy>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(proxy)
}

/// Why a request was refused, and how to say so.
pub struct Deny {
    status: StatusCode,
    challenge: String,
    code: &'static str,
    message: String,
    /// Seconds for `Retry-After` (503).
    retry_after: Option<u64>,
}

impl Deny {
    fn missing() -> Deny {
        Deny {
            status: StatusCode::UNAUTHORIZED,
            challenge: "Bearer realm=\"tok\"".into(),
            code: "missing_token",
            message: "this endpoint needs `Authorization: Bearer <token>`".into(),
            retry_after: None,
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
            retry_after: None,
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
            retry_after: None,
        }
    }
    fn unavailable(retry_after: std::time::Duration) -> Deny {
        Deny {
            status: StatusCode::SERVICE_UNAVAILABLE,
            challenge: String::new(),
            code: "unavailable",
            message: "the token store is not available; nothing was decided, try again".into(),
            retry_after: Some(retry_after.as_secs().max(1)),
        }
    }
    pub fn response(&self) -> Response<Body> {
        let mut r = json_response(self.status, self.code, &self.message);
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if !self.challenge.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&self.challenge) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
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

/// The decision for a request's headers against the scopes `needed`, shared
/// by the proxy and the forward-auth endpoint. Fills the entry's token id,
/// decision and reason; spends a use of a use-limited token only when it lets
/// the request through.
pub async fn authorize(
    admission: &Admitter,
    headers: &HeaderMap,
    needed: &[String],
    entry: &mut Entry,
) -> Result<Arc<Token>, Deny> {
    let verdict = match bearer(headers) {
        Ok(None) => Err(Deny::missing()),
        Err(()) => Err(Deny::invalid("malformed token")),
        Ok(Some(secret)) => match admission.admit(secret, needed, Utc::now()).await {
            Ok(Verdict::Admitted(t)) => Ok(t),
            Ok(Verdict::Refused(r)) => Err(Deny::invalid(r.as_str())),
            Ok(Verdict::Forbidden(t)) => {
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
                return Err(Deny::unavailable(
                    e.retry_after().unwrap_or(std::time::Duration::from_secs(1)),
                ));
            }
        },
    };
    match &verdict {
        Ok(t) => {
            entry.token_id = Some(t.id.clone());
            entry.decision = Some(Decision::Allow);
        }
        Err(d) => {
            entry.decision = Some(Decision::Deny);
            entry.reason = Some(d.message.clone());
        }
    }
    verdict
}

/// Where every proxied request ends: its audit entry, with the time it took.
/// (Outcome counters belong here too: `entry.decision` and `entry.reason` say
/// what happened.) `counted_use`: an allowed request of a token without a use
/// limit, whose use is counted in the writer's batch.
pub fn record(slot: Slot<'_>, mut entry: Entry, started: Instant, counted_use: bool) {
    entry.latency_ms = Some(started.elapsed().as_millis() as u64);
    if counted_use {
        slot.entry_and_use(entry);
    } else {
        slot.entry(entry);
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

async fn handle(
    AxState(p): AxState<Arc<Proxy>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    let started = Instant::now();
    // Room for this request's audit entry comes first: a request that could
    // not be recorded is not served.
    let Some(slot) = p.audit.slot().await else {
        tracing::error!(client = %client.ip(), method = %req.method(), "the audit trail is behind; refused a proxy request with 503");
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the audit trail cannot keep up; try again",
        );
    };
    let method = req.method().clone();
    let mut entry = Entry::new(Event::Request, Utc::now());
    entry.method = Some(method.to_string());
    entry.client = Some(client.ip().to_string());
    let Some(path) = canonical_path(req.uri().path()) else {
        entry.path = Some(req.uri().path().chars().take(512).collect());
        entry.decision = Some(Decision::Deny);
        entry.reason = Some("path cannot be made canonical".into());
        record(slot, entry, started, false);
        return json_response(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the path has an encoded `/`, `\\` or NUL, or `..` above the root",
        );
    };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{}?{q}", encode_path(&path)),
        None => encode_path(&path),
    };
    let route = p.routes.find(method.as_str(), &path);
    entry.path = Some(path);
    let needed: &[String] = route.map(|r| r.scopes.as_slice()).unwrap_or_default();
    let token = match authorize(&p.admission, req.headers(), needed, &mut entry).await {
        Ok(t) => t,
        Err(d) => {
            record(slot, entry, started, false);
            return d.response();
        }
    };
    let counted_use = token.max_uses.is_none();

    let base = route
        .and_then(|r| r.upstream.as_deref())
        .unwrap_or(&p.upstream);
    let (parts, body) = req.into_parts();
    let headers = upstream_headers(&parts.headers, &token, client);
    let fail = |status: StatusCode, code: &str, message: String, entry: Entry, slot| {
        tracing::warn!(upstream = %base, %message, "upstream failed");
        let mut entry: Entry = entry;
        entry.upstream_status = Some(status.as_u16());
        entry.reason = Some(message.clone());
        record(slot, entry, started, counted_use);
        json_response(status, code, &message)
    };
    let uri: Uri = match format!("{base}{path_and_query}").parse() {
        Ok(u) => u,
        Err(e) => {
            return fail(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                format!("the upstream URL {base}{path_and_query} is not valid: {e}"),
                entry,
                slot,
            )
        }
    };
    let mut upstream_req = Request::new(body);
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = headers;
    let resp = match tokio::time::timeout(p.upstream_timeout, p.client.request(upstream_req)).await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(error = ?e, "upstream error");
            return fail(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                format!("the upstream {base} could not be reached"),
                entry,
                slot,
            );
        }
        Err(_) => {
            return fail(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                format!("the upstream {base} did not answer in time"),
                entry,
                slot,
            )
        }
    };
    entry.upstream_status = Some(resp.status().as_u16());
    record(slot, entry, started, counted_use);

    let (mut parts, body) = resp.into_parts();
    parts.headers = forwardable(&parts.headers);
    Response::from_parts(parts, Body::new(body))
}

/// The headers the upstream gets: the client's, minus hop-by-hop ones, the
/// secret and anything that would speak for the proxy; plus the token's
/// identity and the forwarding headers.
fn upstream_headers(client_headers: &HeaderMap, token: &Token, client: SocketAddr) -> HeaderMap {
    let mut headers = forwardable(client_headers);
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
    let forwarded_for = match client_headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) => format!("{prev}, {}", client.ip()),
        None => client.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    if let Some(host) = client_headers.get(header::HOST) {
        headers.insert("x-forwarded-host", host.clone());
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    headers
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

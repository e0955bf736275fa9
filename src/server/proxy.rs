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
//! A request goes: audit slot -> [`checked_route`] (request rules, canonical
//! path, route) -> [`authorize`] -> forward -> [`record`]. Every outcome,
//! allowed or refused, ends in `record`. The forward-auth endpoint takes the
//! same steps but the forwarding.

use super::admission::{Admitter, Verdict};
use super::audit_writer::{AuditSink, Slot};
use super::dpop::{self, Scheme, Target};
use super::limiter::{Fields, Grant};
use super::metrics::{Listener, Outcome, METRICS};
use super::path::{audit_path, canonical_path, encode_path, Refused};
use super::request_id::{self, RequestId};
use super::routes::{Route, Routes};
use crate::limits::Over;
use crate::model::Token;
use crate::secret::Secret;
use crate::store::audit::{Decision, Entry, Event};
use axum::body::Body;
use axum::extract::{ConnectInfo, State as AxState};
use axum::http::{
    header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri,
};
use chrono::Utc;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::net::{IpAddr, SocketAddr};
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
    pub admission: Arc<Admitter>,
    /// Replaced whole on SIGHUP; a request keeps the rules it started with.
    /// Shared with the forward-auth endpoint, so a reload applies to both.
    pub routes: Arc<arc_swap::ArcSwap<Routes>>,
    /// Base URL of the default upstream, without a trailing slash.
    pub upstream: String,
    pub client: UpstreamClient,
    /// How long the upstream may take to answer with its status and headers.
    pub upstream_timeout: Duration,
    pub audit: AuditSink,
    /// `--trusted-proxy`: hops whose `X-Forwarded-For` names the client.
    pub trusted: Vec<ipnet::IpNet>,
    /// Whether clients reach the proxy over TLS (the scheme DPoP proofs name).
    pub tls: bool,
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
    /// Seconds for `Retry-After` when the store is unavailable (503).
    retry_after: Option<u64>,
    /// Over a rate or quota: `Retry-After` and the draft's fields.
    limit: Option<(u64, Fields)>,
    /// What the metrics count it as.
    pub outcome: Outcome,
}

impl Deny {
    fn missing() -> Deny {
        Deny {
            status: StatusCode::UNAUTHORIZED,
            challenge: "Bearer realm=\"tok\"".into(),
            code: "missing_token",
            message: "this endpoint needs `Authorization: Bearer <token>`".into(),
            retry_after: None,
            limit: None,
            outcome: Outcome::MissingToken,
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
            limit: None,
            outcome: Outcome::MalformedToken,
        }
    }
    /// A DPoP refusal (RFC 9449 §7.1): `error` is `invalid_dpop_proof` or
    /// `invalid_token`.
    fn dpop(error: &str, why: &str) -> Deny {
        let shown: String = why.chars().filter(|c| *c != '"' && *c != '\\').collect();
        Deny {
            status: StatusCode::UNAUTHORIZED,
            challenge: format!(
                "DPoP algs=\"{}\", error=\"{error}\", error_description=\"{shown}\"",
                crate::dpop::ALGS_CHALLENGE
            ),
            code: if error == "invalid_token" {
                "invalid_token"
            } else {
                "invalid_dpop_proof"
            },
            message: why.to_string(),
            retry_after: None,
            limit: None,
            outcome: Outcome::BadProof,
        }
    }
    fn refused(r: crate::store::Refusal) -> Deny {
        use crate::store::Refusal;
        Deny {
            outcome: match r {
                Refusal::Unknown => Outcome::UnknownToken,
                Refusal::Expired => Outcome::Expired,
                Refusal::Revoked => Outcome::Revoked,
                Refusal::Exhausted => Outcome::UsedUp,
            },
            ..Deny::invalid(r.as_str())
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
            limit: None,
            outcome: Outcome::InsufficientScope,
        }
    }
    fn unavailable(retry_after: std::time::Duration) -> Deny {
        Deny {
            status: StatusCode::SERVICE_UNAVAILABLE,
            challenge: String::new(),
            code: "unavailable",
            message: "the token store is not available; nothing was decided, try again".into(),
            retry_after: Some(retry_after.as_secs().max(1)),
            limit: None,
            outcome: Outcome::StoreError,
        }
    }
    fn limited(over: Over, fields: Fields) -> Deny {
        let (code, message, retry_after) = match over {
            Over::Rate { retry_after } => (
                "rate_limited",
                "the token's rate limit is exceeded".to_string(),
                retry_after,
            ),
            Over::Quota { retry_after } => (
                "quota_exhausted",
                "the token's quota for this period is used up".to_string(),
                retry_after,
            ),
        };
        Deny {
            status: StatusCode::TOO_MANY_REQUESTS,
            challenge: String::new(),
            code,
            message,
            retry_after: None,
            limit: Some((retry_after, fields)),
            outcome: Outcome::RateLimited,
        }
    }
    /// Over a rate or a quota: audited aggregated, not one entry each.
    pub fn is_limit(&self) -> bool {
        self.limit.is_some()
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
        if let Some((retry_after, fields)) = &self.limit {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            limit_fields(r.headers_mut(), fields);
        }
        r
    }
}

/// The `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers-08).
pub fn limit_fields(h: &mut HeaderMap, f: &Fields) {
    if let (Ok(p), Ok(s)) = (
        HeaderValue::from_str(&f.policy),
        HeaderValue::from_str(&f.state),
    ) {
        h.insert(HeaderName::from_static("ratelimit-policy"), p);
        h.insert(HeaderName::from_static("ratelimit"), s);
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

/// The token of a request and its scheme: Ok(None) when there is no
/// Authorization header or it is neither Bearer nor DPoP; Err when it is one
/// of them but empty.
fn bearer(headers: &HeaderMap) -> Result<Option<(Scheme, Secret)>, ()> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| ())?;
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Ok(None);
    };
    let t = rest.trim();
    if t.is_empty() {
        return Err(());
    }
    Ok(Some((scheme, Secret::new(t))))
}

/// The decision for a request's headers against the scopes `needed`, shared
/// by the proxy and the forward-auth endpoint. Fills the entry's token id,
/// decision and reason; spends a use of a use-limited token only when it lets
/// the request through. A request over its token's rate or quota is refused
/// with 429 (`Deny::is_limit`), its entry filled all the same.
pub async fn authorize(
    admission: &Admitter,
    headers: &HeaderMap,
    target: &Target<'_>,
    needed: &[String],
    client: IpAddr,
    entry: &mut Entry,
) -> Result<(Arc<Token>, Grant), Deny> {
    // Why, for the audit trail, when the answer must not say it.
    let mut why = None;
    let verdict = match bearer(headers) {
        Ok(None) => Err(Deny::missing()),
        Err(()) => Err(Deny::invalid("malformed token")),
        Ok(Some((scheme, secret))) => {
            match checked(admission, headers, target, scheme, secret, needed, client).await {
                Err(Err(e)) => Err(Deny::dpop("invalid_dpop_proof", &e.to_string())),
                Ok(Verdict::Unbound(t, u)) => {
                    entry.token_id = Some(t.id.clone());
                    let error = if u.is_proof() {
                        "invalid_dpop_proof"
                    } else {
                        "invalid_token"
                    };
                    Err(Deny::dpop(error, u.as_str()))
                }
                Ok(Verdict::Admitted(t, g)) => Ok((t, g)),
                Ok(Verdict::Elsewhere(t)) => {
                    entry.token_id = Some(t.id.clone());
                    why = Some(format!(
                        "client address {client} is outside the token's allowed ranges"
                    ));
                    Err(Deny {
                        outcome: Outcome::WrongAddress,
                        ..Deny::invalid("invalid token")
                    })
                }
                Ok(Verdict::Limited(t, over, fields)) => {
                    entry.token_id = Some(t.id.clone());
                    Err(Deny::limited(over, fields))
                }
                Ok(Verdict::Refused(r, id)) => {
                    entry.token_id = id;
                    Err(Deny::refused(r))
                }
                Ok(Verdict::Forbidden(t)) => {
                    entry.token_id = Some(t.id.clone());
                    let missing: Vec<String> = needed
                        .iter()
                        .filter(|n| !t.scopes.contains(n))
                        .cloned()
                        .collect();
                    Err(Deny::scope(&missing))
                }
                Err(Ok(e)) => {
                    tracing::error!(error = %e, "token check failed");
                    entry.decision = Some(Decision::Deny);
                    entry.reason = Some("store error".into());
                    return Err(Deny::unavailable(
                        e.retry_after().unwrap_or(std::time::Duration::from_secs(1)),
                    ));
                }
            }
        }
    };
    match &verdict {
        Ok((t, _)) => {
            entry.token_id = Some(t.id.clone());
            entry.decision = Some(Decision::Allow);
        }
        Err(d) => {
            entry.decision = Some(Decision::Deny);
            entry.reason = Some(why.unwrap_or_else(|| d.message.clone()));
        }
    }
    verdict
}

/// A request's DPoP proof checked (when it is sent as `DPoP`), then its token
/// admitted: Err(Err) for a refused proof, Err(Ok) for a store error.
async fn checked(
    admission: &Admitter,
    headers: &HeaderMap,
    target: &Target<'_>,
    scheme: Scheme,
    secret: Secret,
    needed: &[String],
    client: IpAddr,
) -> Result<Verdict, Result<crate::store::backend::Error, crate::dpop::ProofError>> {
    let now = Utc::now();
    let proof =
        dpop::proof(headers, scheme, secret.expose(), target, now.timestamp()).map_err(Err)?;
    admission
        .admit(secret, needed, client, proof.as_ref(), now)
        .await
        .map_err(Ok)
}

/// What a request to the proxy names for DPoP: the Host it was sent to, on
/// the proxy's own scheme, unless a `--trusted-proxy` hop forwarded it and
/// said which (`X-Forwarded-Proto`, `X-Forwarded-Host`).
fn target<'a>(p: &Proxy, peer: IpAddr, req: &'a Request<Body>) -> Target<'a> {
    let h = req.headers();
    let forwarded = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let via = crate::limits::in_ranges(&p.trusted, peer);
    let scheme = via
        .then(|| forwarded("x-forwarded-proto"))
        .flatten()
        .unwrap_or(if p.tls { "https" } else { "http" });
    let authority = via
        .then(|| forwarded("x-forwarded-host"))
        .flatten()
        .or_else(|| h.get(header::HOST).and_then(|v| v.to_str().ok()))
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    Target {
        method: req.method().as_str(),
        scheme,
        authority,
        path: req.uri().path(),
    }
}

/// Room for a request's audit entry, or the 503 to answer when the writer is
/// too far behind (said in the log too).
pub async fn audit_slot(audit: &AuditSink, client: SocketAddr) -> Result<Slot<'_>, Response<Body>> {
    audit.slot().await.ok_or_else(|| {
        tracing::error!(client = %client.ip(), "the audit trail is behind; refused a request with 503");
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the audit trail cannot keep up; try again",
        )
    })
}

/// Where every proxied request ends: its audit entry, with the time it took.
/// (Outcome counters belong here too: `entry.decision` and `entry.reason` say
/// what happened.) `counted_use`: an allowed request of a token without a use
/// limit, whose use is counted in the writer's batch. `quota_window`: an
/// allowed request of a token with a quota, whose use the batch persists.
pub fn record(
    slot: Slot<'_>,
    mut entry: Entry,
    started: Instant,
    counted_use: bool,
    quota_window: Option<i64>,
) {
    entry.latency_ms = Some(started.elapsed().as_millis() as u64);
    slot.entry_with(entry, counted_use, quota_window);
}

/// The client's address: the socket's peer, unless that peer is a trusted
/// proxy, in which case `X-Forwarded-For` is read right to left, skipping
/// trusted hops, and the first address that is not one is the client, as
/// nginx's realip module does with `real_ip_recursive on`
/// (https://nginx.org/en/docs/http/ngx_http_realip_module.html). A value that
/// is not an address ends the walk at the last trusted hop; when every hop is
/// trusted the leftmost is the client. An untrusted peer's header is ignored,
/// so a client cannot choose its own address.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    if trusted.is_empty() || !crate::limits::in_ranges(trusted, peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !crate::limits::in_ranges(trusted, ip) {
            break;
        }
    }
    client
}

/// A request refused before any token is looked at: status, code, message.
pub type Refusal = (StatusCode, &'static str, &'static str);

/// What a request must pass before any token is looked at, and the route
/// rule it falls under: the method and header rules of [`check_request`],
/// then the canonical path, matched against `routes`. Shared by the proxy
/// and the forward-auth endpoint (which passes the original request's method
/// and path). Fills the entry's path; on a refusal, its decision and reason.
pub fn checked_route<'r>(
    routes: &'r Routes,
    method: &Method,
    headers: &HeaderMap,
    raw_path: &str,
    entry: &mut Entry,
) -> Result<(String, Option<&'r Route>), Refusal> {
    let checked = check_request(method, headers)
        .and_then(|()| canonical_path(raw_path).map_err(refused_path));
    match checked {
        Ok(path) => {
            entry.path = Some(audit_path(&path));
            let route = routes.find(method.as_str(), &path);
            Ok((path, route))
        }
        Err(refusal) => {
            entry.path = Some(audit_path(raw_path));
            entry.decision = Some(Decision::Deny);
            entry.reason = Some(refusal.2.into());
            Err(refusal)
        }
    }
}

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
    // Room for this request's audit entry comes first: a request that could
    // not be recorded is not served.
    let slot = match audit_slot(&p.audit, client).await {
        Ok(slot) => slot,
        Err(refused) => {
            METRICS.audit_refused.inc();
            return (refused, Outcome::AuditUnavailable);
        }
    };
    let method = req.method().clone();
    let mut entry = Entry::new(Event::Request, Utc::now());
    entry.request_id = Some(id.0.clone());
    entry.method = Some(method.to_string());
    let client_ip = client_address(client.ip(), req.headers(), &p.trusted);
    entry.client = Some(client_ip.to_string());
    let routes = p.routes.load();
    let checked = checked_route(
        &routes,
        &method,
        req.headers(),
        req.uri().path(),
        &mut entry,
    );
    let (path, route) = match checked {
        Ok(found) => found,
        Err((status, code, why)) => {
            record(slot, entry, started, false, None);
            return (json_response(status, code, why), Outcome::BadPath);
        }
    };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{}?{q}", encode_path(&path)),
        None => encode_path(&path),
    };
    let needed: &[String] = route.map(|r| r.scopes.as_slice()).unwrap_or_default();
    let (token, grant) = match authorize(
        &p.admission,
        req.headers(),
        &target(p, client.ip(), &req),
        needed,
        client_ip,
        &mut entry,
    )
    .await
    {
        Ok(t) => t,
        Err(d) if d.is_limit() => {
            drop(slot);
            tracing::debug!(request_id = %id, reason = d.code, "proxy request over its limit");
            p.admission.limiter().refused(entry);
            return (d.response(), d.outcome);
        }
        Err(d) => {
            record(slot, entry, started, false, None);
            tracing::debug!(request_id = %id, reason = d.code, "proxy request denied");
            return (d.response(), d.outcome);
        }
    };
    let counted_use = token.max_uses.is_none();
    let quota_window = grant.quota_window;

    let base = route
        .and_then(|r| r.upstream.as_deref())
        .unwrap_or(&p.upstream);
    let (parts, body) = req.into_parts();
    let mut headers = upstream_headers(&parts.headers, &token, client);
    headers.insert(request_id::HEADER, id.header_value());
    let fail = |status: StatusCode, code: &str, message: String, entry: Entry, slot| {
        tracing::warn!(upstream = %base, %message, request_id = %id, "upstream failed");
        let mut entry: Entry = entry;
        entry.upstream_status = Some(status.as_u16());
        entry.reason = Some(message.clone());
        record(slot, entry, started, counted_use, quota_window);
        json_response(status, code, &message)
    };
    let uri: Uri = match format!("{base}{path_and_query}").parse() {
        Ok(u) => u,
        Err(e) => {
            let r = fail(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                // Without the query, which may hold a credential.
                format!(
                    "the upstream URL {base}{} is not valid: {e}",
                    encode_path(&path)
                ),
                entry,
                slot,
            );
            return (r, Outcome::UpstreamUnavailable);
        }
    };
    let body_failed = Arc::new(AtomicBool::new(false));
    let mut upstream_req = Request::new(Body::from_stream(client_body(body, &body_failed)));
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = headers;
    let sent = Instant::now();
    let answer = tokio::time::timeout(p.upstream_timeout, p.client.request(upstream_req)).await;
    METRICS.upstream.observe(sent.elapsed());
    let resp = match answer {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(error = ?e, request_id = %id, "upstream error");
            if body_failed.load(Ordering::Relaxed) {
                // The client's body broke off or was malformed (bad chunked
                // framing): the client's fault, not the upstream's.
                let message = "the request body is malformed or was cut off";
                entry.reason = Some(message.into());
                record(slot, entry, started, counted_use, quota_window);
                return (
                    json_response(StatusCode::BAD_REQUEST, "invalid_request", message),
                    Outcome::BadPath,
                );
            }
            let r = fail(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                format!("the upstream {base} could not be reached"),
                entry,
                slot,
            );
            return (r, Outcome::UpstreamUnavailable);
        }
        Err(_) => {
            let r = fail(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                format!("the upstream {base} did not answer in time"),
                entry,
                slot,
            );
            return (r, Outcome::UpstreamTimeout);
        }
    };
    entry.upstream_status = Some(resp.status().as_u16());
    tracing::debug!(request_id = %id, status = resp.status().as_u16(), "proxy request allowed");
    record(slot, entry, started, counted_use, quota_window);

    let (mut parts, body) = resp.into_parts();
    parts.headers = forwardable(&parts.headers);
    if let Some(f) = &grant.fields {
        limit_fields(&mut parts.headers, f);
    }
    (Response::from_parts(parts, Body::new(body)), Outcome::Ok)
}

/// The headers the upstream gets: the client's, minus hop-by-hop ones, the
/// secret and anything that would speak for the proxy; plus the token's
/// identity and the forwarding headers.
fn upstream_headers(client_headers: &HeaderMap, token: &Token, client: SocketAddr) -> HeaderMap {
    let mut headers = forwardable(client_headers);
    headers.remove(header::AUTHORIZATION);
    headers.remove("dpop");
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
    if let Some(host) = client_headers.get(header::HOST) {
        headers.insert("x-forwarded-host", host.clone());
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    headers
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
        assert_eq!(bearer(&h).unwrap().unwrap().1.expose(), "tok_x");
    }

    #[test]
    fn the_client_address_is_read_right_to_left_through_trusted_hops() {
        let trusted = [crate::limits::parse_cidr("10.0.0.0/8").unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.9, 10.0.0.2"),
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // The rightmost untrusted address; the forged one left of it is ignored.
        assert_eq!(
            client_address(ip("10.0.0.1"), &h, &trusted),
            ip("203.0.113.9")
        );
        // From an untrusted peer the header counts for nothing.
        assert_eq!(
            client_address(ip("192.0.2.1"), &h, &trusted),
            ip("192.0.2.1")
        );
        assert_eq!(client_address(ip("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("junk, 10.0.0.3"),
        );
        assert_eq!(client_address(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.3"));
        h.insert("x-forwarded-for", HeaderValue::from_static("2001:db8::7"));
        assert_eq!(
            client_address(ip("10.0.0.1"), &h, &trusted),
            ip("2001:db8::7")
        );
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

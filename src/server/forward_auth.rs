//! Forward auth: `tok serve --auth-listen` answers "may this request pass?" for
//! a proxy that already runs in front of a service (nginx `auth_request`, Caddy
//! `forward_auth`, Traefik `ForwardAuth`, Envoy `ext_authz` in HTTP mode). The
//! request and response bodies never pass through tok.
//!
//! The decision is the enforcing proxy's own: the same steps in the same
//! order ([`proxy::checked_route`] for the request rules, the canonical path
//! and the route; [`proxy::authorize`] over the same [`Admitter`] and cache;
//! [`proxy::record`] for the audit trail), over the same routes, which a
//! SIGHUP swaps for both at once. So expiry, scopes, use limits, revocation,
//! the refusal of two `Authorization` headers and audit mean the same for
//! both. Answers:
//! - 200 with `X-Tok-Token-Id` and `X-Tok-Scopes` for the proxy to copy upstream;
//!   a use-limited token has spent its use (only on 200);
//! - 401 or 403 with the RFC 6750 `WWW-Authenticate` challenge the proxy passes
//!   back to its client;
//! - 403 where the proxy would answer 400 or 405 (a path that cannot be made
//!   canonical, two `Authorization` headers, CONNECT): nginx's `auth_request`
//!   passes on only 2xx, 401 and 403, and turns anything else into a 500.
//!
//! Where each proxy puts the original request (their docs, followed here):
//! - nginx, by convention in `auth_request` configs: `X-Original-Method` and
//!   `X-Original-URI` (<https://nginx.org/en/docs/http/ngx_http_auth_request_module.html>);
//! - Caddy and Traefik: `X-Forwarded-Method`, `X-Forwarded-Uri`, with
//!   `X-Forwarded-Host`, `X-Forwarded-Proto` and `X-Forwarded-For`
//!   (<https://caddyserver.com/docs/caddyfile/directives/forward_auth>,
//!   <https://doc.traefik.io/traefik/middlewares/http/forwardauth/>);
//! - Envoy's `ext_authz` `http_service`: the check request itself has the
//!   original method and path (with `path_prefix` left empty) and the
//!   `Authorization` header (<https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/ext_authz/v3/ext_authz.proto>).
//!
//! Only the proxies may ask: the caller's address must be in `--auth-allow`
//! (loopback by default) and, when `TOK_AUTH_SECRET` is set, the request must
//! carry it in `X-Tok-Auth-Secret`. Anyone else gets 403 before any token is
//! looked at, so no outside client can probe tokens or spend their uses. With
//! `--auth-client-ca`, a caller must also present a client certificate from
//! that CA: rustls' `WebPkiClientVerifier` refuses the handshake otherwise
//! (`tls::config_for_clients`), before any request is read.

use super::admission::Admitter;
use super::audit_writer::AuditSink;
use super::path::audit_path;
use super::proxy::{
    audit_slot, authorize, checked_route, json_response, record, SCOPES_HEADER, TOKEN_ID_HEADER,
};
use super::routes::Routes;
use crate::secret::{ct_eq, Secret};
use crate::store::audit::{Decision, Entry, Event};
use axum::body::Body;
use axum::extract::{ConnectInfo, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use chrono::Utc;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The header a proxy sends the shared secret in.
pub const SECRET_HEADER: &str = "x-tok-auth-secret";

pub struct ForwardAuth {
    pub admission: Arc<Admitter>,
    /// The proxy's routes (the same `ArcSwap` when both run): SIGHUP swaps them.
    pub routes: Arc<arc_swap::ArcSwap<Routes>>,
    /// Who may ask (`--auth-allow`).
    pub allow: Vec<IpNet>,
    /// The shared secret a caller must send, when set (`TOK_AUTH_SECRET`).
    pub secret: Option<Secret>,
    /// How long a proxy may keep a 200 (`--auth-cache-ttl`); zero: never.
    pub cache_ttl: Duration,
    pub audit: AuditSink,
}

/// The default `--auth-allow`: loopback only.
pub fn loopback() -> Vec<IpNet> {
    vec![
        "127.0.0.0/8".parse().expect("a valid CIDR"),
        "::1/128".parse().expect("a valid CIDR"),
    ]
}

pub fn router(fa: Arc<ForwardAuth>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(fa)
}

/// The original request, as the calling proxy describes it.
#[derive(Debug, PartialEq)]
struct Original {
    method: String,
    /// Path and query.
    uri: String,
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn original(req: &Request<Body>) -> Original {
    let h = req.headers();
    let method = header_str(h, "x-original-method")
        .or_else(|| header_str(h, "x-forwarded-method"))
        .unwrap_or(req.method().as_str())
        .to_ascii_uppercase();
    let uri = header_str(h, "x-original-uri")
        .or_else(|| header_str(h, "x-forwarded-uri"))
        .map(str::to_string)
        .unwrap_or_else(|| {
            req.uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into())
        });
    Original { method, uri }
}

/// The client of the original request: the last `X-Forwarded-For` hop (the
/// one the calling proxy added), else `X-Real-IP`, else the caller itself.
fn original_client(h: &HeaderMap, peer: IpAddr) -> IpAddr {
    header_str(h, "x-forwarded-for")
        .and_then(|v| v.rsplit(',').next())
        .or_else(|| header_str(h, "x-real-ip"))
        .and_then(|v| v.trim().parse::<IpAddr>().ok())
        .unwrap_or(peer)
}

fn allowed(fa: &ForwardAuth, peer: IpAddr, h: &HeaderMap) -> Result<(), &'static str> {
    // An IPv4 caller on a dual-stack socket shows as ::ffff:a.b.c.d.
    if !crate::limits::in_ranges(&fa.allow, peer) {
        return Err("the caller's address is not in --auth-allow");
    }
    if let Some(s) = &fa.secret {
        let sent = h.get(SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or(b"");
        if !ct_eq(sent, s.expose().as_bytes()) {
            return Err("the caller did not send the shared secret (X-Tok-Auth-Secret)");
        }
    }
    Ok(())
}

async fn handle(
    AxState(fa): AxState<Arc<ForwardAuth>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    let started = Instant::now();
    if let Err(why) = allowed(&fa, peer.ip(), req.headers()) {
        tracing::warn!(caller = %peer.ip(), reason = why, "refused a forward-auth call");
        return json_response(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this endpoint answers only the proxies tok serve was told to trust",
        );
    }
    let slot = match audit_slot(&fa.audit, peer).await {
        Ok(slot) => slot,
        Err(refused) => return refused,
    };
    let orig = original(&req);
    let mut entry = Entry::new(Event::Request, Utc::now());
    entry.method = Some(orig.method.clone());
    // The caller passed `allowed`: it is a proxy, so the client it names is
    // the one a token's `--allow-ip` ranges are checked against.
    let client = original_client(req.headers(), peer.ip());
    entry.client = Some(client.to_string());
    entry.actor = Some(format!("forward-auth via {}", peer.ip()));
    let raw_path = orig.uri.split(['?', '#']).next().unwrap_or("/");
    let routes = fa.routes.load();
    let Ok(method) = Method::from_bytes(orig.method.as_bytes()) else {
        // The proxy never meets this: hyper refuses such a request line.
        let why = "the original request's method is not an HTTP method";
        entry.path = Some(audit_path(raw_path));
        entry.decision = Some(Decision::Deny);
        entry.reason = Some(why.into());
        record(slot, entry, started, false, None);
        return json_response(StatusCode::FORBIDDEN, "invalid_request", why);
    };
    let route = match checked_route(&routes, &method, req.headers(), raw_path, &mut entry) {
        Ok((_, route)) => route,
        // 403 whatever the proxy would answer: nginx's auth_request passes on
        // only 2xx, 401 and 403.
        Err((_, code, why)) => {
            record(slot, entry, started, false, None);
            return json_response(StatusCode::FORBIDDEN, code, why);
        }
    };
    let needed: &[String] = route.map(|r| r.scopes.as_slice()).unwrap_or_default();
    match authorize(&fa.admission, req.headers(), needed, client, &mut entry).await {
        Ok((token, grant)) => {
            let counted_use = token.max_uses.is_none();
            let cache = cache_control(fa.cache_ttl, &token, Utc::now());
            record(slot, entry, started, counted_use, grant.quota_window);
            let mut r = Response::new(Body::empty());
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&token.id) {
                h.insert(TOKEN_ID_HEADER, v);
            }
            if let Ok(v) = HeaderValue::from_str(&token.scopes.join(" ")) {
                h.insert(SCOPES_HEADER, v);
            }
            if let Ok(v) = HeaderValue::from_str(&cache) {
                h.insert(header::CACHE_CONTROL, v);
            }
            r
        }
        Err(d) if d.is_limit() => {
            drop(slot);
            fa.admission.limiter().refused(entry);
            d.response()
        }
        Err(d) => {
            record(slot, entry, started, false, None);
            d.response()
        }
    }
}

/// How long a proxy may keep this 200: never for a token with a use limit,
/// a rate or a quota (each pass must be counted here); otherwise `ttl`, but not past the
/// token's expiry. `s-maxage` because the asking proxy is a shared cache and
/// the request carried `Authorization` (RFC 9111, 3.5).
fn cache_control(ttl: Duration, token: &crate::model::Token, now: chrono::DateTime<Utc>) -> String {
    if token.max_uses.is_some() || token.rate.is_some() || token.quota.is_some() || ttl.is_zero() {
        return "no-store".into();
    }
    let left = token
        .expires_at
        .map(|e| (e - now).num_seconds().max(0) as u64)
        .unwrap_or(u64::MAX);
    match ttl.as_secs().min(left) {
        0 => "no-store".into(),
        s => format!("max-age={s}, s-maxage={s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn the_original_request_is_read_from_each_proxys_headers() {
        // nginx (auth_request with the conventional headers).
        let r = req(
            "GET",
            "/_auth",
            &[
                ("X-Original-Method", "delete"),
                ("X-Original-URI", "/a/b?x=1"),
            ],
        );
        assert_eq!(
            original(&r),
            Original {
                method: "DELETE".into(),
                uri: "/a/b?x=1".into()
            }
        );
        // Caddy and Traefik.
        let r = req(
            "GET",
            "/",
            &[
                ("X-Forwarded-Method", "POST"),
                ("X-Forwarded-Uri", "/orders"),
            ],
        );
        assert_eq!(
            original(&r),
            Original {
                method: "POST".into(),
                uri: "/orders".into()
            }
        );
        // Envoy: the check request is the original's method and path.
        let r = req("PUT", "/orders/7?v=2", &[]);
        assert_eq!(
            original(&r),
            Original {
                method: "PUT".into(),
                uri: "/orders/7?v=2".into()
            }
        );
    }

    #[test]
    fn the_original_client_is_the_hop_the_proxy_added() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(original_client(&h, peer).to_string(), "127.0.0.1");
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 198.51.100.4"),
        );
        assert_eq!(original_client(&h, peer).to_string(), "198.51.100.4");
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("not an address"),
        );
        assert_eq!(original_client(&h, peer).to_string(), "127.0.0.1");
    }

    #[test]
    fn a_200_is_cached_never_for_use_limits_and_never_past_expiry() {
        let now = Utc::now();
        let mut t = (*crate::server::cache::tests::token("tk_a")).clone();
        let ttl = Duration::from_secs(30);
        assert_eq!(cache_control(Duration::ZERO, &t, now), "no-store");
        assert_eq!(cache_control(ttl, &t, now), "max-age=30, s-maxage=30");
        t.expires_at = Some(now + chrono::TimeDelta::seconds(10));
        assert_eq!(cache_control(ttl, &t, now), "max-age=10, s-maxage=10");
        t.max_uses = Some(3);
        assert_eq!(cache_control(ttl, &t, now), "no-store");
    }
}

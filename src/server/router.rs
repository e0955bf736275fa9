//! The whole HTTP surface: the `/v1` admin routes (api.rs), the body cap, the
//! request log, and JSON answers for unknown paths and methods, with the
//! RFC 7662/7009 endpoints (oauth.rs) and, with --federation, token exchange
//! (federation/endpoint.rs) merged in. The proxy has its own listener.

use super::api;
use super::auth::PrincipalSlot;
use super::error::ApiError;
use super::metrics::{Listener, Outcome, METRICS};
use super::request_id::{self, RequestId};
use super::state::AppState;
use super::wire::{code, BODY_MAX};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use std::time::Instant;

/// `extra` holds optional endpoints (token exchange, with `--federation`); they
/// get the same request log as the rest.
pub fn router(
    state: AppState,
    oauth: std::sync::Arc<super::oauth::OAuth>,
    ops: std::sync::Arc<super::ops::Ops>,
    extra: Option<Router>,
) -> Router {
    Router::new()
        .merge(api::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        .merge(super::oauth::router(oauth))
        .merge(super::ops::admin_routes(ops, state))
        .merge(extra.unwrap_or_default())
        .layer(DefaultBodyLimit::max(BODY_MAX))
        .layer(middleware::from_fn(log_request))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; the admin API is under /v1 (see docs/admin-api.md)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        code::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method (see docs/admin-api.md)",
    )
}

/// One log line per request: its id, method, path (query dropped,
/// secret-looking segments masked), status, duration, and who made it. Never
/// a header or body. The id goes back as `X-Request-Id`, and each answer is
/// counted in the metrics.
async fn log_request(mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = redact_path(req.uri().path());
    let slot = PrincipalSlot::default();
    let id = RequestId::next();
    req.extensions_mut().insert(slot.clone());
    req.extensions_mut().insert(id.clone());
    tracing::debug!(%method, %path, request_id = %id, "request started");
    let mut resp = next.run(req).await;
    let status = resp.status().as_u16();
    let ms = start.elapsed().as_millis() as u64;
    let who = slot.get().unwrap_or_else(|| "-".into());
    if status >= 500 {
        tracing::error!(%method, %path, status, ms, who, request_id = %id, "request");
    } else {
        tracing::info!(%method, %path, status, ms, who, request_id = %id, "request");
    }
    METRICS.request(Listener::Admin, Outcome::of_status(status));
    resp.headers_mut()
        .insert(request_id::HEADER, id.header_value());
    resp
}

/// Masks any path segment that looks like a tok secret, in case a client put
/// one in a URL by mistake: the log must not keep it.
pub fn redact_path(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
            if decoded.to_ascii_lowercase().contains(crate::secret::PREFIX) {
                "(redacted)"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_path_segments_are_masked() {
        assert_eq!(redact_path("/v1/tokens/tk_abc"), "/v1/tokens/tk_abc");
        assert_eq!(
            redact_path("/v1/tokens/tok_abc123/revoke"),
            "/v1/tokens/(redacted)/revoke"
        );
        assert_eq!(redact_path("/v1/tokens/tok%5fabc"), "/v1/tokens/(redacted)");
        assert_eq!(redact_path("/v1/tokens/%74ok_abc"), "/v1/tokens/(redacted)");
    }
}

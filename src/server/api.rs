//! The admin API handlers under `/v1`: tokens, lookup, revoke, rotate, whoami,
//! health. Each reads straight down: auth -> input checks -> store -> JSON.

use super::auth::{Admin, Auth, Read};
use super::error::ApiError;
use super::extract::{audit_query, list_query, JsonBody};
use super::state::AppState;
use super::wire::{
    AuditPage, CreateRequest, CreatedResponse, Health, ListResponse, LookupRequest, RevokeRequest,
    RevokeResponse, RotateRequest, RotateResponse, WireSecret, ID_MAX,
};
use crate::duration::MAX_SECONDS;
use crate::model::{check_new_token, limits, Token};
use crate::output::rfc3339;
use crate::secret;
use crate::store::backend::Backend;
use crate::store::Cursor;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;

/// The `/v1` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/auth/self", get(whoami))
        .route("/v1/tokens", post(create).get(list))
        .route("/v1/tokens/lookup", post(lookup))
        .route("/v1/tokens/{id}", get(get_token))
        .route("/v1/tokens/{id}/revoke", post(revoke))
        .route("/v1/tokens/{id}/rotate", post(rotate))
        .route("/v1/audit", get(audit))
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

async fn whoami(auth: Auth<Read>) -> Json<Token> {
    Json(auth.token)
}

/// A response that carries a secret: never cached anywhere.
fn with_secret(status: StatusCode, body: impl serde::Serialize) -> Response {
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn create(
    State(state): State<AppState>,
    auth: Auth<Admin>,
    JsonBody(req): JsonBody<CreateRequest>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let expires_at = req.expires_at.ok_or_else(|| {
        ApiError::bad_request(
            "`expires_at` is required: an RFC 3339 time, or null for a token that never expires",
        )
    })?;
    if let Some(t) = expires_at {
        if t <= now {
            return Err(ApiError::bad_request(format!(
                "`expires_at` {} is not in the future (server time {})",
                rfc3339(t),
                rfc3339(now)
            )));
        }
    }
    let new = req.into_new_token(expires_at);
    check_new_token(&new)
        .map_err(|e| ApiError::bad_request(format!("cannot create the token: {e}")))?;
    let by = auth.principal();
    let created = state.store().create(&new, Some(&by), now).await?;
    tracing::info!(id = %created.token.id, by = %auth.token.id, "token created");
    Ok(with_secret(
        StatusCode::CREATED,
        CreatedResponse {
            token: created.token,
            secret: WireSecret(created.secret),
        },
    ))
}

async fn list(
    State(state): State<AppState>,
    _auth: Auth<Read>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ListResponse>, ApiError> {
    let mut q = list_query(raw.as_deref())?;
    let page = q.page;
    // One more than the page, to know whether there is a next one.
    q.filter.limit = Some(page + 1);
    if let Some(c) = &q.cursor {
        if !state.store().is_position(c).await? {
            return Err(ApiError::bad_request(
                "`cursor` is not one this server gave out; pass next_cursor back as it came",
            ));
        }
    }
    let mut tokens = state
        .store()
        .list(&q.filter, q.cursor.as_ref(), Utc::now())
        .await?;
    let next_cursor = if tokens.len() as u64 > page {
        tokens.truncate(page as usize);
        tokens.last().map(|t| Cursor::of(t).encode())
    } else {
        None
    };
    Ok(Json(ListResponse {
        tokens,
        next_cursor,
    }))
}

/// The `{id}` of a path, refusing a secret pasted where an id goes.
fn id_param(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::bad_request(format!("bad token id: {e}")))?;
    if secret::looks_like_secret(&id) {
        return Err(ApiError::bad_request(
            "that is a secret, not a token id; look a secret up with POST /v1/tokens/lookup",
        ));
    }
    if id.chars().count() > ID_MAX {
        return Err(ApiError::not_found("no token has an id that long"));
    }
    Ok(id)
}

async fn get_token(
    State(state): State<AppState>,
    _auth: Auth<Read>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Token>, ApiError> {
    let id = id_param(path)?;
    let found = state.store().get(&id, Utc::now()).await?;
    found
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no token has id `{id}`")))
}

async fn lookup(
    State(state): State<AppState>,
    _auth: Auth<Read>,
    JsonBody(req): JsonBody<LookupRequest>,
) -> Result<Json<Token>, ApiError> {
    let secret = req.secret.0;
    secret
        .validate()
        .map_err(|e| ApiError::bad_request(format!("`secret` is not a valid tok secret: {e}")))?;
    let fingerprint = secret.fingerprint();
    state
        .store()
        .lookup(&secret, Utc::now())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no token has that secret ({fingerprint})")))
}

async fn revoke(
    State(state): State<AppState>,
    auth: Auth<Admin>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(req): JsonBody<RevokeRequest>,
) -> Result<Json<RevokeResponse>, ApiError> {
    let id = id_param(path)?;
    if let Some(r) = &req.reason {
        if r.chars().count() > limits::REASON_MAX {
            return Err(ApiError::bad_request(format!(
                "`reason` is longer than {} characters",
                limits::REASON_MAX
            )));
        }
        if r.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "`reason` contains a control character",
            ));
        }
    }
    let by = auth.principal();
    let (token, outcome) = state
        .store()
        .revoke(&id, Some(&by), req.reason.as_deref(), Utc::now())
        .await?;
    state.changed(&token.id);
    tracing::info!(id = %token.id, by = %auth.token.id, ?outcome, "token revoked");
    Ok(Json(RevokeResponse { token, outcome }))
}

async fn rotate(
    State(state): State<AppState>,
    auth: Auth<Admin>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(req): JsonBody<RotateRequest>,
) -> Result<Response, ApiError> {
    let id = id_param(path)?;
    if let Some(g) = req.grace_seconds {
        if g > MAX_SECONDS {
            return Err(ApiError::bad_request(format!(
                "`grace_seconds` is above the limit of {MAX_SECONDS} (ten years)"
            )));
        }
    }
    let by = auth.principal();
    let (created, old) = state
        .store()
        .rotate(&id, req.grace_seconds, Some(&by), Utc::now())
        .await?;
    state.changed(&old.id);
    tracing::info!(old = %old.id, new = %created.token.id, by = %auth.token.id, "token rotated");
    Ok(with_secret(
        StatusCode::CREATED,
        RotateResponse {
            token: created.token,
            secret: WireSecret(created.secret),
            old,
        },
    ))
}

/// The audit trail (tok:admin: it names clients and paths).
async fn audit(
    State(state): State<AppState>,
    _auth: Auth<Admin>,
    RawQuery(raw): RawQuery,
) -> Result<Json<AuditPage>, ApiError> {
    let q = audit_query(raw.as_deref())?;
    let newest = q.filter.limit.is_some();
    let page = q.page;
    // Forward paging reads one entry past the page (which says there is
    // more); `newest` is bounded by its limit already.
    let max = (!newest).then_some(page + 1);
    let mut entries = state.store().audit(&q.filter, max).await?;
    let next_after_seq = if !newest && entries.len() as u64 > page {
        entries.truncate(page as usize);
        entries.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Json(AuditPage {
        entries,
        next_after_seq,
    }))
}

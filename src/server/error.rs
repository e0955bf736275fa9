//! `ApiError`: every failure the API answers, in one JSON shape
//! (`{"error":{"code":...,"message":...}}`) with the status and, for auth
//! failures, the RFC 6750 `WWW-Authenticate` header.

use super::wire::{code, ErrorBody, ErrorDetail};
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    www_authenticate: Option<String>,
    /// Seconds for `Retry-After` (503 while the store is unreachable).
    retry_after: Option<u64>,
}

pub const REALM: &str = "tok";

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            www_authenticate: None,
            retry_after: None,
        }
    }

    /// 503 with `Retry-After`: the store cannot be reached now, so nothing
    /// was decided (fail closed).
    pub fn unavailable(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, code::UNAVAILABLE, message);
        e.retry_after = Some(retry_after.as_secs().max(1));
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code::NOT_FOUND, message)
    }

    /// 401: a missing, malformed, unknown, expired, revoked or used-up credential.
    pub fn invalid_token(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, code::INVALID_TOKEN, message);
        e.www_authenticate = Some(format!(r#"Bearer realm="{REALM}", error="invalid_token""#));
        e
    }

    /// 403: a valid credential without the scope `needed`.
    pub fn insufficient_scope(needed: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::FORBIDDEN, code::INSUFFICIENT_SCOPE, message);
        e.www_authenticate = Some(format!(
            r#"Bearer realm="{REALM}", error="insufficient_scope", scope="{needed}""#
        ));
        e
    }

    /// 500. The cause goes to the log; the client learns only that it failed.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL,
            "the server failed to answer; its log says why",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => ApiError::not_found(format!("no token has id `{id}`")),
            StoreError::Revoked(_) => {
                ApiError::new(StatusCode::CONFLICT, code::TOKEN_REVOKED, e.to_string())
            }
            StoreError::Ambiguous { .. } => ApiError::bad_request(e.to_string()),
            StoreError::AlreadyRotated { .. } => {
                ApiError::new(StatusCode::CONFLICT, code::TOKEN_ROTATED, e.to_string())
            }
            other => {
                super::metrics::METRICS.store_errors.inc();
                ApiError::internal(other)
            }
        }
    }
}

impl From<crate::store::backend::Error> for ApiError {
    fn from(e: crate::store::backend::Error) -> Self {
        use crate::store::backend::Error;
        match e {
            Error::Store(e) => e.into(),
            Error::Unavailable { retry_after, .. } => {
                tracing::warn!(error = %e, "store unavailable; refusing");
                ApiError::unavailable(
                    "the token store is unreachable; nothing was decided, try again later",
                    retry_after,
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(v) = self
            .www_authenticate
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_store_is_a_503_with_retry_after() {
        let e = crate::store::backend::Error::Unavailable {
            target: "postgres://tok@db:5432/tok".into(),
            message: "connection refused".into(),
            retry_after: std::time::Duration::from_millis(300),
        };
        let resp = ApiError::from(e).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    }
}

//! What operators and their machines probe: `/v1/health/live`,
//! `/v1/health/ready` and `/metrics` (metrics.rs has the series).
//!
//! Liveness answers while the process serves at all. Readiness answers 200
//! only while the store can be reached and read afresh (the SQLite file
//! opened anew, or a round trip to PostgreSQL), its migrations are done, and
//! every listener is accepting; otherwise 503 with the reason, so
//! a load balancer stops sending before shutdown and while the store is
//! away. `/metrics` on the admin listener needs a token with `tok:metrics`
//! or `tok:admin`; `--metrics-listen` serves it (and the health routes)
//! without one, for a scraper on a private address.

use super::audit_writer::AuditSink;
use super::auth::Auth;
use super::metrics::{self, Gauges, METRICS};
use super::state::AppState;
use crate::store::any::AnyStore;
use crate::store::backend::{Backend, StateCounts};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The scope that lets a token read `/metrics` (as `tok:admin` does).
pub const SCOPE_METRICS: &str = "tok:metrics";

/// Needs `tok:metrics` or `tok:admin`.
pub struct MetricsScope;

impl super::auth::Need for MetricsScope {
    const SCOPE: &'static str = SCOPE_METRICS;
    fn granted_by(scopes: &[String]) -> bool {
        scopes
            .iter()
            .any(|s| s == SCOPE_METRICS || s == super::auth::SCOPE_ADMIN)
    }
}

/// Shared by the health and metrics handlers of both listeners.
pub struct Ops {
    pub store: Arc<AnyStore>,
    pub audit: AuditSink,
    /// Set once every listener accepts; cleared when shutdown starts.
    pub listening: AtomicBool,
    tokens: Mutex<Option<(Instant, StateCounts)>>,
}

impl Ops {
    pub fn new(store: Arc<AnyStore>, audit: AuditSink) -> Ops {
        Ops {
            store,
            audit,
            listening: AtomicBool::new(false),
            tokens: Mutex::new(None),
        }
    }

    /// None when ready, else why not.
    pub async fn not_ready(&self) -> Option<String> {
        if !self.listening.load(Ordering::Acquire) {
            return Some(
                "the listeners are not accepting connections (starting or stopping)".into(),
            );
        }
        let why = self.store.not_ready().await;
        if why.is_some() {
            METRICS.store_errors.inc();
        }
        why
    }

    /// The token counts, from the cache while fresh.
    async fn tokens(&self) -> Option<StateCounts> {
        {
            let cached = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, counts)) = cached.as_ref() {
                if at.elapsed() < metrics::TOKENS_TTL {
                    return Some(counts.clone());
                }
            }
        }
        let counts = self.store.count_by_state(chrono::Utc::now()).await;
        match counts {
            Ok(c) => {
                *self.tokens.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), c.clone()));
                Some(c)
            }
            Err(e) => {
                METRICS.store_errors.inc();
                tracing::warn!(error = %e, "could not count tokens for /metrics");
                None
            }
        }
    }

    async fn exposition(&self) -> Response {
        let (depth, capacity) = self.audit.depth();
        let gauges = Gauges {
            audit_queue: depth as u64,
            audit_capacity: capacity as u64,
            tokens: self.tokens().await,
        };
        let mut r = METRICS.render(&gauges).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        );
        r
    }
}

/// The health routes, and `/metrics` behind a token: for the admin listener.
pub fn admin_routes(ops: Arc<Ops>, state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_with_token))
        .with_state((ops.clone(), state))
        .merge(health_routes(ops))
}

/// `/metrics` and the health routes without a token: `--metrics-listen`.
pub fn open_routes(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_open))
        .with_state(ops.clone())
        .merge(health_routes(ops))
}

fn health_routes(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/v1/health/live", get(live))
        .route("/v1/health/ready", get(ready))
        .with_state(ops)
}

async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn ready(State(ops): State<Arc<Ops>>) -> Response {
    match ops.not_ready().await {
        None => Json(serde_json::json!({"status": "ready"})).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "not_ready", "reason": reason})),
        )
            .into_response(),
    }
}

async fn metrics_with_token(
    State((ops, state)): State<(Arc<Ops>, AppState)>,
    req: Request,
) -> Response {
    let (mut parts, _) = req.into_parts();
    match Auth::<MetricsScope>::from_request_parts(&mut parts, &state).await {
        Ok(_) => ops.exposition().await,
        Err(e) => e.into_response(),
    }
}

async fn metrics_open(State(ops): State<Arc<Ops>>) -> Response {
    ops.exposition().await
}

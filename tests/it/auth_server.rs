//! A tiny in-process gateway for the credential tests: `GET /v1/auth/self` as
//! tok serve answers it (the admin token the request carries: id, name, scopes,
//! expires_at; 401 with `WWW-Authenticate: Bearer error="invalid_token"` for any
//! other), and a count of every request that reaches it and the Authorization
//! header each carried, so that tests can show that a keyring failure sends
//! nothing and that a credential goes only where it belongs. Listens on
//! 127.0.0.1 on a free port; stops when dropped.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// An admin token the server knows.
#[derive(Clone)]
pub struct Admin {
    pub secret: String,
    pub id: String,
    pub name: String,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Admin {
    pub fn new(secret: &str, id: &str, name: &str) -> Admin {
        Admin {
            secret: secret.into(),
            id: id.into(),
            name: name.into(),
            expires_at: None,
        }
    }

    pub fn expiring(mut self, at: DateTime<Utc>) -> Admin {
        self.expires_at = Some(at);
        self
    }
}

#[derive(Default)]
struct Counts {
    all: AtomicUsize,
    auth_self: AtomicUsize,
}

struct Shared {
    admins: Vec<Admin>,
    counts: Counts,
    /// The Authorization header of every request, in order ("" for none).
    authorizations: Mutex<Vec<String>>,
}

impl Shared {
    fn saw(&self, headers: &HeaderMap) {
        self.counts.all.fetch_add(1, Ordering::SeqCst);
        let value = headers
            .get(header::AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        self.authorizations.lock().unwrap().push(value);
    }
}

pub struct AuthServer {
    pub url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AuthServer {
    pub fn start(admins: Vec<Admin>) -> AuthServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let shared = Arc::new(Shared {
            admins,
            counts: Counts::default(),
            authorizations: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = Router::new()
                    .route("/v1/auth/self", get(auth_self))
                    .fallback(not_found)
                    .with_state(state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        AuthServer {
            url,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Every request that reached the server.
    pub fn requests(&self) -> usize {
        self.shared.counts.all.load(Ordering::SeqCst)
    }

    /// The Authorization header of every request that reached the server, in
    /// order; an empty string for a request without one.
    pub fn authorizations(&self) -> Vec<String> {
        self.shared.authorizations.lock().unwrap().clone()
    }

    /// Requests to `/v1/auth/self`.
    pub fn auth_self_requests(&self) -> usize {
        self.shared.counts.auth_self.load(Ordering::SeqCst)
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn auth_self(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    s.saw(&headers);
    s.counts.auth_self.fetch_add(1, Ordering::SeqCst);
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented.and_then(|p| s.admins.iter().find(|a| a.secret == p)) {
        // The whole token, as tok serve answers (docs/schemas/token.v1.json).
        Some(a) => Json(json!({
            "id": a.id,
            "name": a.name,
            "description": null,
            "scopes": ["tok:admin"],
            "labels": {},
            "created_at": "2026-01-01T00:00:00Z",
            "created_by": "local:admin",
            "expires_at": a.expires_at,
            "max_uses": null,
            "uses": 0,
            "last_used_at": null,
            "state": "active",
            "revoked_at": null,
            "revoked_by": null,
            "revoke_reason": null,
            "fingerprint": "tok_abcdef…",
        }))
        .into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"tok\", error=\"invalid_token\"")],
            Json(json!({"error": {"code": "invalid_token", "message": "the admin token is missing or invalid"}})),
        )
            .into_response(),
    }
}

async fn not_found(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    s.saw(&headers);
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": {"code": "not_found", "message": "no such route"}})),
    )
        .into_response()
}

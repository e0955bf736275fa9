//! Contract doubles for gateways that cannot be installed here: small HTTP
//! servers that keep state and answer as the named upstream version does.
//! Each runs in-process on 127.0.0.1:0 (a tokio runtime on its own thread)
//! and shuts down when dropped. Every double records the requests it saw and
//! can be told to fail every request, for the error-path tests.

#![allow(dead_code)]

pub mod apipark;
pub mod apisix;
pub mod kong;
pub mod tyk;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A canned answer that replaces every real one while set.
#[derive(Clone, Debug)]
pub struct Fault {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Fault {
    pub fn status(status: u16, body: &str) -> Fault {
        Fault {
            status,
            content_type: "application/json",
            body: body.into(),
        }
    }
    /// HTTP 200 whose body is not JSON at all.
    pub fn garbage() -> Fault {
        Fault {
            status: 200,
            content_type: "application/json",
            body: "<html>upstream proxy says hi</html>".into(),
        }
    }
}

/// What the tests can see and steer in any double.
#[derive(Default)]
pub struct Control {
    /// `METHOD /path` of every request, in order.
    pub seen: Mutex<Vec<String>>,
    /// The admin credential header of every request (empty when none), in order.
    pub credentials: Mutex<Vec<String>>,
    pub fault: Mutex<Option<Fault>>,
}

/// The headers that carry an admin credential to one of the doubled gateways.
const CREDENTIAL_HEADERS: [&str; 4] = [
    "authorization",
    "kong-admin-token",
    "x-api-key",
    "x-tyk-authorization",
];

impl Control {
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
    /// The admin credentials the requests carried, as sent.
    pub fn credentials(&self) -> Vec<String> {
        self.credentials.lock().unwrap().clone()
    }
    pub fn fail_with(&self, f: Fault) {
        *self.fault.lock().unwrap() = Some(f);
    }
    pub fn heal(&self) {
        *self.fault.lock().unwrap() = None;
    }
}

async fn control_layer(State(c): State<Arc<Control>>, req: Request, next: Next) -> Response {
    c.seen
        .lock()
        .unwrap()
        .push(format!("{} {}", req.method(), req.uri().path()));
    let presented = CREDENTIAL_HEADERS
        .iter()
        .find_map(|h| req.headers().get(*h))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    c.credentials.lock().unwrap().push(presented);
    let fault = c.fault.lock().unwrap().clone();
    match fault {
        Some(f) => Response::builder()
            .status(f.status)
            .header(header::CONTENT_TYPE, f.content_type)
            .body(Body::from(f.body))
            .unwrap(),
        None => next.run(req).await,
    }
}

/// One request as a double reads it, whole.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for Call {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, _: &S) -> Result<Call, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let query = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default();
        Ok(Call {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query,
            headers: parts.headers,
            body: axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default(),
        })
    }
}

/// A running double and the state its handlers share.
pub struct Double<S> {
    pub server: Server,
    pub state: Arc<Mutex<S>>,
}

/// The state a double's handlers are given.
pub type Shared<S> = State<Arc<Mutex<S>>>;

impl<S: Send + 'static> Double<S> {
    /// Serves `routes` over `inner`.
    pub fn serve(inner: S, routes: Router<Arc<Mutex<S>>>) -> Double<S> {
        let state = Arc::new(Mutex::new(inner));
        Double {
            server: Server::start(routes.with_state(state.clone())),
            state,
        }
    }

    pub fn url(&self) -> &str {
        &self.server.url
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, S> {
        self.state.lock().unwrap()
    }
}

/// A JSON answer with a status.
pub fn json(status: u16, v: serde_json::Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// A running double; dropping it stops the server and joins its thread.
pub struct Server {
    pub url: String,
    pub control: Arc<Control>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(router: Router) -> Server {
        let control = Arc::new(Control::default());
        let router = router.layer(middleware::from_fn_with_state(
            control.clone(),
            control_layer,
        ));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime for a double");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind 127.0.0.1:0");
                addr_tx
                    .send(listener.local_addr().expect("local addr"))
                    .expect("send addr");
                axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        let addr = addr_rx.recv().expect("double started");
        Server {
            url: format!("http://{addr}"),
            control,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A URL on which nothing listens: a port taken and released at once.
pub fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// 32 lowercase hex characters of randomness, as Go's uuid without dashes.
pub fn hex32() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A random UUIDv4 string.
pub fn uuid4() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

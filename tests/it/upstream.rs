//! A real upstream for the proxy tests: a small HTTP server on 127.0.0.1 that
//! echoes what it received, counts requests, streams large bodies both ways,
//! and can be slow on purpose. It runs on its own runtime and stops on Drop.

#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let hits = Arc::new(AtomicUsize::new(0));
        let (tx_addr, rx_addr) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let counter = Arc::clone(&hits);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = Router::new()
                    .route("/download", get(download))
                    .route("/upload", post(upload))
                    .route("/slow", get(slow))
                    .fallback(any(echo))
                    .with_state(counter);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx_addr.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Upstream {
            addr: rx_addr.recv().unwrap(),
            hits,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn echo(
    State(hits): State<Arc<AtomicUsize>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    hits.fetch_add(1, Ordering::SeqCst);
    let h: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    Json(json!({
        "method": method.as_str(),
        "uri": uri.to_string(),
        "headers": h,
        "body_len": body.len(),
    }))
}

/// Streams `bytes` bytes in 64 KiB chunks, never holding them all.
async fn download(
    State(hits): State<Arc<AtomicUsize>>,
    Query(q): Query<HashMap<String, usize>>,
) -> Body {
    hits.fetch_add(1, Ordering::SeqCst);
    let total = q.get("bytes").copied().unwrap_or(0);
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let stream = futures_stream(total, chunk);
    Body::from_stream(stream)
}

fn futures_stream(
    total: usize,
    chunk: Bytes,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(total, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(chunk.len());
            Some((Ok(chunk.slice(..n)), left - n))
        }
    })
}

/// Counts the bytes of a streamed request body.
async fn upload(State(hits): State<Arc<AtomicUsize>>, body: Body) -> Json<Value> {
    hits.fetch_add(1, Ordering::SeqCst);
    let mut stream = body.into_data_stream();
    let mut n = 0usize;
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        n += chunk.unwrap().len();
    }
    Json(json!({"bytes": n}))
}

async fn slow(State(hits): State<Arc<AtomicUsize>>) -> &'static str {
    hits.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    "late"
}

//! Upstream HTTP servers that answer every request with their own name.
//!
//! `GET /status/{code}` answers that status code (for retry and outlier tests later); every
//! response carries `x-upstream: {name}`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Upstream {
    name: String,
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct UpState {
    name: String,
    hits: Arc<AtomicU64>,
}

impl Upstream {
    /// Starts a server on 127.0.0.1 with a free port.
    pub async fn start(name: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let hits = Arc::new(AtomicU64::new(0));
        let state = UpState {
            name: name.to_string(),
            hits: hits.clone(),
        };
        let app = Router::new()
            .route("/status/{code}", get(status))
            .fallback(get(hello))
            .with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            name: name.to_string(),
            addr,
            hits,
            task,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests served so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hello(State(s): State<UpState>, headers: HeaderMap) -> impl IntoResponse {
    s.hits.fetch_add(1, Ordering::Relaxed);
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (
        [("x-upstream", s.name.clone()), ("x-seen-host", host)],
        s.name,
    )
}

async fn status(State(s): State<UpState>, Path(code): Path<u16>) -> impl IntoResponse {
    s.hits.fetch_add(1, Ordering::Relaxed);
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (code, [("x-upstream", s.name.clone())], s.name)
}

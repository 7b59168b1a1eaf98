//! Upstream HTTP servers for end-to-end tests: each answers with its own name, and offers the
//! behaviours routing features act on.
//!
//! | path               | answer                                                        |
//! |--------------------|---------------------------------------------------------------|
//! | `/status/{code}`   | that status code                                              |
//! | `/delay/{ms}`      | waits `ms` milliseconds (at most a minute), then 200          |
//! | `/fail-once/{key}` | 503 the first time this upstream sees `key`, then 200         |
//! | `/headers`         | 200 with the request headers as JSON: `{name: [values...]}`   |
//! | `/headers/{any}`   | the same                                                      |
//! | `/healthz`         | 200, or 503 while failing                                     |
//! | anything else      | 200 with the upstream's name                                  |
//!
//! Every response carries `x-upstream: {name}`, and `x-seen-host` / `x-seen-path` with the Host
//! header and the path (with query) the upstream received, so rewrites can be asserted.
//! [`Upstream::set_failing`] makes every path answer 503 (outlier detection, health checks);
//! [`Upstream::stop`] closes the listener and every open connection.
//! [`Upstream::start_tls`] serves the same behind TLS (see [`tls`]), [`Upstream::start_h2c`]
//! over cleartext HTTP/2 only (see [`h2c`]), [`Upstream::start_ws`] as a WebSocket echo
//! server (see [`ws`]); `x-seen-version` says which HTTP version arrived. [`GrpcHealth`] is a
//! gRPC health server. [`udp`] holds a UDP echo upstream (`NAME: payload`) and its client.

mod grpc_health;
mod h2c;
mod tls;
pub mod udp;
mod ws;

pub use grpc_health::GrpcHealth;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The health-check path; requests to it are not counted in [`Upstream::hits`].
pub const HEALTH_PATH: &str = "/healthz";

pub struct Upstream {
    name: String,
    addr: SocketAddr,
    state: UpState,
    task: JoinHandle<()>,
}

#[derive(Clone)]
struct UpState {
    name: String,
    hits: Arc<AtomicU64>,
    by_path: Arc<Mutex<HashMap<String, u64>>>,
    failing: Arc<AtomicBool>,
    failed_once: Arc<Mutex<HashSet<String>>>,
    /// SNI names TLS clients sent (HTTPS upstreams only), in arrival order.
    server_names: Arc<Mutex<Vec<String>>>,
}

// === impl Upstream ===

impl Upstream {
    /// Starts a server on 127.0.0.1 with a free port.
    pub async fn start(name: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = UpState::new(name);
        let task = tokio::spawn(serve(listener, router(state.clone())));
        Ok(Self {
            name: name.to_string(),
            addr,
            state,
            task,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests served so far, health checks excluded.
    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::Relaxed)
    }

    /// Requests served so far for exactly this path (without query), health checks included.
    pub fn path_hits(&self, path: &str) -> u64 {
        let by_path = self.state.by_path.lock().unwrap_or_else(|p| p.into_inner());
        by_path.get(path).copied().unwrap_or(0)
    }

    /// The SNI names TLS clients sent, one per handshake that sent one (HTTPS upstreams).
    pub fn server_names(&self) -> Vec<String> {
        let names = self
            .state
            .server_names
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        names.clone()
    }

    /// While `true`, every request (health checks too) gets 503.
    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::Relaxed);
    }

    /// Closes the listener and every open connection: the upstream is gone.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections until aborted; aborting drops the set, which closes every connection.
async fn serve(listener: TcpListener, app: Router) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::task::yield_now().await;
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

fn router(state: UpState) -> Router {
    Router::new()
        .route("/status/{code}", get(status))
        .route("/delay/{ms}", get(delay))
        .route("/fail-once/{key}", get(fail_once))
        .route("/headers", get(headers))
        .route("/headers/{*rest}", get(headers))
        .route(HEALTH_PATH, get(healthz))
        .fallback(hello)
        .layer(from_fn_with_state(state.clone(), common))
        .with_state(state)
}

/// Counts the request, answers 503 while failing, and stamps the common response headers.
async fn common(State(s): State<UpState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let seen_path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let seen_host = req.headers().get("host").cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let seen_version = format!("{:?}", req.version());
    s.count(&path);
    let mut resp = if s.failing.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "failing").into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&s.name) {
        h.insert("x-upstream", v);
    }
    if let Ok(v) = HeaderValue::from_str(&seen_path) {
        h.insert("x-seen-path", v);
    }
    if let Ok(v) = HeaderValue::from_str(&seen_version) {
        h.insert("x-seen-version", v);
    }
    h.insert(
        "x-seen-host",
        seen_host.unwrap_or_else(|| HeaderValue::from_static("")),
    );
    resp
}

// === impl UpState ===

impl UpState {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            hits: Arc::default(),
            by_path: Arc::default(),
            failing: Arc::default(),
            failed_once: Arc::default(),
            server_names: Arc::default(),
        }
    }

    fn count(&self, path: &str) {
        if path != HEALTH_PATH {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        let mut by_path = self.by_path.lock().unwrap_or_else(|p| p.into_inner());
        *by_path.entry(path.to_string()).or_default() += 1;
    }
}

async fn hello(State(s): State<UpState>) -> String {
    s.name
}

async fn healthz() -> &'static str {
    "ok"
}

async fn status(State(s): State<UpState>, Path(code): Path<u16>) -> impl IntoResponse {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (code, s.name)
}

async fn delay(State(s): State<UpState>, Path(ms): Path<u64>) -> String {
    tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    s.name
}

async fn fail_once(State(s): State<UpState>, Path(key): Path<String>) -> impl IntoResponse {
    let first = s
        .failed_once
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key);
    if first {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} failed once", s.name),
        )
    } else {
        (StatusCode::OK, s.name)
    }
}

async fn headers(headers: HeaderMap) -> axum::Json<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &headers {
        out.entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    axum::Json(out)
}

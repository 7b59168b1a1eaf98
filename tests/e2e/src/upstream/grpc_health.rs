//! A gRPC health server (`grpc.health.v1.Health/Check`, h2c) for probe tests: it answers
//! SERVING or NOT_SERVING as [`GrpcHealth::set_serving`] says and records the service names it
//! was asked about. The messages are small enough to encode by hand: the request's field 1 is
//! the service name, the response's field 1 the status (1 SERVING, 2 NOT_SERVING).

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Response};
use axum::routing::post;
use http_body_util::StreamBody;
use hyper::body::Frame;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running gRPC health server on 127.0.0.1; stops on drop.
pub struct GrpcHealth {
    addr: SocketAddr,
    state: Arc<HealthState>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct HealthState {
    serving: AtomicBool,
    services: Mutex<Vec<String>>,
}

// === impl GrpcHealth ===

impl GrpcHealth {
    /// Starts serving (SERVING) on a free port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(HealthState::default());
        state.serving.store(true, Ordering::Relaxed);
        let handler_state = state.clone();
        let app = Router::new().route(
            "/grpc.health.v1.Health/Check",
            post(move |body: Bytes| {
                let state = handler_state.clone();
                async move { check(&state, &body) }
            }),
        );
        let task = tokio::spawn(super::h2c::serve_h2c(listener, app));
        Ok(Self { addr, state, task })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn set_serving(&self, serving: bool) {
        self.state.serving.store(serving, Ordering::Relaxed);
    }

    /// The service names asked about so far.
    pub fn services(&self) -> Vec<String> {
        self.state
            .services
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

impl Drop for GrpcHealth {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One Check: the framed response message, then `grpc-status: 0` in the trailers.
fn check(state: &HealthState, body: &[u8]) -> Response<Body> {
    // 5-byte gRPC frame header, then field 1 (tag 0x0a), a one-byte length, the name.
    let service = match body.get(5..) {
        Some([0x0a, len, rest @ ..]) => {
            String::from_utf8_lossy(rest.get(..usize::from(*len)).unwrap_or_default()).into_owned()
        }
        _ => String::new(),
    };
    if let Ok(mut seen) = state.services.lock() {
        seen.push(service);
    }
    let status = if state.serving.load(Ordering::Relaxed) {
        1
    } else {
        2
    };
    let message = Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> =
        vec![Ok(Frame::data(message)), Ok(Frame::trailers(trailers))];
    let body = Body::new(StreamBody::new(futures::stream::iter(frames)));
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}

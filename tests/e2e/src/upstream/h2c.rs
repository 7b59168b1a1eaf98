//! The upstream server over cleartext HTTP/2 with prior knowledge (h2c, no upgrade), for
//! backends whose Service port says `appProtocol: kubernetes.io/h2c`. It speaks only HTTP/2:
//! an HTTP/1.1 request gets no answer, so reaching it proves the proxy spoke HTTP/2.

use super::{UpState, Upstream, router};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

// === impl Upstream ===

impl Upstream {
    /// Starts an h2c server on 127.0.0.1 with a free port (same paths and headers as
    /// [`Upstream::start`]).
    pub async fn start_h2c(name: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = UpState::new(name);
        let task = tokio::spawn(serve_h2c(listener, router(state.clone())));
        Ok(Self {
            name: name.to_string(),
            addr,
            state,
            task,
        })
    }
}

pub(super) async fn serve_h2c(listener: TcpListener, app: Router) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::task::yield_now().await;
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

//! End-to-end harness: a real `portolan serve`, stock Envoy started from `portolan bootstrap`,
//! and small HTTP upstreams that answer with their own name. Every process is killed when its
//! handle drops; every wait polls with a deadline instead of sleeping.
//!
//! Envoy comes from `ENVOY_BIN`, else `.venv/bin/envoy` in the workspace (installed by
//! `scripts/test.sh`), else `envoy` on PATH.

#![forbid(unsafe_code)]

pub mod apiserver;
pub mod authz;
pub mod envoy;
pub mod http;
pub mod jwt;
pub mod manifests;
pub mod mesh;
pub mod netns;
pub mod portolan;
pub mod ports;
pub mod procfs;
pub mod protocols;
pub mod ratelimit;
pub mod serial;
pub mod tls;
pub mod tokens;
pub mod upstream;
pub mod xds_tls;

pub use envoy::Envoy;
pub use http::Reply;
pub use manifests::{endpoints_yaml, example, labeled_endpoints_yaml, service_yaml};
pub use mesh::Mesh;
pub use portolan::Portolan;
pub use upstream::Upstream;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().nth(2).map(PathBuf::from).unwrap_or(here)
}

/// The Python interpreter with grpcio for the gRPC helpers of `tests/e2e/grpc/`:
/// `PORTOLAN_GRPC_PYTHON`, else `.venv/bin/python` in the workspace (`scripts/install-tools.sh`
/// installs grpcio there).
pub fn grpc_python() -> PathBuf {
    std::env::var_os("PORTOLAN_GRPC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"))
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout` with the last
/// observation in the message.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(last) if tokio::time::Instant::now() >= deadline => {
                anyhow::bail!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// An HTTP client that never uses a proxy from the environment and never follows redirects
/// (tests assert on the redirect itself).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|e| panic!("building the HTTP client: {e}"))
}

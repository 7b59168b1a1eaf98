//! End-to-end harness: a real `portolan serve`, stock Envoy started from `portolan bootstrap`,
//! and small HTTP upstreams that answer with their own name. Every process is killed when its
//! handle drops; every wait polls with a deadline instead of sleeping.
//!
//! Envoy comes from `ENVOY_BIN`, else `.venv/bin/envoy` in the workspace (installed by
//! `scripts/test.sh`), else `envoy` on PATH.

#![forbid(unsafe_code)]

pub mod envoy;
pub mod portolan;
pub mod ports;
pub mod upstream;

pub use envoy::Envoy;
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

/// An HTTP client that never uses a proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|e| panic!("building the HTTP client: {e}"))
}

/// Manifests for a Service with one `http` port.
pub fn service_yaml(namespace: &str, name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  ports:\n  - name: http\n    port: {port}\n"
    )
}

/// An EndpointSlice for `service` with one ready endpoint per upstream (each upstream has its
/// own port, so each gets its own slice document).
pub fn endpoints_yaml(namespace: &str, service: &str, upstreams: &[&Upstream]) -> String {
    upstreams
        .iter()
        .map(|u| {
            format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-{name}\n  namespace: {namespace}\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nendpoints:\n- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\nports:\n- name: http\n  port: {port}\n",
                name = u.name(),
                ip = u.addr().ip(),
                port = u.addr().port(),
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

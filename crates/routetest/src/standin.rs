//! Stand-in upstreams: one small HTTP server on 127.0.0.1 per endpoint of every cluster. Each
//! answers 200 with a header naming its cluster and a JSON body echoing what it received
//! (method, path, host, headers), so the client learns which backend answered and what the
//! proxy sent it.

use crate::error::RouteTestError;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The response header naming the cluster whose stand-in answered.
pub const STANDIN_HEADER: &str = "x-portolan-standin";

/// What a stand-in says about the request it got.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Echo {
    pub cluster: String,
    pub endpoint: String,
    pub method: String,
    pub path: String,
    pub host: String,
    pub headers: BTreeMap<String, String>,
}

/// Running stand-ins; they stop when this is dropped.
pub struct StandIns {
    tasks: Vec<JoinHandle<()>>,
}

/// Who a stand-in is.
struct Identity {
    cluster: String,
    endpoint: String,
}

// === impl StandIns ===

impl StandIns {
    /// Starts one stand-in per `(cluster, endpoint)`; returns their addresses in order.
    pub async fn start(
        endpoints: &[(String, String)],
    ) -> Result<(Self, Vec<SocketAddr>), RouteTestError> {
        let mut tasks = Vec::new();
        let mut addrs = Vec::new();
        for (cluster, endpoint) in endpoints {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| RouteTestError::StandIn(e.to_string()))?;
            let addr = listener
                .local_addr()
                .map_err(|e| RouteTestError::StandIn(e.to_string()))?;
            let id = Arc::new(Identity {
                cluster: cluster.clone(),
                endpoint: endpoint.clone(),
            });
            let app = axum::Router::new().fallback(echo).with_state(id);
            tasks.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::warn!(error = %e, "stand-in upstream stopped");
                }
            }));
            addrs.push(addr);
        }
        Ok((Self { tasks }, addrs))
    }
}

impl Drop for StandIns {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn echo(State(id): State<Arc<Identity>>, req: Request) -> Response {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).to_string();
        headers
            .entry(k.as_str().to_string())
            .and_modify(|old| {
                old.push(',');
                old.push_str(&v);
            })
            .or_insert(v);
    }
    let echo = Echo {
        cluster: id.cluster.clone(),
        endpoint: id.endpoint.clone(),
        method: req.method().to_string(),
        path: req
            .uri()
            .path_and_query()
            .map_or("/".to_string(), |p| p.to_string()),
        host: headers.get("host").cloned().unwrap_or_default(),
        headers,
    };
    ([(STANDIN_HEADER, id.cluster.clone())], axum::Json(echo)).into_response()
}

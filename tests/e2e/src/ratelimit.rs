//! A test rate limit service (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`):
//! OVER_LIMIT when any descriptor holds the configured `(key, value)` entry, OK otherwise. It
//! records every descriptor it was asked about, as `key=value` entries joined by `,`, so tests
//! can see what Envoy sent; [`RateLimitServer::stop`] takes it down (failure mode tests).

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, DescriptorStatus};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct RateLimitServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

struct Rls {
    over: (String, String),
    seen: Arc<Mutex<Vec<String>>>,
}

// === impl RateLimitServer ===

impl RateLimitServer {
    /// Starts on a free loopback port; descriptors with entry `key=value` are over the limit.
    pub async fn start(key: &str, value: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rls = Rls {
            over: (key.to_string(), value.to_string()),
            seen: seen.clone(),
        };
        let routes = tonic::service::Routes::new(RateLimitServiceServer::new(rls));
        let task = tokio::spawn(crate::authz::serve_grpc(listener, routes));
        Ok(Self { addr, seen, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every descriptor asked about, as `domain|key=value,key=value`, in order.
    pub fn descriptors(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Closes the listener and every connection: the service is down.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for RateLimitServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tonic::async_trait]
impl RateLimitService for Rls {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        let req = request.into_inner();
        let mut statuses = Vec::new();
        let mut over = false;
        for d in &req.descriptors {
            let entries: Vec<String> = d
                .entries
                .iter()
                .map(|e| format!("{}={}", e.key, e.value))
                .collect();
            self.seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("{}|{}", req.domain, entries.join(",")));
            let hit = d
                .entries
                .iter()
                .any(|e| e.key == self.over.0 && e.value == self.over.1);
            over |= hit;
            let code = if hit { Code::OverLimit } else { Code::Ok };
            statuses.push(DescriptorStatus {
                code: code as i32,
                ..Default::default()
            });
        }
        let overall = if over { Code::OverLimit } else { Code::Ok };
        Ok(tonic::Response::new(RateLimitResponse {
            overall_code: overall as i32,
            statuses,
            ..Default::default()
        }))
    }
}

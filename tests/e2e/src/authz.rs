//! Test authorization services for Envoy's ext_authz filter, one per protocol, that decide by a
//! request header:
//!
//! * `x-auth: allow` is allowed: the answer carries `x-auth-user: alice` (for the upstream) and
//!   `x-auth-extra: leaked` (which a policy's `headersToUpstream` leaves out);
//! * anything else is denied with 403, body `denied by {name}` and header `x-denied-by: {name}`.
//!
//! [`AuthServer::start_http`] speaks plain HTTP (Envoy's HTTP service: the checked request's
//! method, path and allowed headers, no body); [`AuthServer::start_grpc`] serves
//! `envoy.service.auth.v3.Authorization/Check` over HTTP/2. Each counts its checks and records the
//! paths it saw; [`AuthServer::stop`] takes it down (fail-open and fail-closed tests).

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use envoy_types::pb::envoy::config::core::v3::{HeaderValue as EnvoyHeader, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse, check_response,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The request header the services decide by, and the value that allows.
pub const AUTH_HEADER: &str = "x-auth";
pub const ALLOW: &str = "allow";

/// gRPC status codes the Check answers carry.
const GRPC_OK: i32 = 0;
const GRPC_PERMISSION_DENIED: i32 = 7;

pub struct AuthServer {
    addr: SocketAddr,
    seen: Seen,
    task: JoinHandle<()>,
}

/// What a service saw: one path per check, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

#[derive(Clone)]
struct HttpState {
    name: String,
    seen: Seen,
}

// === impl AuthServer ===

impl AuthServer {
    /// An HTTP authorization service on a free loopback port.
    pub async fn start_http(name: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Seen::default();
        let state = HttpState {
            name: name.to_string(),
            seen: seen.clone(),
        };
        let app = Router::new().fallback(http_check).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, seen, task })
    }

    /// A gRPC authorization service on a free loopback port.
    pub async fn start_grpc(name: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Seen::default();
        let service = GrpcAuth {
            name: name.to_string(),
            seen: seen.clone(),
        };
        let routes = tonic::service::Routes::new(AuthorizationServer::new(service));
        let task = tokio::spawn(serve_grpc(listener, routes));
        Ok(Self { addr, seen, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Checks answered so far.
    pub fn checks(&self) -> usize {
        self.seen.paths().len()
    }

    /// The path of every check, in order (for HTTP: with the policy's `pathPrefix`).
    pub fn paths(&self) -> Vec<String> {
        self.seen.paths()
    }

    /// Closes the listener and every connection: the service is down.
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Serves gRPC (HTTP/2, prior knowledge) until aborted; aborting drops every connection too
/// (tonic's own server would keep open connections alive after its accept loop ends).
pub(crate) async fn serve_grpc(listener: TcpListener, routes: tonic::service::Routes) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::task::yield_now().await;
            continue;
        };
        let service = TowerToHyperService::new(routes.clone());
        connections.spawn(async move {
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Seen {
    fn push(&self, path: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(path);
    }

    fn paths(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn http_check(State(s): State<HttpState>, req: Request) -> Response {
    s.seen.push(req.uri().path().to_string());
    let allowed = req.headers().get(AUTH_HEADER).and_then(|v| v.to_str().ok()) == Some(ALLOW);
    let (status, body, headers): (_, String, &[(&str, &str)]) = if allowed {
        let h: &[(&str, &str)] = &[("x-auth-user", "alice"), ("x-auth-extra", "leaked")];
        (StatusCode::OK, String::new(), h)
    } else {
        (StatusCode::FORBIDDEN, format!("denied by {}", s.name), &[])
    };
    let mut resp = (status, body).into_response();
    for (k, v) in headers {
        resp.headers_mut().insert(*k, HeaderValue::from_static(v));
    }
    if !allowed && let Ok(v) = HeaderValue::from_str(&s.name) {
        resp.headers_mut().insert("x-denied-by", v);
    }
    resp
}

struct GrpcAuth {
    name: String,
    seen: Seen,
}

#[tonic::async_trait]
impl Authorization for GrpcAuth {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let http = request
            .into_inner()
            .attributes
            .and_then(|a| a.request)
            .and_then(|r| r.http)
            .unwrap_or_default();
        self.seen.push(http.path.clone());
        let allowed = http.headers.get(AUTH_HEADER).map(String::as_str) == Some(ALLOW);
        Ok(tonic::Response::new(if allowed {
            grpc_allow()
        } else {
            grpc_deny(&self.name)
        }))
    }
}

fn header(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(EnvoyHeader {
            key: key.to_string(),
            value: value.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn grpc_allow() -> CheckResponse {
    CheckResponse {
        status: Some(RpcStatus {
            code: GRPC_OK,
            ..Default::default()
        }),
        http_response: Some(check_response::HttpResponse::OkResponse(OkHttpResponse {
            headers: vec![header("x-auth-user", "alice")],
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn grpc_deny(name: &str) -> CheckResponse {
    CheckResponse {
        status: Some(RpcStatus {
            code: GRPC_PERMISSION_DENIED,
            ..Default::default()
        }),
        http_response: Some(check_response::HttpResponse::DeniedResponse(
            DeniedHttpResponse {
                status: Some(HttpStatus { code: 403 }),
                headers: vec![header("x-denied-by", name)],
                body: format!("denied by {name}"),
            },
        )),
        ..Default::default()
    }
}

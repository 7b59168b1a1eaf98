//! A scripted API server for client wiring tests: a `kube::Client` over a `tower-test` mock,
//! and helpers to read requests and answer them.

#![allow(clippy::unwrap_used)]

use http::{Request, Response};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

pub(crate) type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
pub(crate) type Responder = tower_test::mock::SendResponse<Response<Body>>;

/// A client whose every request lands on the returned handle.
pub(crate) fn mock_client() -> (Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// The next request: method, path, query, content type and JSON body (Null when empty).
pub(crate) struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub body: Value,
}

pub(crate) async fn next(handle: &mut Handle) -> (Seen, Responder) {
    let (req, respond) = handle.next_request().await.expect("a request");
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.expect("request body").to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("a JSON body")
    };
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
    };
    (seen, respond)
}

pub(crate) fn respond(responder: Responder, code: u16, body: &Value) {
    let response = Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    responder.send_response(response);
}

/// A `Status` failure as the API server sends it.
pub(crate) fn failure(code: u16, reason: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": format!("{reason} (test)"), "reason": reason, "code": code
    })
}

/// A watch response: newline-delimited events, then the stream ends.
pub(crate) fn respond_events(responder: Responder, events: &[Value]) {
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(e).unwrap());
        body.push(b'\n');
    }
    let response = Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    responder.send_response(response);
}

/// A sink like the pipeline's index writer, without its logging: applies changes to an index
/// and counts those that changed it; publishes health and sync.
pub(crate) struct TestSink {
    pub index: std::sync::Arc<std::sync::Mutex<portolan_model::Index>>,
    pub changed: tokio::sync::watch::Sender<u64>,
    pub health: tokio::sync::watch::Sender<portolan_model::source::SourceHealth>,
    pub synced: tokio::sync::watch::Sender<bool>,
}

impl TestSink {
    pub(crate) fn new() -> Self {
        Self {
            index: std::sync::Arc::new(std::sync::Mutex::new(portolan_model::Index::new())),
            changed: tokio::sync::watch::Sender::new(0),
            health: tokio::sync::watch::Sender::new(portolan_model::source::SourceHealth::up()),
            synced: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl portolan_model::source::SourceSink for TestSink {
    fn write(&self, reporter: &str, changes: portolan_model::source::Changes) -> bool {
        let changed = changes.apply_to(reporter, &mut self.index.lock().unwrap());
        if changed {
            self.changed.send_modify(|v| *v += 1);
        }
        changed
    }

    fn health(&self, health: portolan_model::source::SourceHealth) {
        self.health.send_replace(health);
    }

    fn synced(&self) {
        self.synced.send_replace(true);
    }
}

//! A stand-in Kubernetes API server on loopback, for running the real `portolan serve
//! --kubernetes` where no cluster can be had: it lists fixed objects, holds watches open,
//! records status writes, and keeps Leases. A list can be held back (a slow API server) to
//! show that nothing is served before every watcher has listed.
//!
//! It speaks only what Portolan sends (list, watch, server-side apply on `/status` and of
//! provisioned objects, Lease get/create/replace, Secret get/create/replace by name with
//! `resourceVersion` conflicts, TokenReview create); the real-cluster test in
//! `cases/kubernetes.rs` covers the real thing. An applied Service is answered with
//! `spec.clusterIP` [`CLUSTER_IP`], as if the API server had allocated it.
//!
//! A test can change an object while Portolan watches: [`FakeApiServer::event`] sends a watch
//! event (`ADDED`, `MODIFIED`, `DELETED`) to every open watch of that collection.
//!
//! TokenReviews are answered from a table the test controls ([`FakeApiServer::token`]): a
//! token is valid for a service account and a set of audiences (authenticated only when the
//! review asks for one of them, as the real API server does), expired, or unknown (anything
//! not in the table). Every review is recorded.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// One request to `/status`, as received.
#[derive(Clone, Debug)]
pub struct StatusWrite {
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

/// The cluster IP every applied Service gets.
pub const CLUSTER_IP: &str = "10.96.0.42";

#[derive(Default)]
struct Inner {
    /// Server-side applies of whole objects (not `/status`), in order.
    applies: Vec<StatusWrite>,
    /// Items per collection path (`/api/v1/namespaces/shop/services`).
    lists: BTreeMap<String, Vec<Value>>,
    /// Collection paths whose list waits for [`FakeApiServer::release`].
    held: Vec<String>,
    status_writes: Vec<StatusWrite>,
    leases: BTreeMap<String, Value>,
    lease_version: u64,
    /// Secrets written by name (`namespace/name`): the mesh CA Secret.
    secrets: BTreeMap<String, Value>,
    secret_version: u64,
    tokens: BTreeMap<String, TokenAnswer>,
    reviews: Vec<String>,
}

/// How the stand-in API server answers a TokenReview of one token.
#[derive(Clone, Debug)]
pub enum TokenAnswer {
    /// A token of service account `namespace/name`, for these audiences.
    Valid {
        namespace: String,
        name: String,
        audiences: Vec<String>,
    },
    /// Known, but expired.
    Expired,
    /// The review fails (HTTP 500): the token cannot be verified.
    ServerError,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    released: watch::Receiver<bool>,
    /// Watch events: (collection path, event).
    events: tokio::sync::broadcast::Sender<(String, Value)>,
}

pub struct FakeApiServer {
    shared: Shared,
    release: watch::Sender<bool>,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

// === impl FakeApiServer ===

impl FakeApiServer {
    /// Starts on a free loopback port, with a kubeconfig pointing at it.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (release, released) = watch::channel(false);
        let shared = Shared {
            inner: Arc::default(),
            released,
            events: tokio::sync::broadcast::channel(64).0,
        };
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\n"
            ),
        )?;
        Ok(Self {
            shared,
            release,
            kubeconfig,
            _dir: dir,
            task,
        })
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an object to the list at `collection` (`/api/v1/services`: every namespace).
    pub fn add(&self, collection: &str, object: Value) {
        self.lock()
            .lists
            .entry(collection.to_string())
            .or_default()
            .push(object);
    }

    /// Sends a watch event (`ADDED`, `MODIFIED`, `DELETED`) for `object` to the open watches
    /// of `collection`, and keeps the list in step (a later list agrees).
    pub fn event(&self, collection: &str, kind: &str, object: Value) {
        {
            let mut inner = self.lock();
            let items = inner.lists.entry(collection.to_string()).or_default();
            let name = &object["metadata"]["name"];
            items.retain(|o| &o["metadata"]["name"] != name);
            if kind != "DELETED" {
                items.push(object.clone());
            }
        }
        let event = json!({"type": kind, "object": object});
        let _ = self.shared.events.send((collection.to_string(), event));
    }

    /// Holds back lists of `collection` until [`FakeApiServer::release`].
    pub fn hold(&self, collection: &str) {
        self.lock().held.push(collection.to_string());
    }

    pub fn release(&self) {
        self.release.send_replace(true);
    }

    pub fn status_writes(&self) -> Vec<StatusWrite> {
        self.lock().status_writes.clone()
    }

    /// Server-side applies of objects (provisioning), in order.
    pub fn applies(&self) -> Vec<StatusWrite> {
        self.lock().applies.clone()
    }

    /// Answers TokenReviews of `token` with `answer` from now on.
    pub fn token(&self, token: &str, answer: TokenAnswer) {
        self.lock().tokens.insert(token.to_string(), answer);
    }

    /// Forgets `token`: reviews of it answer "unknown" from now on (a revoked token).
    pub fn revoke(&self, token: &str) {
        self.lock().tokens.remove(token);
    }

    /// The tokens reviewed so far, in order.
    pub fn reviews(&self) -> Vec<String> {
        self.lock().reviews.clone()
    }

    /// The Secret at `namespace/name` written through the API, if any.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .secrets
            .get(&format!("{namespace}/{name}"))
            .cloned()
    }

    /// The Lease at `namespace/name`, if any.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .leases
            .get(&format!("{namespace}/{name}"))
            .cloned()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{what} not found"), "reason": "NotFound", "code": 404});
    json_response(StatusCode::NOT_FOUND, &body)
}

async fn handle(State(s): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if path.contains("/leases") {
        return lease(&s, &parts.method, &path, body);
    }
    if let Some(response) = secret(&s, &parts.method, &path, &body) {
        return response;
    }
    if path == "/apis/authentication.k8s.io/v1/tokenreviews" && parts.method == Method::POST {
        return token_review(&s, body);
    }
    match parts.method {
        Method::PATCH if path.ends_with("/status") => {
            let mut answer = body.clone();
            answer["metadata"]["resourceVersion"] = json!("2");
            answer["metadata"]["generation"] = json!(1);
            s.inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .status_writes
                .push(StatusWrite {
                    path,
                    query,
                    content_type,
                    body,
                });
            json_response(StatusCode::OK, &answer)
        }
        Method::PATCH => {
            let mut answer = body.clone();
            answer["metadata"]["resourceVersion"] = json!("1");
            if answer["kind"] == "Service" {
                answer["spec"]["clusterIP"] = json!(CLUSTER_IP);
            }
            s.inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .applies
                .push(StatusWrite {
                    path,
                    query,
                    content_type,
                    body,
                });
            json_response(StatusCode::OK, &answer)
        }
        Method::GET if query.contains("watch=true") => {
            // Held open; events the test sends for this collection, one JSON per line.
            let events = tokio_stream::wrappers::BroadcastStream::new(s.events.subscribe());
            let lines = tokio_stream::StreamExt::filter_map(events, move |e| match e {
                Ok((collection, event)) if collection == path => {
                    Some(Ok::<_, std::io::Error>(Bytes::from(format!("{event}\n"))))
                }
                _ => None,
            });
            Response::new(Body::from_stream(lines))
        }
        Method::GET => list(&s, &path).await,
        _ => not_found(&path),
    }
}

async fn list(s: &Shared, path: &str) -> Response {
    let held = s
        .inner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .held
        .iter()
        .any(|h| h == path);
    if held {
        let mut released = s.released.clone();
        let _ = released.wait_for(|r| *r).await;
    }
    let items = s
        .inner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .lists
        .get(path)
        .cloned()
        .unwrap_or_default();
    json_response(
        StatusCode::OK,
        &json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

/// `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/{name}]`
fn lease(s: &Shared, method: &Method, path: &str, body: Value) -> Response {
    let mut inner = s.inner.lock().unwrap_or_else(|p| p.into_inner());
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ns = parts.get(4).copied().unwrap_or_default();
    match (method, parts.get(6)) {
        (&Method::GET, Some(name)) => match inner.leases.get(&format!("{ns}/{name}")) {
            Some(l) => json_response(StatusCode::OK, l),
            None => not_found(path),
        },
        (&Method::POST, None) | (&Method::PUT, Some(_)) => {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut stored = body;
            inner.lease_version += 1;
            stored["metadata"]["resourceVersion"] = json!(inner.lease_version.to_string());
            inner.leases.insert(format!("{ns}/{name}"), stored.clone());
            let code = if *method == Method::POST {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            json_response(code, &stored)
        }
        _ => not_found(path),
    }
}

/// `/api/v1/namespaces/{ns}/secrets/{name}` GET and PUT, `POST .../secrets`; `None` for
/// other paths (lists and watches of Secrets are the source's). A create of an existing
/// Secret, and a replace at another `resourceVersion`, answer 409 like the real thing.
fn secret(s: &Shared, method: &Method, path: &str, body: &Value) -> Option<Response> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (ns, name) = match parts.as_slice() {
        ["api", "v1", "namespaces", ns, "secrets", name] => (*ns, Some(*name)),
        ["api", "v1", "namespaces", ns, "secrets"] if *method == Method::POST => (*ns, None),
        _ => return None,
    };
    let mut inner = s.inner.lock().unwrap_or_else(|p| p.into_inner());
    let conflict = |message: &str| {
        let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "Conflict", "code": 409});
        json_response(StatusCode::CONFLICT, &body)
    };
    let name = name
        .map(str::to_string)
        .or_else(|| body["metadata"]["name"].as_str().map(str::to_string))
        .unwrap_or_default();
    let key = format!("{ns}/{name}");
    Some(match method {
        &Method::GET => match inner.secrets.get(&key) {
            Some(secret) => json_response(StatusCode::OK, secret),
            None => not_found(path),
        },
        &Method::POST if inner.secrets.contains_key(&key) => conflict("already exists"),
        &Method::PUT
            if inner
                .secrets
                .get(&key)
                .map(|s| &s["metadata"]["resourceVersion"])
                != Some(&body["metadata"]["resourceVersion"]) =>
        {
            conflict("the object has been modified")
        }
        &Method::POST | &Method::PUT => {
            let mut stored = body.clone();
            inner.secret_version += 1;
            stored["metadata"]["resourceVersion"] = json!(inner.secret_version.to_string());
            inner.secrets.insert(key, stored.clone());
            let code = if *method == Method::POST {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            json_response(code, &stored)
        }
        _ => not_found(path),
    })
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: the review with its `status` filled in
/// from the token table.
fn token_review(s: &Shared, mut review: Value) -> Response {
    let token = review["spec"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let wanted: Vec<String> = review["spec"]["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let mut inner = s.inner.lock().unwrap_or_else(|p| p.into_inner());
    inner.reviews.push(token.clone());
    review["status"] = match inner.tokens.get(&token) {
        Some(TokenAnswer::Valid {
            namespace,
            name,
            audiences,
        }) => {
            let both: Vec<&String> = wanted.iter().filter(|a| audiences.contains(a)).collect();
            if both.is_empty() && !wanted.is_empty() {
                json!({"authenticated": false,
                    "error": format!("[invalid bearer token, token audiences {audiences:?} is invalid for the target audiences {wanted:?}]")})
            } else {
                json!({"authenticated": true, "audiences": both,
                    "user": {"username": format!("system:serviceaccount:{namespace}:{name}"),
                             "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{namespace}")]}})
            }
        }
        Some(TokenAnswer::ServerError) => {
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "etcdserver: request timed out", "code": 500});
            return json_response(StatusCode::INTERNAL_SERVER_ERROR, &status);
        }
        Some(TokenAnswer::Expired) => {
            json!({"authenticated": false, "error": "[invalid bearer token, service account token has expired]"})
        }
        None => json!({"authenticated": false, "error": "[invalid bearer token]"}),
    };
    json_response(StatusCode::CREATED, &review)
}

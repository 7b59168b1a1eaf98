//! The HTTP server: `/healthz`, `/readyz`, `/metrics` (Prometheus/OpenMetrics text) and
//! `/debug/...` pages for operators.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use portolan_model::Index;
use portolan_xds::{Cache, ResourceType};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

#[derive(Clone)]
pub struct AppState {
    /// True once every source has synced and the first snapshot is built.
    pub ready: watch::Receiver<bool>,
    pub index: Arc<Mutex<Index>>,
    pub cache: Arc<Cache>,
    pub registry: Arc<Registry>,
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/config-errors", get(config_errors))
        .route("/debug/proxies", get(proxies))
        .route("/debug/config_dump", get(config_dump))
        .with_state(state)
}

async fn readyz(State(s): State<AppState>) -> Response {
    if *s.ready.borrow() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for the config source's first full read\n",
        )
            .into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Rejected documents, and the conditions of every routing object (the file source's status).
async fn config_errors(State(s): State<AppState>) -> Json<Value> {
    let world = s.index.lock().unwrap_or_else(|p| p.into_inner()).world();
    let statuses: BTreeMap<String, _> = world
        .statuses
        .iter()
        .map(|(object, conditions)| (object.to_string(), conditions))
        .collect();
    Json(json!({"version": world.version, "errors": world.errors, "statuses": statuses}))
}

async fn proxies(State(s): State<AppState>) -> Json<Value> {
    Json(serde_json::to_value(s.cache.proxies()).unwrap_or(Value::Null))
}

/// Fields whose values never leave the process through a debug page.
const SECRET_FIELDS: &[&str] = &["private_key", "password"];

/// Replaces every secret field (at any depth) with a placeholder, as Envoy's own config dump
/// does for private keys.
fn redact_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if SECRET_FIELDS.contains(&key.as_str()) {
                    *v = Value::String("[redacted]".to_string());
                } else {
                    redact_secrets(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}

#[derive(serde::Deserialize)]
struct DumpQuery {
    group: Option<String>,
}

/// The resources the cache holds for a proxy group, as Envoy JSON.
async fn config_dump(State(s): State<AppState>, Query(q): Query<DumpQuery>) -> Response {
    let group = q
        .group
        .unwrap_or_else(|| portolan::pipeline::DEFAULT_GROUP.to_string());
    let Some(snap) = s.cache.get(&group) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no snapshot for proxy group {group:?}\n"),
        )
            .into_response();
    };
    let mut out = BTreeMap::new();
    for ty in ResourceType::ALL {
        let mut items = Vec::new();
        for (name, r) in snap.resources(ty) {
            let mut body = portolan_translate::json::any_to_json(r.any())
                .unwrap_or_else(|e| json!({"error": e.to_string()}));
            redact_secrets(&mut body);
            items.push(json!({"name": name, "version": r.version(), "resource": body}));
        }
        out.insert(
            ty.short_name(),
            json!({"version": snap.version(ty), "resources": items}),
        );
    }
    Json(json!({"group": group, "types": out})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_keys_are_redacted_at_any_depth() {
        let mut v = json!({"filter_chains": [{"transport_socket": {"typed_config": {
            "common_tls_context": {"tls_certificates": [{
                "certificate_chain": {"inline_string": "CERT"},
                "private_key": {"inline_string": "-----BEGIN PRIVATE KEY-----"}
            }]}
        }}}]});
        redact_secrets(&mut v);
        let text = v.to_string();
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(text.contains("CERT"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
}

//! The HTTP server: `/healthz`, `/readyz`, `/metrics` (Prometheus/OpenMetrics text) and
//! `/debug/...` pages for operators (the config history: [`crate::history`]); with `serve --xds-token-review`, the token exchange
//! (`POST /sts/v1/token`, see [`crate::tokens`]).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use portolan_admin::redact_secrets;
use portolan_model::Index;
use portolan_pipeline::patch::Patches;
use portolan_pipeline::programmed::Provenances;
use portolan_pipeline::{Pipeline, SourceStatus};
use portolan_xds::{Cache, ResourceType};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

#[derive(Clone)]
pub struct AppState {
    /// True once every source has synced and the World is built (the config indexed and
    /// validated; no proxy group is built before a proxy of it connects).
    pub ready: watch::Receiver<bool>,
    /// The config source: its name, whether it can be read (down: the last good config is
    /// served).
    pub source: SourceStatus,
    /// The Kubernetes watchers, when the source is a cluster.
    pub watchers: Option<watch::Receiver<portolan_k8s::SourceState>>,
    pub index: Arc<Mutex<Index>>,
    pub cache: Arc<Cache>,
    /// The build pipeline: `/debug/config_dump` of a group no proxy is connected to builds
    /// its snapshot on demand, without keeping it.
    pub pipeline: Arc<Pipeline>,
    /// The provenance of each group's snapshot (NACK attribution).
    pub provenances: Arc<Provenances>,
    /// EnvoyPatchPolicy outcomes per group (their status).
    pub patches: Arc<Patches>,
    pub registry: Arc<Registry>,
    /// The webhook's dry run, for `POST /debug/blast-radius` (`portolan validate --against`).
    pub dry_run: portolan_webhook::DryRun,
    /// Serve the token exchange (`serve --xds-token-review`).
    pub token_exchange: bool,
    /// The config history (`serve --history N`) and the options to re-translate its versions.
    pub history: Arc<portolan_pipeline::history::History>,
    pub translate: portolan_translate::Options,
    /// `POST /debug/rollback` (serving an old version needs `serve --enable-rollback`;
    /// Kubernetes mode answers the manifests to re-apply).
    pub rollback: Option<crate::history::Rollback>,
    /// The mesh CA (`/debug/ca`, `POST /debug/ca/rotate`), when mesh identities are on.
    pub ca: Option<Arc<crate::ca::CaControl>>,
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
    let router = if state.token_exchange {
        Router::new().route("/sts/v1/token", post(crate::tokens::exchange))
    } else {
        Router::new()
    };
    router
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/config-errors", get(config_errors))
        .route("/debug/sources", get(sources))
        .route("/debug/proxies", get(proxies))
        .route("/debug/config_dump", get(config_dump))
        .route("/debug/status", get(status))
        .route("/debug/history", get(crate::history::list_handler))
        .route(
            "/debug/history/{version}",
            get(crate::history::entry_handler),
        )
        .route("/debug/diff", get(crate::history::diff_handler))
        .route("/debug/rollback", post(crate::history::rollback_handler))
        .route("/debug/blast-radius", post(blast_radius))
        .route("/debug/ca", get(ca_state))
        .route("/debug/ca/rotate", post(ca_rotate))
        .with_state(state)
}

/// The files of `portolan validate --against`: (name, content) pairs of the manifests to
/// apply, and of those whose objects are to be deleted (`--delete`).
#[derive(serde::Deserialize)]
struct BlastRequest {
    #[serde(default)]
    files: Vec<(String, String)>,
    #[serde(default)]
    deletions: Vec<(String, String)>,
}

/// Validates the posted files and dry-runs them together against the current World: refused
/// (`valid: false` and field-path `errors`), or the blast radius (`crate::blast` of the
/// webhook crate) with the warnings the admission webhook would give.
async fn blast_radius(State(s): State<AppState>, Json(request): Json<BlastRequest>) -> Response {
    let answer = tokio::task::spawn_blocking(move || {
        let report = portolan_files::validate_documents(&request.files);
        let deletions = portolan_files::validate_documents(&request.deletions);
        let errors: Vec<String> = report
            .errors
            .iter()
            .chain(&deletions.errors)
            .map(ToString::to_string)
            .collect();
        if !errors.is_empty() {
            return json!({"valid": false, "errors": errors});
        }
        let objects = report.objects;
        match s.dry_run.run_all(report.valid, deletions.valid) {
            Ok(blast) => json!({
                "valid": true,
                "objects": objects,
                "deleted": deletions.objects,
                "removes": blast.removes(),
                "warnings": portolan_webhook::blast::warnings(&blast),
                "report": blast,
            }),
            Err(failure) => json!({"valid": false, "errors": [failure]}),
        }
    })
    .await;
    match answer {
        Ok(body) => Json(body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Ready once the first snapshot is built, and it stays ready while the config source is down
/// (the last good config keeps being served; failing readiness would take xDS away from the
/// proxies too). The body says when the source is down; `/debug/sources` tells why.
async fn readyz(State(s): State<AppState>) -> Response {
    if *s.ready.borrow() {
        let health = s.source.health.borrow().clone();
        match health.error {
            Some(e) if !health.up => (
                StatusCode::OK,
                format!("ready; config source down, serving the last good config: {e}\n"),
            )
                .into_response(),
            _ => match s.history.rolled_back() {
                Some(r) => (StatusCode::OK, format!("ready; {r}\n")).into_response(),
                None => (StatusCode::OK, "ready\n").into_response(),
            },
        }
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
/// NACKs in force are attributed to objects as `Programmed=False` (see
/// `portolan_pipeline::programmed`). EnvoyPatchPolicies get their `Accepted` and `Programmed`
/// from what their patches did to each group (`portolan_pipeline::patch`), and `patches`
/// lists, per group, each policy's outcome: the resources each patch touched, or the error.
async fn config_errors(State(s): State<AppState>) -> Json<Value> {
    let world = s.index.lock().unwrap_or_else(|p| p.into_inner()).world();
    let nacks = portolan_pipeline::programmed::nacks(&s.cache, &s.provenances, &s.cache.proxies());
    let mut statuses: BTreeMap<String, Vec<portolan_model::Condition>> = world
        .statuses
        .iter()
        .map(|(object, conditions)| (object.to_string(), conditions.clone()))
        .collect();
    for (object, conditions) in s.patches.conditions(&world) {
        let entry = statuses.entry(object.to_string()).or_default();
        entry.retain(|c| c.type_ != portolan_model::ConditionType::Accepted);
        entry.extend(conditions);
    }
    for (object, condition) in portolan_pipeline::programmed::conditions(&world, &nacks) {
        let entry = statuses.entry(object).or_default();
        entry.retain(|c| c.type_ != condition.type_);
        entry.push(condition);
    }
    Json(json!({
        "version": world.version,
        "errors": world.errors,
        "statuses": statuses,
        "nacks": nacks,
        "patches": s.patches.outcomes(),
    }))
}

/// `{"KIND NAMESPACE/NAME": status}` of every Gateway API object Portolan owns status for,
/// shaped as it would be written to Kubernetes (cluster-scoped kinds: `KIND NAME`), with
/// NACKs in force and each Gateway's `portolan.dev/Converged`.
async fn status(State(s): State<AppState>) -> Json<Value> {
    let world = s.index.lock().unwrap_or_else(|p| p.into_inner()).world();
    let proxies = s.cache.proxies();
    let nacks = portolan_pipeline::programmed::nacks(&s.cache, &s.provenances, &proxies);
    let nacked = portolan_pipeline::programmed::conditions(&world, &nacks);
    let convergence = portolan_pipeline::programmed::convergence(&s.cache, &proxies);
    let mut statuses =
        portolan_pipeline::programmed::api_statuses(&world, &nacked, &nacks, &convergence);
    statuses.extend(s.patches.api_statuses(&world));
    let map: serde_json::Map<String, Value> = statuses
        .iter()
        .map(|(object, status)| {
            let value = serde_json::to_value(status).unwrap_or(Value::Null);
            (status_key(object), value)
        })
        .collect();
    Json(Value::Object(map))
}

/// `KIND NAMESPACE/NAME`, or `KIND NAME` for a cluster-scoped kind.
pub fn status_key(object: &portolan_api::ObjectRef) -> String {
    if object.namespace.is_empty() {
        format!("{} {}", object.kind, object.name)
    } else {
        object.to_string()
    }
}

/// The config sources and whether each can be read (for a cluster: every watcher, whether
/// it has listed, its errors so far).
async fn sources(State(s): State<AppState>) -> Json<Value> {
    let health = s.source.health.borrow().clone();
    let mut source = json!({
        "name": s.source.name,
        "up": health.up,
        "error": health.error,
    });
    if let Some(watchers) = &s.watchers {
        source["watchers"] = json!(watchers.borrow().watchers);
    }
    Json(json!({"sources": [source]}))
}

async fn proxies(State(s): State<AppState>) -> Json<Value> {
    Json(serde_json::to_value(s.cache.proxies()).unwrap_or(Value::Null))
}

#[derive(serde::Deserialize)]
struct DumpQuery {
    group: Option<String>,
}

/// The resources a proxy group is served, as Envoy JSON: the cache's snapshot while a proxy
/// of the group is connected (`"cached": true`), else one built from the current config as
/// its first proxy would get it, and not kept (`"cached": false`).
async fn config_dump(State(s): State<AppState>, Query(q): Query<DumpQuery>) -> Response {
    let group = q
        .group
        .unwrap_or_else(|| portolan_pipeline::DEFAULT_GROUP.to_string());
    if !*s.ready.borrow() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the config sources have not all been read yet\n",
        )
            .into_response();
    }
    let served = match s.pipeline.clone().snapshot_for(group.clone()).await {
        Ok(served) => served,
        Err(e) => {
            return (
                StatusCode::NOT_FOUND,
                format!("no snapshot for proxy group {group:?}: {e}\n"),
            )
                .into_response();
        }
    };
    let snap = served.snapshot;
    let mut out = BTreeMap::new();
    for ty in ResourceType::SERVED {
        let mut items = Vec::new();
        for (name, r) in snap.resources(ty) {
            let mut body = portolan_envoy_json::any_to_json(&r.to_any())
                .unwrap_or_else(|e| json!({"error": e.to_string()}));
            redact_secrets(&mut body);
            items.push(json!({"name": name, "version": r.version(), "resource": body}));
        }
        out.insert(
            ty.short_name(),
            json!({"version": snap.version(ty), "resources": items}),
        );
    }
    Json(json!({"group": group, "cached": served.cached, "types": out})).into_response()
}

/// `GET /debug/ca`: the mesh CA's rotation phase, trust bundle, signing root and the
/// workload certificates held (fingerprints only, never keys).
async fn ca_state(State(state): State<AppState>) -> Response {
    match &state.ca {
        Some(ca) => Json(ca.debug()).into_response(),
        None => no_mesh_ca(),
    }
}

/// `POST /debug/ca/rotate`: starts a CA rotation to a generated root (`serve
/// --enable-ca-rotation`); 409 while one is under way.
async fn ca_rotate(State(state): State<AppState>) -> Response {
    let Some(ca) = &state.ca else {
        return no_mesh_ca();
    };
    match ca.rotate().await {
        Ok(_) => (StatusCode::ACCEPTED, Json(ca.debug())).into_response(),
        Err(e) => (e.status(), Json(json!({"error": e.to_string()}))).into_response(),
    }
}

fn no_mesh_ca() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no mesh CA (serve --identity off)"})),
    )
        .into_response()
}

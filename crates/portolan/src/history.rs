//! Config history on the HTTP port and its CLI: `GET /debug/history`,
//! `GET /debug/history/{version}`, `GET /debug/diff?from=&to=&group=` (the Envoy-level
//! difference, re-translated from the kept Worlds and rendered as `portolan render` renders),
//! `POST /debug/rollback?to=` (file mode, with `serve --enable-rollback`, serves that version;
//! Kubernetes mode answers the manifests to re-apply and changes nothing), and the
//! `portolan history`, `diff` and `rollback` commands that call them.

use crate::cli::{DiffArgs, HistoryArgs, RollbackArgs};
use crate::http::AppState;
use anyhow::Context;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use portolan_model::World;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

/// What `POST /debug/rollback` needs.
#[derive(Clone)]
pub struct Rollback {
    pub pipeline: Arc<portolan_pipeline::Pipeline>,
    /// False in Kubernetes mode: the cluster is the source of truth, nothing is served from
    /// the history; a rollback answers the manifests to re-apply instead (read-only, so it
    /// needs no `--enable-rollback`).
    pub file_mode: bool,
    /// `serve --enable-rollback`: file mode may serve an old version.
    pub enabled: bool,
}

// === server side ===

pub async fn list_handler(State(s): State<AppState>) -> Json<Value> {
    let entries = s.history.entries();
    Json(json!({
        "capacity_note": "newest last",
        "rolled_back": s.history.rolled_back().map(|r| json!({
            "to": r.to, "source": r.source, "message": r.to_string(),
        })),
        "versions": entries.iter().map(|e| summary(e)).collect::<Vec<_>>(),
    }))
}

pub async fn entry_handler(State(s): State<AppState>, Path(version): Path<u64>) -> Response {
    match s.history.get(version) {
        Some(e) => Json(summary(&e)).into_response(),
        None => not_kept(version),
    }
}

fn summary(e: &portolan_pipeline::history::Entry) -> Value {
    serde_json::to_value(e).unwrap_or(Value::Null)
}

fn not_kept(version: u64) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("version {version} is not in the history (see GET /debug/history)\n"),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
pub struct DiffQuery {
    from: u64,
    to: u64,
    group: Option<String>,
}

pub async fn diff_handler(State(s): State<AppState>, Query(q): Query<DiffQuery>) -> Response {
    let group = q
        .group
        .unwrap_or_else(|| portolan_pipeline::DEFAULT_GROUP.to_string());
    let (Some(from), Some(to)) = (s.history.get(q.from), s.history.get(q.to)) else {
        let missing = if s.history.get(q.from).is_none() {
            q.from
        } else {
            q.to
        };
        return not_kept(missing);
    };
    let rendered = render(&from.world, &group, &s.translate)
        .and_then(|a| Ok((a, render(&to.world, &group, &s.translate)?)));
    match rendered {
        Ok((a, b)) => Json(json!({
            "group": group, "from": q.from, "to": q.to, "types": diff_resources(&a, &b),
        }))
        .into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e:#}\n")).into_response(),
    }
}

/// The group's Envoy resources in `world`, as `portolan render` prints them.
fn render(
    world: &Arc<World>,
    group: &str,
    options: &portolan_translate::Options,
) -> anyhow::Result<Value> {
    let key = portolan_pipeline::groups::group_for_name(group, world)
        .with_context(|| format!("group {group:?}"))?;
    let resources = portolan_translate::translate(world, &key, options);
    Ok(portolan_translate::json::resources_to_json(&resources)?)
}

/// Per type: the resources added, removed, and changed (with a unified diff of their JSON).
pub fn diff_resources(from: &Value, to: &Value) -> Value {
    let mut types = serde_json::Map::new();
    for ty in ["clusters", "endpoints", "listeners", "routes", "secrets"] {
        let a = by_name(from.get(ty));
        let b = by_name(to.get(ty));
        let added: Vec<&String> = b.keys().filter(|n| !a.contains_key(*n)).collect();
        let removed: Vec<&String> = a.keys().filter(|n| !b.contains_key(*n)).collect();
        let changed: Vec<Value> = b
            .iter()
            .filter_map(|(name, new)| {
                let old = a.get(name)?;
                (old != new).then(|| json!({"name": name, "diff": text_diff(old, new)}))
            })
            .collect();
        if !(added.is_empty() && removed.is_empty() && changed.is_empty()) {
            types.insert(
                ty.to_string(),
                json!({"added": added, "removed": removed, "changed": changed}),
            );
        }
    }
    Value::Object(types)
}

/// A resource list keyed by its name (`name`, or `clusterName` for assignments).
fn by_name(list: Option<&Value>) -> BTreeMap<String, &Value> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let name = r
                .get("name")
                .or_else(|| r.get("clusterName"))
                .or_else(|| r.get("cluster_name"))?
                .as_str()?;
            Some((name.to_string(), r))
        })
        .collect()
}

fn text_diff(old: &Value, new: &Value) -> String {
    let a = serde_json::to_string_pretty(old).unwrap_or_default();
    let b = serde_json::to_string_pretty(new).unwrap_or_default();
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header("from", "to")
        .to_string()
}

#[derive(serde::Deserialize)]
pub struct RollbackQuery {
    to: u64,
}

pub async fn rollback_handler(
    State(s): State<AppState>,
    Query(q): Query<RollbackQuery>,
) -> Response {
    let Some(rollback) = &s.rollback else {
        return (
            StatusCode::FORBIDDEN,
            "rollback is disabled: start serve with --enable-rollback\n",
        )
            .into_response();
    };
    let Some(entry) = s.history.get(q.to) else {
        return not_kept(q.to);
    };
    if !rollback.file_mode {
        return reapply_plan(&s, &entry);
    }
    if !rollback.enabled {
        return (
            StatusCode::FORBIDDEN,
            "rollback is disabled: start serve with --enable-rollback\n",
        )
            .into_response();
    }
    let rolled = s.history.set_rolled_back(q.to);
    rollback
        .pipeline
        .clone()
        .roll_back(entry.world.clone())
        .await;
    tracing::warn!(to = rolled.to, source = rolled.source, "{rolled}");
    Json(json!({"to": rolled.to, "source": rolled.source, "message": rolled.to_string()}))
        .into_response()
}

/// Kubernetes mode: what to re-apply and delete to bring the cluster back to `entry`,
/// changing nothing here.
fn reapply_plan(s: &AppState, entry: &portolan_pipeline::history::Entry) -> Response {
    let Some(head) = s.history.head() else {
        return not_kept(entry.version);
    };
    let plan = portolan_pipeline::history::reapply(&entry.world, &head.world);
    let message = format!(
        "Kubernetes mode: nothing was changed here (the cluster is the source of truth). To return to version {}, re-apply {} object(s) and delete {} (version {} is served now).",
        entry.version,
        plan.apply.len(),
        plan.delete.len(),
        head.version
    );
    Json(json!({
        "mode": "kubernetes",
        "to": entry.version,
        "source": head.version,
        "message": message,
        "apply": plan.apply,
        "delete": plan.delete,
        "not_kept": plan.not_kept,
    }))
    .into_response()
}

// === CLI ===

fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

fn get(url: &str) -> anyhow::Result<Value> {
    block_on(async {
        let response = reqwest::get(url).await?;
        answer(response).await
    })
    .with_context(|| format!("GET {url}"))
}

async fn answer(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("{status}: {}", body.trim());
    }
    Ok(response.json::<Value>().await?)
}

/// `portolan history`.
pub fn list(args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let url = format!("{}/debug/history", args.server.trim_end_matches('/'));
    let body = get(&url)?;
    if args.json {
        crate::output::println(&serde_json::to_string_pretty(&body)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(message) = body["rolled_back"]["message"].as_str() {
        crate::output::println(&format!("{message}\n"))?;
    }
    let mut out = format!("{:<8} {:<12} {:<8} CHANGES\n", "VERSION", "TIME", "GROUPS");
    for v in body["versions"].as_array().into_iter().flatten() {
        let changes: Vec<String> = v["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{} {}",
                    c["change"].as_str().unwrap_or(""),
                    c["object"].as_str().unwrap_or("")
                )
            })
            .collect();
        let groups = v["groups"].as_object().map_or(0, |g| g.len());
        out.push_str(&format!(
            "{:<8} {:<12} {:<8} {}\n",
            v["version"].as_u64().unwrap_or(0),
            v["time"].as_u64().unwrap_or(0),
            groups,
            changes.join(", ")
        ));
    }
    crate::output::print(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// `portolan diff`.
pub fn diff(args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let url = format!(
        "{}/debug/diff?from={}&to={}&group={}",
        args.server.trim_end_matches('/'),
        args.from,
        args.to,
        args.group
    );
    let body = get(&url)?;
    if args.json {
        crate::output::println(&serde_json::to_string_pretty(&body)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::output::print(&diff_text(&body))?;
    Ok(ExitCode::SUCCESS)
}

fn diff_text(body: &Value) -> String {
    let mut out = format!(
        "group {}: version {} -> {}\n",
        body["group"].as_str().unwrap_or(""),
        body["from"],
        body["to"]
    );
    let types = body["types"].as_object();
    if types.is_none_or(|t| t.is_empty()) {
        out.push_str("no Envoy-level difference\n");
    }
    for (ty, d) in types.into_iter().flatten() {
        for name in d["added"].as_array().into_iter().flatten() {
            out.push_str(&format!("+ {ty} {}\n", name.as_str().unwrap_or("")));
        }
        for name in d["removed"].as_array().into_iter().flatten() {
            out.push_str(&format!("- {ty} {}\n", name.as_str().unwrap_or("")));
        }
        for c in d["changed"].as_array().into_iter().flatten() {
            out.push_str(&format!("~ {ty} {}\n", c["name"].as_str().unwrap_or("")));
            out.push_str(c["diff"].as_str().unwrap_or(""));
        }
    }
    out
}

/// `portolan rollback`.
pub fn rollback(args: &RollbackArgs) -> anyhow::Result<ExitCode> {
    let url = format!(
        "{}/debug/rollback?to={}",
        args.server.trim_end_matches('/'),
        args.to
    );
    let body = block_on(async {
        let response = reqwest::Client::new().post(&url).send().await?;
        answer(response).await
    })
    .with_context(|| format!("POST {url}"))?;
    if body["mode"] == "kubernetes" {
        return print_reapply(&body);
    }
    crate::output::println(body["message"].as_str().unwrap_or("rolled back"))?;
    Ok(ExitCode::SUCCESS)
}

/// Kubernetes mode: the documents to re-apply on stdout (pipe them to `kubectl apply -f -`),
/// what to delete and what the history does not keep on stderr.
fn print_reapply(body: &Value) -> anyhow::Result<ExitCode> {
    crate::output::print(&reapply_yaml(body)?)?;
    eprintln!("{}", body["message"].as_str().unwrap_or_default());
    for d in body["delete"].as_array().into_iter().flatten() {
        eprintln!("then delete: {}", d["command"].as_str().unwrap_or_default());
    }
    for o in body["not_kept"].as_array().into_iter().flatten() {
        eprintln!(
            "not kept (restore it yourself): {}",
            o.as_str().unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan's documents as one YAML stream.
fn reapply_yaml(body: &Value) -> anyhow::Result<String> {
    let mut out = String::new();
    for m in body["apply"].as_array().into_iter().flatten() {
        out.push_str("---\n");
        out.push_str(&format!("# {}\n", m["object"].as_str().unwrap_or_default()));
        out.push_str(&serde_saphyr::to_string(&m["manifest"]).context("writing YAML")?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_added_removed_changed() {
        let a = json!({"routes": [{"name": "r1", "x": 1}, {"name": "r2"}], "clusters": []});
        let b = json!({"routes": [{"name": "r1", "x": 2}, {"name": "r3"}], "clusters": []});
        let d = diff_resources(&a, &b);
        assert_eq!(d["routes"]["added"], json!(["r3"]));
        assert_eq!(d["routes"]["removed"], json!(["r2"]));
        let diff = d["routes"]["changed"][0]["diff"].as_str().unwrap_or("");
        assert!(
            diff.contains("-  \"x\": 1") && diff.contains("+  \"x\": 2"),
            "{diff}"
        );
        assert!(d.get("clusters").is_none());
        let a = json!({"endpoints": [{"cluster_name": "c1"}]});
        let b = json!({"endpoints": [{"cluster_name": "c2"}]});
        let d = diff_resources(&a, &b);
        assert_eq!(d["endpoints"]["added"], json!(["c2"]));
        assert_eq!(d["endpoints"]["removed"], json!(["c1"]));
    }
}

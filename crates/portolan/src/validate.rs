//! `portolan validate PATH...`: the same validation the server applies, for CI and editors.
//!
//! Errors (exit 1) are documents Portolan would reject. Warnings are references that do not
//! resolve among the given files (a route naming a Service that is not there, say): they are
//! printed, but do not fail the run, since the missing objects may live elsewhere.

use crate::cli::{ReportFormat, ValidateArgs};
use crate::output::println;
use anyhow::Context;
use portolan_model::Index;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    if let Some(server) = &args.against {
        return against(args, server);
    }
    let report = portolan_files::validate_paths(&args.paths)?;
    for e in &report.errors {
        println(&e.to_string())?;
    }
    let mut index = Index::new();
    for object in report.valid {
        index.apply(object);
    }
    let world = index.world();
    let mut warnings = 0;
    for (object, conditions) in &world.statuses {
        for c in conditions.iter().filter(|c| !c.status) {
            warnings += 1;
            println(&format!(
                "warning: {object}: {}={} ({}): {}",
                c.type_, c.status, c.reason, c.message
            ))?;
        }
    }
    let summary = format!(
        "{} objects valid, {} errors, {warnings} warnings",
        report.objects,
        report.errors.len()
    );
    println(&summary)?;
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `validate --against URL`: the files' blast radius against a running server. Exit 1 when
/// the server refuses a file (field-path errors printed), 2 with `--fail-on-removal` when the
/// change removes a cluster, route configuration or virtual host, 0 otherwise.
fn against(args: &ValidateArgs, server: &str) -> anyhow::Result<ExitCode> {
    let (mut files, mut deletions) = (Vec::new(), Vec::new());
    for path in &args.paths {
        collect(path, &mut files)?;
    }
    for path in &args.delete {
        collect(path, &mut deletions)?;
    }
    let url = format!("{}/debug/blast-radius", server.trim_end_matches('/'));
    let answer: Value = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(async {
            let response = reqwest::Client::new()
                .post(&url)
                .json(&json!({ "files": files, "deletions": deletions }))
                .send()
                .await?
                .error_for_status()?;
            response.json::<Value>().await
        })
        .with_context(|| format!("POST {url}"))?;
    match args.output {
        ReportFormat::Json => println(&serde_json::to_string_pretty(&answer)?)?,
        ReportFormat::Text => print_text(&answer)?,
    }
    let valid = answer["valid"].as_bool().unwrap_or(false);
    let removes = answer["removes"].as_bool().unwrap_or(false);
    Ok(if !valid {
        ExitCode::FAILURE
    } else if removes && args.fail_on_removal {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_text(answer: &Value) -> anyhow::Result<()> {
    let lines = |key: &str| -> Vec<String> {
        answer[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    for e in lines("errors") {
        println(&format!("error: {e}"))?;
    }
    for w in lines("warnings") {
        println(&w)?;
    }
    Ok(())
}

/// The (name, content) of a file, or of every YAML/JSON file under a directory.
fn collect(path: &Path, files: &mut Vec<(String, String)>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            let manifest = matches!(
                entry.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            );
            if entry.is_dir() || manifest {
                collect(&entry, files)?;
            }
        }
        return Ok(());
    }
    let content =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    files.push((path.display().to_string(), content));
    Ok(())
}

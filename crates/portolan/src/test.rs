//! `portolan test`: route tests as data. Reads RouteTest documents, renders each suite's proxy
//! group from the manifests, and runs the cases through stock Envoy (`--envoy`, `ENVOY_BIN`,
//! or `envoy` on PATH) with stand-in upstreams; without Envoy it evaluates the rendered route
//! tables and says so. Exit 0 when every case passes, 1 otherwise.

use crate::cli::{ReportFormat, TestArgs};
use crate::render::Loaded;
use anyhow::Context;
use portolan_routetest::report;
use portolan_routetest::run::{self, Settings, SuiteResult};
use portolan_routetest::spec::{self, Suite};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let suites = read_suites(args)?;
    if suites.is_empty() {
        anyhow::bail!(
            "no RouteTest documents found (kind: RouteTest, apiVersion: portolan.dev/v1alpha1)"
        );
    }
    let loaded = Loaded::read(&args.config_dir)?;
    let options = args.translate.options();
    let settings = Settings {
        mesh_port: args.translate.mesh_port,
        cluster_domain: args.translate.cluster_domain.clone(),
        trust_domain: args.translate.trust_domain.clone(),
    };
    let mut rendered = BTreeMap::new();
    for s in &suites {
        if !rendered.contains_key(&s.spec.group) {
            let json = loaded
                .render(&s.spec.group, &options)
                .with_context(|| format!("{}: RouteTest {}: spec.group", s.location, s.name))?;
            rendered.insert(s.spec.group.clone(), json);
        }
    }
    let envoy = if args.no_envoy {
        None
    } else {
        find_envoy(args.envoy.as_deref())
    };
    if envoy.is_none() && !args.no_envoy {
        eprintln!(
            "note: no Envoy binary (--envoy, ENVOY_BIN or `envoy` on PATH): evaluating the rendered route tables without Envoy"
        );
    }
    let results = run_all(&suites, &rendered, &settings, envoy.as_deref())?;
    let text = match args.output {
        ReportFormat::Text => report::text(&results),
        ReportFormat::Json => serde_json::to_string_pretty(&report::json(&results))?,
    };
    crate::output::println(text.trim_end())?;
    let (_, failed) = report::totals(&results);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_all(
    suites: &[Suite],
    rendered: &BTreeMap<String, serde_json::Value>,
    settings: &Settings,
    envoy: Option<&Path>,
) -> anyhow::Result<Vec<SuiteResult>> {
    let Some(envoy) = envoy else {
        return Ok(suites
            .iter()
            .map(|s| run::with_evaluator(s, &rendered[&s.spec.group], settings))
            .collect());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut results = Vec::new();
        for s in suites {
            let r = run::with_envoy(envoy, s, &rendered[&s.spec.group], settings)
                .await
                .with_context(|| format!("{}: RouteTest {}", s.location, s.name))?;
            results.push(r);
        }
        Ok(results)
    })
}

/// `--envoy`/`ENVOY_BIN` when given (it must exist), else `envoy` on PATH.
fn find_envoy(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = given {
        return Some(p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("envoy"))
        .find(|p| p.is_file())
}

/// RouteTest documents of the given files and directories (default: the config directory).
fn read_suites(args: &TestArgs) -> anyhow::Result<Vec<Suite>> {
    let roots = if args.tests.is_empty() {
        vec![args.config_dir.clone()]
    } else {
        args.tests.clone()
    };
    let mut suites = Vec::new();
    for file in roots.iter().flat_map(|r| yaml_files(r)) {
        suites.extend(spec::read_file(&file)?);
    }
    Ok(suites)
}

/// A file, or every `.yaml`/`.yml` file under a directory, sorted.
fn yaml_files(root: &Path) -> Vec<PathBuf> {
    if !root.is_dir() {
        return vec![root.to_path_buf()];
    }
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for p in entries.flatten().map(|e| e.path()) {
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

//! Running suites: each case's request through Envoy or the evaluator, then its checks.

use crate::envoy::EnvoyRun;
use crate::error::RouteTestError;
use crate::spec::{Case, Suite};
use crate::table::{HttpRequest, Rendered};
use crate::verdict::{self, Check, Mode, Outcome};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

/// Translation facts the checks need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The mesh outbound listener's port: where requests without a port arrive.
    pub mesh_port: u16,
    /// The cluster domain of Service host names.
    pub cluster_domain: String,
    /// The SPIFFE trust domain of callers' identities.
    pub trust_domain: String,
}

/// The verdict on one case.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub pass: bool,
    pub checks: Vec<Check>,
}

/// The verdicts on one suite.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteResult {
    pub location: String,
    pub name: String,
    pub group: String,
    pub mode: Mode,
    /// Listeners the test Envoy did not run, with why.
    pub skipped: Vec<String>,
    /// HTTP filters the evaluator does not model, as `LISTENER: FILTER` (empty through Envoy).
    pub unmodelled: Vec<String>,
    pub cases: Vec<CaseResult>,
}

/// The request of a case, header names in lower case.
pub fn request_of(case: &Case, trust_domain: &str) -> HttpRequest {
    let r = &case.request;
    HttpRequest {
        host: r.host.clone(),
        method: r.method.to_ascii_uppercase(),
        path: r.path.clone(),
        headers: r
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
        port: r.port,
        peer: r.source.as_ref().map(|s| s.principal(trust_domain)),
    }
}

fn result(case: &Case, out: &Outcome, s: &Settings) -> CaseResult {
    let checks = verdict::check(&case.expect, out, &s.cluster_domain);
    CaseResult {
        name: case.name.clone(),
        pass: checks.iter().all(|c| c.ok),
        checks,
    }
}

/// Evaluates a suite on the rendered route tables, without Envoy.
pub fn with_evaluator(suite: &Suite, rendered: &Value, s: &Settings) -> SuiteResult {
    let tables = Rendered::from_json(rendered);
    let cases = suite
        .spec
        .cases
        .iter()
        .map(|c| {
            let out = verdict::predicted(&tables, &request_of(c, &s.trust_domain), s.mesh_port);
            result(c, &out, s)
        })
        .collect();
    SuiteResult {
        location: suite.location.clone(),
        name: suite.name.clone(),
        group: suite.spec.group.clone(),
        mode: Mode::Evaluator,
        skipped: Vec::new(),
        unmodelled: tables.unmodelled_filters(),
        cases,
    }
}

/// Runs a suite through stock Envoy on the rendered configuration.
pub async fn with_envoy(
    envoy: &Path,
    suite: &Suite,
    rendered: &Value,
    s: &Settings,
) -> Result<SuiteResult, RouteTestError> {
    let run = EnvoyRun::start(envoy, rendered, &suite.spec.group).await?;
    let mut cases = Vec::new();
    for c in &suite.spec.cases {
        let out = run.send(&request_of(c, &s.trust_domain), s.mesh_port).await;
        cases.push(result(c, &out, s));
    }
    let skipped = run.skipped.clone();
    run.stop().await;
    Ok(SuiteResult {
        location: suite.location.clone(),
        name: suite.name.clone(),
        group: suite.spec.group.clone(),
        mode: Mode::Envoy,
        skipped,
        unmodelled: Vec::new(),
        cases,
    })
}

//! The `RouteTest` document: a proxy group, requests sent through that group's proxy, and what
//! each must meet. Reading test files (YAML, several documents, other kinds skipped) with
//! errors that name the file, the document and the field path.

use crate::error::RouteTestError;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// `apiVersion` of a RouteTest document.
pub const API_VERSION: &str = "portolan.dev/v1alpha1";
/// `kind` of a RouteTest document.
pub const KIND: &str = "RouteTest";

/// One RouteTest document, where it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Suite {
    /// `file#doc` (0-based document index).
    pub location: String,
    pub name: String,
    pub spec: SuiteSpec,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuiteSpec {
    /// The proxy group, in the grammar of `portolan render --cluster`: a node cluster
    /// (`default`, `ingress`) or a whole group key (`web;l.app=web;node-ns=shop`).
    #[serde(default = "default_group")]
    pub group: String,
    pub cases: Vec<Case>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub request: Request,
    pub expect: Expect,
}

/// A request as a client of the proxy sends it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    /// The `Host` (`:authority`) header, with or without `:port`.
    pub host: String,
    #[serde(default = "default_method")]
    pub method: String,
    /// Path and query, e.g. `/api/items?beta=1`.
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The listener port it arrives on; default: the mesh outbound port (15001), or the only
    /// HTTP listener the group has.
    #[serde(default)]
    pub port: Option<u16>,
    /// The caller's mesh identity (for AccessPolicy on a workload's inbound listener).
    #[serde(default)]
    pub source: Option<Source>,
}

/// A caller's mesh identity: a namespace and service account, or a whole SPIFFE ID.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    pub namespace: Option<String>,
    /// Default `default`.
    pub service_account: Option<String>,
    /// `spiffe://TRUST_DOMAIN/ns/NS/sa/SA`, instead of namespace and service account.
    pub principal: Option<String>,
}

// === impl Source ===

impl Source {
    /// The SPIFFE ID this source stands for.
    pub fn principal(&self, trust_domain: &str) -> String {
        if let Some(p) = &self.principal {
            return p.clone();
        }
        let ns = self.namespace.as_deref().unwrap_or("default");
        let sa = self.service_account.as_deref().unwrap_or("default");
        format!("spiffe://{trust_domain}/ns/{ns}/sa/{sa}")
    }
}

/// What must hold; every field is optional, only what is written is checked.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expect {
    /// HTTP status the client gets.
    pub status: Option<u16>,
    /// The one backend that answers every such request (no split).
    pub backend: Option<Backend>,
    /// The weighted set of backends the request may go to (a split), exactly.
    pub backends: Option<Vec<Backend>>,
    /// The `Location` of a redirect.
    pub redirect: Option<String>,
    /// Body of a direct response.
    pub body: Option<String>,
    /// Headers the backend receives (exact values; other headers are not checked).
    #[serde(default)]
    pub request_headers: BTreeMap<String, String>,
    /// Headers the backend must not receive.
    #[serde(default)]
    pub request_headers_absent: Vec<String>,
    /// Headers on the response the client gets (exact values).
    #[serde(default)]
    pub response_headers: BTreeMap<String, String>,
    /// Headers the response must not carry.
    #[serde(default)]
    pub response_headers_absent: Vec<String>,
    /// The path the backend receives (after rewrites).
    pub upstream_path: Option<String>,
    /// The `Host` the backend receives (after rewrites).
    pub upstream_host: Option<String>,
    /// Route timeout in force, as a duration (`5s`, `500ms`), or `none`.
    pub timeout: Option<String>,
    /// Retry policy in force; `attempts: 0` means none.
    pub retries: Option<Retries>,
    /// The name of the route that matches (`NAMESPACE/ROUTE/RULE` for TrafficRoute rules).
    pub route: Option<String>,
    /// Whether AccessPolicy lets the request through (`false`: Envoy's RBAC answers 403).
    pub allowed: Option<bool>,
}

/// A Service (or ExternalService host) port and subset, as written in the expectation.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    /// `reviews`, `reviews.shop`, a full name, or an ExternalService host.
    #[serde(default)]
    pub service: Option<String>,
    /// Namespace when `service` is a short name; default `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    pub port: Option<u16>,
    /// The subset; absent means the whole Service.
    pub subset: Option<String>,
    /// The Envoy cluster name, instead of service/port/subset.
    pub cluster: Option<String>,
    /// Weight in a split (`backends` only).
    pub weight: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retries {
    pub attempts: u32,
    pub per_try_timeout: Option<String>,
    pub retry_on: Option<String>,
}

fn default_group() -> String {
    "default".to_string()
}

fn default_method() -> String {
    "GET".to_string()
}

fn default_path() -> String {
    "/".to_string()
}

/// The envelope around a spec.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    metadata: Metadata,
    spec: SuiteSpec,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
}

// === reading ===

/// Whether a decoded document is a RouteTest.
pub fn is_route_test(value: &Value) -> bool {
    value.get("kind").and_then(Value::as_str) == Some(KIND)
        && value.get("apiVersion").and_then(Value::as_str) == Some(API_VERSION)
}

/// Reads every RouteTest document of a file (other documents are skipped).
pub fn read_file(path: &Path) -> Result<Vec<Suite>, RouteTestError> {
    let text = std::fs::read_to_string(path).map_err(|e| RouteTestError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse(&path.display().to_string(), &text)
}

/// Parses a YAML stream; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Vec<Suite>, RouteTestError> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| RouteTestError::Syntax {
            file: file.to_string(),
            message: e.to_string(),
        })?;
    let mut suites = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        if !is_route_test(&doc) {
            continue;
        }
        let location = format!("{file}#{i}");
        suites.push(decode(location, doc)?);
    }
    Ok(suites)
}

fn decode(location: String, doc: Value) -> Result<Suite, RouteTestError> {
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let invalid = |path: String, message: String| RouteTestError::Invalid {
        location: location.clone(),
        name: name.clone(),
        path,
        message,
    };
    let parsed: Document = serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        invalid(path, e.into_inner().to_string())
    })?;
    if let Some((path, message)) = check(&parsed.spec) {
        return Err(invalid(path, message));
    }
    Ok(Suite {
        location: location.clone(),
        name: parsed.metadata.name,
        spec: parsed.spec,
    })
}

/// What serde cannot say: a first error as (field path, message).
fn check(spec: &SuiteSpec) -> Option<(String, String)> {
    if spec.cases.is_empty() {
        return Some(("spec.cases".into(), "at least one case is needed".into()));
    }
    for (i, case) in spec.cases.iter().enumerate() {
        let at = |field: &str| format!("spec.cases[{i}].{field}");
        if let Some(s) = &case.request.source
            && s.principal.is_some()
            && (s.namespace.is_some() || s.service_account.is_some())
        {
            return Some((
                at("request.source"),
                "give `principal` or `namespace`/`serviceAccount`, not both".into(),
            ));
        }
        if case.request.host.is_empty() {
            return Some((at("request.host"), "must not be empty".into()));
        }
        if !case.request.path.starts_with('/') {
            return Some((at("request.path"), "must start with `/`".into()));
        }
        let e = &case.expect;
        if e.backend.is_some() && e.backends.is_some() {
            return Some((
                at("expect.backends"),
                "give `backend` (one) or `backends` (a split), not both".into(),
            ));
        }
        for (field, d) in [("timeout", &e.timeout)] {
            if let Some(d) = d
                && d != "none"
                && parse_duration(d).is_none()
            {
                return Some((
                    at(&format!("expect.{field}")),
                    format!("{d:?} is not a duration like 500ms, 5s or 1m, nor `none`"),
                ));
            }
        }
        if let Some(t) = e.retries.as_ref().and_then(|r| r.per_try_timeout.as_ref())
            && parse_duration(t).is_none()
        {
            return Some((
                at("expect.retries.perTryTimeout"),
                format!("{t:?} is not a duration like 500ms, 5s or 1m"),
            ));
        }
    }
    None
}

/// `500ms`, `5s`, `1.5s`, `2m`, `1h` in milliseconds; also Envoy's proto3 JSON (`0.500s`).
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        return None;
    };
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    Some((n * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews}
---
apiVersion: portolan.dev/v1alpha1
kind: RouteTest
metadata: {name: reviews}
spec:
  group: default
  cases:
  - name: canary
    request: {host: reviews, headers: {x-user: a}}
    expect:
      status: 200
      backends:
      - {service: reviews, subset: v1, weight: 90}
      timeout: 500ms
"#;

    #[test]
    fn reads_route_tests_and_skips_other_kinds() {
        let suites = parse("t.yaml", SUITE).expect("parses");
        assert_eq!(suites.len(), 1);
        let s = &suites[0];
        assert_eq!(s.location, "t.yaml#1");
        assert_eq!(s.spec.cases[0].request.method, "GET");
        assert_eq!(s.spec.cases[0].request.path, "/");
        assert_eq!(s.spec.cases[0].expect.status, Some(200));
    }

    #[test]
    fn names_the_field_of_an_error() {
        let bad = SUITE.replace("status: 200", "statuss: 200");
        let err = parse("t.yaml", &bad)
            .expect_err("unknown field")
            .to_string();
        assert!(err.contains("t.yaml#1"), "{err}");
        assert!(err.contains("RouteTest reviews"), "{err}");
        assert!(err.contains("spec.cases[0].expect"), "{err}");
        assert!(err.contains("statuss"), "{err}");
        let bad = SUITE.replace("timeout: 500ms", "timeout: soon");
        let err = parse("t.yaml", &bad).expect_err("bad duration").to_string();
        assert!(err.contains("spec.cases[0].expect.timeout"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(500));
        assert_eq!(parse_duration("0.500s"), Some(500));
        assert_eq!(parse_duration("2m"), Some(120_000));
        assert_eq!(parse_duration("fast"), None);
    }
}

//! The fallback evaluator: what a rendered configuration (Envoy JSON as `portolan render`
//! prints it) does with one request, computed without Envoy.
//!
//! It follows Envoy's documented order: the listener by port, the HTTP connection manager's
//! route configuration, the virtual host by domain (exact, then the longest `*.suffix`, then the
//! longest `prefix.*`, then `*`), the first route whose match holds (path prefix, exact, regex,
//! headers, query parameters), then the route's action: weighted clusters reported as the set,
//! redirects, direct responses, a fault abort that always fires, header changes, and the
//! timeout and retry policy in force. It does not model filters other than fault abort and
//! RBAC (no JWT, external authorization, rate limits: [`Rendered::unmodelled_filters`] names
//! them), load balancing, outlier detection or health.

use crate::spec::parse_duration;
use regex::Regex;
use serde_json::Value;
use std::collections::BTreeMap;

/// Envoy's route timeout when a route names none.
pub const DEFAULT_TIMEOUT_MS: u64 = 15_000;

/// The rendered resources of one proxy group.
#[derive(Clone, Debug, Default)]
pub struct Rendered {
    pub listeners: Vec<Value>,
    pub routes: Vec<Value>,
    pub clusters: Vec<Value>,
    pub endpoints: Vec<Value>,
}

/// A request as the evaluator sees it. Header names are lower case.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HttpRequest {
    pub host: String,
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: BTreeMap<String, String>,
    /// Listener port; `None`: the default (see [`Rendered::listener_for`]).
    pub port: Option<u16>,
    /// The caller's SPIFFE ID, as its verified client certificate would prove it.
    pub peer: Option<String>,
}

/// Where a request lands and what the route does with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub listener: String,
    pub listener_port: u16,
    pub route_config: String,
    /// The virtual host's name and the domain that matched; `None`: no virtual host (404).
    pub virtual_host: Option<(String, String)>,
    /// The matched route; `None` with a virtual host: no route matched (404).
    pub route: Option<MatchedRoute>,
    /// Whether the listener's RBAC filters (AccessPolicy) deny the request (403).
    pub denied: bool,
}

/// A route that matched: its place, its name, its match as text, and what it does.
#[derive(Clone, Debug, PartialEq)]
pub struct MatchedRoute {
    /// Index of the virtual host in the route configuration.
    pub vhost_index: usize,
    /// Index of the route in its virtual host.
    pub index: usize,
    pub name: String,
    pub matcher: String,
    pub policy: Policy,
    pub action: Action,
}

/// What a route does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Forwarded to clusters with weights (one cluster: weight 100).
    Forward(Vec<(String, u32)>),
    Redirect {
        status: u16,
        location: String,
    },
    Direct {
        status: u16,
        body: String,
    },
    /// The fault filter answers every such request with this status.
    Abort(u16),
    /// A route action this evaluator does not model (e.g. `cluster_header`).
    Unknown(String),
}

/// Policies in force on a matched route.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    /// Milliseconds; 0 means no timeout.
    pub timeout_ms: u64,
    /// Whether the timeout was written (else Envoy's default).
    pub timeout_set: bool,
    pub retries: u32,
    pub per_try_timeout_ms: Option<u64>,
    pub retry_on: Option<String>,
    pub prefix_rewrite: Option<String>,
    /// The route's path prefix (what a prefix rewrite replaces).
    pub matched_prefix: Option<String>,
    pub host_rewrite: Option<String>,
    /// Header changes, route first, then virtual host, then route configuration.
    pub request_add: Vec<HeaderAdd>,
    pub request_remove: Vec<String>,
    pub response_add: Vec<HeaderAdd>,
    pub response_remove: Vec<String>,
}

/// One `headers_to_add` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderAdd {
    pub name: String,
    pub value: String,
    /// `true`: replaces a header of that name; `false`: adds (appends) a value; `None`: adds
    /// only when absent.
    pub overwrite: Option<bool>,
}

/// The evaluator's errors: the request cannot reach a route table at all.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("no listener on port {0}; the group's HTTP listeners: {1}")]
    NoListener(u16, String),
    #[error("the group has no HTTP listener; give the request a port (listeners: {0})")]
    NoDefaultListener(String),
    #[error("listener {0} has no HTTP connection manager")]
    NotHttp(String),
    #[error("route configuration {0:?} is not in the rendered resources")]
    NoRouteConfig(String),
    #[error(
        "route configuration {0:?} gets its virtual hosts on demand (VHDS): they are not in the \
         rendered resources; test the group in full discovery (`;mode=full`)"
    )]
    OnDemand(String),
}

// === impl Rendered ===

/// HTTP filters whose effect the evaluator reproduces (or that do not change a non-preflight
/// request's answer: CORS, on-demand discovery).
const MODELLED_FILTERS: &[&str] = &[
    "envoy.filters.http.router",
    "envoy.filters.http.fault",
    "envoy.filters.http.rbac",
    "envoy.filters.http.rbac.deny",
    "envoy.filters.http.rbac.allow",
    "envoy.filters.http.cors",
    "envoy.filters.http.on_demand",
];

impl Rendered {
    /// Every HTTP filter of the listeners that the evaluator does not model (JWT, external
    /// authorization, rate limits, patched-in filters), as `LISTENER: FILTER`, so a report
    /// can say where its verdicts may differ from Envoy's.
    pub fn unmodelled_filters(&self) -> Vec<String> {
        let mut out = Vec::new();
        for l in &self.listeners {
            let Some(hcm) = hcm(l) else { continue };
            for f in hcm["http_filters"].as_array().into_iter().flatten() {
                let name = str_at(f, "/name");
                if !MODELLED_FILTERS.contains(&name) {
                    out.push(format!("{}: {name}", str_at(l, "/name")));
                }
            }
        }
        out.dedup();
        out
    }

    /// From `portolan render`'s JSON (`{"clusters": [...], "listeners": [...], ...}`).
    pub fn from_json(json: &Value) -> Self {
        let list = |k: &str| json[k].as_array().cloned().unwrap_or_default();
        Self {
            listeners: list("listeners"),
            routes: list("routes"),
            clusters: list("clusters"),
            endpoints: list("endpoints"),
        }
    }

    /// The listener a request arrives on: by port, or the mesh outbound port `mesh_port`, or
    /// the only listener with an HTTP connection manager.
    pub fn listener_for(&self, port: Option<u16>, mesh_port: u16) -> Result<&Value, EvalError> {
        let http: Vec<&Value> = self.listeners.iter().filter(|l| hcm(l).is_some()).collect();
        let names = || {
            http.iter()
                .map(|l| format!("{} (port {})", str_at(l, "/name"), listener_port(l)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(p) = port {
            return http
                .iter()
                .copied()
                .find(|l| listener_port(l) == p)
                .ok_or_else(|| EvalError::NoListener(p, names()));
        }
        if let Some(l) = http.iter().find(|l| listener_port(l) == mesh_port) {
            return Ok(l);
        }
        match http.as_slice() {
            [one] => Ok(one),
            _ => Err(EvalError::NoDefaultListener(names())),
        }
    }

    /// The route configuration a listener uses (RDS by name, or inline).
    pub fn route_config_of<'a>(&'a self, listener: &'a Value) -> Result<&'a Value, EvalError> {
        let name = str_at(listener, "/name");
        let hcm = hcm(listener).ok_or_else(|| EvalError::NotHttp(name.to_string()))?;
        if let Some(inline) = hcm.get("route_config") {
            return Ok(inline);
        }
        let wanted = str_at(hcm, "/rds/route_config_name");
        self.routes
            .iter()
            .find(|r| str_at(r, "/name") == wanted)
            .ok_or_else(|| EvalError::NoRouteConfig(wanted.to_string()))
    }

    /// Evaluates one request.
    pub fn evaluate(&self, req: &HttpRequest, mesh_port: u16) -> Result<Evaluation, EvalError> {
        let listener = self.listener_for(req.port, mesh_port)?;
        let config = self.route_config_of(listener)?;
        if config.get("vhds").is_some() {
            return Err(EvalError::OnDemand(str_at(config, "/name").to_string()));
        }
        let mut eval = Evaluation {
            listener: str_at(listener, "/name").to_string(),
            listener_port: listener_port(listener),
            route_config: str_at(config, "/name").to_string(),
            virtual_host: None,
            route: None,
            denied: crate::rbac::denied(
                listener,
                config,
                req,
                req.peer.as_deref(),
                listener_port(listener),
            ),
        };
        let vhosts = config["virtual_hosts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some((vi, domain)) = select_virtual_host(&vhosts, &req.host) else {
            return Ok(eval);
        };
        let vhost = &vhosts[vi];
        eval.virtual_host = Some((str_at(vhost, "/name").to_string(), domain));
        let routes = vhost["routes"].as_array().cloned().unwrap_or_default();
        eval.route = routes.iter().enumerate().find_map(|(i, r)| {
            let m = &r["match"];
            route_matches(m, req).then(|| MatchedRoute {
                vhost_index: vi,
                index: i,
                name: str_at(r, "/name").to_string(),
                matcher: describe_match(m),
                policy: route_policy(r, vhost, config),
                action: route_action(r, req),
            })
        });
        Ok(eval)
    }

    /// The endpoints of a cluster: `(address, health, zone)`; a DNS cluster's host names.
    pub fn endpoints_of(&self, cluster: &str) -> Option<Vec<(String, String, String)>> {
        let c = self
            .clusters
            .iter()
            .find(|c| str_at(c, "/name") == cluster)?;
        let service = c
            .pointer("/eds_cluster_config/service_name")
            .and_then(Value::as_str)
            .unwrap_or(cluster);
        let cla = match c.get("load_assignment") {
            Some(cla) => cla,
            None => self
                .endpoints
                .iter()
                .find(|e| str_at(e, "/cluster_name") == service)?,
        };
        Some(lb_endpoints(cla))
    }

    /// Whether a cluster of that name exists.
    pub fn has_cluster(&self, name: &str) -> bool {
        self.clusters.iter().any(|c| str_at(c, "/name") == name)
    }
}

/// Every `lb_endpoint` of a ClusterLoadAssignment as `(address:port, health, zone)`.
pub fn lb_endpoints(cla: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for locality in cla["endpoints"].as_array().into_iter().flatten() {
        let zone = str_at(locality, "/locality/zone").to_string();
        for e in locality["lb_endpoints"].as_array().into_iter().flatten() {
            let sa = &e["endpoint"]["address"]["socket_address"];
            let addr = format!(
                "{}:{}",
                sa["address"].as_str().unwrap_or("?"),
                sa["port_value"].as_u64().unwrap_or(0)
            );
            let health = e["health_status"].as_str().unwrap_or("UNKNOWN").to_string();
            out.push((addr, health, zone.clone()));
        }
    }
    out
}

/// A string at a JSON pointer, or "".
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The port a listener binds.
pub fn listener_port(l: &Value) -> u16 {
    l.pointer("/address/socket_address/port_value")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0)
}

/// The first HTTP connection manager config in a listener's filter chains.
pub fn hcm(listener: &Value) -> Option<&Value> {
    let chains = listener["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(listener.get("default_filter_chain"));
    chains
        .flat_map(|c| c["filters"].as_array().into_iter().flatten())
        .find(|f| str_at(f, "/name") == "envoy.filters.network.http_connection_manager")
        .map(|f| &f["typed_config"])
}

// === virtual hosts ===

/// Envoy's virtual host selection: exact domain, then the longest `*suffix` wildcard, then the
/// longest `prefix*` wildcard, then `*`. Case-insensitive. Returns the index and the domain.
pub fn select_virtual_host(vhosts: &[Value], host: &str) -> Option<(usize, String)> {
    let host = host.to_ascii_lowercase();
    let domains = || {
        vhosts.iter().enumerate().flat_map(|(i, vh)| {
            vh["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(move |d| (i, d.to_ascii_lowercase()))
        })
    };
    if let Some(hit) = domains().find(|(_, d)| *d == host) {
        return Some(hit);
    }
    let longest = |hits: Vec<(usize, String)>| hits.into_iter().max_by_key(|(_, d)| d.len());
    let suffix: Vec<_> = domains()
        .filter(|(_, d)| d.len() > 1 && d.starts_with('*'))
        .filter(|(_, d)| host.len() > d.len() - 1 && host.ends_with(&d[1..]))
        .collect();
    if let Some(hit) = longest(suffix) {
        return Some(hit);
    }
    let prefix: Vec<_> = domains()
        .filter(|(_, d)| d.len() > 1 && d.ends_with('*'))
        .filter(|(_, d)| host.len() > d.len() - 1 && host.starts_with(&d[..d.len() - 1]))
        .collect();
    if let Some(hit) = longest(prefix) {
        return Some(hit);
    }
    domains().find(|(_, d)| d == "*")
}

// === route matching ===

/// Whether a `RouteMatch` holds for a request.
pub fn route_matches(m: &Value, req: &HttpRequest) -> bool {
    let (path, query) = split_query(&req.path);
    let case_sensitive = m["case_sensitive"].as_bool().unwrap_or(true);
    let fold = |s: &str| {
        if case_sensitive {
            s.to_string()
        } else {
            s.to_ascii_lowercase()
        }
    };
    let path_ok = if let Some(p) = m["prefix"].as_str() {
        fold(path).starts_with(&fold(p))
    } else if let Some(p) = m["path"].as_str() {
        fold(path) == fold(p)
    } else if let Some(p) = m["path_separated_prefix"].as_str() {
        path == p || path.starts_with(&format!("{p}/"))
    } else if let Some(re) = m.pointer("/safe_regex/regex").and_then(Value::as_str) {
        full_match(re, path)
    } else {
        false
    };
    path_ok
        && m["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|h| header_matches(h, req))
        && m["query_parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|q| query_matches(q, &query))
}

/// `/a?b=1` -> (`/a`, [("b", "1")]).
fn split_query(path: &str) -> (&str, Vec<(String, String)>) {
    match path.split_once('?') {
        None => (path, Vec::new()),
        Some((p, q)) => {
            let params = q
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv.to_string(), String::new()),
                })
                .collect();
            (p, params)
        }
    }
}

/// A regex that must match the whole value (Envoy's `safe_regex` semantics, RE2 syntax).
pub fn full_match(re: &str, value: &str) -> bool {
    Regex::new(&format!("^(?:{re})$")).is_ok_and(|r| r.is_match(value))
}

/// The value of a header as a route sees it, pseudo-headers included.
fn header_value(req: &HttpRequest, name: &str) -> Option<String> {
    match name {
        ":method" => Some(req.method.clone()),
        ":path" => Some(req.path.clone()),
        ":authority" | "host" => Some(req.host.clone()),
        ":scheme" => Some("http".to_string()),
        _ => req.headers.get(&name.to_ascii_lowercase()).cloned(),
    }
}

/// A `HeaderMatcher`.
pub fn header_matches(h: &Value, req: &HttpRequest) -> bool {
    let value = header_value(req, &str_at(h, "/name").to_ascii_lowercase());
    let hit = match (&value, h.get("present_match")) {
        (v, Some(p)) => v.is_some() == p.as_bool().unwrap_or(true),
        (None, None) => false,
        (Some(v), None) => value_matches(h, v),
    };
    hit != h["invert_match"].as_bool().unwrap_or(false)
}

/// The value part of a header matcher (string_match or its deprecated forms).
fn value_matches(h: &Value, v: &str) -> bool {
    if let Some(sm) = h.get("string_match") {
        return string_matches(sm, v);
    }
    if let Some(e) = h["exact_match"].as_str() {
        return v == e;
    }
    if let Some(re) = h.pointer("/safe_regex_match/regex").and_then(Value::as_str) {
        return full_match(re, v);
    }
    if let Some(p) = h["prefix_match"].as_str() {
        return v.starts_with(p);
    }
    if let Some(s) = h["suffix_match"].as_str() {
        return v.ends_with(s);
    }
    if let Some(r) = h.get("range_match") {
        let n: Option<i64> = v.parse().ok();
        let (lo, hi) = (json_i64(&r["start"]), json_i64(&r["end"]));
        return n.is_some_and(|n| n >= lo && n < hi);
    }
    // A matcher with no value condition matches any present header.
    true
}

fn json_i64(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// A `StringMatcher`.
pub fn string_matches(sm: &Value, v: &str) -> bool {
    let ignore = sm["ignore_case"].as_bool().unwrap_or(false);
    let fold = |s: &str| {
        if ignore {
            s.to_ascii_lowercase()
        } else {
            s.to_string()
        }
    };
    let v = fold(v);
    if let Some(e) = sm["exact"].as_str() {
        v == fold(e)
    } else if let Some(p) = sm["prefix"].as_str() {
        v.starts_with(&fold(p))
    } else if let Some(s) = sm["suffix"].as_str() {
        v.ends_with(&fold(s))
    } else if let Some(c) = sm["contains"].as_str() {
        v.contains(&fold(c))
    } else if let Some(re) = sm.pointer("/safe_regex/regex").and_then(Value::as_str) {
        full_match(re, &v)
    } else {
        // An empty StringMatcher (`exact: ""` in proto3 JSON is omitted) matches "".
        v.is_empty()
    }
}

/// A `QueryParameterMatcher`.
fn query_matches(q: &Value, params: &[(String, String)]) -> bool {
    let name = str_at(q, "/name");
    let value = params.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    match (value, q.get("string_match")) {
        (None, _) => false,
        (Some(v), Some(sm)) => string_matches(sm, v),
        (Some(_), None) => q["present_match"].as_bool().unwrap_or(true),
    }
}

/// A route match as one line: `prefix "/api/", header x-user = "a", query beta = "1"`.
pub fn describe_match(m: &Value) -> String {
    let mut parts = Vec::new();
    for key in ["prefix", "path", "path_separated_prefix"] {
        if let Some(p) = m[key].as_str() {
            parts.push(format!("{key} {p:?}"));
        }
    }
    if let Some(re) = m.pointer("/safe_regex/regex").and_then(Value::as_str) {
        parts.push(format!("regex {re:?}"));
    }
    for h in m["headers"].as_array().into_iter().flatten() {
        let not = if h["invert_match"].as_bool().unwrap_or(false) {
            "not "
        } else {
            ""
        };
        parts.push(format!(
            "{not}header {} {}",
            str_at(h, "/name"),
            describe_value(h)
        ));
    }
    for q in m["query_parameters"].as_array().into_iter().flatten() {
        parts.push(format!(
            "query {} {}",
            str_at(q, "/name"),
            describe_value(q)
        ));
    }
    parts.join(", ")
}

fn describe_value(h: &Value) -> String {
    if h.get("present_match").is_some() {
        return "present".into();
    }
    let sm = h.get("string_match").unwrap_or(h);
    for (key, op) in [
        ("exact", "="),
        ("exact_match", "="),
        ("prefix", "starts with"),
        ("suffix", "ends with"),
        ("contains", "contains"),
    ] {
        if let Some(v) = sm[key].as_str() {
            return format!("{op} {v:?}");
        }
    }
    if let Some(re) = sm
        .pointer("/safe_regex/regex")
        .or_else(|| h.pointer("/safe_regex_match/regex"))
        .and_then(Value::as_str)
    {
        return format!("matches {re:?}");
    }
    "present".into()
}

// === actions and policies ===

/// What a route does with a request (its action, or a fault abort that always fires).
pub fn route_action(route: &Value, req: &HttpRequest) -> Action {
    if let Some(status) = abort_status(route) {
        return Action::Abort(status);
    }
    if let Some(r) = route.get("route") {
        if let Some(c) = r["cluster"].as_str() {
            return Action::Forward(vec![(c.to_string(), 100)]);
        }
        if let Some(list) = r
            .pointer("/weighted_clusters/clusters")
            .and_then(Value::as_array)
        {
            let set = list
                .iter()
                .map(|c| {
                    let w = c["weight"].as_u64().unwrap_or(0);
                    (
                        str_at(c, "/name").to_string(),
                        u32::try_from(w).unwrap_or(0),
                    )
                })
                .collect();
            return Action::Forward(set);
        }
        return Action::Unknown("a route action without cluster or weighted_clusters".into());
    }
    if let Some(d) = route.get("direct_response") {
        let status = d["status"].as_u64().and_then(|s| u16::try_from(s).ok());
        let body = str_at(d, "/body/inline_string").to_string();
        return Action::Direct {
            status: status.unwrap_or(200),
            body,
        };
    }
    if let Some(r) = route.get("redirect") {
        return redirect(r, &route["match"], req);
    }
    Action::Unknown("no route, redirect or direct_response".into())
}

/// A fault abort with a fixed status at 100%.
fn abort_status(route: &Value) -> Option<u16> {
    let fault = route.pointer("/typed_per_filter_config/envoy.filters.http.fault")?;
    let abort = fault.get("abort")?;
    let status = u16::try_from(abort["http_status"].as_u64()?).ok()?;
    let pct = &abort["percentage"];
    let numerator = pct["numerator"].as_u64().unwrap_or(0);
    let denominator = match pct["denominator"].as_str().unwrap_or("HUNDRED") {
        "MILLION" => 1_000_000,
        "TEN_THOUSAND" => 10_000,
        _ => 100,
    };
    (numerator >= denominator).then_some(status)
}

fn redirect(r: &Value, m: &Value, req: &HttpRequest) -> Action {
    let status = match r["response_code"].as_str().unwrap_or("MOVED_PERMANENTLY") {
        "FOUND" => 302,
        "SEE_OTHER" => 303,
        "TEMPORARY_REDIRECT" => 307,
        "PERMANENT_REDIRECT" => 308,
        _ => 301,
    };
    let scheme = match (r["scheme_redirect"].as_str(), r["https_redirect"].as_bool()) {
        (Some(s), _) => s.to_string(),
        (None, Some(true)) => "https".to_string(),
        _ => "http".to_string(),
    };
    let (orig_host, orig_port) = split_port(&req.host);
    let host = r["host_redirect"].as_str().unwrap_or(orig_host).to_string();
    // As Envoy does: a port redirect is written as given (even 80 or 443); a new host drops the
    // request's port; a scheme change drops it when it is http's default (80).
    let port = match r["port_redirect"].as_u64() {
        Some(p) => Some(p.to_string()),
        None if r.get("host_redirect").is_some() => None,
        None if scheme != "http" => orig_port.filter(|p| *p != "80").map(str::to_string),
        None => orig_port.map(str::to_string),
    };
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let mut new_path = if let Some(p) = r["path_redirect"].as_str() {
        p.to_string()
    } else if let Some(pre) = r["prefix_rewrite"].as_str() {
        let matched = m["prefix"].as_str().unwrap_or("");
        format!("{pre}{}", path.strip_prefix(matched).unwrap_or(path))
    } else {
        path.to_string()
    };
    let strip = r["strip_query"].as_bool().unwrap_or(false);
    if !strip && !query.is_empty() && !new_path.contains('?') {
        new_path = format!("{new_path}?{query}");
    }
    let authority = match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    Action::Redirect {
        status,
        location: format!("{scheme}://{authority}{new_path}"),
    }
}

/// `host:port` -> (`host`, Some(`port`)).
fn split_port(host: &str) -> (&str, Option<&str>) {
    match host.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (host, None),
    }
}

/// The policies in force on a route of a virtual host of a route configuration.
pub fn route_policy(route: &Value, vhost: &Value, config: &Value) -> Policy {
    let r = &route["route"];
    let retry = r.get("retry_policy").or_else(|| vhost.get("retry_policy"));
    let timeout = r["timeout"].as_str().and_then(parse_duration);
    let mut p = Policy {
        timeout_ms: timeout.unwrap_or(DEFAULT_TIMEOUT_MS),
        timeout_set: timeout.is_some(),
        retries: retry.map_or(0, |rp| {
            rp["num_retries"]
                .as_u64()
                .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX))
        }),
        per_try_timeout_ms: retry
            .and_then(|rp| rp["per_try_timeout"].as_str())
            .and_then(parse_duration),
        retry_on: retry.and_then(|rp| rp["retry_on"].as_str().map(str::to_string)),
        prefix_rewrite: r["prefix_rewrite"].as_str().map(str::to_string),
        matched_prefix: route["match"]["prefix"].as_str().map(str::to_string),
        host_rewrite: r["host_rewrite_literal"].as_str().map(str::to_string),
        ..Policy::default()
    };
    for level in [route, vhost, config] {
        p.request_add
            .extend(header_adds(&level["request_headers_to_add"]));
        p.response_add
            .extend(header_adds(&level["response_headers_to_add"]));
        p.request_remove
            .extend(names(&level["request_headers_to_remove"]));
        p.response_remove
            .extend(names(&level["response_headers_to_remove"]));
    }
    p
}

fn header_adds(list: &Value) -> Vec<HeaderAdd> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let overwrite = match h["append_action"].as_str() {
                Some("OVERWRITE_IF_EXISTS_OR_ADD") | Some("OVERWRITE_IF_EXISTS") => Some(true),
                Some("ADD_IF_ABSENT") => None,
                _ => Some(!h["append"].as_bool().unwrap_or(true)),
            };
            HeaderAdd {
                name: str_at(h, "/header/key").to_ascii_lowercase(),
                value: str_at(h, "/header/value").to_string(),
                overwrite,
            }
        })
        .collect()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Applies header changes to a header map (multiple values joined with `,`).
pub fn apply_headers(headers: &mut BTreeMap<String, String>, add: &[HeaderAdd], remove: &[String]) {
    for name in remove {
        headers.remove(name);
    }
    for h in add {
        match (h.overwrite, headers.get_mut(&h.name)) {
            (Some(false), Some(v)) => {
                v.push(',');
                v.push_str(&h.value);
            }
            (None, Some(_)) => {}
            _ => {
                headers.insert(h.name.clone(), h.value.clone());
            }
        }
    }
}

/// The path the upstream receives after a prefix rewrite.
pub fn rewritten_path(matched_prefix: Option<&str>, rewrite: Option<&str>, path: &str) -> String {
    match (matched_prefix, rewrite) {
        (Some(m), Some(r)) if path.starts_with(m) => format!("{r}{}", &path[m.len()..]),
        _ => path.to_string(),
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;

//! Runs stock Envoy on a group's rendered configuration and sends test requests through it.
//!
//! The rendered resources become a static bootstrap: RDS references are replaced by the route
//! configurations they name, every cluster becomes STATIC with its endpoints replaced by
//! stand-in upstreams (one per endpoint, at least one per cluster; TLS origination, health
//! checks and DNS are dropped so the stand-ins answer), plain HTTP listeners bind 127.0.0.1 on
//! a port Envoy picks, and listeners with TLS or without HTTP are left out. Each route gets a
//! response header naming its place (`config|vhost|route`) so the verdict knows which route
//! Envoy matched and reads its timeout and retry policy from the rendered table.

use crate::error::RouteTestError;
use crate::standin::{Echo, STANDIN_HEADER, StandIns};
use crate::table::{self, HttpRequest, MatchedRoute, Rendered, str_at};
use crate::verdict::Outcome;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::{Child, Command};

/// The response header that names the matched route (`config|vhost index|route index`).
pub const ROUTE_HEADER: &str = "x-portolan-test-route";

/// How long Envoy may take to start before the run fails.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Envoy with its stand-ins.
pub struct EnvoyRun {
    child: Child,
    _dir: tempfile::TempDir,
    _standins: StandIns,
    rendered: Rendered,
    /// Original listener port -> the port Envoy bound.
    ports: BTreeMap<u16, u16>,
    /// Listeners left out, with why.
    pub skipped: Vec<String>,
    client: reqwest::Client,
    log: PathBuf,
}

// === impl EnvoyRun ===

impl EnvoyRun {
    /// Starts Envoy (`envoy` binary) on the rendered resources of `group`.
    pub async fn start(
        envoy: &Path,
        rendered: &Value,
        group: &str,
    ) -> Result<Self, RouteTestError> {
        let err = |e: &dyn std::fmt::Display| RouteTestError::Envoy(e.to_string());
        let original = Rendered::from_json(rendered);
        let plan = Plan::new(&original);
        let (standins, addrs) = StandIns::start(&plan.standins).await?;
        let bootstrap = plan.bootstrap(&original, &addrs, group);
        let dir = tempfile::tempdir().map_err(|e| err(&e))?;
        let config = dir.path().join("bootstrap.json");
        let text = serde_json::to_string_pretty(&bootstrap).map_err(|e| err(&e))?;
        if text.contains("\"ads\"") {
            return Err(RouteTestError::Envoy(format!(
                "group {group}: its configuration still asks Portolan for resources over xDS \
                 (on-demand discovery: VHDS or on-demand CDS), which a static test Envoy cannot \
                 do; test the group in full discovery (`;mode=full`)"
            )));
        }
        std::fs::write(&config, text).map_err(|e| err(&e))?;
        let admin_path = dir.path().join("admin-address");
        let log = dir.path().join("envoy.log");
        let child = Command::new(envoy)
            .arg("-c")
            .arg(&config)
            .arg("--use-dynamic-base-id")
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(["--log-level", "warning", "--drain-time-s", "0"])
            .arg("--log-path")
            .arg(&log)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RouteTestError::Envoy(format!("cannot run {}: {e}", envoy.display())))?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| err(&e))?;
        let mut run = Self {
            child,
            _dir: dir,
            _standins: standins,
            rendered: original,
            ports: BTreeMap::new(),
            skipped: plan.skipped,
            client,
            log,
        };
        let admin = run.wait_admin(&admin_path).await?;
        run.ports = run.bound_ports(&admin, &plan.listener_ports).await?;
        Ok(run)
    }

    /// Polls until Envoy wrote its admin address and says LIVE.
    async fn wait_admin(&mut self, path: &Path) -> Result<String, RouteTestError> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(RouteTestError::Envoy(format!(
                    "exited ({status}) on the rendered configuration:\n{}",
                    self.log_text()
                )));
            }
            if let Ok(addr) = std::fs::read_to_string(path)
                && !addr.trim().is_empty()
            {
                let url = format!("http://{}/ready", addr.trim());
                if let Ok(r) = self.client.get(&url).send().await
                    && r.status().is_success()
                {
                    return Ok(addr.trim().to_string());
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(RouteTestError::Envoy(format!(
                    "not ready after {START_TIMEOUT:?}:\n{}",
                    self.log_text()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The ports Envoy bound, by the original port of each listener.
    async fn bound_ports(
        &self,
        admin: &str,
        by_name: &BTreeMap<String, u16>,
    ) -> Result<BTreeMap<u16, u16>, RouteTestError> {
        let url = format!("http://{admin}/listeners?format=json");
        let body: Value = self
            .client
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| RouteTestError::Envoy(e.to_string()))?
            .json()
            .await
            .map_err(|e| RouteTestError::Envoy(e.to_string()))?;
        let mut ports = BTreeMap::new();
        for l in body["listener_statuses"].as_array().into_iter().flatten() {
            let name = str_at(l, "/name");
            let bound = l
                .pointer("/local_address/socket_address/port_value")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok());
            if let (Some(orig), Some(bound)) = (by_name.get(name), bound) {
                ports.insert(*orig, bound);
            }
        }
        Ok(ports)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a request through Envoy and reports what came back.
    pub async fn send(&self, req: &HttpRequest, mesh_port: u16) -> Outcome {
        match self.try_send(req, mesh_port).await {
            Ok(out) => out,
            Err(note) => Outcome {
                note: Some(note),
                ..Outcome::default()
            },
        }
    }

    async fn try_send(&self, req: &HttpRequest, mesh_port: u16) -> Result<Outcome, String> {
        let listener = self
            .rendered
            .listener_for(req.port, mesh_port)
            .map_err(|e| e.to_string())?;
        let orig = table::listener_port(listener);
        let port = self.ports.get(&orig).ok_or_else(|| {
            format!("listener on port {orig} is not run by the test Envoy (TLS or not HTTP)")
        })?;
        let method =
            reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|e| e.to_string())?;
        let mut builder = self
            .client
            .request(method, format!("http://127.0.0.1:{port}{}", req.path))
            .header("host", &req.host);
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        if let Some(peer) = &req.peer {
            builder = builder.header(crate::rbac::PEER_HEADER, peer);
        }
        let resp = builder
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status().as_u16();
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in resp.headers() {
            let v = String::from_utf8_lossy(v.as_bytes()).to_string();
            headers
                .entry(k.as_str().to_string())
                .and_modify(|old| {
                    old.push(',');
                    old.push_str(&v);
                })
                .or_insert(v);
        }
        let body = resp.text().await.map_err(|e| e.to_string())?;
        Ok(self.outcome(status, headers, body))
    }

    fn outcome(&self, status: u16, mut headers: BTreeMap<String, String>, body: String) -> Outcome {
        let mut out = Outcome {
            status: Some(status),
            denied: status == 403 && body == crate::verdict::RBAC_DENIED,
            location: headers.get("location").cloned(),
            ..Outcome::default()
        };
        if let Some(marker) = headers.remove(ROUTE_HEADER)
            && let Some((vhost, route)) = self.route_at(&marker)
        {
            let p = route.policy;
            out.route = Some((route.name, vhost, route.index));
            out.timeout_ms = Some(p.timeout_ms);
            out.retries = Some((p.retries, p.per_try_timeout_ms, p.retry_on));
            if let table::Action::Forward(set) = route.action {
                out.backends = set;
            }
        }
        match headers.remove(STANDIN_HEADER) {
            Some(_) => {
                if let Ok(echo) = serde_json::from_str::<Echo>(&body) {
                    observe_timeout(&mut out, &echo);
                    out.answered_by = Some(echo.cluster);
                    out.upstream_path = Some(echo.path);
                    out.upstream_host = Some(echo.host);
                    out.request_headers = Some(echo.headers);
                }
            }
            None => out.body = Some(body),
        }
        out.response_headers = headers;
        out
    }
}

/// The header in which Envoy tells the upstream the time it has (the per-try timeout when
/// one is set, else the route timeout; absent when there is none).
const EXPECTED_TIMEOUT: &str = "x-envoy-expected-rq-timeout-ms";

/// Takes the route timeout from what Envoy told the stand-in, when no per-try timeout stands
/// in for it there.
fn observe_timeout(out: &mut Outcome, echo: &Echo) {
    let per_try = out.retries.as_ref().and_then(|r| r.1);
    if out.timeout_ms.is_none() || per_try.is_some() {
        return;
    }
    out.timeout_ms = Some(
        echo.headers
            .get(EXPECTED_TIMEOUT)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
}

impl EnvoyRun {
    /// The route a marker names, and its virtual host's name.
    fn route_at(&self, marker: &str) -> Option<(String, MatchedRoute)> {
        let mut parts = marker.rsplitn(3, '|');
        let r: usize = parts.next()?.parse().ok()?;
        let v: usize = parts.next()?.parse().ok()?;
        let config_name = parts.next()?;
        let config = route_configs(&self.rendered)
            .into_iter()
            .find(|c| str_at(c, "/name") == config_name)?;
        let vhost = config["virtual_hosts"].get(v)?;
        let route = vhost["routes"].get(r)?;
        let matched = MatchedRoute {
            vhost_index: v,
            index: r,
            name: str_at(route, "/name").to_string(),
            matcher: table::describe_match(&route["match"]),
            policy: table::route_policy(route, vhost, &config),
            action: table::route_action(route, &HttpRequest::default()),
        };
        Some((str_at(vhost, "/name").to_string(), matched))
    }

    /// Stops Envoy.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Every route configuration: RDS resources and those inline in listeners.
fn route_configs(r: &Rendered) -> Vec<Value> {
    let mut all = r.routes.clone();
    for l in &r.listeners {
        if let Some(inline) = table::hcm(l).and_then(|h| h.get("route_config")) {
            all.push(inline.clone());
        }
    }
    all
}

// === the static bootstrap ===

/// What the bootstrap is made of, before the stand-ins have addresses.
struct Plan {
    /// `(cluster, original endpoint)` per stand-in, clusters in rendered order.
    standins: Vec<(String, String)>,
    /// Listener name -> original port, for the listeners kept.
    listener_ports: BTreeMap<String, u16>,
    skipped: Vec<String>,
}

impl Plan {
    fn new(r: &Rendered) -> Self {
        let mut standins = Vec::new();
        for c in &r.clusters {
            let name = str_at(c, "/name").to_string();
            let mut eps: Vec<String> = r
                .endpoints_of(&name)
                .unwrap_or_default()
                .into_iter()
                .map(|(addr, _, _)| addr)
                .collect();
            if eps.is_empty() {
                eps.push(dns_or_none(c));
            }
            standins.extend(eps.into_iter().map(|e| (name.clone(), e)));
        }
        let mut listener_ports = BTreeMap::new();
        let mut skipped = Vec::new();
        for l in &r.listeners {
            let name = str_at(l, "/name").to_string();
            match keep_listener(l) {
                Ok(()) => {
                    listener_ports.insert(name, table::listener_port(l));
                }
                Err(why) => skipped.push(format!("{name}: {why}")),
            }
        }
        Self {
            standins,
            listener_ports,
            skipped,
        }
    }

    fn bootstrap(&self, r: &Rendered, addrs: &[std::net::SocketAddr], group: &str) -> Value {
        let mut by_cluster: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for ((cluster, _), addr) in self.standins.iter().zip(addrs) {
            by_cluster.entry(cluster).or_default().push(json!({
                "endpoint": {"address": {"socket_address": {
                    "address": addr.ip().to_string(), "port_value": addr.port()}}}
            }));
        }
        let clusters: Vec<Value> = r
            .clusters
            .iter()
            .map(|c| standin_cluster(c, by_cluster.remove(str_at(c, "/name")).unwrap_or_default()))
            .collect();
        let listeners: Vec<Value> = r
            .listeners
            .iter()
            .filter(|l| self.listener_ports.contains_key(str_at(l, "/name")))
            .map(|l| test_listener(l, &r.routes))
            .collect();
        json!({
            "node": {"id": "portolan-test", "cluster": group},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {"clusters": clusters, "listeners": listeners},
        })
    }
}

/// A DNS cluster's host, or `none` for a cluster without endpoints.
fn dns_or_none(cluster: &Value) -> String {
    let cla = &cluster["load_assignment"];
    table::lb_endpoints(cla)
        .into_iter()
        .next()
        .map_or_else(|| "none".to_string(), |(a, _, _)| a)
}

/// Whether the test Envoy runs a listener: plain HTTP, and a mesh workload's mutual TLS
/// inbound listener (run in plain HTTP, the caller's identity in a header).
fn keep_listener(l: &Value) -> Result<(), &'static str> {
    if table::hcm(l).is_none() {
        return Err("not HTTP");
    }
    if is_mtls(l) {
        return Ok(());
    }
    let chains = l["filter_chains"].as_array().into_iter().flatten();
    if chains
        .chain(l.get("default_filter_chain"))
        .any(|c| c.get("transport_socket").is_some())
    {
        return Err("TLS (the test client speaks plain HTTP)");
    }
    Ok(())
}

/// Whether the listener's first chain asks for client certificates (a workload's inbound).
fn is_mtls(l: &Value) -> bool {
    l.pointer("/filter_chains/0/transport_socket/typed_config/require_client_certificate")
        .and_then(Value::as_bool)
        == Some(true)
}

/// A cluster whose endpoints are the stand-ins; nothing that would keep them from answering.
fn standin_cluster(c: &Value, endpoints: Vec<Value>) -> Value {
    let mut c = c.clone();
    if let Some(m) = c.as_object_mut() {
        for key in [
            "eds_cluster_config",
            "transport_socket",
            "transport_socket_matches",
            "health_checks",
            "dns_lookup_family",
            "dns_refresh_rate",
            "respect_dns_ttl",
            "typed_dns_resolver_config",
            "typed_extension_protocol_options",
            "upstream_connection_options",
        ] {
            m.remove(key);
        }
        if m.get("lb_policy").and_then(Value::as_str) == Some("CLUSTER_PROVIDED") {
            m.remove("lb_policy");
        }
        m.remove("original_dst_lb_config");
        m.insert("type".into(), json!("STATIC"));
        let name = str_at(&c, "/name").to_string();
        if let Some(m) = c.as_object_mut() {
            m.insert(
                "load_assignment".into(),
                json!({"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]}),
            );
        }
    }
    c
}

/// A listener on 127.0.0.1, port chosen by Envoy, routes inline and marked.
fn test_listener(l: &Value, routes: &[Value]) -> Value {
    let mut l = l.clone();
    l["address"] = json!({"socket_address": {"address": "127.0.0.1", "port_value": 0}});
    let mtls = is_mtls(&l);
    if let Some(m) = l.as_object_mut() {
        m.remove("listener_filters");
        m.remove("use_original_dst");
        if mtls {
            // The mTLS chain alone, in plain HTTP; the identity comes in a header.
            m.remove("default_filter_chain");
            if let Some(chains) = m.get_mut("filter_chains").and_then(Value::as_array_mut) {
                chains.truncate(1);
                if let Some(c) = chains.first_mut().and_then(Value::as_object_mut) {
                    c.remove("transport_socket");
                    c.remove("filter_chain_match");
                }
            }
        }
    }
    without_destination_ports(&mut l);
    inline_and_mark(&mut l, routes);
    crate::rbac::principal_header(&mut l);
    l
}

/// Drops `destination_port` from every chain's match (a chain for the listener's own port, or
/// for a captured port, would not match the port Envoy picks), then every chain whose match
/// has become the same as an earlier chain's (a workload's inbound has a chain per port, the
/// application port's first): Envoy refuses two chains with the same match.
fn without_destination_ports(l: &mut Value) {
    let Some(chains) = l.get_mut("filter_chains").and_then(Value::as_array_mut) else {
        return;
    };
    let mut seen: Vec<Value> = Vec::new();
    chains.retain_mut(|c| {
        if let Some(m) = c
            .get_mut("filter_chain_match")
            .and_then(Value::as_object_mut)
        {
            m.remove("destination_port");
        }
        let matching = c
            .get("filter_chain_match")
            .filter(|m| m.as_object().is_some_and(|m| !m.is_empty()))
            .cloned()
            .unwrap_or(Value::Null);
        if seen.contains(&matching) {
            return false;
        }
        seen.push(matching);
        true
    });
}

/// Replaces `rds` by the route configuration it names and marks every route of every route
/// configuration in the listener.
fn inline_and_mark(value: &mut Value, routes: &[Value]) {
    match value {
        Value::Object(m) => {
            if let Some(rds) = m.remove("rds") {
                let name = str_at(&rds, "/route_config_name");
                let config = routes
                    .iter()
                    .find(|r| str_at(r, "/name") == name)
                    .cloned()
                    .unwrap_or_else(|| json!({"name": name}));
                m.insert("route_config".into(), config);
            }
            if let Some(config) = m.get_mut("route_config") {
                mark_routes(config);
            }
            for (k, v) in m.iter_mut() {
                if k != "route_config" {
                    inline_and_mark(v, routes);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| inline_and_mark(v, routes)),
        _ => {}
    }
}

fn mark_routes(config: &mut Value) {
    let name = str_at(config, "/name").to_string();
    let Some(vhosts) = config["virtual_hosts"].as_array_mut() else {
        return;
    };
    for (v, vh) in vhosts.iter_mut().enumerate() {
        let Some(routes) = vh["routes"].as_array_mut() else {
            continue;
        };
        for (r, route) in routes.iter_mut().enumerate() {
            let marker = json!({
                "header": {"key": ROUTE_HEADER, "value": format!("{name}|{v}|{r}")},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            });
            match route["response_headers_to_add"].as_array_mut() {
                Some(list) => list.push(marker),
                None => route["response_headers_to_add"] = json!([marker]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DISABLE workload's inbound: a plaintext chain per served port (the application
    /// port's first, then the listener's own port, another port), then the passthrough's.
    #[test]
    fn chains_differing_only_by_destination_port_collapse_to_the_first() {
        let chain = |name: &str, port: Option<u16>| {
            let mut c = json!({"name": name, "filters": []});
            if let Some(port) = port {
                c["filter_chain_match"] = json!({"destination_port": port});
            }
            c
        };
        let mut l = json!({"filter_chains": [
            chain("plaintext:8080", Some(8080)),
            chain("plaintext:15006", Some(15006)),
            chain("plaintext:9090", Some(9090)),
            chain("passthrough:plaintext", None),
        ]});
        without_destination_ports(&mut l);
        assert_eq!(
            l["filter_chains"],
            json!([{"name": "plaintext:8080", "filters": [], "filter_chain_match": {}}])
        );

        // PERMISSIVE: chains that still differ (by transport protocol) all stay.
        let mut l = json!({"filter_chains": [
            {"name": "tls:8080", "filter_chain_match": {"destination_port": 8080, "transport_protocol": "tls"}},
            {"name": "plaintext:8080", "filter_chain_match": {"destination_port": 8080, "transport_protocol": "raw_buffer"}},
            {"name": "tls:9090", "filter_chain_match": {"destination_port": 9090, "transport_protocol": "tls"}},
        ]});
        without_destination_ports(&mut l);
        let names: Vec<&str> = l["filter_chains"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["tls:8080", "plaintext:8080"]);
    }
}

//! Shared by the property tests and the Envoy check: proptest generators of manifest documents
//! (valid worlds, and arbitrary mutations of them), the path a document takes in `portolan
//! serve` (decode, validate, convert, index, translate, snapshot), and a converter of translated
//! resources into a static Envoy bootstrap for `envoy --mode validate`.

use portolan_api::Resource;
use portolan_model::{Index, World, convert};
use portolan_translate::{Options, Resources};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::sync::Arc;

// === the path of a document ===

/// What a list of documents amounts to: the world and how many documents were rejected.
pub struct Built {
    pub world: Arc<World>,
    pub rejected: Vec<String>,
}

/// Decodes, validates and converts every document into one index, as the files source does.
pub fn build(docs: &[Value]) -> Built {
    let mut index = Index::new();
    let mut rejected = Vec::new();
    for doc in docs {
        match Resource::decode(doc.clone()) {
            Ok(Some(resource)) => {
                let errors = portolan_api::validate::validate(&resource);
                if errors.is_empty() {
                    index.apply(convert::to_object(&resource));
                } else {
                    rejected.push(format!("{}: {errors:?}", resource.object_ref()));
                }
            }
            Ok(None) => {}
            Err(e) => rejected.push(e.to_string()),
        }
    }
    Built {
        world: index.world(),
        rejected,
    }
}

/// The proxy groups worth translating for: the mesh and a gateway group.
pub const GROUPS: &[&str] = &["default", "ingress"];

pub fn translate(world: &World, group: &str) -> Resources {
    let group =
        portolan_pipeline::groups::group_for_name(group, world).unwrap_or_else(|e| panic!("{e}"));
    portolan_translate::translate(world, &group, &Options::default())
}

// === generators ===

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,6}"
}

fn service_doc(name: &str, ports: &[u16]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"name": format!("p{i}"), "port": p}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"ports": ports}})
}

fn slice_doc(
    service: &str,
    n: usize,
    version: &str,
    addresses: &[[u8; 2]],
    ports: &[(u16, bool)],
) -> Value {
    let endpoints: Vec<Value> = addresses
        .iter()
        .enumerate()
        .map(|(i, [a, b])| {
            json!({"addresses": [format!("10.{a}.{b}.{}", i + 1)],
                   "conditions": {"ready": (a % 4) != 0}})
        })
        .collect();
    let ports: Vec<Value> = ports
        .iter()
        .enumerate()
        .map(|(i, (p, _))| json!({"name": format!("p{i}"), "port": p}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": format!("{service}-{n}"), "namespace": "default",
                        "labels": {"kubernetes.io/service-name": service, "version": version}},
           "addressType": "IPv4", "endpoints": endpoints, "ports": ports})
}

fn policy_doc(service: &str, algorithm: &str, max: u32, outlier: bool) -> Value {
    let mut spec = json!({
        "host": service,
        "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}}],
        "loadBalancer": {"algorithm": algorithm},
        "connectionPool": {"maxConnections": max, "maxRequests": max, "connectTimeout": "2s"},
    });
    if outlier {
        spec["outlierDetection"] = json!({"consecutive5xxErrors": 3, "interval": "1s",
                                          "baseEjectionTime": "30s", "maxEjectionPercent": 50});
    }
    if algorithm == "RingHash" || algorithm == "Maglev" {
        spec["loadBalancer"]["hashKey"] = json!({"header": "x-user"});
    }
    json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficPolicy",
           "metadata": {"name": service, "namespace": "default"}, "spec": spec})
}

/// One HTTP rule of a route: a match and weighted destinations over the subsets.
#[derive(Clone, Debug)]
pub struct RuleGen {
    prefix: Option<String>,
    header: Option<(String, String)>,
    method: Option<&'static str>,
    weights: (u8, u8),
    timeout_ms: Option<u32>,
    retries: Option<u8>,
}

fn rule() -> impl Strategy<Value = RuleGen> {
    (
        proptest::option::of("/[a-z0-9/]{0,8}"),
        proptest::option::of(("x-[a-z]{1,6}", "[a-zA-Z0-9]{1,6}")),
        proptest::option::of(proptest::sample::select(&["GET", "POST", "PUT"][..])),
        (0u8..=100, 0u8..=100),
        proptest::option::of(1u32..60_000),
        proptest::option::of(1u8..5),
    )
        .prop_map(
            |(prefix, header, method, weights, timeout_ms, retries)| RuleGen {
                prefix,
                header,
                method,
                weights,
                timeout_ms,
                retries,
            },
        )
}

fn route_doc(service: &str, subsets: bool, rules: &[RuleGen]) -> Value {
    let http: Vec<Value> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut m = Map::new();
            if let Some(p) = &r.prefix {
                m.insert("path".into(), json!({"prefix": p}));
            }
            if let Some((k, v)) = &r.header {
                m.insert("headers".into(), json!([{"name": k, "exact": v}]));
            }
            if let Some(method) = r.method {
                m.insert("method".into(), json!(method));
            }
            let (w1, w2) = r.weights;
            let route = if subsets && w1 + w2 > 0 {
                json!([{"destination": {"host": service, "subset": "v1"}, "weight": w1},
                       {"destination": {"host": service, "subset": "v2"}, "weight": w2}])
            } else {
                json!([{"destination": {"host": service}}])
            };
            let mut rule = json!({"name": format!("r{i}"), "route": route});
            if !m.is_empty() {
                rule["match"] = json!([m]);
            }
            if let Some(t) = r.timeout_ms {
                rule["timeout"] = json!(format!("{t}ms"));
            }
            if let Some(n) = r.retries {
                rule["retries"] = json!({"attempts": n, "perTryTimeout": "1s", "retryOn": "5xx"});
            }
            rule
        })
        .collect();
    json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
           "metadata": {"name": format!("{service}-route"), "namespace": "default"},
           "spec": {"hosts": [service], "http": http}})
}

/// One service of a generated world and everything that refers to it.
fn service_world(index: usize) -> impl Strategy<Value = Vec<Value>> {
    (
        name(),
        proptest::collection::btree_set(1u16..=65535, 1..4),
        proptest::collection::vec(
            (
                proptest::sample::select(&["v1", "v2"][..]),
                proptest::collection::vec(any::<[u8; 2]>(), 1..4),
                1u16..=65535,
            ),
            0..3,
        ),
        proptest::option::of((
            proptest::sample::select(
                &["RoundRobin", "LeastRequest", "Random", "RingHash", "Maglev"][..],
            ),
            1u32..10_000,
            any::<bool>(),
        )),
        proptest::option::of(proptest::collection::vec(rule(), 1..4)),
    )
        .prop_map(move |(base, ports, slices, policy, rules)| {
            let service = format!("{base}-{index}");
            let ports: Vec<u16> = ports.into_iter().collect();
            let mut docs = vec![service_doc(&service, &ports)];
            for (n, (version, addresses, target)) in slices.iter().enumerate() {
                let slice_ports: Vec<(u16, bool)> = ports
                    .iter()
                    .map(|p| (target.wrapping_add(*p).max(1), true))
                    .collect();
                docs.push(slice_doc(&service, n, version, addresses, &slice_ports));
            }
            if let Some((algorithm, max, outlier)) = policy {
                docs.push(policy_doc(&service, algorithm, max, outlier));
            }
            if let Some(rules) = rules {
                docs.push(route_doc(&service, policy.is_some(), &rules));
            }
            docs
        })
}

/// A valid world: 1 to 5 services with slices, policies and routes.
pub fn valid_world() -> impl Strategy<Value = Vec<Value>> {
    (1usize..=5)
        .prop_flat_map(|n| (0..n).map(service_world).collect::<Vec<_>>())
        .prop_map(|per_service| per_service.into_iter().flatten().collect())
}

/// Any JSON value: unicode strings, huge and negative numbers, nesting.
pub fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::String),
        Just(json!("ÿ😀\u{200b}名前")),
        Just(json!("99999999999999999999999")),
        Just(json!("")),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A change to a document: walk down by `steps` (each picks a child), then replace, delete
/// or nest what is there.
#[derive(Clone, Debug)]
pub struct Mutation {
    steps: Vec<usize>,
    action: u8,
    value: Value,
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    (
        proptest::collection::vec(any::<usize>(), 0..6),
        0u8..4,
        any_json(),
    )
        .prop_map(|(steps, action, value)| Mutation {
            steps,
            action,
            value,
        })
}

impl Mutation {
    pub fn apply(&self, doc: &mut Value) {
        // Find the target as a JSON pointer first (read-only), then change it.
        let mut pointer = String::new();
        let mut here: &Value = doc;
        for step in &self.steps {
            let (token, next) = match here {
                Value::Object(m) if !m.is_empty() => {
                    let Some((k, v)) = m.iter().nth(step % m.len()) else {
                        break;
                    };
                    (k.replace('~', "~0").replace('/', "~1"), v)
                }
                Value::Array(a) if !a.is_empty() => {
                    let i = step % a.len();
                    (i.to_string(), &a[i])
                }
                _ => break,
            };
            pointer.push('/');
            pointer.push_str(&token);
            here = next;
        }
        let Some(at) = doc.pointer_mut(&pointer) else {
            return;
        };
        match self.action {
            0 => *at = self.value.clone(),
            1 => {
                // Delete a field (or an item).
                match at {
                    Value::Object(m) if !m.is_empty() => {
                        let key = m.keys().next().cloned();
                        if let Some(k) = key {
                            m.remove(&k);
                        }
                    }
                    Value::Array(a) => {
                        a.pop();
                    }
                    other => *other = Value::Null,
                }
            }
            2 => {
                // Deep nesting around what is there.
                let mut v = at.take();
                for _ in 0..64 {
                    v = json!([v]);
                }
                *at = v;
            }
            _ => {
                if let Value::Object(m) = at {
                    m.insert("unexpectedField".into(), self.value.clone());
                } else {
                    *at = self.value.clone();
                }
            }
        }
    }
}

// === a static bootstrap for `envoy --mode validate` ===

/// Translated resources as Envoy JSON for [`static_bootstrap`]: `resources_to_json`, with the
/// gateway secrets' keys left in (Envoy's validation loads them).
pub fn resources_json(resources: &Resources) -> Value {
    let mut json = portolan_translate::json::resources_to_json(resources).expect("renders");
    let secrets: Vec<Value> = resources
        .secrets
        .iter()
        .map(|s| portolan_translate::json::message_to_json(s).expect("renders"))
        .collect();
    json["secrets"] = Value::Array(secrets);
    json
}

/// Turns translated resources (Envoy JSON) into a bootstrap with every resource inline: EDS
/// clusters get their ClusterLoadAssignment as `load_assignment` (and become STATIC), RDS
/// references in listeners become the `route_config` they name, and SDS references to gateway
/// certificates the `tls_certificates` of the secrets they name.
pub fn static_bootstrap(resources: &Value, group: &str) -> Result<Value, String> {
    let endpoints = resources["endpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let routes = resources["routes"].as_array().cloned().unwrap_or_default();
    let secrets = resources["secrets"].as_array().cloned().unwrap_or_default();
    let mut clusters = Vec::new();
    for c in resources["clusters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        clusters.push(inline_eds(c, &endpoints)?);
    }
    let mut listeners = Vec::new();
    for mut l in resources["listeners"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        inline_rds(&mut l, &routes)?;
        inline_sds(&mut l, &secrets)?;
        listeners.push(l);
    }
    let text = serde_json::to_string(&json!([clusters, listeners])).unwrap_or_default();
    if text.contains("\"ads\"") {
        return Err(format!("a config source is left over: {text}"));
    }
    Ok(json!({
        "node": {"id": "validate", "cluster": group},
        "static_resources": {"clusters": clusters, "listeners": listeners},
    }))
}

fn inline_eds(mut cluster: Value, endpoints: &[Value]) -> Result<Value, String> {
    let Some(obj) = cluster.as_object_mut() else {
        return Err(format!("cluster is not an object: {cluster}"));
    };
    if obj.get("type").and_then(Value::as_str) != Some("EDS") {
        return Ok(cluster);
    }
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let eds = obj.remove("eds_cluster_config").unwrap_or(Value::Null);
    let service = eds["service_name"].as_str().unwrap_or(&name).to_string();
    let cla = endpoints
        .iter()
        .find(|e| e["cluster_name"] == service.as_str())
        .cloned()
        .ok_or_else(|| format!("no ClusterLoadAssignment for {service}"))?;
    obj.insert("type".into(), json!("STATIC"));
    obj.insert("load_assignment".into(), cla);
    Ok(cluster)
}

/// Replaces every `rds` (any depth: filter chains, default filter chain) with the route
/// configuration it names.
fn inline_rds(value: &mut Value, routes: &[Value]) -> Result<(), String> {
    match value {
        Value::Object(m) => {
            if let Some(rds) = m.remove("rds") {
                let name = rds["route_config_name"].as_str().unwrap_or_default();
                let route = routes
                    .iter()
                    .find(|r| r["name"] == name)
                    .cloned()
                    .ok_or_else(|| format!("no RouteConfiguration {name:?}"))?;
                m.insert("route_config".into(), route);
            }
            for v in m.values_mut() {
                inline_rds(v, routes)?;
            }
        }
        Value::Array(items) => {
            for v in items {
                inline_rds(v, routes)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Replaces every `tls_certificate_sds_secret_configs` (any depth) with the `tls_certificates`
/// of the secrets it names.
fn inline_sds(value: &mut Value, secrets: &[Value]) -> Result<(), String> {
    match value {
        Value::Object(m) => {
            if let Some(Value::Array(configs)) = m.remove("tls_certificate_sds_secret_configs") {
                let mut certificates = Vec::new();
                for c in configs {
                    let name = c["name"].as_str().unwrap_or_default();
                    let secret = secrets
                        .iter()
                        .find(|s| s["name"] == name)
                        .ok_or_else(|| format!("no Secret {name:?}"))?;
                    certificates.push(secret["tls_certificate"].clone());
                }
                m.insert("tls_certificates".into(), Value::Array(certificates));
            }
            for v in m.values_mut() {
                inline_sds(v, secrets)?;
            }
        }
        Value::Array(items) => {
            for v in items {
                inline_sds(v, secrets)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Runs `envoy --mode validate` on a bootstrap; `Err` with Envoy's output when it rejects it.
pub fn envoy_validate(bootstrap: &Value, what: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join("bootstrap.json");
    let text = serde_json::to_string_pretty(bootstrap).map_err(|e| e.to_string())?;
    std::fs::write(&file, &text).map_err(|e| e.to_string())?;
    let out = std::process::Command::new(portolan_e2e::envoy::envoy_bin())
        .args([
            "--mode",
            "validate",
            "--log-level",
            "error",
            "--use-dynamic-base-id",
            "-c",
        ])
        .arg(&file)
        .output()
        .map_err(|e| format!("cannot run envoy: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "envoy rejected {what}:\n{}{}\n--- bootstrap:\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

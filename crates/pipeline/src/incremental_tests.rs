//! The endpoint-only rebuild against the whole one: randomized endpoint changes (Services
//! going from no endpoints to some and back, slices moving between Services, zones, subset
//! labels) on Services that a TrafficRoute splits, that a locality-aware TrafficPolicy with
//! subsets covers, for plain, zoned, gRPC, on-demand, gateway, scoped and mesh workload
//! groups (a gateway and a scoped group sharing a builder but not what they reach); and
//! the changes that must take the whole path.

use super::*;
use portolan_api::{Kind, ObjectRef};
use portolan_model::Index;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The group a group key's string form names.
fn group(key: &str) -> ProxyGroup {
    let key: portolan_model::GroupKey = key.parse().unwrap_or_else(|e| panic!("{e}"));
    ProxyGroup::from(&key)
}

/// The gateway group `edge` and the scoped `default` group share a builder (same zone, mesh
/// membership, scope and client) but not what they reach: a Gateway's proxies reach every
/// Service whatever their scope.
const GROUPS: [&str; 7] = [
    "default",
    "default;zone=zone-a",
    "default;client=grpc",
    "default;mode=on-demand",
    "edge;scope=default/s3.default.svc.cluster.local",
    "default;scope=default/s3.default.svc.cluster.local",
    "web;ns=default;sa=web",
];

/// Whether a group's rebuilds may take the endpoint-only path (a mesh workload's capture
/// listener matches endpoint addresses: never).
fn may_be_fast(key: &str) -> bool {
    !key.contains("sa=")
}

fn apply(index: &mut Index, doc: Value) {
    let resource = portolan_api::Resource::decode(doc)
        .expect("decodes")
        .expect("a kind Portolan reads");
    let errors = portolan_api::validate::validate(&resource);
    assert!(errors.is_empty(), "{errors:?}");
    index.apply(portolan_model::convert::to_object(&resource));
}

fn service(name: &str, ports: &[u16]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| json!({"name": format!("p{p}"), "port": p}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"portolan.dev/service-account": name}},
        "spec": {"ports": ports, "clusterIP": format!("10.96.0.{}", 10 + name.len() * 7 + usize::from(name.as_bytes()[1]))}})
}

/// An EndpointSlice of `service` with `endpoints` (address, zone, ready), labelled `version`.
fn slice(name: &str, service: &str, version: &str, endpoints: &[(String, &str, bool)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, zone, ready)| {
            json!({"addresses": [ip], "zone": zone, "conditions": {"ready": ready}})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service, "version": version}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "p80", "port": 8080}, {"name": "p9090", "port": 9090}]})
}

fn route(weights: (u32, u32)) -> Value {
    json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
        "metadata": {"name": "split", "namespace": "default"},
        "spec": {"hosts": ["s3"], "http": [{"name": "split", "route": [
            {"destination": {"host": "s3"}, "weight": weights.0},
            {"destination": {"host": "s4"}, "weight": weights.1}]}]}})
}

fn policy() -> Value {
    json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficPolicy",
        "metadata": {"name": "s2", "namespace": "default"},
        "spec": {"host": "s2", "loadBalancer": {"localityAware": true},
                 "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                             {"name": "v2", "labels": {"version": "v2"}}]}})
}

/// Six Services (s1 with two ports, s5 without endpoints), a split between s3 and s4, a
/// locality-aware policy with subsets on s2, a Gateway for the proxies of `edge`.
fn world() -> Index {
    let mut index = Index::new();
    for i in 0..6 {
        let name = format!("s{i}");
        let ports: &[u16] = if i == 1 { &[80, 9090] } else { &[80] };
        apply(&mut index, service(&name, ports));
        if i != 5 {
            let ep = vec![(format!("10.1.{i}.1"), "zone-a", true)];
            apply(&mut index, slice(&format!("{name}-a"), &name, "v1", &ep));
        }
    }
    apply(&mut index, route((80, 20)));
    apply(&mut index, policy());
    apply(
        &mut index,
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": "default"},
            "spec": {"selector": {"cluster": "edge"},
                     "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}}),
    );
    index
}

/// Builds every group as the pipeline does (one builder per zone, mesh membership, scope and
/// client), checks each snapshot (and provenance) against a whole translation, and returns
/// which groups took the endpoint-only path.
struct Groups {
    builders: HashMap<String, IncrementalBuilder>,
    snapshots: HashMap<&'static str, Snapshot>,
    options: Options,
}

impl Groups {
    fn new() -> Self {
        Self {
            builders: HashMap::new(),
            snapshots: HashMap::new(),
            options: Options::default(),
        }
    }

    fn build_all(&mut self, index: &mut Index) -> Vec<(&'static str, bool)> {
        let world = index.world();
        let mut fast = Vec::new();
        for key in GROUPS {
            let group = group(key);
            let builder_key = format!(
                "{:?}/{}/{:?}/{:?}",
                group.zone,
                group.workload.is_some(),
                group.scope.as_ref().map(|s| s.to_string()),
                group.client
            );
            let builder = self.builders.entry(builder_key).or_default();
            let previous = self.snapshots.get(key);
            let (built, provenance) = builder
                .build_with_secrets(&world, &group, &self.options, previous, &[])
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            fast.push((key, builder.last_was_endpoints_only()));
            let (whole, whole_provenance) = IncrementalBuilder::new()
                .build_with_secrets(&world, &group, &self.options, None, &[])
                .expect("consistent");
            if let Some(difference) = difference(&built, &whole) {
                panic!("{key} at world {}: {difference}", world.version);
            }
            assert!(provenance == whole_provenance, "{key}: provenance differs");
            let cold = portolan_translate::translate(&world, &group, &self.options);
            let cold = crate::snapshot(&cold, None).expect("consistent");
            assert_eq!(difference(&built, &cold), None, "{key}");
            self.snapshots.insert(key, built);
        }
        fast
    }
}

/// A small deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn endpoints(rng: &mut Rng) -> Vec<(String, &'static str, bool)> {
    (0..rng.next(4))
        .map(|_| {
            let ip = format!("10.2.{}.{}", rng.next(4), 1 + rng.next(250));
            let zone = ["zone-a", "zone-b"][rng.next(2) as usize];
            (ip, zone, rng.next(4) != 0)
        })
        .collect()
}

#[test]
fn endpoint_only_rebuilds_equal_whole_rebuilds() {
    let mut index = world();
    let mut groups = Groups::new();
    assert!(groups.build_all(&mut index).iter().all(|(_, fast)| !fast));
    let clusters = |key: &str| groups.snapshots[key].resources(ResourceType::Cluster).len();
    assert!(
        clusters(GROUPS[4]) > clusters(GROUPS[5]),
        "the gateway group reaches more than the scoped one"
    );
    // s5: no endpoints, then some, then none again.
    let some = vec![("10.3.0.1".to_string(), "zone-a", true)];
    apply(&mut index, slice("s5-a", "s5", "v1", &some));
    let fast = groups.build_all(&mut index);
    assert!(
        fast.iter().all(|(key, fast)| *fast == may_be_fast(key)),
        "{fast:?}"
    );
    index.delete(&ObjectRef::new(Kind::EndpointSlice, "default", "s5-a"));
    groups.build_all(&mut index);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for step in 0..40 {
        // One to three changes per rebuild, as a debounced batch.
        for _ in 0..1 + rng.next(3) {
            let name = format!("s{}", rng.next(6));
            let version = ["v1", "v2"][rng.next(2) as usize];
            match rng.next(4) {
                0 => {
                    index.delete(&ObjectRef::new(
                        Kind::EndpointSlice,
                        "default",
                        format!("{name}-a"),
                    ));
                }
                1 => apply(
                    &mut index,
                    slice(&format!("{name}-a"), &name, version, &endpoints(&mut rng)),
                ),
                // A second slice, or the shared one moved to another Service.
                2 => apply(
                    &mut index,
                    slice(&format!("{name}-b"), &name, version, &endpoints(&mut rng)),
                ),
                _ => apply(
                    &mut index,
                    slice("moving", &name, version, &endpoints(&mut rng)),
                ),
            }
        }
        let fast = groups.build_all(&mut index);
        assert!(
            fast.iter().all(|(key, fast)| *fast == may_be_fast(key)),
            "step {step}: {fast:?}"
        );
    }
}

#[test]
fn anything_but_endpoints_takes_the_whole_path() {
    let mut index = world();
    let mut groups = Groups::new();
    groups.build_all(&mut index);
    let none_fast = |fast: Vec<(&str, bool)>| fast.iter().all(|(_, f)| !f);
    // A Service's spec, a route's weights, a policy, a Service added: the whole path.
    apply(&mut index, service("s0", &[80, 8443]));
    assert!(none_fast(groups.build_all(&mut index)));
    apply(&mut index, route((50, 50)));
    assert!(none_fast(groups.build_all(&mut index)));
    index.delete(&ObjectRef::new(Kind::TrafficPolicy, "default", "s2"));
    assert!(none_fast(groups.build_all(&mut index)));
    apply(&mut index, service("s9", &[80]));
    assert!(none_fast(groups.build_all(&mut index)));
    // An endpoint change together with another change: the whole path.
    let ep = vec![("10.4.0.1".to_string(), "zone-b", true)];
    apply(&mut index, slice("s0-a", "s0", "v2", &ep));
    apply(&mut index, route((10, 90)));
    assert!(none_fast(groups.build_all(&mut index)));
    // Endpoints alone again: the fast path (but for the mesh group).
    apply(&mut index, slice("s0-a", "s0", "v1", &ep));
    let fast = groups.build_all(&mut index);
    assert!(
        fast.iter().all(|(key, fast)| *fast == may_be_fast(key)),
        "{fast:?}"
    );
    // Nothing changed: the same snapshot again.
    let before = groups.snapshots["default"].clone();
    groups.build_all(&mut index);
    assert_eq!(difference(&before, &groups.snapshots["default"]), None);
}

/// Mesh secrets other than last time (a certificate rotated), or a previous snapshot that is
/// not the one built last: the whole path.
#[test]
fn other_secrets_or_another_previous_snapshot_take_the_whole_path() {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
    let mut index = world();
    let world1 = index.world();
    let (group, options) = (group("default"), Options::default());
    let mut builder = IncrementalBuilder::new();
    let first = builder
        .build(&world1, &group, &options, None)
        .expect("consistent");
    let ep = vec![("10.5.0.1".to_string(), "zone-a", true)];
    apply(&mut index, slice("s0-a", "s0", "v1", &ep));
    let world2 = index.world();
    let secret = Secret {
        name: "rotated".into(),
        ..Default::default()
    };
    let (second, _) = builder
        .build_with_secrets(&world2, &group, &options, Some(&first), &[secret])
        .expect("consistent");
    assert!(!builder.last_was_endpoints_only());
    apply(&mut index, slice("s0-a", "s0", "v2", &ep));
    let world3 = index.world();
    builder
        .build(&world3, &group, &options, Some(&first))
        .expect("consistent");
    assert!(
        !builder.last_was_endpoints_only(),
        "not the snapshot built last"
    );
    let _ = second;
}

/// A UDP Gateway listener's cluster holds its backends' endpoints inline: an endpoint change
/// of one of them takes the whole path (and updates the cluster); one of another Service
/// may still take the endpoint-only path.
#[test]
fn an_endpoint_change_behind_a_udp_route_takes_the_whole_path() {
    let mut index = world();
    for doc in [
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": "portolan"}, "spec": {"controllerName": "portolan.dev/gateway-controller"}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "dns", "namespace": "default"},
            "spec": {"gatewayClassName": "portolan", "addresses": [{"type": "IPAddress", "value": "127.0.0.9"}],
                "listeners": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "UDPRoute",
            "metadata": {"name": "dns", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "dns"}], "rules": [{"backendRefs": [{"name": "u", "port": 53}]}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "u", "namespace": "default"},
            "spec": {"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}),
    ] {
        apply(&mut index, doc);
    }
    let udp_slice = |ip: &str| {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "u-a", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "u"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
            "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}]})
    };
    apply(&mut index, udp_slice("10.5.0.1"));
    let group = group("gateway:default/dns");
    let options = Options::default();
    let mut builder = IncrementalBuilder::new();
    let mut build = |index: &mut Index, previous: Option<&Snapshot>| {
        let world = index.world();
        let (built, _) = builder
            .build_with_secrets(&world, &group, &options, previous, &[])
            .expect("builds");
        let (whole, _) = IncrementalBuilder::new()
            .build_with_secrets(&world, &group, &options, None, &[])
            .expect("builds");
        assert_eq!(difference(&built, &whole), None);
        (built, builder.last_was_endpoints_only())
    };
    let (first, _) = build(&mut index, None);
    apply(&mut index, udp_slice("10.5.0.2"));
    let (second, fast) = build(&mut index, Some(&first));
    assert!(!fast, "the UDP backend's endpoints moved: the whole path");
    let ep = vec![("10.6.0.1".to_string(), "zone-a", true)];
    apply(&mut index, slice("s0-a", "s0", "v1", &ep));
    let (_, fast) = build(&mut index, Some(&second));
    assert!(fast, "another Service's endpoints: the endpoint-only path");
}

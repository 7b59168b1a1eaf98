//! Provenance: each kind of resource is recorded as made from the objects translation used
//! for it, and a [`Translator`]'s rebuild carries the entries of untouched Services over.

use super::golden_routing::mk_gateway_world;
use super::*;
use crate::Translator;
use crate::names;
use crate::provenance::{PartKind, Provenance, ResourceKind};
use portolan_model::routing::PathMatch;

/// Every object behind the resource of `kind` named `name`, as `Kind ns/name`.
fn objects(p: &Provenance, kind: ResourceKind, name: &str) -> Vec<String> {
    let mut out: Vec<String> = p
        .of(kind, name)
        .flat_map(|e| {
            e.objects()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

const REVIEWS: &str = "outbound|9080||reviews.default.svc.cluster.local";
const REGEX: &str = "/v[0-9]+/reviews";

/// `reviews` with a TrafficPolicy (subset v1) and a mesh TrafficRoute with a regex rule.
fn world() -> World {
    let mut policy = mk_policy("default", "reviews-lb", "reviews");
    policy.subsets = vec![mk_subset("v1", &[("version", "v1")])];
    let rule = mk_rule(
        vec![HttpMatch {
            path: Some(PathMatch::Regex(REGEX.to_string())),
            ..Default::default()
        }],
        mk_forward(vec![mk_backend("reviews", None, Some("v1"), 1)]),
    );
    let route = mk_route("default", "reviews-v1", &["reviews"], vec![rule]);
    with(
        mk_reviews_world(),
        Extra {
            routes: vec![route],
            policies: vec![policy],
            ..Default::default()
        },
    )
}

#[test]
fn service_clusters_and_assignments_come_from_the_service_its_policy_and_slices() {
    let p = run(&world()).provenance;
    let subset = "outbound|9080|v1|reviews.default.svc.cluster.local";
    for name in [REVIEWS, subset] {
        assert_eq!(
            objects(&p, ResourceKind::Cluster, name),
            [
                "Service default/reviews",
                "TrafficPolicy default/reviews-lb"
            ],
            "{name}"
        );
        assert_eq!(
            objects(&p, ResourceKind::Endpoint, name),
            [
                "EndpointSlice default/reviews-v1",
                "EndpointSlice default/reviews-v2",
                "EndpointSlice default/reviews-v3",
                "Service default/reviews",
                "TrafficPolicy default/reviews-lb",
            ],
            "{name}"
        );
    }
}

#[test]
fn mesh_virtual_hosts_and_rules_come_from_their_service_and_traffic_route() {
    let p = run(&world()).provenance;
    let mesh: Vec<_> = p.of(ResourceKind::Route, names::MESH_ROUTE).collect();
    assert_eq!(mesh.len(), 1);
    let vhost = mesh[0]
        .parts
        .iter()
        .find(|part| part.kind == PartKind::VirtualHost)
        .expect("the reviews virtual host");
    let vhost_objects: Vec<String> = vhost.origins.iter().map(ToString::to_string).collect();
    assert_eq!(
        vhost_objects,
        ["Service default/reviews", "TrafficRoute default/reviews-v1"]
    );
    let quoted: Vec<String> = mesh[0]
        .parts_in(&format!("regex '{REGEX}' is refused"))
        .flat_map(|part| part.origins.iter().map(ToString::to_string))
        .collect();
    assert_eq!(quoted, ["TrafficRoute default/reviews-v1"]);
    assert_eq!(
        objects(&p, ResourceKind::Route, names::MESH_ROUTE),
        ["Service default/reviews", "TrafficRoute default/reviews-v1"]
    );
    // The mesh listener is made from no object.
    assert_eq!(p.of(ResourceKind::Listener, "mesh-outbound").count(), 0);
}

#[test]
fn gateway_listeners_and_routes_come_from_gateways_secrets_and_attached_routes() {
    let p = run_group(&mk_gateway_world(), "ingress").provenance;
    assert_eq!(
        objects(&p, ResourceKind::Listener, "gateway-8443"),
        [
            "Gateway edge/ingress",
            "Secret edge/api-cert",
            "Secret edge/shop-cert"
        ]
    );
    assert_eq!(
        objects(&p, ResourceKind::Listener, "gateway-8080"),
        ["Gateway edge/ingress"]
    );
    assert_eq!(
        objects(&p, ResourceKind::Route, "gateway-8443"),
        ["TrafficRoute edge/api", "TrafficRoute edge/shop"]
    );
}

#[test]
fn on_demand_virtual_hosts_come_from_the_virtual_host_they_split_from() {
    let p = run_group(&world(), "default;mode=on-demand").provenance;
    let name = crate::on_demand::virtual_host_resource_name("reviews.default:9080");
    assert_eq!(
        objects(&p, ResourceKind::VirtualHost, &name),
        ["Service default/reviews", "TrafficRoute default/reviews-v1"]
    );
}

/// A rebuild after one Service changed: the same provenance as a cold translation, the
/// untouched Service's entries the very ones of the first build.
#[test]
fn a_translator_carries_untouched_services_entries_over() {
    let mut world = world();
    let other = mk_service("default", "ratings", vec![mk_port("http", 9080)]);
    world.services.insert(other.key.clone(), Arc::new(other));
    let group = ProxyGroup::default();
    let options = Options::default();
    let mut translator = Translator::new();
    let first = translator.translate(&world, &group, &options).provenance;
    let mut changed = mk_service("default", "ratings", vec![mk_port("http", 9081)]);
    changed.labels.insert("x".into(), "y".into());
    world
        .services
        .insert(changed.key.clone(), Arc::new(changed));
    let second = translator.translate(&world, &group, &options).provenance;
    assert_eq!(second, translate(&world, &group, &options).provenance);
    let entry = |p: &Provenance| {
        p.of(ResourceKind::Cluster, REVIEWS)
            .next()
            .expect("recorded")
            .origins
            .clone()
    };
    assert!(Arc::ptr_eq(&entry(&first), &entry(&second)));
    let ratings = "outbound|9081||ratings.default.svc.cluster.local";
    assert_eq!(
        objects(&second, ResourceKind::Cluster, ratings),
        ["Service default/ratings"]
    );
}

fn apply_doc(idx: &mut portolan_model::Index, doc: serde_json::Value) {
    let r = portolan_api::Resource::decode(doc)
        .expect("decodes")
        .expect("is read");
    assert!(portolan_api::validate::validate(&r).is_empty());
    idx.apply(portolan_model::convert::to_object(&r));
}

/// A Gateway (HTTP on 80) with a ListenerSet attached (HTTP on 8081, UDP on 5353): the ports
/// of the set's listeners come from the ListenerSet, not the Gateway, and the Gateway's port
/// from the Gateway only; a rule on the set's port is behind its route and the set.
#[test]
fn listener_set_ports_come_from_the_listener_set() {
    use serde_json::json;
    let mut idx = portolan_model::Index::new();
    for doc in [
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": "portolan"}, "spec": {"controllerName": "portolan.dev/gateway-controller"}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "infra"},
            "spec": {"gatewayClassName": "portolan",
                "addresses": [{"type": "IPAddress", "value": "127.0.0.9"}],
                "allowedListeners": {"namespaces": {"from": "Same"}},
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "ListenerSet",
            "metadata": {"name": "extra", "namespace": "infra"},
            "spec": {"parentRef": {"name": "gw"}, "listeners": [
                {"name": "more", "port": 8081, "protocol": "HTTP"},
                {"name": "dns", "port": 5353, "protocol": "UDP"}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "on-set", "namespace": "infra"},
            "spec": {"parentRefs": [{"kind": "ListenerSet", "name": "extra"}],
                "rules": [{"matches": [{"path": {"type": "RegularExpression", "value": REGEX}}],
                           "backendRefs": [{"name": "a", "port": 80}]}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "on-gw", "namespace": "infra"},
            "spec": {"parentRefs": [{"name": "gw"}],
                "rules": [{"backendRefs": [{"name": "a", "port": 80}]}]}}),
    ] {
        apply_doc(&mut idx, doc);
    }
    let world = idx.world();
    let p = run_group(&world, "gateway:infra/gw").provenance;
    let set = "ListenerSet infra/extra";
    let gw = "Gateway infra/gw";
    assert_eq!(
        objects(&p, ResourceKind::Listener, "gateway-8081"),
        ["HTTPRoute infra/on-set", set]
    );
    assert_eq!(
        objects(&p, ResourceKind::Route, "gateway-8081"),
        ["HTTPRoute infra/on-set", set]
    );
    assert_eq!(
        objects(&p, ResourceKind::Listener, "gateway-5353-udp"),
        [set]
    );
    assert_eq!(
        objects(&p, ResourceKind::Listener, "gateway-80"),
        [gw, "HTTPRoute infra/on-gw"]
    );
    // A rule of the set's port, quoted by Envoy, is behind its route and the set only.
    let entry = p
        .of(ResourceKind::Route, "gateway-8081")
        .next()
        .expect("route configuration gateway-8081");
    let text = format!("invalid regex '{REGEX}'");
    let behind: Vec<String> = entry
        .parts_in(&text)
        .filter(|part| part.kind == PartKind::Route)
        .flat_map(|part| part.origins.iter().map(ToString::to_string))
        .collect();
    assert_eq!(behind, ["HTTPRoute infra/on-set", set]);
}

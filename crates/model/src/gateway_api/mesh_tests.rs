//! GAMMA compilation: producer and consumer routes per Service port, precedence across
//! routes, and the parent status of Service parentRefs.

use super::*;
use crate::gateway_api::ApiStatus;
use crate::index::Index;
use crate::routing::HttpAction;
use crate::types::{Object, Protocol, Service, ServiceKey, ServicePort};
use portolan_api::{Kind, ObjectRef, Resource};
use serde_json::json;

fn apply(idx: &mut Index, doc: serde_json::Value) {
    let r = Resource::decode(doc).expect("decodes").expect("is read");
    let errors = portolan_api::validate::validate(&r);
    assert!(errors.is_empty(), "{errors:?}");
    idx.apply(crate::convert::to_object(&r));
}

fn service(idx: &mut Index, ns: &str, name: &str, ports: &[u16]) {
    idx.apply(Object::from(Service {
        key: ServiceKey::new(ns, name),
        ports: ports
            .iter()
            .map(|&port| ServicePort {
                name: format!("http-{port}"),
                port,
                protocol: Protocol::Tcp,
                target_port: None,
                app_protocol: None,
            })
            .collect(),
        cluster_ip: None,
        external_name: None,
        labels: Default::default(),
    }));
}

fn base() -> Index {
    let mut idx = Index::new();
    service(&mut idx, "mesh", "echo", &[80, 8080]);
    service(&mut idx, "mesh", "echo-v1", &[80]);
    service(&mut idx, "mesh", "echo-v2", &[80]);
    idx
}

/// An HTTPRoute in `ns` with `parent` (a Service parentRef) sending `path` to `backend`.
fn route(
    idx: &mut Index,
    ns: &str,
    name: &str,
    parent: serde_json::Value,
    path: &str,
    backend: &str,
) {
    apply(
        idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"parentRefs": [parent], "hostnames": ["ignored.example.com"], "rules": [{
            "matches": [{"path": {"type": "PathPrefix", "value": path}}],
            "backendRefs": [{"name": backend, "namespace": "mesh", "port": 80}]}]}}),
    );
}

fn echo(port: Option<u16>) -> serde_json::Value {
    let mut p = json!({"group": "", "kind": "Service", "name": "echo", "namespace": "mesh"});
    if let Some(port) = port {
        p["port"] = json!(port);
    }
    p
}

/// The backends (host names) of each rule that routes `port` for namespace `consumer`.
fn backends(world: &World, port: u16, consumer: Option<&str>) -> Vec<String> {
    let key = ServiceKey::new("mesh", "echo");
    world
        .api_mesh
        .rules(&key, port, consumer)
        .unwrap_or_default()
        .iter()
        .map(|r| match &r.rule.action {
            HttpAction::Forward { backends, .. } => backends
                .iter()
                .map(|b| b.destination.host.clone())
                .collect::<Vec<_>>()
                .join(","),
            other => format!("{other:?}"),
        })
        .collect()
}

fn conditions(world: &World, ns: &str, name: &str) -> Vec<(String, String, String)> {
    let key = ObjectRef::new(Kind::HttpRoute, ns, name);
    let Some(ApiStatus::Route(s)) = world.api_statuses.get(&key) else {
        panic!("no route status for {key}");
    };
    assert_eq!(s.parents.len(), 1);
    assert_eq!(s.parents[0].parent_ref.kind.as_deref(), Some("Service"));
    assert_eq!(
        s.parents[0].controller_name,
        "portolan.dev/gateway-controller"
    );
    s.parents[0]
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect()
}

fn c(t: &str, s: &str, r: &str) -> (String, String, String) {
    (t.into(), s.into(), r.into())
}

#[test]
fn producer_routes_merge_by_precedence_on_every_port_or_the_named_one() {
    let mut idx = base();
    route(&mut idx, "mesh", "split", echo(None), "/v2", "echo-v2");
    route(&mut idx, "mesh", "root", echo(Some(80)), "/", "echo-v1");
    let world = idx.world();
    // The longer prefix first, whichever route it came from; hostnames play no part.
    assert_eq!(backends(&world, 80, None), ["echo-v2.mesh", "echo-v1.mesh"]);
    assert_eq!(
        backends(&world, 80, Some("other")),
        ["echo-v2.mesh", "echo-v1.mesh"]
    );
    // Port 8080: only the route without a port.
    assert_eq!(backends(&world, 8080, None), ["echo-v2.mesh"]);
    assert_eq!(
        conditions(&world, "mesh", "root"),
        [
            c("Accepted", "True", "Accepted"),
            c("ResolvedRefs", "True", "ResolvedRefs")
        ]
    );
}

#[test]
fn section_name_selects_a_port_by_its_name() {
    let mut idx = base();
    let mut parent = echo(None);
    parent["sectionName"] = json!("http-8080");
    route(&mut idx, "mesh", "alt", parent, "/", "echo-v2");
    let world = idx.world();
    assert_eq!(backends(&world, 8080, None), ["echo-v2.mesh"]);
    assert!(backends(&world, 80, None).is_empty());
}

#[test]
fn a_consumer_route_applies_to_its_namespace_only_and_wins_there() {
    let mut idx = base();
    route(&mut idx, "mesh", "producer", echo(None), "/", "echo-v1");
    route(&mut idx, "consumer", "mine", echo(None), "/", "echo-v2");
    // A backend in another namespace takes a ReferenceGrant there, as for any route.
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "consumers", "namespace": "mesh"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "consumer"}],
                 "to": [{"group": "", "kind": "Service"}]}}),
    );
    let world = idx.world();
    assert_eq!(backends(&world, 80, Some("consumer")), ["echo-v2.mesh"]);
    assert_eq!(backends(&world, 80, Some("mesh")), ["echo-v1.mesh"]);
    assert_eq!(backends(&world, 80, None), ["echo-v1.mesh"]);
    assert_eq!(
        conditions(&world, "consumer", "mine")[0],
        c("Accepted", "True", "Accepted")
    );
}

#[test]
fn service_parents_that_do_not_match_are_refused_with_the_upstream_reasons() {
    let mut idx = base();
    let missing = json!({"group": "", "kind": "Service", "name": "nope"});
    route(&mut idx, "mesh", "missing", missing, "/", "echo-v1");
    route(
        &mut idx,
        "mesh",
        "bad-port",
        echo(Some(9999)),
        "/",
        "echo-v1",
    );
    route(&mut idx, "mesh", "bad-backend", echo(None), "/", "gone");
    let mut by_name = echo(Some(8080));
    by_name["sectionName"] = json!("http-80");
    route(
        &mut idx,
        "mesh",
        "name-and-port-differ",
        by_name,
        "/",
        "echo-v1",
    );
    let world = idx.world();
    assert_eq!(
        conditions(&world, "mesh", "name-and-port-differ")[0],
        c("Accepted", "False", "NoMatchingParent")
    );
    assert_eq!(
        conditions(&world, "mesh", "missing")[0],
        c("Accepted", "False", "NoMatchingParent")
    );
    assert_eq!(
        conditions(&world, "mesh", "bad-port")[0],
        c("Accepted", "False", "NoMatchingParent")
    );
    assert_eq!(
        conditions(&world, "mesh", "bad-backend"),
        [
            c("Accepted", "True", "Accepted"),
            c("ResolvedRefs", "False", "BackendNotFound")
        ]
    );
    // The route with a missing backend still routes: its rule answers 500.
    let key = ServiceKey::new("mesh", "echo");
    let rules = world.api_mesh.rules(&key, 80, None).expect("routed");
    assert!(matches!(
        rules[0].rule.action,
        HttpAction::DirectResponse { status: 500, .. }
    ));
    assert!(world.api_mesh.rules(&key, 9999, None).is_none());
}

/// A GRPCRoute in `ns` with `parent` sending every call to `backend`, created at `created`.
fn grpc_route(
    idx: &mut Index,
    (ns, name, created): (&str, &str, &str),
    parent: serde_json::Value,
    backend: &str,
) {
    apply(
        idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
        "spec": {"parentRefs": [parent], "rules": [{
            "backendRefs": [{"name": backend, "namespace": "mesh", "port": 80}]}]}}),
    );
}

/// The Accepted condition of route `kind ns/name` (its only parent).
fn accepted(world: &World, kind: Kind, ns: &str, name: &str) -> (String, String) {
    let key = ObjectRef::new(kind, ns, name);
    let Some(ApiStatus::Route(s)) = world.api_statuses.get(&key) else {
        panic!("no route status for {key}");
    };
    let a = s.parents[0]
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .expect("Accepted");
    (a.status.clone(), a.reason.clone())
}

/// GEP-1426 route types: on one Service port a GRPCRoute takes precedence over an HTTPRoute,
/// even an older one; an HTTPRoute refused on every port of its parentRef is
/// `Accepted=False RouteReasonConflicted`, one left with another port keeps it; a consumer
/// route (another scope) is not in conflict with a producer GRPCRoute.
#[test]
fn a_grpc_route_takes_a_service_port_from_http_routes_whatever_their_age() {
    let mut idx = base();
    let http = |idx: &mut Index, ns: &str, name: &str, created: &str, parent| {
        apply(
            idx,
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
            "spec": {"parentRefs": [parent], "rules": [{
                "backendRefs": [{"name": "echo-v1", "namespace": "mesh", "port": 80}]}]}}),
        );
    };
    http(
        &mut idx,
        "mesh",
        "old-http",
        "2020-01-01T00:00:00Z",
        echo(Some(80)),
    );
    http(
        &mut idx,
        "mesh",
        "both-ports",
        "2020-01-01T00:00:00Z",
        echo(None),
    );
    http(
        &mut idx,
        "consumer",
        "mine",
        "2020-01-01T00:00:00Z",
        echo(Some(80)),
    );
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "consumers", "namespace": "mesh"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "consumer"}],
                 "to": [{"group": "", "kind": "Service"}]}}),
    );
    let new_grpc = ("mesh", "new-grpc", "2024-01-01T00:00:00Z");
    grpc_route(&mut idx, new_grpc, echo(Some(80)), "echo-v2");
    let world = idx.world();
    let refused = ("False".to_string(), "RouteReasonConflicted".to_string());
    let fine = ("True".to_string(), "Accepted".to_string());
    assert_eq!(
        accepted(&world, Kind::HttpRoute, "mesh", "old-http"),
        refused
    );
    assert_eq!(accepted(&world, Kind::GrpcRoute, "mesh", "new-grpc"), fine);
    assert_eq!(
        accepted(&world, Kind::HttpRoute, "mesh", "both-ports"),
        fine
    );
    assert_eq!(accepted(&world, Kind::HttpRoute, "consumer", "mine"), fine);
    // Port 80 serves the GRPCRoute only; 8080 the HTTPRoute that kept it.
    assert_eq!(backends(&world, 80, None), ["echo-v2.mesh"]);
    assert_eq!(backends(&world, 8080, None), ["echo-v1.mesh"]);
    assert_eq!(backends(&world, 80, Some("consumer")), ["echo-v1.mesh"]);
}

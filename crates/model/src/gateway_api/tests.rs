//! Compiling Gateway API objects: ownership by class, attachment reasons, precedence across
//! routes, backend resolution and addresses.

use super::*;
use crate::index::Index;
use crate::routing::{HttpAction, PathMatch};
use crate::types::{Object, Service, ServiceKey};
use portolan_api::{Kind, Resource};
use serde_json::json;

fn apply(idx: &mut Index, doc: serde_json::Value) {
    let r = Resource::decode(doc).expect("decodes").expect("is read");
    let errors = portolan_api::validate::validate(&r);
    assert!(errors.is_empty(), "{errors:?}");
    idx.apply(crate::convert::to_object(&r));
}

fn service(idx: &mut Index, ns: &str, name: &str) {
    idx.apply(Object::Service(Service {
        key: ServiceKey::new(ns, name),
        ports: vec![],
        cluster_ip: None,
        external_name: None,
        labels: Default::default(),
    }));
}

fn base() -> Index {
    let mut idx = Index::new();
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "portolan"}, "spec": {"controllerName": "portolan.dev/gateway-controller"}}),
    );
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "other"}, "spec": {"controllerName": "example.com/other"}}),
    );
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "infra"},
        "spec": {"gatewayClassName": "portolan", "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP"},
            {"name": "tcp", "port": 81, "protocol": "TCP"}]}}),
    );
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "theirs", "namespace": "infra"},
        "spec": {"gatewayClassName": "other", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
    );
    service(&mut idx, "infra", "a");
    service(&mut idx, "infra", "b");
    service(&mut idx, "web", "w");
    idx
}

fn route(idx: &mut Index, ns: &str, name: &str, rules: serde_json::Value) {
    apply(
        idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"parentRefs": [{"name": "gw", "namespace": "infra"}], "rules": rules}}),
    );
}

fn parent_condition(world: &World, ns: &str, name: &str, type_: &str) -> (String, String) {
    let key = ObjectRef::new(Kind::HttpRoute, ns, name);
    let Some(ApiStatus::Route(s)) = world.api_statuses.get(&key) else {
        panic!("no route status for {key}");
    };
    let c = s.parents[0]
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("condition");
    (c.status.clone(), c.reason.clone())
}

#[test]
fn only_our_class_is_compiled_and_unsupported_listeners_say_why() {
    let mut idx = base();
    let world = idx.world();
    let ours = ObjectRef::new(Kind::ApiGateway, "infra", "gw");
    assert!(world.api_gateways.contains_key(&ours));
    assert!(
        !world
            .api_gateways
            .contains_key(&ObjectRef::new(Kind::ApiGateway, "infra", "theirs"))
    );
    assert!(
        !world
            .api_statuses
            .contains_key(&ObjectRef::new(Kind::GatewayClass, "", "other"))
    );
    let Some(ApiStatus::Gateway(s)) = world.api_statuses.get(&ours) else {
        panic!("no Gateway status");
    };
    assert_eq!(s.conditions[0].reason, "ListenersNotValid");
    assert_eq!(s.conditions[0].status, "True");
    let tcp = &s.listeners[1];
    assert!(
        tcp.conditions
            .iter()
            .any(|c| c.reason == "UnsupportedProtocol")
    );
    let gw = &world.api_gateways[&ours];
    assert_eq!(gw.group, "gateway:infra/gw");
    assert_eq!(gw.ports.len(), 1, "only the HTTP listener is served");
    assert!(gw.address.starts_with("127.0.1."), "{}", gw.address);
}

#[test]
fn precedence_holds_across_routes() {
    let mut idx = base();
    route(
        &mut idx,
        "infra",
        "z-prefix",
        json!([
        {"matches": [{"path": {"type": "PathPrefix", "value": "/a"}}], "backendRefs": [{"name": "a", "port": 80}]}]),
    );
    route(
        &mut idx,
        "infra",
        "a-exact",
        json!([
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [{"name": "a", "port": 80}]},
        {"matches": [{"path": {"type": "Exact", "value": "/a"}, "method": "GET"},
                     {"path": {"type": "PathPrefix", "value": "/a/b/"}, "headers": [{"name": "X", "value": "1"}]}],
         "backendRefs": [{"name": "b", "port": 80}]}]),
    );
    let world = idx.world();
    let gw = &world.api_gateways[&ObjectRef::new(Kind::ApiGateway, "infra", "gw")];
    let vh = &gw.ports[0].virtual_hosts[0];
    assert_eq!(vh.hostname, "*");
    let paths: Vec<_> = vh
        .rules
        .iter()
        .map(|r| r.rule.matches[0].path.clone())
        .collect();
    assert_eq!(
        paths,
        [
            Some(PathMatch::Exact("/a".into())),
            Some(PathMatch::SegmentPrefix("/a/b".into())),
            Some(PathMatch::SegmentPrefix("/a".into())),
            Some(PathMatch::SegmentPrefix("/".into())),
        ]
    );
}

#[test]
fn unresolved_backends_say_why_and_answer_500() {
    let mut idx = base();
    route(
        &mut idx,
        "infra",
        "cross",
        json!([{"backendRefs": [{"name": "w", "namespace": "web", "port": 80}]}]),
    );
    route(
        &mut idx,
        "infra",
        "kind",
        json!([{"backendRefs": [{"group": "x.io", "kind": "Thing", "name": "a"}]}]),
    );
    route(
        &mut idx,
        "infra",
        "missing",
        json!([{"backendRefs": [{"name": "nope", "port": 80}]}]),
    );
    route(
        &mut idx,
        "infra",
        "half",
        json!([{"backendRefs": [{"name": "a", "port": 80}, {"name": "nope", "port": 80}]}]),
    );
    let world = idx.world();
    for (name, reason) in [
        ("cross", "RefNotPermitted"),
        ("kind", "InvalidKind"),
        ("missing", "BackendNotFound"),
    ] {
        assert_eq!(
            parent_condition(&world, "infra", name, "ResolvedRefs"),
            ("False".into(), reason.into())
        );
        assert_eq!(
            parent_condition(&world, "infra", name, "Accepted"),
            ("True".into(), "Accepted".into())
        );
    }
    let gw = &world.api_gateways[&ObjectRef::new(Kind::ApiGateway, "infra", "gw")];
    let by_route = |name: &str| {
        gw.ports[0].virtual_hosts[0]
            .rules
            .iter()
            .find(|r| r.route.name == name)
            .map(|r| r.rule.action.clone())
            .expect("rule")
    };
    assert!(matches!(
        by_route("missing"),
        HttpAction::DirectResponse { status: 500, .. }
    ));
    let HttpAction::Forward { backends, .. } = by_route("half") else {
        panic!("half forwards");
    };
    assert_eq!(backends.len(), 2, "the invalid backend keeps its share");
    assert_eq!(backends[1].destination.host, rules::INVALID_BACKEND_HOST);

    // A ReferenceGrant in the target namespace permits the cross-namespace reference.
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "g", "namespace": "web"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "infra"}],
                 "to": [{"group": "", "kind": "Service"}]}}),
    );
    let world = idx.world();
    assert_eq!(
        parent_condition(&world, "infra", "cross", "ResolvedRefs"),
        ("True".into(), "ResolvedRefs".into())
    );
}

#[test]
fn routes_outside_the_allowed_namespaces_or_sections_are_refused() {
    let mut idx = base();
    route(
        &mut idx,
        "web",
        "elsewhere",
        json!([{"backendRefs": [{"name": "w", "port": 80}]}]),
    );
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "section", "namespace": "infra"},
        "spec": {"parentRefs": [{"name": "gw", "sectionName": "nope"}], "rules": []}}),
    );
    let world = idx.world();
    assert_eq!(
        parent_condition(&world, "web", "elsewhere", "Accepted"),
        ("False".into(), "NotAllowedByListeners".into())
    );
    assert_eq!(
        parent_condition(&world, "infra", "section", "Accepted"),
        ("False".into(), "NoMatchingParent".into())
    );
}

#[test]
fn given_addresses_win_and_pool_addresses_avoid_them() {
    let mut idx = Index::with_gateway_pool(AddressPool::parse("10.9.0.0/30").expect("pool"));
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "portolan"}, "spec": {"controllerName": "portolan.dev/gateway-controller"}}),
    );
    for (name, addresses) in [
        ("a", json!([{"type": "IPAddress", "value": "10.9.0.1"}])),
        ("b", json!([])),
    ] {
        apply(
            &mut idx,
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"gatewayClassName": "portolan", "addresses": addresses,
                     "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
        );
    }
    let world = idx.world();
    let addr = |n: &str| {
        world.api_gateways[&ObjectRef::new(Kind::ApiGateway, "ns", n)]
            .address
            .clone()
    };
    assert_eq!(addr("a"), "10.9.0.1");
    assert_eq!(addr("b"), "10.9.0.2", "the /30 has two hosts; .1 is taken");
}

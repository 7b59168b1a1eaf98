//! Compiling Gateway API objects: ownership by class, attachment reasons, precedence across
//! routes, backend resolution and addresses.

use super::*;
use crate::index::Index;
use crate::routing::{HttpAction, PathMatch};
use crate::types::{Object, Protocol, Service, ServiceKey, ServicePort};
use portolan_api::{Kind, Resource};
use serde_json::json;

fn apply(idx: &mut Index, doc: serde_json::Value) {
    let r = Resource::decode(doc).expect("decodes").expect("is read");
    let errors = portolan_api::validate::validate(&r);
    assert!(errors.is_empty(), "{errors:?}");
    idx.apply(crate::convert::to_object(&r));
}

fn service(idx: &mut Index, ns: &str, name: &str) {
    idx.apply(Object::from(Service {
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
            {"name": "sctp", "port": 81, "protocol": "SCTP"}]}}),
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
    let sctp = &s.listeners[1];
    assert!(
        sctp.conditions
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
fn extension_ref_filters_are_unresolved_and_their_rules_answer_500() {
    let mut idx = base();
    let ext = json!({"type": "ExtensionRef",
        "extensionRef": {"group": "example.io", "kind": "Magic", "name": "m"}});
    route(
        &mut idx,
        "infra",
        "ext",
        json!([
            {"matches": [{"path": {"value": "/ext"}}], "filters": [ext.clone()],
             "backendRefs": [{"name": "a", "port": 80}]},
            {"matches": [{"path": {"value": "/ok"}}], "backendRefs": [{"name": "a", "port": 80}]}
        ]),
    );
    route(
        &mut idx,
        "infra",
        "backend-ext",
        json!([{"matches": [{"path": {"value": "/b"}}],
                "backendRefs": [{"name": "a", "port": 80, "filters": [ext]}]}]),
    );
    let world = idx.world();
    for name in ["ext", "backend-ext"] {
        assert_eq!(
            parent_condition(&world, "infra", name, "ResolvedRefs"),
            ("False".into(), "InvalidKind".into())
        );
        assert_eq!(
            parent_condition(&world, "infra", name, "Accepted"),
            ("True".into(), "Accepted".into())
        );
    }
    let gw = &world.api_gateways[&ObjectRef::new(Kind::ApiGateway, "infra", "gw")];
    let rule = |name: &str, index: usize| {
        gw.ports[0].virtual_hosts[0]
            .rules
            .iter()
            .find(|r| r.route.name == name && r.index == index)
            .map(|r| r.rule.action.clone())
            .expect("rule")
    };
    assert!(matches!(
        rule("ext", 0),
        HttpAction::DirectResponse { status: 500, .. }
    ));
    assert!(matches!(rule("ext", 1), HttpAction::Forward { .. }));
    // A mirror to a Service that does not exist is left out and said in ResolvedRefs.
    route(
        &mut idx,
        "infra",
        "mirror-missing",
        json!([{"matches": [{"path": {"value": "/m"}}],
                "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "nope", "port": 80}}}],
                "backendRefs": [{"name": "a", "port": 80}]}]),
    );
    let world = idx.world();
    assert_eq!(
        parent_condition(&world, "infra", "mirror-missing", "ResolvedRefs"),
        ("False".into(), "BackendNotFound".into())
    );
    // Its only backend cannot take the filter: every request gets 500.
    assert!(matches!(
        rule("backend-ext", 0),
        HttpAction::DirectResponse { status: 500, .. }
    ));
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

#[test]
fn in_a_cluster_gateways_bind_any_address_and_report_the_requested_ones() {
    let mut idx = Index::with_gateway_pool(AddressPool::cluster());
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "portolan"}, "spec": {"controllerName": "portolan.dev/gateway-controller"}}),
    );
    for (name, addresses) in [
        ("a", json!([{"type": "IPAddress", "value": "203.0.113.7"}])),
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
    for n in ["a", "b"] {
        let key = ObjectRef::new(Kind::ApiGateway, "ns", n);
        assert_eq!(
            world.api_gateways[&key].address, "0.0.0.0",
            "{n} binds any address"
        );
    }
    let addresses = |n: &str| {
        let Some(ApiStatus::Gateway(s)) =
            world
                .api_statuses
                .get(&ObjectRef::new(Kind::ApiGateway, "ns", n))
        else {
            panic!("status of {n}");
        };
        s.addresses
            .iter()
            .map(|a| a.value.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(addresses("a"), ["203.0.113.7"]);
    assert!(addresses("b").is_empty(), "until its Service has one");
}

fn secret(idx: &mut Index, ns: &str, name: &str) {
    idx.apply(Object::from(crate::gateway::TlsSecret {
        source: ObjectRef::new(Kind::Secret, ns, name),
        cert_chain: "-----BEGIN CERTIFICATE-----\n...".to_string(),
        private_key: "-----BEGIN PRIVATE KEY-----\n...".to_string(),
    }));
}

fn listener_condition(world: &World, gw: &str, listener: &str, type_: &str) -> (String, String) {
    let key = ObjectRef::new(Kind::ApiGateway, "infra", gw);
    let Some(ApiStatus::Gateway(s)) = world.api_statuses.get(&key) else {
        panic!("no Gateway status for {key}");
    };
    entry_condition(&s.listeners, listener, type_)
}

/// Condition `type_` of the `listeners[]` entry `listener` (a Gateway's or a ListenerSet's).
fn entry_condition(
    listeners: &[super::status::ListenerStatus],
    listener: &str,
    type_: &str,
) -> (String, String) {
    let l = listeners
        .iter()
        .find(|l| l.name == listener)
        .expect("listener");
    let c = l
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("condition");
    (c.status.clone(), c.reason.clone())
}

#[test]
fn https_listeners_resolve_certificates_or_say_why() {
    let mut idx = base();
    secret(&mut idx, "infra", "cert");
    secret(&mut idx, "web", "cert");
    let https = |name: &str, host: Option<&str>, r: serde_json::Value| {
        json!({"name": name, "port": 443, "protocol": "HTTPS", "hostname": host,
               "tls": {"certificateRefs": [r]}})
    };
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "tls", "namespace": "infra"},
        "spec": {"gatewayClassName": "portolan", "listeners": [
            https("own", None, json!({"name": "cert"})),
            https("other-ns", Some("b.example.com"), json!({"name": "cert", "namespace": "web"})),
            https("kind", Some("c.example.com"), json!({"kind": "ConfigMap", "name": "cert"})),
            https("missing", Some("d.example.com"), json!({"name": "nope"})),
            {"name": "no-refs", "port": 443, "protocol": "HTTPS", "hostname": "e.example.com"}]}}),
    );
    let world = idx.world();
    let resolved = |l| listener_condition(&world, "tls", l, "ResolvedRefs");
    assert_eq!(resolved("own"), ("True".into(), "ResolvedRefs".into()));
    assert_eq!(
        resolved("other-ns"),
        ("False".into(), "RefNotPermitted".into())
    );
    for l in ["kind", "missing", "no-refs"] {
        assert_eq!(
            resolved(l),
            ("False".into(), "InvalidCertificateRef".into()),
            "{l}"
        );
    }
    let gw = &world.api_gateways[&ObjectRef::new(Kind::ApiGateway, "infra", "tls")];
    let port = &gw.ports[0];
    assert!(port.tls);
    assert_eq!(port.chains.len(), 1, "only the resolved listener is served");
    assert!(port.chains[0].server_names.is_empty());
    let ChainKind::Terminate { certificates, .. } = &port.chains[0].kind else {
        panic!("not terminating");
    };
    assert_eq!(certificates[0].source.name, "cert");

    // A grant in the Secret's namespace, from Gateways of infra, lets the listener use it.
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "g", "namespace": "web"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "infra"}],
                 "to": [{"group": "", "kind": "Secret"}]}}),
    );
    let world = idx.world();
    let (status, _) = listener_condition(&world, "tls", "other-ns", "ResolvedRefs");
    assert_eq!(status, "True");
    let gw = &world.api_gateways[&ObjectRef::new(Kind::ApiGateway, "infra", "tls")];
    let names: Vec<_> = gw.ports[0]
        .chains
        .iter()
        .map(|c| c.server_names.clone())
        .collect();
    assert_eq!(names, [vec![], vec!["b.example.com".to_string()]]);
}

#[test]
fn tls_routes_pass_through_by_sni_and_grpc_routes_become_paths() {
    let mut idx = base();
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "pass", "namespace": "infra"},
        "spec": {"gatewayClassName": "portolan", "listeners": [
            {"name": "tls", "port": 443, "protocol": "TLS", "hostname": "*.example.com",
             "tls": {"mode": "Passthrough"}},
            {"name": "http", "port": 80, "protocol": "HTTP"}]}}),
    );
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TLSRoute",
        "metadata": {"name": "t", "namespace": "infra"},
        "spec": {"parentRefs": [{"name": "pass"}], "hostnames": ["abc.example.com"],
                 "rules": [{"backendRefs": [{"name": "a", "port": 443}]}]}}),
    );
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TLSRoute",
        "metadata": {"name": "on-http", "namespace": "infra"},
        "spec": {"parentRefs": [{"name": "pass", "sectionName": "http"}],
                 "rules": [{"backendRefs": [{"name": "a", "port": 443}]}]}}),
    );
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
        "metadata": {"name": "g", "namespace": "infra"},
        "spec": {"parentRefs": [{"name": "pass", "sectionName": "http"}],
                 "rules": [{"matches": [{"method": {"service": "pkg.Svc", "method": "Get"}}],
                            "backendRefs": [{"name": "b", "port": 80}]}]}}),
    );
    let world = idx.world();
    let status = |kind, name: &str| {
        let Some(ApiStatus::Route(s)) =
            world.api_statuses.get(&ObjectRef::new(kind, "infra", name))
        else {
            panic!("no status for {name}");
        };
        let c = &s.parents[0].conditions[0];
        (c.status.clone(), c.reason.clone())
    };
    assert_eq!(
        status(Kind::TlsRoute, "t"),
        ("True".into(), "Accepted".into())
    );
    assert_eq!(
        status(Kind::TlsRoute, "on-http"),
        ("False".into(), "NotAllowedByListeners".into())
    );
    assert_eq!(
        status(Kind::GrpcRoute, "g"),
        ("True".into(), "Accepted".into())
    );
    let gw = &world.api_gateways[&ObjectRef::new(Kind::ApiGateway, "infra", "pass")];
    let tls = gw.ports.iter().find(|p| p.port == 443).expect("443");
    assert_eq!(tls.chains.len(), 1);
    assert_eq!(tls.chains[0].server_names, ["abc.example.com"]);
    let ChainKind::Passthrough { backends } = &tls.chains[0].kind else {
        panic!("not passthrough");
    };
    assert_eq!(backends[0].destination.host, "a.infra");
    let http = gw.ports.iter().find(|p| p.port == 80).expect("80");
    let rule = &http.virtual_hosts[0].rules[0].rule;
    assert_eq!(
        rule.matches[0].path,
        Some(PathMatch::Exact("/pkg.Svc/Get".to_string()))
    );
}

#[test]
fn http_and_grpc_routes_do_not_share_a_hostname_on_a_listener() {
    let mut idx = base();
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "mixed", "namespace": "infra"},
        "spec": {"gatewayClassName": "portolan", "listeners": [
            {"name": "web", "port": 80, "protocol": "HTTP"}]}}),
    );
    // (kind, name, created, hostnames): files carry no creationTimestamp (the newest).
    let routes: [(&str, &str, Option<&str>, &[&str]); 7] = [
        (
            "HTTPRoute",
            "old-http",
            Some("2020-01-01T00:00:00Z"),
            &["a.example.com"],
        ),
        (
            "GRPCRoute",
            "newer-grpc",
            Some("2021-01-01T00:00:00Z"),
            &["*.example.com"],
        ),
        (
            "GRPCRoute",
            "grpc-b",
            Some("2019-01-01T00:00:00Z"),
            &["b.example.com"],
        ),
        ("HTTPRoute", "http-b", None, &["b.example.com"]),
        ("HTTPRoute", "http-c", None, &["c.example.com"]),
        ("HTTPRoute", "http-a2", None, &["a.example.com"]),
        // Equally old: the first by namespace/name wins.
        (
            "HTTPRoute",
            "zz-http",
            Some("2022-01-01T00:00:00Z"),
            &["d.example.com"],
        ),
    ];
    for (kind, name, created, hostnames) in routes {
        let mut metadata = json!({"name": name, "namespace": "infra"});
        if let Some(t) = created {
            metadata["creationTimestamp"] = json!(t);
        }
        let rule = if kind == "GRPCRoute" {
            json!({"matches": [{"method": {"service": "pkg.Svc"}}],
                   "backendRefs": [{"name": "b", "port": 80}]})
        } else {
            json!({"backendRefs": [{"name": "a", "port": 80}]})
        };
        apply(
            &mut idx,
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": kind,
            "metadata": metadata,
            "spec": {"parentRefs": [{"name": "mixed"}], "hostnames": hostnames,
                     "rules": [rule]}}),
        );
    }
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
        "metadata": {"name": "aa-grpc", "namespace": "infra",
                     "creationTimestamp": "2022-01-01T00:00:00Z"},
        "spec": {"parentRefs": [{"name": "mixed"}], "hostnames": ["d.example.com"],
                 "rules": [{"backendRefs": [{"name": "b", "port": 80}]}]}}),
    );
    let world = idx.world();
    let accepted = |kind, name: &str| {
        let key = ObjectRef::new(kind, "infra", name);
        let Some(ApiStatus::Route(s)) = world.api_statuses.get(&key) else {
            panic!("no status for {key}");
        };
        let c = s.parents[0]
            .conditions
            .iter()
            .find(|c| c.type_ == "Accepted")
            .expect("Accepted");
        (c.status.clone(), c.reason.clone(), c.message.clone())
    };
    for (kind, name) in [
        (Kind::HttpRoute, "old-http"),
        (Kind::GrpcRoute, "grpc-b"),
        (Kind::HttpRoute, "http-c"),
        (Kind::HttpRoute, "http-a2"),
        (Kind::GrpcRoute, "aa-grpc"),
    ] {
        assert_eq!(accepted(kind, name).0, "True", "{name}");
    }
    for (kind, name, winner) in [
        (Kind::GrpcRoute, "newer-grpc", "HTTPRoute infra/old-http"),
        (Kind::HttpRoute, "http-b", "GRPCRoute infra/grpc-b"),
        (Kind::HttpRoute, "zz-http", "GRPCRoute infra/aa-grpc"),
    ] {
        let (status, reason, message) = accepted(kind, name);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "HostnameConflict"),
            "{name}"
        );
        assert!(message.contains(winner), "{name}: {message}");
    }
    let gw = &world.api_gateways[&ObjectRef::new(Kind::ApiGateway, "infra", "mixed")];
    let Some(ApiStatus::Gateway(s)) = world.api_statuses.get(&gw.source) else {
        panic!("no Gateway status");
    };
    assert_eq!(s.listeners[0].attached_routes, 5);
    // The refused routes serve nothing: b.example.com has the gRPC rule only, and no virtual
    // host carries a rule of a refused route.
    let port = &gw.ports[0];
    let hosts: Vec<&str> = port
        .virtual_hosts
        .iter()
        .map(|v| v.hostname.as_str())
        .collect();
    assert_eq!(
        hosts,
        [
            "a.example.com",
            "b.example.com",
            "c.example.com",
            "d.example.com"
        ]
    );
    for v in &port.virtual_hosts {
        for r in &v.rules {
            assert!(
                !["newer-grpc", "http-b", "zz-http"].contains(&r.route.name.as_str()),
                "{}: {}",
                v.hostname,
                r.route
            );
        }
    }
    let b = &port.virtual_hosts[1];
    assert!(!b.rules.is_empty());
    assert!(b.rules.iter().all(|r| r.route.name == "grpc-b"), "{b:?}");
}

#[test]
fn tls_terminate_is_an_unsupported_value_and_parameters_refs_are_refused() {
    let mut idx = base();
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "terminate", "namespace": "infra"},
        "spec": {"gatewayClassName": "portolan", "listeners": [
            {"name": "tls-terminate", "port": 443, "protocol": "TLS",
             "tls": {"mode": "Terminate", "certificateRefs": [{"name": "cert"}]}}]}}),
    );
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "params", "namespace": "infra"},
        "spec": {"gatewayClassName": "portolan",
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            "infrastructure": {"parametersRef":
                {"group": "invalid.io", "kind": "InvalidParameters", "name": "invalid"}}}}),
    );
    let world = idx.world();
    assert_eq!(
        listener_condition(&world, "terminate", "tls-terminate", "Accepted"),
        ("False".to_string(), "UnsupportedValue".to_string())
    );
    let key = ObjectRef::new(Kind::ApiGateway, "infra", "params");
    let Some(ApiStatus::Gateway(s)) = world.api_statuses.get(&key) else {
        panic!("no Gateway status");
    };
    let accepted = (
        s.conditions[0].status.as_str(),
        s.conditions[0].reason.as_str(),
    );
    assert_eq!(accepted, ("False", "InvalidParameters"));
    assert!(
        s.conditions[0]
            .message
            .contains("invalid.io/InvalidParameters"),
        "{}",
        s.conditions[0].message
    );
    assert!(world.api_gateways[&key].ports.is_empty(), "serves nothing");
}

#[test]
fn tcp_routes_take_a_tcp_listener_with_weighted_backends() {
    let mut idx = base();
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "tcp", "namespace": "infra"},
        "spec": {"gatewayClassName": "portolan", "listeners": [
            {"name": "db", "port": 5432, "protocol": "TCP"},
            {"name": "web", "port": 8080, "protocol": "HTTP"}]}}),
    );
    for (name, section, backends) in [
        (
            "ok",
            "db",
            json!([{"name": "a", "port": 80, "weight": 3}, {"name": "b", "port": 80}]),
        ),
        ("missing", "db", json!([{"name": "nope", "port": 80}])),
        ("on-http", "web", json!([{"name": "a", "port": 80}])),
    ] {
        apply(
            &mut idx,
            json!({"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TCPRoute",
            "metadata": {"name": name, "namespace": "infra"},
            "spec": {"parentRefs": [{"name": "tcp", "sectionName": section}],
                     "rules": [{"backendRefs": backends}]}}),
        );
    }
    let world = idx.world();
    let cond = |name: &str, type_: &str| {
        let key = ObjectRef::new(Kind::TcpRoute, "infra", name);
        let Some(ApiStatus::Route(s)) = world.api_statuses.get(&key) else {
            panic!("no status for {key}");
        };
        let c = s.parents[0]
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition");
        (c.status.clone(), c.reason.clone())
    };
    assert_eq!(cond("ok", "Accepted"), ("True".into(), "Accepted".into()));
    assert_eq!(
        cond("ok", "ResolvedRefs"),
        ("True".into(), "ResolvedRefs".into())
    );
    assert_eq!(
        cond("missing", "ResolvedRefs"),
        ("False".into(), "BackendNotFound".into())
    );
    assert_eq!(
        cond("on-http", "Accepted"),
        ("False".into(), "NotAllowedByListeners".into())
    );
    let gw = &world.api_gateways[&ObjectRef::new(Kind::ApiGateway, "infra", "tcp")];
    let port = gw.ports.iter().find(|p| p.port == 5432).expect("TCP port");
    assert!(port.tcp && !port.tls);
    // Two routes on one TCP listener: one chain, the oldest route's (then namespace/name).
    assert_eq!(port.chains.len(), 1);
    let crate::gateway_api::ChainKind::Passthrough { backends } = &port.chains[0].kind else {
        panic!("not a passthrough chain");
    };
    let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
    assert_eq!(
        weights,
        [1],
        "the `missing` route (first by name) holds the listener"
    );
    let Some(ApiStatus::Gateway(s)) = world.api_statuses.get(&gw.source) else {
        panic!("no Gateway status");
    };
    assert_eq!(s.listeners[0].attached_routes, 2);
}

#[test]
fn udp_routes_take_a_udp_listener_with_weighted_backends() {
    let mut idx = base();
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "udp", "namespace": "infra"},
        "spec": {"gatewayClassName": "portolan", "listeners": [
            {"name": "dns", "port": 5353, "protocol": "UDP"},
            {"name": "db", "port": 5432, "protocol": "TCP"},
            {"name": "web", "port": 8080, "protocol": "HTTP"},
            {"name": "dns2", "port": 5354, "protocol": "UDP"}]}}),
    );
    for (name, protocol) in [
        ("a", Protocol::Udp),
        ("b", Protocol::Udp),
        ("t", Protocol::Tcp),
    ] {
        idx.apply(Object::from(Service {
            key: ServiceKey::new("infra", name),
            ports: vec![ServicePort {
                name: "p".into(),
                port: 80,
                protocol,
                target_port: None,
                app_protocol: None,
            }],
            cluster_ip: None,
            external_name: None,
            labels: Default::default(),
        }));
    }
    for (name, section, backends) in [
        ("tcp-port", "dns2", json!([{"name": "t", "port": 80}])),
        ("no-port", "dns2", json!([{"name": "a", "port": 81}])),
        (
            "ok",
            "dns",
            json!([{"name": "a", "port": 80, "weight": 3}, {"name": "b", "port": 80}]),
        ),
        ("on-tcp", "db", json!([{"name": "a", "port": 80}])),
        ("on-http", "web", json!([{"name": "a", "port": 80}])),
        ("no-section", "nope", json!([{"name": "a", "port": 80}])),
    ] {
        apply(
            &mut idx,
            json!({"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "UDPRoute",
            "metadata": {"name": name, "namespace": "infra"},
            "spec": {"parentRefs": [{"name": "udp", "sectionName": section}],
                     "rules": [{"backendRefs": backends}]}}),
        );
    }
    let world = idx.world();
    let cond = |name: &str, type_: &str| {
        let key = ObjectRef::new(Kind::UdpRoute, "infra", name);
        let Some(ApiStatus::Route(s)) = world.api_statuses.get(&key) else {
            panic!("no status for {key}");
        };
        let c = s.parents[0]
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition");
        (c.status.clone(), c.reason.clone())
    };
    assert_eq!(cond("ok", "Accepted"), ("True".into(), "Accepted".into()));
    assert_eq!(
        cond("ok", "ResolvedRefs"),
        ("True".into(), "ResolvedRefs".into())
    );
    for refused in ["on-tcp", "on-http"] {
        assert_eq!(
            cond(refused, "Accepted"),
            ("False".into(), "NotAllowedByListeners".into()),
            "{refused}"
        );
    }
    assert_eq!(
        cond("no-section", "Accepted"),
        ("False".into(), "NoMatchingParent".into())
    );
    assert_eq!(
        cond("tcp-port", "ResolvedRefs"),
        ("False".into(), "UnsupportedProtocol".into())
    );
    assert_eq!(
        cond("no-port", "ResolvedRefs"),
        ("False".into(), "BackendNotFound".into())
    );
    let gw = &world.api_gateways[&ObjectRef::new(Kind::ApiGateway, "infra", "udp")];
    let port = gw.ports.iter().find(|p| p.port == 5353).expect("UDP port");
    assert!(port.udp && !port.tcp && !port.tls);
    assert_eq!(port.chains.len(), 1);
    let crate::gateway_api::ChainKind::Passthrough { backends } = &port.chains[0].kind else {
        panic!("not a passthrough chain");
    };
    let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
    assert_eq!(weights, [3, 1]);
    let Some(ApiStatus::Gateway(s)) = world.api_statuses.get(&gw.source) else {
        panic!("no Gateway status");
    };
    let dns = &s.listeners[0];
    assert_eq!(dns.attached_routes, 1);
    assert_eq!(dns.supported_kinds.len(), 1);
    assert_eq!(dns.supported_kinds[0].kind, "UDPRoute");
    assert!(
        dns.conditions
            .iter()
            .any(|c| c.type_ == "Accepted" && c.status == "True"),
        "{:?}",
        dns.conditions
    );
}

/// Several TCPRoutes or UDPRoutes on one TCP or UDP listener: all are `Accepted` (GEP-2645),
/// only the oldest (then first by namespace/name) is served, and the others'
/// `portolan.dev/Superseded=True` names it; a route served on its listener has none.
#[test]
fn routes_superseded_on_a_tcp_or_udp_listener_say_which_route_is_served() {
    let mut idx = base();
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "l4", "namespace": "infra"},
        "spec": {"gatewayClassName": "portolan", "listeners": [
            {"name": "dns", "port": 5353, "protocol": "UDP"},
            {"name": "db", "port": 5432, "protocol": "TCP"},
            {"name": "other", "port": 5433, "protocol": "TCP"}]}}),
    );
    let routes = [
        ("UDPRoute", "new", Some("2024-01-01T00:00:00Z"), "dns"),
        ("UDPRoute", "old", Some("2020-01-01T00:00:00Z"), "dns"),
        ("UDPRoute", "from-file", None, "dns"),
        ("TCPRoute", "b-tcp", None, "db"),
        ("TCPRoute", "a-tcp", None, "db"),
        ("TCPRoute", "alone", None, "other"),
    ];
    for (kind, name, created, section) in routes {
        let mut metadata = json!({"name": name, "namespace": "infra"});
        if let Some(t) = created {
            metadata["creationTimestamp"] = json!(t);
        }
        apply(
            &mut idx,
            json!({"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": kind,
            "metadata": metadata,
            "spec": {"parentRefs": [{"name": "l4", "sectionName": section}],
                     "rules": [{"backendRefs": [{"name": "a", "port": 80}]}]}}),
        );
    }
    let world = idx.world();
    let conditions = |kind: Kind, name: &str| {
        let key = ObjectRef::new(kind, "infra", name);
        let Some(ApiStatus::Route(s)) = world.api_statuses.get(&key) else {
            panic!("no status for {key}");
        };
        s.parents[0].conditions.clone()
    };
    let superseded = |kind: Kind, name: &str| {
        let all = conditions(kind, name);
        let accepted = all
            .iter()
            .find(|c| c.type_ == "Accepted")
            .expect("Accepted");
        assert_eq!(accepted.status, "True", "{name}: {accepted:?}");
        all.into_iter()
            .find(|c| c.type_ == "portolan.dev/Superseded")
            .map(|c| (c.status, c.reason, c.message))
    };
    assert_eq!(superseded(Kind::UdpRoute, "old"), None);
    for name in ["new", "from-file"] {
        let (status, reason, message) = superseded(Kind::UdpRoute, name).expect(name);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "OlderRouteServed")
        );
        assert!(
            message.starts_with("listener dns: UDPRoute infra/old "),
            "{message}"
        );
    }
    assert_eq!(superseded(Kind::TcpRoute, "a-tcp"), None);
    assert_eq!(superseded(Kind::TcpRoute, "alone"), None);
    let (_, _, message) = superseded(Kind::TcpRoute, "b-tcp").expect("b-tcp");
    assert!(
        message.starts_with("listener db: TCPRoute infra/a-tcp "),
        "{message}"
    );
}

/// A UDP listener is distinct from, and compatible with, a TCP-based listener (TCP, HTTP,
/// HTTPS, TLS) on the same port: the transport tells their traffic apart. Two UDP listeners
/// on one port, or TCP beside HTTP, still conflict.
#[test]
fn a_udp_listener_shares_its_port_with_a_tcp_based_one() {
    let mut idx = base();
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "l4", "namespace": "infra"},
        "spec": {"gatewayClassName": "portolan", "listeners": [
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "web", "port": 8080, "protocol": "HTTP"},
            {"name": "web-udp", "port": 8080, "protocol": "UDP"},
            {"name": "twice-a", "port": 5000, "protocol": "UDP"},
            {"name": "twice-b", "port": 5000, "protocol": "UDP"},
            {"name": "raw", "port": 6000, "protocol": "TCP"},
            {"name": "http", "port": 6000, "protocol": "HTTP"}]}}),
    );
    let world = idx.world();
    let gw = ObjectRef::new(Kind::ApiGateway, "infra", "l4");
    let Some(ApiStatus::Gateway(s)) = world.api_statuses.get(&gw) else {
        panic!("no Gateway status");
    };
    let conflicted = |name: &str| {
        let l = s
            .listeners
            .iter()
            .find(|l| l.name == name)
            .expect("listener");
        let c = l
            .conditions
            .iter()
            .find(|c| c.type_ == "Conflicted")
            .expect("Conflicted");
        (c.status.clone(), c.reason.clone())
    };
    for name in ["dns-tcp", "dns", "web", "web-udp"] {
        assert_eq!(
            conflicted(name),
            ("False".into(), "NoConflicts".into()),
            "{name}"
        );
    }
    for name in ["twice-a", "twice-b"] {
        assert_eq!(
            conflicted(name),
            ("True".into(), "HostnameConflict".into()),
            "{name}"
        );
    }
    for name in ["raw", "http"] {
        assert_eq!(
            conflicted(name),
            ("True".into(), "ProtocolConflict".into()),
            "{name}"
        );
    }
    let ports: Vec<(u16, bool, bool)> = world.api_gateways[&gw]
        .ports
        .iter()
        .map(|p| (p.port, p.udp, p.tcp))
        .collect();
    assert_eq!(
        ports,
        [
            (53, false, true),
            (53, true, false),
            (8080, false, false),
            (8080, true, false)
        ],
        "one port per transport"
    );
}

/// A real (example) CA certificate, for CA ConfigMaps.
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBjzCCATWgAwIBAgIUNl9S14+zRZOqp3EY/C+ioU7MKewwCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSRXhhbXBsZSBCaWxsaW5nIENBMB4XDTI2MTEyNTE2MTIyMFoX
DTM2MTEyMjE2MTIyMFowHTEbMBkGA1UEAwwSRXhhbXBsZSBCaWxsaW5nIENBMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWldboCUqBgYoT199qi8gb6oKojIRu1Ea
CDcT5szFJ0m9+DYAy164ysPP3d0sOAuWHmCVCinxz+IacSTd381BDKNTMFEwHQYD
VR0OBBYEFJw5SjP4BXpLP8Lr23XzMeFdhTXdMB8GA1UdIwQYMBaAFJw5SjP4BXpL
P8Lr23XzMeFdhTXdMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIh
APzqq8uwvNr5F2tPzABJgo7KrWqduIssWt9T9qK0YgR9AiBbaOZiOYZgT0MlParA
CrWuSbi9jKXqxl/yaFVFutNyrA==
-----END CERTIFICATE-----
";

fn tls_service(idx: &mut Index, name: &str) {
    apply(
        idx,
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "infra"},
        "spec": {"ports": [{"name": "https-1", "port": 443}, {"name": "https-2", "port": 8443}]}}),
    );
}

fn backend_tls(
    idx: &mut Index,
    name: &str,
    created: &str,
    target: serde_json::Value,
    v: serde_json::Value,
) {
    apply(
        idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "BackendTLSPolicy",
        "metadata": {"name": name, "namespace": "infra", "creationTimestamp": created},
        "spec": {"targetRefs": [target], "validation": v}}),
    );
}

fn ancestor_condition(world: &World, name: &str, type_: &str) -> (String, String) {
    let key = ObjectRef::new(Kind::BackendTlsPolicy, "infra", name);
    let Some(ApiStatus::Policy(s)) = world.api_statuses.get(&key) else {
        panic!(
            "no policy status for {key}: {:?}",
            world.api_statuses.keys()
        );
    };
    assert_eq!(s.ancestors.len(), 1, "{s:?}");
    assert_eq!(s.ancestors[0].ancestor_ref.name, "gw");
    assert_eq!(s.ancestors[0].controller_name, CONTROLLER);
    let c = s.ancestors[0]
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("condition");
    (c.status.clone(), c.reason.clone())
}

const CONTROLLER: &str = "portolan.dev/gateway-controller";

#[test]
fn backend_tls_policies_resolve_conflicts_sections_and_cas() {
    use backend_tls::{San, Trust};
    let mut idx = base();
    apply(
        &mut idx,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ca", "namespace": "infra"}, "data": {"ca.crt": CA_PEM}}),
    );
    // Not read at all: no ca.crt.
    let skipped = Resource::decode(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "empty", "namespace": "infra"}, "data": {}}));
    assert!(matches!(skipped, Ok(None)), "{skipped:?}");
    for s in ["s1", "s2", "bad"] {
        tls_service(&mut idx, s);
    }
    let backends = json!([{"backendRefs": [
        {"name": "s1", "port": 443}, {"name": "s2", "port": 443},
        {"name": "s2", "port": 8443}, {"name": "bad", "port": 443}]}]);
    route(&mut idx, "infra", "r", backends);
    // A second Gateway whose route uses only s2's port 8443.
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw2", "namespace": "infra"},
        "spec": {"gatewayClassName": "portolan", "listeners": [
            {"name": "http", "port": 90, "protocol": "HTTP"}]}}),
    );
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r2", "namespace": "infra"},
        "spec": {"parentRefs": [{"name": "gw2"}],
                 "rules": [{"backendRefs": [{"name": "s2", "port": 8443}]}]}}),
    );
    let ca = json!([{"group": "", "kind": "ConfigMap", "name": "ca"}]);
    let svc = |name: &str| json!({"group": "", "kind": "Service", "name": name});
    let section = |name: &str, s: &str| json!({"group": "", "kind": "Service", "name": name, "sectionName": s});
    // s1: two policies on the whole Service, the older wins.
    let t0 = "2026-01-01T00:00:00Z";
    let t1 = "2026-01-02T00:00:00Z";
    backend_tls(
        &mut idx,
        "z-old",
        t0,
        svc("s1"),
        json!({"caCertificateRefs": ca, "hostname": "old.example.com"}),
    );
    backend_tls(
        &mut idx,
        "a-new",
        t1,
        svc("s1"),
        json!({"caCertificateRefs": ca, "hostname": "new.example.com"}),
    );
    // s2: a port-specific policy next to a whole-Service one: no conflict.
    backend_tls(
        &mut idx,
        "port",
        t0,
        section("s2", "https-1"),
        json!({"caCertificateRefs": ca, "hostname": "port.example.com",
               "subjectAltNames": [{"type": "URI", "uri": "spiffe://td/ns/infra/sa/s2"},
                                   {"type": "Hostname", "hostname": "s2.example.com"}]}),
    );
    backend_tls(
        &mut idx,
        "whole",
        t1,
        svc("s2"),
        json!({"wellKnownCACertificates": "System", "hostname": "whole.example.com"}),
    );
    // bad: a wrong kind and a missing ConfigMap: nothing valid.
    backend_tls(
        &mut idx,
        "bad",
        t0,
        svc("bad"),
        json!({"caCertificateRefs": [{"group": "example.io", "kind": "Bundle", "name": "x"},
                                     {"group": "", "kind": "ConfigMap", "name": "missing"}],
               "hostname": "bad.example.com"}),
    );
    let world = idx.world();

    let tls = |s: &str, port: u16| world.backend_tls[&ServiceKey::new("infra", s)][&port].clone();
    assert_eq!(tls("s1", 443).sni, "old.example.com");
    assert_eq!(
        tls("s1", 443).subject_alt_names,
        [San::Dns("old.example.com".into())]
    );
    assert!(
        matches!(&tls("s1", 443).trust, Trust::Bundle(pem) if pem.contains("BEGIN CERTIFICATE"))
    );
    assert_eq!(
        ancestor_condition(&world, "z-old", "Accepted"),
        ("True".into(), "Accepted".into())
    );
    assert_eq!(
        ancestor_condition(&world, "a-new", "Accepted"),
        ("False".into(), "Conflicted".into())
    );

    assert_eq!(tls("s2", 443).sni, "port.example.com");
    assert_eq!(
        tls("s2", 443).subject_alt_names,
        [
            San::Uri("spiffe://td/ns/infra/sa/s2".into()),
            San::Dns("s2.example.com".into())
        ]
    );
    assert_eq!(tls("s2", 8443).sni, "whole.example.com");
    assert_eq!(tls("s2", 8443).trust, Trust::System);
    assert_eq!(
        ancestor_condition(&world, "port", "Accepted"),
        ("True".into(), "Accepted".into())
    );
    assert_eq!(
        ancestor_condition(&world, "port", "ResolvedRefs"),
        ("True".into(), "ResolvedRefs".into())
    );
    // The whole-Service policy is in force on port 8443, which both Gateways use; the
    // port-443 policy only on the first Gateway (its ancestor_condition checks one entry).
    let key = ObjectRef::new(Kind::BackendTlsPolicy, "infra", "whole");
    let Some(ApiStatus::Policy(whole)) = world.api_statuses.get(&key) else {
        panic!("no status for {key}");
    };
    let names: Vec<&str> = whole
        .ancestors
        .iter()
        .map(|a| a.ancestor_ref.name.as_str())
        .collect();
    assert_eq!(names, ["gw", "gw2"]);
    assert!(
        whole
            .ancestors
            .iter()
            .all(|a| a.conditions.iter().all(|c| c.status == "True"))
    );

    assert!(
        !world
            .backend_tls
            .contains_key(&ServiceKey::new("infra", "bad"))
    );
    assert_eq!(
        ancestor_condition(&world, "bad", "Accepted"),
        ("False".into(), "NoValidCACertificate".into())
    );
    assert_eq!(
        ancestor_condition(&world, "bad", "ResolvedRefs"),
        ("False".into(), "InvalidKind".into())
    );
    // The route stays accepted and resolved; the refused backend answers 500.
    assert_eq!(
        parent_condition(&world, "infra", "r", "ResolvedRefs"),
        ("True".into(), "ResolvedRefs".into())
    );
    let gw = &world.api_gateways[&ObjectRef::new(Kind::ApiGateway, "infra", "gw")];
    let HttpAction::Forward { backends, .. } = &gw.ports[0].virtual_hosts[0].rules[0].rule.action
    else {
        panic!("forwards");
    };
    let hosts: Vec<&str> = backends
        .iter()
        .map(|b| b.destination.host.as_str())
        .collect();
    assert_eq!(
        hosts,
        ["s1.infra", "s2.infra", "s2.infra", INVALID_BACKEND_HOST]
    );
}

fn gateway_condition(world: &World, gw: &str, type_: &str) -> Option<(String, String)> {
    let key = ObjectRef::new(Kind::ApiGateway, "infra", gw);
    let Some(ApiStatus::Gateway(s)) = world.api_statuses.get(&key) else {
        panic!("no Gateway status for {key}");
    };
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn client_validation_of(world: &World, gw: &str, port: u16) -> Option<Arc<ClientValidation>> {
    let gw = &world.api_gateways[&ObjectRef::new(Kind::ApiGateway, "infra", gw)];
    let port = gw.ports.iter().find(|p| p.port == port)?;
    match &port.chains.first()?.kind {
        ChainKind::Terminate {
            client_validation, ..
        } => client_validation.clone(),
        ChainKind::Passthrough { .. } => None,
    }
}

#[test]
fn frontend_client_validation_by_default_and_per_port() {
    let mut idx = base();
    secret(&mut idx, "infra", "cert");
    apply(
        &mut idx,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ca", "namespace": "infra"}, "data": {"ca.crt": CA_PEM}}),
    );
    let https = |name: &str, port: u16| {
        json!({"name": name, "port": port, "protocol": "HTTPS",
               "tls": {"certificateRefs": [{"name": "cert"}]}})
    };
    let cm = |name: &str| json!({"group": "", "kind": "ConfigMap", "name": name});
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "mtls", "namespace": "infra"},
        "spec": {"gatewayClassName": "portolan",
          "tls": {"frontend": {
            "default": {"validation": {"caCertificateRefs": [cm("ca")]}},
            "perPort": [
              {"port": 8443, "tls": {"validation": {"caCertificateRefs": [cm("ca"), cm("missing")],
                                                    "mode": "AllowInsecureFallback"}}},
              {"port": 9443, "tls": {"validation": {"caCertificateRefs": [
                  {"group": "", "kind": "Secret", "name": "ca"}]}}},
              {"port": 10443, "tls": {"validation": {"caCertificateRefs": [
                  {"group": "", "kind": "ConfigMap", "name": "ca", "namespace": "web"}]}}}]}},
          "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP"},
            https("default", 443), https("fallback", 8443), https("kind", 9443),
            https("other-ns", 10443)]}}),
    );
    let world = idx.world();
    let l = |name: &str, t: &str| listener_condition(&world, "mtls", name, t);
    assert_eq!(l("http", "ResolvedRefs").0, "True");
    assert_eq!(
        l("default", "ResolvedRefs"),
        ("True".into(), "ResolvedRefs".into())
    );
    let v = client_validation_of(&world, "mtls", 443).expect("default validation");
    assert!(!v.insecure_fallback);
    assert_eq!(v.ca_bundle, CA_PEM);
    assert_eq!(v.name, "infra/mtls/443");
    // One of two references resolves: served with it, ResolvedRefs says which did not.
    assert_eq!(
        l("fallback", "ResolvedRefs"),
        ("False".into(), "InvalidCACertificateRef".into())
    );
    assert_eq!(l("fallback", "Accepted").0, "True");
    assert!(
        client_validation_of(&world, "mtls", 8443)
            .expect("per port")
            .insecure_fallback
    );
    // No reference resolves: not accepted, not served.
    for (name, reason) in [
        ("kind", "InvalidCACertificateKind"),
        ("other-ns", "RefNotPermitted"),
    ] {
        assert_eq!(
            l(name, "ResolvedRefs"),
            ("False".into(), reason.into()),
            "{name}"
        );
        assert_eq!(
            l(name, "Accepted"),
            ("False".into(), "NoValidCACertificate".into()),
            "{name}"
        );
        assert_eq!(l(name, "Programmed").0, "False", "{name}");
    }
    let gw = &world.api_gateways[&ObjectRef::new(Kind::ApiGateway, "infra", "mtls")];
    assert!(!gw.ports.iter().any(|p| p.port == 9443 || p.port == 10443));
    assert_eq!(
        gateway_condition(&world, "mtls", "InsecureFrontendValidationMode"),
        Some(("True".into(), "ConfigurationChanged".into()))
    );
    // A grant from Gateways of infra to ConfigMaps in web makes the other namespace's CA
    // usable (this one does not exist there, so now it is InvalidCACertificateRef).
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "g", "namespace": "web"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "infra"}],
                 "to": [{"group": "", "kind": "ConfigMap"}]}}),
    );
    let world = idx.world();
    assert_eq!(
        listener_condition(&world, "mtls", "other-ns", "ResolvedRefs"),
        ("False".into(), "InvalidCACertificateRef".into())
    );
    // Without fallback anywhere the Gateway has no InsecureFrontendValidationMode.
    assert_eq!(
        gateway_condition(&world, "gw", "InsecureFrontendValidationMode"),
        None
    );
}

fn set_condition(world: &World, ns: &str, name: &str, type_: &str) -> (String, String) {
    let key = ObjectRef::new(Kind::ListenerSet, ns, name);
    let Some(ApiStatus::ListenerSet(s)) = world.api_statuses.get(&key) else {
        panic!("no ListenerSet status for {key}");
    };
    let c = s
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("condition");
    (c.status.clone(), c.reason.clone())
}

#[test]
fn listener_sets_attach_where_allowed_and_yield_to_the_gateway() {
    let mut idx = base();
    let gw = |name: &str, allowed: serde_json::Value| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": name, "namespace": "infra"},
        "spec": {"gatewayClassName": "portolan", "allowedListeners": allowed, "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP", "hostname": "gw.example.com"}]}})
    };
    apply(
        &mut idx,
        gw("same", json!({"namespaces": {"from": "Same"}})),
    );
    apply(&mut idx, gw("closed", json!(null)));
    let set = |ns: &str, name: &str, parent: &str, listeners: serde_json::Value| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "ListenerSet",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"parentRef": {"name": parent, "namespace": "infra"}, "listeners": listeners}})
    };
    let http = |name: &str, host: &str| json!({"name": name, "port": 80, "protocol": "HTTP", "hostname": host});
    apply(
        &mut idx,
        set(
            "infra",
            "ls",
            "same",
            json!([http("a", "a.example.com"), http("dup", "gw.example.com")]),
        ),
    );
    apply(
        &mut idx,
        set(
            "web",
            "other-ns",
            "same",
            json!([http("b", "b.example.com")]),
        ),
    );
    apply(
        &mut idx,
        set(
            "infra",
            "default-closed",
            "closed",
            json!([http("c", "c.example.com")]),
        ),
    );
    // Routes: one on the set's listener, one on the Gateway, one naming both.
    let route = |name: &str, parents: serde_json::Value| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "infra"},
        "spec": {"parentRefs": parents, "rules": [{"backendRefs": [{"name": "a", "port": 80}]}]}})
    };
    let ls = json!({"group": "gateway.networking.k8s.io", "kind": "ListenerSet", "name": "ls", "sectionName": "a"});
    apply(&mut idx, route("on-set", json!([ls.clone()])));
    apply(&mut idx, route("both", json!([{"name": "same"}, ls])));
    apply(
        &mut idx,
        route(
            "on-closed-set",
            json!([{"group": "gateway.networking.k8s.io", "kind": "ListenerSet", "name": "default-closed"}]),
        ),
    );
    let world = idx.world();
    assert_eq!(
        set_condition(&world, "infra", "ls", "Accepted"),
        ("True".into(), "ListenersNotValid".into())
    );
    assert_eq!(set_condition(&world, "infra", "ls", "Programmed").0, "True");
    assert_eq!(
        set_condition(&world, "web", "other-ns", "Accepted"),
        ("False".into(), "NotAllowed".into())
    );
    assert_eq!(
        set_condition(&world, "infra", "default-closed", "Programmed"),
        ("False".into(), "NotAllowed".into())
    );
    let Some(ApiStatus::ListenerSet(s)) =
        world
            .api_statuses
            .get(&ObjectRef::new(Kind::ListenerSet, "infra", "ls"))
    else {
        panic!("no status");
    };
    let conflicted = |n: &str| {
        let l = s.listeners.iter().find(|l| l.name == n).expect("listener");
        let c = l
            .conditions
            .iter()
            .find(|c| c.type_ == "Conflicted")
            .expect("Conflicted");
        (c.status.clone(), c.reason.clone(), l.attached_routes)
    };
    // The Gateway's own listener wins its hostname; the set's copy is the conflicted one.
    assert_eq!(
        conflicted("dup"),
        ("True".into(), "HostnameConflict".into(), 0)
    );
    assert_eq!(conflicted("a"), ("False".into(), "NoConflicts".into(), 2));
    assert_eq!(
        listener_condition(&world, "same", "http", "Conflicted").0,
        "False"
    );
    let Some(ApiStatus::Gateway(g)) =
        world
            .api_statuses
            .get(&ObjectRef::new(Kind::ApiGateway, "infra", "same"))
    else {
        panic!("no Gateway status");
    };
    assert_eq!(g.attached_listener_sets, Some(1));
    assert_eq!(g.listeners.len(), 1, "only the Gateway's own listeners");
    assert_eq!(
        g.listeners[0].attached_routes, 1,
        "the route naming the Gateway"
    );
    // The Gateway's port serves both hostnames.
    let compiled = &world.api_gateways[&ObjectRef::new(Kind::ApiGateway, "infra", "same")];
    let hosts: Vec<&str> = compiled.ports[0]
        .virtual_hosts
        .iter()
        .map(|v| v.hostname.as_str())
        .collect();
    assert_eq!(hosts, ["a.example.com", "gw.example.com"]);
    assert_eq!(
        parent_condition(&world, "infra", "on-set", "Accepted"),
        ("True".into(), "Accepted".into())
    );
    assert_eq!(
        parent_condition(&world, "infra", "on-closed-set", "Accepted"),
        ("False".into(), "NoMatchingParent".into())
    );
}

fn set_listener_condition(
    world: &World,
    set: &str,
    listener: &str,
    type_: &str,
) -> (String, String) {
    let key = ObjectRef::new(Kind::ListenerSet, "infra", set);
    let Some(ApiStatus::ListenerSet(s)) = world.api_statuses.get(&key) else {
        panic!("no ListenerSet status for {key}");
    };
    entry_condition(&s.listeners, listener, type_)
}

/// Upstream's ListenerSetProtocolAndRouteKindConflicts: a set's TLS listener on the port of
/// the Gateway's HTTPS listener is `ProtocolConflict` (ports merge across owners with one
/// protocol), the HTTPS listener stays accepted and keeps its port; a TLS listener allowing
/// only HTTPRoute is `InvalidRouteKinds`; the set's TLS listener on a port of its own serves.
#[test]
fn a_listener_set_tls_listener_conflicts_with_the_gateways_https_on_its_port() {
    let mut idx = base();
    secret(&mut idx, "infra", "cert");
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "infra"},
        "spec": {"gatewayClassName": "portolan",
            "allowedListeners": {"namespaces": {"from": "All"}},
            "listeners": [
                {"name": "http", "port": 80, "protocol": "HTTP", "hostname": "gw.example.com"},
                {"name": "https", "port": 8443, "protocol": "HTTPS",
                 "tls": {"certificateRefs": [{"name": "cert"}]}},
                // Within the Gateway, HTTPS and TLS still share a port by SNI.
                {"name": "passthrough", "port": 8443, "protocol": "TLS",
                 "hostname": "pass.example.com", "tls": {"mode": "Passthrough"}}]}}),
    );
    let tls = |name: &str, port: u16, kinds: &str| {
        json!({"name": name, "port": port, "protocol": "TLS", "hostname": "abc.example.com",
               "allowedRoutes": {"kinds": [{"kind": kinds}]}, "tls": {"mode": "Passthrough"}})
    };
    apply(
        &mut idx,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "ListenerSet",
        "metadata": {"name": "ls", "namespace": "infra"},
        "spec": {"parentRef": {"name": "gw"}, "listeners": [
            tls("tls-only-http", 443, "HTTPRoute"),
            tls("tls-control", 9443, "TLSRoute"),
            tls("tls-conflict", 8443, "TLSRoute"),
            {"name": "http-beside", "port": 80, "protocol": "HTTP", "hostname": "ls.example.com"}]}}),
    );
    let route = |name: &str, section: &str| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "TLSRoute",
        "metadata": {"name": name, "namespace": "infra"},
        "spec": {"parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "ListenerSet",
                                 "name": "ls", "sectionName": section}],
                 "hostnames": ["abc.example.com"],
                 "rules": [{"backendRefs": [{"name": "a", "port": 443}]}]}})
    };
    apply(&mut idx, route("control", "tls-control"));
    apply(&mut idx, route("conflict", "tls-conflict"));
    let world = idx.world();
    for t in ["Accepted", "Programmed", "Conflicted"] {
        let expected = if t == "Conflicted" { "True" } else { "False" };
        assert_eq!(
            set_listener_condition(&world, "ls", "tls-conflict", t),
            (expected.into(), "ProtocolConflict".into()),
            "{t}"
        );
    }
    assert_eq!(
        set_listener_condition(&world, "ls", "tls-only-http", "ResolvedRefs"),
        ("False".into(), "InvalidRouteKinds".into())
    );
    for (l, t) in [
        ("tls-control", "Accepted"),
        ("tls-control", "Programmed"),
        ("tls-control", "ResolvedRefs"),
        ("http-beside", "Accepted"),
    ] {
        assert_eq!(
            set_listener_condition(&world, "ls", l, t).0,
            "True",
            "{l} {t}"
        );
    }
    assert_eq!(
        set_listener_condition(&world, "ls", "tls-control", "Conflicted").0,
        "False"
    );
    for l in ["https", "passthrough"] {
        assert_eq!(
            listener_condition(&world, "gw", l, "Accepted").0,
            "True",
            "{l}"
        );
        assert_eq!(
            listener_condition(&world, "gw", l, "Conflicted"),
            ("False".into(), "NoConflicts".into()),
            "{l}"
        );
    }
    assert_eq!(set_condition(&world, "infra", "ls", "Accepted").0, "True");
    assert_eq!(set_condition(&world, "infra", "ls", "Programmed").0, "True");
    let key = ObjectRef::new(Kind::TlsRoute, "infra", "control");
    let Some(ApiStatus::Route(r)) = world.api_statuses.get(&key) else {
        panic!("no route status for {key}");
    };
    let accepted = r.parents[0]
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .expect("Accepted");
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("True", "Accepted")
    );
    // The conflicted listener adds nothing to the HTTPS port: only the Gateway's own
    // passthrough name is routed by SNI there.
    let compiled = &world.api_gateways[&ObjectRef::new(Kind::ApiGateway, "infra", "gw")];
    let port = compiled
        .ports
        .iter()
        .find(|p| p.port == 8443)
        .expect("port 8443");
    let text = format!("{port:?}");
    assert!(!text.contains("abc.example.com"), "{text}");
    assert!(compiled.ports.iter().any(|p| p.port == 9443));
}

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
            {"name": "udp", "port": 81, "protocol": "UDP"}]}}),
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
    let udp = &s.listeners[1];
    assert!(
        udp.conditions
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
    idx.apply(Object::Secret(crate::gateway::TlsSecret {
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
    let l = s
        .listeners
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

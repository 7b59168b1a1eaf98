//! The ancestors of every target kind, shared ancestors, and the cap, on a World built from
//! manifests through the Index.

use super::*;
use crate::index::Index;
use crate::policy_attach::PolicyMeta;
use portolan_api::Resource;
use serde_json::{Value, json};

fn apply(idx: &mut Index, doc: Value) {
    let r = Resource::decode(doc).expect("decodes").expect("is read");
    let errors = portolan_api::validate::validate(&r);
    assert!(errors.is_empty(), "{errors:?}");
    idx.apply(crate::convert::to_object(&r));
}

fn world() -> std::sync::Arc<World> {
    let mut idx = Index::new();
    let listeners = json!([{"name": "http", "port": 80, "protocol": "HTTP"},
        {"name": "admin", "port": 81, "protocol": "HTTP"}]);
    for doc in [
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": "portolan"}, "spec": {"controllerName": "portolan.dev/gateway-controller"}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": "other"}, "spec": {"controllerName": "example.com/other"}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "edge"},
            "spec": {"gatewayClassName": "portolan", "listeners": listeners}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw2", "namespace": "infra"},
            "spec": {"gatewayClassName": "portolan", "listeners": [{"name": "http", "port": 80,
                "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "theirs", "namespace": "edge"},
            "spec": {"gatewayClassName": "other", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "api", "namespace": "edge"},
            "spec": {"parentRefs": [{"name": "gw", "sectionName": "http"},
                {"name": "gw2", "namespace": "infra"}, {"name": "theirs"}],
                "rules": [{"name": "login"}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "shop", "namespace": "edge"},
            "spec": {"parentRefs": [{"name": "gw", "sectionName": "http"}], "rules": [{}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
            "metadata": {"name": "rpc", "namespace": "edge"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "elsewhere", "namespace": "edge"},
            "spec": {"parentRefs": [{"name": "theirs"}], "rules": [{}]}}),
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "Gateway",
            "metadata": {"name": "pgw", "namespace": "edge"},
            "spec": {"selector": {"cluster": "edge"}, "listeners": [{"name": "web", "port": 8080, "protocol": "HTTP"}]}}),
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
            "metadata": {"name": "tr", "namespace": "edge"},
            "spec": {"hosts": ["example.com"], "gateways": ["pgw"], "http": [
                {"name": "login", "directResponse": {"status": 200}}]}}),
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
            "metadata": {"name": "mesh", "namespace": "edge"},
            "spec": {"hosts": ["web"], "http": [{"directResponse": {"status": 200}}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "edge"},
            "spec": {"ports": [{"name": "http", "port": 80}]}}),
    ] {
        apply(&mut idx, doc);
    }
    idx.world()
}

fn target(group: &str, kind: &str, name: &str, section: Option<&str>) -> PolicyTargetRef {
    PolicyTargetRef {
        group: group.into(),
        kind: kind.into(),
        name: name.into(),
        section_name: section.map(Into::into),
    }
}

fn ancestor(group: &str, kind: &str, ns: &str, name: &str, section: Option<&str>) -> AncestorRef {
    AncestorRef {
        group: group.into(),
        kind: kind.into(),
        namespace: Some(ns.into()),
        name: name.into(),
        section_name: section.map(Into::into),
    }
}

/// The status of one policy in namespace `edge` with `targets`.
fn status(w: &World, targets: Vec<PolicyTargetRef>) -> PolicyStatus {
    let meta = PolicyMeta {
        source: ObjectRef::new(Kind::ExtAuthPolicy, "edge", "p"),
        generation: 4,
        created: None,
        targets,
    };
    let resolution = policy_attach::resolve(w, [&meta]);
    policy_status(w, "edge", &resolution.statuses[&meta.source])
}

fn refs(s: &PolicyStatus) -> Vec<AncestorRef> {
    s.ancestors.iter().map(|a| a.ancestor_ref.clone()).collect()
}

fn one(w: &World, t: PolicyTargetRef) -> Vec<AncestorRef> {
    refs(&status(w, vec![t]))
}

#[test]
fn a_gateway_or_listener_target_has_its_gateway_as_ancestor() {
    let w = world();
    assert_eq!(
        one(
            &w,
            target(GATEWAY_API_GROUP, "Gateway", "gw", Some("admin"))
        ),
        vec![ancestor(
            GATEWAY_API_GROUP,
            "Gateway",
            "edge",
            "gw",
            Some("admin")
        )]
    );
    assert_eq!(
        one(&w, target(GATEWAY_API_GROUP, "Gateway", "gw", None)),
        vec![ancestor(GATEWAY_API_GROUP, "Gateway", "edge", "gw", None)]
    );
    assert_eq!(
        one(&w, target(GROUP, "Gateway", "pgw", Some("web"))),
        vec![ancestor(GROUP, "Gateway", "edge", "pgw", Some("web"))]
    );
}

#[test]
fn a_route_target_has_the_gateways_it_is_attached_to_as_ancestors() {
    let w = world();
    // Both Portolan Gateways it is accepted on (with the parentRef's listener), not the
    // Gateway of another class; the same for a rule of it.
    let expected = vec![
        ancestor(GATEWAY_API_GROUP, "Gateway", "edge", "gw", Some("http")),
        ancestor(GATEWAY_API_GROUP, "Gateway", "infra", "gw2", None),
    ];
    assert_eq!(
        one(&w, target(GATEWAY_API_GROUP, "HTTPRoute", "api", None)),
        expected
    );
    assert_eq!(
        one(
            &w,
            target(GATEWAY_API_GROUP, "HTTPRoute", "api", Some("login"))
        ),
        expected
    );
    assert_eq!(
        one(&w, target(GATEWAY_API_GROUP, "GRPCRoute", "rpc", None)),
        vec![ancestor(GATEWAY_API_GROUP, "Gateway", "edge", "gw", None)]
    );
    assert_eq!(
        one(&w, target(GROUP, "TrafficRoute", "tr", Some("login"))),
        vec![ancestor(GROUP, "Gateway", "edge", "pgw", None)]
    );
    let s = status(&w, vec![target(GROUP, "TrafficRoute", "tr", None)]);
    let a = &s.ancestors[0];
    assert_eq!(a.controller_name, "portolan.dev/gateway-controller");
    assert_eq!(
        (
            a.conditions[0].status.as_str(),
            a.conditions[0].observed_generation
        ),
        ("True", 4)
    );
}

#[test]
fn a_route_on_no_portolan_gateway_is_its_own_ancestor() {
    let w = world();
    assert_eq!(
        one(&w, target(GROUP, "TrafficRoute", "mesh", None)),
        vec![ancestor(GROUP, "TrafficRoute", "edge", "mesh", None)]
    );
    assert_eq!(
        one(
            &w,
            target(GATEWAY_API_GROUP, "HTTPRoute", "elsewhere", None)
        ),
        vec![ancestor(
            GATEWAY_API_GROUP,
            "HTTPRoute",
            "edge",
            "elsewhere",
            None
        )]
    );
}

#[test]
fn a_service_target_is_its_own_ancestor_with_its_port() {
    let w = world();
    assert_eq!(
        one(&w, target("", "Service", "web", Some("http"))),
        vec![ancestor("", "Service", "edge", "web", Some("http"))]
    );
}

#[test]
fn a_missing_target_is_its_own_ancestor_and_says_so() {
    let w = world();
    let s = status(&w, vec![target(GROUP, "Gateway", "nope", Some("x"))]);
    assert_eq!(
        refs(&s),
        vec![ancestor(GROUP, "Gateway", "edge", "nope", Some("x"))]
    );
    let c = &s.ancestors[0].conditions[0];
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "TargetNotFound")
    );
}

#[test]
fn targets_sharing_a_gateway_share_one_entry() {
    let w = world();
    // Two routes on listener http of gw, and one that names nothing.
    let s = status(
        &w,
        vec![
            target(GATEWAY_API_GROUP, "HTTPRoute", "shop", None),
            target(GATEWAY_API_GROUP, "HTTPRoute", "api", None),
            target(GATEWAY_API_GROUP, "HTTPRoute", "gone", None),
        ],
    );
    assert_eq!(
        refs(&s),
        vec![
            ancestor(GATEWAY_API_GROUP, "Gateway", "edge", "gw", Some("http")),
            ancestor(GATEWAY_API_GROUP, "Gateway", "infra", "gw2", None),
            ancestor(GATEWAY_API_GROUP, "HTTPRoute", "edge", "gone", None),
        ]
    );
    let shared = &s.ancestors[0].conditions[0];
    assert_eq!(shared.status, "True");
    assert!(
        shared
            .message
            .contains("HTTPRoute.gateway.networking.k8s.io shop")
            && shared
                .message
                .contains("HTTPRoute.gateway.networking.k8s.io api"),
        "{shared:?}"
    );
}

#[test]
fn at_most_sixteen_ancestors_are_listed() {
    let w = world();
    let targets = (0..20)
        .map(|i| target("", "Service", &format!("svc-{i}"), None))
        .collect();
    let s = status(&w, targets);
    assert_eq!(s.ancestors.len(), MAX_ANCESTORS);
    assert_eq!(
        s.ancestors[15].ancestor_ref.name, "svc-15",
        "first ones kept"
    );
}

#[test]
fn an_envoy_patch_policy_has_its_gateway_as_ancestor() {
    use crate::envoy_patch::{EnvoyPatch, PatchTarget};
    let w = world();
    let patch = |target| EnvoyPatch {
        source: ObjectRef::new(Kind::EnvoyPatchPolicy, "edge", "tune"),
        generation: 2,
        target,
        patches: vec![],
    };
    let accepted = crate::status::Condition::new(
        crate::status::ConditionType::Accepted,
        false,
        "Disabled",
        "off",
        2,
    );
    let on = |target| patch_status(&w, &patch(target), &accepted);
    let s = on(PatchTarget::ApiGateway(ObjectRef::new(
        Kind::ApiGateway,
        "edge",
        "gw",
    )));
    assert_eq!(
        refs(&s),
        vec![ancestor(GATEWAY_API_GROUP, "Gateway", "edge", "gw", None)]
    );
    assert_eq!(
        s.ancestors[0].conditions[0].reason, "Disabled",
        "the policy's own Accepted"
    );
    let s = on(PatchTarget::Gateway(ObjectRef::new(
        Kind::Gateway,
        "edge",
        "gone",
    )));
    assert_eq!(
        refs(&s),
        vec![ancestor(GROUP, "Gateway", "edge", "gone", None)]
    );
    assert_eq!(s.ancestors[0].conditions[0].reason, "TargetNotFound");
    let s = on(PatchTarget::Proxies {
        cluster: Some("edge".into()),
        labels: Default::default(),
    });
    assert!(s.ancestors.is_empty());
}

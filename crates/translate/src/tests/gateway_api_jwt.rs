//! A RequestAuthentication on one named rule of an HTTPRoute served by a Gateway API Gateway:
//! the listener gets the jwt_authn filter and only that rule's Envoy route names the
//! requirement; one on the Gateway covers the other rules.

use super::*;
use crate::jwt::JWT_AUTHN;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use portolan_model::Index;
use prost::Message;
use serde_json::json;

fn apply(idx: &mut Index, doc: serde_json::Value) {
    let r = portolan_api::Resource::decode(doc)
        .expect("decodes")
        .expect("is read");
    assert!(portolan_api::validate::validate(&r).is_empty());
    idx.apply(portolan_model::convert::to_object(&r));
}

fn policy(name: &str, target: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "RequestAuthentication",
        "metadata": {"name": name, "namespace": "infra"},
        "spec": {"targetRefs": [target], "providers": [{"name": "idp", "issuer": "https://idp",
            "localJwks": {"inline": "{\"keys\":[{\"kty\":\"EC\"}]}"}}]}})
}

fn world(with_gateway_policy: bool) -> Arc<World> {
    let mut idx = Index::new();
    for doc in [
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": "portolan"}, "spec": {"controllerName": "portolan.dev/gateway-controller"}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "infra"},
            "spec": {"gatewayClassName": "portolan", "addresses": [{"type": "IPAddress", "value": "127.0.0.9"}],
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "api", "namespace": "infra"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/a"}}]},
                {"name": "admin", "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}]}]}}),
        policy(
            "admin-jwt",
            json!({"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "api", "sectionName": "admin"}),
        ),
    ] {
        apply(&mut idx, doc);
    }
    if with_gateway_policy {
        apply(
            &mut idx,
            policy(
                "gw-jwt",
                json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "sectionName": "http"}),
            ),
        );
    }
    idx.world()
}

/// `(path prefix, requirement)` of each Envoy route of `gateway-80`.
fn requirements(resources: &Resources) -> Vec<(String, Option<String>)> {
    let rc = resources
        .routes
        .iter()
        .find(|r| r.name == "gateway-80")
        .expect("route configuration gateway-80");
    rc.virtual_hosts
        .iter()
        .flat_map(|vh| &vh.routes)
        .map(|r| {
            let path =
                serde_json::to_string(&crate::json::message_to_json(r).expect("renders")["match"])
                    .unwrap_or_default();
            let requirement = r.typed_per_filter_config.get(JWT_AUTHN).map(|any| {
                use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
                    PerRouteConfig, per_route_config::RequirementSpecifier,
                };
                match PerRouteConfig::decode(any.value.as_slice())
                    .expect("decodes")
                    .requirement_specifier
                {
                    Some(RequirementSpecifier::RequirementName(n)) => n,
                    other => format!("{other:?}"),
                }
            });
            (path, requirement)
        })
        .collect()
}

fn has_jwt_filter(resources: &Resources) -> bool {
    let listener = resources
        .listeners
        .iter()
        .find(|l| l.name == "gateway-80")
        .expect("listener gateway-80");
    let Some(ConfigType::TypedConfig(any)) = &listener.filter_chains[0].filters[0].config_type
    else {
        return false;
    };
    let hcm = HttpConnectionManager::decode(any.value.as_slice()).expect("an HCM");
    hcm.http_filters
        .first()
        .is_some_and(|f| f.name == JWT_AUTHN)
}

#[test]
fn a_rule_policy_reaches_only_its_rule() {
    let resources = run_group(&world(false), "gateway:infra/gw");
    assert!(has_jwt_filter(&resources));
    let reqs = requirements(&resources);
    let admin: Vec<_> = reqs.iter().filter(|(p, _)| p.contains("/admin")).collect();
    let other: Vec<_> = reqs.iter().filter(|(p, _)| !p.contains("/admin")).collect();
    assert!(!admin.is_empty() && !other.is_empty(), "{reqs:?}");
    assert!(
        admin
            .iter()
            .all(|(_, r)| r.as_deref() == Some("infra/admin-jwt")),
        "{reqs:?}"
    );
    assert!(other.iter().all(|(_, r)| r.is_none()), "{reqs:?}");
}

#[test]
fn a_listener_policy_covers_the_other_rules_and_the_rule_policy_wins_its_rule() {
    let resources = run_group(&world(true), "gateway:infra/gw");
    for (path, requirement) in requirements(&resources) {
        let want = if path.contains("/admin") {
            "infra/admin-jwt"
        } else {
            "infra/gw-jwt"
        };
        assert_eq!(requirement.as_deref(), Some(want), "{path}");
    }
}

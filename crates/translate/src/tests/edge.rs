//! ExtAuthPolicy and RateLimitPolicy on gateway listeners: which filters a connection manager
//! carries (enabled for the whole listener or only where routes enable them) and what each
//! route says to them, for Portolan and Gateway API gateways. Worlds are built from manifests
//! through the Index, as the sources build them.

use super::*;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::route::v3::FilterConfig;
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    ExtAuthzPerRoute, ext_authz_per_route,
};
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn world_of(docs: Vec<Value>) -> Arc<World> {
    let mut idx = portolan_model::Index::new();
    for doc in docs {
        let r = portolan_api::Resource::decode(doc)
            .expect("decodes")
            .expect("is read");
        let errors = portolan_api::validate::validate(&r);
        assert!(errors.is_empty(), "{errors:?}");
        idx.apply(portolan_model::convert::to_object(&r));
    }
    idx.world()
}

fn svc(name: &str, port_name: &str, port: u16, app: Option<&str>) -> Value {
    let mut p = json!({"name": port_name, "port": port});
    if let Some(app) = app {
        p["appProtocol"] = json!(app);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
           "spec": {"ports": [p]}})
}

fn portolan_docs() -> Vec<Value> {
    let target = |kind: &str, name: &str, section: Option<&str>| {
        let mut t = json!({"group": "portolan.dev", "kind": kind, "name": name});
        if let Some(s) = section {
            t["sectionName"] = json!(s);
        }
        json!([t])
    };
    vec![
        svc("www", "http", 80, None),
        svc("authz", "grpc", 9000, Some("grpc")),
        svc("rls", "grpc", 8081, Some("grpc")),
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "Gateway",
               "metadata": {"name": "edge", "namespace": "default"},
               "spec": {"selector": {"cluster": "ingress"}, "listeners": [{"name": "web", "port": 8080, "protocol": "HTTP"}]}}),
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
               "metadata": {"name": "api", "namespace": "default"},
               "spec": {"hosts": ["api.example.com"], "gateways": ["edge"], "http": [
                   {"name": "public", "match": [{"path": {"prefix": "/public"}}], "route": [{"destination": {"host": "www"}}]},
                   {"name": "search", "match": [{"path": {"prefix": "/search"}}], "route": [{"destination": {"host": "www"}}]},
                   {"name": "main", "route": [{"destination": {"host": "www"}}]}]}}),
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "ExtAuthPolicy",
               "metadata": {"name": "edge-authz", "namespace": "default"},
               "spec": {"targetRefs": target("Gateway", "edge", Some("web")), "grpc": {"service": {"host": "authz", "port": 9000}}}}),
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "ExtAuthPolicy",
               "metadata": {"name": "public-open", "namespace": "default"},
               "spec": {"targetRefs": target("TrafficRoute", "api", Some("public")), "disabled": true}}),
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "RateLimitPolicy",
               "metadata": {"name": "listener", "namespace": "default"},
               "spec": {"targetRefs": target("Gateway", "edge", None), "local": {"requests": 100, "per": "1s", "burst": 200}}}),
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "RateLimitPolicy",
               "metadata": {"name": "search", "namespace": "default"},
               "spec": {"targetRefs": target("TrafficRoute", "api", Some("search")),
                        "global": {"service": {"host": "rls", "port": 8081}, "domain": "d",
                                   "descriptors": [{"entries": [{"remoteAddress": {}}]}]}}}),
    ]
}

/// The HTTP filters of a listener's (first) connection manager.
fn hcm(r: &Resources, listener: &str) -> HttpConnectionManager {
    let l = r
        .listeners
        .iter()
        .find(|l| l.name == listener)
        .unwrap_or_else(|| panic!("no listener {listener}"));
    let Some(ConfigType::TypedConfig(any)) = &l.filter_chains[0].filters[0].config_type else {
        panic!("no typed config")
    };
    HttpConnectionManager::decode(any.value.as_slice()).expect("an HCM")
}

fn filters(h: &HttpConnectionManager) -> Vec<(String, bool)> {
    h.http_filters
        .iter()
        .map(|f| (f.name.clone(), f.disabled))
        .collect()
}

/// Per-filter config of the Envoy route named `name` (`{ns}/{route}/{rule}`) in `config`.
fn route_filters(r: &Resources, config: &str, name: &str) -> BTreeMap<String, Any> {
    let rc = r
        .routes
        .iter()
        .find(|c| c.name == config)
        .expect("route config");
    let route = rc
        .virtual_hosts
        .iter()
        .flat_map(|v| &v.routes)
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route {name}"));
    route
        .typed_per_filter_config
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn unwrap_filter_config(any: &Any) -> FilterConfig {
    assert_eq!(any.type_url, FilterConfig::type_url());
    FilterConfig::decode(any.value.as_slice()).expect("a FilterConfig")
}

const AUTHZ: &str = "envoy.filters.http.ext_authz/default/edge-authz";
const LOCAL: &str = "envoy.filters.http.local_ratelimit";
const GLOBAL: &str = "envoy.filters.http.ratelimit/default/search";

#[test]
fn listener_policies_are_enabled_and_route_policies_override_them() {
    let r = run_group(&world_of(portolan_docs()), "ingress");
    let h = hcm(&r, "gateway-8080");
    assert_eq!(
        filters(&h),
        [
            ("envoy.filters.http.fault".to_string(), false),
            ("envoy.filters.http.cors".to_string(), false),
            (AUTHZ.to_string(), false),
            (LOCAL.to_string(), false),
            (GLOBAL.to_string(), true),
            ("envoy.filters.http.router".to_string(), false),
        ]
    );
    // `main`: the listener's policies, nothing per route.
    assert!(route_filters(&r, "gateway-8080", "default/api/main").is_empty());
    // `public`: its disabled ExtAuthPolicy turns the listener's authorization off.
    let public = route_filters(&r, "gateway-8080", "default/api/public");
    let off = ExtAuthzPerRoute::decode(public[AUTHZ].value.as_slice()).expect("per route");
    assert_eq!(
        off.r#override,
        Some(ext_authz_per_route::Override::Disabled(true))
    );
    assert_eq!(public.len(), 1, "{:?}", public.keys());
    // `search`: its RateLimitPolicy (global only) wins over the listener's: the listener's
    // bucket is off there, its own global filter on; authorization stays.
    let search = route_filters(&r, "gateway-8080", "default/api/search");
    assert!(unwrap_filter_config(&search[LOCAL]).disabled);
    let on = unwrap_filter_config(&search[GLOBAL]);
    assert!(!on.disabled && on.config.is_some());
    assert!(!search.contains_key(AUTHZ));
}

#[test]
fn a_route_policy_alone_is_enabled_only_on_its_routes() {
    let mut docs = portolan_docs();
    // Only the search rule's bucket: the filter is off on the listener, on for `search`.
    docs.retain(|d| d["kind"] != "ExtAuthPolicy" && d["metadata"]["name"] != "listener");
    docs.push(json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "RateLimitPolicy",
        "metadata": {"name": "search", "namespace": "default"},
        "spec": {"targetRefs": [{"group": "portolan.dev", "kind": "TrafficRoute", "name": "api", "sectionName": "search"}],
                 "local": {"requests": 10, "per": "1s"}}}));
    docs.retain(|d| !(d["kind"] == "RateLimitPolicy" && d["spec"].get("global").is_some()));
    let r = run_group(&world_of(docs), "ingress");
    let names = filters(&hcm(&r, "gateway-8080"));
    assert!(names.contains(&(LOCAL.to_string(), true)), "{names:?}");
    let search = route_filters(&r, "gateway-8080", "default/api/search");
    let config = unwrap_filter_config(&search[LOCAL])
        .config
        .expect("a bucket");
    let bucket = LocalRateLimit::decode(config.value.as_slice()).expect("local config");
    assert_eq!(bucket.token_bucket.map(|b| b.max_tokens), Some(10));
    assert!(route_filters(&r, "gateway-8080", "default/api/main").is_empty());
}

#[test]
fn gateway_api_listeners_get_edge_filters_too() {
    let docs = vec![
        svc("www", "http", 80, None),
        svc("authz", "http", 8000, None),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": "portolan"}, "spec": {"controllerName": "portolan.dev/gateway-controller"}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": "default"},
               "spec": {"gatewayClassName": "portolan", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": "api", "namespace": "default"},
               "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "www", "port": 80}]}]}}),
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "ExtAuthPolicy",
               "metadata": {"name": "api-authz", "namespace": "default"},
               "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "api"}],
                        "http": {"service": {"host": "authz", "port": 8000}}}}),
    ];
    let world = world_of(docs);
    let statuses = portolan_model::edge::summaries(&world.ext_auth);
    let status = &statuses[&ObjectRef::new(Kind::ExtAuthPolicy, "default", "api-authz")];
    assert!(status.status, "{status:?}");
    let r = run_group(&world, "gateway:default/gw");
    let names = filters(&hcm(&r, "gateway-80"));
    let authz = "envoy.filters.http.ext_authz/default/api-authz".to_string();
    assert!(names.contains(&(authz.clone(), true)), "{names:?}");
    let rc = r
        .routes
        .iter()
        .find(|c| c.name == "gateway-80")
        .expect("routes");
    let enabled = rc
        .virtual_hosts
        .iter()
        .flat_map(|v| &v.routes)
        .all(|route| route.typed_per_filter_config.contains_key(&authz));
    assert!(enabled, "every rule of the HTTPRoute enables its policy");
}

#[test]
fn a_policy_whose_target_is_missing_is_not_accepted_and_changes_nothing() {
    let mut docs = portolan_docs();
    docs.push(
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "ExtAuthPolicy",
        "metadata": {"name": "nowhere", "namespace": "default"},
        "spec": {"targetRefs": [{"group": "portolan.dev", "kind": "Gateway", "name": "missing"}],
                 "grpc": {"service": {"host": "authz", "port": 9000}}}}),
    );
    let world = world_of(docs);
    let nowhere = ObjectRef::new(Kind::ExtAuthPolicy, "default", "nowhere");
    let status = &world.statuses[&nowhere][0];
    assert!(!status.status);
    assert_eq!(status.reason, "TargetNotFound");
    let r = run_group(&world, "ingress");
    let names = filters(&hcm(&r, "gateway-8080"));
    assert!(
        !names.iter().any(|(n, _)| n.ends_with("/nowhere")),
        "{names:?}"
    );
}

#[test]
fn a_service_target_applies_on_the_workload_inbound_listener() {
    let docs = vec![
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "shop", "labels": {"portolan.dev/service-account": "web"}},
               "spec": {"ports": [{"name": "http", "port": 8080}]}}),
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "RateLimitPolicy",
               "metadata": {"name": "web", "namespace": "shop"},
               "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
                        "local": {"requests": 5, "per": "1s"}}}),
    ];
    let r = run_group(
        &world_of(docs),
        "web;l.app=web;ns=shop;sa=web;app=8080;in=15006",
    );
    let names = filters(&hcm(&r, crate::inbound::INBOUND_LISTENER));
    assert!(names.contains(&(LOCAL.to_string(), false)), "{names:?}");
}

/// The route configurations of `world`'s ingress group, encoded as the snapshot encodes them.
fn encoded_routes(world: &World) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let r = run_group(world, "ingress");
    let served = r
        .routes
        .iter()
        .map(|rc| {
            portolan_xds::snapshot::Encoded::route(rc)
                .resource()
                .value()
                .to_vec()
        })
        .collect();
    let plain = r.routes.iter().map(|rc| rc.encode_to_vec()).collect();
    (served, plain)
}

#[test]
fn two_translations_of_one_world_encode_to_the_same_route_bytes() {
    // `search` carries two per-route filter configs: a HashMap, so prost alone encodes it in
    // the order of that map's random hasher keys.
    let r = run_group(&world_of(portolan_docs()), "ingress");
    assert_eq!(
        route_filters(&r, "gateway-8080", "default/api/search").len(),
        2
    );
    let (first, first_plain) = encoded_routes(&world_of(portolan_docs()));
    let mut plain_varied = false;
    for _ in 0..30 {
        // A fresh World and fresh maps each time, as after a restart.
        let (again, again_plain) = encoded_routes(&world_of(portolan_docs()));
        plain_varied |= again_plain != first_plain;
        assert_eq!(again, first);
    }
    assert!(plain_varied, "the case is real: prost's own bytes do vary");
}

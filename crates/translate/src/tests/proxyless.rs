//! A proxyless gRPC group's resources: API listeners named after its targets, and nothing
//! gRPC would NACK (Envoy-only filters, TLS sockets, non-EDS clusters, unweighted localities).

use super::*;
use crate::proxyless::{Client, GRPC_ROUTE};
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbPolicy,
};
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use portolan_model::policy::{LbAlgorithm, LoadBalancer};
use portolan_model::routing::{Cors, Fault, FaultAbort, RetryPolicy};
use prost::Message;
use std::time::Duration;

const GRPC_GROUP: &str = "default;client=grpc";

/// `reviews` split 50/50 between subsets v1 and v2, with what Envoy alone can use on it: a
/// fault, CORS, header edits, a mirror, a Maglev policy, an external HTTP host.
fn mk_grpc_world() -> World {
    let mut rule = mk_rule(
        vec![],
        mk_forward(vec![
            mk_backend("reviews", None, Some("v1"), 50),
            mk_backend("reviews", None, Some("v2"), 50),
        ]),
    );
    rule.timeout = Some(Duration::from_secs(2));
    rule.retry = Some(RetryPolicy {
        attempts: 2,
        per_try_timeout: Some(Duration::from_millis(500)),
        retry_on: vec!["5xx".to_string(), "unavailable".to_string()],
    });
    rule.fault = Some(Fault {
        delay: None,
        abort: Some(FaultAbort {
            status: 503,
            percent: 1.0,
        }),
    });
    rule.cors = Some(Cors::default());
    rule.request_headers.set.insert("x-a".into(), "b".into());
    let mut policy = mk_policy("default", "reviews", "reviews");
    policy.subsets = vec![
        mk_subset("v1", &[("version", "v1")]),
        mk_subset("v2", &[("version", "v2")]),
    ];
    policy.load_balancer = Some(LoadBalancer {
        algorithm: LbAlgorithm::Maglev,
        hash_key: None,
        locality_aware: false,
    });
    with(
        mk_reviews_world(),
        Extra {
            routes: vec![mk_route("default", "reviews", &["reviews"], vec![rule])],
            policies: vec![policy],
            externals: vec![mk_external(
                "default",
                "api",
                &["api.example.com"],
                vec![mk_external_port("http", 80, ExternalProtocol::Http)],
                Resolution::Dns,
                vec![],
            )],
            ..Default::default()
        },
    )
}

#[test]
fn the_group_key_names_a_grpc_client() {
    assert_eq!(group_of(GRPC_GROUP).client, Client::Grpc);
    assert_eq!(group_of("default").client, Client::Envoy);
    assert_eq!(group_of("web;client=grpc;ns=a;sa=b").client, Client::Grpc);
}

#[test]
fn api_listeners_are_named_after_the_targets() {
    let r = run_group(&mk_grpc_world(), GRPC_GROUP);
    let names: Vec<&str> = r.listeners.iter().map(|l| l.name.as_str()).collect();
    for target in [
        "reviews.default:9080",
        "reviews.default",
        "reviews.default.svc.cluster.local:9080",
        "reviews:9080",
    ] {
        assert!(names.contains(&target), "{target} missing from {names:?}");
    }
    for listener in &r.listeners {
        assert!(listener.address.is_none(), "{}", listener.name);
        assert!(listener.filter_chains.is_empty(), "{}", listener.name);
        let any = listener
            .api_listener
            .as_ref()
            .and_then(|a| a.api_listener.as_ref())
            .expect("an API listener");
        let hcm = HttpConnectionManager::decode(any.value.as_slice()).expect("an HCM");
        let filters: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(filters, ["envoy.filters.http.router"]);
        assert!(hcm.access_log.is_empty() && hcm.tracing.is_none());
    }
    assert_eq!(r.routes.len(), 1);
    assert_eq!(r.routes[0].name, GRPC_ROUTE);
}

#[test]
fn routes_keep_what_grpc_supports_and_drop_the_rest() {
    let r = run_group(&mk_grpc_world(), GRPC_GROUP);
    let vhost = r.routes[0]
        .virtual_hosts
        .iter()
        .find(|v| v.name == "reviews.default:9080")
        .expect("reviews virtual host");
    let route = &vhost.routes[0];
    assert!(route.typed_per_filter_config.is_empty());
    assert!(route.request_headers_to_add.is_empty());
    let Some(Action::Route(action)) = &route.action else {
        panic!("a forwarding route");
    };
    let Some(ClusterSpecifier::WeightedClusters(weighted)) = &action.cluster_specifier else {
        panic!("weighted clusters");
    };
    let weights: Vec<u32> = weighted
        .clusters
        .iter()
        .map(|c| c.weight.as_ref().map_or(0, |w| w.value))
        .collect();
    assert_eq!(weights, [50, 50]);
    assert!(action.timeout.is_none());
    let max = action
        .max_stream_duration
        .as_ref()
        .and_then(|m| m.max_stream_duration.as_ref())
        .expect("timeout as max_stream_duration");
    assert_eq!(max.seconds, 2);
    let retry = action.retry_policy.as_ref().expect("retries kept");
    assert_eq!(retry.retry_on, "unavailable");
    assert_eq!(retry.num_retries.as_ref().map(|n| n.value), Some(2));
    assert!(retry.per_try_timeout.is_none());
    assert!(retry.retry_back_off.is_some());
    // Envoy's group of the same World keeps all of it.
    let envoy = run(&mk_grpc_world());
    assert!(envoy.routes[0].virtual_hosts.iter().any(|v| {
        v.routes
            .iter()
            .any(|r| !r.typed_per_filter_config.is_empty())
    }));
}

#[test]
fn clusters_and_endpoints_are_what_grpc_accepts() {
    let r = run_group(&mk_grpc_world(), GRPC_GROUP);
    let eds = Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
    assert!(!r.clusters.is_empty());
    for c in &r.clusters {
        assert_eq!(c.cluster_discovery_type, eds, "{}", c.name);
        assert!(c.transport_socket.is_none(), "{}", c.name);
        assert!(c.health_checks.is_empty(), "{}", c.name);
        assert!(
            [LbPolicy::RoundRobin as i32, LbPolicy::RingHash as i32].contains(&c.lb_policy),
            "{}",
            c.name
        );
    }
    assert!(
        r.clusters
            .iter()
            .all(|c| !c.name.contains("api.example.com"))
    );
    assert_eq!(r.load_assignments.len(), r.clusters.len());
    for cla in &r.load_assignments {
        for locality in &cla.endpoints {
            let weight = locality.load_balancing_weight.as_ref().map(|w| w.value);
            assert_eq!(weight, Some(1), "{}", cla.cluster_name);
        }
    }
    // Envoy's group keeps the external host's cluster and the Maglev policy.
    let envoy = run(&mk_grpc_world());
    assert!(
        envoy
            .clusters
            .iter()
            .any(|c| c.name.contains("api.example.com"))
    );
    assert!(
        envoy
            .clusters
            .iter()
            .any(|c| c.lb_policy == LbPolicy::Maglev as i32)
    );
}

/// A translator's memo holds each Service fitted: reused, it gives the same as a cold
/// translation.
#[test]
fn a_warm_translator_gives_the_same() {
    let world = mk_grpc_world();
    let group = group_of(GRPC_GROUP);
    let mut translator = crate::Translator::new();
    for _ in 0..2 {
        let shared = translator.translate(&world, &group, &Options::default());
        assert_eq!(shared.to_resources(), run_group(&world, GRPC_GROUP));
    }
    assert_eq!(translator.stats().translated, 0);
}

//! Translation of on-demand groups: VHDS route configuration, the on-demand filter, one
//! virtual host per domain with the full mode's routes, clusters served by name.

use super::*;
use crate::json::message_to_json;
use crate::names;
use crate::on_demand::ON_DEMAND;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::extensions::filters::http::on_demand::v3::OnDemand;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_filter,
};
use portolan_model::routing::{Mirror, RetryPolicy};
use prost::Message;
use std::time::Duration;

const ON_DEMAND_GROUP: &str = "default;mode=on-demand";

fn mesh_hcm(r: &Resources) -> HttpConnectionManager {
    let listener = r
        .listeners
        .iter()
        .find(|l| l.name == names::MESH_LISTENER)
        .expect("mesh listener");
    let Some(ConfigType::TypedConfig(any)) = &listener.filter_chains[0].filters[0].config_type
    else {
        panic!("typed config");
    };
    HttpConnectionManager::decode(any.value.as_slice()).expect("decodes")
}

fn reviews_with_retries() -> World {
    let mut rule = mk_rule(
        vec![],
        mk_forward(vec![mk_backend("reviews", None, None, 1)]),
    );
    rule.timeout = Some(Duration::from_secs(2));
    rule.retry = Some(RetryPolicy {
        attempts: 3,
        per_try_timeout: Some(Duration::from_millis(500)),
        retry_on: vec!["gateway-error".to_string()],
    });
    with(
        mk_reviews_world(),
        Extra {
            routes: vec![mk_route("default", "reviews", &["reviews"], vec![rule])],
            ..Default::default()
        },
    )
}

#[test]
fn the_key_part_selects_on_demand() {
    assert_eq!(
        group_of(ON_DEMAND_GROUP).discovery,
        crate::Discovery::OnDemand
    );
    assert_eq!(group_of("default").discovery, crate::Discovery::Full);
    assert_eq!(run(&mk_reviews_world()).on_demand, None);
}

#[test]
fn route_configuration_takes_virtual_hosts_over_vhds() {
    let r = run_group(&mk_reviews_world(), ON_DEMAND_GROUP);
    let route = &r.routes[0];
    assert_eq!(route.name, names::MESH_ROUTE);
    assert!(route.virtual_hosts.is_empty());
    let vhds = route.vhds.as_ref().expect("vhds");
    assert!(vhds.config_source.is_some());
}

#[test]
fn on_demand_filter_comes_first_with_odcds_over_ads() {
    let hcm = mesh_hcm(&run_group(&mk_reviews_world(), ON_DEMAND_GROUP));
    let first = &hcm.http_filters[0];
    assert_eq!(first.name, ON_DEMAND);
    let Some(http_filter::ConfigType::TypedConfig(any)) = &first.config_type else {
        panic!("typed config");
    };
    let on_demand = OnDemand::decode(any.value.as_slice()).expect("decodes");
    assert!(on_demand.odcds.and_then(|o| o.source).is_some());
    assert_eq!(
        hcm.http_filters.last().map(|f| f.name.as_str()),
        Some(crate::filters::ROUTER)
    );
    let full = mesh_hcm(&run(&mk_reviews_world()));
    assert!(full.http_filters.iter().all(|f| f.name != ON_DEMAND));
}

#[test]
fn each_domain_is_a_virtual_host_with_the_full_modes_routes() {
    let world = reviews_with_retries();
    let full = run(&world);
    let full_vhost = &full.routes[0].virtual_hosts[0];
    let on_demand = run_group(&world, ON_DEMAND_GROUP)
        .on_demand
        .expect("on-demand resources");
    let names_got: Vec<&str> = on_demand
        .virtual_hosts
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    let mut expected: Vec<String> = full_vhost
        .domains
        .iter()
        .map(|d| format!("mesh-outbound/{d}"))
        .collect();
    expected.sort();
    assert_eq!(names_got, expected);
    for vhost in &on_demand.virtual_hosts {
        assert_eq!(vhost.domains.len(), 1);
        assert_eq!(vhost.name, format!("mesh-outbound/{}", vhost.domains[0]));
        assert_eq!(
            message_to_json(&vhost.routes[0]).expect("renders"),
            message_to_json(&full_vhost.routes[0]).expect("renders"),
            "{}",
            vhost.name
        );
    }
    assert!(
        full_vhost.routes[0]
            .action
            .as_ref()
            .is_some_and(|a| format!("{a:?}").contains("retry_policy: Some")),
        "the full mode route has retries"
    );
}

#[test]
fn clusters_are_named_only_but_the_inbound_cluster_stays_in_the_wildcard() {
    let world = mk_reviews_world();
    let r = run_group(&world, ON_DEMAND_GROUP);
    let on_demand = r.on_demand.as_ref().expect("on-demand");
    assert!(on_demand.wildcard_clusters.is_empty());
    assert_eq!(r.clusters.len(), run(&world).clusters.len());

    let mesh = run_group(&world, "default;mode=on-demand;ns=default;sa=web;app=8080");
    let wildcard = &mesh
        .on_demand
        .as_ref()
        .expect("on-demand")
        .wildcard_clusters;
    // The inbound cluster and the capture listener's passthrough: used without a route.
    let expected = ["PassthroughCluster", "inbound|8080", "inbound|passthrough"];
    assert_eq!(
        wildcard.iter().map(String::as_str).collect::<Vec<_>>(),
        expected
    );
    for name in wildcard {
        assert!(mesh.clusters.iter().any(|c| &c.name == name), "{name}");
    }
}

/// Envoy's on-demand filter asks only for the cluster a request is routed to: a mirror's
/// cluster is in the wildcard answer (so the proxy has it before the route arrives), the
/// routed clusters stay named-only.
#[test]
fn mirror_clusters_are_in_the_wildcard_answer() {
    let mut world = mk_reviews_world();
    world.services.insert(
        ServiceKey::new("default", "shadow"),
        Arc::new(mk_service("default", "shadow", vec![mk_port("http", 80)])),
    );
    let mut rule = mk_rule(
        vec![],
        mk_forward(vec![mk_backend("reviews", None, None, 1)]),
    );
    rule.mirrors = vec![Mirror {
        destination: mk_dest("shadow", None, None),
        percent: 100.0,
    }];
    let world = with(
        world,
        Extra {
            routes: vec![mk_route("default", "reviews", &["reviews"], vec![rule])],
            ..Default::default()
        },
    );
    let r = run_group(&world, ON_DEMAND_GROUP);
    let wildcard = &r.on_demand.as_ref().expect("on-demand").wildcard_clusters;
    let shadow = "outbound|80||shadow.default.svc.cluster.local";
    assert_eq!(wildcard.iter().collect::<Vec<_>>(), [shadow]);
    assert!(r.clusters.iter().any(|c| c.name == shadow));
    // Without the route, nothing is mirrored and every cluster is named-only again.
    let plain = run_group(&mk_reviews_world(), ON_DEMAND_GROUP);
    assert!(
        plain
            .on_demand
            .expect("on-demand")
            .wildcard_clusters
            .is_empty()
    );
}

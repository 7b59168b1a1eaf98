//! Snapshot consistency of whole translations with routes, policies, externals and gateways:
//! every EDS cluster has a ClusterLoadAssignment, every RDS name a RouteConfiguration, every
//! name is unique, and every resource encodes and renders.

use super::golden_routing::mk_gateway_world;
use super::*;
use crate::json::resources_to_json;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use std::collections::BTreeSet;

fn mk_everything() -> World {
    let canary = mk_route(
        "default",
        "reviews-mesh",
        &["reviews"],
        vec![mk_rule(
            vec![],
            mk_forward(vec![
                mk_backend("reviews", None, Some("v1"), 1),
                mk_backend("api.example.com", None, None, 1),
            ]),
        )],
    );
    let policy = DestinationPolicy {
        subsets: vec![mk_subset("v1", &[("version", "v1")])],
        ..mk_policy("default", "reviews", "reviews")
    };
    let ext = mk_external(
        "default",
        "ext",
        &["api.example.com"],
        vec![mk_external_port("http", 80, ExternalProtocol::Http)],
        Resolution::Dns,
        vec![],
    );
    with(
        mk_gateway_world(),
        Extra {
            routes: vec![canary],
            policies: vec![policy],
            externals: vec![ext],
            ..Default::default()
        },
    )
}

fn check(r: &Resources) {
    let clas: BTreeSet<&str> = r
        .load_assignments
        .iter()
        .map(|c| c.cluster_name.as_str())
        .collect();
    let eds = ClusterDiscoveryType::Type(DiscoveryType::Eds as i32);
    for c in &r.clusters {
        if c.cluster_discovery_type == Some(eds.clone()) {
            assert!(
                clas.contains(c.name.as_str()),
                "EDS cluster {} has no CLA",
                c.name
            );
        } else {
            assert!(c.load_assignment.is_some(), "{} has no endpoints", c.name);
        }
    }
    let routes: BTreeSet<&str> = r.routes.iter().map(|c| c.name.as_str()).collect();
    let json = resources_to_json(r).expect("renders");
    for listener in json["listeners"].as_array().expect("listeners") {
        for chain in listener["filter_chains"].as_array().expect("chains") {
            for filter in chain["filters"].as_array().expect("filters") {
                if let Some(rds) = filter["typed_config"]["rds"]["route_config_name"].as_str() {
                    assert!(routes.contains(rds), "no route configuration {rds}");
                }
            }
        }
    }
    encodes(&r.clusters);
    encodes(&r.load_assignments);
    encodes(&r.listeners);
    encodes(&r.routes);
    let unique = |names: Vec<&str>| names.len() == names.iter().collect::<BTreeSet<_>>().len();
    assert!(unique(r.clusters.iter().map(|c| c.name.as_str()).collect()));
    assert!(unique(
        r.listeners.iter().map(|c| c.name.as_str()).collect()
    ));
    assert!(unique(r.routes.iter().map(|c| c.name.as_str()).collect()));
    for rc in &r.routes {
        let domains: Vec<&str> = rc
            .virtual_hosts
            .iter()
            .flat_map(|v| &v.domains)
            .map(String::as_str)
            .collect();
        assert!(unique(domains), "repeated domain in {}", rc.name);
    }
}

#[test]
fn mesh_and_gateway_translations_are_consistent() {
    let world = mk_everything();
    for group in ["default", "ingress"] {
        let r = run_group(&world, group);
        assert!(!r.listeners.is_empty());
        check(&r);
    }
}

#[test]
fn routing_translation_is_deterministic() {
    let world = mk_everything();
    assert_eq!(run_group(&world, "ingress"), run_group(&world, "ingress"));
    assert_eq!(run(&world), run(&world));
}

fn encodes<M: prost::Message + Default + PartialEq + std::fmt::Debug>(msgs: &[M]) {
    for msg in msgs {
        let decoded = M::decode(msg.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(&decoded, msg);
    }
}

//! The capture-aware outbound listener of a mesh workload (`crate::capture`): chains by
//! original destination, HTTP by Host, TCP Service ports proxied (weighted by a TrafficRoute's
//! TCP rule), unknown destinations passed through or refused. The snapshots are the spec.

use super::*;
use crate::capture::{BLACKHOLE_CLUSTER, OutboundPolicy, PASSTHROUGH_CLUSTER};
use crate::json::message_to_json;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};
use portolan_model::routing::TcpRule;

/// A workload group of `default` (service account `web`).
const WORKLOAD: &str = "web;ns=default;sa=web";

/// `reviews` (HTTP 9080, ClusterIP 10.96.0.20, pods 10.244.0.11-12), `db` (TCP 5432, named
/// `tcp-postgres`, ClusterIP 10.96.0.30) with `db-canary` (ClusterIP 10.96.0.31), a
/// headless `cache`, an ExternalService `api.example.com` on HTTP 80, and a TrafficRoute
/// sending 80% of `db` to itself and 20% to `db-canary`.
fn mk_capture_world() -> World {
    let service = |name: &str, ip: Option<&str>, port: ServicePort| Service {
        cluster_ip: ip.map(str::to_string),
        ..mk_service("default", name, vec![port])
    };
    let slice = |svc: &str, port: u16, ips: &[&str]| {
        mk_slice(
            "default",
            svc,
            svc,
            vec![mk_endpoint_port("", port)],
            ips.iter().map(|ip| mk_ready(ip, None)).collect(),
        )
    };
    let world = mk_world(
        vec![
            service("reviews", Some("10.96.0.20"), mk_port("http", 9080)),
            service("db", Some("10.96.0.30"), mk_port("tcp-postgres", 5432)),
            service(
                "db-canary",
                Some("10.96.0.31"),
                mk_port("tcp-postgres", 5432),
            ),
            service("cache", None, mk_port("redis", 6379)),
        ],
        vec![
            slice("reviews", 9080, &["10.244.0.11", "10.244.0.12"]),
            slice("db", 5432, &["10.244.0.21"]),
        ],
    );
    let db_route = HttpRoute {
        tcp: vec![TcpRule {
            port: None,
            backends: vec![
                mk_backend("db", None, None, 80),
                mk_backend("db-canary", Some(5432), None, 20),
            ],
        }],
        ..mk_route("default", "db", &["db"], vec![])
    };
    let api = mk_external(
        "default",
        "api",
        &["api.example.com"],
        vec![mk_external_port("http", 80, ExternalProtocol::Http)],
        Resolution::Dns,
        vec![],
    );
    with(
        world,
        Extra {
            routes: vec![db_route],
            externals: vec![api],
            ..Default::default()
        },
    )
}

fn run_capture(world: &World, policy: OutboundPolicy) -> Resources {
    let mut options = Options::default();
    options.mesh.outbound_policy = policy;
    translate(world, &group_of(WORKLOAD), &options)
}

fn outbound(r: &Resources) -> &Listener {
    r.listeners
        .iter()
        .find(|l| l.name == crate::names::MESH_LISTENER)
        .expect("mesh-outbound")
}

fn chain_names(listener: &Listener) -> Vec<&str> {
    listener
        .filter_chains
        .iter()
        .map(|c| c.name.as_str())
        .collect()
}

fn chain<'a>(listener: &'a Listener, name: &str) -> &'a FilterChain {
    listener
        .filter_chains
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no chain {name} in {:?}", chain_names(listener)))
}

/// The JSON of a chain's only filter's typed config.
fn filter_json(chain: &FilterChain) -> serde_json::Value {
    let json = message_to_json(chain).expect("renders");
    json["filters"][0]["typed_config"].clone()
}

#[test]
fn allow_any_listener() {
    let r = run_capture(&mk_capture_world(), OutboundPolicy::AllowAny);
    insta::assert_json_snapshot!(message_to_json(outbound(&r)).expect("renders"));
}

#[test]
fn registry_only_listener() {
    let r = run_capture(&mk_capture_world(), OutboundPolicy::RegistryOnly);
    insta::assert_json_snapshot!(message_to_json(outbound(&r)).expect("renders"));
}

#[test]
fn chains_by_original_destination() {
    let r = run_capture(&mk_capture_world(), OutboundPolicy::AllowAny);
    let listener = outbound(&r);
    // The headless `cache` has no ClusterIP: its pods are called by address (passed through).
    assert_eq!(
        chain_names(listener),
        ["direct", "http:9080", "10.96.0.30:5432", "10.96.0.31:5432"]
    );
    assert_eq!(
        listener.listener_filters[0].name,
        "envoy.filters.listener.original_dst"
    );
    let http = filter_json(chain(listener, "http:9080"));
    assert_eq!(http["rds"]["route_config_name"], "mesh-outbound");
    let db = filter_json(chain(listener, "10.96.0.30:5432"));
    let weights = &db["weighted_clusters"]["clusters"];
    assert_eq!(
        weights[0]["name"],
        "outbound|5432||db.default.svc.cluster.local"
    );
    assert_eq!(weights[0]["weight"], 80);
    assert_eq!(
        weights[1]["name"],
        "outbound|5432||db-canary.default.svc.cluster.local"
    );
    assert_eq!(weights[1]["weight"], 20);
    // No TCP route for db-canary itself: straight to its cluster.
    let canary = filter_json(chain(listener, "10.96.0.31:5432"));
    assert_eq!(
        canary["cluster"],
        "outbound|5432||db-canary.default.svc.cluster.local"
    );
    let default =
        message_to_json(listener.default_filter_chain.as_ref().expect("default")).expect("renders");
    assert_eq!(
        default["filters"][0]["typed_config"]["cluster"],
        PASSTHROUGH_CLUSTER
    );
    let passthrough = r
        .clusters
        .iter()
        .find(|c| c.name == PASSTHROUGH_CLUSTER)
        .expect("passthrough cluster");
    let json = message_to_json(passthrough).expect("renders");
    assert_eq!(json["type"], "ORIGINAL_DST");
    assert_eq!(json["lb_policy"], "CLUSTER_PROVIDED");
    assert!(!r.clusters.iter().any(|c| c.name == BLACKHOLE_CLUSTER));
}

#[test]
fn registry_only_refuses_unknown_but_keeps_pods_and_external_ports() {
    let r = run_capture(&mk_capture_world(), OutboundPolicy::RegistryOnly);
    let listener = outbound(&r);
    let names = chain_names(listener);
    assert!(names.contains(&"external:80"), "{names:?}");
    // The endpoints on every port another chain names (Envoy matches the port first), and
    // on any other port.
    for name in [
        "endpoints:80",
        "endpoints:5432",
        "endpoints:9080",
        "endpoints:15001",
    ] {
        assert!(names.contains(&name), "{name}: {names:?}");
    }
    let on_9080 = message_to_json(chain(listener, "endpoints:9080")).expect("renders");
    assert_eq!(on_9080["filter_chain_match"]["destination_port"], 9080);
    let pods = message_to_json(chain(listener, "endpoints")).expect("renders");
    let ranges: Vec<&str> = pods["filter_chain_match"]["prefix_ranges"]
        .as_array()
        .expect("ranges")
        .iter()
        .filter_map(|r| r["address_prefix"].as_str())
        .collect();
    assert_eq!(ranges, ["10.244.0.11", "10.244.0.12", "10.244.0.21"]);
    assert_eq!(
        pods["filters"][0]["typed_config"]["cluster"],
        PASSTHROUGH_CLUSTER
    );
    let default =
        message_to_json(listener.default_filter_chain.as_ref().expect("default")).expect("renders");
    assert_eq!(
        default["filters"][0]["typed_config"]["cluster"],
        BLACKHOLE_CLUSTER
    );
    let blackhole = r
        .clusters
        .iter()
        .find(|c| c.name == BLACKHOLE_CLUSTER)
        .expect("blackhole cluster");
    assert!(blackhole.load_assignment.is_none());
}

#[test]
fn clusterip_is_a_host_of_the_virtual_host() {
    let r = run_capture(&mk_capture_world(), OutboundPolicy::AllowAny);
    let vhost = r.routes[0]
        .virtual_hosts
        .iter()
        .find(|v| v.name == "reviews.default:9080")
        .expect("reviews");
    for host in [
        "reviews:9080",
        "reviews.default:9080",
        "10.96.0.20:9080",
        "10.96.0.20",
    ] {
        assert!(
            vhost.domains.iter().any(|d| d == host),
            "{host}: {:?}",
            vhost.domains
        );
    }
}

#[test]
fn one_chain_per_address_and_port_and_none_for_the_listener_port() {
    let mut world = mk_capture_world();
    // A second Service on reviews's ClusterIP and port: the first by namespace/name keeps
    // it, and the address is in the port's chain once.
    let twin = Service {
        cluster_ip: Some("10.96.0.20".into()),
        ..mk_service("default", "reviews-twin", vec![mk_port("http", 9080)])
    };
    world.services.insert(twin.key.clone(), Arc::new(twin));
    // Another HTTP Service on 9080 joins the port's chain.
    let other = Service {
        cluster_ip: Some("10.96.0.21".into()),
        ..mk_service("default", "ratings", vec![mk_port("http", 9080)])
    };
    world.services.insert(other.key.clone(), Arc::new(other));
    let r = run_capture(&world, OutboundPolicy::AllowAny);
    let listener = outbound(&r);
    let json = message_to_json(chain(listener, "http:9080")).expect("renders");
    let ranges: Vec<&str> = json["filter_chain_match"]["prefix_ranges"]
        .as_array()
        .expect("ranges")
        .iter()
        .filter_map(|r| r["address_prefix"].as_str())
        .collect();
    assert_eq!(ranges, ["10.96.0.20", "10.96.0.21"]);
}

#[test]
fn groups_without_a_workload_keep_the_host_header_listener() {
    let r = run(&mk_capture_world());
    let listener = outbound(&r);
    assert!(listener.listener_filters.is_empty());
    assert!(listener.default_filter_chain.is_none());
    assert_eq!(listener.filter_chains.len(), 1);
    assert!(!r.clusters.iter().any(|c| c.name == PASSTHROUGH_CLUSTER));
}

#[test]
fn a_groups_own_policy_wins_over_the_servers() {
    let world = mk_capture_world();
    let options = Options::default();
    let strict = translate(
        &world,
        &group_of("web;egress=registry-only;ns=default;sa=web"),
        &options,
    );
    let default = outbound(&strict)
        .default_filter_chain
        .as_ref()
        .expect("default");
    assert_eq!(default.name, "blackhole");
    let mut registry_only = Options::default();
    registry_only.mesh.outbound_policy = OutboundPolicy::RegistryOnly;
    let open = translate(
        &world,
        &group_of("web;egress=allow-any;ns=default;sa=web"),
        &registry_only,
    );
    let default = outbound(&open)
        .default_filter_chain
        .as_ref()
        .expect("default");
    assert_eq!(default.name, "passthrough");
}

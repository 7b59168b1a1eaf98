//! One test per translation rule.

use super::*;
use crate::names;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use envoy_types::pb::envoy::config::route::v3::VirtualHost;
use std::collections::HashSet;

/// `address:port` of every endpoint of a cluster, in order.
fn endpoints_of(resources: &Resources, cluster: &str) -> Vec<String> {
    let cla = load_assignment(resources, cluster);
    cla.endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .filter_map(|e| match &e.host_identifier {
            Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => ep.address.as_ref(),
            _ => None,
        })
        .filter_map(|a| match &a.address {
            Some(envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(s)) => {
                match s.port_specifier {
                    Some(envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(p)) => {
                        Some(format!("{}:{p}", s.address))
                    }
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

fn load_assignment<'r>(resources: &'r Resources, cluster: &str) -> &'r ClusterLoadAssignment {
    resources
        .load_assignments
        .iter()
        .find(|c| c.cluster_name == cluster)
        .unwrap_or_else(|| panic!("no assignment for {cluster}"))
}

fn virtual_host<'r>(resources: &'r Resources, name: &str) -> &'r VirtualHost {
    resources.routes[0]
        .virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no virtual host {name}"))
}

fn cluster(ns: &str, name: &str, port: u16) -> String {
    names::cluster_name(&ServiceKey::new(ns, name), port, "cluster.local")
}

fn mk_one_port_world(endpoints: Vec<Endpoint>) -> World {
    mk_world(
        vec![mk_service("ns", "svc", vec![mk_port("http", 80)])],
        vec![mk_slice(
            "ns",
            "svc",
            "svc-1",
            vec![mk_endpoint_port("http", 8080)],
            endpoints,
        )],
    )
}

#[test]
fn only_ready_endpoints_when_any_is_ready() {
    let world = mk_one_port_world(vec![
        mk_ready("10.0.0.1", None),
        mk_terminating("10.0.0.2", None),
        mk_not_ready("10.0.0.3", None),
    ]);
    let r = run(&world);
    assert_eq!(
        endpoints_of(&r, &cluster("ns", "svc", 80)),
        ["10.0.0.1:8080"]
    );
}

#[test]
fn serving_terminating_endpoints_when_none_is_ready() {
    let mut not_serving_terminating = mk_terminating("10.0.0.4", None);
    not_serving_terminating.serving = false;
    let world = mk_one_port_world(vec![
        mk_terminating("10.0.0.2", None),
        mk_not_ready("10.0.0.3", None),
        not_serving_terminating,
    ]);
    let r = run(&world);
    assert_eq!(
        endpoints_of(&r, &cluster("ns", "svc", 80)),
        ["10.0.0.2:8080"]
    );
}

#[test]
fn not_ready_endpoints_alone_give_an_empty_assignment() {
    let world = mk_one_port_world(vec![mk_not_ready("10.0.0.3", None)]);
    let r = run(&world);
    assert!(endpoints_of(&r, &cluster("ns", "svc", 80)).is_empty());
}

#[test]
fn endpoint_port_is_matched_by_name() {
    let svc = mk_service(
        "ns",
        "svc",
        vec![mk_port("http", 80), mk_port("metrics", 9090)],
    );
    let slice = mk_slice(
        "ns",
        "svc",
        "svc-1",
        vec![
            mk_endpoint_port("metrics", 9100),
            mk_endpoint_port("http", 8080),
        ],
        vec![mk_ready("10.0.0.1", None)],
    );
    let r = run(&mk_world(vec![svc], vec![slice]));
    assert_eq!(
        endpoints_of(&r, &cluster("ns", "svc", 80)),
        ["10.0.0.1:8080"]
    );
    assert_eq!(
        endpoints_of(&r, &cluster("ns", "svc", 9090)),
        ["10.0.0.1:9100"]
    );
}

#[test]
fn single_port_is_used_when_names_differ() {
    let svc = mk_service("ns", "svc", vec![mk_port("http", 80)]);
    let slice = mk_slice(
        "ns",
        "svc",
        "svc-1",
        vec![mk_endpoint_port("", 8080)],
        vec![mk_ready("10.0.0.1", None)],
    );
    let r = run(&mk_world(vec![svc], vec![slice]));
    assert_eq!(
        endpoints_of(&r, &cluster("ns", "svc", 80)),
        ["10.0.0.1:8080"]
    );
}

#[test]
fn unmatched_port_names_give_no_endpoints_when_there_is_a_choice() {
    let svc = mk_service(
        "ns",
        "svc",
        vec![mk_port("http", 80), mk_port("metrics", 9090)],
    );
    let slice = mk_slice(
        "ns",
        "svc",
        "svc-1",
        vec![mk_endpoint_port("other", 8080)],
        vec![mk_ready("10.0.0.1", None)],
    );
    let r = run(&mk_world(vec![svc], vec![slice]));
    assert!(endpoints_of(&r, &cluster("ns", "svc", 80)).is_empty());
    assert!(endpoints_of(&r, &cluster("ns", "svc", 9090)).is_empty());
}

#[test]
fn assignment_is_emitted_for_a_service_without_endpoints() {
    let world = mk_world(
        vec![mk_service("ns", "lonely", vec![mk_port("", 8080)])],
        vec![],
    );
    let r = run(&world);
    let name = cluster("ns", "lonely", 8080);
    assert_eq!(r.clusters.len(), 1);
    assert_eq!(r.clusters[0].name, name);
    assert!(load_assignment(&r, &name).endpoints.is_empty());
}

#[test]
fn duplicate_addresses_are_listed_once() {
    let world = mk_world(
        vec![mk_service("ns", "svc", vec![mk_port("http", 80)])],
        vec![
            mk_slice(
                "ns",
                "svc",
                "a",
                vec![mk_endpoint_port("http", 80)],
                vec![mk_ready("10.0.0.1", None)],
            ),
            mk_slice(
                "ns",
                "svc",
                "b",
                vec![mk_endpoint_port("http", 80)],
                vec![mk_ready("10.0.0.1", None)],
            ),
        ],
    );
    let r = run(&world);
    assert_eq!(endpoints_of(&r, &cluster("ns", "svc", 80)), ["10.0.0.1:80"]);
}

#[test]
fn fqdn_groups_and_non_ip_addresses_are_skipped() {
    let mut fqdn = mk_slice(
        "ns",
        "svc",
        "fqdn",
        vec![mk_endpoint_port("http", 80)],
        vec![mk_ready("db.example.com", None)],
    );
    fqdn.address_type = portolan_model::AddressType::Fqdn;
    let world = mk_world(
        vec![mk_service("ns", "svc", vec![mk_port("http", 80)])],
        vec![
            fqdn,
            mk_slice(
                "ns",
                "svc",
                "ip",
                vec![mk_endpoint_port("http", 80)],
                vec![mk_ready("not-an-ip", None), mk_ready("fd00::1", None)],
            ),
        ],
    );
    let r = run(&world);
    assert_eq!(endpoints_of(&r, &cluster("ns", "svc", 80)), ["fd00::1:80"]);
}

#[test]
fn endpoints_are_grouped_by_zone() {
    let world = mk_one_port_world(vec![
        mk_ready("10.0.0.3", Some("b")),
        mk_ready("10.0.0.1", Some("a")),
        mk_ready("10.0.0.2", None),
        mk_ready("10.0.0.4", Some("a")),
    ]);
    let r = run(&world);
    let cla = load_assignment(&r, &cluster("ns", "svc", 80));
    let zones: Vec<(&str, usize)> = cla
        .endpoints
        .iter()
        .map(|l| {
            (
                l.locality.as_ref().map_or("?", |l| l.zone.as_str()),
                l.lb_endpoints.len(),
            )
        })
        .collect();
    assert_eq!(zones, [("", 1), ("a", 2), ("b", 1)]);
}

#[test]
fn udp_ports_and_external_name_services_get_nothing() {
    let mut dns = mk_service(
        "ns",
        "dns",
        vec![mk_port("dns-tcp", 53), mk_port("dns", 53)],
    );
    dns.ports[1].protocol = portolan_model::Protocol::Udp;
    let mut ext = mk_service("ns", "ext", vec![mk_port("http", 80)]);
    ext.external_name = Some("example.com".to_string());
    let udp_only = {
        let mut s = mk_service("ns", "udp", vec![mk_port("syslog", 514)]);
        s.ports[0].protocol = portolan_model::Protocol::Udp;
        s
    };
    let r = run(&mk_world(vec![dns, ext, udp_only], vec![]));
    let names: Vec<_> = r.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, [cluster("ns", "dns", 53)]);
    assert_eq!(r.load_assignments.len(), 1);
    assert_eq!(r.routes[0].virtual_hosts.len(), 1);
}

#[test]
fn clusters_are_eds_over_ads_and_grpc_speaks_http2() {
    let world = mk_world(
        vec![mk_service(
            "ns",
            "svc",
            vec![
                mk_port("http", 80),
                mk_port("grpc-api", 9000),
                mk_app_port("x", 9001, "kubernetes.io/h2c"),
            ],
        )],
        vec![],
    );
    let r = run(&world);
    for c in &r.clusters {
        assert_eq!(
            c.cluster_discovery_type,
            Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
        );
        let eds = c.eds_cluster_config.as_ref().expect("eds config");
        assert_eq!(eds.service_name, c.name);
        assert_eq!(c.connect_timeout.as_ref().map(|d| d.seconds), Some(5));
    }
    let http2: Vec<bool> = r
        .clusters
        .iter()
        .map(|c| !c.typed_extension_protocol_options.is_empty())
        .collect();
    // Sorted by name: outbound|80, outbound|9000, outbound|9001.
    assert_eq!(http2, [false, true, true]);
}

#[test]
fn default_port_is_80_else_the_first_port() {
    let world = mk_world(
        vec![
            mk_service("ns", "a", vec![mk_port("x", 8080), mk_port("http", 80)]),
            mk_service("ns", "b", vec![mk_port("x", 8080), mk_port("y", 9090)]),
        ],
        vec![],
    );
    let r = run(&world);
    let has = |vh: &str, d: &str| virtual_host(&r, vh).domains.iter().any(|x| x == d);
    assert!(has("a.ns:80", "a.ns"));
    assert!(!has("a.ns:8080", "a.ns"));
    assert!(has("b.ns:8080", "b.ns.svc.cluster.local"));
    assert!(!has("b.ns:9090", "b.ns.svc.cluster.local"));
    assert!(has("b.ns:9090", "b.ns.svc.cluster.local:9090"));
}

#[test]
fn short_names_go_to_default_else_the_first_namespace() {
    let world = mk_world(
        vec![
            mk_service("alpha", "web", vec![mk_port("http", 80)]),
            mk_service("default", "web", vec![mk_port("http", 80)]),
            mk_service("gamma", "api", vec![mk_port("http", 80)]),
            mk_service("beta", "api", vec![mk_port("http", 80)]),
        ],
        vec![],
    );
    let r = run(&world);
    let has = |vh: &str, d: &str| virtual_host(&r, vh).domains.iter().any(|x| x == d);
    assert!(has("web.default:80", "web") && has("web.default:80", "web:80"));
    assert!(!has("web.alpha:80", "web") && !has("web.alpha:80", "web:80"));
    assert!(has("web.alpha:80", "web.alpha") && has("web.alpha:80", "web.alpha:80"));
    assert!(has("api.beta:80", "api") && !has("api.gamma:80", "api"));
    assert!(has("api.gamma:80", "api.gamma.svc.cluster.local"));
}

#[test]
fn domains_are_unique_across_the_route_configuration() {
    let mut services = Vec::new();
    for ns in ["default", "a", "b"] {
        for name in ["web", "api"] {
            services.push(mk_service(
                ns,
                name,
                vec![mk_port("http", 80), mk_port("grpc", 9000)],
            ));
        }
    }
    let r = run(&mk_world(services, vec![]));
    let mut seen = HashSet::new();
    for vh in &r.routes[0].virtual_hosts {
        assert!(!vh.domains.is_empty());
        for d in &vh.domains {
            assert!(seen.insert(d.clone()), "{d} repeated");
        }
    }
    assert_eq!(r.routes[0].virtual_hosts.len(), 12);
}

#[test]
fn routes_send_everything_to_the_port_cluster() {
    use envoy_types::pb::envoy::config::route::v3::{route, route_action, route_match};
    let r = run(&mk_one_port_world(vec![]));
    let vh = virtual_host(&r, "svc.ns:80");
    let route = &vh.routes[0];
    assert_eq!(
        route
            .r#match
            .as_ref()
            .and_then(|m| m.path_specifier.clone()),
        Some(route_match::PathSpecifier::Prefix("/".to_string()))
    );
    let Some(route::Action::Route(action)) = &route.action else {
        panic!("not a route action")
    };
    assert_eq!(
        action.cluster_specifier,
        Some(route_action::ClusterSpecifier::Cluster(cluster(
            "ns", "svc", 80
        )))
    );
    assert_eq!(action.timeout, None);
}

#[test]
fn listener_and_route_exist_without_services() {
    let r = run(&World::default());
    assert_eq!(r.listeners.len(), 1);
    assert_eq!(r.listeners[0].name, names::MESH_LISTENER);
    assert_eq!(r.routes.len(), 1);
    assert_eq!(r.routes[0].name, names::MESH_ROUTE);
    assert!(r.clusters.is_empty() && r.load_assignments.is_empty());
}

#[test]
fn options_reach_the_output() {
    let options = Options {
        mesh_listener_address: "::".to_string(),
        mesh_listener_port: 10000,
        cluster_domain: "example.internal".to_string(),
        connect_timeout: std::time::Duration::from_millis(1500),
        ..Options::default()
    };
    let world = mk_one_port_world(vec![]);
    let r = translate(&world, &ProxyGroup::new("gw"), &options);
    let json = crate::json::resources_to_json(&r).expect("renders");
    assert_eq!(
        json["clusters"][0]["name"],
        "outbound|80||svc.ns.svc.example.internal"
    );
    assert_eq!(json["clusters"][0]["connect_timeout"], "1.500s");
    let addr = &json["listeners"][0]["address"]["socket_address"];
    assert_eq!(
        (addr["address"].as_str(), addr["port_value"].as_u64()),
        (Some("::"), Some(10000))
    );
}

#[test]
fn translation_is_deterministic() {
    let services = || {
        vec![
            mk_service("b", "x", vec![mk_port("http", 80)]),
            mk_service("a", "x", vec![mk_port("http", 80), mk_port("grpc", 81)]),
        ]
    };
    let slices = || {
        vec![
            mk_slice(
                "a",
                "x",
                "s1",
                vec![mk_endpoint_port("http", 80)],
                vec![
                    mk_ready("10.0.0.2", Some("z2")),
                    mk_ready("10.0.0.1", Some("z1")),
                ],
            ),
            mk_slice(
                "a",
                "x",
                "s2",
                vec![mk_endpoint_port("http", 80)],
                vec![mk_ready("10.0.0.3", Some("z1"))],
            ),
        ]
    };
    let first = run(&mk_world(services(), slices()));
    assert_eq!(first, run(&mk_world(services(), slices())));
    let mut reversed = slices();
    reversed.reverse();
    for s in &mut reversed {
        s.subsets[0].endpoints.reverse();
    }
    let mut services = services();
    services.reverse();
    assert_eq!(first, run(&mk_world(services, reversed)));
}

#[test]
fn proxy_group_defaults_to_default() {
    assert_eq!(ProxyGroup::new("").name, "default");
    assert_eq!(ProxyGroup::new("edge").name, "edge");
}

/// A mesh of 10,000 services and 100,000 endpoints. Not timed here (no timing assertions);
/// run `cargo test --release -p portolan-translate -- --ignored --nocapture large_mesh` to see.
#[test]
#[ignore = "large; run by hand in release"]
fn large_mesh() {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for i in 0..10_000u32 {
        let (ns, name) = (format!("ns{}", i % 100), format!("svc{}", i / 100));
        services.push(mk_service(&ns, &name, vec![mk_port("http", 80)]));
        let endpoints = (0..10u32)
            .map(|j| {
                let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i * 16 + j).to_string();
                mk_ready(&ip, Some(["a", "b", "c"][(j % 3) as usize]))
            })
            .collect();
        slices.push(mk_slice(
            &ns,
            &name,
            "s",
            vec![mk_endpoint_port("http", 8080)],
            endpoints,
        ));
    }
    let world = mk_world(services, slices);
    let start = std::time::Instant::now();
    let r = run(&world);
    println!("translated in {:?}", start.elapsed());
    assert_eq!(r.clusters.len(), 10_000);
    let endpoints: usize = r
        .load_assignments
        .iter()
        .flat_map(|c| &c.endpoints)
        .map(|l| l.lb_endpoints.len())
        .sum();
    assert_eq!(endpoints, 100_000);
}

#[test]
fn group_keys_carry_cluster_zone_and_labels() {
    let g = group_of("web;zone=zone-a;l.app=a%3Bb%3Dc;l.version=v1");
    assert_eq!(g.name, "web;zone=zone-a;l.app=a%3Bb%3Dc;l.version=v1");
    assert_eq!(g.cluster, "web");
    assert_eq!(g.zone.as_deref(), Some("zone-a"));
    assert_eq!(g.labels.get("app").map(String::as_str), Some("a;b=c"));
    assert_eq!(g.labels.get("version").map(String::as_str), Some("v1"));
    assert_eq!(group_of("edge"), ProxyGroup::new("edge"));
}

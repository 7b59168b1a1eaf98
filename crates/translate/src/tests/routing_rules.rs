//! Rules of route and policy translation on the mesh.

use super::*;
use envoy_types::pb::envoy::config::route::v3::{
    Route, VirtualHost, route, route_action::ClusterSpecifier,
};

fn vhost<'r>(r: &'r Resources, name: &str) -> &'r VirtualHost {
    r.routes[0]
        .virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no virtual host {name}"))
}

/// The clusters (with weights) a route sends to.
fn targets(route: &Route) -> Vec<(String, u32)> {
    let Some(route::Action::Route(action)) = &route.action else {
        panic!("not a route action: {route:?}")
    };
    match &action.cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) => vec![(c.clone(), 1)],
        Some(ClusterSpecifier::WeightedClusters(w)) => w
            .clusters
            .iter()
            .map(|c| (c.name.clone(), c.weight.as_ref().map_or(0, |w| w.value)))
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
}

fn cla_addresses(r: &Resources, cluster: &str) -> Vec<String> {
    let cla = r
        .load_assignments
        .iter()
        .find(|c| c.cluster_name == cluster)
        .unwrap_or_else(|| panic!("no assignment for {cluster}"));
    let json = crate::json::message_to_json(cla).expect("renders");
    let mut out = Vec::new();
    for locality in json["endpoints"].as_array().into_iter().flatten() {
        for ep in locality["lb_endpoints"].as_array().into_iter().flatten() {
            let sa = &ep["endpoint"]["address"]["socket_address"];
            out.push(format!(
                "{}:{}",
                sa["address"].as_str().unwrap_or("?"),
                sa["port_value"]
            ));
        }
    }
    out
}

fn versions_policy(subsets: &[&str]) -> DestinationPolicy {
    DestinationPolicy {
        subsets: subsets
            .iter()
            .map(|v| mk_subset(v, &[("version", v)]))
            .collect(),
        ..mk_policy("default", "reviews", "reviews")
    }
}

#[test]
fn subset_clusters_hold_only_the_endpoints_with_their_labels() {
    let mut both = versions_policy(&["v1", "v2"]);
    both.subsets.push(mk_subset(
        "v2-reviews",
        &[("version", "v2"), ("app", "reviews")],
    ));
    both.subsets.push(mk_subset("none", &[("version", "v9")]));
    let world = with(
        mk_reviews_world(),
        Extra {
            policies: vec![both],
            ..Default::default()
        },
    );
    let r = run(&world);
    let c = |subset: &str| format!("outbound|9080|{subset}|reviews.default.svc.cluster.local");
    assert_eq!(cla_addresses(&r, &c("v1")), ["10.0.0.1:9080"]);
    assert_eq!(cla_addresses(&r, &c("v2")), ["10.0.0.2:9080"]);
    assert_eq!(cla_addresses(&r, &c("v2-reviews")), ["10.0.0.2:9080"]);
    assert!(cla_addresses(&r, &c("none")).is_empty());
    assert_eq!(
        cla_addresses(&r, "outbound|9080||reviews.default.svc.cluster.local").len(),
        3
    );
    let subset = r.clusters.iter().find(|x| x.name == c("v1")).expect("v1");
    let eds = subset.eds_cluster_config.as_ref().expect("eds");
    assert_eq!(eds.service_name, c("v1"));
}

#[test]
fn route_replaces_the_default_virtual_host_of_its_service_only() {
    let mut world = mk_reviews_world();
    for svc in [
        mk_service("default", "ratings", vec![mk_port("http", 80)]),
        mk_service(
            "default",
            "multi",
            vec![mk_port("http", 80), mk_port("admin", 9000)],
        ),
    ] {
        world.services.insert(svc.key.clone(), Arc::new(svc));
    }
    let route = mk_route(
        "default",
        "multi",
        &["multi"],
        vec![mk_rule(
            vec![],
            HttpAction::DirectResponse {
                status: 418,
                body: None,
            },
        )],
    );
    let r = run(&with(
        world,
        Extra {
            routes: vec![route],
            ..Default::default()
        },
    ));
    for port in [80, 9000] {
        let vh = vhost(&r, &format!("multi.default:{port}"));
        assert_eq!(vh.routes.len(), 1);
        assert!(matches!(
            &vh.routes[0].action,
            Some(route::Action::DirectResponse(d)) if d.status == 418
        ));
    }
    assert_eq!(
        targets(&vhost(&r, "ratings.default:80").routes[0]),
        [(
            "outbound|80||ratings.default.svc.cluster.local".to_string(),
            1
        )]
    );
}

#[test]
fn destination_without_port_takes_the_virtual_host_port_of_the_same_service() {
    let world = with(
        mk_world(
            vec![mk_service(
                "default",
                "multi",
                vec![mk_port("http", 80), mk_port("alt", 8080)],
            )],
            vec![],
        ),
        Extra {
            routes: vec![mk_route(
                "default",
                "multi",
                &["multi"],
                vec![mk_rule(
                    vec![],
                    mk_forward(vec![mk_backend("multi", None, None, 1)]),
                )],
            )],
            ..Default::default()
        },
    );
    let r = run(&world);
    for port in [80, 8080] {
        let vh = vhost(&r, &format!("multi.default:{port}"));
        assert_eq!(
            targets(&vh.routes[0]),
            [(
                format!("outbound|{port}||multi.default.svc.cluster.local"),
                1
            )]
        );
    }
}

#[test]
fn unresolved_backends_go_to_a_cluster_that_does_not_exist() {
    let mut world = mk_reviews_world();
    let multi = mk_service(
        "default",
        "multi",
        vec![mk_port("http", 80), mk_port("alt", 8080)],
    );
    world.services.insert(multi.key.clone(), Arc::new(multi));
    let route = mk_route(
        "default",
        "reviews",
        &["reviews"],
        vec![mk_rule(
            vec![],
            mk_forward(vec![
                mk_backend("reviews", None, Some("v1"), 1),
                mk_backend("nope", Some(80), None, 1),
                mk_backend("reviews", Some(1234), None, 1),
                mk_backend("multi", None, None, 1),
                mk_backend("reviews", None, Some("v9"), 1),
            ]),
        )],
    );
    let r = run(&with(
        world,
        Extra {
            routes: vec![route],
            policies: vec![versions_policy(&["v1"])],
            ..Default::default()
        },
    ));
    let got = targets(&vhost(&r, "reviews.default:9080").routes[0]);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "outbound|9080|v1|reviews.default.svc.cluster.local",
            "unresolved|nope|80|",
            "unresolved|reviews|1234|",
            "unresolved|multi||",
            "unresolved|reviews||v9",
        ]
    );
    let existing: Vec<&str> = r.clusters.iter().map(|c| c.name.as_str()).collect();
    assert!(existing.contains(&names[0]));
    for missing in &names[1..] {
        assert!(!existing.contains(missing), "{missing} exists");
    }
    assert_eq!(
        r.routes[0].validate_clusters.as_ref().map(|b| b.value),
        Some(false)
    );
}

#[test]
fn route_hosts_that_resolve_to_nothing_are_ignored_and_first_route_wins() {
    let direct = |status| HttpAction::DirectResponse { status, body: None };
    let first = mk_route(
        "default",
        "a",
        &["nothing.example.org", "reviews"],
        vec![mk_rule(vec![], direct(201))],
    );
    let second = mk_route(
        "default",
        "b",
        &["reviews.default.svc.cluster.local"],
        vec![mk_rule(vec![], direct(202))],
    );
    let r = run(&with(
        mk_reviews_world(),
        Extra {
            routes: vec![second, first],
            ..Default::default()
        },
    ));
    let vh = vhost(&r, "reviews.default:9080");
    assert!(matches!(
        &vh.routes[0].action,
        Some(route::Action::DirectResponse(d)) if d.status == 201
    ));
    let all: Vec<&str> = r.routes[0]
        .virtual_hosts
        .iter()
        .flat_map(|v| &v.domains)
        .map(String::as_str)
        .collect();
    assert!(!all.iter().any(|d| d.contains("nothing")));
}

#[test]
fn several_matches_give_several_routes_with_the_same_action() {
    let m = |p: &str| HttpMatch {
        path: Some(portolan_model::routing::PathMatch::Prefix(p.to_string())),
        ..Default::default()
    };
    let route = mk_route(
        "default",
        "reviews",
        &["reviews"],
        vec![mk_rule(
            vec![m("/a"), m("/b")],
            mk_forward(vec![mk_backend("reviews", None, None, 1)]),
        )],
    );
    let r = run(&with(
        mk_reviews_world(),
        Extra {
            routes: vec![route],
            ..Default::default()
        },
    ));
    let vh = vhost(&r, "reviews.default:9080");
    assert_eq!(vh.routes.len(), 2);
    assert_eq!(vh.routes[0].action, vh.routes[1].action);
    assert_ne!(vh.routes[0].r#match, vh.routes[1].r#match);
    assert_eq!(vh.routes[0].name, "default/reviews/0");
}

#[test]
fn port_specific_policy_beats_port_less_one() {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
    use portolan_model::policy::{LbAlgorithm, LoadBalancer};
    let lb = |algorithm| {
        Some(LoadBalancer {
            algorithm,
            ..Default::default()
        })
    };
    let world = with(
        mk_world(
            vec![mk_service(
                "default",
                "multi",
                vec![mk_port("http", 80), mk_port("alt", 8080)],
            )],
            vec![],
        ),
        Extra {
            policies: vec![
                DestinationPolicy {
                    load_balancer: lb(LbAlgorithm::Random),
                    ..mk_policy("default", "a-all", "multi")
                },
                DestinationPolicy {
                    port: Some(8080),
                    load_balancer: lb(LbAlgorithm::LeastRequest),
                    ..mk_policy("default", "z-alt", "multi.default")
                },
            ],
            ..Default::default()
        },
    );
    let r = run(&world);
    let lb_of = |port: u16| {
        let name = format!("outbound|{port}||multi.default.svc.cluster.local");
        r.clusters
            .iter()
            .find(|c| c.name == name)
            .expect("cluster")
            .lb_policy
    };
    assert_eq!(lb_of(80), LbPolicy::Random as i32);
    assert_eq!(lb_of(8080), LbPolicy::LeastRequest as i32);
}

#[test]
fn external_http_ports_get_virtual_hosts_and_other_ports_clusters_only() {
    let ext = mk_external(
        "default",
        "ext",
        &["api.example.com"],
        vec![
            mk_external_port("alt", 8080, ExternalProtocol::Http),
            mk_external_port("https", 443, ExternalProtocol::Https),
            mk_external_port("db", 5432, ExternalProtocol::Tcp),
        ],
        Resolution::Dns,
        vec![],
    );
    let r = run(&with(
        World::default(),
        Extra {
            externals: vec![ext],
            ..Default::default()
        },
    ));
    let clusters: Vec<&str> = r.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        clusters,
        [
            "outbound|443||api.example.com",
            "outbound|5432||api.example.com",
            "outbound|8080||api.example.com",
        ]
    );
    let vhosts: Vec<_> = r.routes[0]
        .virtual_hosts
        .iter()
        .map(|v| (v.name.as_str(), v.domains.clone()))
        .collect();
    // 8080 is the first port, so it is the default one (no port 80).
    assert_eq!(
        vhosts,
        [(
            "api.example.com:8080",
            vec![
                "api.example.com".to_string(),
                "api.example.com:8080".to_string()
            ]
        )]
    );
    assert!(
        r.load_assignments.is_empty(),
        "external clusters carry their endpoints"
    );
}

#[test]
fn locality_aware_policy_puts_the_proxys_zone_first() {
    let world = mk_world(
        vec![mk_service("default", "web", vec![mk_port("http", 80)])],
        vec![mk_slice(
            "default",
            "web",
            "web-1",
            vec![mk_endpoint_port("http", 8080)],
            vec![
                mk_ready("10.0.0.1", Some("zone-a")),
                mk_ready("10.0.0.2", Some("zone-b")),
            ],
        )],
    );
    let mut policy = mk_policy("default", "web", "web");
    policy.load_balancer = Some(portolan_model::policy::LoadBalancer {
        locality_aware: true,
        ..Default::default()
    });
    let world = with(
        world,
        Extra {
            policies: vec![policy],
            ..Default::default()
        },
    );
    let priorities = |r: &Resources| -> Vec<(String, u32)> {
        r.load_assignments[0]
            .endpoints
            .iter()
            .map(|g| {
                let zone = g.locality.as_ref().map(|l| l.zone.clone());
                (zone.unwrap_or_default(), g.priority)
            })
            .collect()
    };
    let in_b = run_group(&world, "web;zone=zone-b");
    assert_eq!(
        priorities(&in_b),
        [("zone-a".to_string(), 1), ("zone-b".to_string(), 0)]
    );
    // Without a zone the proxy gets one priority.
    let anywhere = run_group(&world, "web");
    assert_eq!(
        priorities(&anywhere),
        [("zone-a".to_string(), 0), ("zone-b".to_string(), 0)]
    );
}

/// Backends with header edits of their own (Gateway API per-backendRef filters) stay one
/// weighted cluster each, even the same cluster twice or a single backend, each with its
/// edits; rules with several mirrors mirror to each.
#[test]
fn backend_header_edits_ride_on_weighted_clusters_and_every_mirror_is_kept() {
    use portolan_model::routing::{BackendHeaders, HeaderOps, Mirror};
    let edits = |value: &str| BackendHeaders {
        request: HeaderOps {
            set: [("backend".to_string(), value.to_string())].into(),
            ..Default::default()
        },
        response: HeaderOps {
            remove: vec!["server".to_string()],
            ..Default::default()
        },
    };
    let mut a = mk_backend("reviews", None, None, 3);
    a.headers = edits("a");
    let mut b = mk_backend("reviews", None, None, 1);
    b.headers = edits("b");
    let mut only = mk_backend("reviews", None, None, 1);
    only.headers = edits("only");
    let mut mirrored = mk_rule(vec![], mk_forward(vec![a, b]));
    mirrored.mirrors = vec![
        Mirror {
            destination: mk_dest("reviews", None, Some("v2")),
            percent: 100.0,
        },
        Mirror {
            destination: mk_dest("reviews", None, Some("v3")),
            percent: 35.0,
        },
    ];
    let mut world = with(
        mk_reviews_world(),
        Extra {
            routes: vec![mk_route("default", "reviews", &["reviews"], vec![mirrored])],
            policies: vec![versions_policy(&["v2", "v3"])],
            ..Default::default()
        },
    );
    let r = run(&world);
    let route = &vhost(&r, "reviews.default:9080").routes[0];
    let Some(route::Action::Route(action)) = &route.action else {
        panic!("not a route action: {route:?}")
    };
    let Some(ClusterSpecifier::WeightedClusters(w)) = &action.cluster_specifier else {
        panic!("weighted clusters expected: {action:?}")
    };
    let seen: Vec<_> = w
        .clusters
        .iter()
        .map(|c| {
            (
                c.weight.as_ref().map_or(0, |w| w.value),
                c.request_headers_to_add[0]
                    .header
                    .as_ref()
                    .map(|h| h.value.clone()),
                c.response_headers_to_remove.clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (3, Some("a".to_string()), vec!["server".to_string()]),
            (1, Some("b".to_string()), vec!["server".to_string()]),
        ]
    );
    let mirrors: Vec<_> = action
        .request_mirror_policies
        .iter()
        .map(|m| {
            (
                m.cluster.clone(),
                m.runtime_fraction
                    .as_ref()
                    .and_then(|f| f.default_value.as_ref())
                    .map(|f| f.numerator),
            )
        })
        .collect();
    assert_eq!(
        mirrors,
        [
            (
                "outbound|9080|v2|reviews.default.svc.cluster.local".to_string(),
                Some(1_000_000)
            ),
            (
                "outbound|9080|v3|reviews.default.svc.cluster.local".to_string(),
                Some(350_000)
            ),
        ]
    );

    // A single backend with edits is still a weighted cluster (of one).
    world = with(
        mk_reviews_world(),
        Extra {
            routes: vec![mk_route(
                "default",
                "reviews",
                &["reviews"],
                vec![mk_rule(vec![], mk_forward(vec![only]))],
            )],
            ..Default::default()
        },
    );
    let r = run(&world);
    let route = &vhost(&r, "reviews.default:9080").routes[0];
    assert_eq!(
        targets(route),
        [(
            "outbound|9080||reviews.default.svc.cluster.local".to_string(),
            1
        )]
    );
    let Some(route::Action::Route(action)) = &route.action else {
        panic!("not a route action")
    };
    assert!(matches!(
        &action.cluster_specifier,
        Some(ClusterSpecifier::WeightedClusters(w)) if w.clusters.len() == 1
    ));
}

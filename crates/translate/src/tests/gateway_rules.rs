//! Rules of gateway translation.

use super::golden_routing::mk_gateway_world;
use super::*;
use envoy_types::pb::envoy::config::listener::v3::Listener;

fn listener_names(r: &Resources) -> Vec<&str> {
    r.listeners.iter().map(|l| l.name.as_str()).collect()
}

fn domains(r: &Resources, route_config: &str) -> Vec<String> {
    let rc = r
        .routes
        .iter()
        .find(|c| c.name == route_config)
        .unwrap_or_else(|| panic!("no route config {route_config}"));
    rc.virtual_hosts
        .iter()
        .flat_map(|v| v.domains.clone())
        .collect()
}

fn listener<'r>(r: &'r Resources, name: &str) -> &'r Listener {
    r.listeners
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no listener {name}"))
}

#[test]
fn selected_group_gets_gateway_listeners_instead_of_the_mesh_listener() {
    let world = mk_gateway_world();
    let gw = run_group(&world, "ingress");
    let mesh = run_group(&world, "sidecars");
    assert_eq!(
        listener_names(&gw),
        ["gateway-8080", "gateway-8443", "gateway-9000"]
    );
    assert!(!gw.routes.iter().any(|r| r.name == crate::names::MESH_ROUTE));
    assert_eq!(listener_names(&mesh), [crate::names::MESH_LISTENER]);
    assert_eq!(gw.clusters, mesh.clusters);
    assert_eq!(gw.load_assignments, mesh.load_assignments);
}

#[test]
fn listener_hostnames_filter_route_hosts_with_wildcards() {
    let r = run_group(&mk_gateway_world(), "ingress");
    // *.example.com on 8080 allows shop.example.com and api.example.com, not shop.other.org.
    assert_eq!(
        domains(&r, "gateway-8080"),
        [
            "api.example.com",
            "api.example.com:8080",
            "shop.example.com",
            "shop.example.com:8080"
        ]
    );
    assert_eq!(
        domains(&r, "gateway-8443"),
        [
            "api.example.com",
            "api.example.com:8443",
            "shop.example.com",
            "shop.example.com:8443"
        ]
    );
}

#[test]
fn https_listeners_sharing_a_port_match_on_sni_and_missing_secrets_are_skipped() {
    let r = run_group(&mk_gateway_world(), "ingress");
    let l = listener(&r, "gateway-8443");
    let server_names: Vec<Vec<String>> = l
        .filter_chains
        .iter()
        .map(|c| {
            c.filter_chain_match
                .as_ref()
                .map(|m| m.server_names.clone())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        server_names,
        [
            vec!["shop.example.com".to_string()],
            vec![
                "*.api.example.com".to_string(),
                "api.example.com".to_string()
            ],
        ]
    );
    assert!(l.filter_chains.iter().all(|c| c.transport_socket.is_some()));
    assert!(!listener_names(&r).contains(&"gateway-9443"));
}

#[test]
fn listeners_of_several_gateways_merge_per_port() {
    let world = mk_gateway_world();
    let mut second = mk_gateway(
        "other",
        "second",
        "ingress",
        vec![
            mk_listener("web", 8080, ListenerProtocol::Http, &[], None),
            // Another protocol on a taken port: dropped.
            mk_listener("raw", 8443, ListenerProtocol::Tcp, &[], None),
            mk_listener("plain", 7070, ListenerProtocol::Http, &["*.local"], None),
        ],
    );
    second
        .selector
        .metadata
        .insert("tier".to_string(), "edge".to_string());
    let mut route = mk_route(
        "other",
        "web",
        &["web.internal", "a.local"],
        vec![mk_rule(
            vec![],
            HttpAction::DirectResponse {
                status: 200,
                body: None,
            },
        )],
    );
    route.parents = vec![mk_gateway_parent("other", "second")];
    let world = with(
        world,
        Extra {
            routes: vec![route],
            gateways: vec![second],
            ..Default::default()
        },
    );
    // The second gateway also wants the label tier=edge: a group without it gets only the first.
    let unlabeled = run_group(&world, "ingress");
    assert!(!listener_names(&unlabeled).contains(&"gateway-7070"));
    let r = run_group(&world, "ingress;zone=z1;l.tier=edge");
    assert_eq!(
        listener_names(&r),
        [
            "gateway-7070",
            "gateway-8080",
            "gateway-8443",
            "gateway-9000"
        ]
    );
    let d8080 = domains(&r, "gateway-8080");
    assert!(d8080.contains(&"web.internal:8080".to_string()));
    assert!(d8080.contains(&"shop.example.com".to_string()));
    assert_eq!(domains(&r, "gateway-7070"), ["a.local", "a.local:7070"]);
    // The 8443 listener is still TLS only.
    assert!(
        listener(&r, "gateway-8443")
            .filter_chains
            .iter()
            .all(|c| c.transport_socket.is_some())
    );
}

#[test]
fn gateway_without_routes_still_has_listeners_and_an_empty_route_configuration() {
    let gateway = mk_gateway(
        "edge",
        "bare",
        "edge",
        vec![
            mk_listener("http", 80, ListenerProtocol::Http, &[], None),
            mk_listener("tcp", 5000, ListenerProtocol::Tcp, &[], None),
        ],
    );
    let r = run_group(
        &with(
            World::default(),
            Extra {
                gateways: vec![gateway],
                ..Default::default()
            },
        ),
        "edge",
    );
    assert_eq!(listener_names(&r), ["gateway-5000", "gateway-80"]);
    assert_eq!(r.routes.len(), 1);
    assert!(r.routes[0].virtual_hosts.is_empty());
    let json = crate::json::message_to_json(listener(&r, "gateway-5000")).expect("renders");
    let proxy = &json["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(proxy["cluster"], "unrouted|gateway-5000");
}

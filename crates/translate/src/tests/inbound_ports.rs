//! Per-port inbound: every port a Service of the workload's service account targets gets its
//! own filter chains on the inbound listener (matched by the restored original destination
//! port), its own `inbound|PORT` cluster (HTTP/2 for gRPC and h2c ports), its own route
//! configurations (with the AccessPolicy rules for that port) or, for TCP ports, a TCP proxy
//! behind network RBAC; the application port keeps the `inbound` / `inbound-plaintext` route
//! configurations it had before, its chains matching its own port and the listener's. Any
//! other captured port passes through to the application on that port (`inbound|passthrough`,
//! ORIGINAL_DST rewritten to 127.0.0.1), in the same mTLS mode, behind network RBAC.

use super::*;
use crate::cluster::HTTP_PROTOCOL_OPTIONS;
use crate::json::message_to_json;
use portolan_model::security::{
    AccessAction, AccessPolicy, AccessRule, MtlsMode, Operation, Peer, PeerAuthentication,
    SERVICE_ACCOUNT_LABEL,
};
use serde_json::Value;

/// The `web` workload of `shop`: application port 8080 (TCP when `tcp`), inbound port 15006.
fn web_group(tcp: bool) -> String {
    let proto = if tcp { ";proto=tcp" } else { "" };
    format!("web;l.app=web;ns=shop;sa=web;app=8080;in=15006{proto}")
}

fn in_mesh(mut svc: Service, account: &str) -> Service {
    svc.labels = [(SERVICE_ACCOUNT_LABEL.to_string(), account.to_string())].into();
    svc
}

/// `web` (HTTP 80 to 8080, gRPC 7070 to 9090), `db` (a `tcp-` port 5432 without a target
/// port, so to 5432), both of service account `web`; `other` (port 81 to 8081) of another
/// account.
fn multi_port_world() -> World {
    let web = mk_service(
        "shop",
        "web",
        vec![
            mk_target_port("http", 80, 8080),
            ServicePort {
                target_port: Some(portolan_model::TargetPort::Number(9090)),
                ..mk_app_port("api", 7070, "grpc")
            },
        ],
    );
    let db = mk_service("shop", "db", vec![mk_port("tcp-db", 5432)]);
    let other = mk_service("shop", "other", vec![mk_target_port("http", 81, 8081)]);
    mk_world(
        vec![
            in_mesh(web, "web"),
            in_mesh(db, "web"),
            in_mesh(other, "other"),
        ],
        vec![],
    )
}

fn set_mode(world: &mut World, mode: MtlsMode) {
    let p = PeerAuthentication {
        source: ObjectRef::new(Kind::PeerAuthentication, "shop", "mode"),
        generation: 1,
        selector: None,
        mode,
    };
    world
        .peer_authentications
        .insert(p.source.clone(), Arc::new(p));
}

fn inbound(resources: &Resources) -> Value {
    let l = resources
        .listeners
        .iter()
        .find(|l| l.name == "inbound")
        .expect("an inbound listener");
    message_to_json(l).expect("renders")
}

fn json_of<T: prost::Message + prost::Name>(
    items: &[T],
    name: impl Fn(&T) -> &str,
    want: &str,
) -> Value {
    let item = items
        .iter()
        .find(|i| name(i) == want)
        .unwrap_or_else(|| panic!("no {want}"));
    message_to_json(item).expect("renders")
}

fn cluster(resources: &Resources, name: &str) -> Value {
    json_of(&resources.clusters, |c| &c.name, name)
}

fn route(resources: &Resources, name: &str) -> Value {
    json_of(&resources.routes, |r| &r.name, name)
}

/// The chains matching destination port `port` (`None`: the port-less ones), as
/// (transport protocol, whether it terminates TLS, its first filter's name).
fn chains_of(listener: &Value, port: Option<u64>) -> Vec<Value> {
    listener["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["filter_chain_match"]["destination_port"].as_u64() == port)
        .cloned()
        .collect()
}

fn rds(chain: &Value) -> &str {
    chain["filters"][0]["typed_config"]["rds"]["route_config_name"]
        .as_str()
        .unwrap_or_default()
}

fn route_cluster(route: &Value) -> &str {
    route["virtual_hosts"][0]["routes"][0]["route"]["cluster"]
        .as_str()
        .unwrap_or_default()
}

fn cluster_names(resources: &Resources) -> Vec<&str> {
    let mut names: Vec<&str> = resources
        .clusters
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| n.starts_with("inbound|"))
        .collect();
    names.sort_unstable();
    names
}

#[test]
fn every_targeted_port_gets_its_cluster_and_chains_grpc_over_http2() {
    let mut world = multi_port_world();
    set_mode(&mut world, MtlsMode::Strict);
    let resources = run_group(&world, &web_group(false));
    // Another account's Service adds nothing (8081).
    assert_eq!(
        cluster_names(&resources),
        [
            "inbound|5432",
            "inbound|5432|callers",
            "inbound|5432|from|plaintext",
            "inbound|5432|from|shop/other",
            "inbound|5432|from|shop/web",
            "inbound|8080",
            "inbound|9090",
            "inbound|passthrough"
        ]
    );
    let grpc = cluster(&resources, "inbound|9090");
    let options = &grpc["typed_extension_protocol_options"][HTTP_PROTOCOL_OPTIONS];
    assert!(
        options["explicit_http_config"]
            .get("http2_protocol_options")
            .is_some(),
        "{grpc}"
    );
    let endpoint = &grpc["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"];
    assert_eq!(endpoint["address"]["socket_address"]["port_value"], 9090);
    for plain in ["inbound|8080", "inbound|5432"] {
        let c = cluster(&resources, plain);
        assert!(c.get("typed_extension_protocol_options").is_none(), "{c}");
    }

    let listener = inbound(&resources);
    assert_eq!(
        listener["listener_filters"][0]["name"], "envoy.filters.listener.original_dst",
        "the captured connection's port is restored: {listener}"
    );
    // STRICT: a TLS chain per port, then a plaintext one that refuses (HTTP: over the
    // refusing plaintext route configuration; TCP: network RBAC refusing everything).
    for port in [8080, 15006] {
        let app = chains_of(&listener, Some(port));
        assert_eq!(app.len(), 2, "{listener}");
        assert_eq!(rds(&app[0]), "inbound");
        assert_eq!(rds(&app[1]), "inbound-plaintext");
    }
    let grpc_chains = chains_of(&listener, Some(9090));
    assert_eq!(grpc_chains.len(), 2, "{listener}");
    assert_eq!(rds(&grpc_chains[0]), "inbound:9090");
    assert!(grpc_chains[0].get("transport_socket").is_some());
    assert!(grpc_chains[1].get("transport_socket").is_none());
    let tcp = chains_of(&listener, Some(5432));
    assert_eq!(tcp.len(), 2, "{listener}");
    assert!(tcp[0].get("transport_socket").is_some());
    assert_eq!(tcp[1]["filters"][0]["name"], crate::rbac::NETWORK_RBAC);
    let last = tcp[0]["filters"]
        .as_array()
        .and_then(|f| f.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        last["name"], "envoy.filters.network.tcp_proxy",
        "{listener}"
    );
    assert_eq!(last["typed_config"]["cluster"], "inbound|5432|callers");
    assert!(chains_of(&listener, Some(8081)).is_empty());

    assert_eq!(
        route_cluster(&route(&resources, "inbound:9090")),
        "inbound|9090"
    );
    assert_eq!(route_cluster(&route(&resources, "inbound")), "inbound|8080");
    // STRICT refuses plaintext on every HTTP port, over RDS.
    let refused = route(&resources, "inbound-plaintext:9090");
    assert_eq!(
        refused["virtual_hosts"][0]["routes"][0]["direct_response"]["status"], 403,
        "{refused}"
    );
    assert!(
        resources.routes.iter().all(|r| !r.name.ends_with(":5432")),
        "a TCP port has no route configuration"
    );
}

#[test]
fn permissive_gives_every_port_a_tls_and_a_plaintext_chain() {
    let mut world = multi_port_world();
    set_mode(&mut world, MtlsMode::Permissive);
    let resources = run_group(&world, &web_group(false));
    let listener = inbound(&resources);
    let names = listener_filter_names(&listener);
    assert_eq!(
        names,
        [
            "envoy.filters.listener.original_dst",
            "envoy.filters.listener.tls_inspector"
        ]
    );
    for port in [None, Some(9090), Some(5432)] {
        let chains = chains_of(&listener, port);
        let transports: Vec<&str> = chains
            .iter()
            .map(|c| {
                c["filter_chain_match"]["transport_protocol"]
                    .as_str()
                    .unwrap_or("")
            })
            .collect();
        assert_eq!(
            transports,
            ["tls", "raw_buffer"],
            "port {port:?}: {listener}"
        );
        assert!(chains[0].get("transport_socket").is_some());
        assert!(chains[1].get("transport_socket").is_none());
    }
    let grpc = chains_of(&listener, Some(9090));
    assert_eq!(rds(&grpc[1]), "inbound-plaintext:9090");
    let plain = route(&resources, "inbound-plaintext:9090");
    assert_eq!(route_cluster(&plain), "inbound|9090", "{plain}");
    // DISABLE: plaintext only, on every port.
    set_mode(&mut world, MtlsMode::Disable);
    let listener = inbound(&run_group(&world, &web_group(false)));
    for port in [None, Some(9090), Some(5432)] {
        let chains = chains_of(&listener, port);
        assert_eq!(chains.len(), 1, "{listener}");
        assert!(chains[0].get("transport_socket").is_none());
    }
}

#[test]
fn access_policy_ports_apply_to_their_own_port_only() {
    let mut world = multi_port_world();
    let p = AccessPolicy {
        source: ObjectRef::new(Kind::AccessPolicy, "shop", "grpc-only"),
        generation: 1,
        selector: None,
        action: AccessAction::Allow,
        rules: vec![AccessRule {
            from: Some(vec![Peer::Namespace("ops".into())]),
            to: Some(Operation {
                ports: vec![9090],
                ..Default::default()
            }),
            ..Default::default()
        }],
    };
    world.access_policies.insert(p.source.clone(), Arc::new(p));
    let resources = run_group(&world, &web_group(false));
    let allow = |name: &str| {
        route(&resources, name)["virtual_hosts"][0]["typed_per_filter_config"]
            [crate::rbac::HTTP_RBAC_ALLOW]["rbac"]["rules"]
            .clone()
    };
    // On 9090 the rule allows namespace `ops`; on 8080 it cannot match: default-deny.
    assert!(allow("inbound:9090")["policies"]["allow"].is_object());
    assert!(allow("inbound-plaintext:9090")["policies"]["allow"].is_object());
    assert!(
        allow("inbound").get("policies").is_none(),
        "{}",
        allow("inbound")
    );
    // The TCP port: network RBAC for callers it does not know, and no rule for it either;
    // the known callers' checks refuse them all.
    let callers = json_of(&resources.listeners, |l| &l.name, "inbound|5432|callers");
    let others = callers["filter_chains"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "others"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(others["filters"][0]["name"], crate::rbac::NETWORK_RBAC);
    assert!(
        others["filters"][0]["typed_config"]["rules"]
            .get("policies")
            .is_none()
    );
    assert_eq!(check_status(&resources, "/5432/shop/web"), 503);
}

#[test]
fn without_a_service_the_application_port_is_served_as_before() {
    let world = mk_world(vec![], vec![]);
    for tcp in [false, true] {
        let resources = run_group(&world, &web_group(tcp));
        // A TCP port's plaintext check and callers' listener (no known caller: `others` only).
        let expected: &[&str] = match tcp {
            true => &[
                "inbound|8080",
                "inbound|8080|callers",
                "inbound|8080|from|plaintext",
                "inbound|passthrough",
            ],
            false => &["inbound|8080", "inbound|passthrough"],
        };
        assert_eq!(cluster_names(&resources), expected);
        let listener = inbound(&resources);
        // The application port, the listener's (direct calls), then any other port.
        // (PERMISSIVE: a TLS and a plaintext chain for each.)
        let mut ports: Vec<Option<u64>> = listener["filter_chains"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["filter_chain_match"]["destination_port"].as_u64())
            .collect();
        assert_eq!(ports.len(), 6, "{listener}");
        ports.dedup();
        assert_eq!(ports, [Some(8080), Some(15006), None], "{listener}");
        let routes: Vec<&str> = resources
            .routes
            .iter()
            .map(|r| r.name.as_str())
            .filter(|n| n.starts_with("inbound"))
            .collect();
        match tcp {
            // The TCP port's checks only.
            true => assert_eq!(routes, ["inbound-policy"]),
            false => assert_eq!(routes, ["inbound", "inbound-plaintext"]),
        }
    }
}

#[test]
fn the_application_port_follows_its_service_port_unless_the_node_says_tcp() {
    // A gRPC Service port targeting the application port: HTTP/2 to it.
    let svc = mk_service(
        "shop",
        "web",
        vec![ServicePort {
            target_port: Some(portolan_model::TargetPort::Number(8080)),
            ..mk_app_port("grpc", 80, "grpc")
        }],
    );
    let world = mk_world(vec![in_mesh(svc, "web")], vec![]);
    let resources = run_group(&world, &web_group(false));
    let app = cluster(&resources, "inbound|8080");
    assert!(
        app.get("typed_extension_protocol_options").is_some(),
        "{app}"
    );
    // `appProtocol: tcp` on the node wins.
    let resources = run_group(&world, &web_group(true));
    let app = cluster(&resources, "inbound|8080");
    assert!(
        app.get("typed_extension_protocol_options").is_none(),
        "{app}"
    );
    let listener = inbound(&resources);
    let last = listener["filter_chains"][0]["filters"]
        .as_array()
        .and_then(|f| f.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["name"], "envoy.filters.network.tcp_proxy");
}

#[test]
fn the_listener_port_and_named_target_ports_are_not_served() {
    let svc = mk_service(
        "shop",
        "web",
        vec![
            mk_target_port("loop", 99, 15006),
            ServicePort {
                target_port: Some(portolan_model::TargetPort::Name("metrics".into())),
                ..mk_port("metrics", 9100)
            },
        ],
    );
    let world = mk_world(vec![in_mesh(svc, "web")], vec![]);
    let resources = run_group(&world, &web_group(false));
    assert_eq!(
        cluster_names(&resources),
        ["inbound|8080", "inbound|passthrough"]
    );
}

#[test]
fn the_application_ports_chains_come_first() {
    let resources = run_group(&multi_port_world(), &web_group(false));
    let listener = inbound(&resources);
    let first = &listener["filter_chains"][0];
    assert_eq!(
        first["filter_chain_match"]["destination_port"], 8080,
        "{listener}"
    );
    assert_eq!(rds(first), "inbound");
}

/// The passthrough chains of a listener (named `passthrough:...`), as (name, destination
/// port).
fn passthrough_chains(listener: &Value) -> Vec<(String, Option<u64>)> {
    listener["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("passthrough:"))
        })
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["filter_chain_match"]["destination_port"].as_u64(),
            )
        })
        .collect()
}

#[test]
fn undeclared_ports_pass_through_to_the_application_on_their_own_port() {
    let mut world = multi_port_world();
    set_mode(&mut world, MtlsMode::Strict);
    let resources = run_group(&world, &web_group(false));
    let listener = inbound(&resources);
    // STRICT: a TLS chain for every port no other chain matches, then its refusing
    // plaintext chain, last.
    let chains = listener["filter_chains"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let refusing = chains.last().cloned().unwrap_or_default();
    assert_eq!(refusing["name"], "passthrough:plaintext", "{listener}");
    assert_eq!(refusing["filters"][0]["name"], crate::rbac::NETWORK_RBAC);
    let last = chains.iter().rev().nth(1).cloned().unwrap_or_default();
    assert_eq!(last["name"], "passthrough:tls", "{listener}");
    assert_eq!(
        last["filter_chain_match"]["transport_protocol"], "tls",
        "{listener}"
    );
    assert!(last["filter_chain_match"].get("destination_port").is_none());
    assert!(last.get("transport_socket").is_some(), "mutual TLS: {last}");
    let filters: Vec<&str> = last["filters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(
        filters,
        [
            "envoy.filters.network.set_filter_state",
            "envoy.filters.network.tcp_proxy"
        ]
    );
    // The address the ORIGINAL_DST cluster connects to: loopback, the original port (the
    // pod IP would be captured again).
    let state = &last["filters"][0]["typed_config"]["on_new_connection"][0];
    assert_eq!(
        state["object_key"],
        "envoy.network.transport_socket.original_dst_address"
    );
    assert_eq!(
        state["format_string"]["text_format_source"]["inline_string"],
        "127.0.0.1:%DOWNSTREAM_LOCAL_PORT%"
    );
    assert_eq!(
        last["filters"][1]["typed_config"]["cluster"],
        "inbound|passthrough"
    );
    let cluster = cluster(&resources, "inbound|passthrough");
    assert_eq!(cluster["type"], "ORIGINAL_DST", "{cluster}");
    assert_eq!(cluster["lb_policy"], "CLUSTER_PROVIDED", "{cluster}");

    // PERMISSIVE: a TLS and a plaintext passthrough chain; DISABLE: plaintext only.
    set_mode(&mut world, MtlsMode::Permissive);
    let listener = inbound(&run_group(&world, &web_group(false)));
    let chains = listener["filter_chains"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let tail: Vec<(&str, &str, bool)> = chains[chains.len() - 2..]
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default(),
                c["filter_chain_match"]["transport_protocol"]
                    .as_str()
                    .unwrap_or_default(),
                c.get("transport_socket").is_some(),
            )
        })
        .collect();
    assert_eq!(
        tail,
        [
            ("passthrough:tls", "tls", true),
            ("passthrough:plaintext", "raw_buffer", false)
        ]
    );
    set_mode(&mut world, MtlsMode::Disable);
    let listener = inbound(&run_group(&world, &web_group(false)));
    assert_eq!(
        passthrough_chains(&listener),
        [("passthrough:plaintext".to_string(), None)]
    );
}

#[test]
fn access_policies_apply_to_passed_through_ports_with_their_port_rules_on_their_ports() {
    let mut world = multi_port_world();
    set_mode(&mut world, MtlsMode::Strict);
    let rule = |ports: Vec<u16>| AccessRule {
        from: Some(vec![Peer::ServiceAccount {
            namespace: "shop".into(),
            name: "front".into(),
        }]),
        to: Some(Operation {
            ports,
            ..Default::default()
        }),
        request_principals: vec![],
        claims: vec![],
    };
    // ALLOW front on every port, and DENY it on 7000 (a port no Service declares) and on 9090
    // (declared: the passthrough makes no chain for it).
    let allow = AccessPolicy {
        source: ObjectRef::new(Kind::AccessPolicy, "shop", "allow"),
        generation: 1,
        selector: None,
        action: AccessAction::Allow,
        rules: vec![rule(vec![])],
    };
    let deny = AccessPolicy {
        source: ObjectRef::new(Kind::AccessPolicy, "shop", "deny"),
        action: AccessAction::Deny,
        rules: vec![rule(vec![7000, 9090])],
        ..allow.clone()
    };
    for p in [allow, deny] {
        world.access_policies.insert(p.source.clone(), Arc::new(p));
    }
    let listener = inbound(&run_group(&world, &web_group(false)));
    assert_eq!(
        passthrough_chains(&listener),
        [
            ("passthrough:tls:7000".to_string(), Some(7000)),
            ("passthrough:plaintext:7000".to_string(), Some(7000)),
            ("passthrough:tls".to_string(), None),
            ("passthrough:plaintext".to_string(), None)
        ]
    );
    let rbac_actions = |port: Option<u64>| -> Vec<String> {
        chains_of(&listener, port)
            .iter()
            .filter(|c| {
                c["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("passthrough:tls"))
            })
            .flat_map(|c| c["filters"].as_array().cloned().unwrap_or_default())
            .filter(|f| f["name"] == "envoy.filters.network.rbac")
            .map(|f| {
                f["typed_config"]["rules"]["action"]
                    .as_str()
                    .unwrap_or("ALLOW")
                    .to_string()
            })
            .collect()
    };
    // Port 7000: the DENY rule, then the ALLOW; any other: the ALLOW only.
    assert_eq!(rbac_actions(Some(7000)), ["DENY", "ALLOW"], "{listener}");
    assert_eq!(rbac_actions(None), ["ALLOW"], "{listener}");
}

/// The TLS chain of TCP port 5432 (STRICT), its filters' names and the TCP proxy's settings.
fn tcp_tls_filters(resources: &Resources) -> Vec<Value> {
    let listener = inbound(resources);
    let chains = chains_of(&listener, Some(5432));
    chains[0]["filters"].as_array().cloned().unwrap_or_default()
}

/// The health check route of `path` in `inbound-policy`: its status.
fn check_status(resources: &Resources, path: &str) -> u64 {
    let routes = route(resources, crate::inbound_tcp::POLICY_ROUTES);
    let all = routes["virtual_hosts"][0]["routes"].as_array().cloned();
    let found = all
        .unwrap_or_default()
        .into_iter()
        .find(|r| r["match"]["path"] == path)
        .unwrap_or_else(|| panic!("no route for {path}: {routes}"));
    found["direct_response"]["status"].as_u64().unwrap_or(0)
}

fn deny_other_on(world: &mut World, ports: Vec<u16>) {
    let p = AccessPolicy {
        source: ObjectRef::new(Kind::AccessPolicy, "shop", "no-other"),
        generation: 1,
        selector: None,
        action: AccessAction::Deny,
        rules: vec![AccessRule {
            from: Some(vec![Peer::ServiceAccount {
                namespace: "shop".into(),
                name: "other".into(),
            }]),
            to: Some(Operation {
                ports,
                ..Default::default()
            }),
            ..Default::default()
        }],
    };
    world.access_policies.insert(p.source.clone(), Arc::new(p));
}

#[test]
fn a_tcp_port_sends_each_known_caller_through_a_health_checked_cluster_of_its_own() {
    let mut world = multi_port_world();
    set_mode(&mut world, MtlsMode::Strict);
    let resources = run_group(&world, &web_group(false));
    // The TLS chain: RBAC (none here), the caller's SPIFFE ID into filter state once the
    // handshake is done, then a TCP proxy connecting only then, to the callers' listener.
    let filters = tcp_tls_filters(&resources);
    let names: Vec<&str> = filters.iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "envoy.filters.network.set_filter_state",
            "envoy.filters.network.tcp_proxy"
        ]
    );
    let state = &filters[0]["typed_config"]["on_downstream_tls_handshake"][0];
    assert_eq!(state["object_key"], crate::inbound_tcp::PEER_KEY);
    assert_eq!(state["shared_with_upstream"], "ONCE");
    let proxy = &filters[1]["typed_config"];
    assert_eq!(proxy["cluster"], "inbound|5432|callers");
    assert_eq!(
        proxy["upstream_connect_mode"],
        "ON_DOWNSTREAM_TLS_HANDSHAKE"
    );

    // The internal listener: one chain per service account the World knows, `others` to the
    // port's plain cluster.
    let callers = json_of(&resources.listeners, |l| &l.name, "inbound|5432|callers");
    assert!(callers.get("internal_listener").is_some(), "{callers}");
    let matchers = &callers["filter_chain_matcher"]["matcher_list"]["matchers"];
    let picked: Vec<(&str, &str)> = matchers
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let single = &m["predicate"]["single_predicate"];
            (
                single["value_match"]["exact"].as_str().unwrap_or_default(),
                m["on_match"]["action"]["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        picked,
        [
            ("spiffe://cluster.local/ns/shop/sa/other", "shop/other"),
            ("spiffe://cluster.local/ns/shop/sa/web", "shop/web")
        ]
    );
    let chain_cluster = |name: &str| {
        let chains = callers["filter_chains"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let chain = chains.into_iter().find(|c| c["name"] == name);
        chain.map(|c| c["filters"][0]["typed_config"]["cluster"].clone())
    };
    assert_eq!(
        chain_cluster("shop/web").unwrap_or_default(),
        "inbound|5432|from|shop/web"
    );
    assert_eq!(chain_cluster("others").unwrap_or_default(), "inbound|5432");
    let internal = cluster(&resources, "inbound|5432|callers");
    assert_eq!(internal["connection_pool_per_downstream_connection"], true);

    // Each caller's cluster: the application's port, closed when its check fails; the check
    // asks the policy listener's abstract socket.
    let web = cluster(&resources, "inbound|5432|from|shop/web");
    assert_eq!(web["close_connections_on_host_health_failure"], true);
    assert_eq!(
        web["health_checks"][0]["http_health_check"]["path"],
        "/5432/shop/web"
    );
    let endpoint = &web["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"];
    assert_eq!(endpoint["address"]["socket_address"]["port_value"], 5432);
    assert_eq!(
        endpoint["health_check_config"]["address"]["pipe"]["path"],
        "@portolan-inbound-policy-15006"
    );
    let policy = json_of(&resources.listeners, |l| &l.name, "inbound-policy");
    assert_eq!(
        policy["address"]["pipe"]["path"],
        "@portolan-inbound-policy-15006"
    );
    // No policy: every caller admitted; plaintext refused (STRICT).
    assert_eq!(check_status(&resources, "/5432/shop/web"), 200);
    assert_eq!(check_status(&resources, "/5432/shop/other"), 200);
    assert_eq!(check_status(&resources, "/5432/plaintext"), 503);
    // HTTP ports are not checked: their policies are per request, over RDS.
    assert!(
        resources
            .clusters
            .iter()
            .all(|c| !c.name.starts_with("inbound|8080|") && !c.name.starts_with("inbound|9090|"))
    );
}

#[test]
fn refusing_a_caller_changes_its_check_and_its_chain_and_nothing_else() {
    let mut world = multi_port_world();
    set_mode(&mut world, MtlsMode::Permissive);
    let before = run_group(&world, &web_group(false));
    assert_eq!(check_status(&before, "/5432/plaintext"), 200);
    deny_other_on(&mut world, vec![5432]);
    let after = run_group(&world, &web_group(false));
    assert_eq!(check_status(&after, "/5432/shop/other"), 503);
    assert_eq!(check_status(&after, "/5432/shop/web"), 200);
    // Plaintext has no identity: a DENY naming one does not refuse it.
    assert_eq!(check_status(&after, "/5432/plaintext"), 200);
    // What the other callers' open connections ride on stays as it was (the same encoding:
    // nothing drained): the port's chains, the callers' listener but for the refused caller's
    // chain (now a refusal) and `others` (network RBAC for unknown callers), the clusters.
    let same = |name: &str| {
        let pick = |r: &Resources| {
            let c = r.clusters.iter().find(|c| c.name == name);
            let l = r.listeners.iter().find(|l| l.name == name).map(|l| {
                let mut l = l.clone();
                l.filter_chains
                    .retain(|c| c.name != "others" && c.name != "shop/other");
                l
            });
            (
                l.map(|l| prost::Message::encode_to_vec(&l)),
                c.map(prost::Message::encode_to_vec),
            )
        };
        assert_eq!(pick(&before), pick(&after), "{name} changed");
    };
    for name in [
        "inbound|5432|callers",
        "inbound|5432|from|shop/other",
        "inbound|5432|from|shop/web",
        "inbound|5432|from|plaintext",
        "inbound|5432",
        "inbound-policy",
    ] {
        same(name);
    }
    assert_eq!(
        chains_of(&inbound(&before), Some(5432)),
        chains_of(&inbound(&after), Some(5432))
    );
    // A rule for another port refuses nobody here.
    let mut world = multi_port_world();
    deny_other_on(&mut world, vec![9090]);
    let elsewhere = run_group(&world, &web_group(false));
    assert_eq!(check_status(&elsewhere, "/5432/shop/other"), 200);
}

#[test]
fn allow_policies_admit_on_a_tcp_port_only_the_callers_their_rules_can_check() {
    let mut world = multi_port_world();
    set_mode(&mut world, MtlsMode::Permissive);
    let p = AccessPolicy {
        source: ObjectRef::new(Kind::AccessPolicy, "shop", "web-only"),
        generation: 1,
        selector: None,
        action: AccessAction::Allow,
        rules: vec![
            AccessRule {
                from: Some(vec![Peer::Principal(
                    "spiffe://cluster.local/ns/shop/sa/web".into(),
                )]),
                ..Default::default()
            },
            // HTTP-only: cannot be checked on TCP, so it allows nobody there.
            AccessRule {
                from: Some(vec![Peer::Namespace("shop".into())]),
                to: Some(Operation {
                    methods: vec!["GET".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
    };
    world.access_policies.insert(p.source.clone(), Arc::new(p));
    let resources = run_group(&world, &web_group(false));
    assert_eq!(check_status(&resources, "/5432/shop/web"), 200);
    assert_eq!(check_status(&resources, "/5432/shop/other"), 503);
    assert_eq!(check_status(&resources, "/5432/plaintext"), 503);
}

#[test]
fn without_connection_checks_a_tcp_port_proxies_straight_to_the_application() {
    let mut world = multi_port_world();
    set_mode(&mut world, MtlsMode::Strict);
    let mut options = Options::default();
    options.mesh.tcp_connection_checks = false;
    let resources = translate(&world, &group_of(&web_group(false)), &options);
    let filters = tcp_tls_filters(&resources);
    assert_eq!(filters.len(), 1, "{filters:?}");
    assert_eq!(filters[0]["typed_config"]["cluster"], "inbound|5432");
    assert!(
        resources
            .listeners
            .iter()
            .all(|l| l.name == "inbound" || !l.name.starts_with("inbound"))
    );
}

#[test]
fn service_accounts_are_known_callers_even_without_a_service() {
    let mut world = multi_port_world();
    let doc = serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "batch-job", "namespace": "jobs"}});
    let resource = portolan_api::Resource::decode(doc)
        .expect("decodes")
        .expect("is read");
    world
        .gateway_api
        .insert(resource.object_ref(), Arc::new(resource));
    let resources = run_group(&world, &web_group(false));
    let cluster = cluster(&resources, "inbound|5432|from|jobs/batch-job");
    assert_eq!(cluster["close_connections_on_host_health_failure"], true);
    assert_eq!(check_status(&resources, "/5432/jobs/batch-job"), 200);
    let callers = json_of(&resources.listeners, |l| &l.name, "inbound|5432|callers");
    assert!(
        callers
            .to_string()
            .contains("spiffe://cluster.local/ns/jobs/sa/batch-job"),
        "{callers}"
    );
}

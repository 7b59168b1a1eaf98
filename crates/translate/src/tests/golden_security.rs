//! Mesh security goldens: the inbound listener per PeerAuthentication mode with the RBAC
//! filters AccessPolicies become, and mutual TLS on outbound mesh clusters. The snapshots
//! are the spec; read them.

use super::*;
use crate::json::message_to_json;
use crate::mesh::{TRUST_BUNDLE_SECRET, WORKLOAD_CERT_SECRET};
use portolan_model::security::{
    AccessAction, AccessPolicy, AccessRule, HeaderCondition, HeaderValue, MtlsMode, Operation,
    PathMatch, Peer, PeerAuthentication, SERVICE_ACCOUNT_LABEL,
};
use std::collections::BTreeMap;

/// Group key of the `web` workload of `shop` (application on 8080, TCP when `tcp`).
fn web_group(tcp: bool) -> String {
    let proto = if tcp { ";proto=tcp" } else { "" };
    format!("web;l.app=web;ns=shop;sa=web;app=8080;in=15006{proto}")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn add_peer_auth(world: &mut World, name: &str, selector: Option<&[(&str, &str)]>, mode: MtlsMode) {
    let p = PeerAuthentication {
        source: ObjectRef::new(Kind::PeerAuthentication, "shop", name),
        generation: 1,
        selector: selector.map(labels),
        mode,
    };
    world
        .peer_authentications
        .insert(p.source.clone(), Arc::new(p));
}

fn add_policy(world: &mut World, name: &str, action: AccessAction, rules: Vec<AccessRule>) {
    let p = AccessPolicy {
        source: ObjectRef::new(Kind::AccessPolicy, "shop", name),
        generation: 1,
        selector: Some(labels(&[("app", "web")])),
        action,
        rules,
    };
    world.access_policies.insert(p.source.clone(), Arc::new(p));
}

/// `shop/web` in the mesh (service account `web`), `shop/legacy` outside it.
fn mk_mesh_world() -> World {
    let mut web = mk_service("shop", "web", vec![mk_target_port("http", 80, 8080)]);
    web.labels = labels(&[(SERVICE_ACCOUNT_LABEL, "web")]);
    let legacy = mk_service("shop", "legacy", vec![mk_port("http", 80)]);
    let slice = |svc: &str, ip: &str| {
        mk_slice(
            "shop",
            svc,
            svc,
            vec![mk_endpoint_port("http", 15006)],
            vec![mk_ready(ip, None)],
        )
    };
    mk_world(
        vec![web, legacy],
        vec![slice("web", "10.0.0.1"), slice("legacy", "10.0.0.2")],
    )
}

/// DENY `batch` on `/admin*`; ALLOW `frontend` (any path, GET only) and namespace `ops`.
fn add_web_policies(world: &mut World) {
    add_policy(
        world,
        "deny-admin",
        AccessAction::Deny,
        vec![AccessRule {
            from: Some(vec![Peer::ServiceAccount {
                namespace: "shop".into(),
                name: "batch".into(),
            }]),
            to: Some(Operation {
                paths: vec![PathMatch::Prefix("/admin".into())],
                ..Default::default()
            }),
            ..Default::default()
        }],
    );
    add_policy(
        world,
        "allow-callers",
        AccessAction::Allow,
        vec![
            AccessRule {
                from: Some(vec![
                    Peer::ServiceAccount {
                        namespace: "shop".into(),
                        name: "frontend".into(),
                    },
                    Peer::Principal("spiffe://cluster.local/ns/shop/sa/cli".into()),
                ]),
                to: Some(Operation {
                    methods: vec!["GET".into()],
                    headers: vec![HeaderCondition {
                        name: "x-tenant".into(),
                        value: HeaderValue::Present,
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            },
            AccessRule {
                from: Some(vec![Peer::Namespace("ops".into())]),
                to: None,
                ..Default::default()
            },
            // Another port: can never match on this workload's listener.
            AccessRule {
                from: None,
                to: Some(Operation {
                    ports: vec![9090],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
    );
}

fn route_config_json(resources: &Resources, name: &str) -> serde_json::Value {
    let r = resources
        .routes
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route configuration {name}"));
    message_to_json(r).expect("renders")
}

fn listener_json(resources: &Resources, name: &str) -> serde_json::Value {
    let l = resources
        .listeners
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no listener {name}"));
    message_to_json(l).expect("renders")
}

fn cluster_json(resources: &Resources, name: &str) -> serde_json::Value {
    let c = resources
        .clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cluster {name}"));
    message_to_json(c).expect("renders")
}

const WEB_CLUSTER: &str = "outbound|80||web.shop.svc.cluster.local";
const LEGACY_CLUSTER: &str = "outbound|80||legacy.shop.svc.cluster.local";

#[test]
fn strict_http_inbound_with_deny_and_allow_policies() {
    let mut world = mk_mesh_world();
    add_peer_auth(&mut world, "ns", None, MtlsMode::Strict);
    add_web_policies(&mut world);
    let resources = run_group(&world, &web_group(false));
    insta::assert_json_snapshot!("strict_http_inbound", listener_json(&resources, "inbound"));
    // The rules travel over RDS, per virtual host (so a change reaches open connections).
    insta::assert_json_snapshot!(
        "strict_http_inbound_route",
        route_config_json(&resources, "inbound")
    );
    insta::assert_json_snapshot!(
        "inbound_app_cluster",
        cluster_json(&resources, "inbound|8080")
    );
}

#[test]
fn the_plaintext_chain_has_its_own_route_configuration_which_strict_turns_into_a_refusal() {
    let rds_name = |listener: &serde_json::Value, chain: usize| {
        listener["filter_chains"][chain]["filters"][0]["typed_config"]["rds"]["route_config_name"]
            .clone()
    };
    // PERMISSIVE: the TLS chain uses `inbound`, the plaintext one `inbound-plaintext`, both
    // with the same RBAC rules to the application.
    let mut world = mk_mesh_world();
    add_peer_auth(&mut world, "ns", None, MtlsMode::Permissive);
    add_web_policies(&mut world);
    let resources = run_group(&world, &web_group(false));
    let inbound = listener_json(&resources, "inbound");
    assert_eq!(rds_name(&inbound, 0), "inbound", "{inbound}");
    assert_eq!(rds_name(&inbound, 1), "inbound-plaintext", "{inbound}");
    let tls = route_config_json(&resources, "inbound");
    let mut plain = route_config_json(&resources, "inbound-plaintext");
    plain["name"] = tls["name"].clone();
    assert_eq!(plain, tls, "the same rules on both chains");

    // STRICT: no plaintext chain, but `inbound-plaintext` still served, answering 403 (for
    // plaintext connections a PERMISSIVE listener accepted, until they drain).
    add_peer_auth(&mut world, "ns", None, MtlsMode::Strict);
    let resources = run_group(&world, &web_group(false));
    let inbound = listener_json(&resources, "inbound");
    // A TLS and a refusing plaintext chain each (as PERMISSIVE, so a change between the two
    // drains no TLS chain): the application port, the listener's, the passthrough of 9090
    // (a DENY rule names it), the passthrough of any other port.
    let chains = inbound["filter_chains"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = chains.iter().filter_map(|c| c["name"].as_str()).collect();
    let expected = [
        "tls:8080",
        "plaintext:8080",
        "tls:15006",
        "plaintext:15006",
        "passthrough:tls:9090",
        "passthrough:plaintext:9090",
        "passthrough:tls",
        "passthrough:plaintext",
    ];
    assert_eq!(names, expected, "{inbound}");
    for chain in &chains {
        let tls = chain["name"].as_str().is_some_and(|n| n.contains("tls"));
        assert_eq!(chain.get("transport_socket").is_some(), tls, "{chain}");
        if !tls
            && chain["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("passthrough"))
        {
            // TCP: refused by an ALLOW filter without rules, first.
            let first = &chain["filters"][0];
            assert_eq!(first["name"], crate::rbac::NETWORK_RBAC, "{chain}");
            assert!(first["typed_config"]["rules"].get("policies").is_none());
            assert!(first["typed_config"]["rules"].get("action").is_none());
        }
    }
    let refusing = route_config_json(&resources, "inbound-plaintext");
    let route = &refusing["virtual_hosts"][0]["routes"][0];
    assert_eq!(route["direct_response"]["status"], 403, "{refusing}");
    assert!(
        route.get("route").is_none(),
        "never reaches the application: {refusing}"
    );
}

#[test]
fn permissive_tcp_inbound_with_network_rbac() {
    let mut world = mk_mesh_world();
    add_peer_auth(
        &mut world,
        "web",
        Some(&[("app", "web")]),
        MtlsMode::Permissive,
    );
    add_peer_auth(&mut world, "ns", None, MtlsMode::Strict);
    add_web_policies(&mut world);
    let resources = run_group(&world, &web_group(true));
    insta::assert_json_snapshot!(
        "permissive_tcp_inbound",
        listener_json(&resources, "inbound")
    );
}

#[test]
fn outbound_mesh_cluster_originates_mtls_with_the_server_identity() {
    let world = mk_mesh_world();
    let resources = run_group(&world, &web_group(false));
    insta::assert_json_snapshot!(
        "outbound_mtls_cluster",
        cluster_json(&resources, WEB_CLUSTER)
    );
    // Not in the mesh (no service-account label): plaintext.
    assert!(
        resources
            .clusters
            .iter()
            .all(|c| c.name != LEGACY_CLUSTER || c.transport_socket.is_none())
    );
}

#[test]
fn disable_means_plaintext_both_ways() {
    let mut world = mk_mesh_world();
    add_peer_auth(&mut world, "ns", None, MtlsMode::Disable);
    let resources = run_group(&world, &web_group(false));
    let inbound = listener_json(&resources, "inbound");
    // One plaintext chain each: the application port, the listener's, the passthrough.
    let chains = inbound["filter_chains"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(chains.len(), 3, "{inbound}");
    assert!(
        chains.iter().all(|c| c.get("transport_socket").is_none()),
        "{inbound}"
    );
    // The TLS inspector stays (in every mode: a mode change leaves the listener's filters
    // alone), though no chain asks for a transport.
    let names = listener_filter_names(&inbound);
    assert_eq!(
        names,
        [
            "envoy.filters.listener.original_dst",
            "envoy.filters.listener.tls_inspector"
        ],
        "{inbound}"
    );
    let web = cluster_json(&resources, WEB_CLUSTER);
    assert!(web.get("transport_socket").is_none(), "{web}");
}

#[test]
fn a_group_without_identity_gets_no_inbound_listener_and_no_mesh_tls() {
    let mut world = mk_mesh_world();
    add_peer_auth(&mut world, "ns", None, MtlsMode::Strict);
    // Ports without an identity are not a group key (the grouping hook writes them only with
    // a proven identity).
    assert!(
        "web;l.app=web;app=8080;in=15006"
            .parse::<portolan_model::GroupKey>()
            .is_err()
    );
    let resources = run_group(&world, "web;l.app=web");
    assert!(resources.listeners.iter().all(|l| l.name != "inbound"));
    assert!(
        resources
            .clusters
            .iter()
            .all(|c| c.transport_socket.is_none())
    );
    // With an identity but no application port: mesh TLS out, no inbound listener.
    let resources = run_group(&world, "web;ns=shop;sa=web");
    assert!(resources.listeners.iter().all(|l| l.name != "inbound"));
    assert!(
        cluster_json(&resources, WEB_CLUSTER)
            .get("transport_socket")
            .is_some()
    );
}

#[test]
fn an_allow_policy_without_rules_denies_everything() {
    let mut world = mk_mesh_world();
    add_policy(&mut world, "deny-all", AccessAction::Allow, vec![]);
    let resources = run_group(&world, &web_group(false));
    let inbound = listener_json(&resources, "inbound");
    let filters = &inbound["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"];
    // Both RBAC filters, always, without rules (enforcing nothing by themselves).
    assert_eq!(filters[0]["name"], "envoy.filters.http.rbac.deny");
    assert_eq!(filters[1]["name"], "envoy.filters.http.rbac.allow");
    assert!(
        filters[1]["typed_config"].get("rules").is_none(),
        "{filters}"
    );
    assert_eq!(filters[2]["name"], "envoy.filters.http.router");
    let route = route_config_json(&resources, "inbound");
    let per_filter = &route["virtual_hosts"][0]["typed_per_filter_config"];
    assert!(
        per_filter.get("envoy.filters.http.rbac.deny").is_none(),
        "{per_filter}"
    );
    let rules = &per_filter["envoy.filters.http.rbac.allow"]["rbac"]["rules"];
    assert_eq!(
        rules["action"],
        serde_json::Value::Null,
        "ALLOW is the default enum value: {per_filter}"
    );
    assert!(rules.get("policies").is_none(), "{per_filter}");
}

#[test]
fn tcp_drops_http_only_allow_rules_and_keeps_deny_rules_without_their_http_fields() {
    let mut world = mk_mesh_world();
    add_web_policies(&mut world);
    // Callers Portolan knows (Services of their service accounts): batch, frontend, an ops one.
    for (ns, sa) in [("shop", "batch"), ("shop", "frontend"), ("ops", "tool")] {
        let mut svc = mk_service(ns, sa, vec![mk_port("http", 80)]);
        svc.labels = labels(&[(SERVICE_ACCOUNT_LABEL, sa)]);
        world.services.insert(svc.key.clone(), Arc::new(svc));
    }
    let resources = run_group(&world, &web_group(true));
    // The chains of the TCP port do not carry the rules: network RBAC for callers Portolan
    // does not know is in the `others` chain of the callers' internal listener...
    let callers = listener_json(&resources, "inbound|8080|callers");
    let others = callers["filter_chains"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "others"))
        .cloned()
        .unwrap_or_default();
    let filters = &others["filters"];
    // DENY: batch, whatever the path (the path cannot be seen on TCP).
    let deny = &filters[0]["typed_config"]["rules"]["policies"]["deny"]["principals"];
    assert_eq!(
        deny,
        &serde_json::json!([{"filter_state": {"key": "portolan.peer", "string_match": {"exact": "spiffe://cluster.local/ns/shop/sa/batch"}}}])
    );
    // ALLOW: only the ops rule (the GET rule cannot be checked; the 9090 rule cannot match).
    let allow = &filters[1]["typed_config"]["rules"]["policies"]["allow"]["principals"];
    assert_eq!(
        allow,
        &serde_json::json!([{"filter_state": {"key": "portolan.peer", "string_match": {"prefix": "spiffe://cluster.local/ns/ops/sa/"}}}])
    );
    assert_eq!(filters[2]["name"], "envoy.filters.network.tcp_proxy");
    // (the internal connection has no certificate: the caller's ID comes from the filter
    // state the TLS chain set) ...and the known callers' checks take the same decisions: batch denied, frontend not
    // allowed (its rule is HTTP-only), ops allowed; plaintext matches no `from`.
    let routes = route_config_json(&resources, crate::inbound_tcp::POLICY_ROUTES);
    let statuses: Vec<(String, u64)> = routes["virtual_hosts"][0]["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let path = r["match"]["path"].as_str().unwrap_or_default().to_string();
            (path, r["direct_response"]["status"].as_u64().unwrap_or(0))
        })
        .collect();
    let want = [
        ("/8080/ops/tool", 200),
        ("/8080/shop/batch", 503),
        ("/8080/shop/frontend", 503),
        ("/8080/shop/web", 503),
        ("/8080/plaintext", 503),
    ];
    let want: Vec<(String, u64)> = want.iter().map(|(p, s)| (p.to_string(), *s)).collect();
    assert_eq!(statuses, want);
}

#[test]
fn workload_secrets_carry_the_certificate_and_the_root() {
    let [cert, root] = crate::mesh::workload_secrets("CERT", "KEY", "ROOT");
    assert_eq!(cert.name, WORKLOAD_CERT_SECRET);
    assert_eq!(root.name, TRUST_BUNDLE_SECRET);
    let cert = message_to_json(&cert).expect("renders");
    assert_eq!(
        cert["tls_certificate"]["private_key"]["inline_string"],
        "KEY"
    );
    let root = message_to_json(&root).expect("renders");
    assert_eq!(
        root["validation_context"]["trusted_ca"]["inline_string"],
        "ROOT"
    );
}

#[test]
fn mesh_connections_last_at_most_the_certificate_lifetime_keeping_http2() {
    let mut world = mk_mesh_world();
    let mut grpc = mk_service("shop", "grpc", vec![mk_app_port("grpc", 9000, "grpc")]);
    grpc.labels = labels(&[(SERVICE_ACCOUNT_LABEL, "grpc")]);
    world.services.insert(grpc.key.clone(), Arc::new(grpc));
    let mut options = Options::default();
    options.mesh.max_connection_duration = Some(std::time::Duration::from_secs(3600));
    let resources = translate(&world, &group_of(&web_group(false)), &options);
    let options_of = |name: &str| {
        cluster_json(&resources, name)["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
            .clone()
    };
    let web = options_of(WEB_CLUSTER);
    assert_eq!(
        web["common_http_protocol_options"]["max_connection_duration"],
        "3600s"
    );
    assert!(
        web["explicit_http_config"]
            .get("http_protocol_options")
            .is_some(),
        "{web}"
    );
    let grpc = options_of("outbound|9000||grpc.shop.svc.cluster.local");
    assert_eq!(
        grpc["common_http_protocol_options"]["max_connection_duration"],
        "3600s"
    );
    assert!(
        grpc["explicit_http_config"]
            .get("http2_protocol_options")
            .is_some(),
        "{grpc}"
    );
    // Not in the mesh: untouched.
    let legacy = cluster_json(&resources, LEGACY_CLUSTER);
    assert!(
        legacy.get("typed_extension_protocol_options").is_none(),
        "{legacy}"
    );
}

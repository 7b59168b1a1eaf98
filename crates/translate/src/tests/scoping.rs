//! Scoped proxy groups (`;scope=...`): only what the scope admits gets clusters, assignments
//! and virtual hosts; route destinations out of scope keep their clusters; changes elsewhere
//! leave the translation as it was.

use super::*;
use crate::Translator;
use portolan_model::routing::Mirror;

const SCOPED: &str = "web;scope=shop/*,*/api.payments.svc.cluster.local,*/*.example.com";

fn mesh() -> World {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for (ns, name) in [
        ("shop", "cart"),
        ("shop", "web"),
        ("payments", "api"),
        ("payments", "db"),
        ("other", "x"),
    ] {
        services.push(mk_service(ns, name, vec![mk_port("http", 80)]));
        slices.push(mk_slice(
            ns,
            name,
            name,
            vec![mk_endpoint_port("http", 8080)],
            vec![mk_ready("10.0.0.1", None)],
        ));
    }
    let externals = ["www.example.com", "api.elsewhere.io"].map(|host| {
        mk_external(
            "ext",
            host.split('.').nth(1).unwrap_or(host),
            &[host],
            vec![mk_external_port("http", 80, ExternalProtocol::Http)],
            Resolution::Dns,
            vec![],
        )
    });
    with(
        mk_world(services, slices),
        Extra {
            externals: externals.into(),
            ..Default::default()
        },
    )
}

fn cluster_names(r: &Resources) -> Vec<&str> {
    r.clusters.iter().map(|c| c.name.as_str()).collect()
}

fn vhost_names(r: &Resources) -> Vec<&str> {
    r.routes
        .iter()
        .flat_map(|rc| &rc.virtual_hosts)
        .map(|v| v.name.as_str())
        .collect()
}

#[test]
fn a_scoped_group_gets_only_what_its_scope_admits() {
    let world = mesh();
    let scoped = run_group(&world, SCOPED);
    assert_eq!(
        cluster_names(&scoped),
        [
            "outbound|80||api.payments.svc.cluster.local",
            "outbound|80||cart.shop.svc.cluster.local",
            "outbound|80||web.shop.svc.cluster.local",
            "outbound|80||www.example.com",
        ]
    );
    let assignments: Vec<_> = scoped
        .load_assignments
        .iter()
        .map(|c| c.cluster_name.as_str())
        .collect();
    assert_eq!(assignments.len(), 3, "{assignments:?}");
    assert_eq!(
        vhost_names(&scoped),
        [
            "api.payments:80",
            "cart.shop:80",
            "web.shop:80",
            "www.example.com:80"
        ]
    );
    let unscoped = run_group(&world, "web");
    assert_eq!(unscoped.clusters.len(), 7);
    // The listeners do not change with the scope.
    assert_eq!(scoped.listeners, unscoped.listeners);
}

#[test]
fn the_own_namespace_is_the_identitys() {
    let world = mesh();
    let with_identity = run_group(&world, "web;scope=./*;ns=payments;sa=api");
    let names = cluster_names(&with_identity);
    assert!(
        names.contains(&"outbound|80||db.payments.svc.cluster.local"),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.contains(".shop.")), "{names:?}");
    // Without an identity (and no namespace in the key) `.` admits nothing.
    let without = run_group(&world, "web;scope=./*");
    assert!(without.clusters.is_empty(), "{:?}", cluster_names(&without));
    assert_eq!(vhost_names(&without), Vec::<&str>::new());
}

#[test]
fn route_destinations_out_of_scope_keep_their_clusters_but_get_no_virtual_host() {
    let mut rule = mk_rule(
        vec![],
        mk_forward(vec![mk_backend("x.other.svc.cluster.local", None, None, 1)]),
    );
    rule.mirrors = vec![Mirror {
        destination: mk_dest("api.elsewhere.io", None, None),
        percent: 10.0,
    }];
    let route = mk_route("shop", "cart-to-x", &["cart"], vec![rule]);
    let world = with(
        mesh(),
        Extra {
            routes: vec![route],
            ..Default::default()
        },
    );
    let scoped = run_group(&world, SCOPED);
    let names = cluster_names(&scoped);
    assert!(
        names.contains(&"outbound|80||x.other.svc.cluster.local"),
        "{names:?}"
    );
    assert!(
        names.contains(&"outbound|80||api.elsewhere.io"),
        "{names:?}"
    );
    assert!(
        scoped
            .load_assignments
            .iter()
            .any(|c| c.cluster_name == "outbound|80||x.other.svc.cluster.local")
    );
    let vhosts = vhost_names(&scoped);
    assert!(!vhosts.contains(&"x.other:80"), "{vhosts:?}");
    assert!(!vhosts.contains(&"api.elsewhere.io:80"), "{vhosts:?}");
}

#[test]
fn a_change_in_a_namespace_out_of_scope_changes_nothing() {
    let before = mesh();
    let mut after = mesh();
    let key = ServiceKey::new("other", "x");
    after.endpoints.insert(
        key,
        vec![Arc::new(mk_slice(
            "other",
            "x",
            "x",
            vec![mk_endpoint_port("http", 8080)],
            vec![mk_ready("10.0.0.99", None)],
        ))],
    );
    after.services.insert(
        ServiceKey::new("other", "y"),
        Arc::new(mk_service("other", "y", vec![mk_port("http", 80)])),
    );
    assert_eq!(run_group(&before, SCOPED), run_group(&after, SCOPED));
    assert_ne!(run_group(&before, "web"), run_group(&after, "web"));
}

#[test]
fn the_translator_gives_the_same_scoped_output() {
    let world = mesh();
    let group = group_of(SCOPED);
    let mut translator = Translator::new();
    let unscoped = translator.translate(&world, &group_of("web"), &Options::default());
    assert_eq!(unscoped.clusters.len(), 7);
    let shared = translator.translate(&world, &group, &Options::default());
    assert_eq!(
        shared.to_resources(),
        translate(&world, &group, &Options::default())
    );
}

#[test]
fn a_gateway_group_ignores_its_scope() {
    let gateway = mk_gateway(
        "default",
        "edge",
        "edge",
        vec![mk_listener(
            "http",
            8080,
            ListenerProtocol::Http,
            &["*"],
            None,
        )],
    );
    let world = with(
        mesh(),
        Extra {
            gateways: vec![gateway],
            ..Default::default()
        },
    );
    let scoped = run_group(&world, "edge;scope=shop/*");
    assert_eq!(
        scoped.clusters.len(),
        run_group(&world, "edge").clusters.len()
    );
}

#[test]
fn the_group_key_carries_the_scope_and_its_error() {
    // Entries are canonical (sorted): the error names the entry by its place among them.
    let group = group_of("web;scope=shop/*,zz");
    let scope = group.scope.as_ref().expect("scoped");
    assert_eq!(scope.to_string(), "shop/*");
    let error = group.scope_error().expect("bad entry").to_string();
    assert!(
        error.starts_with("node.metadata[\"portolan.dev/scope\"][1]:"),
        "{error}"
    );
    assert_eq!(group_of("web").scope, None);
}

#[test]
fn a_scoped_on_demand_group_learns_only_hosts_in_its_scope() {
    let world = mesh();
    let key = "web;mode=on-demand;scope=shop/*";
    let group = group_of(key);
    assert_eq!(group.discovery, crate::Discovery::OnDemand);
    assert!(group.scope.is_some());
    let r = run_group(&world, key);
    let on_demand = r.on_demand.as_ref().expect("an on-demand group");
    let hosts: Vec<&str> = on_demand
        .virtual_hosts
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert!(
        hosts.iter().any(|h| h.contains("cart.shop")),
        "in scope: {hosts:?}"
    );
    assert!(
        !hosts
            .iter()
            .any(|h| h.contains("x.other") || h.contains("payments")),
        "out of scope: {hosts:?}"
    );
    let clusters = cluster_names(&r);
    assert!(clusters.contains(&"outbound|80||cart.shop.svc.cluster.local"));
    assert!(
        !clusters.iter().any(|c| c.contains("other")),
        "{clusters:?}"
    );
    // The route configuration itself carries no virtual host (VHDS serves them).
    assert!(r.routes.iter().all(|rc| rc.virtual_hosts.is_empty()));
}

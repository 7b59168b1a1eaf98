//! Tests of [`super::statuses`], [`super::route_owners`] and [`super::policy_for`].

use super::*;
use crate::gateway::{Gateway, GatewayListener, GatewaySelector, ListenerProtocol, SecretRef};
use crate::policy::Subset;
use crate::routing::*;
use crate::status::ConditionType;
use crate::types::ServicePort;
use portolan_api::Kind;

fn mk_service(ns: &str, name: &str, ports: &[u16]) -> Arc<Service> {
    Arc::new(Service {
        key: ServiceKey::new(ns, name),
        ports: ports
            .iter()
            .map(|p| ServicePort {
                name: format!("p{p}"),
                port: *p,
                protocol: Default::default(),
                target_port: None,
                app_protocol: None,
            })
            .collect(),
        cluster_ip: None,
        external_name: None,
        labels: Default::default(),
    })
}

fn mk_dest(host: &str, port: Option<u16>, subset: Option<&str>) -> Destination {
    Destination {
        host: host.into(),
        port,
        subset: subset.map(Into::into),
    }
}

fn mk_route(
    ns: &str,
    name: &str,
    hosts: &[&str],
    parents: Vec<Parent>,
    dests: Vec<Destination>,
) -> Arc<HttpRoute> {
    Arc::new(HttpRoute {
        source: ObjectRef::new(Kind::TrafficRoute, ns, name),
        generation: 7,
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        parents,
        http: vec![HttpRule {
            name: None,
            matches: vec![],
            action: HttpAction::Forward {
                backends: dests
                    .into_iter()
                    .map(|destination| Backend {
                        destination,
                        weight: 1,
                        headers: Default::default(),
                    })
                    .collect(),
                rewrite: None,
            },
            timeout: None,
            retry: None,
            fault: None,
            mirrors: Vec::new(),
            request_headers: Default::default(),
            response_headers: Default::default(),
            cors: None,
        }],
        tcp: vec![],
    })
}

fn mk_policy(
    ns: &str,
    name: &str,
    host: &str,
    port: Option<u16>,
    subsets: &[&str],
) -> Arc<DestinationPolicy> {
    Arc::new(DestinationPolicy {
        source: ObjectRef::new(Kind::TrafficPolicy, ns, name),
        generation: 2,
        host: host.into(),
        port,
        subsets: subsets
            .iter()
            .map(|s| Subset {
                name: s.to_string(),
                labels: Default::default(),
            })
            .collect(),
        load_balancer: None,
        connection_pool: None,
        outlier_detection: None,
        health_check: None,
        tls: None,
    })
}

fn mk_gateway(ns: &str, name: &str, secret: Option<&str>) -> Arc<Gateway> {
    Arc::new(Gateway {
        source: ObjectRef::new(Kind::Gateway, ns, name),
        generation: 1,
        selector: GatewaySelector {
            cluster: Some("ingress".into()),
            metadata: Default::default(),
        },
        listeners: vec![GatewayListener {
            name: "web".into(),
            port: 8443,
            protocol: ListenerProtocol::Https,
            hostnames: vec![],
            tls: secret.map(|s| SecretRef {
                namespace: ns.into(),
                name: s.into(),
            }),
        }],
    })
}

fn mk_world(
    services: &[Arc<Service>],
    routes: &[Arc<HttpRoute>],
    policies: &[Arc<DestinationPolicy>],
    gateways: &[Arc<Gateway>],
) -> World {
    World {
        services: services
            .iter()
            .map(|s| (s.key.clone(), s.clone()))
            .collect(),
        routes: routes
            .iter()
            .map(|r| (r.source.clone(), r.clone()))
            .collect(),
        policies: policies
            .iter()
            .map(|p| (p.source.clone(), p.clone()))
            .collect(),
        gateways: gateways
            .iter()
            .map(|g| (g.source.clone(), g.clone()))
            .collect(),
        ..World::default()
    }
}

/// (status, reason, message) of one condition.
fn cond(world: &World, object: &ObjectRef, t: ConditionType) -> (bool, String, String) {
    let all = statuses(world);
    let c = all[object]
        .iter()
        .find(|c| c.type_ == t)
        .expect("condition present");
    (c.status, c.reason.clone(), c.message.clone())
}

fn ok(reason: &str) -> (bool, String, String) {
    (true, reason.to_string(), String::new())
}

fn bad(reason: &str, message: &str) -> (bool, String, String) {
    (false, reason.to_string(), message.to_string())
}

#[test]
fn resolved_route_is_accepted() {
    let svc = mk_service("default", "reviews", &[9080]);
    let r = mk_route(
        "default",
        "r",
        &["reviews"],
        vec![],
        vec![mk_dest("reviews", None, Some("v1"))],
    );
    let w = mk_world(
        &[svc],
        std::slice::from_ref(&r),
        &[mk_policy("default", "p", "reviews", None, &["v1"])],
        &[],
    );
    assert_eq!(cond(&w, &r.source, ConditionType::Accepted), ok("Accepted"));
    assert_eq!(
        cond(&w, &r.source, ConditionType::ResolvedRefs),
        ok("ResolvedRefs")
    );
    assert_eq!(statuses(&w)[&r.source][0].observed_generation, 7);
}

#[test]
fn missing_backends_ports_and_subsets_are_named() {
    let svc = mk_service("default", "reviews", &[9080, 9090]);
    let r = mk_route(
        "default",
        "r",
        &["front"],
        vec![],
        vec![
            mk_dest("ratings", None, None),
            mk_dest("reviews", Some(1), None),
            mk_dest("reviews", Some(9080), Some("v9")),
            mk_dest("reviews", None, None),
        ],
    );
    let w = mk_world(
        &[svc],
        std::slice::from_ref(&r),
        &[mk_policy(
            "default",
            "p",
            "reviews.default",
            Some(9080),
            &["v1"],
        )],
        &[],
    );
    assert_eq!(
        cond(&w, &r.source, ConditionType::ResolvedRefs),
        bad(
            "BackendNotFound",
            "spec.http[0].route[0].destination: service default/ratings not found; \
             spec.http[0].route[1].destination: service default/reviews has no port 1; \
             spec.http[0].route[2].destination: service default/reviews has no subset \"v9\"; \
             spec.http[0].route[3].destination: service default/reviews has 2 ports: the destination needs a port"
        )
    );
    // Still accepted: unresolved backends do not cost the route its hosts.
    assert_eq!(cond(&w, &r.source, ConditionType::Accepted), ok("Accepted"));
}

#[test]
fn subset_only_failure_has_its_reason() {
    let svc = mk_service("shop", "reviews", &[9080]);
    let r = mk_route(
        "shop",
        "r",
        &["reviews"],
        vec![],
        vec![mk_dest("reviews", None, Some("v2"))],
    );
    let w = mk_world(&[svc], std::slice::from_ref(&r), &[], &[]);
    assert_eq!(
        cond(&w, &r.source, ConditionType::ResolvedRefs),
        bad(
            "SubsetNotFound",
            "spec.http[0].route[0].destination: service shop/reviews has no subset \"v2\""
        )
    );
}

#[test]
fn host_conflicts_go_to_the_first_route_by_namespace_and_name() {
    let svc = mk_service("default", "reviews", &[9080]);
    let other = mk_service("default", "ratings", &[9080]);
    let a = mk_route(
        "default",
        "a",
        &["reviews"],
        vec![],
        vec![mk_dest("reviews", None, None)],
    );
    let b = mk_route(
        "other",
        "b",
        &["ratings.default", "reviews.default.svc.cluster.local"],
        vec![],
        vec![mk_dest("reviews.default", None, None)],
    );
    let w = mk_world(&[svc, other], &[a.clone(), b.clone()], &[], &[]);
    assert_eq!(cond(&w, &a.source, ConditionType::Accepted), ok("Accepted"));
    assert_eq!(
        cond(&w, &b.source, ConditionType::Accepted),
        bad(
            "Conflicted",
            "spec.hosts[1]: host \"reviews.default.svc.cluster.local\" on the mesh is already routed by TrafficRoute default/a"
        )
    );
    let owners = route_owners(&w, &Parent::Mesh);
    assert_eq!(owners["reviews.default"].source, a.source);
    assert_eq!(
        owners["ratings.default"].source, b.source,
        "the loser keeps its other hosts"
    );
    assert_eq!(owners.len(), 2);
}

#[test]
fn routes_on_different_parents_do_not_conflict() {
    let gw = Parent::Gateway {
        namespace: "default".into(),
        name: "edge".into(),
    };
    let a = mk_route(
        "default",
        "a",
        &["www.example.com"],
        vec![gw.clone()],
        vec![],
    );
    let b = mk_route(
        "default",
        "b",
        &["www.example.com"],
        vec![Parent::Mesh],
        vec![],
    );
    let w = mk_world(
        &[],
        &[a.clone(), b.clone()],
        &[],
        &[mk_gateway("default", "edge", None)],
    );
    assert_eq!(cond(&w, &a.source, ConditionType::Accepted), ok("Accepted"));
    assert_eq!(cond(&w, &b.source, ConditionType::Accepted), ok("Accepted"));
    assert_eq!(route_owners(&w, &gw)["www.example.com"].source, a.source);
}

#[test]
fn missing_gateways() {
    let gone = Parent::Gateway {
        namespace: "infra".into(),
        name: "gone".into(),
    };
    let edge = Parent::Gateway {
        namespace: "default".into(),
        name: "edge".into(),
    };
    let only_missing = mk_route(
        "default",
        "a",
        &["a.example.com"],
        vec![gone.clone()],
        vec![],
    );
    let partly = mk_route("default", "b", &["b.example.com"], vec![edge, gone], vec![]);
    let w = mk_world(
        &[],
        &[only_missing.clone(), partly.clone()],
        &[],
        &[mk_gateway("default", "edge", None)],
    );
    assert_eq!(
        cond(&w, &only_missing.source, ConditionType::Accepted),
        bad("NoMatchingParent", "none of the gateways it names exists")
    );
    assert_eq!(
        cond(&w, &partly.source, ConditionType::ResolvedRefs),
        bad(
            "GatewayNotFound",
            "spec.gateways[1]: gateway infra/gone not found"
        )
    );
    assert_eq!(
        cond(&w, &partly.source, ConditionType::Accepted),
        ok("Accepted")
    );
}

#[test]
fn policy_for_prefers_port_specific_then_first_by_name() {
    let svc = mk_service("shop", "reviews", &[9080, 9090]);
    let b_portless = mk_policy("shop", "b", "reviews", None, &[]);
    let a_portless = mk_policy("shop", "a", "reviews.shop.svc.cluster.local", None, &[]);
    let c_port = mk_policy("shop", "c", "reviews", Some(9080), &[]);
    let d_port = mk_policy("zzz", "d", "reviews.shop", Some(9080), &[]);
    let w = mk_world(
        &[svc],
        &[],
        &[
            b_portless.clone(),
            a_portless.clone(),
            c_port.clone(),
            d_port.clone(),
        ],
        &[],
    );
    let pick =
        |ns: &str, host: &str, port| policy_for(&w, ns, host, port).map(|p| p.source.name.clone());
    assert_eq!(pick("shop", "reviews", 9080).as_deref(), Some("c"));
    assert_eq!(pick("other", "reviews.shop", 9090).as_deref(), Some("a"));
    assert_eq!(
        pick("other", "reviews", 9080),
        None,
        "reviews in namespace other"
    );
    assert_eq!(
        cond(&w, &b_portless.source, ConditionType::Accepted),
        bad(
            "Conflicted",
            "spec.host: host \"reviews\" is already configured by TrafficPolicy shop/a"
        )
    );
    assert_eq!(
        cond(&w, &d_port.source, ConditionType::Accepted),
        bad(
            "Conflicted",
            "spec.host: host \"reviews.shop\" port 9080 is already configured by TrafficPolicy shop/c"
        )
    );
    assert_eq!(
        cond(&w, &c_port.source, ConditionType::Accepted),
        ok("Accepted")
    );
}

#[test]
fn policy_refs() {
    let svc = mk_service("default", "reviews", &[9080]);
    let p1 = mk_policy("default", "p1", "nope", None, &[]);
    let p2 = mk_policy("default", "p2", "reviews", Some(1234), &[]);
    let w = mk_world(&[svc], &[], &[p1.clone(), p2.clone()], &[]);
    assert_eq!(
        cond(&w, &p1.source, ConditionType::ResolvedRefs),
        bad(
            "BackendNotFound",
            "spec.host: service default/nope not found"
        )
    );
    assert_eq!(
        cond(&w, &p2.source, ConditionType::ResolvedRefs),
        bad("BackendNotFound", "spec.port: \"reviews\" has no port 1234")
    );
}

#[test]
fn gateway_secrets() {
    let gw = mk_gateway("default", "edge", Some("cert"));
    let w = mk_world(&[], &[], &[], std::slice::from_ref(&gw));
    assert_eq!(
        cond(&w, &gw.source, ConditionType::ResolvedRefs),
        bad(
            "SecretNotFound",
            "spec.listeners[0].tls.secretRef: secret default/cert (type kubernetes.io/tls) not found"
        )
    );
    let mut w = w;
    let secret = ObjectRef::new(Kind::Secret, "default", "cert");
    w.secrets.insert(
        secret.clone(),
        Arc::new(crate::gateway::TlsSecret {
            source: secret,
            cert_chain: String::new(),
            private_key: String::new(),
        }),
    );
    assert_eq!(
        cond(&w, &gw.source, ConditionType::ResolvedRefs),
        ok("ResolvedRefs")
    );
}

#[test]
fn the_loser_of_two_proxy_scopes_for_the_same_proxies_is_conflicted() {
    use crate::proxy_scope::ProxyScope;
    let mk = |name: &str, created: Option<i64>| {
        Arc::new(ProxyScope {
            source: ObjectRef::new(Kind::ProxyScope, "shop", name),
            generation: 3,
            created,
            selector: None,
            hosts: Some(vec!["./*".into()]),
            discovery: None,
        })
    };
    let (older, newer) = (mk("z-older", Some(100)), mk("a-newer", Some(200)));
    let mut world = World::default();
    for p in [&older, &newer] {
        world.proxy_scopes.insert(p.source.clone(), p.clone());
    }
    assert_eq!(
        cond(&world, &older.source, ConditionType::Accepted),
        ok("Accepted")
    );
    assert_eq!(
        cond(&world, &newer.source, ConditionType::Accepted),
        bad(
            "Conflicted",
            "metadata.namespace: proxies it selects are also selected by ProxyScope shop/z-older, which was created first (or is first by name) and scopes them"
        )
    );
    assert_eq!(statuses(&world)[&newer.source][0].observed_generation, 3);
}

//! A warm [`Translator`] against a cold translation: both take the one translation path, so
//! what can diverge is the memo. A translator carried across a sequence of World changes
//! (each step changing one input of one Service, or something translated in full every time)
//! must give what [`translate`] gives for each World from scratch, for plain, zoned, gateway,
//! gRPC, on-demand and mesh proxy groups; and unchanged Services' output is reused.

use super::golden_routing::mk_gateway_world;
use super::*;
use crate::{SharedResources, Translator};
use portolan_model::policy::{LbAlgorithm, LoadBalancer};

const GROUPS: [&str; 7] = [
    "default",
    "default;zone=zone-a",
    "ingress",
    "ingress;zone=zone-b",
    "default;client=grpc",
    "default;mode=on-demand",
    "default;ns=default;sa=web;app=8080",
];

fn svc_with_slice(world: &mut World, name: &str, ip: &str, zone: &str) {
    let svc = mk_service("default", name, vec![mk_port("http", 80)]);
    let slice = mk_slice(
        "default",
        name,
        &format!("{name}-1"),
        vec![mk_endpoint_port("http", 8080)],
        vec![mk_ready(ip, Some(zone))],
    );
    world.services.insert(svc.key.clone(), Arc::new(svc));
    world
        .endpoints
        .insert(slice.service.clone(), vec![Arc::new(slice)]);
}

fn reviews_policy(algorithm: LbAlgorithm) -> DestinationPolicy {
    DestinationPolicy {
        subsets: vec![mk_subset("v1", &[("version", "v1")])],
        load_balancer: Some(LoadBalancer {
            algorithm,
            hash_key: None,
            locality_aware: true,
        }),
        ..mk_policy("default", "reviews", "reviews")
    }
}

fn base() -> World {
    let mut world = mk_gateway_world();
    svc_with_slice(&mut world, "ratings", "10.1.0.1", "zone-a");
    svc_with_slice(&mut world, "details", "10.1.0.2", "zone-b");
    let ext = mk_external(
        "default",
        "ext",
        &["api.example.com"],
        vec![mk_external_port("http", 80, ExternalProtocol::Http)],
        Resolution::Dns,
        vec![],
    );
    with(
        world,
        Extra {
            policies: vec![reviews_policy(LbAlgorithm::RoundRobin)],
            externals: vec![ext],
            ..Default::default()
        },
    )
}

/// Each step changes one thing in the World before it, keeping the other entries' `Arc`s.
fn steps() -> Vec<(&'static str, World)> {
    let mut worlds = vec![("base", base())];
    let mut next = |name: &'static str, change: &dyn Fn(&mut World)| {
        let mut world = worlds.last().map(|(_, w)| w.clone()).unwrap_or_default();
        world.version += 1;
        change(&mut world);
        worlds.push((name, world));
    };
    next("endpoint moved", &|w| {
        let key = ServiceKey::new("default", "reviews");
        let groups = w.endpoints.get_mut(&key).expect("reviews has endpoints");
        let mut moved = EndpointGroup::clone(&groups[1]);
        moved.subsets[0].endpoints[0].address = "10.0.9.9".to_string();
        groups[1] = Arc::new(moved);
    });
    next("service added", &|w| {
        svc_with_slice(w, "added", "10.2.0.1", "zone-b")
    });
    next("service port changed", &|w| {
        let key = ServiceKey::new("default", "details");
        let mut svc = Service::clone(&w.services[&key]);
        svc.ports
            .push(mk_app_port("grpc", 9090, "kubernetes.io/h2c"));
        w.services.insert(key, Arc::new(svc));
    });
    next("policy modified", &|w| {
        let p = reviews_policy(LbAlgorithm::LeastRequest);
        w.policies.insert(p.source.clone(), Arc::new(p));
    });
    next("policy for another service", &|w| {
        let p = DestinationPolicy {
            port: Some(80),
            ..mk_policy("default", "ratings-policy", "ratings")
        };
        w.policies.insert(p.source.clone(), Arc::new(p));
    });
    next("route added", &|w| {
        let r = mk_route(
            "default",
            "canary",
            &["reviews"],
            vec![mk_rule(
                vec![],
                mk_forward(vec![mk_backend("reviews", None, Some("v1"), 1)]),
            )],
        );
        w.routes.insert(r.source.clone(), Arc::new(r));
    });
    next("service removed", &|w| {
        let key = ServiceKey::new("default", "ratings");
        w.services.remove(&key);
        w.endpoints.remove(&key);
    });
    next("policy removed", &|w| {
        let key = ObjectRef::new(Kind::TrafficPolicy, "default", "reviews");
        w.policies.remove(&key);
    });
    next("gateway removed", &|w| w.gateways.clear());
    next("external removed", &|w| w.external_services.clear());
    next("endpoints removed", &|w| {
        w.endpoints.remove(&ServiceKey::new("default", "details"));
    });
    worlds
}

fn owned(shared: &SharedResources) -> Resources {
    shared.to_resources()
}

#[test]
fn a_warm_translator_equals_a_cold_translation_across_changes() {
    let options = Options::default();
    for key in GROUPS {
        let group = group_of(key);
        let mut translator = Translator::new();
        for (step, world) in steps() {
            let warm = owned(&translator.translate(&world, &group, &options));
            let cold = translate(&world, &group, &options);
            assert_eq!(warm, cold, "group {key}, step {step}");
        }
    }
}

#[test]
fn one_translator_serves_groups_of_a_zone() {
    let options = Options::default();
    let mut translator = Translator::new();
    for (step, world) in steps() {
        for key in ["default;zone=zone-a", "ingress;zone=zone-a"] {
            let group = group_of(key);
            let incremental = owned(&translator.translate(&world, &group, &options));
            assert_eq!(
                incremental,
                translate(&world, &group, &options),
                "group {key}, step {step}"
            );
        }
    }
}

#[test]
fn unchanged_services_are_reused() {
    let options = Options::default();
    let group = ProxyGroup::default();
    let worlds = steps();
    let mut translator = Translator::new();
    let first = translator.translate(&worlds[0].1, &group, &options);
    let services = worlds[0].1.services.len();
    assert_eq!(translator.stats().translated, services);
    assert_eq!(translator.stats().reused, 0);

    // Only reviews' endpoints moved: every other Service's output is the same allocation.
    let second = translator.translate(&worlds[1].1, &group, &options);
    assert_eq!(translator.stats().translated, 1);
    assert_eq!(translator.stats().reused, services - 1);
    let find = |r: &SharedResources, name: &str| {
        r.clusters
            .iter()
            .find(|c| c.name == name)
            .cloned()
            .expect("cluster exists")
    };
    let ratings = "outbound|80||ratings.default.svc.cluster.local";
    let reviews = "outbound|9080||reviews.default.svc.cluster.local";
    assert!(Arc::ptr_eq(&find(&first, ratings), &find(&second, ratings)));
    assert!(!Arc::ptr_eq(
        &find(&first, reviews),
        &find(&second, reviews)
    ));

    // The same World again: everything is reused.
    translator.translate(&worlds[1].1, &group, &options);
    assert_eq!(translator.stats().translated, 0);
}

#[test]
fn removed_services_are_forgotten_and_option_changes_start_over() {
    let group = ProxyGroup::default();
    let worlds = steps();
    let (_, removed) = worlds
        .iter()
        .find(|(step, _)| *step == "service removed")
        .expect("step exists");
    let mut translator = Translator::new();
    translator.translate(&worlds[0].1, &group, &Options::default());
    assert_eq!(translator.len(), worlds[0].1.services.len());
    translator.translate(removed, &group, &Options::default());
    assert_eq!(translator.len(), removed.services.len());

    let other = Options {
        cluster_domain: "example.org".to_string(),
        ..Options::default()
    };
    let out = translator.translate(removed, &group, &other);
    assert_eq!(translator.stats().reused, 0);
    assert_eq!(owned(&out), translate(removed, &group, &other));
}

//! Tests of the whole translation, with `mk_*` fixture builders for model objects.

mod consistency;
mod edge;
mod gamma;
mod gateway_api_jwt;
mod gateway_api_tls;
mod gateway_api_udp;
mod gateway_rules;
mod golden;
mod golden_capture;
mod golden_jwt;
mod golden_routing;
mod golden_security;
mod golden_telemetry;
mod inbound_ports;
mod incremental;
mod on_demand;
mod provenance;
mod proxyless;
mod roundtrip;
mod routing_rules;
mod rules;
mod scoping;

use crate::{Options, ProxyGroup, Resources, translate};
use portolan_api::{Kind, ObjectRef};
use portolan_model::external::{
    ExternalEndpoint, ExternalPort, ExternalProtocol, ExternalService, Resolution,
};
use portolan_model::gateway::{
    Gateway, GatewayListener, GatewaySelector, ListenerProtocol, SecretRef, TlsSecret,
};
use portolan_model::policy::{DestinationPolicy, Subset};
use portolan_model::routing::{
    Backend, Destination, HeaderOps, HttpAction, HttpMatch, HttpRoute, HttpRule, Parent,
};
use portolan_model::{
    AddressType, Endpoint, EndpointGroup, EndpointPort, EndpointSubset, Protocol, Service,
    ServiceKey, ServicePort, World,
};
use std::sync::Arc;

fn mk_port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: name.to_string(),
        port,
        protocol: Protocol::Tcp,
        target_port: None,
        app_protocol: None,
    }
}

/// The names of a listener's listener filters (its JSON), in order.
fn listener_filter_names(listener: &serde_json::Value) -> Vec<&str> {
    listener["listener_filters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str())
        .collect()
}

/// Port `port` of a Service to `target` in its pods.
fn mk_target_port(name: &str, port: u16, target: u16) -> ServicePort {
    ServicePort {
        target_port: Some(portolan_model::TargetPort::Number(target)),
        ..mk_port(name, port)
    }
}

fn mk_app_port(name: &str, port: u16, app_protocol: &str) -> ServicePort {
    ServicePort {
        app_protocol: Some(app_protocol.to_string()),
        ..mk_port(name, port)
    }
}

fn mk_service(namespace: &str, name: &str, ports: Vec<ServicePort>) -> Service {
    Service {
        key: ServiceKey::new(namespace, name),
        ports,
        cluster_ip: Some("10.96.0.10".to_string()),
        external_name: None,
        labels: Default::default(),
    }
}

fn mk_ready(address: &str, zone: Option<&str>) -> Endpoint {
    Endpoint {
        address: address.to_string(),
        ready: true,
        serving: true,
        terminating: false,
        zone: zone.map(str::to_string),
        node_name: None,
        hostname: None,
    }
}

fn mk_not_ready(address: &str, zone: Option<&str>) -> Endpoint {
    Endpoint {
        ready: false,
        serving: false,
        ..mk_ready(address, zone)
    }
}

/// Serving while shutting down: not ready, still serving, terminating.
fn mk_terminating(address: &str, zone: Option<&str>) -> Endpoint {
    Endpoint {
        ready: false,
        serving: true,
        terminating: true,
        ..mk_ready(address, zone)
    }
}

fn mk_endpoint_port(name: &str, port: u16) -> EndpointPort {
    EndpointPort {
        name: name.to_string(),
        port,
        protocol: Protocol::Tcp,
    }
}

/// One EndpointSlice named `slice` of service `namespace/service`.
fn mk_slice(
    namespace: &str,
    service: &str,
    slice: &str,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointGroup {
    let address_type = if endpoints.iter().any(|e| e.address.contains(':')) {
        AddressType::Ipv6
    } else {
        AddressType::Ipv4
    };
    EndpointGroup {
        source: ObjectRef::new(Kind::EndpointSlice, namespace, slice),
        service: ServiceKey::new(namespace, service),
        address_type,
        subsets: vec![EndpointSubset { ports, endpoints }],
        labels: Default::default(),
    }
}

fn mk_world(services: Vec<Service>, groups: Vec<EndpointGroup>) -> World {
    let mut world = World {
        version: 1,
        ..Default::default()
    };
    for svc in services {
        world.services.insert(svc.key.clone(), Arc::new(svc));
    }
    for group in groups {
        let key = group.service.clone();
        world
            .endpoints
            .entry(key)
            .or_default()
            .push(Arc::new(group));
    }
    world
}

fn run(world: &World) -> Resources {
    translate(world, &ProxyGroup::default(), &Options::default())
}

fn run_group(world: &World, group: &str) -> Resources {
    translate(world, &group_of(group), &Options::default())
}

/// The group a group key's string form names.
fn group_of(key: &str) -> ProxyGroup {
    let key: portolan_model::GroupKey = key.parse().unwrap_or_else(|e| panic!("{e}"));
    ProxyGroup::from(&key)
}

// === routing fixtures ===

fn mk_dest(host: &str, port: Option<u16>, subset: Option<&str>) -> Destination {
    Destination {
        host: host.to_string(),
        port,
        subset: subset.map(str::to_string),
    }
}

fn mk_backend(host: &str, port: Option<u16>, subset: Option<&str>, weight: u32) -> Backend {
    Backend {
        destination: mk_dest(host, port, subset),
        weight,
        headers: Default::default(),
    }
}

fn mk_forward(backends: Vec<Backend>) -> HttpAction {
    HttpAction::Forward {
        backends,
        rewrite: None,
    }
}

/// A rule with the given matches and action and nothing else.
fn mk_rule(matches: Vec<HttpMatch>, action: HttpAction) -> HttpRule {
    HttpRule {
        name: None,
        matches,
        action,
        timeout: None,
        retry: None,
        fault: None,
        mirrors: Vec::new(),
        request_headers: HeaderOps::default(),
        response_headers: HeaderOps::default(),
        cors: None,
    }
}

fn mk_route(namespace: &str, name: &str, hosts: &[&str], http: Vec<HttpRule>) -> HttpRoute {
    HttpRoute {
        source: ObjectRef::new(Kind::TrafficRoute, namespace, name),
        generation: 0,
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        parents: vec![],
        http,
        tcp: vec![],
    }
}

fn mk_gateway_parent(namespace: &str, name: &str) -> Parent {
    Parent::Gateway {
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

fn mk_policy(namespace: &str, name: &str, host: &str) -> DestinationPolicy {
    DestinationPolicy {
        source: ObjectRef::new(Kind::TrafficPolicy, namespace, name),
        generation: 0,
        host: host.to_string(),
        port: None,
        subsets: vec![],
        load_balancer: None,
        connection_pool: None,
        outlier_detection: None,
        health_check: None,
        tls: None,
    }
}

fn mk_subset(name: &str, labels: &[(&str, &str)]) -> Subset {
    Subset {
        name: name.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn mk_external(
    namespace: &str,
    name: &str,
    hosts: &[&str],
    ports: Vec<ExternalPort>,
    resolution: Resolution,
    endpoints: Vec<ExternalEndpoint>,
) -> ExternalService {
    ExternalService {
        source: ObjectRef::new(Kind::ExternalService, namespace, name),
        generation: 0,
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        ports,
        resolution,
        endpoints,
    }
}

fn mk_external_port(name: &str, number: u16, protocol: ExternalProtocol) -> ExternalPort {
    ExternalPort {
        name: name.to_string(),
        number,
        protocol,
    }
}

fn mk_gateway(
    namespace: &str,
    name: &str,
    cluster: &str,
    listeners: Vec<GatewayListener>,
) -> Gateway {
    Gateway {
        source: ObjectRef::new(Kind::Gateway, namespace, name),
        generation: 0,
        selector: GatewaySelector {
            cluster: Some(cluster.to_string()),
            metadata: Default::default(),
        },
        listeners,
    }
}

fn mk_listener(
    name: &str,
    port: u16,
    protocol: ListenerProtocol,
    hostnames: &[&str],
    secret: Option<(&str, &str)>,
) -> GatewayListener {
    GatewayListener {
        name: name.to_string(),
        port,
        protocol,
        hostnames: hostnames.iter().map(|h| h.to_string()).collect(),
        tls: secret.map(|(namespace, name)| SecretRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }),
    }
}

fn mk_secret(namespace: &str, name: &str) -> TlsSecret {
    TlsSecret {
        source: ObjectRef::new(Kind::Secret, namespace, name),
        cert_chain: format!(
            "-----BEGIN CERTIFICATE-----\n{name}-cert\n-----END CERTIFICATE-----\n"
        ),
        private_key: format!(
            "-----BEGIN PRIVATE KEY-----\n{name}-key\n-----END PRIVATE KEY-----\n"
        ),
    }
}

/// Adds routing objects to a World.
#[derive(Default)]
struct Extra {
    routes: Vec<HttpRoute>,
    policies: Vec<DestinationPolicy>,
    externals: Vec<ExternalService>,
    gateways: Vec<Gateway>,
    secrets: Vec<TlsSecret>,
}

fn with(mut world: World, extra: Extra) -> World {
    for r in extra.routes {
        world.routes.insert(r.source.clone(), Arc::new(r));
    }
    for p in extra.policies {
        world.policies.insert(p.source.clone(), Arc::new(p));
    }
    for e in extra.externals {
        world
            .external_services
            .insert(e.source.clone(), Arc::new(e));
    }
    for g in extra.gateways {
        world.gateways.insert(g.source.clone(), Arc::new(g));
    }
    for s in extra.secrets {
        world.secrets.insert(s.source.clone(), Arc::new(s));
    }
    world
}

/// `reviews` in `default` (http 9080) with three slices labelled version v1, v2, v3.
fn mk_reviews_world() -> World {
    let slice = |version: &str, ip: &str| {
        let mut s = mk_slice(
            "default",
            "reviews",
            &format!("reviews-{version}"),
            vec![mk_endpoint_port("http", 9080)],
            vec![mk_ready(ip, Some("zone-a"))],
        );
        s.labels.insert("version".to_string(), version.to_string());
        s.labels.insert("app".to_string(), "reviews".to_string());
        s
    };
    mk_world(
        vec![mk_service(
            "default",
            "reviews",
            vec![mk_port("http", 9080)],
        )],
        vec![
            slice("v1", "10.0.0.1"),
            slice("v2", "10.0.0.2"),
            slice("v3", "10.0.0.3"),
        ],
    )
}

/// The in-place sort: stable by name, the first of repeated names kept, any permutation.
#[test]
fn sort_by_name_is_stable_and_keeps_the_first_of_repeated_names() {
    let names = ["d", "b", "a", "b", "c", "a", "e", "a"];
    let mut list: Vec<(String, usize)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), i))
        .collect();
    crate::resources::sort_by_name(&mut list, |x| x.0.as_str(), false);
    let order: Vec<usize> = list.iter().map(|x| x.1).collect();
    assert_eq!(order, [2, 5, 7, 1, 3, 4, 0, 6]);
    crate::resources::sort_by_name(&mut list, |x| x.0.as_str(), true);
    let order: Vec<usize> = list.iter().map(|x| x.1).collect();
    assert_eq!(order, [2, 1, 4, 0, 6]);
    for n in 0..7usize {
        // Reversed and rotated lists of every small length (every cycle shape the permutation
        // walks).
        let mut reversed: Vec<String> = (0..n).rev().map(|i| format!("{i}")).collect();
        crate::resources::sort_by_name(&mut reversed, String::as_str, false);
        let mut rotated: Vec<String> = (0..n).map(|i| format!("{}", (i + 3) % n)).collect();
        crate::resources::sort_by_name(&mut rotated, String::as_str, false);
        let want: Vec<String> = (0..n).map(|i| format!("{i}")).collect();
        assert_eq!((reversed, rotated), (want.clone(), want));
    }
}

/// A World big enough for the second thread gives the same output on one thread and on two
/// (services in several namespaces sharing names, endpoints in two zones, a mesh route).
#[test]
fn two_threads_translate_like_one() {
    let n = crate::PARALLEL_MIN_SERVICES + 20;
    let services: Vec<Service> = (0..n)
        .map(|i| {
            mk_service(
                &format!("ns-{}", i % 3),
                &format!("s{}", i / 2),
                vec![mk_port("http", 80)],
            )
        })
        .collect();
    let groups: Vec<EndpointGroup> = services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let zone = Some(if i % 2 == 0 { "a" } else { "b" });
            let endpoints = vec![mk_ready(&format!("10.0.{}.{}", i / 200, i % 200 + 1), zone)];
            let port = vec![mk_endpoint_port("http", 8080)];
            mk_slice(
                &s.key.namespace,
                &s.key.name,
                &format!("{}-x", s.key.name),
                port,
                endpoints,
            )
        })
        .collect();
    let mut world = mk_world(services, groups);
    let route = mk_route(
        "ns-0",
        "r",
        &["s0.ns-0"],
        vec![mk_rule(
            Vec::new(),
            mk_forward(vec![mk_backend("s1.ns-1", None, None, 1)]),
        )],
    );
    world.routes.insert(route.source.clone(), Arc::new(route));
    for key in ["default", "edge;zone=a"] {
        let group = group_of(key);
        let one = crate::translate_on(&world, &group, &Options::default(), 1);
        let two = crate::translate_on(&world, &group, &Options::default(), 2);
        assert_eq!(one.clusters.len(), n);
        assert_eq!(one, two, "{key}");
        let mut memo = crate::Translator::new();
        let shared = memo.translate(&world, &group, &Options::default());
        assert_eq!(shared.to_resources(), one, "{key}: the Translator");
        let again = memo.translate(&world, &group, &Options::default());
        assert_eq!((again.to_resources(), memo.stats().reused), (one, n));
    }
}

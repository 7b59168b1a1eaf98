//! A UDPRoute served by a Gateway API Gateway: the UDP listener binds a UDP socket with
//! Envoy's UDP proxy as its only filter, routing every datagram to one static cluster whose
//! endpoints (the UDP port's, from the Services' EndpointSlices) carry the backends' weights.

use super::*;
use crate::gateway_api_udp::UDP_PROXY;
use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint;
use envoy_types::pb::envoy::config::listener::v3::listener_filter::ConfigType;
use envoy_types::pb::envoy::extensions::filters::udp::udp_proxy::v3::udp_proxy_config::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::udp::udp_proxy::v3::{Route, UdpProxyConfig};
use envoy_types::pb::xds::r#type::matcher::v3::matcher::on_match;
use portolan_model::Index;
use prost::Message;
use serde_json::json;

fn apply(idx: &mut Index, doc: serde_json::Value) {
    let r = portolan_api::Resource::decode(doc)
        .expect("decodes")
        .expect("is read");
    assert!(portolan_api::validate::validate(&r).is_empty());
    idx.apply(portolan_model::convert::to_object(&r));
}

/// A Service with UDP port 53 (and TCP port 53, which a UDPRoute never uses) and a slice of
/// `endpoints` ready addresses.
fn udp_service(idx: &mut Index, name: &str, endpoints: &[&str]) {
    apply(
        idx,
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "infra"},
            "spec": {"ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}),
    );
    let endpoints: Vec<_> = endpoints
        .iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true}}))
        .collect();
    apply(
        idx,
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-1"), "namespace": "infra",
                "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"},
                      {"name": "dns-tcp", "port": 5354, "protocol": "TCP"}]}),
    );
}

fn world() -> Arc<World> {
    let mut idx = Index::new();
    for doc in [
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": "portolan"}, "spec": {"controllerName": "portolan.dev/gateway-controller"}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "infra"},
            "spec": {"gatewayClassName": "portolan", "addresses": [{"type": "IPAddress", "value": "127.0.0.9"}],
                "listeners": [{"name": "dns", "port": 53, "protocol": "UDP"},
                              {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TCPRoute",
            "metadata": {"name": "dns-tcp", "namespace": "infra"},
            "spec": {"parentRefs": [{"name": "gw", "sectionName": "dns-tcp"}],
                "rules": [{"backendRefs": [{"name": "a", "port": 53}]}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "UDPRoute",
            "metadata": {"name": "dns", "namespace": "infra"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [
                {"name": "a", "port": 53, "weight": 3},
                {"name": "b", "port": 53, "weight": 1},
                {"name": "missing", "port": 53},
                {"name": "empty", "port": 53, "weight": 2}]}]}}),
    ] {
        apply(&mut idx, doc);
    }
    udp_service(&mut idx, "a", &["10.0.0.1"]);
    udp_service(&mut idx, "b", &["10.0.0.2", "10.0.0.3"]);
    udp_service(&mut idx, "empty", &[]);
    idx.world()
}

#[test]
fn a_udp_listener_proxies_datagrams_to_a_weighted_cluster() {
    let world = world();
    let out = run_group(&world, "gateway:infra/gw");
    let listener = out
        .listeners
        .iter()
        .find(|l| l.name == "gateway-53-udp")
        .expect("listener gateway-53-udp");
    assert!(listener.udp_listener_config.is_some());
    assert!(listener.filter_chains.is_empty());
    let Some(address::Address::SocketAddress(sa)) =
        listener.address.as_ref().and_then(|a| a.address.clone())
    else {
        panic!("no socket address");
    };
    assert_eq!(sa.protocol, socket_address::Protocol::Udp as i32);
    assert_eq!(sa.address, "127.0.0.9");
    assert_eq!(listener.listener_filters.len(), 1);
    let filter = &listener.listener_filters[0];
    assert_eq!(filter.name, UDP_PROXY);
    let Some(ConfigType::TypedConfig(any)) = &filter.config_type else {
        panic!("no typed config");
    };
    let proxy = UdpProxyConfig::decode(any.value.as_slice()).expect("decodes");
    let Some(RouteSpecifier::Matcher(m)) = proxy.route_specifier else {
        panic!("no matcher");
    };
    let Some(on_match::OnMatch::Action(action)) = m.on_no_match.and_then(|o| o.on_match) else {
        panic!("no action");
    };
    let route =
        Route::decode(action.typed_config.expect("config").value.as_slice()).expect("decodes");
    assert_eq!(route.cluster, "gateway-53|udp");

    let cluster = out
        .clusters
        .iter()
        .find(|c| c.name == "gateway-53|udp")
        .expect("cluster gateway-53|udp");
    let endpoints: Vec<(String, u32, u32)> = cluster
        .load_assignment
        .iter()
        .flat_map(|cla| &cla.endpoints)
        .flat_map(|l| &l.lb_endpoints)
        .filter_map(|e| {
            let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
                return None;
            };
            let Some(address::Address::SocketAddress(sa)) =
                ep.address.as_ref().and_then(|a| a.address.clone())
            else {
                return None;
            };
            let Some(socket_address::PortSpecifier::PortValue(port)) = sa.port_specifier else {
                return None;
            };
            let weight = e.load_balancing_weight.as_ref().map_or(0, |w| w.value);
            Some((sa.address, port, weight))
        })
        .collect();
    // `a` weighs 3 on one endpoint, `b` 1 over two (the UDP port's endpoints, 5353, never
    // the TCP port's); the missing Service (1) and the one without endpoints (2) keep their
    // share on the drop endpoint, port 0, which no socket binds: their sessions are dropped.
    assert_eq!(
        endpoints,
        [
            ("10.0.0.1".to_string(), 5353, 3000),
            ("10.0.0.2".to_string(), 5353, 500),
            ("10.0.0.3".to_string(), 5353, 500),
            ("127.0.0.1".to_string(), 0, 3000),
        ]
    );
}

/// A TCP listener on the UDP listener's port number: both are served, each an Envoy listener
/// of its own (`gateway-53` over TCP, `gateway-53-udp` over UDP), on the same address.
#[test]
fn a_tcp_and_a_udp_listener_share_a_port_number() {
    let world = world();
    let gw = ObjectRef::new(portolan_api::Kind::ApiGateway, "infra", "gw");
    let Some(portolan_model::gateway_api::ApiStatus::Gateway(status)) = world.api_statuses.get(&gw)
    else {
        panic!("no Gateway status");
    };
    for l in &status.listeners {
        for (type_, ok) in [
            ("Accepted", "True"),
            ("Programmed", "True"),
            ("Conflicted", "False"),
        ] {
            assert!(
                l.conditions
                    .iter()
                    .any(|c| c.type_ == type_ && c.status == ok),
                "{}: {:?}",
                l.name,
                l.conditions
            );
        }
    }
    let out = run_group(&world, "gateway:infra/gw");
    let mut names: Vec<&str> = out.listeners.iter().map(|l| l.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["gateway-53", "gateway-53-udp"]);
    let protocol = |name: &str| {
        let l = out
            .listeners
            .iter()
            .find(|l| l.name == name)
            .expect("listener");
        let Some(address::Address::SocketAddress(sa)) =
            l.address.as_ref().and_then(|a| a.address.clone())
        else {
            panic!("no socket address");
        };
        (sa.protocol, sa.address, sa.port_specifier)
    };
    let (tcp, udp) = (protocol("gateway-53"), protocol("gateway-53-udp"));
    assert_eq!(tcp.0, socket_address::Protocol::Tcp as i32);
    assert_eq!(udp.0, socket_address::Protocol::Udp as i32);
    assert_eq!((tcp.1, tcp.2), (udp.1, udp.2), "same address and port");
    let tcp = out
        .listeners
        .iter()
        .find(|l| l.name == "gateway-53")
        .expect("tcp");
    assert_eq!(tcp.filter_chains.len(), 1, "the TCPRoute's chain");
    assert!(tcp.udp_listener_config.is_none());
}

#[test]
fn an_endpoint_change_of_a_udp_backend_is_seen() {
    let world = world();
    let group = group_of("gateway:infra/gw");
    let changed = |names: &[&str]| -> std::collections::BTreeSet<ServiceKey> {
        names.iter().map(|n| ServiceKey::new("infra", *n)).collect()
    };
    assert!(crate::udp_backends_among(&world, &group, &changed(&["b"])));
    assert!(!crate::udp_backends_among(
        &world,
        &group,
        &changed(&["other"])
    ));
    assert!(!crate::udp_backends_among(
        &world,
        &group_of("gateway:infra/none"),
        &changed(&["a"])
    ));
}

//! UDP listeners of Gateway API Gateways (UDPRoute): one Envoy listener `gateway-{port}-udp`
//! per UDP port (a TCP-based listener of the Gateway may have the same port number: its Envoy
//! listener is `gateway-{port}`), bound to the Gateway's address with a UDP socket (`udp_listener_config`), whose
//! only filter is Envoy's UDP proxy (`envoy.filters.udp_listener.udp_proxy`, a listener
//! filter: UDP listeners have no filter chains). Its matcher has no match, only
//! `on_no_match`: every datagram goes to the route's cluster.
//!
//! The UDP proxy's route names one cluster (it has no weighted clusters), so the weights of a
//! UDPRoute's backendRefs become endpoint weights inside one static cluster
//! `gateway-{port}|udp`: each backend's weight is shared among its endpoints (the UDP port
//! of its Service, from the Service's EndpointSlices), so the whole backend gets its share of
//! new sessions (a session is a client address and port). A backend that did not resolve, has
//! no UDP port there or no endpoints keeps its share, as the spec requires ("packet drops must
//! respect weight"): that share goes to one endpoint at [`DROP_ADDRESS`] port 0, where no
//! socket can ever be bound, so the sessions the proxy sends there are dropped by the kernel.
//!
//! The cluster holds its endpoints inline, so a rebuild that replaces only the Services'
//! ClusterLoadAssignments after an endpoint change cannot update it: such a rebuild asks
//! [`udp_backends_among`] first and rebuilds in full when it says yes.

use crate::ProxyGroup;
use crate::address::{socket_address, udp_socket_address};
use crate::cluster;
use crate::context::Context;
use crate::endpoint;
use crate::names;
use crate::provenance::{Entry, ResourceKind, origins};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbPolicy,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Listener, ListenerFilter, UdpListenerConfig, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::udp::udp_proxy::v3::{
    Route, UdpProxyConfig, udp_proxy_config,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use envoy_types::pb::xds::core::v3::TypedExtensionConfig;
use envoy_types::pb::xds::r#type::matcher::v3::Matcher;
use envoy_types::pb::xds::r#type::matcher::v3::matcher::{OnMatch, on_match};
use envoy_types::util::pack_any;
use portolan_api::{Kind, ObjectRef};
use portolan_model::gateway_api::{ApiChain, ChainKind, INVALID_BACKEND_HOST};
use portolan_model::routing::Backend;
use portolan_model::{Protocol, ServiceKey, World};
use std::collections::BTreeSet;

/// Well-known name of the UDP proxy listener filter.
pub(crate) const UDP_PROXY: &str = "envoy.filters.udp_listener.udp_proxy";

/// Endpoint weights are a backend's weight times this, shared among its endpoints (so that a
/// backend of weight 1 with up to this many endpoints still weighs 1 per endpoint).
const WEIGHT_SCALE: u64 = 1000;

/// Where the sessions of invalid backends go: port 0 of the loopback address, which no socket
/// can bind, so their datagrams are dropped.
const DROP_ADDRESS: &str = "127.0.0.1";

/// Whether one of `services` is a backend of a UDP port of the Gateway API Gateway whose
/// proxies are `group` (its endpoints are inline in that port's cluster, see the module doc).
pub fn udp_backends_among(
    world: &World,
    group: &ProxyGroup,
    services: &BTreeSet<ServiceKey>,
) -> bool {
    let Some(gateway) = crate::gateway_api::selecting(world, group) else {
        return false;
    };
    gateway
        .ports
        .iter()
        .filter(|p| p.udp)
        .flat_map(|p| &p.chains)
        .flat_map(|c| match &c.kind {
            ChainKind::Passthrough { backends } => backends.as_slice(),
            ChainKind::Terminate { .. } => &[],
        })
        .filter_map(|b| b.destination.host.split_once('.'))
        .any(|(name, namespace)| services.contains(&ServiceKey::new(namespace, name)))
}

/// The listener of UDP port `port` and its cluster (with the provenance of both: `owners`, the
/// Gateway and/or ListenerSets whose listener it is, and the cluster's backends).
pub(crate) fn udp_port(
    ctx: &Context<'_>,
    owners: &[ObjectRef],
    address: &str,
    port: u16,
    chains: &[ApiChain],
) -> (Listener, Cluster, Vec<Entry>) {
    let name = names::gateway_udp_listener_name(port);
    let cluster_name = names::gateway_udp_cluster_name(port);
    let backends: &[Backend] = chains
        .iter()
        .find_map(|c| match &c.kind {
            ChainKind::Passthrough { backends } => Some(backends.as_slice()),
            ChainKind::Terminate { .. } => None,
        })
        .unwrap_or_default();
    let (cluster, objects) = cluster(ctx, &cluster_name, backends);
    let proxy = UdpProxyConfig {
        stat_prefix: names::gateway_udp_stat_prefix(port),
        route_specifier: Some(udp_proxy_config::RouteSpecifier::Matcher(to_cluster(
            &cluster_name,
        ))),
        ..Default::default()
    };
    let listener = Listener {
        name: name.clone(),
        address: Some(udp_socket_address(address, port)),
        udp_listener_config: Some(UdpListenerConfig::default()),
        listener_filters: vec![ListenerFilter {
            name: UDP_PROXY.to_string(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(proxy))),
            ..Default::default()
        }],
        ..Default::default()
    };
    let entries = vec![
        Entry::new(
            ResourceKind::Listener,
            &name,
            origins(owners.iter().cloned()),
        )
        .on_port(port),
        Entry::new(
            ResourceKind::Cluster,
            &cluster_name,
            origins(owners.iter().cloned().chain(objects)),
        )
        .on_port(port),
    ];
    (listener, cluster, entries)
}

/// A matcher that sends every datagram to `cluster`.
fn to_cluster(cluster: &str) -> Matcher {
    let route = Route {
        cluster: cluster.to_string(),
    };
    Matcher {
        on_no_match: Some(Box::new(OnMatch {
            on_match: Some(on_match::OnMatch::Action(TypedExtensionConfig {
                name: "route".to_string(),
                typed_config: Some(pack_any(route)),
            })),
            keep_matching: false,
        })),
        matcher_type: None,
    }
}

/// The static cluster of a UDPRoute's backends and the objects behind it (Services and
/// EndpointSlices).
fn cluster(ctx: &Context<'_>, name: &str, backends: &[Backend]) -> (Cluster, Vec<ObjectRef>) {
    let mut objects = Vec::new();
    let mut shares: Vec<(u32, Vec<LocalityLbEndpoints>)> = Vec::new();
    let mut dropped = 0u32;
    for b in backends {
        match backend_endpoints(ctx, b) {
            Some((cla, from)) if has_endpoints(&cla.endpoints) => {
                objects.extend(from);
                shares.push((b.weight, cla.endpoints));
            }
            Some((_, from)) => {
                objects.extend(from);
                dropped = dropped.saturating_add(b.weight);
            }
            None => dropped = dropped.saturating_add(b.weight),
        }
    }
    if dropped > 0 {
        shares.push((dropped, vec![drop_locality()]));
    }
    let load_assignment = ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: weighted(shares),
        ..Default::default()
    };
    let cluster = Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(cluster::duration(ctx.options.connect_timeout)),
        lb_policy: LbPolicy::RoundRobin as i32,
        load_assignment: Some(load_assignment),
        ..Default::default()
    };
    (cluster, objects)
}

/// The endpoints of the UDP Service port a backend names (its only UDP port when it names
/// none), and the Service and EndpointSlices behind them; `None` when it does not resolve.
fn backend_endpoints(
    ctx: &Context<'_>,
    b: &Backend,
) -> Option<(ClusterLoadAssignment, Vec<ObjectRef>)> {
    let host = &b.destination.host;
    if host == INVALID_BACKEND_HOST {
        return None;
    }
    let (name, namespace) = host.split_once('.')?;
    let key = ServiceKey::new(namespace, name);
    let service = ctx.world.services.get(&key)?;
    let mut udp = service.ports.iter().filter(|p| p.protocol == Protocol::Udp);
    let port = match b.destination.port {
        Some(n) => udp.find(|p| p.port == n)?,
        None => {
            let only = udp.next()?;
            if udp.next().is_some() {
                return None;
            }
            only
        }
    };
    let groups = ctx.world.endpoints_of(&key);
    let cla = endpoint::load_assignment("", service, port, groups.iter().map(AsRef::as_ref));
    let objects = std::iter::once(ObjectRef::new(Kind::Service, namespace, name))
        .chain(groups.iter().map(|g| g.source.clone()))
        .collect();
    Some((cla, objects))
}

fn has_endpoints(localities: &[LocalityLbEndpoints]) -> bool {
    localities.iter().any(|l| !l.lb_endpoints.is_empty())
}

/// The one endpoint that takes the share of invalid backends (see [`DROP_ADDRESS`]).
fn drop_locality() -> LocalityLbEndpoints {
    LocalityLbEndpoints {
        lb_endpoints: vec![LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(socket_address(DROP_ADDRESS, 0)),
                ..Default::default()
            })),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// One locality list: each backend's endpoints weighted so that together they carry the
/// backend's weight (Envoy balances new sessions over endpoint weights).
fn weighted(shares: Vec<(u32, Vec<LocalityLbEndpoints>)>) -> Vec<LocalityLbEndpoints> {
    let mut out: Vec<LocalityLbEndpoints> = Vec::new();
    for (weight, localities) in shares {
        let count: usize = localities.iter().map(|l| l.lb_endpoints.len()).sum();
        let Ok(count) = u64::try_from(count) else {
            continue;
        };
        if count == 0 || weight == 0 {
            continue;
        }
        let each = (u64::from(weight) * WEIGHT_SCALE / count).max(1);
        let each = u32::try_from(each).unwrap_or(u32::MAX);
        for mut locality in localities {
            for e in &mut locality.lb_endpoints {
                e.load_balancing_weight = Some(UInt32Value { value: each });
            }
            match out.iter_mut().find(|l| l.locality == locality.locality) {
                Some(same) => same.lb_endpoints.extend(locality.lb_endpoints),
                None => out.push(locality),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locality(n: usize) -> Vec<LocalityLbEndpoints> {
        vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint::default(); n],
            ..Default::default()
        }]
    }

    fn weights(l: &[LocalityLbEndpoints]) -> Vec<u32> {
        l.iter()
            .flat_map(|l| &l.lb_endpoints)
            .map(|e| e.load_balancing_weight.as_ref().map_or(0, |w| w.value))
            .collect()
    }

    #[test]
    fn a_backend_weight_is_shared_among_its_endpoints() {
        // 50/50 between a backend with one endpoint and one with two: 1000 vs 500 + 500.
        let out = weighted(vec![(1, locality(1)), (1, locality(2))]);
        assert_eq!(weights(&out), [1000, 500, 500]);
        // Weight 0 and backends without endpoints add nothing.
        let out = weighted(vec![(3, locality(1)), (0, locality(1)), (1, locality(0))]);
        assert_eq!(weights(&out), [3000]);
    }

    #[test]
    fn every_datagram_goes_to_the_cluster() {
        let m = to_cluster("gateway-53|udp");
        let Some(on_no_match) = m.on_no_match else {
            panic!("no on_no_match");
        };
        let Some(on_match::OnMatch::Action(action)) = on_no_match.on_match else {
            panic!("no action");
        };
        assert_eq!(action.name, "route");
        let any = action.typed_config.expect("typed config");
        assert!(
            any.type_url.ends_with("udp_proxy.v3.Route"),
            "{}",
            any.type_url
        );
        assert!(m.matcher_type.is_none());
    }
}

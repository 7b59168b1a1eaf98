//! The outbound listener of a sidecar whose pod's connections are captured (`portolan
//! capture`): every connection the application opens is redirected to it, and its original
//! destination decides what happens.
//!
//! The `mesh-outbound` listener of a mesh workload group restores the original destination
//! (listener filter `original_dst`) and matches filter chains on it:
//!
//! * the listener's own port (an application calling the sidecar directly with a Host
//!   header, as before capture): the HTTP connection manager over the `mesh-outbound` routes;
//! * `ClusterIP:port` of an HTTP Service port (see `protocol::is_http`): the same HTTP
//!   connection manager, so requests are routed by Host (`reviews`, `reviews.default`, the
//!   FQDN, the ClusterIP, each with `:port`) with every route and policy; one chain per port
//!   number (`http:9080`) holds the ClusterIPs of every Service with an HTTP port of that
//!   number;
//! * `ClusterIP:port` of a TCP Service port: a TCP proxy to the port's cluster, or to the
//!   weighted backends of the first TCP rule for the port of the mesh TrafficRoute of the
//!   Service;
//! * in registry-only mode, the HTTP ports of ExternalServices (by port: their addresses are
//!   DNS's) and the endpoint addresses of Services (a pod IP is in the registry; on every port
//!   another chain names, and on the rest, since Envoy matches the port first): HTTP by
//!   Host, and passed through, respectively;
//! * anything else (the default chain): passed through to where it was going
//!   ([`PASSTHROUGH_CLUSTER`], an ORIGINAL_DST cluster) with [`OutboundPolicy::AllowAny`],
//!   or closed ([`BLACKHOLE_CLUSTER`], no endpoints) with [`OutboundPolicy::RegistryOnly`]:
//!   the group's choice (node metadata `portolan.dev/outbound-traffic-policy`), else the
//!   server's.
//!
//! A call to a pod IP is not a ClusterIP: it reaches that pod (passed through), not the
//! Service's routes. Chains are unique by (address, port): the first Service (by namespace
//! and name) holding a ClusterIP and port keeps it.

use crate::Options;
use crate::address::socket_address;
use crate::cluster::duration;
use crate::context::{Context, VirtualHostTarget};
use crate::external::ExternalPlan;
use crate::filters;
use crate::lookup::{self, TargetId};
use crate::names;
use crate::protocol;
use crate::provenance::{Entry, ResourceKind, origins};
use crate::service::{PortPlan, ServicePlan};
use crate::tcp;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbPolicy,
};
use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::google::protobuf::UInt32Value;
use envoy_types::util::pack_any;
use portolan_model::World;
use portolan_model::routing::{HttpRoute, Parent};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

/// The ORIGINAL_DST cluster captured connections to unknown destinations pass through.
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
/// The cluster without endpoints refused connections go to (Envoy closes them).
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
/// Well-known name of the original destination listener filter.
pub(crate) const ORIGINAL_DST: &str = "envoy.filters.listener.original_dst";

/// What a sidecar does with a captured connection to a destination Portolan does not know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutboundPolicy {
    /// Pass it through to where it was going (Istio's `ALLOW_ANY`).
    #[default]
    AllowAny,
    /// Close it: only Services, their endpoints and ExternalServices are reachable.
    RegistryOnly,
}

/// The capture-aware outbound listener of a workload group on `port` (with the group's
/// outbound traffic policy, else the server's), the clusters its default chain uses, and its
/// provenance (the TrafficRoutes whose TCP rules it holds).
pub(crate) fn outbound(
    ctx: &Context<'_>,
    externals: &[ExternalPlan<'_>],
    port: u16,
    group_policy: Option<OutboundPolicy>,
) -> (Listener, Vec<Cluster>, Entry) {
    let options = ctx.options;
    let policy = group_policy.unwrap_or(options.mesh.outbound_policy);
    let hcm = || {
        filters::http_connection_manager(
            names::MESH_STAT_PREFIX,
            names::MESH_ROUTE,
            &options.telemetry,
        )
    };
    let mut chains = vec![chain(
        "direct",
        FilterChainMatch {
            destination_port: Some(u32_value(port)),
            ..Default::default()
        },
        hcm(),
    )];
    let tcp_routes = mesh_tcp_routes(ctx.world);
    let mut used_routes = BTreeSet::new();
    let mut taken = HashSet::from([(None, port)]);
    // Every HTTP chain has the same filter: one chain per port, holding every ClusterIP
    // with an HTTP Service port of that number (a chain per Service would repeat the HTTP
    // connection manager thousands of times).
    let mut http: BTreeMap<u16, Vec<IpAddr>> = BTreeMap::new();
    let mut tcp_chains = Vec::new();
    for plan in ctx.plans.iter().filter(|p| ctx.admits_service(p)) {
        let Some(ip) = cluster_ip(plan) else {
            continue;
        };
        for port_plan in &plan.ports {
            let number = port_plan.port.port;
            if !taken.insert((Some(ip), number)) {
                continue;
            }
            if protocol::is_http(port_plan.port) {
                http.entry(number).or_default().push(ip);
                continue;
            }
            let route = tcp_routes.get(&TargetId::Service(plan.service.key.clone()));
            used_routes.extend(route.map(|r| r.source.clone()));
            let filter = tcp_filter(ctx, plan, port_plan, route.map(Arc::as_ref));
            let matching = FilterChainMatch {
                destination_port: Some(u32_value(number)),
                prefix_ranges: vec![cidr(ip)],
                ..Default::default()
            };
            let name = names::host_port(&ip.to_string(), number);
            tcp_chains.push(chain(&name, matching, filter));
        }
    }
    for (number, mut ips) in http {
        ips.sort_unstable();
        let matching = FilterChainMatch {
            destination_port: Some(u32_value(number)),
            prefix_ranges: ips.into_iter().map(cidr).collect(),
            ..Default::default()
        };
        chains.push(chain(&format!("http:{number}"), matching, hcm()));
    }
    chains.extend(tcp_chains);
    if policy == OutboundPolicy::RegistryOnly {
        registry_chains(ctx, externals, &mut taken, &mut chains, hcm);
    }
    let (default_name, cluster) = match policy {
        OutboundPolicy::AllowAny => ("passthrough", passthrough_cluster(options)),
        OutboundPolicy::RegistryOnly => ("blackhole", blackhole_cluster(options)),
    };
    let default = chain(
        default_name,
        FilterChainMatch::default(),
        tcp::proxy(&cluster.name, vec![(cluster.name.clone(), 1)]),
    );
    let mut clusters = vec![cluster];
    if policy == OutboundPolicy::RegistryOnly {
        clusters.push(passthrough_cluster(options));
    }
    let listener = Listener {
        name: names::MESH_LISTENER.to_string(),
        address: Some(socket_address(&options.mesh_listener_address, port)),
        listener_filters: vec![ListenerFilter {
            name: ORIGINAL_DST.to_string(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
                OriginalDst::default(),
            ))),
            ..Default::default()
        }],
        filter_chains: chains,
        default_filter_chain: Some(default),
        ..Default::default()
    };
    let entry = Entry::new(
        ResourceKind::Listener,
        names::MESH_LISTENER,
        origins(used_routes),
    );
    (listener, clusters, entry)
}

/// Registry-only additions: HTTP ports of ExternalServices (routed by Host; a host that is
/// none of them gets 404), and the Services' endpoint addresses (passed through).
fn registry_chains(
    ctx: &Context<'_>,
    externals: &[ExternalPlan<'_>],
    taken: &mut HashSet<(Option<IpAddr>, u16)>,
    chains: &mut Vec<FilterChain>,
    hcm: impl Fn() -> Filter,
) {
    let ports: BTreeSet<u16> = externals
        .iter()
        .filter(|e| e.is_http() && ctx.admits_external(e))
        .map(|e| e.port.number)
        .collect();
    for port in ports {
        if taken.insert((None, port)) {
            let matching = FilterChainMatch {
                destination_port: Some(u32_value(port)),
                ..Default::default()
            };
            chains.push(chain(&format!("external:{port}"), matching, hcm()));
        }
    }
    let cluster_ips: HashSet<IpAddr> = taken.iter().filter_map(|(ip, _)| *ip).collect();
    let mut pods = BTreeSet::new();
    for plan in ctx.plans.iter().filter(|p| ctx.admits_service(p)) {
        for group in ctx.world.endpoints_of(&plan.service.key) {
            let addresses = group.subsets.iter().flat_map(|s| &s.endpoints);
            pods.extend(addresses.filter_map(|e| e.address.parse::<IpAddr>().ok()));
        }
    }
    pods.retain(|ip| !cluster_ips.contains(ip));
    if pods.is_empty() {
        return;
    }
    // Envoy picks the chains of a connection's port first and never falls back to port-less
    // chains from there: the endpoints are matched on every port another chain names, and
    // on the rest.
    let ports: BTreeSet<u16> = taken.iter().map(|(_, port)| *port).collect();
    let ranges: Vec<CidrRange> = pods.into_iter().map(cidr).collect();
    let pass = || tcp::proxy(PASSTHROUGH_CLUSTER, vec![(PASSTHROUGH_CLUSTER.into(), 1)]);
    for port in ports.into_iter().map(Some).chain([None]) {
        let matching = FilterChainMatch {
            destination_port: port.map(u32_value),
            prefix_ranges: ranges.clone(),
            ..Default::default()
        };
        let name = match port {
            Some(port) => format!("endpoints:{port}"),
            None => "endpoints".to_string(),
        };
        chains.push(chain(&name, matching, pass()));
    }
}

/// The TCP proxy of a captured connection to a TCP Service port.
fn tcp_filter(
    ctx: &Context<'_>,
    plan: &ServicePlan<'_>,
    port: &PortPlan<'_>,
    route: Option<&HttpRoute>,
) -> Filter {
    let vhost = VirtualHostTarget {
        target: TargetId::Service(plan.service.key.clone()),
        port: port.port.port,
    };
    let backends = route
        .and_then(|r| tcp::backends(ctx, r, port.port.port, Some(&vhost)))
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| vec![(port.cluster.clone(), 1)]);
    tcp::proxy(&port.cluster, backends)
}

/// The mesh route with TCP rules of each Service: the first by (namespace, name) whose host
/// resolves (in its namespace) to it.
fn mesh_tcp_routes(world: &World) -> BTreeMap<TargetId, Arc<HttpRoute>> {
    let mut routed: BTreeMap<TargetId, Arc<HttpRoute>> = BTreeMap::new();
    let owners = lookup::route_owners(world, &Parent::Mesh);
    for (host, route) in owners.into_iter().filter(|(_, r)| !r.tcp.is_empty()) {
        let Some(target) = lookup::target_id(world, &route.source.namespace, &host) else {
            continue;
        };
        routed
            .entry(target)
            .and_modify(|r| {
                if route.source < r.source {
                    *r = Arc::clone(&route);
                }
            })
            .or_insert(route);
    }
    routed
}

/// The Service's ClusterIP, when it has one that is an IP address.
fn cluster_ip(plan: &ServicePlan<'_>) -> Option<IpAddr> {
    plan.service.cluster_ip.as_deref()?.parse().ok()
}

fn chain(name: &str, matching: FilterChainMatch, filter: Filter) -> FilterChain {
    FilterChain {
        name: name.to_string(),
        filter_chain_match: Some(matching),
        filters: vec![filter],
        ..Default::default()
    }
}

/// The one address `ip` as a range (`/32` or `/128`).
fn cidr(ip: IpAddr) -> CidrRange {
    let len = if ip.is_ipv4() { 32 } else { 128 };
    CidrRange {
        address_prefix: ip.to_string(),
        prefix_len: Some(UInt32Value { value: len }),
    }
}

fn u32_value(port: u16) -> UInt32Value {
    UInt32Value {
        value: u32::from(port),
    }
}

/// Connections to their original destination (the proxy's own connections are not captured,
/// so they leave the pod unchanged).
fn passthrough_cluster(options: &Options) -> Cluster {
    Cluster {
        name: PASSTHROUGH_CLUSTER.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(duration(options.connect_timeout)),
        ..Default::default()
    }
}

/// A cluster without endpoints: a TCP proxy to it closes the connection.
fn blackhole_cluster(options: &Options) -> Cluster {
    Cluster {
        name: BLACKHOLE_CLUSTER.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(duration(options.connect_timeout)),
        ..Default::default()
    }
}

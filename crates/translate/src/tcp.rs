//! TCP proxying. Gateway TCP listeners: a TCP proxy to the backends of the first TrafficRoute
//! (by namespace and name) attached to a gateway on this port with a TCP rule for the port (or
//! for every port). Without one, connections go to a cluster that does not exist and are
//! closed. Captured connections to a TCP Service port use the same weighted backends
//! ([`backends`], [`proxy`]) from the mesh route of their Service (see `capture.rs`).

use crate::actions::merge_weights;
use crate::context::{Context, VirtualHostTarget};
use crate::lookup::attaches_to;
use crate::names;
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy::{
    ClusterSpecifier, WeightedCluster, weighted_cluster::ClusterWeight,
};
use envoy_types::util::pack_any;
use portolan_model::routing::{HttpRoute, Parent};

/// Well-known name of the TCP proxy network filter.
pub(crate) const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";

/// The TCP proxy filter of a gateway port whose listeners belong to `parents`.
pub(crate) fn tcp_proxy(ctx: &Context<'_>, parents: &[Parent], port: u16) -> Filter {
    let backends = ctx
        .world
        .routes
        .values()
        .filter(|r| parents.iter().any(|p| attaches_to(r, p)))
        .find_map(|r| backends(ctx, r, port, None).filter(|b| !b.is_empty()))
        .unwrap_or_else(|| vec![(names::unrouted_cluster_name(port), 1)]);
    proxy(&names::gateway_stat_prefix(port), backends)
}

/// A TCP proxy filter to weighted `backends` (cluster, weight).
pub(crate) fn proxy(stat_prefix: &str, backends: Vec<(String, u32)>) -> Filter {
    let proxy = TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(cluster_specifier(backends)),
        ..Default::default()
    };
    Filter {
        name: TCP_PROXY.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(proxy))),
    }
}

/// The weighted clusters of the route's first TCP rule for `port` (a backend naming the
/// host of `vhost` without a port gets its port).
pub(crate) fn backends(
    ctx: &Context<'_>,
    route: &HttpRoute,
    port: u16,
    vhost: Option<&VirtualHostTarget>,
) -> Option<Vec<(String, u32)>> {
    let rule = route
        .tcp
        .iter()
        .find(|t| t.port.is_none_or(|p| p == port))?;
    let namespace = &route.source.namespace;
    Some(
        rule.backends
            .iter()
            .map(|b| {
                (
                    ctx.resolve(namespace, &b.destination, vhost).cluster,
                    b.weight,
                )
            })
            .collect(),
    )
}

pub(crate) fn cluster_specifier(backends: Vec<(String, u32)>) -> ClusterSpecifier {
    let merged = merge_weights(backends);
    if let [(only, _)] = merged.as_slice() {
        return ClusterSpecifier::Cluster(only.clone());
    }
    ClusterSpecifier::WeightedClusters(WeightedCluster {
        clusters: merged
            .into_iter()
            .map(|(name, weight)| ClusterWeight {
                name,
                weight,
                ..Default::default()
            })
            .collect(),
    })
}

//! Small, real Envoy resources for tests (here and in other crates' tests).
//!
//! Clusters use EDS over ADS, listeners use an HTTP connection manager with RDS over ADS, and each
//! listener's route configuration has the listener's name and routes `/` to one cluster.

use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig},
};
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress, address,
    config_source::ConfigSourceSpecifier, socket_address::PortSpecifier,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, Rds, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

use crate::{ResourceType, Snapshot};

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

fn socket(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

/// An EDS cluster whose endpoints come over ADS.
pub fn cluster(name: &str) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        }),
        ..Default::default()
    }
}

/// A ClusterLoadAssignment with one endpoint, 127.0.0.1:`port`.
pub fn cla(name: &str, port: u32) -> ClusterLoadAssignment {
    let endpoint = LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(socket("127.0.0.1", port)),
            ..Default::default()
        })),
        ..Default::default()
    };
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![endpoint],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A listener on 0.0.0.0:15001 with an HTTP connection manager using RDS `route_config`.
pub fn listener(name: &str, route_config: &str) -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: name.to_string(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route_config.to_string(),
        })),
        ..Default::default()
    };
    let any = Any {
        type_url: HttpConnectionManager::type_url(),
        value: hcm.encode_to_vec(),
    };
    Listener {
        name: name.to_string(),
        address: Some(socket("0.0.0.0", 15001)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(any)),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A route configuration sending every request to `cluster`.
pub fn route_config(name: &str, cluster: &str) -> RouteConfiguration {
    let route = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.to_string())),
            ..Default::default()
        })),
        ..Default::default()
    };
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: "all".to_string(),
            domains: vec!["*".to_string()],
            routes: vec![route],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A snapshot with one EDS cluster and CLA per `(name, endpoint port)`, and one listener and route
/// configuration per `(listener name, cluster it routes to)`.
///
/// # Panics
/// When the resources are inconsistent (a test bug).
pub fn snapshot_with(clusters: &[(&str, u32)], listeners: &[(&str, &str)]) -> Snapshot {
    let mut builder = Snapshot::builder();
    for (name, port) in clusters {
        builder
            .add(ResourceType::Cluster, *name, &cluster(name))
            .add(ResourceType::Endpoint, *name, &cla(name, *port));
    }
    for (name, target) in listeners {
        builder
            .add(ResourceType::Listener, *name, &listener(name, name))
            .add(ResourceType::Route, *name, &route_config(name, target));
    }
    match builder.build() {
        Ok(snapshot) => snapshot,
        Err(error) => panic!("inconsistent test snapshot: {error}"),
    }
}

/// [`snapshot_with`] with endpoint port 8080 and every listener routing to the first cluster.
pub fn snapshot_of(clusters: &[&str], listeners: &[&str]) -> Snapshot {
    let target = clusters.first().copied().unwrap_or("none");
    let clusters: Vec<_> = clusters.iter().map(|c| (*c, 8080)).collect();
    let listeners: Vec<_> = listeners.iter().map(|l| (*l, target)).collect();
    snapshot_with(&clusters, &listeners)
}

/// Publishes `snapshots` one after the other in one group of a new [`crate::Cache`], as the
/// wiring does: each gets its id and, from the second on, its change sets against the one
/// before it.
pub fn published(snapshots: impl IntoIterator<Item = Snapshot>) -> Vec<std::sync::Arc<Snapshot>> {
    let cache = crate::Cache::new();
    snapshots
        .into_iter()
        .filter_map(|snapshot| {
            cache.set("test", snapshot);
            cache.get("test")
        })
        .collect()
}

/// Snapshots that differ in some types and not others (so a stream's types go quiet and wake
/// up), for randomized state-machine sequences.
pub fn snapshot_pool() -> Vec<std::sync::Arc<Snapshot>> {
    [
        (vec![("a", 1), ("b", 2)], vec![("l", "a")]),
        (vec![("a", 1), ("b", 3)], vec![("l", "a")]),
        (vec![("a", 1)], vec![("l", "a")]),
        (vec![("a", 1), ("c", 4)], vec![("l", "c"), ("m", "a")]),
        (vec![("a", 5), ("b", 2), ("c", 4)], vec![("l", "b")]),
    ]
    .into_iter()
    .map(|(clusters, listeners)| std::sync::Arc::new(snapshot_with(&clusters, &listeners)))
    .collect()
}

/// A small deterministic generator (xorshift64) for randomized test sequences.
#[derive(Debug)]
pub struct Steps(u64);

impl Steps {
    /// A sequence for `seed` (any value; 0 is moved off the generator's fixed point).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The name inside an encoded Cluster, ClusterLoadAssignment, Listener, RouteConfiguration or
/// Secret.
pub fn any_name(any: &Any) -> Option<String> {
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment as Cla;
    let bytes = any.value.as_slice();
    match ResourceType::from_type_url(&any.type_url)? {
        ResourceType::Cluster => Cluster::decode(bytes).ok().map(|m| m.name),
        ResourceType::Endpoint => Cla::decode(bytes).ok().map(|m| m.cluster_name),
        ResourceType::Listener => Listener::decode(bytes).ok().map(|m| m.name),
        ResourceType::Route => RouteConfiguration::decode(bytes).ok().map(|m| m.name),
        ResourceType::Secret => {
            envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret::decode(bytes)
                .ok()
                .map(|m| m.name)
        }
        ResourceType::VirtualHost => {
            envoy_types::pb::envoy::config::route::v3::VirtualHost::decode(bytes)
                .ok()
                .map(|m| m.name)
        }
    }
}

/// The names of the resources in a SotW response, in order.
pub fn response_names(
    response: &envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse,
) -> Vec<String> {
    response.resources.iter().filter_map(any_name).collect()
}

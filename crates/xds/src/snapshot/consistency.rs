//! What a resource needs from the rest of its snapshot, and the check that it is there.
//!
//! A snapshot is consistent when no two resources of a type share a name, every EDS cluster
//! has its ClusterLoadAssignment, and every RDS route configuration named by a listener
//! exists. The names a resource needs (a cluster's EDS service name, a listener's RDS route
//! configurations) are read from its typed message before it is encoded ([`super::Encoded`]),
//! so the check decodes nothing; a resource added already encoded is decoded for the check.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{ClusterDiscoveryType, DiscoveryType},
};
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener, filter::ConfigType};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use prost::{Message, Name};

use crate::resource::{Resource, ResourceType};

/// Why a snapshot was refused. Every variant names the offending resource.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SnapshotError {
    #[error("duplicate {ty} resource {name:?}")]
    Duplicate { ty: ResourceType, name: String },
    #[error("{ty} resource {name:?} has type {actual}, expected {expected}")]
    WrongType {
        ty: ResourceType,
        name: String,
        actual: String,
        expected: &'static str,
    },
    #[error("cluster {cluster:?} uses EDS but ClusterLoadAssignment {service_name:?} is missing")]
    MissingEndpoints {
        cluster: String,
        service_name: String,
    },
    #[error("listener {listener:?} uses RDS but RouteConfiguration {route_config:?} is missing")]
    MissingRouteConfig {
        listener: String,
        route_config: String,
    },
    #[error("{ty} resource {name:?} does not decode: {message}")]
    Decode {
        ty: ResourceType,
        name: String,
        message: String,
    },
}

/// A resource as the check sees it; `needs` is `None` when it came encoded (the check decodes
/// it, and so does [`vhds_route_configs`]).
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) resource: Arc<Resource>,
    pub(super) needs: Option<Arc<[String]>>,
    /// A route configuration with `vhds` set (read with `needs`).
    pub(super) vhds: bool,
}

/// Per type, the entries in name order.
pub(super) type Entries = [Vec<Entry>; ResourceType::COUNT];
/// Per type, the resources by name.
pub(super) type Maps = [BTreeMap<String, Arc<Resource>>; ResourceType::COUNT];

/// The first name used twice within a type; `entries` are in name order.
pub(super) fn check_unique(entries: &Entries) -> Result<(), SnapshotError> {
    for (ty, entries) in ResourceType::SERVED.into_iter().zip(entries) {
        if let Some(pair) = entries
            .windows(2)
            .find(|w| w[0].resource.name() == w[1].resource.name())
        {
            return Err(SnapshotError::Duplicate {
                ty,
                name: pair[1].resource.name().to_string(),
            });
        }
    }
    Ok(())
}

/// Checks what every cluster and listener needs against `maps`, and returns the route
/// configurations that take their virtual hosts over VHDS.
pub(super) fn check(entries: &Entries, maps: &Maps) -> Result<BTreeSet<String>, SnapshotError> {
    check_clusters(entries, maps)?;
    check_listeners(entries, maps)?;
    vhds_route_configs(entries)
}

fn decode<M: Message + Default>(ty: ResourceType, resource: &Resource) -> Result<M, SnapshotError> {
    M::decode(&resource.value()[..]).map_err(|e| SnapshotError::Decode {
        ty,
        name: resource.name().to_string(),
        message: e.to_string(),
    })
}

/// Every EDS cluster's ClusterLoadAssignment exists.
fn check_clusters(entries: &Entries, maps: &Maps) -> Result<(), SnapshotError> {
    let read = |entry: &Entry| {
        let cluster: Cluster = decode(ResourceType::Cluster, &entry.resource)?;
        Ok(eds_service_name(entry.resource.name(), &cluster)
            .into_iter()
            .collect())
    };
    let missing = |cluster: &str, service_name: &str| SnapshotError::MissingEndpoints {
        cluster: cluster.to_string(),
        service_name: service_name.to_string(),
    };
    check_needs(
        entries,
        maps,
        ResourceType::Cluster,
        ResourceType::Endpoint,
        read,
        missing,
    )
}

/// Every entry of type `ty` finds each name it needs among the resources of type `target`.
/// `read` decodes the names an entry added encoded needs; `missing` names the one not found.
fn check_needs(
    entries: &Entries,
    maps: &Maps,
    ty: ResourceType,
    target: ResourceType,
    read: impl Fn(&Entry) -> Result<Vec<String>, SnapshotError>,
    missing: impl Fn(&str, &str) -> SnapshotError,
) -> Result<(), SnapshotError> {
    let targets = &maps[target.index()];
    for entry in &entries[ty.index()] {
        let decoded: Vec<String>;
        let needs: &[String] = match &entry.needs {
            Some(needs) => needs,
            None => {
                decoded = read(entry)?;
                &decoded
            }
        };
        if let Some(name) = needs.iter().find(|n| !targets.contains_key(*n)) {
            return Err(missing(entry.resource.name(), name));
        }
    }
    Ok(())
}

/// The ClusterLoadAssignment an EDS cluster named `name` needs: its EDS service name, or its
/// name when that is empty. `None` for other discovery types.
pub(super) fn eds_service_name(name: &str, cluster: &Cluster) -> Option<String> {
    let eds = cluster.cluster_discovery_type
        == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
    if !eds {
        return None;
    }
    let service_name = cluster
        .eds_cluster_config
        .as_ref()
        .map(|c| c.service_name.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or(name);
    Some(service_name.to_string())
}

/// Every RDS route configuration named by a listener's HTTP connection manager exists.
fn check_listeners(entries: &Entries, maps: &Maps) -> Result<(), SnapshotError> {
    let read = |entry: &Entry| {
        let listener: Listener = decode(ResourceType::Listener, &entry.resource)?;
        rds_names(entry.resource.name(), &listener)
    };
    let missing = |listener: &str, route_config: &str| SnapshotError::MissingRouteConfig {
        listener: listener.to_string(),
        route_config: route_config.to_string(),
    };
    check_needs(
        entries,
        maps,
        ResourceType::Listener,
        ResourceType::Route,
        read,
        missing,
    )
}

/// The route configurations with `vhds` set (those added encoded are decoded to tell).
fn vhds_route_configs(entries: &Entries) -> Result<BTreeSet<String>, SnapshotError> {
    let mut names = BTreeSet::new();
    for entry in &entries[ResourceType::Route.index()] {
        let vhds = match entry.needs {
            Some(_) => entry.vhds,
            None => {
                let route: RouteConfiguration = decode(ResourceType::Route, &entry.resource)?;
                route.vhds.is_some()
            }
        };
        if vhds {
            names.insert(entry.resource.name().to_string());
        }
    }
    Ok(names)
}

/// The RDS route configuration names used by a listener's HTTP connection managers.
pub(super) fn rds_names(name: &str, listener: &Listener) -> Result<Vec<String>, SnapshotError> {
    let chains = listener
        .filter_chains
        .iter()
        .chain(listener.default_filter_chain.iter());
    let mut names = Vec::new();
    for chain in chains {
        for hcm in connection_managers(name, chain)? {
            if let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier {
                names.push(rds.route_config_name);
            }
        }
    }
    Ok(names)
}

fn connection_managers(
    name: &str,
    chain: &FilterChain,
) -> Result<Vec<HttpConnectionManager>, SnapshotError> {
    let mut found = Vec::new();
    for filter in &chain.filters {
        if let Some(ConfigType::TypedConfig(any)) = &filter.config_type
            && any.type_url == HttpConnectionManager::type_url()
        {
            let hcm = HttpConnectionManager::decode(any.value.as_slice()).map_err(|e| {
                SnapshotError::Decode {
                    ty: ResourceType::Listener,
                    name: name.to_string(),
                    message: format!("http connection manager: {e}"),
                }
            })?;
            found.push(hcm);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Snapshot;
    use crate::testing::*;

    #[test]
    fn missing_cla_is_rejected_with_names() {
        let mut builder = Snapshot::builder();
        builder.add(ResourceType::Cluster, "a", &cluster("a"));
        let error = builder.build().expect_err("missing CLA");
        assert_eq!(
            error,
            SnapshotError::MissingEndpoints {
                cluster: "a".into(),
                service_name: "a".into()
            }
        );
        assert!(error.to_string().contains("\"a\""));
    }

    #[test]
    fn eds_service_name_is_used() {
        let mut c = cluster("a");
        if let Some(eds) = c.eds_cluster_config.as_mut() {
            eds.service_name = "svc-a".into();
        }
        let mut builder = Snapshot::builder();
        builder
            .add(ResourceType::Cluster, "a", &c)
            .add(ResourceType::Endpoint, "a", &cla("a", 1));
        let error = builder.build().expect_err("service name CLA missing");
        assert!(
            matches!(error, SnapshotError::MissingEndpoints { service_name, .. } if service_name == "svc-a")
        );

        let mut builder = Snapshot::builder();
        builder.add(ResourceType::Cluster, "a", &c).add(
            ResourceType::Endpoint,
            "svc-a",
            &cla("svc-a", 1),
        );
        builder.build().expect("service name CLA present");
    }

    #[test]
    fn missing_route_config_is_rejected_with_names() {
        let mut builder = Snapshot::builder();
        builder.add(ResourceType::Listener, "l", &listener("l", "routes"));
        let error = builder.build().expect_err("missing route config");
        assert_eq!(
            error,
            SnapshotError::MissingRouteConfig {
                listener: "l".into(),
                route_config: "routes".into()
            }
        );
    }

    #[test]
    fn duplicates_are_rejected() {
        let mut builder = Snapshot::builder();
        builder.add(ResourceType::Endpoint, "a", &cla("a", 1)).add(
            ResourceType::Endpoint,
            "a",
            &cla("a", 2),
        );
        let error = builder.build().expect_err("duplicate");
        assert_eq!(
            error,
            SnapshotError::Duplicate {
                ty: ResourceType::Endpoint,
                name: "a".into()
            }
        );
    }

    #[test]
    fn typed_adds_check_without_decoding_and_match_encoded_adds() {
        let mut c = cluster("a");
        if let Some(eds) = c.eds_cluster_config.as_mut() {
            eds.service_name = "svc-a".into();
        }
        let mut builder = Snapshot::builder();
        builder.add_cluster(&c).add_load_assignment(&cla("a", 1));
        let error = builder.build().expect_err("service name CLA missing");
        assert_eq!(
            error,
            SnapshotError::MissingEndpoints {
                cluster: "a".into(),
                service_name: "svc-a".into()
            }
        );

        let mut builder = Snapshot::builder();
        builder.add_listener(&listener("l", "routes"));
        let error = builder.build().expect_err("missing route config");
        assert_eq!(
            error,
            SnapshotError::MissingRouteConfig {
                listener: "l".into(),
                route_config: "routes".into()
            }
        );

        let mut typed = Snapshot::builder();
        typed
            .add_cluster(&cluster("a"))
            .add_load_assignment(&cla("a", 8080))
            .add_listener(&listener("l", "l"))
            .add_route(&route_config("l", "a"));
        let typed = typed.build().expect("consistent");
        let untyped = snapshot_of(&["a"], &["l"]);
        for ty in ResourceType::ALL {
            assert_eq!(typed.version(ty), untyped.version(ty));
        }
    }

    #[test]
    fn listener_with_undecodable_connection_manager_is_rejected() {
        let mut l = listener("l", "routes");
        if let Some(ConfigType::TypedConfig(any)) = &mut l.filter_chains[0].filters[0].config_type {
            any.value = vec![0xff, 0xff, 0xff];
        }
        let mut builder = Snapshot::builder();
        builder.add_listener(&l);
        assert!(matches!(
            builder.build(),
            Err(SnapshotError::Decode { ty: ResourceType::Listener, name, .. }) if name == "l"
        ));
    }

    #[test]
    fn route_configurations_taking_vhds_are_known_typed_or_encoded() {
        use envoy_types::pb::envoy::config::route::v3::Vhds;
        let on_demand = |name: &str| RouteConfiguration {
            name: name.to_string(),
            vhds: Some(Vhds::default()),
            ..Default::default()
        };
        let mut builder = Snapshot::builder();
        builder
            .add_route(&on_demand("typed"))
            .add(ResourceType::Route, "encoded", &on_demand("encoded"))
            .add_route(&route_config("full", "a"));
        let snapshot = builder.build().expect("consistent");
        let names: Vec<&str> = snapshot
            .vhds_route_configs()
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(names, ["encoded", "typed"]);
        assert!(snapshot_of(&["a"], &["l"]).vhds_route_configs().is_empty());
    }
}

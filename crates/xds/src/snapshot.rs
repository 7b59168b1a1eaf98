//! Immutable, consistent sets of resources for one proxy group.
//!
//! A [`Snapshot`] holds, per type, the resources by name and an aggregate version derived from
//! their contents (same contents, same version). [`SnapshotBuilder`] encodes each message once and
//! checks consistency before a snapshot can exist: no duplicate names, every EDS cluster has its
//! ClusterLoadAssignment, every RDS route configuration named by a listener exists.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{ClusterDiscoveryType, DiscoveryType},
};
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener, filter::ConfigType};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use prost::{Message, Name};

use crate::resource::{Resource, ResourceType, aggregate_version};

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

/// The resources of one type and their aggregate version.
#[derive(Clone, Debug, Default)]
struct TypeResources {
    resources: BTreeMap<String, Arc<Resource>>,
    version: String,
}

/// A consistent, immutable set of resources for one proxy group.
#[derive(Clone, Debug)]
pub struct Snapshot {
    types: [TypeResources; 4],
    /// The rollout (debounced batch of changes) this snapshot belongs to; 0 for none.
    rollout: u64,
    /// When [`crate::Cache::set`] published it.
    published_at: Option<Instant>,
}

// === impl Snapshot ===

impl Snapshot {
    /// Starts a snapshot.
    pub fn builder() -> SnapshotBuilder {
        SnapshotBuilder::default()
    }

    /// The resources of one type, by name.
    pub fn resources(&self, ty: ResourceType) -> &BTreeMap<String, Arc<Resource>> {
        &self.types[ty.index()].resources
    }

    /// The aggregate version of one type, derived from its contents.
    pub fn version(&self, ty: ResourceType) -> &str {
        &self.types[ty.index()].version
    }

    /// Tags the snapshot with the rollout it belongs to (see [`crate::convergence`]).
    pub fn with_rollout(mut self, rollout: u64) -> Self {
        self.rollout = rollout;
        self
    }

    /// The rollout it belongs to; 0 for none.
    pub fn rollout(&self) -> u64 {
        self.rollout
    }

    /// When the cache published it (`None` before [`crate::Cache::set`]).
    pub fn published_at(&self) -> Option<Instant> {
        self.published_at
    }

    pub(crate) fn mark_published(&mut self) {
        self.published_at = Some(Instant::now());
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            types: std::array::from_fn(|_| TypeResources {
                resources: BTreeMap::new(),
                version: aggregate_version([]),
            }),
            rollout: 0,
            published_at: None,
        }
    }
}

/// Collects resources for a [`Snapshot`].
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    types: [BTreeMap<String, Arc<Resource>>; 4],
    errors: Vec<SnapshotError>,
    previous: Option<[BTreeMap<String, Arc<Resource>>; 4]>,
}

// === impl SnapshotBuilder ===

impl SnapshotBuilder {
    /// Encodes `msg` (once) and adds it under `name`.
    pub fn add<M: Message + Name>(
        &mut self,
        ty: ResourceType,
        name: impl Into<String>,
        msg: &M,
    ) -> &mut Self {
        let resource = Resource::encode(name, msg);
        if resource.any().type_url != ty.type_url() {
            self.errors.push(SnapshotError::WrongType {
                ty,
                name: resource.name().to_string(),
                actual: resource.any().type_url.clone(),
                expected: ty.type_url(),
            });
            return self;
        }
        self.insert(ty, resource)
    }

    /// Adds an already encoded resource.
    pub fn add_resource(&mut self, ty: ResourceType, resource: Resource) -> &mut Self {
        self.insert(ty, resource)
    }

    /// Shares the previous snapshot's `Arc` for every resource whose bytes did not change.
    pub fn reuse(&mut self, previous: &Snapshot) -> &mut Self {
        self.previous = Some(std::array::from_fn(|i| previous.types[i].resources.clone()));
        self
    }

    /// Checks consistency and freezes the snapshot. Returns the first error found.
    pub fn build(mut self) -> Result<Snapshot, SnapshotError> {
        if let Some(error) = self.errors.drain(..).next() {
            return Err(error);
        }
        self.share_unchanged();
        check_clusters(&self.types)?;
        check_listeners(&self.types)?;
        Ok(Snapshot {
            types: self.types.map(|resources| {
                let version =
                    aggregate_version(resources.iter().map(|(n, r)| (n.as_str(), r.version())));
                TypeResources { resources, version }
            }),
            rollout: 0,
            published_at: None,
        })
    }

    fn insert(&mut self, ty: ResourceType, resource: Resource) -> &mut Self {
        let map = &mut self.types[ty.index()];
        if map.contains_key(resource.name()) {
            self.errors.push(SnapshotError::Duplicate {
                ty,
                name: resource.name().to_string(),
            });
        } else {
            map.insert(resource.name().to_string(), Arc::new(resource));
        }
        self
    }

    fn share_unchanged(&mut self) {
        let Some(previous) = self.previous.take() else {
            return;
        };
        for (current, previous) in self.types.iter_mut().zip(previous) {
            for (name, resource) in current.iter_mut() {
                if let Some(old) = previous.get(name)
                    && old.any() == resource.any()
                {
                    *resource = old.clone();
                }
            }
        }
    }
}

type Types = [BTreeMap<String, Arc<Resource>>; 4];

fn decode<M: Message + Default>(ty: ResourceType, resource: &Resource) -> Result<M, SnapshotError> {
    M::decode(resource.any().value.as_slice()).map_err(|e| SnapshotError::Decode {
        ty,
        name: resource.name().to_string(),
        message: e.to_string(),
    })
}

/// Every EDS cluster's ClusterLoadAssignment exists.
fn check_clusters(types: &Types) -> Result<(), SnapshotError> {
    let endpoints = &types[ResourceType::Endpoint.index()];
    for (name, resource) in &types[ResourceType::Cluster.index()] {
        let cluster: Cluster = decode(ResourceType::Cluster, resource)?;
        let eds = cluster.cluster_discovery_type
            == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
        if !eds {
            continue;
        }
        let service_name = cluster
            .eds_cluster_config
            .map(|c| c.service_name)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| name.clone());
        if !endpoints.contains_key(&service_name) {
            return Err(SnapshotError::MissingEndpoints {
                cluster: name.clone(),
                service_name,
            });
        }
    }
    Ok(())
}

/// Every route configuration named by a listener's HTTP connection manager (RDS) exists.
fn check_listeners(types: &Types) -> Result<(), SnapshotError> {
    let routes = &types[ResourceType::Route.index()];
    for (name, resource) in &types[ResourceType::Listener.index()] {
        let listener: Listener = decode(ResourceType::Listener, resource)?;
        for route_config in rds_names(name, &listener)? {
            if !routes.contains_key(&route_config) {
                return Err(SnapshotError::MissingRouteConfig {
                    listener: name.clone(),
                    route_config,
                });
            }
        }
    }
    Ok(())
}

/// The RDS route configuration names used by a listener's HTTP connection managers.
fn rds_names(name: &str, listener: &Listener) -> Result<Vec<String>, SnapshotError> {
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
    use crate::testing::*;

    #[test]
    fn consistent_snapshot_builds() {
        let snapshot = snapshot_of(&["a", "b"], &["l"]);
        assert_eq!(snapshot.resources(ResourceType::Cluster).len(), 2);
        assert_eq!(snapshot.resources(ResourceType::Endpoint).len(), 2);
        assert!(snapshot.resources(ResourceType::Route).contains_key("l"));
    }

    #[test]
    fn same_contents_same_version() {
        let one = snapshot_of(&["a"], &["l"]);
        let two = snapshot_of(&["a"], &["l"]);
        let three = snapshot_of(&["a", "b"], &["l"]);
        for ty in ResourceType::ALL {
            assert_eq!(one.version(ty), two.version(ty));
        }
        assert_ne!(
            one.version(ResourceType::Cluster),
            three.version(ResourceType::Cluster)
        );
        assert_eq!(
            one.version(ResourceType::Listener),
            three.version(ResourceType::Listener)
        );
    }

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
    fn wrong_type_is_rejected() {
        let mut builder = Snapshot::builder();
        builder.add(ResourceType::Endpoint, "a", &cluster("a"));
        assert!(
            matches!(builder.build(), Err(SnapshotError::WrongType { name, .. }) if name == "a")
        );
    }

    #[test]
    fn reuse_shares_unchanged_resources() {
        let first = snapshot_of(&["a", "b"], &["l"]);
        let mut builder = Snapshot::builder();
        builder
            .add(ResourceType::Cluster, "a", &cluster("a"))
            .add(ResourceType::Endpoint, "a", &cla("a", 9))
            .reuse(&first);
        let second = builder.build().expect("valid");
        let a_cluster = |s: &Snapshot| s.resources(ResourceType::Cluster)["a"].clone();
        let a_cla = |s: &Snapshot| s.resources(ResourceType::Endpoint)["a"].clone();
        assert!(Arc::ptr_eq(&a_cluster(&first), &a_cluster(&second)));
        assert!(!Arc::ptr_eq(&a_cla(&first), &a_cla(&second)));
    }
}

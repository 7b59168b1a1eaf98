//! Immutable, consistent sets of resources for one proxy group.
//!
//! A [`Snapshot`] holds, per type, the resources by name and an aggregate version derived from
//! their contents (same contents, same version). [`SnapshotBuilder`] encodes each message once and
//! checks consistency before a snapshot can exist: no duplicate names, every EDS cluster has its
//! ClusterLoadAssignment, every RDS route configuration named by a listener exists.
//!
//! [`Encoded`] is a resource encoded from its typed message together with the names it needs
//! (a cluster's EDS service name, a listener's RDS route configurations), read before encoding,
//! so the check decodes nothing; a resource added already encoded is decoded for the check.
//!
//! Resources can be marked named-only ([`SnapshotBuilder::named_only`]): a wildcard
//! subscription leaves them out and a subscription by name gets them (on-demand CDS).
//!
//! A snapshot knows which route configurations take their virtual hosts over VHDS
//! ([`Snapshot::vhds_route_configs`]): Envoy watches VHDS by route configuration name, and the
//! Delta stream answers that watch's first, empty request with it (see [`crate::delta`]).
//!
//! The builder collects resources in lists and sorts them once at the end (translation emits them
//! in name order, so that sort is a pass); the name-ordered maps are then built in bulk rather
//! than one insert at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{ClusterDiscoveryType, DiscoveryType},
};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener, filter::ConfigType};
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
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
    /// Names served only to a client that asks for them by name, never in a wildcard answer
    /// (on-demand CDS, see [`SnapshotBuilder::named_only`]).
    named_only: BTreeSet<String>,
}

/// A consistent, immutable set of resources for one proxy group.
#[derive(Clone, Debug)]
pub struct Snapshot {
    types: [TypeResources; ResourceType::COUNT],
    /// The rollout (debounced batch of changes) this snapshot belongs to; 0 for none.
    rollout: u64,
    /// When [`crate::Cache::set`] published it.
    published_at: Option<Instant>,
    /// Route configurations with `vhds` set, by name.
    vhds_route_configs: Arc<BTreeSet<String>>,
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

    /// Whether a wildcard subscription gets the resource (it is not served only by name).
    pub fn in_wildcard(&self, ty: ResourceType, name: &str) -> bool {
        !self.types[ty.index()].named_only.contains(name)
    }

    /// The route configurations that take their virtual hosts over VHDS (`vhds` set), by name.
    pub fn vhds_route_configs(&self) -> &BTreeSet<String> {
        &self.vhds_route_configs
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
                named_only: BTreeSet::new(),
            }),
            rollout: 0,
            published_at: None,
            vhds_route_configs: Arc::default(),
        }
    }
}

/// An encoded resource and the names of the resources it needs, read from its typed message.
#[derive(Clone, Debug)]
pub struct Encoded {
    ty: ResourceType,
    resource: Arc<Resource>,
    needs: Arc<[String]>,
    /// A route configuration with `vhds` set.
    vhds: bool,
}

/// A resource in a builder; `needs` is `None` when it came encoded (the check decodes it, and
/// so does [`vhds_route_configs`]).
#[derive(Clone, Debug)]
struct Entry {
    resource: Arc<Resource>,
    needs: Option<Arc<[String]>>,
    vhds: bool,
}

// === impl Encoded ===

impl Encoded {
    /// A cluster, named by its name; an EDS cluster needs its ClusterLoadAssignment.
    pub fn cluster(cluster: &Cluster) -> Self {
        let needs: Vec<String> = eds_service_name(&cluster.name, cluster)
            .into_iter()
            .collect();
        Self::new(ResourceType::Cluster, &cluster.name, cluster, needs)
    }

    /// A ClusterLoadAssignment, named by its cluster name.
    pub fn load_assignment(cla: &ClusterLoadAssignment) -> Self {
        Self::new(ResourceType::Endpoint, &cla.cluster_name, cla, Vec::new())
    }

    /// A listener; it needs the route configuration of each HTTP connection manager using RDS
    /// (those managers are decoded from their `Any`, so this fails when one does not decode).
    pub fn listener(listener: &Listener) -> Result<Self, SnapshotError> {
        let needs = rds_names(&listener.name, listener)?;
        Ok(Self::new(
            ResourceType::Listener,
            &listener.name,
            listener,
            needs,
        ))
    }

    /// A route configuration, named by its name.
    pub fn route(route: &RouteConfiguration) -> Self {
        Self {
            vhds: route.vhds.is_some(),
            ..Self::new(ResourceType::Route, &route.name, route, Vec::new())
        }
    }

    fn new<M: Message + Name>(ty: ResourceType, name: &str, msg: &M, needs: Vec<String>) -> Self {
        Self {
            ty,
            resource: Arc::new(Resource::encode_named(name, msg)),
            needs: needs.into(),
            vhds: false,
        }
    }

    pub fn ty(&self) -> ResourceType {
        self.ty
    }

    /// The encoded resource (shared by every snapshot it is added to).
    pub fn resource(&self) -> &Arc<Resource> {
        &self.resource
    }
}

/// Collects resources for a [`Snapshot`].
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    /// Per type, in the order added (sorted and checked for duplicates by `build`).
    types: [Vec<Entry>; ResourceType::COUNT],
    errors: Vec<SnapshotError>,
    previous: Option<[BTreeMap<String, Arc<Resource>>; ResourceType::COUNT]>,
    named_only: [BTreeSet<String>; ResourceType::COUNT],
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

    /// Adds a resource encoded with what it needs; the check decodes nothing.
    pub fn add_encoded(&mut self, encoded: Encoded) -> &mut Self {
        let entry = Entry {
            resource: encoded.resource,
            needs: Some(encoded.needs),
            vhds: encoded.vhds,
        };
        self.insert_entry(encoded.ty, entry)
    }

    /// Encodes a cluster (see [`Encoded::cluster`]) and adds it.
    pub fn add_cluster(&mut self, cluster: &Cluster) -> &mut Self {
        self.add_encoded(Encoded::cluster(cluster))
    }

    /// Encodes a ClusterLoadAssignment and adds it.
    pub fn add_load_assignment(&mut self, cla: &ClusterLoadAssignment) -> &mut Self {
        self.add_encoded(Encoded::load_assignment(cla))
    }

    /// Encodes a listener (see [`Encoded::listener`]) and adds it.
    pub fn add_listener(&mut self, listener: &Listener) -> &mut Self {
        match Encoded::listener(listener) {
            Ok(encoded) => self.add_encoded(encoded),
            Err(e) => {
                self.errors.push(e);
                self
            }
        }
    }

    /// Encodes a route configuration and adds it.
    pub fn add_route(&mut self, route: &RouteConfiguration) -> &mut Self {
        self.add_encoded(Encoded::route(route))
    }

    /// Encodes an SDS secret (named by its name) and adds it.
    pub fn add_secret(&mut self, secret: &Secret) -> &mut Self {
        self.add_encoded(Encoded::new(
            ResourceType::Secret,
            &secret.name,
            secret,
            Vec::new(),
        ))
    }

    /// Encodes a VHDS virtual host (named by its name: `ROUTE_CONFIG/HOST`) and adds it.
    pub fn add_virtual_host(&mut self, vhost: &VirtualHost) -> &mut Self {
        self.add_encoded(Encoded::new(
            ResourceType::VirtualHost,
            &vhost.name,
            vhost,
            Vec::new(),
        ))
    }

    /// Marks resources of `ty` as served by name only: a wildcard subscription does not get
    /// them, a subscription to their name does (on-demand CDS of on-demand proxies).
    pub fn named_only(
        &mut self,
        ty: ResourceType,
        names: impl IntoIterator<Item = String>,
    ) -> &mut Self {
        self.named_only[ty.index()].extend(names);
        self
    }

    /// Shares the previous snapshot's `Arc` for every resource whose bytes did not change.
    pub fn reuse(&mut self, previous: &Snapshot) -> &mut Self {
        self.previous = Some(std::array::from_fn(|i| previous.types[i].resources.clone()));
        self
    }

    /// Checks consistency and freezes the snapshot. Returns the first error found (errors seen
    /// while adding first, then duplicate names in push order of the types).
    pub fn build(mut self) -> Result<Snapshot, SnapshotError> {
        if let Some(error) = self.errors.drain(..).next() {
            return Err(error);
        }
        for (ty, entries) in ResourceType::SERVED.into_iter().zip(self.types.iter_mut()) {
            // Stable, so of two equal names the first added stays first.
            entries.sort_by(|a, b| a.resource.name().cmp(b.resource.name()));
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
        self.share_unchanged();
        let maps: Maps = std::array::from_fn(|i| {
            self.types[i]
                .iter()
                .map(|e| (e.resource.name().to_string(), e.resource.clone()))
                .collect()
        });
        check_clusters(&self.types, &maps)?;
        check_listeners(&self.types, &maps)?;
        let vhds_route_configs = Arc::new(vhds_route_configs(&self.types)?);
        let mut named_only = self.named_only.into_iter();
        Ok(Snapshot {
            types: maps.map(|resources| {
                let version =
                    aggregate_version(resources.iter().map(|(n, r)| (n.as_str(), r.version())));
                TypeResources {
                    resources,
                    version,
                    named_only: named_only.next().unwrap_or_default(),
                }
            }),
            rollout: 0,
            published_at: None,
            vhds_route_configs,
        })
    }

    fn insert(&mut self, ty: ResourceType, resource: Resource) -> &mut Self {
        let entry = Entry {
            resource: Arc::new(resource),
            needs: None,
            vhds: false,
        };
        self.insert_entry(ty, entry)
    }

    fn insert_entry(&mut self, ty: ResourceType, entry: Entry) -> &mut Self {
        self.types[ty.index()].push(entry);
        self
    }

    fn share_unchanged(&mut self) {
        let Some(previous) = self.previous.take() else {
            return;
        };
        for (current, previous) in self.types.iter_mut().zip(previous) {
            for entry in current.iter_mut() {
                if let Some(old) = previous.get(entry.resource.name())
                    && !Arc::ptr_eq(old, &entry.resource)
                    && old.any() == entry.resource.any()
                {
                    entry.resource = old.clone();
                }
            }
        }
    }
}

type Types = [Vec<Entry>; ResourceType::COUNT];
type Maps = [BTreeMap<String, Arc<Resource>>; ResourceType::COUNT];

fn decode<M: Message + Default>(ty: ResourceType, resource: &Resource) -> Result<M, SnapshotError> {
    M::decode(resource.any().value.as_slice()).map_err(|e| SnapshotError::Decode {
        ty,
        name: resource.name().to_string(),
        message: e.to_string(),
    })
}

/// Every EDS cluster's ClusterLoadAssignment exists.
fn check_clusters(types: &Types, maps: &Maps) -> Result<(), SnapshotError> {
    let endpoints = &maps[ResourceType::Endpoint.index()];
    for entry in &types[ResourceType::Cluster.index()] {
        let name = entry.resource.name();
        let decoded: Vec<String>;
        let needs: &[String] = match &entry.needs {
            Some(needs) => needs,
            None => {
                let cluster: Cluster = decode(ResourceType::Cluster, &entry.resource)?;
                decoded = eds_service_name(name, &cluster).into_iter().collect();
                &decoded
            }
        };
        if let Some(missing) = needs.iter().find(|n| !endpoints.contains_key(*n)) {
            return Err(SnapshotError::MissingEndpoints {
                cluster: name.to_string(),
                service_name: missing.clone(),
            });
        }
    }
    Ok(())
}

/// The ClusterLoadAssignment an EDS cluster named `name` needs: its EDS service name, or its
/// name when that is empty. `None` for other discovery types.
fn eds_service_name(name: &str, cluster: &Cluster) -> Option<String> {
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
fn check_listeners(types: &Types, maps: &Maps) -> Result<(), SnapshotError> {
    let routes = &maps[ResourceType::Route.index()];
    for entry in &types[ResourceType::Listener.index()] {
        let name = entry.resource.name();
        let decoded: Vec<String>;
        let needs: &[String] = match &entry.needs {
            Some(needs) => needs,
            None => {
                let listener: Listener = decode(ResourceType::Listener, &entry.resource)?;
                decoded = rds_names(name, &listener)?;
                &decoded
            }
        };
        if let Some(route_config) = needs.iter().find(|n| !routes.contains_key(*n)) {
            return Err(SnapshotError::MissingRouteConfig {
                listener: name.to_string(),
                route_config: route_config.clone(),
            });
        }
    }
    Ok(())
}

/// The route configurations with `vhds` set (those added encoded are decoded to tell).
fn vhds_route_configs(types: &Types) -> Result<BTreeSet<String>, SnapshotError> {
    let mut names = BTreeSet::new();
    for entry in &types[ResourceType::Route.index()] {
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
    fn named_only_resources_are_left_out_of_the_wildcard() {
        let mut builder = Snapshot::builder();
        builder
            .add_cluster(&cluster("a"))
            .add_load_assignment(&cla("a", 1))
            .add_cluster(&cluster("b"))
            .add_load_assignment(&cla("b", 1))
            .named_only(ResourceType::Cluster, ["b".to_string()]);
        let snapshot = builder.build().expect("consistent");
        assert!(snapshot.in_wildcard(ResourceType::Cluster, "a"));
        assert!(!snapshot.in_wildcard(ResourceType::Cluster, "b"));
        assert!(snapshot.in_wildcard(ResourceType::Endpoint, "b"));
        assert_eq!(snapshot.resources(ResourceType::Cluster).len(), 2);
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

    #[test]
    fn encoded_resources_are_shared_as_added() {
        let encoded = Encoded::load_assignment(&cla("a", 1));
        let mut builder = Snapshot::builder();
        builder
            .add_cluster(&cluster("a"))
            .add_encoded(encoded.clone());
        let snapshot = builder.build().expect("consistent");
        assert_eq!(encoded.ty(), ResourceType::Endpoint);
        assert!(Arc::ptr_eq(
            &snapshot.resources(ResourceType::Endpoint)["a"],
            encoded.resource()
        ));
    }
}

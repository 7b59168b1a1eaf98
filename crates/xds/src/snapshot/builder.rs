//! Building a [`Snapshot`]: encode each message once, share what did not change, check, freeze.
//!
//! [`Encoded`] is a resource encoded from its typed message together with the names it needs
//! (read before encoding, so the consistency check decodes nothing). The builder collects
//! resources in lists and sorts them once at the end (translation emits them in name order, so
//! that sort is a pass); the name-ordered maps are then built in bulk rather than one insert at
//! a time. With [`SnapshotBuilder::reuse`] it borrows the previous snapshot of the group and
//! takes its `Arc` for every resource whose bytes did not change, so unchanged resources stay
//! one allocation across snapshots.

use std::collections::BTreeSet;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use prost::{Message, Name};

use super::consistency::{self, Entries, Entry, Maps, SnapshotError};
use super::{Snapshot, TypeResources};
use crate::resource::{Resource, ResourceType};

/// An encoded resource and the names of the resources it needs, read from its typed message.
#[derive(Clone, Debug)]
pub struct Encoded {
    resource: Arc<Resource>,
    needs: Arc<[String]>,
    /// A route configuration with `vhds` set.
    vhds: bool,
}

// === impl Encoded ===

impl Encoded {
    /// A cluster, named by its name; an EDS cluster needs its ClusterLoadAssignment.
    pub fn cluster(cluster: &Cluster) -> Self {
        let needs: Vec<String> = consistency::eds_service_name(&cluster.name, cluster)
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
        let needs = consistency::rds_names(&listener.name, listener)?;
        Ok(Self::new(
            ResourceType::Listener,
            &listener.name,
            listener,
            needs,
        ))
    }

    /// A route configuration, named by its name, encoded deterministically (see
    /// [`crate::canonical`]).
    pub fn route(route: &RouteConfiguration) -> Self {
        let bytes = crate::canonical::route_configuration(route);
        Self {
            resource: Arc::new(Resource::new(
                ResourceType::Route,
                route.name.as_str(),
                bytes,
            )),
            needs: Vec::new().into(),
            vhds: route.vhds.is_some(),
        }
    }

    fn new(ty: ResourceType, name: &str, msg: &impl Message, needs: Vec<String>) -> Self {
        Self {
            resource: Arc::new(Resource::encode(ty, name, msg)),
            needs: needs.into(),
            vhds: false,
        }
    }

    pub fn ty(&self) -> ResourceType {
        self.resource.ty()
    }

    /// The encoded resource (shared by every snapshot it is added to).
    pub fn resource(&self) -> &Arc<Resource> {
        &self.resource
    }
}

/// Collects resources for a [`Snapshot`]; `'p` borrows the previous snapshot it reuses from.
#[derive(Debug, Default)]
pub struct SnapshotBuilder<'p> {
    /// Per type, in the order added (sorted and checked for duplicates by `build`).
    entries: Entries,
    errors: Vec<SnapshotError>,
    previous: Option<&'p Snapshot>,
    named_only: [BTreeSet<String>; ResourceType::COUNT],
}

// === impl SnapshotBuilder ===

impl<'p> SnapshotBuilder<'p> {
    /// Encodes `msg` (once) and adds it under `name`; `msg` must be of type `ty`.
    pub fn add<M: Message + Name>(
        &mut self,
        ty: ResourceType,
        name: impl Into<String>,
        msg: &M,
    ) -> &mut Self {
        let name = name.into();
        let actual = M::type_url();
        if actual != ty.type_url() {
            self.errors.push(SnapshotError::WrongType {
                ty,
                name,
                actual,
                expected: ty.type_url(),
            });
            return self;
        }
        self.insert(Resource::encode(ty, name, msg))
    }

    /// Adds an already encoded resource (of the type it names).
    pub fn add_resource(&mut self, resource: Resource) -> &mut Self {
        self.insert(resource)
    }

    /// Adds a resource encoded with what it needs; the check decodes nothing.
    pub fn add_encoded(&mut self, encoded: Encoded) -> &mut Self {
        let ty = encoded.ty();
        let entry = Entry {
            resource: encoded.resource,
            needs: Some(encoded.needs),
            vhds: encoded.vhds,
        };
        self.insert_entry(ty, entry)
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
    /// The builder borrows `previous` until it is built; nothing of it is copied.
    pub fn reuse(&mut self, previous: &'p Snapshot) -> &mut Self {
        self.previous = Some(previous);
        self
    }

    /// Checks consistency and freezes the snapshot. Returns the first error found (errors seen
    /// while adding first, then duplicate names in push order of the types, then what clusters
    /// and listeners need).
    pub fn build(mut self) -> Result<Snapshot, SnapshotError> {
        if let Some(error) = self.errors.drain(..).next() {
            return Err(error);
        }
        for entries in &mut self.entries {
            // Stable, so of two equal names the first added stays first.
            entries.sort_by(|a, b| a.resource.name().cmp(b.resource.name()));
        }
        consistency::check_unique(&self.entries)?;
        self.share_unchanged();
        let maps: Maps = std::array::from_fn(|i| {
            self.entries[i]
                .iter()
                .map(|e| (e.resource.name().to_string(), e.resource.clone()))
                .collect()
        });
        let vhds_route_configs = consistency::check(&self.entries, &maps)?;
        let mut named_only = self.named_only.into_iter();
        let types = maps
            .map(|resources| TypeResources::new(resources, named_only.next().unwrap_or_default()));
        Ok(Snapshot::new(types, vhds_route_configs))
    }

    fn insert(&mut self, resource: Resource) -> &mut Self {
        let ty = resource.ty();
        let entry = Entry {
            resource: Arc::new(resource),
            needs: None,
            vhds: false,
        };
        self.insert_entry(ty, entry)
    }

    fn insert_entry(&mut self, ty: ResourceType, entry: Entry) -> &mut Self {
        self.entries[ty.index()].push(entry);
        self
    }

    /// Takes the previous snapshot's `Arc` for each entry with the same name and bytes: both
    /// are in name order, so one walk over each.
    fn share_unchanged(&mut self) {
        let Some(previous) = self.previous else {
            return;
        };
        for (current, previous) in self.entries.iter_mut().zip(&previous.types) {
            let mut old = previous.resources.iter().peekable();
            for entry in current.iter_mut() {
                let name = entry.resource.name();
                while old.next_if(|(n, _)| n.as_str() < name).is_some() {}
                let Some((n, r)) = old.peek() else {
                    break;
                };
                if n.as_str() == name
                    && !Arc::ptr_eq(r, &entry.resource)
                    && r.version() == entry.resource.version()
                    && r.value() == entry.resource.value()
                {
                    entry.resource = Arc::clone(r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

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
            .add(ResourceType::Cluster, "c", &cluster("c"))
            .add(ResourceType::Endpoint, "c", &cla("c", 8080))
            .reuse(&first);
        let second = builder.build().expect("valid");
        let cluster_of = |s: &Snapshot, n: &str| s.resources(ResourceType::Cluster)[n].clone();
        let cla_of = |s: &Snapshot, n: &str| s.resources(ResourceType::Endpoint)[n].clone();
        assert!(Arc::ptr_eq(
            &cluster_of(&first, "a"),
            &cluster_of(&second, "a")
        ));
        assert!(!Arc::ptr_eq(&cla_of(&first, "a"), &cla_of(&second, "a")));
        assert_eq!(
            second.resources(ResourceType::Cluster).len(),
            2,
            "b is gone"
        );
        // `c` has the bytes `b` had under another name: not shared.
        assert_eq!(cla_of(&second, "c").name(), "c");
    }

    #[test]
    fn reuse_walks_names_in_order_past_gaps() {
        let first = snapshot_of(&["a", "c", "e"], &[]);
        let mut builder = Snapshot::builder();
        for name in ["b", "c", "d", "e", "f"] {
            builder
                .add_cluster(&cluster(name))
                .add_load_assignment(&cla(name, 8080));
        }
        builder.reuse(&first);
        let second = builder.build().expect("valid");
        for (name, shared) in [
            ("b", false),
            ("c", true),
            ("d", false),
            ("e", true),
            ("f", false),
        ] {
            let old = first.resources(ResourceType::Endpoint).get(name);
            let new = &second.resources(ResourceType::Endpoint)[name];
            assert_eq!(old.is_some_and(|o| Arc::ptr_eq(o, new)), shared, "{name}");
        }
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

    #[test]
    fn encoded_resources_added_untyped_are_checked_by_decoding() {
        let bytes = prost::Message::encode_to_vec(&cluster("a"));
        let mut builder = Snapshot::builder();
        builder.add_resource(Resource::new(ResourceType::Cluster, "a", bytes));
        assert!(matches!(
            builder.build(),
            Err(SnapshotError::MissingEndpoints { cluster, .. }) if cluster == "a"
        ));
    }
}

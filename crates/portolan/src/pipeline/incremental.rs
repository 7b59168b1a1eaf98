//! Incremental snapshot builds: translation memoized per Service (a
//! [`portolan_translate::Translator`]) and encoding memoized per translated message, so a
//! rebuild after a small change translates and encodes only what that change touched.
//!
//! Clusters and ClusterLoadAssignments depend on the proxy group only through its zone, so one
//! [`IncrementalBuilder`] serves every group of a zone; listeners and routes are translated and
//! encoded for each group every time.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use portolan_model::World;
use portolan_translate::{Options, ProxyGroup, SharedResources, Translator};
use portolan_xds::snapshot::Encoded;
use portolan_xds::{Snapshot, SnapshotError};
use std::collections::HashMap;
use std::sync::Arc;

/// Translator and encodings kept from one build to the next (for the groups of one zone).
#[derive(Debug, Default)]
pub struct IncrementalBuilder {
    translator: Translator,
    clusters: EncodeMemo<Cluster>,
    load_assignments: EncodeMemo<ClusterLoadAssignment>,
}

/// The encoding of each translated message, by the message's allocation. Holding the `Arc`
/// keeps the address from being reused by another message.
#[derive(Debug)]
struct EncodeMemo<M> {
    entries: HashMap<usize, (Arc<M>, Encoded)>,
    reused: usize,
}

// === impl IncrementalBuilder ===

impl IncrementalBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Translates `world` for `group` and builds its snapshot, sharing unchanged entries with
    /// `previous`. The same snapshot as [`super::snapshot`] of [`portolan_translate::translate`].
    pub fn build(
        &mut self,
        world: &World,
        group: &ProxyGroup,
        options: &Options,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, SnapshotError> {
        self.build_with_secrets(world, group, options, previous, &[])
    }

    /// [`IncrementalBuilder::build`] with SDS secrets (a mesh group's certificates) added.
    pub fn build_with_secrets(
        &mut self,
        world: &World,
        group: &ProxyGroup,
        options: &Options,
        previous: Option<&Snapshot>,
        secrets: &[Secret],
    ) -> Result<Snapshot, SnapshotError> {
        let resources = self.translator.translate(world, group, options);
        self.snapshot(&resources, previous, secrets)
    }

    /// The translator (for its memo statistics).
    pub fn translator(&self) -> &Translator {
        &self.translator
    }

    /// Clusters and assignments whose encoding was reused by the last build.
    pub fn encodings_reused(&self) -> usize {
        self.clusters.reused + self.load_assignments.reused
    }

    fn snapshot(
        &mut self,
        resources: &SharedResources,
        previous: Option<&Snapshot>,
        secrets: &[Secret],
    ) -> Result<Snapshot, SnapshotError> {
        let mut b = Snapshot::builder();
        if let Some(prev) = previous {
            b.reuse(prev);
        }
        for e in self.clusters.encode(&resources.clusters, Encoded::cluster) {
            b.add_encoded(e);
        }
        let clas = &resources.load_assignments;
        for e in self.load_assignments.encode(clas, Encoded::load_assignment) {
            b.add_encoded(e);
        }
        for l in &resources.listeners {
            b.add_encoded(Encoded::listener(l)?);
        }
        for r in &resources.routes {
            b.add_route(r);
        }
        for s in secrets {
            b.add_secret(s);
        }
        if let Some(on_demand) = &resources.on_demand {
            let clusters = resources.clusters.iter().map(|c| c.name.as_str());
            super::add_on_demand(&mut b, on_demand, clusters);
        }
        b.build()
    }
}

// === impl EncodeMemo ===

impl<M> Default for EncodeMemo<M> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            reused: 0,
        }
    }
}

impl<M> EncodeMemo<M> {
    /// Encodes each message, reusing the encoding of the same allocation from the last call;
    /// forgets the messages not seen this time.
    fn encode(&mut self, messages: &[Arc<M>], encode: impl Fn(&M) -> Encoded) -> Vec<Encoded> {
        let mut last = std::mem::take(&mut self.entries);
        self.entries.reserve(messages.len());
        self.reused = 0;
        let mut out = Vec::with_capacity(messages.len());
        for message in messages {
            let key = Arc::as_ptr(message) as usize;
            let encoded = match last.remove(&key) {
                Some((kept, encoded)) if Arc::ptr_eq(&kept, message) => {
                    self.reused += 1;
                    encoded
                }
                _ => encode(message),
            };
            self.entries.insert(key, (message.clone(), encoded.clone()));
            out.push(encoded);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::snapshot;
    use portolan_api::{Kind, ObjectRef};
    use portolan_model::{
        AddressType, Endpoint, EndpointGroup, EndpointPort, EndpointSubset, Protocol, Service,
        ServiceKey, ServicePort,
    };
    use portolan_xds::ResourceType;

    fn add_service(world: &mut World, name: &str, ip: &str) {
        let key = ServiceKey::new("default", name);
        let service = Service {
            key: key.clone(),
            ports: vec![ServicePort {
                name: "http".into(),
                port: 80,
                protocol: Protocol::Tcp,
                target_port: None,
                app_protocol: None,
            }],
            cluster_ip: Some("10.96.0.1".into()),
            external_name: None,
            labels: Default::default(),
        };
        world.services.insert(key.clone(), Arc::new(service));
        world
            .endpoints
            .insert(key.clone(), vec![Arc::new(slice(&key, ip))]);
    }

    fn slice(key: &ServiceKey, ip: &str) -> EndpointGroup {
        EndpointGroup {
            source: ObjectRef::new(Kind::EndpointSlice, &key.namespace, &key.name),
            service: key.clone(),
            address_type: AddressType::Ipv4,
            subsets: vec![EndpointSubset {
                ports: vec![EndpointPort {
                    name: "http".into(),
                    port: 8080,
                    protocol: Protocol::Tcp,
                }],
                endpoints: vec![Endpoint {
                    address: ip.into(),
                    ready: true,
                    serving: true,
                    terminating: false,
                    zone: Some("zone-a".into()),
                    node_name: None,
                    hostname: None,
                }],
            }],
            labels: Default::default(),
        }
    }

    fn assert_same(a: &Snapshot, b: &Snapshot) {
        for ty in ResourceType::ALL {
            assert_eq!(a.version(ty), b.version(ty), "{ty}");
        }
    }

    #[test]
    fn rebuild_after_one_endpoint_change_reuses_the_rest() {
        let mut world = World::default();
        for (name, ip) in [("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3")] {
            add_service(&mut world, name, ip);
        }
        let (group, options) = (
            ProxyGroup::from_key("default;zone=zone-a"),
            Options::default(),
        );
        let pure = |w: &World, previous| {
            let resources = portolan_translate::translate(w, &group, &options);
            snapshot(&resources, previous).expect("consistent")
        };
        let mut builder = IncrementalBuilder::new();
        let first = builder
            .build(&world, &group, &options, None)
            .expect("consistent");
        assert_same(&first, &pure(&world, None));
        assert_eq!(builder.encodings_reused(), 0);

        let key = ServiceKey::new("default", "b");
        world
            .endpoints
            .insert(key.clone(), vec![Arc::new(slice(&key, "10.0.0.9"))]);
        let second = builder
            .build(&world, &group, &options, Some(&first))
            .expect("consistent");
        assert_same(&second, &pure(&world, None));
        // Service b's cluster and assignment were translated again; the other four reused.
        assert_eq!(builder.translator().stats().translated, 1);
        assert_eq!(builder.encodings_reused(), 4);
        let cla = |s: &Snapshot, name: &str| {
            s.resources(ResourceType::Endpoint)
                [&format!("outbound|80||{name}.default.svc.cluster.local")]
                .clone()
        };
        assert!(Arc::ptr_eq(&cla(&first, "a"), &cla(&second, "a")));
        assert!(!Arc::ptr_eq(&cla(&first, "b"), &cla(&second, "b")));
        let changed = ResourceType::ALL.map(|ty| {
            let before = first.resources(ty);
            let after = second.resources(ty);
            after
                .iter()
                .filter(|(n, r)| before.get(*n).map(|o| o.version()) != Some(r.version()))
                .count()
        });
        assert_eq!(changed, [0, 1, 0, 0]);
    }
}

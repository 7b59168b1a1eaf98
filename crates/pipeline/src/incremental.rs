//! Incremental snapshot builds: translation memoized per Service (a
//! [`portolan_translate::Translator`] that keeps each cluster and ClusterLoadAssignment
//! encoded), so a rebuild after a small change translates and encodes only what that change
//! touched.
//!
//! Each message is encoded as soon as its Service is translated and freed right after: the
//! memo holds bytes, never a tree of every message (on a cold build of 10,000 Services that
//! tree was over 100 MB to allocate, walk and free).
//!
//! Clusters and ClusterLoadAssignments depend on the proxy group only through its zone (and
//! client), so one [`IncrementalBuilder`] serves every group of a zone; listeners and routes
//! are translated and encoded for each group every time, but after an endpoint-only change.
//!
//! Endpoint-only changes: when the World differs from the one a group's previous snapshot was
//! built from only in the endpoint groups of some Services (the index's change log says so:
//! [`World::endpoint_changes_since`]), the rebuild translates only those Services' clusters
//! and assignments and serves the previous snapshot with their assignments replaced
//! ([`Snapshot::with_replaced_assignments`]): no listener, route or other cluster is
//! translated or encoded, and no other Service's memo entry is looked at. It falls back to the
//! whole translation when anything else may have changed:
//!
//! * any change that is not an EndpointSlice's or Endpoints' (Services, routes, policies,
//!   Gateways, secrets, scopes, errors, ...), or a World the log cannot vouch for (a rollback,
//!   a World from elsewhere, more than [`portolan_model::changes::LOG_LEN`] changes behind);
//! * a mesh workload group (its capture listener matches the endpoints' addresses);
//! * a group with EnvoyPatchPolicies, other mesh secrets than last time, another group
//!   definition or other options, or a previous snapshot that is not the one built last;
//! * a changed Service whose clusters come out different (say, a subset selected by endpoint
//!   labels) or whose assignments or provenance entries were not there before.
//!
//! Debug builds check every such rebuild against the whole translation.

use crate::patch::{self, Candidate, Outcome};
use crate::snapshot::{Parts, assemble};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use portolan_model::World;
use portolan_model::changes::WorldStamp;
use portolan_translate::{Keep, Options, Provenance, ProxyGroup, SharedResources, Translator};
use portolan_xds::snapshot::Encoded;
use portolan_xds::{ResourceType, Snapshot, SnapshotError};
use std::collections::HashMap;

/// The translator, keeping encodings, from one build to the next (for the groups of one zone).
#[derive(Debug, Default)]
pub struct IncrementalBuilder {
    translator: Translator<Encode>,
    /// What each group's last snapshot was built from, by group name.
    groups: HashMap<String, Built>,
    /// Whether the last build took the endpoint-only path.
    endpoints_only: bool,
}

/// What a group's last snapshot was built from (what an endpoint-only rebuild must match).
#[derive(Debug)]
struct Built {
    world: WorldStamp,
    group: ProxyGroup,
    options: Options,
    secrets: Vec<Secret>,
    /// The snapshot's version of each type (the previous snapshot must be this one).
    versions: Vec<String>,
    provenance: Provenance,
}

/// Keeps each translated cluster and assignment as its [`Encoded`] resource.
#[derive(Clone, Copy, Debug, Default)]
pub struct Encode;

/// What an [`IncrementalBuilder`]'s translation gives: encoded clusters, assignments and
/// route configurations (listeners stay messages).
type EncodedResources = SharedResources<Encoded, Encoded, Encoded>;

// === impl Encode ===

impl Keep for Encode {
    type Cluster = Encoded;
    type Assignment = Encoded;
    type Route = Encoded;

    fn cluster(&self, cluster: Cluster) -> Encoded {
        Encoded::cluster(&cluster)
    }

    fn assignment(&self, assignment: ClusterLoadAssignment) -> Encoded {
        Encoded::load_assignment(&assignment)
    }

    fn route(&self, route: RouteConfiguration) -> Encoded {
        Encoded::route(&route)
    }

    fn route_name(route: &Encoded) -> &str {
        route.resource().name()
    }

    fn cluster_name(cluster: &Encoded) -> &str {
        cluster.resource().name()
    }

    fn assignment_name(assignment: &Encoded) -> &str {
        assignment.resource().name()
    }
}

// === impl IncrementalBuilder ===

impl IncrementalBuilder {
    pub fn new() -> Self {
        Self {
            translator: Translator::with_keep(Encode),
            groups: HashMap::new(),
            endpoints_only: false,
        }
    }

    /// Forgets what it built for groups `keep` says no.
    pub fn retain_groups(&mut self, keep: impl Fn(&str) -> bool) {
        self.groups.retain(|name, _| keep(name));
    }

    /// How many groups it holds a previous build of.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Whether the last build translated only the endpoints that changed (see the module doc).
    pub fn last_was_endpoints_only(&self) -> bool {
        self.endpoints_only
    }

    /// Translates `world` for `group` and builds its snapshot, sharing unchanged entries with
    /// `previous`. The same snapshot as [`crate::snapshot()`] of [`portolan_translate::translate`].
    pub fn build(
        &mut self,
        world: &World,
        group: &ProxyGroup,
        options: &Options,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, SnapshotError> {
        self.build_with_secrets(world, group, options, previous, &[])
            .map(|(snapshot, _)| snapshot)
    }

    /// [`IncrementalBuilder::build`] with SDS secrets (a mesh group's certificates) added to
    /// those translation gave (a gateway group's certificates);
    /// also gives the translation's [`Provenance`] (entries of Services whose translation was
    /// reused are the memo's, shared).
    pub fn build_with_secrets(
        &mut self,
        world: &World,
        group: &ProxyGroup,
        options: &Options,
        previous: Option<&Snapshot>,
        secrets: &[Secret],
    ) -> Result<(Snapshot, Provenance), SnapshotError> {
        self.build_patched(world, group, options, previous, secrets, &[])
            .0
    }

    /// [`IncrementalBuilder::build_with_secrets`] with the group's `EnvoyPatchPolicy`
    /// candidates applied after translation and checked with the snapshot (see
    /// [`crate::patch::patch_checked`]); the patched resources' provenance names their
    /// policy. Also gives each candidate's outcome.
    pub fn build_patched(
        &mut self,
        world: &World,
        group: &ProxyGroup,
        options: &Options,
        previous: Option<&Snapshot>,
        secrets: &[Secret],
        candidates: &[Candidate],
    ) -> (Result<(Snapshot, Provenance), SnapshotError>, Vec<Outcome>) {
        self.endpoints_only = false;
        if candidates.is_empty()
            && let Some(fast) = self.endpoints_only(world, group, options, previous, secrets)
        {
            if cfg!(debug_assertions) {
                self.check_against_full(world, group, options, previous, secrets, &fast);
            }
            self.endpoints_only = true;
            if let Some(built) = self.groups.get_mut(&group.name) {
                // The group, options and secrets are those it was built with.
                built.world = world.stamp();
                built.versions = versions(&fast.0);
                built.provenance = fast.1.clone();
            }
            return (Ok(fast), Vec::new());
        }
        let (built, outcomes) =
            self.build_full(world, group, options, previous, secrets, candidates);
        match &built {
            Ok(built) if candidates.is_empty() => {
                self.remember(world, group, options, secrets, built)
            }
            _ => drop(self.groups.remove(&group.name)),
        }
        (built, outcomes)
    }

    /// The whole translation and snapshot.
    fn build_full(
        &mut self,
        world: &World,
        group: &ProxyGroup,
        options: &Options,
        previous: Option<&Snapshot>,
        secrets: &[Secret],
        candidates: &[Candidate],
    ) -> (Result<(Snapshot, Provenance), SnapshotError>, Vec<Outcome>) {
        let mut resources = self.translator.translate(world, group, options);
        let mut provenance = std::mem::take(&mut resources.provenance);
        let (built, outcomes) =
            patch::patch_checked(candidates, resources, |r| snapshot(r, previous, secrets));
        patch::record_provenance(&outcomes, &mut provenance);
        (built.map(|s| (s, provenance)), outcomes)
    }

    /// The rebuild after an endpoint-only change (see the module doc): `previous` with the
    /// changed Services' assignments replaced; `None` when it does not apply.
    fn endpoints_only(
        &mut self,
        world: &World,
        group: &ProxyGroup,
        options: &Options,
        previous: Option<&Snapshot>,
        secrets: &[Secret],
    ) -> Option<(Snapshot, Provenance)> {
        let previous = previous?;
        let built = self.groups.get(&group.name)?;
        let same_inputs = built.group == *group
            && built.options == *options
            && built.secrets.as_slice() == secrets
            && group.workload.is_none();
        if !same_inputs
            || !ResourceType::ALL
                .iter()
                .map(|ty| previous.version(*ty))
                .eq(built.versions.iter().map(String::as_str))
        {
            return None;
        }
        let services = world.endpoint_changes_since(built.world)?;
        let mut provenance = built.provenance.clone();
        let clusters = previous.resources(ResourceType::Cluster);
        // Which Services a group reaches does not depend on endpoints: those whose clusters
        // its previous snapshot holds.
        let reached = |name: &str| clusters.contains_key(name);
        let outputs = self
            .translator
            .endpoints_only(world, group, options, &services, reached)?;
        let mut assignments = Vec::new();
        for output in outputs {
            let unchanged = output.clusters.iter().all(|c| {
                let c = c.resource();
                clusters
                    .get(c.name())
                    .is_some_and(|held| held.version() == c.version() && held.value() == c.value())
            });
            if !unchanged || !provenance.replace_entries(&output.provenance) {
                return None;
            }
            assignments.extend(output.load_assignments);
        }
        let snapshot = previous.with_replaced_assignments(assignments)?;
        Some((snapshot, provenance))
    }

    /// Records what `group`'s snapshot was built from.
    fn remember(
        &mut self,
        world: &World,
        group: &ProxyGroup,
        options: &Options,
        secrets: &[Secret],
        (snapshot, provenance): &(Snapshot, Provenance),
    ) {
        let built = Built {
            world: world.stamp(),
            group: group.clone(),
            options: options.clone(),
            secrets: secrets.to_vec(),
            versions: versions(snapshot),
            provenance: provenance.clone(),
        };
        self.groups.insert(group.name.clone(), built);
    }

    /// Panics unless the endpoint-only rebuild `fast` is what the whole translation gives
    /// (debug builds: the check the module doc promises).
    fn check_against_full(
        &mut self,
        world: &World,
        group: &ProxyGroup,
        options: &Options,
        previous: Option<&Snapshot>,
        secrets: &[Secret],
        fast: &(Snapshot, Provenance),
    ) {
        let (full, _) = self.build_full(world, group, options, previous, secrets, &[]);
        let full = full.unwrap_or_else(|e| {
            panic!(
                "group {}: the endpoint-only rebuild succeeded, the whole one failed: {e}",
                group.name
            )
        });
        if let Some(difference) = difference(&fast.0, &full.0) {
            panic!(
                "group {}: the endpoint-only rebuild differs from the whole one: {difference}",
                group.name
            );
        }
        assert!(
            fast.1 == full.1,
            "group {}: the endpoint-only rebuild's provenance differs",
            group.name
        );
    }

    /// The translator (for its memo statistics).
    pub fn translator(&self) -> &Translator<Encode> {
        &self.translator
    }

    /// Clusters and assignments whose encoding was reused by the last build.
    pub fn encodings_reused(&self) -> usize {
        self.translator.stats().reused_resources
    }
}

/// A snapshot's version of each type.
fn versions(snapshot: &Snapshot) -> Vec<String> {
    ResourceType::ALL
        .iter()
        .map(|ty| snapshot.version(*ty).to_string())
        .collect()
}

/// How two snapshots differ (resources, versions, what a wildcard gets, VHDS route
/// configurations); `None` when they do not.
pub fn difference(a: &Snapshot, b: &Snapshot) -> Option<String> {
    for ty in ResourceType::ALL {
        if a.resources(ty) != b.resources(ty) {
            let names = |s: &Snapshot| s.resources(ty).keys().cloned().collect::<Vec<_>>();
            let differ: Vec<&String> = a
                .resources(ty)
                .iter()
                .filter(|(n, r)| b.resources(ty).get(*n) != Some(*r))
                .map(|(n, _)| n)
                .take(5)
                .collect();
            return Some(format!(
                "{ty}: resources differ ({differ:?}; {} vs {} names{})",
                a.resources(ty).len(),
                b.resources(ty).len(),
                if names(a) == names(b) {
                    ""
                } else {
                    ", other names"
                }
            ));
        }
        if a.version(ty) != b.version(ty) {
            return Some(format!("{ty}: versions differ"));
        }
        let wildcard = |s: &Snapshot| {
            s.resources(ty)
                .keys()
                .filter(|n| s.in_wildcard(ty, n))
                .count()
        };
        if a.resources(ty)
            .keys()
            .any(|n| a.in_wildcard(ty, n) != b.in_wildcard(ty, n))
        {
            return Some(format!(
                "{ty}: wildcard names differ ({} vs {})",
                wildcard(a),
                wildcard(b)
            ));
        }
    }
    (a.vhds_route_configs() != b.vhds_route_configs())
        .then(|| "VHDS route configurations differ".to_string())
}

/// The snapshot of encoded clusters, assignments and route configurations, the group's
/// listeners and its secrets.
fn snapshot(
    resources: EncodedResources,
    previous: Option<&Snapshot>,
    secrets: &[Secret],
) -> Result<Snapshot, SnapshotError> {
    let all_secrets;
    let secrets = if resources.secrets.is_empty() {
        secrets
    } else {
        all_secrets = [resources.secrets.as_slice(), secrets].concat();
        all_secrets.as_slice()
    };
    let parts = Parts {
        clusters: resources.clusters,
        load_assignments: resources.load_assignments,
        listeners: &resources.listeners,
        routes: resources.routes,
        on_demand: resources.on_demand.as_ref(),
        secrets,
    };
    assemble(parts, previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The group a group key's string form names.
    fn test_group(key: &str) -> ProxyGroup {
        let key: portolan_model::GroupKey = key.parse().unwrap_or_else(|e| panic!("{e}"));
        ProxyGroup::from(&key)
    }
    use crate::snapshot;
    use portolan_api::{Kind, ObjectRef};
    use portolan_model::{
        AddressType, Endpoint, EndpointGroup, EndpointPort, EndpointSubset, Protocol, Service,
        ServiceKey, ServicePort,
    };
    use portolan_xds::ResourceType;
    use std::sync::Arc;

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
        let (group, options) = (test_group("default;zone=zone-a"), Options::default());
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

    /// Encoding as it translates gives the snapshot of the messages for every kind of group:
    /// gRPC clients (fitted before encoding), on-demand (VHDS, named-only clusters), scoped.
    #[test]
    fn encoded_builds_equal_snapshots_of_the_messages_for_every_kind_of_group() {
        let mut world = World::default();
        for (name, ip) in [("a", "10.0.0.1"), ("b", "10.0.0.2")] {
            add_service(&mut world, name, ip);
        }
        let options = Options::default();
        let mut clusters = Vec::new();
        for key in [
            "default",
            "default;client=grpc",
            "default;mode=on-demand",
            "default;scope=default/a.default.svc.cluster.local",
        ] {
            let group = test_group(key);
            let resources = portolan_translate::translate(&world, &group, &options);
            let pure = snapshot(&resources, None).expect("consistent");
            let mut builder = IncrementalBuilder::new();
            let built = builder
                .build(&world, &group, &options, None)
                .expect("consistent");
            for ty in ResourceType::SERVED {
                assert_eq!(built.resources(ty), pure.resources(ty), "{key}: {ty}");
                assert_eq!(built.version(ty), pure.version(ty), "{key}: {ty}");
                let names = |s: &Snapshot| {
                    s.resources(ty)
                        .keys()
                        .filter(|n| s.in_wildcard(ty, n))
                        .cloned()
                        .collect::<Vec<_>>()
                };
                assert_eq!(names(&built), names(&pure), "{key}: {ty} wildcard");
            }
            assert_eq!(
                built.vhds_route_configs(),
                pure.vhds_route_configs(),
                "{key}"
            );
            clusters.push(built.resources(ResourceType::Cluster).len());
        }
        // The groups differ: the scoped one reaches only Service a.
        assert_eq!((clusters[0], clusters[3]), (2, 1));
        assert!(!pure_vhds_is_empty(&world, &options));
    }

    fn pure_vhds_is_empty(world: &World, options: &Options) -> bool {
        let group = test_group("default;mode=on-demand");
        let mut builder = IncrementalBuilder::new();
        let built = builder
            .build(world, &group, options, None)
            .expect("consistent");
        built.resources(ResourceType::VirtualHost).is_empty()
    }
}

#[cfg(test)]
#[path = "incremental_tests.rs"]
mod endpoint_only_tests;

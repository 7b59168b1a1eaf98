//! Immutable, consistent sets of resources for one proxy group.
//!
//! A [`Snapshot`] holds, per type, the resources by name and an aggregate version derived from
//! their contents (same contents, same version). Only a [`SnapshotBuilder`] makes one, and only
//! after the consistency check ([`SnapshotError`] names what failed it).
//!
//! Resources can be served by name only ([`Snapshot::in_wildcard`]): a wildcard subscription
//! leaves them out and a subscription by name gets them (on-demand CDS).
//!
//! A snapshot knows which route configurations take their virtual hosts over VHDS
//! ([`Snapshot::vhds_route_configs`]): Envoy watches VHDS by route configuration name, and the
//! Delta stream answers that watch's first, empty request with it (see [`crate::delta`]).
//!
//! * `snapshot/builder.rs`: [`SnapshotBuilder`] and [`Encoded`] (encode once, share what did not
//!   change with the previous snapshot).
//! * `snapshot/consistency.rs`: what each resource needs from the rest of its snapshot, and the
//!   check that it is there.
//! * `snapshot/changes.rs`: per type, what changed since the snapshot the group published before
//!   ([`Snapshot::changes_since`]), computed once when [`crate::Cache::set`] publishes it.
//!
//! A published snapshot has an id (unique in the process, never 0) and knows the id of the
//! snapshot its group published just before it, the base of its change sets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::resource::{Resource, ResourceType, VersionSum};
use crate::sotw_request::RequestNames;
use crate::status::SubscribedNames;

mod builder;
mod changes;
mod consistency;

pub use builder::{Encoded, SnapshotBuilder};
pub use changes::{Change, Changes};
pub use consistency::SnapshotError;

/// The id of the next snapshot published in this process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The resources of one type and their aggregate version.
#[derive(Clone, Debug, Default)]
struct TypeResources {
    /// Shared by the snapshots that hold the same resources of this type (an endpoint-only
    /// rebuild shares every other type with the snapshot before it).
    resources: Arc<BTreeMap<String, Arc<Resource>>>,
    version: String,
    /// The running form of `version` (streams update theirs from change sets).
    sum: VersionSum,
    /// Names served only to a client that asks for them by name, never in a wildcard answer
    /// (on-demand CDS, see [`SnapshotBuilder::named_only`]).
    named_only: BTreeSet<String>,
    /// What streams in step with these resources share instead of each holding a copy.
    shared: Arc<Shared>,
}

/// Every resource of a type by its shared name: what a SotW stream holds once it sent them all.
pub(crate) type AllHeld = Arc<BTreeMap<Arc<str>, Arc<Resource>>>;

/// Every resource of a type in name order: what a SotW response that carries them all sends.
pub(crate) type AllListed = Arc<[Arc<Resource>]>;

/// Every resource's version by its shared name: what a Delta stream holds once it sent them all.
pub(crate) type AllVersions = Arc<BTreeMap<Arc<str>, Arc<str>>>;

/// Per type, the maps over all of its resources that streams share (made on first use, once
/// for every stream of the group): a stream that holds, or subscribes to, exactly every
/// resource of the type keeps an `Arc` of these instead of a map of its own (at 1,000
/// Services, about 1,000 entries per type and proxy).
#[derive(Debug, Default)]
struct Shared {
    held: OnceLock<AllHeld>,
    listed: OnceLock<AllListed>,
    versions: OnceLock<AllVersions>,
    names: OnceLock<SubscribedNames>,
    /// `names` as a SotW request encodes them, in the same (sorted) order: an ACK that repeats
    /// them is recognised with one comparison of bytes.
    encoded_names: OnceLock<RequestNames>,
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
    /// Set by [`crate::Cache::set`]: this snapshot's id, the id of the snapshot its group
    /// published before (0 for none) and, per type, what changed since that one.
    id: u64,
    base: u64,
    changes: [Option<Changes>; ResourceType::COUNT],
}

// === impl TypeResources ===

impl TypeResources {
    /// The resources of a type (in name order), their version and the names served by name only.
    fn new(resources: BTreeMap<String, Arc<Resource>>, named_only: BTreeSet<String>) -> Self {
        let mut sum = VersionSum::default();
        for resource in resources.values() {
            sum.add_resource(resource);
        }
        Self {
            resources: Arc::new(resources),
            version: sum.version(),
            sum,
            named_only,
            shared: Arc::default(),
        }
    }
}

// === impl Snapshot ===

impl Snapshot {
    /// Starts a snapshot.
    pub fn builder<'p>() -> SnapshotBuilder<'p> {
        SnapshotBuilder::default()
    }

    /// A snapshot of the checked resources of each type.
    fn new(
        types: [TypeResources; ResourceType::COUNT],
        vhds_route_configs: BTreeSet<String>,
    ) -> Self {
        Self {
            types,
            rollout: 0,
            published_at: None,
            vhds_route_configs: Arc::new(vhds_route_configs),
            id: 0,
            base: 0,
            changes: Default::default(),
        }
    }

    /// The resources of one type, by name.
    pub fn resources(&self, ty: ResourceType) -> &BTreeMap<String, Arc<Resource>> {
        &self.types[ty.index()].resources
    }

    /// The aggregate version of one type, derived from its contents.
    pub fn version(&self, ty: ResourceType) -> &str {
        &self.types[ty.index()].version
    }

    /// The running form of [`Snapshot::version`].
    pub(crate) fn version_sum(&self, ty: ResourceType) -> VersionSum {
        self.types[ty.index()].sum
    }

    /// Every resource of `ty` by its shared name, one map for every stream that holds them all.
    pub(crate) fn all_held(&self, ty: ResourceType) -> &AllHeld {
        let types = &self.types[ty.index()];
        types.shared.held.get_or_init(|| {
            let all = types.resources.values();
            Arc::new(all.map(|r| (r.shared_name().clone(), r.clone())).collect())
        })
    }

    /// Every resource of `ty` in name order, one list for every response that sends them all
    /// (a first sync), instead of a list of its own per stream.
    pub(crate) fn all_listed(&self, ty: ResourceType) -> &AllListed {
        let types = &self.types[ty.index()];
        types
            .shared
            .listed
            .get_or_init(|| types.resources.values().cloned().collect())
    }

    /// Every resource version of `ty` by its shared name, one map for every stream that holds
    /// them all.
    pub(crate) fn all_versions(&self, ty: ResourceType) -> &AllVersions {
        let types = &self.types[ty.index()];
        types.shared.versions.get_or_init(|| {
            let all = types.resources.values();
            let versions = all.map(|r| (r.shared_name().clone(), r.shared_version().clone()));
            Arc::new(versions.collect())
        })
    }

    /// Every name of `ty`, one set for every stream that subscribes to them all.
    pub(crate) fn all_names(&self, ty: ResourceType) -> &SubscribedNames {
        let types = &self.types[ty.index()];
        types.shared.names.get_or_init(|| {
            let all = types.resources.values();
            Arc::new(all.map(|r| r.shared_name().clone()).collect())
        })
    }

    /// [`Snapshot::all_names`] as a SotW request that names them all in order encodes them.
    pub(crate) fn all_names_encoded(&self, ty: ResourceType) -> &RequestNames {
        let types = &self.types[ty.index()];
        types
            .shared
            .encoded_names
            .get_or_init(|| RequestNames::from_names(self.all_names(ty).iter()))
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

    /// The id [`crate::Cache::set`] gave it; 0 before.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// What changed in `ty` since the snapshot with id `base`, if that is the snapshot its group
    /// published just before this one and the change can be described (see `snapshot/changes.rs`).
    pub fn changes_since(&self, base: u64, ty: ResourceType) -> Option<&[Change]> {
        if base == 0 || base != self.base {
            return None;
        }
        self.changes[ty.index()].as_deref()
    }

    /// This snapshot with some ClusterLoadAssignments replaced by new encodings under the
    /// same names: what a rebuild after an endpoint-only change serves (see the pipeline's
    /// incremental builder). A ClusterLoadAssignment needs nothing from the rest of the
    /// snapshot and its clusters need only its name, so the consistency the builder checked
    /// still holds. `None` (build it whole instead) when one is of another type or names
    /// an assignment the snapshot does not have. An encoding with the bytes the snapshot
    /// holds keeps the held `Arc`; every other type is shared as it is. The result is not
    /// published (no id, rollout or change sets).
    pub fn with_replaced_assignments(&self, encoded: Vec<Encoded>) -> Option<Snapshot> {
        let ty = ResourceType::Endpoint;
        let old = &self.types[ty.index()];
        let mut resources = BTreeMap::clone(&old.resources);
        let mut sum = old.sum;
        for e in encoded {
            let new = e.resource();
            if new.ty() != ty {
                return None;
            }
            let held = resources.get_mut(new.name())?;
            if held.version() == new.version() && held.value() == new.value() {
                continue;
            }
            sum.remove(held.name(), held.version());
            sum.add_resource(new);
            *held = new.clone();
        }
        let mut replaced = Some(TypeResources {
            resources: Arc::new(resources),
            version: sum.version(),
            sum,
            named_only: old.named_only.clone(),
            // The same names: streams subscribed to all of them stay on the shared set.
            shared: Arc::new(Shared {
                names: old.shared.names.clone(),
                encoded_names: old.shared.encoded_names.clone(),
                ..Shared::default()
            }),
        });
        let types = std::array::from_fn(|i| match i == ty.index() {
            true => replaced.take().unwrap_or_default(),
            false => self.types[i].clone(),
        });
        Some(Self {
            types,
            rollout: 0,
            published_at: None,
            vhds_route_configs: self.vhds_route_configs.clone(),
            id: 0,
            base: 0,
            changes: Default::default(),
        })
    }

    /// Publishes it after `previous` (the group's snapshot before it, if any): gives it an id,
    /// the time, and its change sets against `previous`.
    pub(crate) fn publish_after(&mut self, previous: Option<&Snapshot>) {
        self.published_at = Some(Instant::now());
        self.id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        self.forget_changes();
        let Some(previous) = previous.filter(|p| p.id != 0) else {
            return;
        };
        self.base = previous.id;
        for (i, changes) in self.changes.iter_mut().enumerate() {
            *changes = changes::diff(&previous.types[i], &self.types[i]);
        }
    }

    /// Drops the change sets (their base was not the group's latest after all).
    pub(crate) fn forget_changes(&mut self) {
        self.base = 0;
        self.changes = Default::default();
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        let empty = || TypeResources::new(BTreeMap::new(), BTreeSet::new());
        Self::new(std::array::from_fn(|_| empty()), BTreeSet::new())
    }
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

    /// Replacing assignments gives what building the whole snapshot with them gives, shares
    /// everything else, and refuses names the snapshot lacks and other types.
    #[test]
    fn replaced_assignments_equal_a_whole_build() {
        let first = snapshot_with(&[("a", 8080), ("b", 8080)], &[("l", "a")]);
        let names = first.all_names(ResourceType::Endpoint).clone();
        let whole = snapshot_with(&[("a", 8080), ("b", 9090)], &[("l", "a")]);
        let replaced = first
            .with_replaced_assignments(vec![
                Encoded::load_assignment(&cla("b", 9090)),
                Encoded::load_assignment(&cla("a", 8080)),
            ])
            .expect("both names are there");
        for ty in ResourceType::ALL {
            assert_eq!(replaced.resources(ty), whole.resources(ty), "{ty}");
            assert_eq!(replaced.version(ty), whole.version(ty), "{ty}");
        }
        let shared =
            |ty, name: &str| Arc::ptr_eq(&first.resources(ty)[name], &replaced.resources(ty)[name]);
        assert!(shared(ResourceType::Endpoint, "a") && shared(ResourceType::Cluster, "b"));
        assert!(!shared(ResourceType::Endpoint, "b"));
        // The same names: streams subscribed to all of them keep the one set.
        assert!(Arc::ptr_eq(
            &names,
            replaced.all_names(ResourceType::Endpoint)
        ));
        let missing = first.with_replaced_assignments(vec![Encoded::load_assignment(&cla("c", 1))]);
        assert!(missing.is_none());
        let cluster = first.with_replaced_assignments(vec![Encoded::cluster(&cluster("a"))]);
        assert!(cluster.is_none());
    }

    #[test]
    fn an_empty_snapshot_has_the_empty_versions() {
        let empty = Snapshot::default();
        let built = Snapshot::builder().build().expect("empty is consistent");
        for ty in ResourceType::SERVED {
            assert_eq!(empty.version(ty), built.version(ty));
            assert!(empty.resources(ty).is_empty());
        }
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
}

//! From World to cache: translate for every proxy group and swap each group's snapshot.
//!
//! Two triggers share one build lock, so a group never receives an older World after a newer
//! one: a debounced change of the index rebuilds every group a proxy is connected to, and a
//! proxy of a group not built (new, or left unbuilt while nobody was connected) gets that group
//! built at once. Nothing is built before the sources have synced, and no group before a proxy
//! of it connects (not even the `default` group): at start only the World is built (the config
//! indexed and validated). Readers that want a group's snapshot with no proxy of it connected
//! get one built for them and not kept ([`Pipeline::snapshot_for`]).
//!
//! Each debounced batch is a rollout (see [`portolan_xds::convergence`]): it begins with the time
//! of the batch's first change, and the snapshots it sets carry its id, so the stream tasks can
//! report when every connected proxy has ACKed it.
//!
//! Builds are incremental (see [`crate::incremental`]): one [`IncrementalBuilder`] per zone (and
//! mesh membership) keeps the translation and encoding of every Service's clusters and
//! assignments, so a rebuild after a small change redoes only what it touched.
//!
//! Groups are formed from the xDS group keys with their `ProxyScope` resolved (see
//! [`crate::groups`]), so a ProxyScope change rebuilds the groups it applies to like any other
//! change.
//!
//! Mesh workloads: the snapshot of a group with a workload identity also holds that
//! identity's certificate and the trust bundle as SDS secrets (`certs.rs`: issued on first
//! use, replaced at half-life); [`Pipeline::rotate_certificates`] rebuilds when one
//! is due, so a rotation is a new Secret version pushed to that group's proxies.
//!
//! History and rollback: each build is recorded in the [`History`] (if kept);
//! [`Pipeline::roll_back`] pins an older World, served until the next debounced change of the
//! source, which unpins it under the same build lock.

use crate::certs::MeshCerts;
use crate::error::{BuildError, PreviewError};
use crate::history::History;
use crate::patch::Outcome;
use crate::patch::Patches;
use crate::programmed::Provenances;
use crate::{IncrementalBuilder, PipelineMetrics, groups};
use portolan_ca::WorkloadCerts;
use portolan_model::{Index, World};
use portolan_translate::Provenance;
use portolan_translate::proxyless::Client;
use portolan_translate::{Options, ProxyGroup};
use portolan_xds::{Cache, Debouncer, ResourceType, Snapshot, SnapshotError};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Translates Worlds into the cache.
pub struct Pipeline {
    index: Arc<Mutex<Index>>,
    cache: Arc<Cache>,
    options: Options,
    metrics: PipelineMetrics,
    /// Workload certificates of mesh groups (none: no SDS secrets are served).
    certs: Option<MeshCerts>,
    /// Held while building; the incremental builders by proxy zone and mesh membership.
    build_lock: Mutex<Builders>,
    /// The provenance of each group's snapshot, set with it (for NACK attribution).
    provenances: Arc<Provenances>,
    /// EnvoyPatchPolicy state: enabled, last good versions, outcomes per group.
    patches: Arc<Patches>,
    /// The config history (`serve --history N`), recorded after each build.
    history: std::sync::OnceLock<Arc<History>>,
    /// A rolled-back World served instead of the index's until the next change of the source.
    pinned: Mutex<Option<Arc<World>>>,
}

/// One incremental builder per proxy zone, mesh membership, scope and client (clusters and
/// assignments depend on nothing else; a gRPC client's are fitted for it before encoding).
type Builders = HashMap<BuilderKey, IncrementalBuilder>;

/// Zone, mesh membership, scope (canonical text) and client of a group.
type BuilderKey = (Option<String>, bool, Option<String>, Client);

fn builder_key(group: &ProxyGroup) -> BuilderKey {
    (
        group.zone.clone(),
        group.workload.is_some(),
        group.scope.as_ref().map(|s| s.to_string()),
        group.client,
    )
}

/// The group of proxies whose node names no cluster.
pub const DEFAULT_GROUP: &str = "default";

/// A group's snapshot as [`Pipeline::snapshot_for`] found or built it.
#[derive(Clone, Debug)]
pub struct Served {
    pub snapshot: Arc<Snapshot>,
    /// Whether the cache held it (what the group's proxies are served); else it was built
    /// for the asker from the current World and not kept.
    pub cached: bool,
}

// === impl Pipeline ===

impl Pipeline {
    pub fn new(
        index: Arc<Mutex<Index>>,
        cache: Arc<Cache>,
        options: Options,
        metrics: PipelineMetrics,
    ) -> Arc<Self> {
        Self::with_certs(index, cache, options, metrics, None, Provenances::new())
    }

    /// A pipeline that serves mesh groups their workload certificates from `certs`, and sets
    /// the provenance of each group's snapshot in `provenances`.
    pub fn with_certs(
        index: Arc<Mutex<Index>>,
        cache: Arc<Cache>,
        options: Options,
        metrics: PipelineMetrics,
        certs: Option<Arc<WorkloadCerts>>,
        provenances: Arc<Provenances>,
    ) -> Arc<Self> {
        let patches = Patches::new(options.envoy_patch_policy);
        Self::with_state(index, cache, options, metrics, certs, provenances, patches)
    }

    /// [`Pipeline::with_certs`] that records EnvoyPatchPolicy outcomes in `patches` (whose
    /// `enabled` decides whether patches apply).
    pub fn with_state(
        index: Arc<Mutex<Index>>,
        cache: Arc<Cache>,
        options: Options,
        metrics: PipelineMetrics,
        certs: Option<Arc<WorkloadCerts>>,
        provenances: Arc<Provenances>,
        patches: Arc<Patches>,
    ) -> Arc<Self> {
        let certs = certs.map(|c| MeshCerts::new(c, &options.mesh.trust_domain));
        Arc::new(Self {
            index,
            cache,
            metrics,
            certs,
            build_lock: Mutex::new(HashMap::new()),
            provenances,
            patches,
            options,
            history: std::sync::OnceLock::new(),
            pinned: Mutex::new(None),
        })
    }

    /// The provenance of each group's snapshot.
    pub fn provenances(&self) -> &Arc<Provenances> {
        &self.provenances
    }

    /// Records every build in `history` from now on (set once; later calls are ignored).
    pub fn set_history(&self, history: Arc<History>) {
        let _ = self.history.set(history);
    }

    /// Serves `world` (an older version, from the history) to every group until the next
    /// change of the source, which is built from the source as usual and ends the rollback.
    /// The history (if kept) says "rolled back to V; source is at W" meanwhile.
    pub async fn roll_back(self: Arc<Self>, world: Arc<World>) {
        self.build_all_pinned(0, Some(world)).await;
    }

    /// Under the build lock: serve `pin` (a rollback) or, with `None`, the index again. Ending
    /// a rollback clears the history's "rolled back" even when the source's World version did
    /// not move (e.g. a file touched).
    fn set_pin(&self, pin: Option<Arc<World>>) {
        let mut pinned = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        let was = pinned.is_some();
        if let Some(history) = self.history.get() {
            match &pin {
                Some(world) => {
                    history.set_rolled_back(world.version);
                }
                None if was => history.clear_rolled_back(),
                None => {}
            }
        }
        *pinned = pin;
    }

    /// The EnvoyPatchPolicy state (outcomes per group, for status).
    pub fn patches(&self) -> &Arc<Patches> {
        &self.patches
    }

    /// Rebuilds every group whenever a workload certificate is due (at half its lifetime),
    /// so each due certificate is replaced and pushed as a new Secret version. Runs forever.
    pub async fn rotate_certificates(self: Arc<Self>) {
        let Some(certs) = self.certs.clone() else {
            return;
        };
        loop {
            tokio::time::sleep(certs.until_next_rotation()).await;
            if certs.rotation_due() {
                self.clone().build_all(0).await;
            }
        }
    }

    /// Rebuilds every group a proxy is connected to now (the mesh CA's trust bundle or
    /// signing root changed: a CA rotation moved on).
    pub async fn rebuild_all(self: Arc<Self>) {
        self.build_all(0).await;
    }

    /// Runs until `changes` closes: waits for `synced`, builds the World and the groups of
    /// proxies already connected (none is built for nobody), sends `ready`, then rebuilds on
    /// each debounced batch of changes (the first change after `quiet` at once, what follows
    /// coalesced until `quiet` passes with no change, at most `max`) and builds new groups as
    /// their first proxy connects.
    pub async fn run(
        self: Arc<Self>,
        mut changes: watch::Receiver<u64>,
        mut synced: watch::Receiver<bool>,
        ready: watch::Sender<bool>,
        quiet: Duration,
        max: Duration,
    ) {
        if synced.wait_for(|s| *s).await.is_err() {
            return;
        }
        changes.mark_unchanged();
        let mut seen = *changes.borrow();
        self.clone().build_all(0).await;
        ready.send_replace(true);
        let groups = tokio::spawn(self.clone().watch_groups());
        let mut debouncer = Debouncer::new(quiet, max);
        while let Some(first) = next_batch(&mut changes, &mut debouncer).await {
            let now = *changes.borrow();
            self.metrics.batches.inc();
            self.metrics
                .batch_changes
                .observe(now.saturating_sub(seen) as f64);
            seen = now;
            let rollouts = self.metrics.xds.clone();
            let rollout = rollouts.rollouts().begin(first);
            let timeout = rollouts.rollouts().timeout();
            tokio::spawn(async move {
                tokio::time::sleep_until((first + timeout).into()).await;
                rollouts.rollouts().expire();
            });
            // A change of the source ends a rollback: it applies on top of the source.
            self.clone().build_all_pinned(rollout, None).await;
        }
        groups.abort();
    }

    async fn watch_groups(self: Arc<Self>) {
        let mut added = self.cache.groups_changed();
        loop {
            self.clone().build_missing().await;
            if added.changed().await.is_err() {
                return;
            }
        }
    }

    /// Rebuilds every group a proxy is connected to (none when no proxy is); the snapshots
    /// belong to `rollout` (0: none).
    async fn build_all(self: Arc<Self>, rollout: u64) {
        self.build_all_with(rollout, None).await;
    }

    /// [`Pipeline::build_all`] that first sets what is served: `pin` (a rollback) or the
    /// index (`None`), under the build lock so no build of the other kind interleaves.
    async fn build_all_pinned(self: Arc<Self>, rollout: u64, pin: Option<Arc<World>>) {
        self.build_all_with(rollout, Some(pin)).await;
    }

    async fn build_all_with(self: Arc<Self>, rollout: u64, pin: Option<Option<Arc<World>>>) {
        self.blocking(move |p| {
            let mut builders = p.lock_builds();
            if let Some(pin) = pin {
                p.set_pin(pin);
            }
            let world = p.world();
            // Only groups with a connected proxy (none at all before the first connects,
            // not even the default group); the others are built when a proxy of theirs
            // connects (`build_missing`). The World is built either way: the config is
            // indexed and validated (config errors, status) with no proxy connected.
            let groups = p.cache.watched_retiring_others();
            let groups: Vec<ProxyGroup> =
                groups.iter().filter_map(|g| group_of(g, &world)).collect();
            p.keep_only(&mut builders, &groups);
            for group in &groups {
                p.build(&mut builders, &world, group, rollout);
            }
            p.record_history(&world, groups.iter().map(|g| g.name.as_str()));
            p.count_resources();
        })
        .await;
    }

    /// Drops what was built for groups the cache no longer holds (evicted after their idle
    /// time): their translators' memos of every encoded resource, provenance, patch outcomes
    /// and workload certificates. A proxy of theirs that connects later gets a fresh build.
    pub async fn forget_evicted(self: Arc<Self>) {
        self.blocking(|p| {
            let mut builders = p.lock_builds();
            let world = p.world();
            let held = p.cache.groups();
            let groups: Vec<ProxyGroup> = held.iter().filter_map(|g| group_of(g, &world)).collect();
            p.keep_only(&mut builders, &groups);
        })
        .await;
    }

    /// Keeps the per-group state of `groups` only.
    fn keep_only(&self, builders: &mut Builders, groups: &[ProxyGroup]) {
        let used: BTreeSet<BuilderKey> = groups.iter().map(builder_key).collect();
        builders.retain(|key, _| used.contains(key));
        if let Some(certs) = &self.certs {
            certs.retain(groups);
        }
        let names: BTreeSet<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        for builder in builders.values_mut() {
            builder.retain_groups(|g| names.contains(g));
        }
        self.provenances.retain(|g| names.contains(g));
        self.patches.retain(|g| names.contains(g));
    }

    async fn build_missing(self: Arc<Self>) {
        self.blocking(|p| {
            let mut builders = p.lock_builds();
            let missing = p.cache.unbuilt_watched();
            if missing.is_empty() {
                return;
            }
            let world = p.world();
            let built: Vec<ProxyGroup> =
                missing.iter().filter_map(|g| group_of(g, &world)).collect();
            for group in &built {
                p.build(&mut builders, &world, group, 0);
            }
            p.record_history(&world, built.iter().map(|g| g.name.as_str()));
            p.count_resources();
        })
        .await;
    }

    /// Adds this build to the history (if kept): the World and each built group's snapshot
    /// versions per type.
    fn record_history<'a>(&self, world: &Arc<World>, groups: impl Iterator<Item = &'a str>) {
        let Some(history) = self.history.get() else {
            return;
        };
        if self
            .pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            // A rollback's builds are not new versions; the history says it is rolled back.
            return;
        }
        let versions = groups
            .filter_map(|g| {
                let snap = self.cache.get(g)?;
                let types = ResourceType::SERVED
                    .iter()
                    .map(|ty| (ty.short_name().to_string(), snap.version(*ty).to_string()))
                    .collect();
                Some((g.to_string(), types))
            })
            .collect();
        history.record(world, versions);
    }

    /// Runs CPU-bound work off the async workers.
    async fn blocking(self: Arc<Self>, f: impl FnOnce(&Pipeline) + Send + 'static) {
        let result = tokio::task::spawn_blocking(move || f(&self)).await;
        if let Err(e) = result {
            tracing::error!(error = %e, "snapshot build task failed");
        }
    }

    fn lock_builds(&self) -> MutexGuard<'_, Builders> {
        self.build_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn world(&self) -> Arc<World> {
        if let Some(pinned) = self
            .pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return pinned;
        }
        let start = Instant::now();
        let world = self.index.lock().unwrap_or_else(|p| p.into_inner()).world();
        self.metrics
            .world_seconds
            .observe(start.elapsed().as_secs_f64());
        self.metrics.world_version.set(world.version as i64);
        self.metrics.config_errors.set(world.errors.len() as i64);
        world
    }

    /// Sets `resources{type}` to the cache's resources summed over groups.
    fn count_resources(&self) {
        let snapshots: Vec<_> = self
            .cache
            .groups()
            .iter()
            .filter_map(|g| self.cache.get(g))
            .collect();
        for ty in ResourceType::ALL {
            let total: usize = snapshots.iter().map(|s| s.resources(ty).len()).sum();
            self.metrics.set_resources(ty, total);
        }
    }

    /// Translates and assembles `group`'s snapshot from `world` with `builder`: its workload
    /// certificates (mesh groups) and the EnvoyPatchPolicies that apply to it, as served.
    fn assemble(
        &self,
        builder: &mut IncrementalBuilder,
        world: &World,
        group: &ProxyGroup,
        previous: Option<&Snapshot>,
    ) -> (Result<(Snapshot, Provenance), SnapshotError>, Vec<Outcome>) {
        let secrets = match &self.certs {
            Some(certs) => certs.secrets(group),
            None => Vec::new(),
        };
        let candidates = self.patches.candidates(world, group);
        builder.build_patched(world, group, &self.options, previous, &secrets, &candidates)
    }

    /// The snapshot a proxy of `group` (a group key's string form) gets now, for readers
    /// outside the xDS streams (`/debug/config_dump`): the cache's while the group is built
    /// (a proxy of it is connected), else one built from the current World as the group's
    /// first proxy would get it, and kept nowhere: neither cached nor remembered by the
    /// builders, provenance or EnvoyPatchPolicy outcomes, so asking does not keep a group
    /// built that no proxy uses (a mesh group's workload certificate is issued as for its
    /// first proxy, and dropped by the next build, whose groups do not hold it).
    pub async fn snapshot_for(self: Arc<Self>, group: String) -> Result<Served, PreviewError> {
        if let Some(snapshot) = self.cache.get(&group) {
            return Ok(Served {
                snapshot,
                cached: true,
            });
        }
        let built = tokio::task::spawn_blocking(move || self.build_unkept(&group)).await;
        built.unwrap_or_else(|e| Err(PreviewError::Task(e.to_string())))
    }

    /// [`Pipeline::snapshot_for`]'s build of a group the cache does not hold.
    fn build_unkept(&self, name: &str) -> Result<Served, PreviewError> {
        let world = self.world();
        let group = groups::group_for_name(name, &world).map_err(PreviewError::Group)?;
        if let Some(error) = group.scope_error() {
            return Err(BuildError::Scope(error.clone()).into());
        }
        let mut builder = IncrementalBuilder::new();
        let (built, _) = self.assemble(&mut builder, &world, &group, None);
        let (snapshot, _) = built.map_err(BuildError::from)?;
        Ok(Served {
            snapshot: Arc::new(snapshot),
            cached: false,
        })
    }

    fn build(&self, builders: &mut Builders, world: &World, group: &ProxyGroup, rollout: u64) {
        if let Some(error) = group.scope_error() {
            self.metrics.build_failures.inc();
            tracing::error!(group = %group.name, %error, "invalid proxy scope; the group is not served until its proxies send a valid one");
            return;
        }
        let start = Instant::now();
        let builder = builders.entry(builder_key(group)).or_default();
        let previous = self.cache.get(&group.name);
        let group_name = group.name.as_str();
        let (built, outcomes) = self.assemble(builder, world, group, previous.as_deref());
        for o in &outcomes {
            if let Some(error) = &o.error {
                tracing::error!(group = group_name, %error, served = ?o.served, "EnvoyPatchPolicy refused for this group; its last good version (if any) stays");
            }
        }
        self.patches.record(group_name, outcomes, built.is_ok());
        match built {
            Ok((snap, provenance)) => {
                let endpoints_only = builder.last_was_endpoints_only();
                tracing::debug!(
                    group = group_name,
                    world = world.version,
                    endpoints_only,
                    "snapshot built"
                );
                // Before the snapshot: a NACK of the new snapshot finds its provenance.
                self.provenances.set(group_name, provenance);
                self.cache.set(group_name, snap.with_rollout(rollout));
                self.metrics.builds.inc();
                if endpoints_only {
                    self.metrics.endpoint_only_builds.inc();
                }
            }
            Err(e) => {
                self.metrics.build_failures.inc();
                tracing::error!(group = group_name, world = world.version, error = %e, "inconsistent snapshot not served; the previous one stays");
            }
        }
        self.metrics
            .build_seconds
            .observe(start.elapsed().as_secs_f64());
    }
}

/// Waits for the next debounced batch of changes (the first change after a quiet period at
/// once, what follows it coalesced: [`Debouncer`]); returns when its first change was seen,
/// or `None` once the change sender is gone.
async fn next_batch(
    changes: &mut watch::Receiver<u64>,
    debouncer: &mut Debouncer,
) -> Option<Instant> {
    changes.changed().await.ok()?;
    let first = Instant::now();
    // Hand the change just seen on to the debouncer, which starts its wait with it.
    changes.mark_changed();
    debouncer.next(changes).await.then_some(first)
}

/// The group a cache entry names; `None`, logged, for a name the grouping hook does not write
/// (such a group is not built).
fn group_of(name: &str, world: &World) -> Option<ProxyGroup> {
    groups::group_for_name(name, world)
        .map_err(|e| tracing::error!("not building group: {e}"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use portolan_xds::XdsMetrics;
    use std::collections::BTreeMap;

    /// The grouping hook's keys name the groups translation builds for.
    #[test]
    fn group_keys_name_the_groups_translation_builds_for() {
        use portolan_model::GroupKey;
        let labels: BTreeMap<String, String> = [("tier", "edge"), ("odd", "a;b=c%")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let key = GroupKey {
            zone: Some("zone-a".into()),
            labels: labels.clone(),
            ..GroupKey::new("ingress")
        };
        let group = group_of(&key.to_string(), &World::default()).expect("a key");
        assert_eq!(group.cluster, "ingress");
        assert_eq!(group.zone.as_deref(), Some("zone-a"));
        assert_eq!(group.labels, labels);
        assert_eq!(group.name, key.to_string());
        assert!(group_of("web;junk", &World::default()).is_none());
    }

    fn apply_doc(index: &Mutex<Index>, doc: serde_json::Value) {
        let resource = portolan_api::Resource::decode(doc)
            .expect("decodes")
            .expect("a kind Portolan reads");
        assert!(portolan_api::validate::validate(&resource).is_empty());
        let object = portolan_model::convert::to_object(&resource);
        index.lock().expect("index lock").apply(object);
    }

    fn service(namespace: &str, name: &str) -> serde_json::Value {
        serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [{"port": 80}]}})
    }

    /// A change rebuilds only groups with a connected proxy; a group nobody watches is
    /// retired, and built from the current World when a proxy of it connects again.
    #[tokio::test]
    async fn only_watched_groups_are_rebuilt_and_a_returning_proxy_gets_its_group_built() {
        let index = Arc::new(Mutex::new(Index::new()));
        apply_doc(&index, service("shop", "cart"));
        let cache = Cache::new();
        let metrics = PipelineMetrics::unregistered(&XdsMetrics::unregistered());
        let pipeline = Pipeline::new(index.clone(), cache.clone(), Options::default(), metrics);
        let _web = cache.subscribe("web");
        let idle = cache.subscribe("idle");
        pipeline.clone().build_all(0).await;
        assert!(cache.get("web").is_some() && cache.get("idle").is_some());
        drop(idle);
        apply_doc(&index, service("shop", "pay"));
        pipeline.clone().build_all(0).await;
        let has_pay = |group: &str| {
            cache.get(group).is_some_and(|snap| {
                snap.resources(ResourceType::Cluster)
                    .keys()
                    .any(|c| c.contains("pay.shop"))
            })
        };
        assert!(has_pay("web"), "the watched group is rebuilt");
        assert!(cache.get("idle").is_none(), "the unwatched group is not");
        let _back = cache.subscribe("idle");
        assert_eq!(cache.unbuilt_watched(), vec!["idle".to_string()]);
        pipeline.clone().build_missing().await;
        assert!(has_pay("idle"), "built from the current World on return");
    }

    /// A group built for a proxy that has left: once the cache evicts it (nobody watched it
    /// for the idle time), the translator that holds every encoded resource of it is dropped
    /// too.
    #[tokio::test]
    async fn an_evicted_group_takes_its_builder_with_it() {
        let index = Arc::new(Mutex::new(Index::new()));
        apply_doc(&index, service("shop", "cart"));
        let cache = Cache::new();
        let metrics = PipelineMetrics::unregistered(&XdsMetrics::unregistered());
        let pipeline = Pipeline::new(index.clone(), cache.clone(), Options::default(), metrics);
        let gone = cache.subscribe(DEFAULT_GROUP);
        pipeline.clone().build_missing().await;
        drop(gone);
        assert!(cache.get(DEFAULT_GROUP).is_some(), "built for its proxy");
        assert_eq!(pipeline.lock_builds().len(), 1);
        let _web = cache.subscribe("web");
        pipeline.clone().build_missing().await;
        assert_eq!(cache.evict_idle(Duration::ZERO), vec![DEFAULT_GROUP]);
        pipeline.clone().forget_evicted().await;
        let builders = pipeline.lock_builds();
        let groups: Vec<usize> = builders.values().map(|b| b.group_count()).collect();
        assert_eq!(groups, [1], "only the watched group's state is kept");
    }

    fn pipeline_of(index: &Arc<Mutex<Index>>, cache: &Arc<Cache>) -> Arc<Pipeline> {
        let metrics = PipelineMetrics::unregistered(&XdsMetrics::unregistered());
        Pipeline::new(index.clone(), cache.clone(), Options::default(), metrics)
    }

    /// What a from-scratch build of `group` from the index's World serves: versions per type.
    fn fresh_versions(index: &Mutex<Index>, group: &str) -> Vec<String> {
        let world = index.lock().expect("index lock").world();
        let group = group_of(group, &world).expect("a group key");
        let (_, snap) = crate::snapshot::translate_checked(&world, &group, &Options::default())
            .expect("builds");
        versions(&snap)
    }

    fn versions(snap: &Snapshot) -> Vec<String> {
        ResourceType::SERVED
            .iter()
            .map(|ty| snap.version(*ty).to_string())
            .collect()
    }

    /// Nothing that holds a built group: no snapshot, no translator, no provenance.
    fn assert_nothing_built(pipeline: &Pipeline, cache: &Cache, when: &str) {
        assert_eq!(cache.groups(), Vec::<String>::new(), "{when}: cache groups");
        assert!(cache.get(DEFAULT_GROUP).is_none(), "{when}: default built");
        assert!(pipeline.lock_builds().is_empty(), "{when}: a translator");
        assert!(
            pipeline.provenances().get(DEFAULT_GROUP).is_none(),
            "{when}: provenance"
        );
    }

    /// At start the World is built and readiness sent with no group built, not even the
    /// default one, and a change with no proxy builds none either; the first proxy of a
    /// group gets its group built then, the same snapshot as a build from scratch.
    #[tokio::test]
    async fn no_group_is_built_before_a_proxy_connects_and_the_first_gets_its_snapshot() {
        let index = Arc::new(Mutex::new(Index::new()));
        apply_doc(&index, service("shop", "cart"));
        let cache = Cache::new();
        let pipeline = pipeline_of(&index, &cache);
        let (changes_tx, changes) = watch::channel(0u64);
        let (_synced_tx, synced) = watch::channel(true);
        let (ready_tx, mut ready) = watch::channel(false);
        let quiet = Duration::from_millis(1);
        let running = tokio::spawn(
            pipeline
                .clone()
                .run(changes, synced, ready_tx, quiet, quiet),
        );
        ready.wait_for(|r| *r).await.expect("ready sent");
        assert_nothing_built(&pipeline, &cache, "at start");
        let built = pipeline.metrics.world_version.get();
        assert!(built > 0, "the World is built");

        apply_doc(&index, service("shop", "pay"));
        changes_tx.send_replace(1);
        // The batch's build takes its World under the build lock, and holds it until done.
        while pipeline.metrics.world_version.get() == built {
            tokio::task::yield_now().await;
        }
        drop(pipeline.lock_builds());
        assert_nothing_built(&pipeline, &cache, "after a change");

        let mut first = cache.subscribe(DEFAULT_GROUP);
        let snap = first
            .wait_for(Option::is_some)
            .await
            .expect("built for the first proxy")
            .clone()
            .expect("a snapshot");
        assert_eq!(versions(&snap), fresh_versions(&index, DEFAULT_GROUP));
        assert!(
            snap.resources(ResourceType::Cluster)
                .keys()
                .any(|c| c.contains("pay.shop")),
            "from the current World"
        );
        running.abort();
    }

    /// A reader of a group nobody is connected to gets a snapshot built for it, the same as
    /// its first proxy would get, and nothing of it is kept; a built group's is the cache's.
    #[tokio::test]
    async fn a_snapshot_for_a_reader_is_built_on_demand_and_not_kept() {
        let index = Arc::new(Mutex::new(Index::new()));
        apply_doc(&index, service("shop", "cart"));
        let cache = Cache::new();
        let pipeline = pipeline_of(&index, &cache);
        let served = pipeline
            .clone()
            .snapshot_for(DEFAULT_GROUP.to_string())
            .await
            .expect("built");
        assert!(!served.cached);
        assert_eq!(
            versions(&served.snapshot),
            fresh_versions(&index, DEFAULT_GROUP)
        );
        assert_nothing_built(&pipeline, &cache, "after the reader's build");

        let _proxy = cache.subscribe(DEFAULT_GROUP);
        pipeline.clone().build_missing().await;
        let served = pipeline
            .clone()
            .snapshot_for(DEFAULT_GROUP.to_string())
            .await
            .expect("cached");
        assert!(served.cached);
        let held = cache.get(DEFAULT_GROUP).expect("built for the proxy");
        assert!(Arc::ptr_eq(&served.snapshot, &held), "the cache's snapshot");

        let unknown = pipeline.clone().snapshot_for("web;junk".to_string()).await;
        assert!(
            matches!(unknown, Err(PreviewError::Group(_))),
            "{unknown:?}"
        );
    }

    /// A ProxyScope change re-translates the groups it selects into different snapshots,
    /// and leaves the other groups' snapshots (so their proxies) untouched.
    #[tokio::test]
    async fn a_proxy_scope_change_rebuilds_only_the_groups_it_selects() {
        let index = Arc::new(Mutex::new(Index::new()));
        apply_doc(&index, service("shop", "cart"));
        apply_doc(&index, service("other", "x"));
        let cache = Cache::new();
        let (shop, other) = ("web;node-ns=shop", "web;node-ns=other");
        let _subscriptions = [cache.subscribe(shop), cache.subscribe(other)];
        let metrics = PipelineMetrics::unregistered(&XdsMetrics::unregistered());
        let pipeline = Pipeline::new(index.clone(), cache.clone(), Options::default(), metrics);
        let clusters = |group: &str| {
            let snap = cache.get(group).expect("built");
            let names: Vec<String> = snap
                .resources(ResourceType::Cluster)
                .keys()
                .cloned()
                .collect();
            (snap.version(ResourceType::Cluster).to_string(), names)
        };
        pipeline.clone().build_all(0).await;
        let (shop_before, all) = clusters(shop);
        let (other_before, _) = clusters(other);
        assert!(all.iter().any(|c| c.contains("x.other")), "{all:?}");

        apply_doc(
            &index,
            serde_json::json!({"apiVersion": "portolan.dev/v1alpha1",
            "kind": "ProxyScope", "metadata": {"name": "default", "namespace": "shop"},
            "spec": {"hosts": ["./*"]}}),
        );
        pipeline.clone().build_all(0).await;
        let (shop_after, scoped) = clusters(shop);
        assert_ne!(
            shop_after, shop_before,
            "the selected group got a new snapshot"
        );
        assert!(scoped.iter().any(|c| c.contains("cart.shop")), "{scoped:?}");
        assert!(!scoped.iter().any(|c| c.contains("x.other")), "{scoped:?}");
        assert_eq!(
            clusters(other).0,
            other_before,
            "the other namespace's group is unchanged"
        );
    }
}

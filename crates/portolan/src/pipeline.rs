//! From World to cache: translate for every proxy group and swap each group's snapshot.
//!
//! Two triggers share one build lock, so a group never receives an older World after a newer
//! one: a debounced change of the index rebuilds every group, and a proxy of a group not seen
//! before gets that group built at once. Nothing is built before the sources have synced.
//!
//! Each debounced batch is a rollout (see [`portolan_xds::convergence`]): it begins with the time
//! of the batch's first change, and the snapshots it sets carry its id, so the stream tasks can
//! report when every connected proxy has ACKed it.
//!
//! Builds are incremental (see [`incremental`]): one [`IncrementalBuilder`] per zone (and
//! mesh membership) keeps the translation and encoding of every Service's clusters and
//! assignments, so a rebuild after a small change redoes only what it touched.
//!
//! Groups are formed from the xDS group keys with their `ProxyScope` resolved (see
//! [`groups`]), so a ProxyScope change rebuilds the groups it applies to like any other change.
//!
//! Mesh workloads: the snapshot of a group with a workload identity also holds that
//! identity's certificate and the trust bundle as SDS secrets, from [`WorkloadCerts`] (issued
//! on first use, replaced at half-life); [`Pipeline::rotate_certificates`] rebuilds when one
//! is due, so a rotation is a new Secret version pushed to that group's proxies.

pub mod groups;
pub mod incremental;

pub use incremental::IncrementalBuilder;

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use portolan_ca::{SpiffeId, WorkloadCerts};
use portolan_model::{Index, World};
use portolan_translate::proxyless::Client;
use portolan_translate::{Options, ProxyGroup, Resources};
use portolan_xds::{Cache, ResourceType, Snapshot, SnapshotError, XdsMetrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: &'static str,
}

/// Metrics of the build path.
#[derive(Clone, Debug)]
pub struct PipelineMetrics {
    world_version: Gauge,
    config_errors: Gauge,
    builds: Counter,
    build_failures: Counter,
    build_seconds: Histogram,
    world_seconds: Histogram,
    batches: Counter,
    batch_changes: Histogram,
    resources: Family<TypeLabels, Gauge>,
    xds: XdsMetrics,
}

// === impl PipelineMetrics ===

impl PipelineMetrics {
    /// Registers the build metrics; `xds` is where rollouts are begun (convergence).
    pub fn new(registry: &mut Registry, xds: &XdsMetrics) -> Self {
        let m = Self::unregistered(xds);
        m.register(registry);
        m
    }

    /// Metrics counted but exported nowhere (tests).
    pub fn unregistered(xds: &XdsMetrics) -> Self {
        Self {
            world_version: Gauge::default(),
            config_errors: Gauge::default(),
            builds: Counter::default(),
            build_failures: Counter::default(),
            build_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            world_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            batches: Counter::default(),
            batch_changes: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            resources: Family::default(),
            xds: xds.clone(),
        }
    }

    fn register(&self, registry: &mut Registry) {
        let m = self;
        registry.register(
            "world_version",
            "Version of the World last translated",
            m.world_version.clone(),
        );
        registry.register(
            "config_errors",
            "Rejected documents and objects in the config sources",
            m.config_errors.clone(),
        );
        registry.register(
            "snapshot_builds",
            "Snapshots built (one per proxy group per debounced batch of changes)",
            m.builds.clone(),
        );
        registry.register(
            "snapshot_build_failures",
            "Snapshots that failed the consistency check (the previous one stays)",
            m.build_failures.clone(),
        );
        registry.register(
            "snapshot_build_seconds",
            "Time to translate a World for one proxy group and encode the snapshot",
            m.build_seconds.clone(),
        );
        registry.register_with_unit(
            "world_build",
            "Time to build a World from the index (once per debounced batch)",
            Unit::Seconds,
            m.world_seconds.clone(),
        );
        registry.register(
            "debounce_batches",
            "Debounced batches of config changes, each a rebuild of every proxy group",
            m.batches.clone(),
        );
        registry.register(
            "debounce_batch_changes",
            "Config source updates folded into one debounced batch",
            m.batch_changes.clone(),
        );
        registry.register(
            "resources",
            "Resources in the cache by xDS type, summed over proxy groups",
            m.resources.clone(),
        );
    }

    /// Batches rebuilt so far.
    pub fn batches(&self) -> u64 {
        self.batches.get()
    }

    /// Resources of a type in the cache, summed over groups.
    pub fn resources(&self, ty: ResourceType) -> i64 {
        self.resources
            .get_or_create(&TypeLabels {
                r#type: ty.short_name(),
            })
            .get()
    }
}

/// Translates Worlds into the cache.
pub struct Pipeline {
    index: Arc<Mutex<Index>>,
    cache: Arc<Cache>,
    options: Options,
    metrics: PipelineMetrics,
    /// Workload certificates of mesh groups (none: no SDS secrets are served).
    certs: Option<Arc<WorkloadCerts>>,
    /// Held while building; the incremental builders by proxy zone and mesh membership.
    build_lock: Mutex<Builders>,
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

// === impl Pipeline ===

impl Pipeline {
    pub fn new(
        index: Arc<Mutex<Index>>,
        cache: Arc<Cache>,
        options: Options,
        metrics: PipelineMetrics,
    ) -> Arc<Self> {
        Self::with_certs(index, cache, options, metrics, None)
    }

    /// A pipeline that serves mesh groups their workload certificates from `certs`.
    pub fn with_certs(
        index: Arc<Mutex<Index>>,
        cache: Arc<Cache>,
        options: Options,
        metrics: PipelineMetrics,
        certs: Option<Arc<WorkloadCerts>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            index,
            cache,
            options,
            metrics,
            certs,
            build_lock: Mutex::new(HashMap::new()),
        })
    }

    /// Rebuilds every group whenever a workload certificate is due (at half its lifetime),
    /// so each due certificate is replaced and pushed as a new Secret version. Runs forever.
    pub async fn rotate_certificates(self: Arc<Self>) {
        let Some(certs) = self.certs.clone() else {
            return;
        };
        loop {
            // Nothing issued yet: look again shortly (certificates are issued on first build).
            let wait = certs.next_rotation().map_or(Duration::from_secs(1), |at| {
                at.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
            });
            tokio::time::sleep(wait.min(Duration::from_secs(60))).await;
            let due = certs
                .next_rotation()
                .is_some_and(|at| at <= SystemTime::now());
            if due {
                self.clone().build_all(0).await;
            }
        }
    }

    /// Runs until `changes` closes: waits for `synced`, builds every group, then rebuilds on
    /// each debounced batch of changes and builds new groups as their first proxy connects.
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
        while let Some(first) = next_batch(&mut changes, quiet, max).await {
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
            self.clone().build_all(rollout).await;
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

    /// Rebuilds every group; the snapshots belong to `rollout` (0: none).
    async fn build_all(self: Arc<Self>, rollout: u64) {
        self.blocking(move |p| {
            let mut builders = p.lock_builds();
            let world = p.world();
            let mut groups = p.cache.groups();
            if groups.is_empty() {
                // Build the default group up front, so the first proxy needs no wait.
                groups.push(DEFAULT_GROUP.to_string());
            }
            let groups: Vec<ProxyGroup> = groups
                .iter()
                .map(|g| groups::group_for_key(g, &world))
                .collect();
            let used: BTreeSet<BuilderKey> = groups.iter().map(builder_key).collect();
            builders.retain(|key, _| used.contains(key));
            p.forget_unused_certs(&groups);
            for group in &groups {
                p.build(&mut builders, &world, group, rollout);
            }
            p.count_resources();
        })
        .await;
    }

    async fn build_missing(self: Arc<Self>) {
        self.blocking(|p| {
            let mut builders = p.lock_builds();
            let missing: Vec<String> = p
                .cache
                .groups()
                .into_iter()
                .filter(|g| p.cache.get(g).is_none())
                .collect();
            if missing.is_empty() {
                return;
            }
            let world = p.world();
            for group in missing {
                p.build(
                    &mut builders,
                    &world,
                    &groups::group_for_key(&group, &world),
                    0,
                );
            }
            p.count_resources();
        })
        .await;
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
            self.metrics
                .resources
                .get_or_create(&TypeLabels {
                    r#type: ty.short_name(),
                })
                .set(i64::try_from(total).unwrap_or(i64::MAX));
        }
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
        let secrets = self.secrets(group);
        match builder.build_with_secrets(world, group, &self.options, previous.as_deref(), &secrets)
        {
            Ok(snap) => {
                tracing::debug!(group = group_name, world = world.version, "snapshot built");
                self.cache.set(group_name, snap.with_rollout(rollout));
                self.metrics.builds.inc();
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

// === impl Pipeline (mesh) ===

impl Pipeline {
    /// The SDS secrets of a mesh group: its identity's current certificate and the root.
    fn secrets(&self, group: &ProxyGroup) -> Vec<Secret> {
        let (Some(certs), Some(workload)) = (&self.certs, &group.workload) else {
            return Vec::new();
        };
        let id = self.spiffe_id(workload);
        match certs.current(&id, SystemTime::now()) {
            Ok(cert) => portolan_translate::mesh::workload_secrets(
                &cert.cert_pem,
                &cert.key_pem,
                certs.authority().root_pem(),
            )
            .to_vec(),
            Err(e) => {
                tracing::error!(group = %group.name, identity = %id, error = %e, "no workload certificate; the group's mesh TLS cannot start");
                Vec::new()
            }
        }
    }

    fn spiffe_id(&self, workload: &portolan_translate::mesh::Workload) -> SpiffeId {
        SpiffeId::new(
            self.options.mesh.trust_domain.clone(),
            workload.namespace.clone(),
            workload.service_account.clone(),
        )
    }

    /// Drops the certificates of identities no group has any more.
    fn forget_unused_certs(&self, groups: &[ProxyGroup]) {
        if let Some(certs) = &self.certs {
            let used: BTreeSet<SpiffeId> = groups
                .iter()
                .filter_map(|g| g.workload.as_ref())
                .map(|w| self.spiffe_id(w))
                .collect();
            certs.retain(&used);
        }
    }
}

/// Waits for the next debounced batch of changes; returns when its first change was seen, or
/// `None` once the change sender is gone.
async fn next_batch(
    changes: &mut watch::Receiver<u64>,
    quiet: Duration,
    max: Duration,
) -> Option<Instant> {
    changes.changed().await.ok()?;
    let first = Instant::now();
    // Hand the change just seen on to the debouncer, which starts its wait with it.
    changes.mark_changed();
    portolan_xds::debounce::debounce(changes, quiet, max)
        .await
        .then_some(first)
}

/// The group of proxies whose node names no cluster.
pub const DEFAULT_GROUP: &str = "default";

/// Fewest ClusterLoadAssignments for which [`snapshot`] encodes them on a second thread.
const PARALLEL_ENCODE_MIN: usize = 512;

/// Encodes translated resources into a snapshot, sharing unchanged entries with `previous`.
///
/// On a machine with more than one core, a big group's ClusterLoadAssignments are encoded on a
/// scoped second thread while this one encodes the clusters; they are added in the same order,
/// so the snapshot is the same.
pub fn snapshot(
    resources: &Resources,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, SnapshotError> {
    let parallel = resources.load_assignments.len() >= PARALLEL_ENCODE_MIN
        && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    snapshot_on(resources, previous, parallel)
}

/// [`snapshot`], encoding the assignments on a second thread when `parallel`.
fn snapshot_on(
    resources: &Resources,
    previous: Option<&Snapshot>,
    parallel: bool,
) -> Result<Snapshot, SnapshotError> {
    let mut b = Snapshot::builder();
    if let Some(prev) = previous {
        b.reuse(prev);
    }
    if parallel {
        let (clusters, assignments) = std::thread::scope(|s| {
            let encode_all = || {
                resources
                    .load_assignments
                    .iter()
                    .map(portolan_xds::snapshot::Encoded::load_assignment)
                    .collect::<Vec<_>>()
            };
            let assignments = s.spawn(encode_all);
            let clusters: Vec<_> = resources
                .clusters
                .iter()
                .map(portolan_xds::snapshot::Encoded::cluster)
                .collect();
            // A panic while encoding is a bug: pass it on.
            let assignments = assignments
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            (clusters, assignments)
        });
        for encoded in clusters.into_iter().chain(assignments) {
            b.add_encoded(encoded);
        }
    } else {
        for c in &resources.clusters {
            b.add_cluster(c);
        }
        for e in &resources.load_assignments {
            b.add_load_assignment(e);
        }
    }
    for l in &resources.listeners {
        b.add_listener(l);
    }
    for r in &resources.routes {
        b.add_route(r);
    }
    if let Some(on_demand) = &resources.on_demand {
        let clusters = resources.clusters.iter().map(|c| c.name.as_str());
        add_on_demand(&mut b, on_demand, clusters);
    }
    b.build()
}

/// Adds an on-demand group's VHDS virtual hosts and marks its clusters (but those its
/// listeners use directly) as served by name only (on-demand CDS).
pub fn add_on_demand<'a>(
    b: &mut portolan_xds::SnapshotBuilder,
    on_demand: &portolan_translate::OnDemandResources,
    clusters: impl Iterator<Item = &'a str>,
) {
    for v in &on_demand.virtual_hosts {
        b.add_virtual_host(v);
    }
    let named = clusters
        .filter(|c| !on_demand.wildcard_clusters.contains(*c))
        .map(str::to_string);
    b.named_only(ResourceType::Cluster, named);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Encoding the assignments on a second thread gives the same snapshot, duplicates and
    /// dangling names included.
    #[test]
    fn parallel_encode_gives_the_same_snapshot() {
        use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
        use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
        let eds = |name: String| Cluster {
            name,
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            )),
            eds_cluster_config: Some(cluster::EdsClusterConfig::default()),
            ..Default::default()
        };
        let cla = |name: String| ClusterLoadAssignment {
            cluster_name: name,
            ..Default::default()
        };
        let n = PARALLEL_ENCODE_MIN + 10;
        let mut resources = Resources {
            clusters: (0..n).map(|i| eds(format!("c{i}"))).collect(),
            load_assignments: (0..n).map(|i| cla(format!("c{i}"))).collect(),
            ..Default::default()
        };
        let seq = snapshot_on(&resources, None, false).expect("consistent");
        let par = snapshot_on(&resources, None, true).expect("consistent");
        for ty in ResourceType::ALL {
            assert_eq!(seq.version(ty), par.version(ty), "{ty:?}");
            assert_eq!(seq.resources(ty), par.resources(ty), "{ty:?}");
        }
        assert_eq!(seq.resources(ResourceType::Endpoint).len(), n);
        // A cluster whose assignment is missing fails the same way.
        resources.load_assignments.pop();
        let seq = snapshot_on(&resources, None, false)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let par = snapshot_on(&resources, None, true)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(seq.is_err());
        assert_eq!(seq, par);
    }

    /// The xDS server builds group keys and translation parses them: they must agree.
    #[test]
    fn group_keys_round_trip_between_xds_and_translate() {
        let labels: BTreeMap<String, String> = [("tier", "edge"), ("odd", "a;b=c%")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let key = portolan_xds::group::format_key("ingress", Some("zone-a"), &labels);
        let group = ProxyGroup::from_key(&key);
        assert_eq!(group.cluster, "ingress");
        assert_eq!(group.zone.as_deref(), Some("zone-a"));
        assert_eq!(group.labels, labels);
        assert_eq!(group.name, key);
    }

    /// Identity parts of a key come only from the server: a node that writes them into its
    /// cluster, zone or labels gets no workload; a proven identity does.
    #[test]
    fn a_node_cannot_claim_an_identity_through_its_key() {
        use envoy_types::pb::envoy::config::core::v3::{Locality, Node};
        use portolan_xds::{IdentityMode, PeerIdentity};
        let node = Node {
            cluster: "web;ns=admin;sa=root".into(),
            locality: Some(Locality {
                zone: "z;ns=admin;sa=root".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mode = IdentityMode::default();
        let key = mode.refine_group(&portolan_xds::group::group_key(&node), None, &node);
        assert_eq!(ProxyGroup::from_key(&key).workload, None, "{key}");
        let peer = PeerIdentity {
            dns: vec![],
            uris: vec!["spiffe://cluster.local/ns/shop/sa/web".into()],
        };
        let key = mode.refine_group(&portolan_xds::group::group_key(&node), Some(&peer), &node);
        let workload = ProxyGroup::from_key(&key)
            .workload
            .expect("proven identity");
        assert_eq!(
            (
                workload.namespace.as_str(),
                workload.service_account.as_str()
            ),
            ("shop", "web")
        );
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

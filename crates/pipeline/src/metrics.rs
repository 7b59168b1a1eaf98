//! [`PipelineMetrics`]: the build path's Prometheus metrics (`portolan_snapshot_builds_total`,
//! `portolan_world_version`, `portolan_resources{type}`, ...).

use portolan_xds::{ResourceType, XdsMetrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: &'static str,
}

/// Metrics of the build path.
#[derive(Clone, Debug)]
pub struct PipelineMetrics {
    pub(crate) world_version: Gauge,
    pub(crate) config_errors: Gauge,
    pub(crate) builds: Counter,
    pub(crate) endpoint_only_builds: Counter,
    pub(crate) build_failures: Counter,
    pub(crate) build_seconds: Histogram,
    pub(crate) world_seconds: Histogram,
    pub(crate) batches: Counter,
    pub(crate) batch_changes: Histogram,
    resources: Family<TypeLabels, Gauge>,
    pub(crate) xds: XdsMetrics,
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
            endpoint_only_builds: Counter::default(),
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
            "snapshot_builds_endpoints_only",
            "Snapshots built by replacing the changed Services' endpoints in the group's previous snapshot (an endpoint-only change; counted in snapshot_builds too)",
            m.endpoint_only_builds.clone(),
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

// === impl PipelineMetrics (cache) ===

impl PipelineMetrics {
    /// Sets the resources of a type in the cache, summed over groups.
    pub(crate) fn set_resources(&self, ty: ResourceType, total: usize) {
        self.resources
            .get_or_create(&TypeLabels {
                r#type: ty.short_name(),
            })
            .set(i64::try_from(total).unwrap_or(i64::MAX));
    }
}

//! Incremental translation: a [`Translator`] remembers what each Service's clusters and
//! ClusterLoadAssignments became and reuses it while the inputs they came from are unchanged.
//!
//! The World keeps an unchanged entry's `Arc` from one version to the next, so "unchanged" is
//! pointer identity: a memo entry holds the `Arc`s of its Service, of the Service's endpoint
//! groups and of the policy of each port (holding them keeps the addresses from being reused).
//! Everything else (external clusters, the collector, listeners and routes) is translated in
//! full every time, on the one translation path [`crate::translate`] takes too.
//!
//! What the memo holds is the translator's [`Keep`]: [`crate::Messages`] keeps the messages
//! (`Arc`-shared; output equal to [`crate::translate`]'s), a cache can keep their encodings
//! instead, so that each message is encoded while it is still in the processor's cache and
//! freed right after (no tree of every message is ever built, held or freed at once).

use crate::context::Context;
use crate::keep::{Keep, Messages};
use crate::provenance::Entry;
use crate::proxyless::Client;
use crate::resources::{Output, SharedResources};
use crate::service_clusters::{self, ServiceClusters};
use crate::translation;
use crate::{Options, ProxyGroup};
use portolan_model::policy::DestinationPolicy;
use portolan_model::{EndpointGroup, Service, ServiceKey, World};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// How the last translation went: Services whose output was reused or translated anew.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoStats {
    pub reused: usize,
    pub translated: usize,
    /// Clusters and assignments of the reused Services.
    pub reused_resources: usize,
}

/// One Service's clusters and assignments as kept, and the provenance entries of both
/// (what [`Translator::endpoints_only`] gives).
#[derive(Debug)]
pub struct ServiceOutput<K: Keep> {
    pub key: ServiceKey,
    pub clusters: Vec<K::Cluster>,
    pub load_assignments: Vec<K::Assignment>,
    pub provenance: Vec<Entry>,
}

/// Translates Worlds for one proxy group, reusing per-Service output across calls.
#[derive(Debug, Default)]
pub struct Translator<K: Keep = Messages> {
    keep: K,
    memo: ServiceMemo<K>,
}

/// What each Service's clusters and assignments became, and what they were translated for.
#[derive(Debug)]
struct ServiceMemo<K: Keep> {
    entries: HashMap<ServiceKey, Memo<K>>,
    /// The zone, whether the group is in the mesh, its client and the options the entries
    /// were translated with; a change clears them.
    inputs: Option<MemoInputs>,
    stats: MemoStats,
    /// A translated Service's messages, before they are kept (reused from one to the next).
    scratch: ServiceClusters,
}

type MemoInputs = (Option<String>, bool, Client, Options);

/// The inputs a Service's clusters and assignments were translated from.
#[derive(Debug)]
struct MemoKey {
    service: Arc<Service>,
    groups: Vec<Arc<EndpointGroup>>,
    /// The policy of each TCP port, in the plan's order.
    policies: Vec<Option<Arc<DestinationPolicy>>>,
    /// Mesh TLS towards the Service, and BackendTLSPolicy TLS towards its ports.
    tls: service_clusters::UpstreamTlsOf,
}

#[derive(Debug)]
struct Memo<K: Keep> {
    key: MemoKey,
    clusters: Vec<K::Cluster>,
    load_assignments: Vec<K::Assignment>,
    /// The objects behind them (reused with them).
    provenance: Vec<Entry>,
}

// === impl Translator ===

impl Translator {
    /// A translator that keeps the messages.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<K: Keep> Translator<K> {
    /// A translator that keeps what `keep` makes of each message.
    pub fn with_keep(keep: K) -> Self {
        Self {
            keep,
            memo: ServiceMemo::default(),
        }
    }

    /// Translates `world` for `group`: the same output as [`crate::translate`], each cluster
    /// and assignment as kept. Memo entries of Services no longer in the World are dropped.
    ///
    /// On a machine with more than one core, a big World's listeners and routes are translated
    /// (and kept) on a second thread while this one translates (and keeps) the Services'
    /// clusters.
    pub fn translate(&mut self, world: &World, group: &ProxyGroup, options: &Options) -> Output<K> {
        let Self { keep, memo } = self;
        let keep = &*keep;
        memo.start(group, options);
        translation::run(keep, world, group, options, usize::MAX, |ctx| {
            memo.services(keep, ctx, group)
        })
    }

    /// The clusters and assignments of `services` alone, as [`Translator::translate`] of
    /// `world` for `group` gives them (the memo updated with them), for a rebuild after a
    /// change of those Services' endpoint groups and nothing else. `reached` says whether
    /// the group reaches a cluster name (the caller knows from the group's previous
    /// snapshot: which Services a group reaches does not depend on endpoints); a Service
    /// whose first port's cluster it does not reach, or that gets no clusters, gives nothing.
    ///
    /// `None` (translate everything instead) unless the memo holds translations for the
    /// zone, mesh membership and client of `group`, with `options`, and none of `services` is
    /// a backend of the group's UDP Gateway listeners.
    pub fn endpoints_only(
        &mut self,
        world: &World,
        group: &ProxyGroup,
        options: &Options,
        services: &BTreeSet<ServiceKey>,
        reached: impl Fn(&str) -> bool,
    ) -> Option<Vec<ServiceOutput<K>>> {
        let Self { keep, memo } = self;
        // A UDP Gateway listener's cluster holds its endpoints inline (see
        // `gateway_api_udp`): only a whole translation updates it.
        if !memo.started_as(group, options)
            || crate::gateway_api_udp::udp_backends_among(world, group, services)
        {
            return None;
        }
        let ctx = Context::without_plans(world, options);
        Some(memo.services_only(keep, &ctx, group, services, reached))
    }

    /// How the last [`Translator::translate`] went.
    pub fn stats(&self) -> MemoStats {
        self.memo.stats
    }

    /// Services remembered.
    pub fn len(&self) -> usize {
        self.memo.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.memo.entries.is_empty()
    }
}

// === impl ServiceMemo ===

impl<K: Keep> Default for ServiceMemo<K> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            inputs: None,
            stats: MemoStats::default(),
            scratch: ServiceClusters::default(),
        }
    }
}

impl<K: Keep> ServiceMemo<K> {
    /// Forgets every entry when the group's zone, mesh membership or client, or the options,
    /// differ from those of the last translation.
    fn start(&mut self, group: &ProxyGroup, options: &Options) {
        if !self.started_as(group, options) {
            let in_mesh = group.workload.is_some();
            let inputs = (group.zone.clone(), in_mesh, group.client, options.clone());
            self.entries.clear();
            self.inputs = Some(inputs);
        }
    }

    /// Whether the entries were translated for the zone, mesh membership and client of
    /// `group`, and with `options`.
    fn started_as(&self, group: &ProxyGroup, options: &Options) -> bool {
        self.inputs
            .as_ref()
            .is_some_and(|(zone, in_mesh, client, o)| {
                *zone == group.zone
                    && *in_mesh == group.workload.is_some()
                    && *client == group.client
                    && o == options
            })
    }

    /// The entries of those of `services` the group reaches, reused where their inputs are
    /// the same allocations, translated (and remembered) otherwise.
    fn services_only(
        &mut self,
        keep: &K,
        ctx: &Context<'_>,
        group: &ProxyGroup,
        services: &BTreeSet<ServiceKey>,
        reached: impl Fn(&str) -> bool,
    ) -> Vec<ServiceOutput<K>> {
        let in_mesh = group.workload.is_some();
        let gateway_api = crate::gateway_api::selecting(ctx.world, group).is_some();
        self.stats = MemoStats::default();
        let mut outputs = Vec::with_capacity(services.len());
        for key in services {
            let Some(service) = ctx.world.services.get(key) else {
                continue;
            };
            let Some(plan) = crate::service::plan(service, ctx.options) else {
                continue;
            };
            if !plan.ports.first().is_some_and(|p| reached(&p.cluster)) {
                continue;
            }
            let memo_key = MemoKey {
                service: plan.service.clone(),
                groups: ctx.world.endpoints_of(key).to_vec(),
                policies: service_clusters::policies(ctx, &plan),
                tls: service_clusters::UpstreamTlsOf {
                    mesh: service_clusters::mesh_tls(ctx, &plan, in_mesh),
                    backend: service_clusters::backend_tls(ctx, &plan, gateway_api),
                },
            };
            let kept = match self.entries.remove(key) {
                Some(kept) if kept.key.same_as(&memo_key) => {
                    self.stats.reused += 1;
                    self.stats.reused_resources +=
                        kept.clusters.len() + kept.load_assignments.len();
                    kept
                }
                _ => {
                    self.stats.translated += 1;
                    let out = &mut self.scratch;
                    let (policies, tls) = (&memo_key.policies, &memo_key.tls);
                    service_clusters::translate_for_group(ctx, &plan, group, policies, tls, out);
                    Memo::new(keep, memo_key, out)
                }
            };
            let kept = self.entries.entry(key.clone()).or_insert(kept);
            outputs.push(ServiceOutput {
                key: key.clone(),
                clusters: kept.clusters.clone(),
                load_assignments: kept.load_assignments.clone(),
                provenance: kept.provenance.clone(),
            });
        }
        outputs
    }

    /// The Services' clusters and assignments, reused where their inputs are the same
    /// allocations, translated and kept otherwise; refills the memo (Services no longer
    /// reached are dropped).
    fn services(&mut self, keep: &K, ctx: &Context<'_>, group: &ProxyGroup) -> Output<K> {
        let in_mesh = group.workload.is_some();
        let mut previous = std::mem::take(&mut self.entries);
        self.entries.reserve(previous.len());
        let ports: usize = ctx.plans.iter().map(|p| p.ports.len()).sum();
        let mut out = SharedResources::with_capacity(ports);
        self.stats = MemoStats::default();
        let gateway_api = crate::gateway_api::selecting(ctx.world, group).is_some();
        for plan in ctx.plans.iter().filter(|p| ctx.reaches_service(p)) {
            let key = MemoKey {
                service: plan.service.clone(),
                groups: ctx.world.endpoints_of(&plan.service.key).to_vec(),
                policies: service_clusters::policies(ctx, plan),
                tls: service_clusters::UpstreamTlsOf {
                    mesh: service_clusters::mesh_tls(ctx, plan, in_mesh),
                    backend: service_clusters::backend_tls(ctx, plan, gateway_api),
                },
            };
            let kept = match previous.remove(&plan.service.key) {
                Some(kept) if kept.key.same_as(&key) => {
                    self.stats.reused += 1;
                    self.stats.reused_resources +=
                        kept.clusters.len() + kept.load_assignments.len();
                    kept
                }
                _ => {
                    self.stats.translated += 1;
                    let out = &mut self.scratch;
                    let (policies, tls) = (&key.policies, &key.tls);
                    service_clusters::translate_for_group(ctx, plan, group, policies, tls, out);
                    Memo::new(keep, key, out)
                }
            };
            out.clusters.extend(kept.clusters.iter().cloned());
            out.load_assignments
                .extend(kept.load_assignments.iter().cloned());
            out.provenance.extend(kept.provenance.iter().cloned());
            self.entries.insert(plan.service.key.clone(), kept);
        }
        out
    }
}

// === impl MemoKey ===

impl MemoKey {
    /// Whether every input is the same allocation.
    fn same_as(&self, other: &MemoKey) -> bool {
        Arc::ptr_eq(&self.service, &other.service)
            && same_arcs(&self.groups, &other.groups)
            && self.tls == other.tls
            && self.policies.len() == other.policies.len()
            && self
                .policies
                .iter()
                .zip(&other.policies)
                .all(|(a, b)| match (a, b) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                })
    }
}

fn same_arcs<T>(a: &[Arc<T>], b: &[Arc<T>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b))
}

// === impl Memo ===

impl<K: Keep> Memo<K> {
    /// Keeps each message of `translated` as it comes (emptying it), so it is kept (say,
    /// encoded) while still fresh in the processor's cache.
    fn new(keep: &K, key: MemoKey, translated: &mut ServiceClusters) -> Self {
        Self {
            key,
            clusters: translated
                .clusters
                .drain(..)
                .map(|c| keep.cluster(c))
                .collect(),
            load_assignments: translated
                .load_assignments
                .drain(..)
                .map(|a| keep.assignment(a))
                .collect(),
            provenance: std::mem::take(&mut translated.provenance),
        }
    }
}

//! Incremental translation: a [`Translator`] remembers what each Service's clusters and
//! ClusterLoadAssignments became and reuses it while the inputs they came from are unchanged.
//!
//! The World keeps an unchanged entry's `Arc` from one version to the next, so "unchanged" is
//! pointer identity: a memo entry holds the `Arc`s of its Service, of the Service's endpoint
//! groups and of the policy of each port (holding them keeps the addresses from being reused).
//! Everything else (external clusters, the collector, listeners and routes) is translated in
//! full every time.
//!
//! What the memo holds is the translator's [`Keep`]: [`Messages`] keeps the messages
//! (`Arc`-shared; output equal to [`crate::translate`]'s), a cache can keep their encodings
//! instead, so that each message is encoded while it is still in the processor's cache and
//! freed right after (no tree of every message is ever built, held or freed at once).

use crate::context::Context;
use crate::service_clusters::{self, ServiceClusters};
use crate::{Options, ProxyGroup, Resources, sort_by_name};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use portolan_model::policy::DestinationPolicy;
use portolan_model::{EndpointGroup, Service, ServiceKey, World};
use std::collections::HashMap;
use std::sync::Arc;

/// What a [`Translator`] keeps of each translated cluster and assignment (in its memo and in
/// its output) and of each route configuration (in its output): the message itself
/// ([`Messages`]) or, say, its encoding. Listeners are passed on as they are (a group has a
/// few small ones; its route configurations can be megabytes).
pub trait Keep: Sync {
    /// A kept cluster; cloned into every output that has it (make it cheap: an `Arc`).
    type Cluster: Clone + Send + std::fmt::Debug;
    /// A kept ClusterLoadAssignment.
    type Assignment: Clone + Send + std::fmt::Debug;
    /// A kept RouteConfiguration.
    type Route: Send + std::fmt::Debug;

    fn cluster(&self, cluster: Cluster) -> Self::Cluster;
    fn assignment(&self, assignment: ClusterLoadAssignment) -> Self::Assignment;
    fn route(&self, route: RouteConfiguration) -> Self::Route;
    /// The resource name of a kept cluster (what the output is sorted by).
    fn cluster_name(cluster: &Self::Cluster) -> &str;
    /// The cluster name of a kept assignment.
    fn assignment_name(assignment: &Self::Assignment) -> &str;
    /// The name of a kept route configuration.
    fn route_name(route: &Self::Route) -> &str;
}

/// Keeps the messages, shared: output equal to [`crate::translate`]'s.
#[derive(Clone, Copy, Debug, Default)]
pub struct Messages;

/// What [`Translator::translate`] produces: [`Resources`] whose clusters and assignments are
/// what the translator's [`Keep`] made of them, shared with its memo (an unchanged Service
/// gives clones of the same kept values again).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SharedResources<C = Arc<Cluster>, A = Arc<ClusterLoadAssignment>, R = RouteConfiguration>
{
    pub clusters: Vec<C>,
    pub load_assignments: Vec<A>,
    pub listeners: Vec<Listener>,
    pub routes: Vec<R>,
    /// Virtual hosts and wildcard clusters of an on-demand group.
    pub on_demand: Option<crate::OnDemandResources>,
}

/// How the last translation went: Services whose output was reused or translated anew.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoStats {
    pub reused: usize,
    pub translated: usize,
    /// Clusters and assignments of the reused Services.
    pub reused_resources: usize,
}

/// Translates Worlds for one proxy group, reusing per-Service output across calls.
#[derive(Debug, Default)]
pub struct Translator<K: Keep = Messages> {
    keep: K,
    memo: HashMap<ServiceKey, Memo<K>>,
    /// The zone, whether the group is in the mesh, its client and the options the memo was
    /// built with; a change clears it.
    inputs: Option<MemoInputs>,
    stats: MemoStats,
}

type MemoInputs = (Option<String>, bool, crate::grpc::Client, Options);

/// The inputs a Service's clusters and assignments were translated from.
#[derive(Debug)]
struct MemoKey {
    service: Arc<Service>,
    groups: Vec<Arc<EndpointGroup>>,
    /// The policy of each TCP port, in the plan's order.
    policies: Vec<Option<Arc<DestinationPolicy>>>,
    /// The server identities of mesh TLS towards the Service.
    mesh_tls: Option<Vec<String>>,
}

#[derive(Debug)]
struct Memo<K: Keep> {
    key: MemoKey,
    clusters: Vec<K::Cluster>,
    load_assignments: Vec<K::Assignment>,
}

// === impl Messages ===

impl Keep for Messages {
    type Cluster = Arc<Cluster>;
    type Assignment = Arc<ClusterLoadAssignment>;
    type Route = RouteConfiguration;

    fn cluster(&self, cluster: Cluster) -> Arc<Cluster> {
        Arc::new(cluster)
    }

    fn assignment(&self, assignment: ClusterLoadAssignment) -> Arc<ClusterLoadAssignment> {
        Arc::new(assignment)
    }

    fn route(&self, route: RouteConfiguration) -> RouteConfiguration {
        route
    }

    fn route_name(route: &RouteConfiguration) -> &str {
        &route.name
    }

    fn cluster_name(cluster: &Arc<Cluster>) -> &str {
        &cluster.name
    }

    fn assignment_name(assignment: &Arc<ClusterLoadAssignment>) -> &str {
        &assignment.cluster_name
    }
}

// === impl SharedResources ===

impl SharedResources {
    /// Owned copies of every message, as [`crate::translate`] returns them.
    pub fn to_resources(&self) -> Resources {
        Resources {
            clusters: self.clusters.iter().map(|c| Cluster::clone(c)).collect(),
            load_assignments: self
                .load_assignments
                .iter()
                .map(|c| ClusterLoadAssignment::clone(c))
                .collect(),
            listeners: self.listeners.clone(),
            routes: self.routes.clone(),
            on_demand: self.on_demand.clone(),
        }
    }
}

impl<C, A, R> SharedResources<C, A, R> {
    /// Sorted and deduplicated exactly like [`Resources`].
    fn sort<K: Keep<Cluster = C, Assignment = A, Route = R>>(&mut self) {
        sort_by_name(&mut self.clusters, K::cluster_name, true);
        sort_by_name(&mut self.load_assignments, K::assignment_name, true);
        sort_by_name(&mut self.listeners, |l| l.name.as_str(), false);
        sort_by_name(&mut self.routes, K::route_name, false);
    }
}

/// What a [`Translator`] with [`Keep`] `K` gives.
type Output<K> = SharedResources<<K as Keep>::Cluster, <K as Keep>::Assignment, <K as Keep>::Route>;

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
            memo: HashMap::new(),
            inputs: None,
            stats: MemoStats::default(),
        }
    }

    /// Translates `world` for `group`: the same output as [`crate::translate`], each cluster
    /// and assignment as kept. Memo entries of Services no longer in the World are dropped.
    ///
    /// On a machine with more than one core, a big World's listeners and routes are translated
    /// on a second thread while this one translates (and keeps) the Services' clusters.
    pub fn translate(&mut self, world: &World, group: &ProxyGroup, options: &Options) -> Output<K> {
        let in_mesh = group.workload.is_some();
        let inputs = (group.zone.clone(), in_mesh, group.client, options.clone());
        if self.inputs.as_ref() != Some(&inputs) {
            self.memo.clear();
            self.inputs = Some(inputs);
        }
        let ctx = Context::for_group(world, options, group);
        let (mut out, rest) = if crate::worth_a_second_thread(&ctx, usize::MAX) {
            // As in `crate::translate_on`: the group's listeners and routes on a second
            // thread, kept there too (a big route configuration is encoded and freed there).
            let Self {
                keep, memo, stats, ..
            } = self;
            std::thread::scope(|s| {
                let rest = s.spawn(|| rest(&*keep, &ctx, group));
                let out = service_resources(&*keep, memo, stats, &ctx, group);
                let rest = rest.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
                (out, rest)
            })
        } else {
            let out = service_resources(&self.keep, &mut self.memo, &mut self.stats, &ctx, group);
            (out, rest(&self.keep, &ctx, group))
        };
        out.clusters.extend(rest.clusters);
        out.listeners = rest.listeners;
        out.routes = rest.routes;
        out.on_demand = rest.on_demand;
        out.sort::<K>();
        out
    }

    /// How the last [`Translator::translate`] went.
    pub fn stats(&self) -> MemoStats {
        self.stats
    }

    /// Services remembered.
    pub fn len(&self) -> usize {
        self.memo.len()
    }

    pub fn is_empty(&self) -> bool {
        self.memo.is_empty()
    }
}

/// The Services' clusters and assignments, reused from the memo where their inputs are
/// the same allocations; refills the memo.
fn service_resources<K: Keep>(
    keep: &K,
    memo: &mut HashMap<ServiceKey, Memo<K>>,
    stats: &mut MemoStats,
    ctx: &Context<'_>,
    group: &ProxyGroup,
) -> Output<K> {
    let in_mesh = group.workload.is_some();
    let zone = group.zone.as_deref();
    let mut previous = std::mem::take(memo);
    memo.reserve(previous.len());
    let ports: usize = ctx.plans.iter().map(|p| p.ports.len()).sum();
    let mut out = SharedResources {
        clusters: Vec::with_capacity(ports),
        load_assignments: Vec::with_capacity(ports),
        listeners: Vec::new(),
        routes: Vec::new(),
        on_demand: None,
    };
    *stats = MemoStats::default();
    for plan in ctx.plans.iter().filter(|p| ctx.reaches_service(p)) {
        let key = MemoKey {
            service: plan.service.clone(),
            groups: ctx.world.endpoints_of(&plan.service.key).to_vec(),
            policies: service_clusters::policies(ctx, plan),
            mesh_tls: service_clusters::mesh_tls(ctx, plan, in_mesh),
        };
        let kept = match previous.remove(&plan.service.key) {
            Some(kept) if kept.key.same_as(&key) => {
                stats.reused += 1;
                stats.reused_resources += kept.clusters.len() + kept.load_assignments.len();
                kept
            }
            _ => {
                stats.translated += 1;
                let mut translated =
                    service_clusters::translate(ctx, plan, &key.policies, &key.mesh_tls, zone);
                if group.client == crate::grpc::Client::Grpc {
                    crate::grpc::fit_service(&mut translated);
                }
                Memo::new(keep, key, translated)
            }
        };
        out.clusters.extend(kept.clusters.iter().cloned());
        out.load_assignments
            .extend(kept.load_assignments.iter().cloned());
        memo.insert(plan.service.key.clone(), kept);
    }
    out
}

/// The group's other clusters, its listeners and routes, fitted for gRPC and kept.
fn rest<K: Keep>(keep: &K, ctx: &Context<'_>, group: &ProxyGroup) -> Output<K> {
    let mut rest = crate::group_resources(ctx, group);
    if group.client == crate::grpc::Client::Grpc {
        crate::grpc::fit(&mut rest);
    }
    SharedResources {
        clusters: rest.clusters.into_iter().map(|c| keep.cluster(c)).collect(),
        load_assignments: Vec::new(),
        listeners: rest.listeners,
        routes: rest.routes.into_iter().map(|r| keep.route(r)).collect(),
        on_demand: rest.on_demand,
    }
}

// === impl MemoKey ===

impl MemoKey {
    /// Whether every input is the same allocation.
    fn same_as(&self, other: &MemoKey) -> bool {
        Arc::ptr_eq(&self.service, &other.service)
            && same_arcs(&self.groups, &other.groups)
            && self.mesh_tls == other.mesh_tls
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
    /// Keeps each message as it comes, so it is kept (say, encoded) while still fresh in the
    /// processor's cache.
    fn new(keep: &K, key: MemoKey, translated: ServiceClusters) -> Self {
        Self {
            key,
            clusters: translated
                .clusters
                .into_iter()
                .map(|c| keep.cluster(c))
                .collect(),
            load_assignments: translated
                .load_assignments
                .into_iter()
                .map(|a| keep.assignment(a))
                .collect(),
        }
    }
}

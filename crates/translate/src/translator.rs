//! Incremental translation: a [`Translator`] remembers each Service's clusters and
//! ClusterLoadAssignments and reuses them while the inputs they came from are unchanged.
//!
//! The World keeps an unchanged entry's `Arc` from one version to the next, so "unchanged" is
//! pointer identity: a memo entry holds the `Arc`s of its Service, of the Service's endpoint
//! groups and of the policy of each port (holding them keeps the addresses from being reused).
//! Everything else (external clusters, the collector, listeners and routes) is translated in
//! full every time. Output is the same as [`crate::translate`]'s, with shared messages.

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

/// What [`Translator::translate`] produces: [`Resources`] whose clusters and assignments are
/// shared with the translator's memo (an unchanged Service gives the same `Arc`s again).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SharedResources {
    pub clusters: Vec<Arc<Cluster>>,
    pub load_assignments: Vec<Arc<ClusterLoadAssignment>>,
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
    /// Virtual hosts and wildcard clusters of an on-demand group.
    pub on_demand: Option<crate::OnDemandResources>,
}

/// How the last translation went: Services whose output was reused or translated anew.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoStats {
    pub reused: usize,
    pub translated: usize,
}

/// Translates Worlds for one proxy group, reusing per-Service output across calls.
#[derive(Debug, Default)]
pub struct Translator {
    memo: HashMap<ServiceKey, Memo>,
    /// The zone, whether the group is in the mesh, and the options the memo was built with; a
    /// change clears it.
    inputs: Option<(Option<String>, bool, Options)>,
    stats: MemoStats,
}

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
struct Memo {
    key: MemoKey,
    clusters: Vec<Arc<Cluster>>,
    load_assignments: Vec<Arc<ClusterLoadAssignment>>,
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

// === impl Translator ===

impl Translator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Translates `world` for `group`; the same output as [`crate::translate`]. Memo entries of
    /// Services no longer in the World are dropped.
    pub fn translate(
        &mut self,
        world: &World,
        group: &ProxyGroup,
        options: &Options,
    ) -> SharedResources {
        let in_mesh = group.workload.is_some();
        let inputs = (group.zone.clone(), in_mesh, options.clone());
        if self.inputs.as_ref() != Some(&inputs) {
            self.memo.clear();
            self.inputs = Some(inputs);
        }
        let ctx = Context::for_group(world, options, group);
        let (mut out, rest) = if crate::worth_a_second_thread(&ctx, usize::MAX) {
            // As in `crate::translate_on`: the group's listeners and routes on a second thread.
            std::thread::scope(|s| {
                let rest = s.spawn(|| crate::group_resources(&ctx, group));
                let out = self.service_resources(&ctx, group);
                let rest = rest.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
                (out, rest)
            })
        } else {
            let out = self.service_resources(&ctx, group);
            (out, crate::group_resources(&ctx, group))
        };
        out.clusters.extend(rest.clusters.into_iter().map(Arc::new));
        out.listeners = rest.listeners;
        out.routes = rest.routes;
        out.on_demand = rest.on_demand;
        if group.client == crate::grpc::Client::Grpc {
            crate::grpc::fit_shared(&mut out);
        }
        out.sort();
        out
    }

    /// The Services' clusters and assignments, reused from the memo where their inputs are
    /// the same allocations; refills the memo.
    fn service_resources(&mut self, ctx: &Context<'_>, group: &ProxyGroup) -> SharedResources {
        let in_mesh = group.workload.is_some();
        let zone = group.zone.as_deref();
        let mut previous = std::mem::take(&mut self.memo);
        let mut out = SharedResources::default();
        self.stats = MemoStats::default();
        for plan in ctx.plans.iter().filter(|p| ctx.reaches_service(p)) {
            let key = MemoKey {
                service: plan.service.clone(),
                groups: ctx.world.endpoints_of(&plan.service.key).to_vec(),
                policies: service_clusters::policies(ctx, plan),
                mesh_tls: service_clusters::mesh_tls(ctx, plan, in_mesh),
            };
            let memo = match previous.remove(&plan.service.key) {
                Some(memo) if memo.key.same_as(&key) => {
                    self.stats.reused += 1;
                    memo
                }
                _ => {
                    self.stats.translated += 1;
                    let translated =
                        service_clusters::translate(ctx, plan, &key.policies, &key.mesh_tls, zone);
                    Memo::new(key, translated)
                }
            };
            out.clusters.extend(memo.clusters.iter().cloned());
            out.load_assignments
                .extend(memo.load_assignments.iter().cloned());
            self.memo.insert(plan.service.key.clone(), memo);
        }
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

// === impl SharedResources ===

impl SharedResources {
    /// Sorted and deduplicated exactly like [`Resources`].
    fn sort(&mut self) {
        sort_by_name(&mut self.clusters, |c| c.name.as_str(), true);
        sort_by_name(
            &mut self.load_assignments,
            |c| c.cluster_name.as_str(),
            true,
        );
        sort_by_name(&mut self.listeners, |l| l.name.as_str(), false);
        sort_by_name(&mut self.routes, |r| r.name.as_str(), false);
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

impl Memo {
    fn new(key: MemoKey, translated: ServiceClusters) -> Self {
        Self {
            key,
            clusters: translated.clusters.into_iter().map(Arc::new).collect(),
            load_assignments: translated
                .load_assignments
                .into_iter()
                .map(Arc::new)
                .collect(),
        }
    }
}

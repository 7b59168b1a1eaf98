//! What a translation produces for one proxy group: [`Resources`] (the messages, as
//! [`crate::translate`] returns them) and [`SharedResources`] (each cluster, assignment and
//! route configuration as a [`Keep`] kept it, as a [`crate::Translator`] returns them), each
//! list sorted by resource name.

use crate::keep::Keep;
use crate::on_demand::OnDemandResources;
use crate::provenance::Provenance;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use std::sync::Arc;

/// Everything translation produces for one proxy group, each list sorted by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub clusters: Vec<Cluster>,
    pub load_assignments: Vec<ClusterLoadAssignment>,
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
    /// Virtual hosts and wildcard clusters of an on-demand group (see [`crate::on_demand`]).
    pub on_demand: Option<OnDemandResources>,
    /// A gateway group's certificates (SDS secrets its listeners name), sorted by name.
    pub secrets: Vec<Secret>,
    /// Which objects produced each resource (see [`crate::provenance`]).
    pub provenance: Provenance,
}

/// [`Resources`] whose clusters, assignments and route configurations are what a [`Keep`]
/// made of them; a [`crate::Translator`]'s are shared with its memo (an unchanged Service
/// gives clones of the same kept values again).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SharedResources<C = Arc<Cluster>, A = Arc<ClusterLoadAssignment>, R = RouteConfiguration>
{
    pub clusters: Vec<C>,
    pub load_assignments: Vec<A>,
    pub listeners: Vec<Listener>,
    pub routes: Vec<R>,
    /// Virtual hosts and wildcard clusters of an on-demand group.
    pub on_demand: Option<OnDemandResources>,
    /// A gateway group's certificates (SDS secrets its listeners name), sorted by name.
    pub secrets: Vec<Secret>,
    /// Which objects produced each resource (see [`crate::provenance`]).
    pub provenance: Provenance,
}

/// What a translation with [`Keep`] `K` gives.
pub(crate) type Output<K> =
    SharedResources<<K as Keep>::Cluster, <K as Keep>::Assignment, <K as Keep>::Route>;

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
            secrets: self.secrets.clone(),
            provenance: self.provenance.clone(),
        }
    }
}

impl<C, A, R> SharedResources<C, A, R> {
    /// Empty lists, with room for `clusters` clusters and assignments.
    pub(crate) fn with_capacity(clusters: usize) -> Self {
        Self {
            clusters: Vec::with_capacity(clusters),
            load_assignments: Vec::with_capacity(clusters),
            listeners: Vec::new(),
            routes: Vec::new(),
            on_demand: None,
            secrets: Vec::new(),
            provenance: Provenance::default(),
        }
    }

    /// Sorts every list by resource name and drops repeated cluster and assignment names
    /// (first one wins).
    pub(crate) fn sort<K: Keep<Cluster = C, Assignment = A, Route = R>>(&mut self) {
        sort_by_name(&mut self.clusters, K::cluster_name, true);
        sort_by_name(&mut self.load_assignments, K::assignment_name, true);
        sort_by_name(&mut self.listeners, |l| l.name.as_str(), false);
        sort_by_name(&mut self.routes, K::route_name, false);
    }
}

/// The messages of a translation that kept them as they are.
impl From<SharedResources<Cluster, ClusterLoadAssignment, RouteConfiguration>> for Resources {
    fn from(r: SharedResources<Cluster, ClusterLoadAssignment, RouteConfiguration>) -> Self {
        Self {
            clusters: r.clusters,
            load_assignments: r.load_assignments,
            listeners: r.listeners,
            routes: r.routes,
            on_demand: r.on_demand,
            secrets: r.secrets,
            provenance: r.provenance,
        }
    }
}

/// Sorts a list by resource name (stable); with `dedup`, drops repeated names (first one wins).
///
/// Sorts positions, not the messages (a Cluster is over 3 KB), then permutes the list in place
/// by following each cycle of the order: no second buffer (for a big world, tens of MB of fresh
/// pages) and no message moved more than a swap. A list already in order is left untouched.
pub(crate) fn sort_by_name<T>(list: &mut Vec<T>, name: impl Fn(&T) -> &str, dedup: bool) {
    if !list.windows(2).all(|w| name(&w[0]) <= name(&w[1])) {
        let mut order: Vec<usize> = (0..list.len()).collect();
        order.sort_by(|&a, &b| name(&list[a]).cmp(name(&list[b])));
        permute(list, &order);
    }
    if dedup {
        list.dedup_by(|a, b| name(a) == name(b));
    }
}

/// Reorders `list` so that position `i` holds what was at `order[i]` (`order` a permutation).
fn permute<T>(list: &mut [T], order: &[usize]) {
    let mut placed = vec![false; list.len()];
    for start in 0..list.len() {
        let mut at = start;
        while !placed[at] {
            placed[at] = true;
            let from = order[at];
            if from == start {
                break;
            }
            list.swap(at, from);
            at = from;
        }
    }
}

//! [`Keep`]: what a translation keeps of each cluster, assignment and route configuration it
//! makes. [`crate::translate`] keeps the messages as they are; a [`crate::Translator`] keeps
//! them shared ([`Messages`]) or, in the pipeline, encoded.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use std::sync::Arc;

/// What a translation keeps of each translated cluster and assignment (in a
/// [`crate::Translator`]'s memo and in its output) and of each route configuration (in its
/// output): the message itself ([`Messages`]) or, say, its encoding. Listeners are passed on
/// as they are (a group has a few small ones; its route configurations can be megabytes).
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

/// Keeps the messages, shared: a [`crate::Translator`]'s output is then equal to
/// [`crate::translate`]'s (see [`crate::SharedResources::to_resources`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Messages;

/// Keeps the messages as they are, unshared: what [`crate::translate`] returns (it has no
/// memo to share them with).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Owned;

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

    fn cluster_name(cluster: &Arc<Cluster>) -> &str {
        &cluster.name
    }

    fn assignment_name(assignment: &Arc<ClusterLoadAssignment>) -> &str {
        &assignment.cluster_name
    }

    fn route_name(route: &RouteConfiguration) -> &str {
        &route.name
    }
}

// === impl Owned ===

impl Keep for Owned {
    type Cluster = Cluster;
    type Assignment = ClusterLoadAssignment;
    type Route = RouteConfiguration;

    fn cluster(&self, cluster: Cluster) -> Cluster {
        cluster
    }

    fn assignment(&self, assignment: ClusterLoadAssignment) -> ClusterLoadAssignment {
        assignment
    }

    fn route(&self, route: RouteConfiguration) -> RouteConfiguration {
        route
    }

    fn cluster_name(cluster: &Cluster) -> &str {
        &cluster.name
    }

    fn assignment_name(assignment: &ClusterLoadAssignment) -> &str {
        &assignment.cluster_name
    }

    fn route_name(route: &RouteConfiguration) -> &str {
        &route.name
    }
}

//! Portolan's translation: a [`World`] snapshot and a proxy group in, Envoy xDS resources out.
//!
//! Translation is a pure function: no I/O, no clock, no randomness. The same World always
//! gives the same [`Resources`], each list sorted by resource name, so the cache can compare
//! and hash encoded bytes.
//!
//! Today this is the zero-config mesh: every TCP Service port becomes an EDS cluster (see
//! [`names::cluster_name`]) with its ClusterLoadAssignment, and a virtual host on the
//! `mesh-outbound` listener's route configuration.

#![forbid(unsafe_code)]

mod address;
mod cluster;
mod endpoint;
pub mod json;
mod listener;
pub mod names;
mod protocol;
mod route;
mod service;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use portolan_model::World;
use std::time::Duration;

pub use json::JsonError;

/// Knobs of the translation that are not part of the World.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Address the mesh outbound listener binds to.
    pub mesh_listener_address: String,
    /// Port the mesh outbound listener binds to.
    pub mesh_listener_port: u16,
    /// Kubernetes cluster DNS domain, used in cluster names and virtual host domains.
    pub cluster_domain: String,
    /// Upstream connect timeout of every generated cluster.
    pub connect_timeout: Duration,
}

/// A set of proxies that get identical configuration (Envoy's `node.cluster`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyGroup {
    pub name: String,
}

/// Everything translation produces for one proxy group, each list sorted by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub clusters: Vec<Cluster>,
    pub load_assignments: Vec<ClusterLoadAssignment>,
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
}

// === impl Options ===

impl Default for Options {
    fn default() -> Self {
        Self {
            mesh_listener_address: "0.0.0.0".to_string(),
            mesh_listener_port: 15001,
            cluster_domain: "cluster.local".to_string(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

// === impl ProxyGroup ===

impl ProxyGroup {
    /// The group Envoy proxies with an empty `node.cluster` belong to.
    pub const DEFAULT: &str = "default";

    /// The group for an Envoy `node.cluster` (empty means [`ProxyGroup::DEFAULT`]).
    pub fn new(node_cluster: &str) -> Self {
        let name = if node_cluster.is_empty() {
            Self::DEFAULT
        } else {
            node_cluster
        };
        Self {
            name: name.to_string(),
        }
    }
}

impl Default for ProxyGroup {
    fn default() -> Self {
        Self::new("")
    }
}

/// Translates a World for one proxy group. Pure and deterministic.
///
/// Every proxy group gets the same zero-config mesh today; the group is where per-group
/// listeners (Gateways) will come in.
pub fn translate(world: &World, _group: &ProxyGroup, options: &Options) -> Resources {
    let plans = service::plan_all(world, options);
    let mut resources = Resources {
        clusters: Vec::new(),
        load_assignments: Vec::new(),
        listeners: vec![listener::mesh_outbound(options)],
        routes: vec![route::mesh_outbound(&plans)],
    };
    for plan in &plans {
        for port in &plan.ports {
            resources.clusters.push(cluster::eds_cluster(port, options));
            let groups = world.endpoints_of(&plan.service.key);
            resources
                .load_assignments
                .push(endpoint::load_assignment(plan, port, groups));
        }
    }
    resources.sort();
    resources
}

// === impl Resources ===

impl Resources {
    /// Sorts every list by resource name and drops repeated names (first one wins).
    fn sort(&mut self) {
        self.clusters.sort_by(|a, b| a.name.cmp(&b.name));
        self.clusters.dedup_by(|a, b| a.name == b.name);
        self.load_assignments
            .sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
        self.load_assignments
            .dedup_by(|a, b| a.cluster_name == b.cluster_name);
        self.listeners.sort_by(|a, b| a.name.cmp(&b.name));
        self.routes.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

#[cfg(test)]
mod tests;

//! Portolan's translation: a [`World`] snapshot and a proxy group in, Envoy xDS resources out.
//!
//! Translation is a pure function: no I/O, no clock, no randomness. The same World always
//! gives the same [`Resources`], each list sorted by resource name, so the cache can compare
//! and hash encoded bytes.
//!
//! Every TCP Service port becomes an EDS cluster (see [`names::cluster_name`]) with its
//! ClusterLoadAssignment, plus one per subset its TrafficPolicy defines; every ExternalService
//! host and port a STATIC or DNS cluster. TrafficPolicies set the clusters' load balancing,
//! circuit breakers, outlier detection, health checks and upstream TLS.
//!
//! [`Translator`] gives the same output incrementally: it keeps each Service's clusters and
//! assignments and reuses them while that Service's inputs are unchanged.
//!
//! A proxy group that no Gateway selects gets the `mesh-outbound` listener, whose route
//! configuration has a virtual host per Service port (and external HTTP port); TrafficRoutes
//! attached to the mesh replace those virtual hosts' default route. A group that Gateways
//! select gets their listeners instead (see [`gateway`]).
//!
//! A group of proxyless gRPC clients (`;client=grpc`) gets API listeners named after its
//! targets and only what gRPC can use (see [`grpc`]).
//!
//! A group with a workload identity ([`mesh`]) also gets the `inbound` listener in front of
//! its application (mutual TLS per PeerAuthentication, RBAC per AccessPolicy, see
//! [`inbound`] and [`rbac`]), and originates mutual TLS to Services in the mesh.

#![forbid(unsafe_code)]

mod actions;
mod address;
mod cluster;
mod context;
mod endpoint;
mod external;
mod filters;
mod gateway;
pub mod grpc;
mod inbound;
pub mod json;
mod listener;
mod locality;
mod lookup;
mod matches;
pub mod mesh;
pub mod names;
pub mod on_demand;
mod policy;
mod protocol;
mod rbac;
mod route;
mod route_rules;
pub mod scope;
mod service;
mod service_clusters;
mod subsets;
mod tcp;
pub mod telemetry;
mod tls;
mod translator;

use context::Context;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use portolan_model::World;
use std::collections::BTreeMap;
use std::time::Duration;

pub use json::JsonError;
pub use on_demand::{Discovery, OnDemandResources};
pub use telemetry::{AccessLog, Collector, Telemetry};
pub use translator::{Keep, MemoStats, Messages, SharedResources, Translator};

/// Knobs of the translation that are not part of the World.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Address the mesh outbound listener (and every gateway listener) binds to.
    pub mesh_listener_address: String,
    /// Port the mesh outbound listener binds to.
    pub mesh_listener_port: u16,
    /// Kubernetes cluster DNS domain, used in cluster names and virtual host domains.
    pub cluster_domain: String,
    /// Upstream connect timeout of every generated cluster.
    pub connect_timeout: Duration,
    /// Access logs, request ids and tracing of every HTTP connection manager.
    pub telemetry: Telemetry,
    /// Mesh identities: trust domain and inbound port.
    pub mesh: mesh::MeshOptions,
}

/// A set of proxies that get identical configuration: Envoy's `node.cluster`, refined by the
/// node's zone and `labels` metadata (see [`ProxyGroup::from_key`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyGroup {
    /// The group key, as the xDS cache names the group.
    pub name: String,
    /// Envoy `node.cluster` (empty: `default`).
    pub cluster: String,
    /// Envoy `node.locality.zone`, if set.
    pub zone: Option<String>,
    /// String fields of the node's `labels` metadata.
    pub labels: BTreeMap<String, String>,
    /// The mesh workload these proxies are, when they proved an identity.
    pub workload: Option<mesh::Workload>,
    /// Whether they learn hosts and clusters on first use (key part `mode=on-demand`).
    pub discovery: Discovery,
    /// What the proxies may reach (`;scope=...`, see [`scope`]); `None`: everything.
    pub scope: Option<scope::Scope>,
    /// Envoy, or a proxyless gRPC client (`;client=grpc`, see [`grpc`]).
    pub client: grpc::Client,
}

/// Everything translation produces for one proxy group, each list sorted by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub clusters: Vec<Cluster>,
    pub load_assignments: Vec<ClusterLoadAssignment>,
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
    /// Virtual hosts and wildcard clusters of an on-demand group (see [`on_demand`]).
    pub on_demand: Option<OnDemandResources>,
}

// === impl Options ===

impl Default for Options {
    fn default() -> Self {
        Self {
            mesh_listener_address: "0.0.0.0".to_string(),
            mesh_listener_port: 15001,
            cluster_domain: "cluster.local".to_string(),
            connect_timeout: Duration::from_secs(5),
            telemetry: Telemetry::default(),
            mesh: mesh::MeshOptions::default(),
        }
    }
}

// === impl ProxyGroup ===

impl ProxyGroup {
    /// The group Envoy proxies with an empty `node.cluster` belong to.
    pub const DEFAULT: &str = "default";

    /// The group for an Envoy `node.cluster` alone (empty means [`ProxyGroup::DEFAULT`]).
    pub fn new(node_cluster: &str) -> Self {
        let cluster = if node_cluster.is_empty() {
            Self::DEFAULT
        } else {
            node_cluster
        };
        Self {
            name: cluster.to_string(),
            cluster: cluster.to_string(),
            zone: None,
            labels: BTreeMap::new(),
            workload: None,
            discovery: Discovery::Full,
            scope: None,
            client: grpc::Client::Envoy,
        }
    }

    /// Parses a group key as the xDS server builds it from a node:
    /// `cluster[;zone=ZONE][;l.KEY=VALUE]...[;mode=on-demand][;scope=HOSTS][;client=grpc][;ns=NS;sa=SA[;app=PORT][;in=PORT][;proto=P]]`,
    /// parts percent-encoded (`%3B` `%3D` `%25`). The identity parts (`ns`, `sa`) come only
    /// from what the proxy proved (see `portolan_xds::identity`). Unknown parts are ignored, so
    /// any string is a valid key.
    pub fn from_key(key: &str) -> Self {
        let mut parts = key.split(';');
        let mut group = Self::new(&unescape(parts.next().unwrap_or_default()));
        group.name = key.to_string();
        let mut workload = mesh::WorkloadParts::default();
        for part in parts {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            if k == "zone" {
                group.zone = Some(unescape(v));
            } else if k == on_demand::KEY_PART.0 {
                group.discovery = Discovery::from_part(v);
            } else if k == "scope" {
                group.scope = Some(scope::Scope::parse(&unescape(v)));
            } else if k == "client" {
                group.client = grpc::Client::parse(v);
            } else if let Some(label) = k.strip_prefix("l.") {
                group.labels.insert(unescape(label), unescape(v));
            } else {
                workload.set(k, unescape(v));
            }
        }
        group.workload = workload.build();
        group
    }

    /// The namespace `.` means in the scope: the proxy's mesh identity's (a namespace the
    /// node metadata names was put in the scope when the key was built).
    pub fn own_namespace(&self) -> Option<&str> {
        self.workload.as_ref().map(|w| w.namespace.as_str())
    }

    /// The first bad entry of the group's scope (such a group is not served).
    pub fn scope_error(&self) -> Option<&scope::ScopeError> {
        self.scope.as_ref().and_then(|s| s.error.as_ref())
    }
}

impl Default for ProxyGroup {
    fn default() -> Self {
        Self::new("")
    }
}

fn unescape(s: &str) -> String {
    s.replace("%3B", ";")
        .replace("%3D", "=")
        .replace("%25", "%")
}

/// Translates a World for one proxy group. Pure and deterministic.
///
/// Every group gets every cluster its scope reaches (unscoped: all); listeners depend on
/// whether Gateways select the group. On a machine with more than one core, a big World's
/// listeners and routes are translated on a second thread while this one translates the
/// Services' clusters (see [`translate_on`]); the output is the same.
pub fn translate(world: &World, group: &ProxyGroup, options: &Options) -> Resources {
    translate_on(world, group, options, usize::MAX)
}

/// Whether a translation with at most `threads` threads uses a second one: a big enough World
/// on a machine with more than one core (asked last: it reads cgroup files).
fn worth_a_second_thread(ctx: &Context<'_>, threads: usize) -> bool {
    threads >= 2
        && ctx.plans.len() >= PARALLEL_MIN_SERVICES
        && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// Fewest Services for which [`translate`] uses a second thread (below, spawning one costs
/// more than it saves).
pub const PARALLEL_MIN_SERVICES: usize = 256;

/// [`translate`] with at most `threads` threads: with 2 or more (at least
/// [`PARALLEL_MIN_SERVICES`] Services, and more than one core), the group's listeners, routes and other clusters are
/// translated on a scoped second thread while the calling thread translates the Services'
/// clusters and assignments; with 1, everything runs on the calling thread. The output does
/// not depend on `threads`.
pub fn translate_on(
    world: &World,
    group: &ProxyGroup,
    options: &Options,
    threads: usize,
) -> Resources {
    let ctx = Context::for_group(world, options, group);
    let (mut resources, rest) = if worth_a_second_thread(&ctx, threads) {
        std::thread::scope(|s| {
            let rest = s.spawn(|| group_resources(&ctx, group));
            let services = service_resources(&ctx, group);
            // A panic on the second thread is a bug of translation: pass it on.
            let rest = rest.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            (services, rest)
        })
    } else {
        (service_resources(&ctx, group), group_resources(&ctx, group))
    };
    resources.clusters.extend(rest.clusters);
    resources.listeners = rest.listeners;
    resources.routes = rest.routes;
    resources.on_demand = rest.on_demand;
    if group.client == grpc::Client::Grpc {
        grpc::fit(&mut resources);
    }
    resources.sort();
    resources
}

/// The clusters and assignments of every Service the group reaches, in plan order.
fn service_resources(ctx: &Context<'_>, group: &ProxyGroup) -> Resources {
    let in_mesh = group.workload.is_some();
    let ports: usize = ctx.plans.iter().map(|p| p.ports.len()).sum();
    let mut out = service_clusters::ServiceClusters {
        clusters: Vec::with_capacity(ports),
        load_assignments: Vec::with_capacity(ports),
    };
    for plan in ctx.plans.iter().filter(|p| ctx.reaches_service(p)) {
        let policies = service_clusters::policies(ctx, plan);
        let tls = service_clusters::mesh_tls(ctx, plan, in_mesh);
        let zone = group.zone.as_deref();
        service_clusters::translate_into(ctx, plan, &policies, &tls, zone, &mut out);
    }
    Resources {
        clusters: out.clusters,
        load_assignments: out.load_assignments,
        ..Default::default()
    }
}

/// The Gateways that select a proxy group, by namespace and name (none: the group gets the
/// mesh outbound listener). Groups with the same Gateways get the same listeners and routes.
pub fn gateways_selecting(world: &World, group: &ProxyGroup) -> Vec<portolan_api::ObjectRef> {
    gateway::selecting(world, group)
        .into_iter()
        .map(|g| g.source.clone())
        .collect()
}

/// Everything but the Services' clusters and assignments: external clusters (with their
/// policies), the telemetry collector, and the group's listeners and routes. Not sorted.
fn group_resources(ctx: &Context<'_>, group: &ProxyGroup) -> Resources {
    let (world, options) = (ctx.world, ctx.options);
    let externals = external::plan_all(world);
    let mut resources = Resources::default();
    for plan in externals.iter().filter(|p| ctx.reaches_external(p)) {
        let mut cluster = external::cluster(plan, options);
        let policy = lookup::policy_for(world, "", plan.host, plan.port.number);
        if let Some(policy) = policy {
            policy::apply(&mut cluster, &policy);
        }
        resources.clusters.push(cluster);
    }
    let collector = telemetry::collector_cluster(&options.telemetry, options.connect_timeout);
    let collector_name = collector.as_ref().map(|c| c.name.clone());
    resources.clusters.extend(collector);
    if group.client == grpc::Client::Grpc {
        let routes = grpc::route_configuration(route::mesh_outbound(ctx, &externals));
        resources.listeners = grpc::listeners(&routes);
        resources.routes.push(routes);
        return resources;
    }
    let gateways = gateway::selecting(world, group);
    if gateways.is_empty() {
        let out_port = group.workload.as_ref().and_then(|w| w.outbound_port);
        let mut outbound = listener::mesh_outbound(options, out_port);
        let mut routes = route::mesh_outbound(ctx, &externals);
        if group.discovery == Discovery::OnDemand {
            on_demand::add_filter(&mut outbound);
            let virtual_hosts = on_demand::split_route(&mut routes);
            // The collector (and below, the inbound cluster) are used without a route; a
            // route's mirrors without a request routed to them, so on-demand CDS never asks.
            let mut wildcard_clusters = on_demand::unrouted_clusters(&virtual_hosts);
            wildcard_clusters.extend(collector_name);
            resources.on_demand = Some(OnDemandResources {
                virtual_hosts,
                wildcard_clusters,
            });
        }
        resources.listeners.push(outbound);
        resources.routes.push(routes);
        if let Some(inbound) = group
            .workload
            .as_ref()
            .and_then(|w| inbound::inbound(ctx, group, w))
        {
            resources.listeners.push(inbound.listener);
            if let Some(on_demand) = &mut resources.on_demand {
                on_demand
                    .wildcard_clusters
                    .insert(inbound.cluster.name.clone());
            }
            resources.clusters.push(inbound.cluster);
        }
    } else {
        let (listeners, routes) = gateway::resources(ctx, &gateways);
        resources.listeners = listeners;
        resources.routes = routes;
    }
    resources
}

/// Sorts a list by resource name (stable); with `dedup`, drops repeated names (first one wins).
///
/// Sorts positions, not the messages (a Cluster is over 3 KB), then permutes the list in place
/// by following each cycle of the order: no second buffer (for a big world, tens of MB of fresh
/// pages) and no message moved more than a swap. A list already in order is left untouched.
fn sort_by_name<T>(list: &mut Vec<T>, name: impl Fn(&T) -> &str, dedup: bool) {
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

// === impl Resources ===

impl Resources {
    /// Sorts every list by resource name and drops repeated names (first one wins).
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

#[cfg(test)]
mod tests;

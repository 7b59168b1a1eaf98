//! The one translation path: a World and a proxy group in, the group's resources out, each
//! cluster, assignment and route configuration as a [`Keep`] keeps it.
//!
//! [`translate`] runs it cold; a [`crate::Translator`] runs it with its per-Service memo. The
//! two differ only in where each Service's clusters and assignments come from (translated
//! now, or reused from the memo; either way by [`service_clusters::translate_for_group`]).
//! Everything else is [`run`]'s: the group's context, a second thread for a big World (the
//! group's listeners, routes and other clusters there, the Services' clusters here), gRPC
//! fitting and sorting.

use crate::context::Context;
use crate::keep::{Keep, Owned};
use crate::on_demand::{self, Discovery, OnDemandResources};
use crate::provenance::{Entry, Provenance, ResourceKind, origins};
use crate::proxyless::{self, Client};
use crate::resources::{Output, SharedResources};
use crate::service_clusters::{self, ServiceClusters};
use crate::{
    Options, ProxyGroup, Resources, capture, external, gateway, gateway_api, inbound, jwt,
    listener, lookup, policy, route, telemetry,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use external::ExternalPlan;
use portolan_model::World;
use std::sync::Arc;

/// Fewest Services for which a translation uses a second thread (below, spawning one costs
/// more than it saves).
pub const PARALLEL_MIN_SERVICES: usize = 256;

/// Translates a World for one proxy group. Pure and deterministic.
///
/// Every group gets every cluster its scope reaches (unscoped: all); listeners depend on
/// whether Gateways select the group. On a machine with more than one core, a big World's
/// listeners and routes are translated on a second thread while this one translates the
/// Services' clusters (see [`translate_on`]); the output is the same.
pub fn translate(world: &World, group: &ProxyGroup, options: &Options) -> Resources {
    translate_on(world, group, options, usize::MAX)
}

/// [`translate`] with at most `threads` threads: with 2 or more (at least
/// [`PARALLEL_MIN_SERVICES`] Services, and more than one core), the group's listeners, routes
/// and other clusters are translated on a scoped second thread while the calling thread
/// translates the Services' clusters and assignments; with 1, everything runs on the calling
/// thread. The output does not depend on `threads`.
pub fn translate_on(
    world: &World,
    group: &ProxyGroup,
    options: &Options,
    threads: usize,
) -> Resources {
    run(&Owned, world, group, options, threads, |ctx| {
        every_service(ctx, group)
    })
    .into()
}

/// Translates `world` for `group` with at most `threads` threads: `services` gives the
/// Services' clusters and assignments (on the calling thread), the rest is translated here
/// (on a second thread when it is worth one), kept with `keep`, merged and sorted.
pub(crate) fn run<K: Keep>(
    keep: &K,
    world: &World,
    group: &ProxyGroup,
    options: &Options,
    threads: usize,
    services: impl FnOnce(&Context<'_>) -> Output<K>,
) -> Output<K> {
    let ctx = Context::for_group(world, options, group);
    let (mut out, rest) = if worth_a_second_thread(&ctx, threads) {
        std::thread::scope(|s| {
            // The rest is kept there too: a big route configuration is, say, encoded and
            // freed on the thread that made it.
            let rest = s.spawn(|| rest(keep, &ctx, group));
            let out = services(&ctx);
            // A panic on the second thread is a bug of translation: pass it on.
            let rest = rest.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            (out, rest)
        })
    } else {
        (services(&ctx), rest(keep, &ctx, group))
    };
    out.clusters.extend(rest.clusters);
    out.listeners = rest.listeners;
    out.routes = rest.routes;
    out.on_demand = rest.on_demand;
    out.secrets = rest.secrets;
    out.provenance.extend(rest.provenance);
    out.sort::<K>();
    out
}

/// Whether a translation with at most `threads` threads uses a second one: a big enough World
/// on a machine with more than one core (asked last: it reads cgroup files).
fn worth_a_second_thread(ctx: &Context<'_>, threads: usize) -> bool {
    threads >= 2
        && ctx.plans.len() >= PARALLEL_MIN_SERVICES
        && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// The clusters and assignments of every Service the group reaches, translated now, in plan
/// order (each appended where it is made: a Cluster is over 3 KB).
fn every_service(ctx: &Context<'_>, group: &ProxyGroup) -> Output<Owned> {
    let in_mesh = group.workload.is_some();
    let ports: usize = ctx.plans.iter().map(|p| p.ports.len()).sum();
    let mut out = ServiceClusters {
        clusters: Vec::with_capacity(ports),
        load_assignments: Vec::with_capacity(ports),
        provenance: Vec::with_capacity(2 * ports),
    };
    let gateway_api = gateway_api::selecting(ctx.world, group).is_some();
    for plan in ctx.plans.iter().filter(|p| ctx.reaches_service(p)) {
        let policies = service_clusters::policies(ctx, plan);
        let tls = service_clusters::UpstreamTlsOf {
            mesh: service_clusters::mesh_tls(ctx, plan, in_mesh),
            backend: service_clusters::backend_tls(ctx, plan, gateway_api),
        };
        service_clusters::translate_for_group(ctx, plan, group, &policies, &tls, &mut out);
    }
    let mut provenance = Provenance::new();
    provenance.extend(out.provenance);
    SharedResources {
        clusters: out.clusters,
        load_assignments: out.load_assignments,
        listeners: Vec::new(),
        routes: Vec::new(),
        on_demand: None,
        secrets: Vec::new(),
        provenance,
    }
}

/// The group's other clusters, its listeners and routes, fitted for gRPC and kept.
fn rest<K: Keep>(keep: &K, ctx: &Context<'_>, group: &ProxyGroup) -> Output<K> {
    let mut rest = group_resources(ctx, group);
    if group.client == Client::Grpc {
        proxyless::fit(&mut rest);
    }
    SharedResources {
        clusters: rest.clusters.into_iter().map(|c| keep.cluster(c)).collect(),
        load_assignments: Vec::new(),
        listeners: rest.listeners,
        routes: rest.routes.into_iter().map(|r| keep.route(r)).collect(),
        on_demand: rest.on_demand,
        secrets: rest.secrets,
        provenance: rest.provenance,
    }
}

/// Everything but the Services' clusters and assignments: external clusters (with their
/// policies), the telemetry collector, and the group's listeners and routes, with their
/// provenance. Not sorted.
fn group_resources(ctx: &Context<'_>, group: &ProxyGroup) -> Resources {
    let externals = external::plan_all(ctx.world);
    let mut resources = Resources::default();
    resources.clusters = external_clusters(ctx, &externals, &mut resources.provenance);
    let options = ctx.options;
    let collector = telemetry::collector_cluster(&options.telemetry, options.connect_timeout);
    let collector_name = collector.as_ref().map(|c| c.name.clone());
    resources.clusters.extend(collector);
    if group.client == Client::Grpc {
        let (routes, mut entry) = route::mesh_outbound(ctx, &externals);
        let routes = proxyless::route_configuration(routes);
        entry.names = Arc::from([routes.name.clone()]);
        resources.provenance.push(entry);
        resources.listeners = proxyless::listeners(&routes);
        resources.routes.push(routes);
        return resources;
    }
    if let Some(gateway) = gateway_api::selecting(ctx.world, group) {
        let mut used = jwt::JwtUse::default();
        (resources.listeners, resources.routes, resources.secrets) = gateway_api::resources(
            ctx,
            gateway,
            &mut resources.provenance,
            &mut used,
            &mut resources.clusters,
        );
        jwks_clusters(ctx, &used, &mut resources);
        return resources;
    }
    let gateways = gateway::selecting(ctx.world, group);
    if !gateways.is_empty() {
        let mut used = jwt::JwtUse::default();
        (resources.listeners, resources.routes, resources.secrets) =
            gateway::resources(ctx, &gateways, &mut resources.provenance, &mut used);
        jwks_clusters(ctx, &used, &mut resources);
        return resources;
    }
    let out_port = group.workload.as_ref().and_then(|w| w.outbound_port);
    let mut outbound = if group.workload.is_some() {
        let port = out_port.unwrap_or(options.mesh_listener_port);
        let (listener, clusters, entry) =
            capture::outbound(ctx, &externals, port, group.outbound_policy);
        resources.clusters.extend(clusters);
        resources.provenance.push(entry);
        listener
    } else {
        listener::mesh_outbound(options, out_port)
    };
    let (mut routes, entry) = route::mesh_outbound(ctx, &externals);
    if group.discovery == Discovery::OnDemand {
        on_demand::add_filter(&mut outbound);
        on_demand::record(&routes, &entry, &mut resources.provenance);
        let virtual_hosts = on_demand::split_route(&mut routes);
        // The collector (and below, the inbound cluster) are used without a route; a route's
        // mirrors without a request routed to them, so on-demand CDS never asks for them.
        let mut wildcard_clusters = on_demand::unrouted_clusters(&virtual_hosts);
        wildcard_clusters.extend(collector_name);
        // The capture listener's passthrough and blackhole clusters: used without a route.
        wildcard_clusters.extend(
            [capture::PASSTHROUGH_CLUSTER, capture::BLACKHOLE_CLUSTER]
                .into_iter()
                .filter(|c| resources.clusters.iter().any(|x| x.name == *c))
                .map(str::to_string),
        );
        resources.on_demand = Some(OnDemandResources {
            virtual_hosts,
            wildcard_clusters,
        });
    }
    resources.provenance.push(entry);
    resources.listeners.push(outbound);
    resources.routes.push(routes);
    let inbound = group.workload.as_ref();
    if let Some(inbound) = inbound.and_then(|w| inbound::inbound(ctx, group, w)) {
        for route in inbound.routes {
            let entry = Entry::new(ResourceKind::Route, &route.name, inbound.origins.clone());
            resources.provenance.push(entry);
            resources.routes.push(route);
        }
        for listener in std::iter::once(inbound.listener).chain(inbound.listeners) {
            let from = inbound.origins.clone();
            let entry = Entry::new(ResourceKind::Listener, &listener.name, from);
            resources.provenance.push(entry);
            resources.listeners.push(listener);
        }
        if let Some(on_demand) = &mut resources.on_demand {
            let names = inbound.clusters.iter().map(|c| c.name.clone());
            on_demand.wildcard_clusters.extend(names);
        }
        resources.clusters.extend(inbound.clusters);
        jwks_clusters(ctx, &inbound.jwt, &mut resources);
    }
    resources
}

/// The clusters remote JWKS are fetched through, each recorded as made from the
/// RequestAuthentications of `used`.
fn jwks_clusters(ctx: &Context<'_>, used: &jwt::JwtUse, resources: &mut Resources) {
    for cluster in jwt::clusters(used, ctx.options.connect_timeout) {
        let from = origins(used.sources());
        let entry = Entry::new(ResourceKind::Cluster, &cluster.name, from);
        resources.provenance.push(entry);
        // Used without a route: on-demand CDS would never ask for it.
        if let Some(on_demand) = &mut resources.on_demand {
            on_demand.wildcard_clusters.insert(cluster.name.clone());
        }
        resources.clusters.push(cluster);
    }
}

/// The clusters of the ExternalService hosts the group reaches, with their policies; each
/// recorded as made from its ExternalService and policy.
fn external_clusters(
    ctx: &Context<'_>,
    externals: &[ExternalPlan<'_>],
    provenance: &mut Provenance,
) -> Vec<Cluster> {
    let reached = externals.iter().filter(|p| ctx.reaches_external(p));
    reached
        .map(|plan| {
            let mut cluster = external::cluster(plan, ctx.options);
            let policy = lookup::policy_for(ctx.world, "", plan.host, plan.port.number);
            if let Some(policy) = &policy {
                policy::apply(&mut cluster, policy);
            }
            let from = origins(
                std::iter::once(plan.service.source.clone())
                    .chain(policy.map(|p| p.source.clone())),
            );
            provenance.push(Entry::new(ResourceKind::Cluster, &cluster.name, from));
            cluster
        })
        .collect()
}

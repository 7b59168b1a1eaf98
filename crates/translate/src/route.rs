//! The `mesh-outbound` RouteConfiguration: one virtual host per TCP Service port and per HTTP
//! port of an ExternalService host.
//!
//! Domains: `name.ns`, `name.ns.svc`, `name.ns.svc.{domain}` and the ClusterIP, each with
//! `:port`, and without it for the default port; plus `name[:port]` for the one namespace that
//! owns the short name (see [`crate::service`]). Envoy rejects a route configuration that repeats a domain, so a
//! domain already taken is never repeated.
//!
//! A virtual host sends everything to its cluster, unless a TrafficRoute attached to the mesh
//! routes its host: then the route's rules replace that default route (on every port of the
//! Service). An HTTPRoute or GRPCRoute with the Service as its parent (GAMMA, see
//! [`crate::gamma`]) replaces both, on the ports it attaches to.

use crate::context::{Context, VirtualHostTarget};
use crate::external::ExternalPlan;
use crate::gamma;
use crate::lookup::{self, TargetId};
use crate::names;
use crate::provenance::{Entry, Origins, Part, origins, union};
use crate::resources::sort_by_name;
use crate::route_rules;
use crate::service::{PortPlan, ServicePlan};
use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
use envoy_types::pb::google::protobuf::BoolValue;
use portolan_api::{Kind, ObjectRef};
use portolan_model::World;
use portolan_model::routing::{HttpRoute, Parent};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// The route configuration the mesh outbound listener asks for, emitted even when empty, and
/// its entry of provenance: each virtual host from its Service or external host (and the
/// policy of its default route, or the TrafficRoute that replaces it), each TrafficRoute rule
/// from that TrafficRoute.
pub(crate) fn mesh_outbound(
    ctx: &Context<'_>,
    externals: &[ExternalPlan<'_>],
) -> (RouteConfiguration, Entry) {
    let routed = mesh_routes(ctx.world);
    // Sized up front (for every Service, admitted or not): a Vec grown by doubling copies
    // every virtual host again, megabytes of them.
    let ports = ctx.plans.iter().map(|p| p.ports.len()).sum::<usize>() + externals.len();
    let mut virtual_hosts = Vec::with_capacity(ports);
    let mut parts = Parts::with_capacity(ports);
    for plan in ctx.plans.iter().filter(|plan| ctx.admits_service(plan)) {
        let service = &plan.service.key;
        let from = origins([ObjectRef::new(
            Kind::Service,
            &service.namespace,
            &service.name,
        )]);
        for port in &plan.ports {
            virtual_hosts.push(virtual_host(ctx, &routed, plan, port, &from, &mut parts));
        }
    }
    for e in externals
        .iter()
        .filter(|e| e.is_http() && ctx.admits_external(e))
    {
        virtual_hosts.push(external_virtual_host(ctx, &routed, e, &mut parts));
    }
    drop_taken_domains(&mut virtual_hosts);
    sort_by_name(&mut virtual_hosts, |v| v.name.as_str(), false);
    let entry = Entry::route(names::MESH_ROUTE, origins([]), parts.list);
    (route_configuration(names::MESH_ROUTE, virtual_hosts), entry)
}

/// The parts of a route configuration being made: a TrafficRoute's rules are recorded once.
pub(crate) struct Parts {
    pub list: Vec<Part>,
    routes: HashSet<ObjectRef>,
}

impl Parts {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            list: Vec::with_capacity(n),
            routes: HashSet::new(),
        }
    }

    /// Records a virtual host made from `from` (and `route`, whose rules it holds).
    pub(crate) fn virtual_host(&mut self, name: &str, from: Origins, route: Option<&HttpRoute>) {
        let Some(route) = route else {
            self.list.push(Part::virtual_host(name, from));
            return;
        };
        let by_route = origins([route.source.clone()]);
        self.list
            .push(Part::virtual_host(name, union([&from, &by_route])));
        if self.routes.insert(route.source.clone()) {
            self.list.extend(route_rules::parts(route, &by_route));
        }
    }
}

/// Drops every domain an earlier virtual host (in translation order) already has.
///
/// Marks first, then removes, so the set borrows the domains instead of copying them.
fn drop_taken_domains(virtual_hosts: &mut [VirtualHost]) {
    let total = virtual_hosts.iter().map(|v| v.domains.len()).sum();
    let mut taken: HashSet<&str> = HashSet::with_capacity(total);
    let keep: Vec<bool> = virtual_hosts
        .iter()
        .flat_map(|v| &v.domains)
        .map(|d| taken.insert(d.as_str()))
        .collect();
    if keep.iter().all(|&k| k) {
        return;
    }
    let mut keep = keep.into_iter();
    for vhost in virtual_hosts {
        vhost.domains.retain(|_| keep.next().unwrap_or(true));
    }
}

/// A route configuration that does not check cluster names (unresolved destinations name
/// clusters that do not exist, and Envoy answers 503 for them).
pub(crate) fn route_configuration(
    name: &str,
    virtual_hosts: Vec<VirtualHost>,
) -> RouteConfiguration {
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts,
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// The mesh route of each Service or external host: a route's host that resolves (in the
/// route's namespace) to it; the first route by (namespace, name) when several do. Hosts
/// that resolve to nothing are ignored, and so are routes without HTTP rules.
pub(crate) fn mesh_routes(world: &World) -> BTreeMap<TargetId, Arc<HttpRoute>> {
    let mut routed: BTreeMap<TargetId, Arc<HttpRoute>> = BTreeMap::new();
    let owners = lookup::route_owners(world, &Parent::Mesh);
    for (host, route) in owners.into_iter().filter(|(_, r)| !r.http.is_empty()) {
        let Some(target) = lookup::target_id(world, &route.source.namespace, &host) else {
            continue;
        };
        routed
            .entry(target)
            .and_modify(|r| {
                if route.source < r.source {
                    *r = Arc::clone(&route);
                }
            })
            .or_insert(route);
    }
    routed
}

fn virtual_host(
    ctx: &Context<'_>,
    routed: &BTreeMap<TargetId, Arc<HttpRoute>>,
    plan: &ServicePlan<'_>,
    port: &PortPlan<'_>,
    from: &Origins,
    parts: &mut Parts,
) -> VirtualHost {
    let domains = domains(plan, port.port.port);
    let key = &plan.service.key;
    let vhost = VirtualHostTarget {
        target: TargetId::Service(key.clone()),
        port: port.port.port,
    };
    let name = names::virtual_host_name(key, port.port.port);
    if let Some(rules) = gamma::rules_for(ctx, key, port.port.port) {
        parts.list.extend(gamma::parts(&name, from, rules));
        return VirtualHost {
            name,
            domains,
            routes: gamma::routes(ctx, rules, &vhost),
            ..Default::default()
        };
    }
    let mut policy_source = None;
    let routes = routes_for(ctx, routed, &vhost, || {
        let policy = ctx.service_policy(key, port.port.port);
        policy_source = policy.as_ref().map(|p| p.source.clone());
        route_rules::default_route(&port.cluster, policy.as_deref())
    });
    let from = with_policy(from, policy_source);
    parts.virtual_host(&name, from, routed.get(&vhost.target).map(Arc::as_ref));
    VirtualHost {
        name,
        domains,
        routes,
        ..Default::default()
    }
}

fn external_virtual_host(
    ctx: &Context<'_>,
    routed: &BTreeMap<TargetId, Arc<HttpRoute>>,
    plan: &ExternalPlan<'_>,
    parts: &mut Parts,
) -> VirtualHost {
    let vhost = VirtualHostTarget {
        target: TargetId::External(plan.service.source.clone(), plan.host.to_string()),
        port: plan.port.number,
    };
    let mut policy_source = None;
    let routes = routes_for(ctx, routed, &vhost, || {
        let policy = lookup::policy_for(ctx.world, "", plan.host, plan.port.number);
        policy_source = policy.as_ref().map(|p| p.source.clone());
        route_rules::default_route(&plan.cluster, policy.as_deref())
    });
    let name = names::host_port(plan.host, plan.port.number);
    let from = with_policy(&origins([plan.service.source.clone()]), policy_source);
    parts.virtual_host(&name, from, routed.get(&vhost.target).map(Arc::as_ref));
    VirtualHost {
        name,
        domains: plan.domains(),
        routes,
        ..Default::default()
    }
}

/// `from`, and the policy of a default route if it has one.
fn with_policy(from: &Origins, policy: Option<ObjectRef>) -> Origins {
    match policy {
        None => from.clone(),
        Some(p) => origins(from.iter().cloned().chain([p])),
    }
}

/// The routed host's rules, or the default route.
fn routes_for(
    ctx: &Context<'_>,
    routed: &BTreeMap<TargetId, Arc<HttpRoute>>,
    vhost: &VirtualHostTarget,
    default: impl FnOnce() -> Route,
) -> Vec<Route> {
    match routed.get(&vhost.target) {
        Some(route) => route_rules::routes(ctx, route, Some(vhost)),
        None => vec![default()],
    }
}

/// The Service's ClusterIP as a Host header names it (`10.96.0.10`, `[fd00::a]`), when it has
/// one: a captured request sent to the ClusterIP by address carries it.
fn cluster_ip_host(plan: &ServicePlan<'_>) -> Option<String> {
    let ip: std::net::IpAddr = plan.service.cluster_ip.as_deref()?.parse().ok()?;
    Some(match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    })
}

/// The host names of one Service port, most specific last.
fn domains(plan: &ServicePlan<'_>, port: u16) -> Vec<String> {
    let key = &plan.service.key;
    // `fqdn` is `name.ns.svc.{domain}` (see [`names::service_fqdn`]): the shorter hosts are
    // its prefixes.
    let with_ns = plan
        .fqdn
        .get(..key.name.len() + 1 + key.namespace.len())
        .unwrap_or_default();
    let with_svc = plan
        .fqdn
        .get(..with_ns.len() + ".svc".len())
        .unwrap_or_default();
    let short = Some(key.name.as_str()).filter(|_| plan.owns_short_names);
    let cluster_ip = cluster_ip_host(plan);
    let hosts = short
        .into_iter()
        .chain([with_svc, with_ns, plan.fqdn.as_str()])
        .chain(cluster_ip.as_deref());
    let mut domains = Vec::with_capacity(8);
    domains.extend(hosts.clone().map(|h| names::host_port(h, port)));
    if port == plan.default_port {
        domains.extend(hosts.map(str::to_string));
    }
    domains.sort_unstable();
    domains
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vhost(name: &str, domains: &[&str]) -> VirtualHost {
        VirtualHost {
            name: name.to_string(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_domain_stays_with_the_first_virtual_host_that_has_it() {
        let mut hosts = vec![
            vhost("b", &["x", "y:80", "y"]),
            vhost("a", &["y", "z", "x:80"]),
            vhost("c", &["x:80", "w"]),
        ];
        drop_taken_domains(&mut hosts);
        let domains: Vec<Vec<&str>> = hosts
            .iter()
            .map(|h| h.domains.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(
            domains,
            [vec!["x", "y:80", "y"], vec!["z", "x:80"], vec!["w"]]
        );
    }
}

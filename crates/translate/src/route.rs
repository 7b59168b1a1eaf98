//! The `mesh-outbound` RouteConfiguration: one virtual host per TCP Service port.
//!
//! Domains: `name.ns`, `name.ns.svc` and `name.ns.svc.{domain}`, each with `:port`, and without
//! it for the default port; plus `name[:port]` for the one namespace that owns the short name
//! (see [`crate::service`]). Envoy rejects a route configuration that repeats a domain, so a
//! domain already taken is never repeated.

use crate::names;
use crate::service::{PortPlan, ServicePlan};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use envoy_types::pb::google::protobuf::BoolValue;
use std::collections::HashSet;

/// The route configuration the mesh outbound listener asks for, emitted even when empty.
pub(crate) fn mesh_outbound(plans: &[ServicePlan<'_>]) -> RouteConfiguration {
    let mut taken = HashSet::new();
    let mut virtual_hosts: Vec<_> = plans
        .iter()
        .flat_map(|plan| plan.ports.iter().map(move |port| (plan, port)))
        .map(|(plan, port)| virtual_host(plan, port, &mut taken))
        .collect();
    virtual_hosts.sort_by(|a, b| a.name.cmp(&b.name));
    RouteConfiguration {
        name: names::MESH_ROUTE.to_string(),
        virtual_hosts,
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

fn virtual_host(
    plan: &ServicePlan<'_>,
    port: &PortPlan<'_>,
    taken: &mut HashSet<String>,
) -> VirtualHost {
    let domains = domains(plan, port.port.port)
        .into_iter()
        .filter(|d| taken.insert(d.clone()))
        .collect();
    VirtualHost {
        name: names::virtual_host_name(&plan.service.key, port.port.port),
        domains,
        routes: vec![default_route(&port.cluster)],
        ..Default::default()
    }
}

/// The host names of one Service port, most specific last.
fn domains(plan: &ServicePlan<'_>, port: u16) -> Vec<String> {
    let key = &plan.service.key;
    let mut hosts = Vec::with_capacity(4);
    if plan.owns_short_names {
        hosts.push(key.name.clone());
    }
    let with_ns = format!("{}.{}", key.name, key.namespace);
    hosts.push(format!("{with_ns}.svc"));
    hosts.push(with_ns);
    hosts.push(plan.fqdn.clone());
    let mut domains: Vec<String> = hosts.iter().map(|h| format!("{h}:{port}")).collect();
    if port == plan.default_port {
        domains.extend(hosts);
    }
    domains.sort();
    domains
}

/// Everything (`/` prefix) to the port's cluster, with Envoy's default timeout.
fn default_route(cluster: &str) -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.to_string())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

//! Per-service facts computed once per translation: which ports get a cluster, the cluster
//! names, the default port, and whether the service owns its short host names.

use crate::Options;
use crate::names;
use portolan_model::{Protocol, Service, ServicePort, World};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Namespace whose services win the short host names (`name`, `name:port`).
const PREFERRED_NAMESPACE: &str = "default";

/// The port Envoy picks when a request's host has no port.
const HTTP_PORT: u16 = 80;

/// What translation needs to know about one Service, computed once.
#[derive(Debug)]
pub(crate) struct ServicePlan<'w> {
    pub service: &'w Arc<Service>,
    /// TCP ports, in the Service's order, one per port number.
    pub ports: Vec<PortPlan<'w>>,
    /// The port that also answers to hosts without `:port`.
    pub default_port: u16,
    /// `{name}.{namespace}.svc.{domain}`.
    pub fqdn: String,
    /// Whether this service gets `name` and `name:port` (see [`assign_short_names`]).
    pub owns_short_names: bool,
}

/// One TCP port of a Service and the cluster it becomes.
#[derive(Debug)]
pub(crate) struct PortPlan<'w> {
    pub port: &'w ServicePort,
    pub cluster: String,
}

/// Plans every Service that gets clusters, sorted by namespace and name.
///
/// ExternalName services are skipped (not supported yet), as are services without a TCP port.
pub(crate) fn plan_all<'w>(world: &'w World, options: &Options) -> Vec<ServicePlan<'w>> {
    let mut plans: Vec<_> = world
        .services
        .values()
        .filter_map(|svc| plan(svc, options))
        .collect();
    assign_short_names(&mut plans);
    plans
}

/// One Service's plan, as [`plan_all`] makes it but for the short names (which only routes
/// read); `None` for a Service that gets no clusters.
pub(crate) fn plan<'w>(service: &'w Arc<Service>, options: &Options) -> Option<ServicePlan<'w>> {
    if service.external_name.is_some() {
        return None;
    }
    let mut seen = BTreeSet::new();
    let ports: Vec<_> = service
        .ports
        .iter()
        .filter(|p| p.protocol == Protocol::Tcp && seen.insert(p.port))
        .map(|port| PortPlan {
            port,
            cluster: names::cluster_name(&service.key, port.port, &options.cluster_domain),
        })
        .collect();
    let default_port = default_port(&ports)?;
    Some(ServicePlan {
        service,
        ports,
        default_port,
        fqdn: names::service_fqdn(&service.key, &options.cluster_domain),
        owns_short_names: false,
    })
}

/// Port 80 if the service has it, else its first TCP port.
fn default_port(ports: &[PortPlan<'_>]) -> Option<u16> {
    if ports.iter().any(|p| p.port.port == HTTP_PORT) {
        return Some(HTTP_PORT);
    }
    ports.first().map(|p| p.port.port)
}

/// Gives the short names of each service name to one namespace: `default` when it has a
/// service of that name, else the alphabetically first namespace that has one.
fn assign_short_names<'w>(plans: &mut [ServicePlan<'w>]) {
    let mut owners: BTreeMap<&'w str, &'w str> = BTreeMap::new();
    // `plans` is sorted by (namespace, name), so the first claimant is the first namespace.
    for plan in plans.iter() {
        let service: &'w Service = plan.service;
        let key = &service.key;
        owners
            .entry(key.name.as_str())
            .and_modify(|ns| {
                if key.namespace == PREFERRED_NAMESPACE {
                    *ns = PREFERRED_NAMESPACE;
                }
            })
            .or_insert(key.namespace.as_str());
    }
    for plan in plans.iter_mut() {
        let key = &plan.service.key;
        plan.owns_short_names = owners.get(key.name.as_str()) == Some(&key.namespace.as_str());
    }
}

//! GAMMA: HTTPRoutes and GRPCRoutes whose `parentRef` is a Service (`group: ""` or `core`,
//! `kind: Service`) route the mesh's traffic to that Service (Gateway API mesh profile,
//! GEP-1426 and GEP-2649 semantics).
//!
//! * The route's rules (compiled exactly as for a Gateway, see [`super::rules`] and
//!   [`super::grpc`]) replace the default routing of the Service's virtual host in every
//!   sidecar's outbound route configuration: on every port of the Service, or on the port
//!   `parentRef.port` (and/or `sectionName`, the port's name) names.
//! * A **producer route** (in the Service's namespace) applies to every consumer; a
//!   **consumer route** (in another namespace) applies only to sidecars of the route's
//!   namespace, and there it wins over the producer routes of that port.
//! * Several routes for one Service port (of one kind, producer or consumer of a namespace)
//!   are merged in the spec's precedence, as on a Gateway listener.
//! * `hostnames` play no part for a Service parent (the Service is the host).
//! * Routes of different kinds on one Service port: only one kind applies (GEP-1426 "Route
//!   types": GRPCRoute before HTTPRoute), whatever their age or hostnames. An HTTPRoute gets
//!   none of the ports a GRPCRoute of the same scope (the producer routes, or one consumer
//!   namespace's: those that apply together) routes; left with none of its parentRef's ports,
//!   it is refused with `Accepted=False` reason [`ROUTE_CONFLICTED`].
//!
//! Status: one `parents[]` entry per Service parentRef: `Accepted=False NoMatchingParent` for
//! a Service that does not exist or a port (number or name) it does not have,
//! `Accepted=False RouteReasonConflicted` for an HTTPRoute whose ports GRPCRoutes take, else
//! `Accepted=True`; and
//! `ResolvedRefs` as for a Gateway parent.

use super::ApiRule;
use super::rules::{self, Precedence};
use crate::types::{Service, ServiceKey};
use crate::world::World;
use portolan_api::Kind;
use portolan_api::gwapi::ParentReference;
use std::collections::{BTreeMap, BTreeSet};

/// The `Accepted=False` reason of a route with a Service parent whose ports routes of a kind
/// that takes precedence (a GRPCRoute over an HTTPRoute) route: GEP-1426 names it
/// `RouteReasonConflicted` (the API defines no constant for it).
pub(super) const ROUTE_CONFLICTED: &str = "RouteReasonConflicted";

/// The routes with Service parents, compiled: per Service and port, who routes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MeshRouting {
    pub services: BTreeMap<ServiceKey, BTreeMap<u16, MeshPort>>,
}

/// The rules of one Service port: its producer routes' and, per namespace, its consumer
/// routes'. Each list is in precedence order; empty: no such route.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MeshPort {
    pub producer: Vec<ApiRule>,
    pub consumers: BTreeMap<String, Vec<ApiRule>>,
}

// === impl MeshRouting ===

impl MeshRouting {
    /// The rules that route port `port` of Service `key` for a sidecar of namespace
    /// `consumer` (`None`: a proxy of no namespace, which only producer routes apply to);
    /// `None` when no route does (the default routing stays).
    pub fn rules(&self, key: &ServiceKey, port: u16, consumer: Option<&str>) -> Option<&[ApiRule]> {
        let port = self.services.get(key)?.get(&port)?;
        let own = consumer
            .and_then(|ns| port.consumers.get(ns))
            .filter(|r| !r.is_empty());
        own.or(Some(&port.producer).filter(|r| !r.is_empty()))
            .map(Vec::as_slice)
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

impl MeshPort {
    /// Every rule of the port, producer's first (for provenance).
    pub fn all(&self) -> impl Iterator<Item = &ApiRule> {
        self.producer
            .iter()
            .chain(self.consumers.values().flatten())
    }
}

/// Whether a parentRef names a Service (core group, kind Service).
pub(super) fn is_service(parent: &ParentReference) -> bool {
    let group = parent
        .group
        .as_deref()
        .unwrap_or("gateway.networking.k8s.io");
    let kind = parent.kind.as_deref().unwrap_or("Gateway");
    matches!(group, "" | "core") && kind == "Service"
}

/// The ports of `service` a parentRef selects: all, or the one `port` and/or `sectionName`
/// (the port's name) name; `Err` when none is (`Accepted=False NoMatchingParent`).
fn selected_ports(
    service: &Service,
    parent: &ParentReference,
) -> Result<Vec<u16>, (&'static str, String)> {
    let ports: Vec<u16> = service
        .ports
        .iter()
        .filter(|p| parent.port.is_none_or(|n| i32::from(p.port) == n))
        .filter(|p| parent.section_name.as_ref().is_none_or(|n| *n == p.name))
        .map(|p| p.port)
        .collect();
    if ports.is_empty() {
        let key = &service.key;
        let wanted = match (&parent.port, &parent.section_name) {
            (Some(n), Some(name)) => format!("parentRef.port {n} with sectionName {name:?}"),
            (Some(n), None) => format!("parentRef.port: {n}"),
            (None, Some(name)) => format!("parentRef.sectionName: {name:?}"),
            (None, None) => "parentRef".to_string(),
        };
        return Err((
            "NoMatchingParent",
            format!("{wanted} is not a port of Service {key}"),
        ));
    }
    Ok(ports)
}

type Collected = Vec<(Precedence, ApiRule)>;

/// A Service port in one scope: the producer routes' (`None`) or one consumer namespace's.
type ScopedPort = (ServiceKey, u16, Option<String>);

/// Routes being attached to Services.
#[derive(Default)]
pub(super) struct MeshState {
    /// Per (Service, port): producer rules and, per consumer namespace, consumer rules.
    ports: BTreeMap<(ServiceKey, u16), (Collected, BTreeMap<String, Collected>)>,
    /// The ports GRPCRoutes route (see [`MeshState::claim_grpc`]).
    grpc: BTreeSet<ScopedPort>,
}

// === impl MeshState ===

impl MeshState {
    /// Records the Service ports GRPCRoute parentRefs `parents` (of a route of namespace
    /// `route_ns`) select, before any route attaches: on those, HTTPRoutes give way.
    pub(super) fn claim_grpc(
        &mut self,
        world: &World,
        route_ns: &str,
        parents: &[ParentReference],
    ) {
        for parent in parents.iter().filter(|p| is_service(p)) {
            if let Ok((key, ports, consumer)) = service_ports(world, route_ns, parent) {
                let scoped = ports
                    .into_iter()
                    .map(|port| (key.clone(), port, consumer.clone()));
                self.grpc.extend(scoped);
            }
        }
    }

    /// Attaches a route of `kind` and namespace `route_ns` (with `rules`) to the Service
    /// `parent` names; `Err` is the `Accepted=False` reason and message.
    pub(super) fn attach(
        &mut self,
        world: &World,
        (kind, route_ns): (Kind, &str),
        parent: &ParentReference,
        rules: &[(Precedence, ApiRule)],
    ) -> Result<(), (&'static str, String)> {
        let (key, ports, consumer) = service_ports(world, route_ns, parent)?;
        let (ports, taken): (Vec<u16>, Vec<u16>) = ports.into_iter().partition(|&port| {
            kind == Kind::GrpcRoute || !self.grpc.contains(&(key.clone(), port, consumer.clone()))
        });
        if ports.is_empty() {
            let taken: Vec<String> = taken.iter().map(u16::to_string).collect();
            return Err((
                ROUTE_CONFLICTED,
                format!(
                    "a GRPCRoute routes Service {key} port {} and takes precedence over an HTTPRoute there (GEP-1426 route types)",
                    taken.join(", ")
                ),
            ));
        }
        for port in ports {
            let (producer, consumers) = self.ports.entry((key.clone(), port)).or_default();
            let list = match &consumer {
                None => producer,
                Some(ns) => consumers.entry(ns.clone()).or_default(),
            };
            list.extend(rules.iter().cloned());
        }
        Ok(())
    }

    /// The compiled routing: every list sorted in precedence order.
    pub(super) fn finish(self) -> MeshRouting {
        let mut out = MeshRouting::default();
        for ((key, port), (producer, consumers)) in self.ports {
            let compiled = MeshPort {
                producer: rules::sorted(producer),
                consumers: consumers
                    .into_iter()
                    .map(|(ns, r)| (ns, rules::sorted(r)))
                    .collect(),
            };
            out.services.entry(key).or_default().insert(port, compiled);
        }
        out
    }
}

/// The Service a parentRef names, the ports it selects and the scope of the route (`None`:
/// a producer route in the Service's namespace, else the consumer namespace).
type Selected = (ServiceKey, Vec<u16>, Option<String>);

/// What a parentRef of a route of namespace `route_ns` selects (see [`Selected`]); `Err` is
/// the `Accepted=False` reason and message.
fn service_ports(
    world: &World,
    route_ns: &str,
    parent: &ParentReference,
) -> Result<Selected, (&'static str, String)> {
    let namespace = parent.namespace.as_deref().unwrap_or(route_ns);
    let key = ServiceKey::new(namespace, &parent.name);
    let Some(service) = world.services.get(&key) else {
        return Err((
            "NoMatchingParent",
            format!("parentRef: Service {key} does not exist"),
        ));
    };
    if service.external_name.is_some() {
        return Err((
            "NoMatchingParent",
            format!("parentRef: Service {key} is of type ExternalName, which has no mesh traffic"),
        ));
    }
    let ports = selected_ports(service, parent)?;
    let consumer = (route_ns != namespace).then(|| route_ns.to_string());
    Ok((key, ports, consumer))
}

#[cfg(test)]
#[path = "mesh_tests.rs"]
mod tests;

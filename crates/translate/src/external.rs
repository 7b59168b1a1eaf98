//! ExternalServices: one cluster per host and port, `outbound|{port}||{host}`, and for HTTP
//! ports a virtual host on the mesh route configuration (`host:port`, and `host` on the
//! default port: 80 if the service has it, else its first port).
//!
//! Static resolution gives a STATIC cluster with its endpoints inline (no EDS); DNS gives a
//! LOGICAL_DNS cluster for one name and STRICT_DNS for several, IPv4 preferred. HTTPS and
//! TCP ports get the cluster only: the mesh has no TCP listeners yet, so today only routes
//! (and gateways) reach them.

use crate::Options;
use crate::address::socket_address;
use crate::cluster::duration;
use crate::names;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, LbPolicy,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use portolan_model::World;
use portolan_model::external::{ExternalPort, ExternalProtocol, ExternalService, Resolution};
use std::net::IpAddr;
use std::sync::Arc;

/// The port that also answers to hosts without `:port`, when the service has it.
const HTTP_PORT: u16 = 80;

/// One host and port of an ExternalService.
#[derive(Debug)]
pub(crate) struct ExternalPlan<'w> {
    pub service: &'w Arc<ExternalService>,
    pub host: &'w str,
    pub port: &'w ExternalPort,
    pub cluster: String,
    /// Whether `host` without a port means this port.
    pub is_default_port: bool,
}

// === impl ExternalPlan ===

impl ExternalPlan<'_> {
    pub(crate) fn is_http(&self) -> bool {
        self.port.protocol == ExternalProtocol::Http
    }

    /// `host:port`, and `host` for the default port.
    pub(crate) fn domains(&self) -> Vec<String> {
        let mut domains = vec![format!("{}:{}", self.host, self.port.number)];
        if self.is_default_port {
            domains.push(self.host.to_string());
        }
        domains.sort();
        domains
    }
}

/// Every host and port of every ExternalService, in World order (by namespace and name),
/// then host and port order as written.
pub(crate) fn plan_all(world: &World) -> Vec<ExternalPlan<'_>> {
    let mut plans = Vec::new();
    for service in world.external_services.values() {
        let default_port = default_port(service);
        for host in &service.hosts {
            for port in &service.ports {
                plans.push(ExternalPlan {
                    service,
                    host,
                    port,
                    cluster: names::external_cluster_name(host, port.number),
                    is_default_port: Some(port.number) == default_port,
                });
            }
        }
    }
    plans
}

fn default_port(service: &ExternalService) -> Option<u16> {
    let numbers = || service.ports.iter().map(|p| p.number);
    numbers()
        .find(|&n| n == HTTP_PORT)
        .or_else(|| numbers().next())
}

/// The cluster of one external host and port (without policy settings).
pub(crate) fn cluster(plan: &ExternalPlan<'_>, options: &Options) -> Cluster {
    let (kind, endpoints) = match plan.service.resolution {
        Resolution::Static => (DiscoveryType::Static, static_endpoints(plan)),
        Resolution::Dns => dns_endpoints(plan),
    };
    let is_dns = kind != DiscoveryType::Static;
    Cluster {
        name: plan.cluster.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(kind as i32)),
        connect_timeout: Some(duration(options.connect_timeout)),
        lb_policy: LbPolicy::RoundRobin as i32,
        dns_lookup_family: if is_dns {
            DnsLookupFamily::V4Preferred as i32
        } else {
            DnsLookupFamily::Auto as i32
        },
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: plan.cluster.clone(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: endpoints,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The IP endpoints, on the port each gives for this port's name (else the port itself).
fn static_endpoints(plan: &ExternalPlan<'_>) -> Vec<LbEndpoint> {
    plan.service
        .endpoints
        .iter()
        .filter(|e| e.address.parse::<IpAddr>().is_ok())
        .map(|e| lb_endpoint(&e.address, endpoint_port(plan, &e.ports)))
        .collect()
}

/// The names to resolve (the host itself when none are given) and the cluster type.
fn dns_endpoints(plan: &ExternalPlan<'_>) -> (DiscoveryType, Vec<LbEndpoint>) {
    let endpoints: Vec<LbEndpoint> = if plan.service.endpoints.is_empty() {
        vec![lb_endpoint(plan.host, plan.port.number)]
    } else {
        plan.service
            .endpoints
            .iter()
            .map(|e| lb_endpoint(&e.address, endpoint_port(plan, &e.ports)))
            .collect()
    };
    let kind = if endpoints.len() == 1 {
        DiscoveryType::LogicalDns
    } else {
        DiscoveryType::StrictDns
    };
    (kind, endpoints)
}

fn endpoint_port(plan: &ExternalPlan<'_>, ports: &std::collections::BTreeMap<String, u16>) -> u16 {
    ports
        .get(&plan.port.name)
        .copied()
        .unwrap_or(plan.port.number)
}

pub(crate) fn lb_endpoint(address: &str, port: u16) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(socket_address(address, port)),
            ..Default::default()
        })),
        ..Default::default()
    }
}

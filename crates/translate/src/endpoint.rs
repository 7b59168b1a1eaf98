//! ClusterLoadAssignments: the endpoints of one Service port, chosen like kube-proxy does and
//! grouped by zone.
//!
//! FQDN endpoint groups are skipped (not supported yet), as are addresses that are not IPs.

use crate::address::socket_address;
use envoy_types::pb::envoy::config::core::v3::{HealthStatus, Locality};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
    lb_endpoint::HostIdentifier,
};
use portolan_model::{AddressType, EndpointGroup, EndpointSubset, Service, ServicePort};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// One endpoint address and port that may serve a Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate<'w> {
    ip: IpAddr,
    port: u16,
    zone: &'w str,
    ready: bool,
    serving: bool,
    terminating: bool,
    /// The address as written (an IPv4 literal that parsed is already canonical).
    address: &'w str,
}

/// The assignment of one cluster of a Service port (the port's, or a subset's with only the
/// groups of that subset); emitted even when it has no endpoints, so Envoy never waits for it.
pub(crate) fn load_assignment<'w>(
    cluster_name: &str,
    service: &Service,
    svc_port: &ServicePort,
    groups: impl IntoIterator<Item = &'w EndpointGroup>,
) -> ClusterLoadAssignment {
    let selected = select(candidates(service, svc_port, groups));
    ClusterLoadAssignment {
        cluster_name: cluster_name.to_string(),
        endpoints: by_zone(&selected),
        ..Default::default()
    }
}

/// Every IP endpoint of every group that serves `svc_port`, in no particular order.
fn candidates<'w>(
    service: &Service,
    svc_port: &ServicePort,
    groups: impl IntoIterator<Item = &'w EndpointGroup>,
) -> Vec<Candidate<'w>> {
    let mut out = Vec::new();
    let ip_groups = groups
        .into_iter()
        .filter(|g| g.address_type != AddressType::Fqdn);
    for subset in ip_groups.flat_map(|g| g.subsets.iter()) {
        let Some(port) = endpoint_port(service, svc_port, subset) else {
            continue;
        };
        out.extend(subset.endpoints.iter().filter_map(|ep| {
            Some(Candidate {
                ip: ep.ip()?,
                port,
                zone: ep.zone.as_deref().unwrap_or_default(),
                ready: ep.ready,
                serving: ep.serving,
                terminating: ep.terminating,
                address: &ep.address,
            })
        }));
    }
    out
}

/// The port on a subset's endpoints that serves `svc_port`: the one with the same name, or,
/// when neither side has a choice (one port each), the only one.
fn endpoint_port(
    service: &Service,
    svc_port: &ServicePort,
    subset: &EndpointSubset,
) -> Option<u16> {
    let by_name = subset.ports.iter().find(|p| p.name == svc_port.name);
    let only = match (service.ports.as_slice(), subset.ports.as_slice()) {
        ([_], [only]) => Some(only),
        _ => None,
    };
    by_name.or(only).map(|p| p.port).filter(|&p| p != 0)
}

/// kube-proxy's choice: the ready endpoints if there are any; otherwise the ones still serving
/// while terminating (graceful shutdown). Never a not-serving one. Sorted and unique by
/// address and port.
fn select(mut candidates: Vec<Candidate<'_>>) -> Vec<Candidate<'_>> {
    let any_ready = candidates.iter().any(|c| c.ready);
    candidates.retain(|c| {
        if any_ready {
            c.ready
        } else {
            c.serving && c.terminating
        }
    });
    candidates.sort();
    candidates.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
    candidates
}

/// One LocalityLbEndpoints per zone (endpoints without one share the empty zone), sorted by zone.
fn by_zone(selected: &[Candidate<'_>]) -> Vec<LocalityLbEndpoints> {
    // Counts first, so each zone's list is allocated once at its size.
    let mut zones: BTreeMap<&str, usize> = BTreeMap::new();
    for c in selected {
        *zones.entry(c.zone).or_default() += 1;
    }
    let mut out: Vec<LocalityLbEndpoints> = zones
        .iter_mut()
        .enumerate()
        .map(|(i, (zone, count))| {
            let locality = LocalityLbEndpoints {
                locality: Some(Locality {
                    zone: zone.to_string(),
                    ..Default::default()
                }),
                lb_endpoints: Vec::with_capacity(*count),
                ..Default::default()
            };
            *count = i;
            locality
        })
        .collect();
    for c in selected {
        let at = zones.get(c.zone).copied().unwrap_or_default();
        out[at].lb_endpoints.push(lb_endpoint(c));
    }
    out
}

fn lb_endpoint(c: &Candidate<'_>) -> LbEndpoint {
    // Rust parses only canonical IPv4 (no leading zeros), so the written form is the printed
    // one; IPv6 has several spellings, so it is printed.
    let address = match c.ip {
        IpAddr::V4(_) => c.address.to_string(),
        IpAddr::V6(ip) => ip.to_string(),
    };
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(EnvoyEndpoint {
            address: Some(socket_address(address, c.port)),
            ..Default::default()
        })),
        health_status: HealthStatus::Healthy as i32,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    /// `lb_endpoint` writes an IPv4 address as written: only canonical spellings parse.
    #[test]
    fn only_canonical_ipv4_parses() {
        for odd in [
            "010.0.0.1",
            "10.0.0.01",
            "10.0.1",
            "0x0a.0.0.1",
            " 10.0.0.1",
        ] {
            assert!(odd.parse::<IpAddr>().is_err(), "{odd}");
        }
        let ip: IpAddr = "10.0.0.1".parse().expect("valid");
        assert_eq!(ip.to_string(), "10.0.0.1");
    }
}

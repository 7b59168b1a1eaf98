//! On-demand discovery for mesh proxies: a proxy starts with almost nothing and learns each
//! host (VHDS) and cluster (on-demand CDS) on its first request.
//!
//! A group whose key is on-demand (`DiscoveryMode::OnDemand`, node metadata `portolan.dev/discovery: on-demand`)
//! and that no Gateway selects gets:
//!
//! * the `mesh-outbound` listener with the `envoy.filters.http.on_demand` filter first in its
//!   HTTP filters, its `odcds` over ADS: a route naming a cluster the proxy does not have makes
//!   it ask for that cluster by name;
//! * the `mesh-outbound` route configuration with `vhds` over ADS and no virtual hosts: a
//!   request for a host the proxy does not know makes it ask for `mesh-outbound/HOST`;
//! * one VHDS virtual host per domain of the full mode's virtual hosts, named
//!   `mesh-outbound/DOMAIN` (the name Envoy asks for) with that domain alone, and otherwise the
//!   same routes (retries, timeouts, splits, mirrors...) as in full mode;
//! * its Services' and external hosts' clusters served by name only: the wildcard CDS answer
//!   has only the clusters its listeners use directly (the inbound cluster, the collector)
//!   and those its routes name without routing to them (mirrors: Envoy's on-demand filter
//!   asks only for the cluster a request is routed to, so a mirror cluster it lacks would
//!   never get a copy).
//!
//! VHDS needs Delta xDS: the bootstrap must use `DELTA_GRPC` ADS (`portolan bootstrap
//! --on-demand` writes one).

use crate::filters::{ROUTER, http_filter};
use crate::names;
use crate::provenance::{Entry, Part, PartKind, Provenance, ResourceKind};
use envoy_types::pb::envoy::config::listener::v3::{Filter, Listener, filter::ConfigType};
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, Vhds, VirtualHost, route};
use envoy_types::pb::envoy::extensions::filters::http::on_demand::v3::{OnDemand, OnDemandCds};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::util::pack_any;
use prost::{Message, Name};
use std::collections::{BTreeSet, HashMap};

/// Well-known name of the on-demand HTTP filter.
pub(crate) const ON_DEMAND: &str = "envoy.filters.http.on_demand";

/// How a proxy group discovers its configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Discovery {
    /// Everything pushed up front (State-of-the-World or Delta).
    #[default]
    Full,
    /// Virtual hosts and clusters fetched on first use (VHDS + on-demand CDS; Delta ADS).
    OnDemand,
}

/// What an on-demand group gets besides the usual resources.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OnDemandResources {
    /// VHDS virtual hosts, one per domain, named `mesh-outbound/DOMAIN`, sorted by name.
    pub virtual_hosts: Vec<VirtualHost>,
    /// Clusters the wildcard CDS answer carries; every other cluster is served by name only.
    pub wildcard_clusters: BTreeSet<String>,
}

/// The VHDS name of a domain of the mesh route configuration.
pub fn virtual_host_resource_name(domain: &str) -> String {
    format!("{}/{domain}", names::MESH_ROUTE)
}

/// Records each VHDS virtual host the mesh route configuration `route` splits into (see
/// [`split_route`]) as made from the objects of the virtual host it comes from (`entry`'s part).
pub(crate) fn record(route: &RouteConfiguration, entry: &Entry, provenance: &mut Provenance) {
    let parts: HashMap<&str, &Part> = entry
        .parts
        .iter()
        .filter(|p| p.kind == PartKind::VirtualHost)
        .map(|p| (p.name.as_str(), p))
        .collect();
    for vhost in &route.virtual_hosts {
        let Some(part) = parts.get(vhost.name.as_str()) else {
            continue;
        };
        let names = vhost
            .domains
            .iter()
            .map(|d| virtual_host_resource_name(d))
            .collect();
        let from = part.origins.clone();
        provenance.push(Entry::of_many(ResourceKind::VirtualHost, names, from));
    }
}

/// Splits the full mode's `mesh-outbound` route configuration: the configuration keeps no
/// virtual hosts and takes them over VHDS; each domain becomes a virtual host of its own.
pub(crate) fn split_route(route: &mut RouteConfiguration) -> Vec<VirtualHost> {
    let full = std::mem::take(&mut route.virtual_hosts);
    route.vhds = Some(Vhds {
        config_source: Some(crate::cluster::ads_config_source()),
    });
    let mut out: Vec<VirtualHost> = full.iter().flat_map(per_domain).collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn per_domain(vhost: &VirtualHost) -> impl Iterator<Item = VirtualHost> + '_ {
    vhost.domains.iter().map(move |domain| VirtualHost {
        name: virtual_host_resource_name(domain),
        domains: vec![domain.clone()],
        ..vhost.clone()
    })
}

/// The clusters the virtual hosts' routes name without routing requests to them: their
/// mirrors (per virtual host and per route). On-demand CDS fetches only the cluster a request
/// is routed to, so these must be in the wildcard CDS answer.
pub(crate) fn unrouted_clusters(virtual_hosts: &[VirtualHost]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for vhost in virtual_hosts {
        let actions = vhost.routes.iter().filter_map(|r| match &r.action {
            Some(route::Action::Route(action)) => Some(action),
            _ => None,
        });
        let mirrors = actions
            .flat_map(|a| &a.request_mirror_policies)
            .chain(&vhost.request_mirror_policies);
        out.extend(mirrors.map(|m| m.cluster.clone()));
    }
    out
}

/// Puts the on-demand filter (on-demand CDS over ADS) first in the listener's HTTP connection
/// managers, so it runs before anything asks for the route.
pub(crate) fn add_filter(listener: &mut Listener) {
    for chain in &mut listener.filter_chains {
        for filter in &mut chain.filters {
            add_filter_to(filter);
        }
    }
}

fn add_filter_to(filter: &mut Filter) {
    let Some(ConfigType::TypedConfig(any)) = &mut filter.config_type else {
        return;
    };
    if any.type_url != HttpConnectionManager::type_url() {
        return;
    }
    // Decoding what this crate just encoded (the listener is built right before).
    let Ok(mut hcm) = HttpConnectionManager::decode(any.value.as_slice()) else {
        return;
    };
    let on_demand = OnDemand {
        odcds: Some(OnDemandCds {
            source: Some(crate::cluster::ads_config_source()),
            ..Default::default()
        }),
    };
    if hcm.http_filters.iter().any(|f| f.name == ROUTER) {
        hcm.http_filters
            .insert(0, http_filter(ON_DEMAND, pack_any(on_demand)));
        *any = pack_any(hcm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::route::v3::Route;

    #[test]
    fn discovery_parses_only_on_demand() {
        assert_eq!(Discovery::default(), Discovery::Full);
    }

    #[test]
    fn mirrors_of_routes_and_virtual_hosts_are_unrouted_clusters() {
        use envoy_types::pb::envoy::config::route::v3::RouteAction;
        use envoy_types::pb::envoy::config::route::v3::route_action::{
            ClusterSpecifier, RequestMirrorPolicy,
        };
        let mirror = |cluster: &str| RequestMirrorPolicy {
            cluster: cluster.into(),
            ..Default::default()
        };
        let routed = |to: &str, mirrors: Vec<RequestMirrorPolicy>| Route {
            action: Some(route::Action::Route(RouteAction {
                cluster_specifier: Some(ClusterSpecifier::Cluster(to.into())),
                request_mirror_policies: mirrors,
                ..Default::default()
            })),
            ..Default::default()
        };
        let vhosts = [
            VirtualHost {
                routes: vec![routed("a", vec![mirror("shadow"), mirror("audit")])],
                ..Default::default()
            },
            VirtualHost {
                routes: vec![routed("b", vec![mirror("shadow")]), routed("c", vec![])],
                request_mirror_policies: vec![mirror("vhost-shadow")],
                ..Default::default()
            },
        ];
        let got: Vec<String> = unrouted_clusters(&vhosts).into_iter().collect();
        assert_eq!(got, ["audit", "shadow", "vhost-shadow"]);
    }

    #[test]
    fn split_keeps_routes_and_makes_one_virtual_host_per_domain() {
        let mut route = RouteConfiguration {
            name: names::MESH_ROUTE.into(),
            virtual_hosts: vec![VirtualHost {
                name: "a".into(),
                domains: vec!["a:80".into(), "a".into()],
                routes: vec![Route {
                    name: "r".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let vhosts = split_route(&mut route);
        assert!(route.virtual_hosts.is_empty());
        assert!(route.vhds.is_some());
        let got: Vec<(&str, &[String])> = vhosts
            .iter()
            .map(|v| (v.name.as_str(), v.domains.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("mesh-outbound/a", &["a".to_string()][..]),
                ("mesh-outbound/a:80", &["a:80".to_string()][..]),
            ]
        );
        assert!(vhosts.iter().all(|v| v.routes[0].name == "r"));
    }
}

//! Gateways: the listeners of the proxy groups a Gateway selects, instead of the mesh listener.
//!
//! A Gateway selects a group when its `selector.cluster` (if set) is the group's `node.cluster`
//! and its `selector.metadata` (if any) is among the group's node labels. Listeners of all selected Gateways are merged per
//! port into one Envoy listener `gateway-{port}`, bound to the mesh listener address. The
//! first listener on a port (by Gateway namespace and name, then listener order) decides the
//! port's protocol; listeners of another protocol on that port are dropped.
//!
//! * HTTP: an HTTP connection manager with route configuration `gateway-{port}` (over RDS):
//!   one virtual host per host of the TrafficRoutes attached to the Gateway that the
//!   listener's hostnames allow (domains `host` and `host:port`). No routes: an empty route
//!   configuration, Envoy answers 404.
//! * HTTPS: the same, behind TLS from the listener's Secret, named over SDS (`gateway-cert|NS/NAME`,
//!   see [`crate::tls`]: the key is in the group's snapshot, never in the listener); a listener
//!   whose Secret is missing is skipped (and the port with it when none is left). When several HTTPS
//!   listeners share a port, each filter chain matches on its hostnames (SNI).
//! * TCP: see [`crate::tcp`].

use crate::ProxyGroup;
use crate::address::socket_address;
use crate::context::Context;
use crate::filters;
use crate::jwt::{self, JwtUse};
use crate::lookup;
use crate::names;
use crate::provenance::{Entry as ProvenanceEntry, Origins, Provenance, ResourceKind, origins};
use crate::route::{Parts, route_configuration};
use crate::route_rules;
use crate::tcp;
use crate::tls::{self, GatewaySecrets};
use envoy_types::pb::envoy::config::listener::v3::{
    FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::util::pack_any;
use portolan_api::{Kind, ObjectRef};
use portolan_model::World;
use portolan_model::gateway::{
    Gateway, GatewayListener, GatewaySelector, ListenerProtocol, TlsSecret,
};
use portolan_model::policy_attach::Reach;
use portolan_model::routing::{HttpRoute, Parent};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

/// A port's route configuration and its provenance entry.
type RouteAndEntry = (RouteConfiguration, ProvenanceEntry);

/// A port's route configuration, its provenance entry and the RequestAuthentications it uses.
type RouteConfigParts = (RouteConfiguration, ProvenanceEntry, JwtUse);

/// Well-known name of the TLS inspector listener filter (reads SNI for filter chain matches).
const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";

/// One listener of one Gateway.
#[derive(Clone, Copy)]
struct Entry<'w> {
    gateway: &'w Gateway,
    listener: &'w GatewayListener,
}

/// The Gateways that select a proxy group, by namespace and name (none: the group gets the
/// mesh outbound listener). Groups with the same Gateways get the same listeners and routes.
pub fn gateways_selecting(world: &World, group: &ProxyGroup) -> Vec<ObjectRef> {
    selecting(world, group)
        .into_iter()
        .map(|g| g.source.clone())
        .collect()
}

/// The Gateways that select a proxy group, by namespace and name: the selector's cluster (if
/// set) is the group's `node.cluster`, and its metadata (if any) is among the group's labels.
/// A selector with neither selects nothing.
pub(crate) fn selecting<'w>(world: &'w World, group: &ProxyGroup) -> Vec<&'w Arc<Gateway>> {
    world
        .gateways
        .values()
        .filter(|g| selects(&g.selector, group))
        .collect()
}

fn selects(selector: &GatewaySelector, group: &ProxyGroup) -> bool {
    if selector.cluster.is_none() && selector.metadata.is_empty() {
        return false;
    }
    let cluster_ok = selector
        .cluster
        .as_deref()
        .is_none_or(|c| c == group.cluster);
    let labels_ok = selector
        .metadata
        .iter()
        .all(|(k, v)| group.labels.get(k) == Some(v));
    cluster_ok && labels_ok
}

/// The listeners, route configurations and SDS secrets (the certificates the HTTPS listeners
/// name) of the selected Gateways; records their provenance (a listener: the Gateways with a
/// listener on its port, and the Secrets it serves; a route configuration: each virtual host
/// and rule from the TrafficRoute of its host).
pub(crate) fn resources(
    ctx: &Context<'_>,
    gateways: &[&Arc<Gateway>],
    provenance: &mut Provenance,
    used: &mut JwtUse,
) -> (Vec<Listener>, Vec<RouteConfiguration>, Vec<Secret>) {
    let mut listeners = Vec::new();
    let mut routes = Vec::new();
    let mut secrets = GatewaySecrets::default();
    for (port, entries) in by_port(gateways) {
        let (listener, route, from) = match entries[0].listener.protocol {
            ListenerProtocol::Http => {
                let (listener, route, jwt) = http_port(ctx, port, &entries);
                let jwt_sources: Vec<ObjectRef> = jwt.sources().collect();
                used.extend(&jwt);
                (listener, route, listener_origins(&entries, &jwt_sources))
            }
            ListenerProtocol::Https => match https_port(ctx, port, &entries, &mut secrets) {
                Some((listener, route, mut secrets, jwt)) => {
                    secrets.extend(jwt.sources());
                    used.extend(&jwt);
                    let from = listener_origins(&entries, &secrets);
                    (listener, route, from)
                }
                None => continue,
            },
            ListenerProtocol::Tcp => {
                let from = listener_origins(&entries, &[]);
                (tcp_port(ctx, port, &entries), None, from)
            }
        };
        provenance.push(ProvenanceEntry::new(
            ResourceKind::Listener,
            &listener.name,
            from,
        ));
        listeners.push(listener);
        if let Some((route, entry)) = route {
            provenance.push(entry);
            routes.push(route);
        }
    }
    let secrets = secrets.into_secrets(provenance);
    (listeners, routes, secrets)
}

/// The Gateways of a port's listeners and the Secrets (and RequestAuthentications) it uses.
fn listener_origins(entries: &[Entry<'_>], secrets: &[ObjectRef]) -> Origins {
    let gateways = entries.iter().map(|e| e.gateway.source.clone());
    origins(gateways.chain(secrets.iter().cloned()))
}

/// Listeners per port, each port's list holding only the first listener's protocol.
fn by_port<'w>(gateways: &[&'w Arc<Gateway>]) -> BTreeMap<u16, Vec<Entry<'w>>> {
    let mut ports: BTreeMap<u16, Vec<Entry<'w>>> = BTreeMap::new();
    for gateway in gateways {
        for listener in &gateway.listeners {
            let entries = ports.entry(listener.port).or_default();
            if entries
                .first()
                .is_none_or(|e| e.listener.protocol == listener.protocol)
            {
                entries.push(Entry { gateway, listener });
            }
        }
    }
    ports
}

fn http_port(
    ctx: &Context<'_>,
    port: u16,
    entries: &[Entry<'_>],
) -> (Listener, Option<RouteAndEntry>, JwtUse) {
    let name = names::gateway_listener_name(port);
    let (routes, entry, jwt) = route_config(ctx, port, entries);
    let chain = FilterChain {
        filters: vec![filters::http_connection_manager_with(
            &names::gateway_stat_prefix(port),
            &name,
            &ctx.options.telemetry,
            jwt::filter(&jwt, None),
        )],
        ..Default::default()
    };
    let listener = listener(ctx, port, vec![chain]);
    (listener, Some((routes, entry)), jwt)
}

/// An HTTPS port's listener, its route configuration and the Secrets it serves (recorded in
/// `secrets` when a filter chain names them).
fn https_port(
    ctx: &Context<'_>,
    port: u16,
    entries: &[Entry<'_>],
    secrets: &mut GatewaySecrets,
) -> Option<(Listener, Option<RouteAndEntry>, Vec<ObjectRef>, JwtUse)> {
    let with_secrets: Vec<_> = entries
        .iter()
        .filter_map(|e| secret(ctx.world, e).map(|s| (*e, s)))
        .collect();
    if with_secrets.is_empty() {
        return None;
    }
    let name = names::gateway_listener_name(port);
    let kept: Vec<Entry<'_>> = with_secrets.iter().map(|(e, _)| *e).collect();
    let (routes, route_entry, jwt) = route_config(ctx, port, &kept);
    let use_sni = with_secrets.len() > 1;
    let mut seen_matches = HashSet::new();
    let chains = with_secrets
        .iter()
        .filter_map(|(entry, secret)| {
            let server_names = if use_sni {
                sorted(&entry.listener.hostnames)
            } else {
                Vec::new()
            };
            // Envoy rejects two chains with the same match: the first one keeps it.
            if !seen_matches.insert(server_names.clone()) {
                return None;
            }
            Some(FilterChain {
                filter_chain_match: (!server_names.is_empty()).then(|| FilterChainMatch {
                    server_names,
                    ..Default::default()
                }),
                filters: vec![filters::http_connection_manager_with(
                    &names::gateway_stat_prefix(port),
                    &name,
                    &ctx.options.telemetry,
                    jwt::filter(&jwt, None),
                )],
                transport_socket: Some(tls::downstream_transport_socket(
                    secret,
                    &entry.gateway.source,
                    secrets,
                )),
                ..Default::default()
            })
        })
        .collect();
    let mut listener = listener(ctx, port, chains);
    listener.listener_filters = vec![ListenerFilter {
        name: TLS_INSPECTOR.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
            TlsInspector::default(),
        ))),
        ..Default::default()
    }];
    let sources = with_secrets.iter().map(|(_, s)| s.source.clone()).collect();
    Some((listener, Some((routes, route_entry)), sources, jwt))
}

fn tcp_port(ctx: &Context<'_>, port: u16, entries: &[Entry<'_>]) -> Listener {
    let parents: BTreeSet<Parent> = entries.iter().map(|e| parent(e.gateway)).collect();
    let parents: Vec<Parent> = parents.into_iter().collect();
    let chain = FilterChain {
        filters: vec![tcp::tcp_proxy(ctx, &parents, port)],
        ..Default::default()
    };
    listener(ctx, port, vec![chain])
}

fn listener(ctx: &Context<'_>, port: u16, filter_chains: Vec<FilterChain>) -> Listener {
    Listener {
        name: names::gateway_listener_name(port),
        address: Some(socket_address(&ctx.options.mesh_listener_address, port)),
        filter_chains,
        ..Default::default()
    }
}

/// The Secret an HTTPS listener names, if it exists.
fn secret<'w>(world: &'w World, entry: &Entry<'_>) -> Option<&'w Arc<TlsSecret>> {
    let secret_ref = entry.listener.tls.as_ref()?;
    let key = ObjectRef::new(Kind::Secret, &secret_ref.namespace, &secret_ref.name);
    world.secrets.get(&key)
}

/// One virtual host per allowed host of the routes attached to each entry's Gateway; a host
/// already given a virtual host on this port keeps the first. With its provenance entry.
fn route_config(ctx: &Context<'_>, port: u16, entries: &[Entry<'_>]) -> RouteConfigParts {
    let mut hosts = BTreeMap::new();
    let mut jwt = JwtUse::default();
    for entry in entries {
        let owners = lookup::route_owners(ctx.world, &parent(entry.gateway));
        for (host, route) in owners {
            if route.http.is_empty() || !allowed(&entry.listener.hostnames, &host) {
                continue;
            }
            hosts.entry(host).or_insert((route, *entry));
        }
    }
    let mut parts = Parts::with_capacity(hosts.len());
    let virtual_hosts = hosts
        .into_iter()
        .map(|(host, (route, entry))| {
            parts.virtual_host(&host, origins([]), Some(&route));
            let mut routes = route_rules::routes(ctx, &route, None);
            authenticate(ctx, &mut jwt, &route, entry, &mut routes);
            VirtualHost {
                domains: vec![host.clone(), format!("{host}:{port}")],
                routes,
                name: host,
                ..Default::default()
            }
        })
        .collect();
    let name = names::gateway_listener_name(port);
    let entry = ProvenanceEntry::route(&name, origins([]), parts.list);
    (route_configuration(&name, virtual_hosts), entry, jwt)
}

/// Adds to each Envoy route of `route` (one per match of each rule, in rule order) the JWT
/// requirement of the RequestAuthentication that applies to its rule: one on the rule, on
/// the TrafficRoute, on the listener, on the Gateway, most specific first.
fn authenticate(
    ctx: &Context<'_>,
    jwt: &mut JwtUse,
    route: &HttpRoute,
    entry: Entry<'_>,
    routes: &mut [envoy_types::pb::envoy::config::route::v3::Route],
) {
    let rule_of = route
        .http
        .iter()
        .enumerate()
        .flat_map(|(i, r)| std::iter::repeat_n(i, r.matches.len().max(1)));
    let gateway = &entry.gateway.source;
    for (envoy_route, rule) in routes.iter_mut().zip(rule_of) {
        let candidates = [
            Reach::Route {
                route: route.source.clone(),
                rule: Some(rule),
            },
            Reach::Route {
                route: route.source.clone(),
                rule: None,
            },
            Reach::Gateway {
                gateway: gateway.clone(),
                listener: Some(entry.listener.name.clone()),
            },
            Reach::Gateway {
                gateway: gateway.clone(),
                listener: None,
            },
        ];
        if let Some(requirement) = jwt.effective(ctx.world, &candidates) {
            let (name, config) = jwt::per_route(requirement);
            envoy_route.typed_per_filter_config.insert(name, config);
        }
    }
}

fn parent(gateway: &Gateway) -> Parent {
    Parent::Gateway {
        namespace: gateway.source.namespace.clone(),
        name: gateway.source.name.clone(),
    }
}

/// Whether a listener with these hostnames accepts a route host (no hostnames: any host).
pub(crate) fn allowed(hostnames: &[String], host: &str) -> bool {
    hostnames.is_empty() || hostnames.iter().any(|h| hostname_matches(h, host))
}

/// `*.example.com` matches one or more labels before `.example.com` (also a narrower
/// wildcard like `*.a.example.com`); anything else matches itself only.
fn hostname_matches(pattern: &str, host: &str) -> bool {
    if pattern == host {
        return true;
    }
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return false;
    };
    host.strip_suffix(suffix)
        .and_then(|rest| rest.strip_suffix('.'))
        .is_some_and(|labels| !labels.is_empty())
}

fn sorted(names: &[String]) -> Vec<String> {
    let mut names = names.to_vec();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_or_more_labels() {
        let l = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(allowed(&[], "anything"));
        assert!(allowed(&l(&["*.example.com"]), "a.example.com"));
        assert!(allowed(&l(&["*.example.com"]), "a.b.example.com"));
        assert!(allowed(&l(&["*.example.com"]), "*.a.example.com"));
        assert!(allowed(&l(&["*.example.com"]), "*.example.com"));
        assert!(!allowed(&l(&["*.example.com"]), "example.com"));
        assert!(!allowed(&l(&["*.example.com"]), "aexample.com"));
        assert!(!allowed(&l(&["a.example.com"]), "b.example.com"));
        assert!(allowed(&l(&["x.io", "a.example.com"]), "a.example.com"));
    }
}

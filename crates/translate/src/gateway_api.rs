//! Gateway API Gateways: the listeners and routes of one compiled [`ApiGateway`] for the
//! proxies of its group (`node.cluster` = `gateway:NAMESPACE/NAME`).
//!
//! One Envoy listener `gateway-{port}` per listener port, bound to the Gateway's own address,
//! with an HTTP connection manager over RDS (that ignores the Host header's port, as the
//! spec's hostname matching does); its route configuration `gateway-{port}` has one
//! virtual host per hostname (`*` catches the rest; Envoy prefers exact domains, then the
//! longest wildcard suffix, as the spec's hostname precedence asks). The rules are already
//! in the spec's precedence order; a route to a backend that did not resolve names a cluster
//! that does not exist, and Envoy answers it with 500 (`cluster_not_found_response_code`).
//!
//! A TLS port (HTTPS and TLS listeners) has a TLS inspector and one filter chain per
//! [`ApiChain`], matched on SNI (`server_names`; a chain without names takes the rest): an
//! HTTPS listener's chain terminates TLS with its certificates and routes by its own route
//! configuration `gateway-{port}/{listener}` (its certificates named over SDS,
//! `gateway-cert|NS/NAME`, see [`crate::tls`]: keys travel in the group's snapshot, never in
//! the listener); a passthrough chain is a TCP proxy to its
//! TLSRoute's weighted backends. A TCP port (TCPRoute) is one such chain without a match and
//! without the inspector. A UDP port (UDPRoute) is a UDP listener with Envoy's UDP proxy (see
//! [`crate::gateway_api_udp`]).

use crate::ProxyGroup;
use crate::address::socket_address;
use crate::context::Context;
use crate::edge::EdgeUse;
use crate::filters;
use crate::gateway_api_udp;
use crate::jwt::{self, JwtUse};
use crate::names;
use crate::provenance::{Entry, Origins, Part, Provenance, ResourceKind, origins, union};
use crate::route::route_configuration;
use crate::route_rules;
use crate::tls::GatewaySecrets;
use crate::{tcp, tls};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterNotFoundResponseCode;
use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost, route};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::util::pack_any;
use portolan_api::ObjectRef;
use portolan_model::World;
use portolan_model::gateway::TlsSecret;
use portolan_model::gateway_api::{
    ApiChain, ApiGateway, ApiPort, ApiRule, ApiVirtualHost, ChainKind, INVALID_BACKEND_HOST,
};
use portolan_model::policy_attach::Reach;
use portolan_model::routing::HttpRoute;
use std::collections::HashSet;
use std::sync::Arc;

/// Well-known name of the TLS inspector listener filter (reads SNI for filter chain matches).
const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";

/// Where a route configuration is served: the Gateway and the listeners behind it (for
/// policy attachment), and the RequestAuthentications and edge policies (ExtAuthPolicy,
/// RateLimitPolicy) its routes use.
struct Site<'a> {
    gateway: &'a ObjectRef,
    /// What the port's configuration is attributed to: the Gateway and/or the ListenerSets
    /// whose listeners are on it (see [`owners`]).
    owners: Vec<ObjectRef>,
    listeners: Vec<String>,
    jwt: JwtUse,
    edge: EdgeUse,
}

// === impl Site ===

impl<'a> Site<'a> {
    fn new(ctx: &Context<'_>, gateway: &'a ObjectRef, listeners: Vec<String>) -> Self {
        let per_listener: Vec<Vec<Reach>> = listeners
            .iter()
            .map(|l| {
                vec![
                    Reach::Gateway {
                        gateway: gateway.clone(),
                        listener: Some(l.clone()),
                    },
                    Reach::Gateway {
                        gateway: gateway.clone(),
                        listener: None,
                    },
                ]
            })
            .collect();
        Self {
            gateway,
            owners: vec![gateway.clone()],
            listeners,
            jwt: JwtUse::default(),
            edge: EdgeUse::new(ctx, &per_listener),
        }
    }

    /// The names of the Gateway's listeners on `port`.
    fn listeners_on(world: &World, gateway: &ObjectRef, port: u16) -> Vec<String> {
        match world.gateway_api.get(gateway).map(AsRef::as_ref) {
            Some(portolan_api::Resource::ApiGateway(g)) => g
                .spec
                .listeners
                .iter()
                .filter(|l| l.port == i32::from(port))
                .map(|l| l.name.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The requirement of the RequestAuthentication that applies to rule `index` of
    /// `route`: one on the rule, the route, a listener, the Gateway, most specific first.
    fn requirement(&mut self, world: &World, route: &ObjectRef, index: usize) -> Option<String> {
        let candidates = self.candidates(route, index);
        self.jwt.effective(world, &candidates)
    }

    /// The per-filter config of the ExtAuthPolicy and RateLimitPolicy that apply to rule
    /// `index` of `route` (most specific first, per kind).
    fn edge_config(
        &mut self,
        ctx: &Context<'_>,
        route: &ObjectRef,
        index: usize,
    ) -> Vec<(String, envoy_types::pb::google::protobuf::Any)> {
        let candidates = self.candidates(route, index);
        self.edge.route_config(ctx, &candidates)
    }

    /// Rule `index` of `route`, the route, each listener, the Gateway.
    fn candidates(&self, route: &ObjectRef, index: usize) -> Vec<Reach> {
        let mut candidates = vec![
            Reach::Route {
                route: route.clone(),
                rule: Some(index),
            },
            Reach::Route {
                route: route.clone(),
                rule: None,
            },
        ];
        candidates.extend(self.listeners.iter().map(|l| Reach::Gateway {
            gateway: self.gateway.clone(),
            listener: Some(l.clone()),
        }));
        candidates.push(Reach::Gateway {
            gateway: self.gateway.clone(),
            listener: None,
        });
        candidates
    }
}

/// The Gateway API Gateway whose proxies make up `group`, if any.
pub(crate) fn selecting<'w>(world: &'w World, group: &ProxyGroup) -> Option<&'w Arc<ApiGateway>> {
    world
        .api_gateways
        .values()
        .find(|g| g.group == group.cluster)
}

/// The Gateway's listeners, route configurations and SDS secrets: one listener per listener
/// port; a plain HTTP port has one route configuration, a TLS port one per HTTPS listener and
/// the certificates its chains name; a UDP port adds its cluster to `clusters` (see
/// [`crate::gateway_api_udp`]).
pub(crate) fn resources(
    ctx: &Context<'_>,
    gateway: &ApiGateway,
    provenance: &mut Provenance,
    used: &mut JwtUse,
    clusters: &mut Vec<Cluster>,
) -> (Vec<Listener>, Vec<RouteConfiguration>, Vec<Secret>) {
    let mut listeners = Vec::new();
    let mut routes = Vec::new();
    let mut secrets = GatewaySecrets::default();
    for port in &gateway.ports {
        let owners = owners(gateway, port);
        if port.udp {
            let (listener, cluster, entries) =
                gateway_api_udp::udp_port(ctx, &owners, &gateway.address, port.port, &port.chains);
            listeners.push(listener);
            clusters.push(cluster);
            for entry in entries {
                provenance.push(entry);
            }
            continue;
        }
        let name = names::gateway_listener_name(port.port);
        let mut listener = Listener {
            name: name.clone(),
            address: Some(socket_address(&gateway.address, port.port)),
            ..Default::default()
        };
        let mut sent: Vec<&ApiChain> = Vec::new();
        if port.tls || port.tcp {
            if port.tls {
                listener.listener_filters = vec![tls_inspector()];
            }
            let mut seen = HashSet::new();
            for chain in &port.chains {
                // Envoy rejects two chains with the same match: the first keeps it.
                if !seen.insert(sorted(&chain.server_names)) {
                    continue;
                }
                sent.push(chain);
                let mut site = Site::new(ctx, &gateway.source, vec![chain.name.clone()]);
                site.owners = owners.clone();
                let (filter_chain, route) =
                    tls_chain(ctx, &mut site, port.port, chain, &mut secrets);
                used.extend(&site.jwt);
                listener.filter_chains.push(filter_chain);
                if let Some((route, entry)) = route {
                    provenance.push(entry.on_port(port.port));
                    routes.push(route);
                }
            }
        } else {
            let on_port = Site::listeners_on(ctx.world, &gateway.source, port.port);
            let mut site = Site::new(ctx, &gateway.source, on_port);
            site.owners = owners.clone();
            let (route, entry) = route_config(ctx, &name, &port.virtual_hosts, &mut site);
            provenance.push(entry.on_port(port.port));
            routes.push(route);
            listener.filter_chains = vec![FilterChain {
                filters: vec![filters::gateway_api_connection_manager(
                    &names::gateway_stat_prefix(port.port),
                    &name,
                    &ctx.options.telemetry,
                    jwt::filter(&site.jwt, None),
                    site.edge.http_filters(ctx),
                )],
                ..Default::default()
            }];
            used.extend(&site.jwt);
        }
        provenance.push(
            Entry::new(
                ResourceKind::Listener,
                &name,
                listener_origins(&owners, &port.virtual_hosts, &sent),
            )
            .on_port(port.port),
        );
        listeners.push(listener);
    }
    let secrets = secrets.into_secrets(provenance);
    (listeners, routes, secrets)
}

/// What a port's configuration is attributed to: the objects whose listeners are on it (the
/// Gateway, ListenerSets attached to it), the Gateway when the model names none.
fn owners(gateway: &ApiGateway, port: &ApiPort) -> Vec<ObjectRef> {
    if port.owners.is_empty() {
        vec![gateway.source.clone()]
    } else {
        port.owners.clone()
    }
}

/// The objects behind a port's listener: its owners (the Gateway, or the ListenerSets whose
/// listeners are the port's, see [`owners`]), the certificate Secrets its HTTPS
/// chains serve and every HTTPRoute/GRPCRoute routed on the port (a TLSRoute's passthrough chain records no route yet: the model keeps only its
/// backends).
fn listener_origins(
    owners: &[ObjectRef],
    plain: &[ApiVirtualHost],
    chains: &[&ApiChain],
) -> Origins {
    let mut objects = owners.to_vec();
    let mut hosts: Vec<&ApiVirtualHost> = plain.iter().collect();
    for chain in chains {
        if let ChainKind::Terminate {
            certificates,
            virtual_hosts,
            client_validation,
        } = &chain.kind
        {
            objects.extend(certificates.iter().map(|s| s.source.clone()));
            objects.extend(client_validation.iter().flat_map(|v| v.sources.clone()));
            hosts.extend(virtual_hosts);
        }
    }
    let routes = hosts
        .iter()
        .flat_map(|vh| vh.rules.iter().map(|r| r.route.clone()));
    origins(objects.into_iter().chain(routes))
}

fn tls_inspector() -> ListenerFilter {
    ListenerFilter {
        name: TLS_INSPECTOR.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
            TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

fn sorted(names: &[String]) -> Vec<String> {
    let mut names = names.to_vec();
    names.sort();
    names
}

/// One filter chain of a TLS port (and, for HTTPS, its route configuration
/// `gateway-{port}/{listener}`).
fn tls_chain(
    ctx: &Context<'_>,
    site: &mut Site<'_>,
    port: u16,
    chain: &ApiChain,
    secrets: &mut GatewaySecrets,
) -> (FilterChain, Option<(RouteConfiguration, Entry)>) {
    let filter_chain_match = (!chain.server_names.is_empty()).then(|| FilterChainMatch {
        server_names: sorted(&chain.server_names),
        ..Default::default()
    });
    let stat_prefix = names::gateway_stat_prefix(port);
    let gateway = site.gateway;
    match &chain.kind {
        ChainKind::Terminate {
            certificates,
            virtual_hosts,
            client_validation,
        } => {
            let name = format!("{}/{}", names::gateway_listener_name(port), chain.name);
            let certificates: Vec<&TlsSecret> = certificates.iter().map(|c| &**c).collect();
            let routes = route_config(ctx, &name, virtual_hosts, site);
            let filter_chain = FilterChain {
                name: chain.name.clone(),
                filter_chain_match,
                filters: vec![filters::gateway_api_connection_manager(
                    &stat_prefix,
                    &name,
                    &ctx.options.telemetry,
                    jwt::filter(&site.jwt, None),
                    site.edge.http_filters(ctx),
                )],
                transport_socket: Some(tls::terminating_transport_socket(
                    &certificates,
                    client_validation.as_deref(),
                    gateway,
                    secrets,
                )),
                ..Default::default()
            };
            (filter_chain, Some(routes))
        }
        ChainKind::Passthrough { backends } => {
            let clusters: Vec<(String, u32)> = backends
                .iter()
                .map(|b| {
                    // Backend hosts are `name.namespace`: the namespace only breaks no tie.
                    let cluster = if b.destination.host == INVALID_BACKEND_HOST {
                        names::unrouted_cluster_name(port)
                    } else {
                        ctx.resolve(&gateway.namespace, &b.destination, None)
                            .cluster
                    };
                    (cluster, b.weight)
                })
                .collect();
            let clusters = if clusters.is_empty() {
                vec![(names::unrouted_cluster_name(port), 1)]
            } else {
                clusters
            };
            let proxy = TcpProxy {
                stat_prefix,
                cluster_specifier: Some(tcp::cluster_specifier(clusters)),
                ..Default::default()
            };
            let filter_chain = FilterChain {
                name: chain.name.clone(),
                filter_chain_match,
                filters: vec![Filter {
                    name: tcp::TCP_PROXY.to_string(),
                    config_type: Some(filter::ConfigType::TypedConfig(pack_any(proxy))),
                }],
                ..Default::default()
            };
            (filter_chain, None)
        }
    }
}

/// A route configuration and its provenance: the Gateway behind it, each virtual host
/// behind the routes it holds, each rule's Envoy routes behind its HTTPRoute or GRPCRoute
/// (quoting the rule's regexes, which Envoy quotes when it refuses one).
fn route_config(
    ctx: &Context<'_>,
    name: &str,
    virtual_hosts: &[ApiVirtualHost],
    site: &mut Site<'_>,
) -> (RouteConfiguration, Entry) {
    let parts = virtual_hosts
        .iter()
        .flat_map(|vh| parts_of(&site.owners, vh))
        .collect();
    let entry = Entry::route(name, origins(site.owners.iter().cloned()), parts);
    let virtual_hosts = virtual_hosts
        .iter()
        .map(|vh| virtual_host(ctx, vh, site))
        .collect();
    (route_configuration(name, virtual_hosts), entry)
}

/// The parts of one virtual host: itself (behind every route it holds) and each rule match,
/// each also behind the port's owners (the Gateway or ListenerSets, whose `Programmed` a NACK
/// of its configuration falsifies).
fn parts_of(owners: &[ObjectRef], vh: &ApiVirtualHost) -> Vec<Part> {
    let rules: Vec<(HttpRoute, Origins)> = vh
        .rules
        .iter()
        .map(|r| {
            let behind = std::iter::once(r.route.clone()).chain(owners.iter().cloned());
            (one_rule(r), origins(behind))
        })
        .collect();
    let all = union(rules.iter().map(|(_, o)| o));
    let mut parts = vec![Part::virtual_host(vh.hostname.clone(), all)];
    for (route, by_route) in &rules {
        parts.extend(route_rules::parts(route, by_route));
    }
    parts
}

/// A rule match as a one-rule route (how its Envoy routes are made and named).
pub(crate) fn one_rule(r: &ApiRule) -> HttpRoute {
    HttpRoute {
        source: r.route.clone(),
        generation: 0,
        hosts: Vec::new(),
        parents: Vec::new(),
        http: vec![r.rule.clone()],
        tcp: Vec::new(),
    }
}

fn virtual_host(ctx: &Context<'_>, vh: &ApiVirtualHost, site: &mut Site<'_>) -> VirtualHost {
    // The connection manager strips the Host header's port before matching.
    let domains = vec![vh.hostname.clone()];
    let routes = vh
        .rules
        .iter()
        .flat_map(|r| {
            let one = one_rule(r);
            let requirement = site.requirement(ctx.world, &r.route, r.index);
            let edge = site.edge_config(ctx, &r.route, r.index);
            let mut routes = route_rules::routes(ctx, &one, None);
            for route in &mut routes {
                route.typed_per_filter_config.extend(edge.iter().cloned());
            }
            if let Some(requirement) = requirement {
                for route in &mut routes {
                    let (name, config) = jwt::per_route(requirement.clone());
                    route.typed_per_filter_config.insert(name, config);
                }
            }
            routes
        })
        .map(answer_missing_clusters_with_500)
        .collect();
    VirtualHost {
        name: vh.hostname.clone(),
        domains,
        routes,
        ..Default::default()
    }
}

pub(crate) fn answer_missing_clusters_with_500(mut r: Route) -> Route {
    if let Some(route::Action::Route(action)) = &mut r.action {
        action.cluster_not_found_response_code =
            ClusterNotFoundResponseCode::InternalServerError as i32;
    }
    r
}

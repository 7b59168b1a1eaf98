//! The inbound listener of a mesh workload: in front of its application on 127.0.0.1, it
//! terminates mutual TLS as the workload's PeerAuthentication mode says and enforces its
//! AccessPolicies (see [`crate::rbac`]), port by port.
//!
//! The ports it serves ([`inbound_ports`]): the application port (`appPort`), and every port
//! the Services of the workload's service account target, each with the protocol its Service
//! port declares (as outbound, [`crate::protocol`]: HTTP, HTTP/2 for gRPC and h2c, or TCP).
//! Captured connections keep their original destination, which the listener restores
//! (listener filter `original_dst`) and matches its filter chains on: each served port has
//! chains matching its destination port, and the application port's chains are repeated for
//! the listener's own port (a peer calling it without capture). A captured port no Service
//! declares is passed through to the application on the port it was sent to
//! ([`PASSTHROUGH_CLUSTER`], an ORIGINAL_DST cluster whose address the chain rewrites to
//! `127.0.0.1` at the original port: the proxy's calls to its own pod IP over loopback would
//! be captured again), over a TCP proxy behind network RBAC, in the same mTLS mode: the
//! chains matching no port, and, for each port an AccessPolicy rule names that no Service
//! declares, chains matching that port (so the rule applies there and nowhere else).
//!
//! Per port, by mode:
//!
//! * STRICT: a TLS chain (a required client certificate of the trust domain) and a plaintext
//!   chain that refuses: HTTP ports answer 403 (their plaintext route configuration), TCP
//!   ports close the connection (network RBAC refusing everything). PERMISSIVE's chains, so a
//!   change between the two modes changes no TLS chain.
//! * PERMISSIVE: a TLS inspector (in every mode, so a mode change leaves the listener's
//!   filters alone) picks the TLS chain for TLS connections and the plaintext chain for the
//!   rest.
//! * DISABLE: one plaintext chain.
//!
//! HTTP ports get an HTTP connection manager (JWT authentication when a
//! RequestAuthentication targets one of the port's Services, the two RBAC filters, the
//! ExtAuthPolicy and RateLimitPolicy filters when one targets such a Service, router) over
//! route configurations from RDS ([`route_names`]: `inbound` and `inbound-plaintext` for the
//! application port, `inbound:PORT` and `inbound-plaintext:PORT` for the others), to the
//! port's cluster, whose virtual host carries the AccessPolicies' rules for that port (so a
//! policy change reaches open connections at once; a change to STRICT turns the plaintext
//! route configurations into refusals, which reach plaintext connections already open); TCP
//! ports (`appProtocol: tcp` on the node for the application port) a
//! TCP proxy behind network RBAC filters. The listener is `inbound` (stats
//! `listener.inbound.*`, e.g. `listener.inbound.ssl.handshake`; `http.inbound.*` for every
//! HTTP port) and each port's cluster `inbound|PORT` (explicit HTTP/2 for gRPC and h2c ports).
//! Rules naming ports do not apply to the passthrough's catch-all chains (their port is none
//! of the rules').

use crate::ProxyGroup;
use crate::address::socket_address;
use crate::cluster::duration;
use crate::context::Context;
use crate::edge::EdgeUse;
use crate::external::lb_endpoint;
use crate::filters::{HTTP_CONNECTION_MANAGER, ROUTER, http_filter};
use crate::inbound_tcp;
use crate::jwt::{self, JwtUse};
use crate::mesh::{Workload, downstream_mtls};
use crate::protocol;
use crate::provenance::{Origins, origins};
use crate::rbac::{self, Target};
use crate::telemetry;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbPolicy,
};
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, SubstitutionFormatString, data_source, substitution_format_string,
};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteAction, RouteConfiguration, VirtualHost, route, route_action,
};
use envoy_types::pb::envoy::extensions::filters::common::set_filter_state::v3::{
    FilterStateValue, filter_state_value,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, Rds, http_connection_manager,
};
use envoy_types::pb::envoy::extensions::filters::network::set_filter_state::v3::Config as SetFilterState;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy::ClusterSpecifier,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use envoy_types::util::pack_any;
use portolan_model::policy_attach::Reach;
use portolan_model::security::{self, AccessPolicy, MtlsMode};
use std::sync::Arc;

/// Name of the inbound listener (and its stat prefix), and of the route configuration of its
/// TLS filter chain.
pub const INBOUND_LISTENER: &str = "inbound";
/// The route configuration of the inbound listener's plaintext filter chain. In STRICT it
/// refuses every request (403, [`STRICT_REFUSAL`]): a change to STRICT is then an RDS update
/// that reaches plaintext connections already open at their next request.
pub const INBOUND_PLAINTEXT: &str = "inbound-plaintext";
/// What a plaintext request gets once the workload's mode is STRICT.
const STRICT_REFUSAL: &str = "plaintext refused: the PeerAuthentication mode is STRICT\n";
/// Well-known name of the TLS inspector listener filter.
const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
/// Well-known name of the TCP proxy network filter.
const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
/// The ORIGINAL_DST cluster of captured ports no Service declares: the application on the
/// port the connection was sent to, on 127.0.0.1.
pub const PASSTHROUGH_CLUSTER: &str = "inbound|passthrough";
/// Well-known name of the network filter setting filter state objects.
const SET_FILTER_STATE: &str = "envoy.filters.network.set_filter_state";
/// The filter state object an ORIGINAL_DST cluster connects to instead of the original
/// destination (`IP:PORT`).
const ORIGINAL_DST_ADDRESS: &str = "envoy.network.transport_socket.original_dst_address";

/// The inbound listener and the application's clusters, and the objects behind the listener
/// (the PeerAuthentication of its mode, the AccessPolicies it enforces).
pub(crate) struct Inbound {
    pub listener: Listener,
    /// The listeners behind it: for TCP ports, the internal listeners choosing a caller's
    /// cluster and the listener answering their health checks (see [`crate::inbound_tcp`]).
    pub listeners: Vec<Listener>,
    /// The HTTP ports' route configurations, two per port over RDS (see [`route_names`]), to
    /// the port's cluster, carrying the AccessPolicies' RBAC rules for that port; in STRICT
    /// the plaintext ones refuse every request.
    pub routes: Vec<RouteConfiguration>,
    /// `inbound|PORT` for each served port, the application port's first (each TCP port's
    /// with the clusters of [`crate::inbound_tcp`] after it), then [`PASSTHROUGH_CLUSTER`].
    pub clusters: Vec<Cluster>,
    pub origins: Origins,
    /// The RequestAuthentications it enforces (for the group's JWKS clusters).
    pub jwt: JwtUse,
}

/// What one port of the workload speaks, and so how the inbound listener serves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PortProtocol {
    /// HTTP/1.1 to the application (the HTTP connection manager, any HTTP version from the
    /// peer).
    Http,
    /// HTTP/2 with prior knowledge to the application: gRPC, h2c.
    Http2,
    /// Bytes, through a TCP proxy behind network RBAC.
    Tcp,
}

/// One port the inbound listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InboundPort {
    pub number: u16,
    pub protocol: PortProtocol,
}

/// The ports of a workload the inbound listener serves, the application port first: the
/// application port (`--app-port`; TCP with `appProtocol: tcp`, else as the Service port
/// targeting it says, else HTTP), then, by number, every numeric `targetPort` (or `port`, when
/// it names none) of the Services of the workload's namespace labelled with its service
/// account ([`security::SERVICE_ACCOUNT_LABEL`]), with the protocol its Service port declares
/// (`appProtocol` or the port name, as outbound: see [`protocol`]). When two Services
/// disagree on a port, the first by namespace and name decides. Named `targetPort`s are not
/// resolved (the pod's container ports are not known here), nor is the listener's own port
/// served.
pub(crate) fn inbound_ports(ctx: &Context<'_>, workload: &Workload) -> Vec<InboundPort> {
    let Some(app_port) = workload.app_port else {
        return Vec::new();
    };
    let mut declared: std::collections::BTreeMap<u16, PortProtocol> = Default::default();
    for svc in selecting_services(ctx, workload) {
        for p in &svc.ports {
            let number = match &p.target_port {
                Some(portolan_model::TargetPort::Number(n)) => *n,
                Some(portolan_model::TargetPort::Name(_)) => continue,
                None => p.port,
            };
            let protocol = if !protocol::is_http(p) {
                PortProtocol::Tcp
            } else if protocol::is_http2(p) {
                PortProtocol::Http2
            } else {
                PortProtocol::Http
            };
            declared.entry(number).or_insert(protocol);
        }
    }
    let app_protocol = match workload.tcp {
        true => PortProtocol::Tcp,
        false => declared
            .get(&app_port)
            .copied()
            .unwrap_or(PortProtocol::Http),
    };
    let app = InboundPort {
        number: app_port,
        protocol: app_protocol,
    };
    // The listener's own port is never the application's (a loop).
    let listener_port = workload
        .inbound_port
        .unwrap_or(ctx.options.mesh.inbound_port);
    let others = declared
        .into_iter()
        .filter(|(number, _)| *number != app_port && *number != listener_port)
        .map(|(number, protocol)| InboundPort { number, protocol });
    std::iter::once(app).chain(others).collect()
}

/// The route configurations of an HTTP port's TLS and plaintext chains: [`INBOUND_LISTENER`]
/// and [`INBOUND_PLAINTEXT`] for the application port (as before per-port inbound), `inbound:PORT`
/// and `inbound-plaintext:PORT` for the others.
pub fn route_names(port: u16, app_port: u16) -> (String, String) {
    if port == app_port {
        (INBOUND_LISTENER.to_string(), INBOUND_PLAINTEXT.to_string())
    } else {
        (
            format!("{INBOUND_LISTENER}:{port}"),
            format!("{INBOUND_PLAINTEXT}:{port}"),
        )
    }
}

/// The cluster of the application's port `port` on 127.0.0.1.
pub fn cluster_name(port: u16) -> String {
    format!("inbound|{port}")
}

/// The inbound resources of a workload; `None` when it names no application port.
pub(crate) fn inbound(
    ctx: &Context<'_>,
    group: &ProxyGroup,
    workload: &Workload,
) -> Option<Inbound> {
    workload.app_port?;
    let options = ctx.options;
    let peer_auth = security::peer_authentication(ctx.world, &workload.namespace, &group.labels);
    let mode = peer_auth.map_or(MtlsMode::default(), |p| p.mode);
    let policies = security::access_policies(ctx.world, &workload.namespace, &group.labels);
    let mut jwt = JwtUse::default();
    let mut edge_sources = Vec::new();
    let mut routes = Vec::new();
    let mut clusters = Vec::new();
    // The application port's chains come first ([`inbound_ports`] puts it first), for its
    // own port and then the listener's (peers calling it directly, without capture): tools
    // reading the listener's first chain find the application port's.
    let listener_port = workload.inbound_port.unwrap_or(options.mesh.inbound_port);
    let ports = inbound_ports(ctx, workload);
    let mut filter_chains = Vec::new();
    let mut listeners = Vec::new();
    let mut check_routes = Vec::new();
    let callers = match options.mesh.tcp_connection_checks {
        true => inbound_tcp::known_callers(ctx),
        false => Vec::new(),
    };
    for &port in &ports {
        let on = PortPolicy {
            policies: &policies,
            mode,
            listener_port,
            callers: options.mesh.tcp_connection_checks.then_some(&callers[..]),
        };
        let served = serve_port(ctx, workload, port, on);
        jwt.extend(&served.jwt);
        edge_sources.extend(served.edge_sources);
        routes.extend(served.routes);
        clusters.push(app_cluster(
            &cluster_name(port.number),
            port,
            options.connect_timeout,
        ));
        filter_chains.extend(served.chains);
        if let Some(checks) = served.checks {
            listeners.push(checks.listener);
            clusters.extend(checks.clusters);
            check_routes.extend(checks.routes);
        }
    }
    if !listeners.is_empty() {
        listeners.push(inbound_tcp::policy_listener(listener_port));
        routes.push(inbound_tcp::policy_routes(check_routes));
    }
    // Every other port: passed through to where it was sent, by port for the ports the
    // rules name (so that they apply there), then for any port.
    let served: std::collections::BTreeSet<u16> = ports
        .iter()
        .map(|p| p.number)
        .chain([listener_port])
        .collect();
    let named: std::collections::BTreeSet<u16> = policies
        .iter()
        .flat_map(|p| &p.rules)
        .filter_map(|r| r.to.as_ref())
        .flat_map(|to| to.ports.iter().copied())
        .filter(|p| !served.contains(p))
        .collect();
    for port in named.into_iter().map(Some).chain([None]) {
        filter_chains.extend(passthrough_chains(ctx, port, &policies, mode));
    }
    clusters.push(passthrough_cluster(options.connect_timeout));
    let from = origins(
        peer_auth
            .map(|p| p.source.clone())
            .into_iter()
            .chain(policies.iter().map(|p| p.source.clone()))
            .chain(jwt.sources())
            .chain(edge_sources),
    );
    let mut listener_filters = vec![ListenerFilter {
        name: crate::capture::ORIGINAL_DST.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
            OriginalDst::default(),
        ))),
        ..Default::default()
    }];
    // In every mode: a mode change then leaves the listener's filters as they are (a
    // changed listener is drained whole, its TCP connections closed when the drain time ends).
    listener_filters.push(ListenerFilter {
        name: TLS_INSPECTOR.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
            TlsInspector::default(),
        ))),
        ..Default::default()
    });
    let listener = Listener {
        name: INBOUND_LISTENER.to_string(),
        stat_prefix: INBOUND_LISTENER.to_string(),
        address: Some(socket_address(
            &options.mesh_listener_address,
            listener_port,
        )),
        filter_chains,
        listener_filters,
        ..Default::default()
    };
    Some(Inbound {
        listener,
        listeners,
        routes,
        clusters,
        origins: from,
        jwt,
    })
}

/// What the inbound listener holds for one port.
struct ServedPort {
    /// Its filter chains, matching its destination port (the application port's also the
    /// listener's).
    chains: Vec<FilterChain>,
    routes: Vec<RouteConfiguration>,
    jwt: JwtUse,
    edge_sources: Vec<portolan_api::ObjectRef>,
    /// A TCP port's clusters and listeners behind its chains, when policy changes are to
    /// reach its open connections.
    checks: Option<inbound_tcp::PortChecks>,
}

/// What a port is served under: the workload's AccessPolicies and mTLS mode, the inbound
/// listener's port, and the known callers when TCP ports check open connections
/// ([`crate::inbound_tcp`]).
#[derive(Clone, Copy)]
struct PortPolicy<'a> {
    policies: &'a [&'a Arc<AccessPolicy>],
    mode: MtlsMode,
    listener_port: u16,
    callers: Option<&'a [(String, String)]>,
}

/// The filter chains and route configurations of one port, in the workload's mTLS mode.
fn serve_port(
    ctx: &Context<'_>,
    workload: &Workload,
    port: InboundPort,
    on: PortPolicy<'_>,
) -> ServedPort {
    let PortPolicy {
        policies,
        mode,
        listener_port,
        ..
    } = on;
    let app_port = workload.app_port.unwrap_or(port.number);
    let tcp = port.protocol == PortProtocol::Tcp;
    let candidates = service_candidates(ctx, workload, port.number);
    let mut used = JwtUse::default();
    let requirement = (!tcp)
        .then(|| used.effective(ctx.world, &candidates))
        .flatten();
    let edge = match tcp {
        true => EdgeUse::default(),
        false => EdgeUse::new(ctx, &[candidates]),
    };
    let target = Target {
        trust_domain: &ctx.options.mesh.trust_domain,
        port: Some(port.number),
        tcp,
        peer_state: None,
    };
    let cluster = cluster_name(port.number);
    let (tls_route, plain_route) = route_names(port.number, app_port);
    let checks = on.callers.filter(|_| tcp).map(|callers| {
        inbound_tcp::port_checks(
            ctx,
            port.number,
            &cluster,
            callers,
            policies,
            mode,
            listener_port,
        )
    });
    let filters = |tls: bool| {
        let route_name = if tls { &tls_route } else { &plain_route };
        if tcp {
            // With checks, the chains stay the same across policy changes (no network RBAC
            // here: a changed chain is drained, and its connections closed at the end of the
            // drain time); the callers' clusters decide.
            match (&checks, tls) {
                (Some(checks), true) => checks.tls_filters.clone(),
                (Some(checks), false) => checks.plaintext_filters.clone(),
                (None, _) => {
                    let mut filters = strict_refusal(mode, tls);
                    filters.extend(rbac::network_filters(policies, target, INBOUND_LISTENER));
                    filters.push(tcp_proxy(&cluster));
                    filters
                }
            }
        } else {
            let mut http = rbac::http_filters();
            http.splice(0..0, jwt::filter(&used, requirement.as_deref()));
            http.extend(edge.http_filters(ctx));
            vec![http_connection_manager(ctx, http, route_name)]
        }
    };
    let routes = match tcp {
        true => Vec::new(),
        false => {
            let rules = rbac::per_route(policies, target);
            let plaintext = match mode {
                MtlsMode::Strict => refusing_route(&plain_route),
                _ => inbound_route(&plain_route, &cluster, rules.clone()),
            };
            vec![inbound_route(&tls_route, &cluster, rules), plaintext]
        }
    };
    // The application port's chains also serve the listener's own port.
    let matched = match port.number == app_port {
        true => vec![app_port, listener_port],
        false => vec![port.number],
    };
    let chains = matched
        .into_iter()
        .flat_map(|number| mode_chains(ctx, mode, Some(number), "", filters))
        .collect();
    ServedPort {
        chains,
        routes,
        edge_sources: edge.sources().collect(),
        jwt: used,
        checks,
    }
}

/// The chains of one destination port (`None`: any) in `mode`, named `tls:PORT` and
/// `plaintext:PORT` after `prefix` (`PORT` left out for any port), with `filters(tls)`.
fn mode_chains(
    ctx: &Context<'_>,
    mode: MtlsMode,
    port: Option<u16>,
    prefix: &str,
    filters: impl Fn(bool) -> Vec<Filter>,
) -> Vec<FilterChain> {
    let chain = |transport: Option<&str>, tls: bool| {
        let kind = if tls { "tls" } else { "plaintext" };
        let name = match port {
            Some(number) => format!("{prefix}{kind}:{number}"),
            None => format!("{prefix}{kind}"),
        };
        let matching = FilterChainMatch {
            destination_port: port.map(|number| UInt32Value {
                value: u32::from(number),
            }),
            transport_protocol: transport.unwrap_or_default().to_string(),
            ..Default::default()
        };
        FilterChain {
            name,
            filter_chain_match: (matching != FilterChainMatch::default()).then_some(matching),
            filters: filters(tls),
            transport_socket: tls.then(|| downstream_mtls(&ctx.options.mesh.trust_domain)),
            ..Default::default()
        }
    };
    match mode {
        // STRICT keeps PERMISSIVE's chains, its plaintext chains refusing: a change between
        // the two modes changes no TLS chain (so drains none of their connections).
        MtlsMode::Strict | MtlsMode::Permissive => {
            vec![chain(Some("tls"), true), chain(Some("raw_buffer"), false)]
        }
        MtlsMode::Disable => vec![chain(None, false)],
    }
}

/// The passthrough chains of destination port `port` (`None`: any port no other chain
/// matches), named `passthrough:tls[:PORT]`, `passthrough:plaintext[:PORT]`: network RBAC for
/// that port, the address of [`PASSTHROUGH_CLUSTER`] rewritten to 127.0.0.1 at the original
/// port, a TCP proxy to it.
fn passthrough_chains(
    ctx: &Context<'_>,
    port: Option<u16>,
    policies: &[&Arc<AccessPolicy>],
    mode: MtlsMode,
) -> Vec<FilterChain> {
    let target = Target {
        trust_domain: &ctx.options.mesh.trust_domain,
        port,
        tcp: true,
        peer_state: None,
    };
    let mut filters = rbac::network_filters(policies, target, INBOUND_LISTENER);
    filters.push(loopback_original_port());
    filters.push(tcp_proxy(PASSTHROUGH_CLUSTER));
    mode_chains(ctx, mode, port, "passthrough:", |tls| {
        let mut refused = strict_refusal(mode, tls);
        refused.extend(filters.iter().cloned());
        refused
    })
}

/// A TCP chain's refusal of plaintext connections in STRICT (a network RBAC filter refusing
/// every connection), nothing otherwise.
fn strict_refusal(mode: MtlsMode, tls: bool) -> Vec<Filter> {
    match mode == MtlsMode::Strict && !tls {
        true => vec![rbac::refuse_all(INBOUND_LISTENER)],
        false => Vec::new(),
    }
}

/// Sets the address [`PASSTHROUGH_CLUSTER`] connects to: 127.0.0.1 at the connection's
/// (restored) destination port.
fn loopback_original_port() -> Filter {
    let value = FilterStateValue {
        key: Some(filter_state_value::Key::ObjectKey(
            ORIGINAL_DST_ADDRESS.to_string(),
        )),
        value: Some(filter_state_value::Value::FormatString(text_format(
            "127.0.0.1:%DOWNSTREAM_LOCAL_PORT%",
        ))),
        ..Default::default()
    };
    let config = SetFilterState {
        on_new_connection: vec![value],
        ..Default::default()
    };
    Filter {
        name: SET_FILTER_STATE.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(config))),
    }
}

/// A substitution format string of plain text (`%COMMAND%`s substituted).
pub(crate) fn text_format(text: &str) -> SubstitutionFormatString {
    SubstitutionFormatString {
        format: Some(substitution_format_string::Format::TextFormatSource(
            DataSource {
                specifier: Some(data_source::Specifier::InlineString(text.to_string())),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// The ORIGINAL_DST cluster of the passthrough chains (their filter state gives the address).
fn passthrough_cluster(connect_timeout: std::time::Duration) -> Cluster {
    Cluster {
        name: PASSTHROUGH_CLUSTER.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(duration(connect_timeout)),
        ..Default::default()
    }
}

/// The Services of the workload's namespace labelled with its service account
/// ([`security::SERVICE_ACCOUNT_LABEL`]), by namespace and name.
fn selecting_services<'w>(
    ctx: &'w Context<'_>,
    workload: &'w Workload,
) -> impl Iterator<Item = &'w Arc<portolan_model::Service>> + 'w {
    ctx.world.services.values().filter(|s| {
        s.key.namespace == workload.namespace
            && s.labels.get(security::SERVICE_ACCOUNT_LABEL) == Some(&workload.service_account)
    })
}

/// Policy attachment candidates of a workload's inbound side, most specific first: for each
/// Service of its namespace labelled with its service account
/// ([`security::SERVICE_ACCOUNT_LABEL`]), the port serving `port`, then the Service.
fn service_candidates(ctx: &Context<'_>, workload: &Workload, port: u16) -> Vec<Reach> {
    let mut ports = Vec::new();
    let mut whole = Vec::new();
    for svc in selecting_services(ctx, workload) {
        for p in &svc.ports {
            let target = match &p.target_port {
                Some(portolan_model::TargetPort::Number(n)) => *n,
                _ => p.port,
            };
            if target == port || p.port == port {
                ports.push(Reach::Service {
                    service: svc.key.clone(),
                    port: Some(p.name.clone()),
                });
            }
        }
        whole.push(Reach::Service {
            service: svc.key.clone(),
            port: None,
        });
    }
    ports.extend(whole);
    ports
}

/// HTTP to the application: the HTTP filters, then the router, over the route configuration
/// `route_name` from RDS.
fn http_connection_manager(
    ctx: &Context<'_>,
    mut http_filters: Vec<envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter>,
    route_name: &str,
) -> Filter {
    http_filters.push(http_filter(ROUTER, pack_any(Router::default())));
    let mut hcm = HttpConnectionManager {
        stat_prefix: INBOUND_LISTENER.to_string(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(crate::cluster::ads_config_source()),
            route_config_name: route_name.to_string(),
        })),
        http_filters,
        upgrade_configs: crate::filters::upgrades(),
        ..Default::default()
    };
    crate::jwt::apply_local_reply(&mut hcm);
    telemetry::apply(&mut hcm, &ctx.options.telemetry);
    Filter {
        name: HTTP_CONNECTION_MANAGER.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
    }
}

/// Route configuration `name`: every request to the application's cluster; the virtual host
/// carries the RBAC rules.
fn inbound_route(
    name: &str,
    cluster: &str,
    rbac: Vec<(String, envoy_types::pb::google::protobuf::Any)>,
) -> RouteConfiguration {
    let route = Route {
        r#match: Some(crate::matches::match_all()),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.to_string())),
            ..Default::default()
        })),
        ..Default::default()
    };
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: INBOUND_LISTENER.to_string(),
            domains: vec!["*".to_string()],
            routes: vec![route],
            typed_per_filter_config: rbac.into_iter().collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Route configuration `name` answering every request 403 ([`STRICT_REFUSAL`]): the
/// plaintext chain's, once the mode is STRICT.
fn refusing_route(name: &str) -> RouteConfiguration {
    let route = Route {
        r#match: Some(crate::matches::match_all()),
        action: Some(route::Action::DirectResponse(DirectResponseAction {
            status: 403,
            body: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(
                    STRICT_REFUSAL.to_string(),
                )),
                ..Default::default()
            }),
            body_format: None,
        })),
        ..Default::default()
    };
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: INBOUND_LISTENER.to_string(),
            domains: vec!["*".to_string()],
            routes: vec![route],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn tcp_proxy(cluster: &str) -> Filter {
    let proxy = TcpProxy {
        stat_prefix: INBOUND_LISTENER.to_string(),
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_string())),
        ..Default::default()
    };
    Filter {
        name: TCP_PROXY.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(proxy))),
    }
}

/// The application's port on 127.0.0.1 (HTTP/2 with prior knowledge for an HTTP/2 port).
fn app_cluster(name: &str, port: InboundPort, connect_timeout: std::time::Duration) -> Cluster {
    let typed_extension_protocol_options = match port.protocol {
        PortProtocol::Http2 => crate::cluster::http2_protocol_options(),
        PortProtocol::Http | PortProtocol::Tcp => Default::default(),
    };
    Cluster {
        typed_extension_protocol_options,
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(duration(connect_timeout)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![lb_endpoint("127.0.0.1", port.number)],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

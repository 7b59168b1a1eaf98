//! The inbound listener of a mesh workload: in front of its application on 127.0.0.1, it
//! terminates mutual TLS as the workload's PeerAuthentication mode says and enforces its
//! AccessPolicies (see [`crate::rbac`]).
//!
//! * STRICT: one filter chain, TLS with a required client certificate of the trust domain.
//! * PERMISSIVE: a TLS inspector picks the TLS chain (as STRICT) for TLS connections and a
//!   plaintext chain for the rest.
//! * DISABLE: one plaintext chain.
//!
//! HTTP workloads get an HTTP connection manager (JWT authentication when a
//! RequestAuthentication targets one of the workload's Services, the two RBAC filters, the
//! ExtAuthPolicy and RateLimitPolicy filters when one targets such a Service, router) over the
//! route configuration `inbound` from RDS (`inbound-plaintext` on the plaintext chain), to the
//! application, whose virtual host carries the AccessPolicies' rules (so a policy change
//! reaches open connections at once; a change to STRICT turns `inbound-plaintext` into a
//! refusal, which reaches plaintext connections still open on the drained chain); TCP
//! workloads (`appProtocol: tcp`) a TCP proxy behind network RBAC filters.
//! The listener is `inbound` (stats `listener.inbound.*`, e.g. `listener.inbound.ssl.handshake`)
//! and the application's cluster `inbound|PORT`.

use crate::ProxyGroup;
use crate::address::socket_address;
use crate::cluster::duration;
use crate::context::Context;
use crate::edge::EdgeUse;
use crate::external::lb_endpoint;
use crate::filters::{HTTP_CONNECTION_MANAGER, ROUTER, http_filter};
use crate::jwt::{self, JwtUse};
use crate::mesh::{Workload, downstream_mtls};
use crate::provenance::{Origins, origins};
use crate::rbac::{self, Target};
use crate::telemetry;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteAction, RouteConfiguration, VirtualHost, route, route_action,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, Rds, http_connection_manager,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy::ClusterSpecifier,
};
use envoy_types::util::pack_any;
use portolan_model::policy_attach::Reach;
use portolan_model::security::{self, MtlsMode};

/// Name of the inbound listener (and its stat prefix), and of the route configuration of its
/// TLS filter chain.
pub const INBOUND_LISTENER: &str = "inbound";
/// The route configuration of the inbound listener's plaintext filter chain (PERMISSIVE,
/// DISABLE). Portolan serves it in STRICT too, refusing every request: connections a
/// plaintext chain accepted before a change to STRICT keep it while the listener drains them
/// (600 s by default), and an RDS update reaches them at their next request.
pub const INBOUND_PLAINTEXT: &str = "inbound-plaintext";
/// What a plaintext request gets once the workload's mode is STRICT.
const STRICT_REFUSAL: &str = "plaintext refused: the PeerAuthentication mode is STRICT\n";
/// Well-known name of the TLS inspector listener filter.
const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
/// Well-known name of the TCP proxy network filter.
const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";

/// The inbound listener and the application's cluster, and the objects behind the listener
/// (the PeerAuthentication of its mode, the AccessPolicies it enforces).
pub(crate) struct Inbound {
    pub listener: Listener,
    /// HTTP workloads: the route configurations [`INBOUND_LISTENER`] (the TLS chain's) and
    /// [`INBOUND_PLAINTEXT`] (the plaintext chain's), over RDS, to the application, carrying
    /// the AccessPolicies' RBAC rules; in STRICT the plaintext one refuses every request.
    pub routes: Vec<RouteConfiguration>,
    pub cluster: Cluster,
    pub origins: Origins,
    /// The RequestAuthentication it enforces (for the group's JWKS clusters).
    pub jwt: JwtUse,
}

/// The inbound resources of a workload; `None` when it names no application port.
pub(crate) fn inbound(
    ctx: &Context<'_>,
    group: &ProxyGroup,
    workload: &Workload,
) -> Option<Inbound> {
    let app_port = workload.app_port?;
    let options = ctx.options;
    let peer_auth = security::peer_authentication(ctx.world, &workload.namespace, &group.labels);
    let mode = peer_auth.map_or(MtlsMode::default(), |p| p.mode);
    let policies = security::access_policies(ctx.world, &workload.namespace, &group.labels);
    let mut used = JwtUse::default();
    let requirement = (!workload.tcp)
        .then(|| used.effective(ctx.world, &service_candidates(ctx, workload, app_port)))
        .flatten();
    let edge = match workload.tcp {
        true => EdgeUse::default(),
        false => EdgeUse::new(ctx, &[service_candidates(ctx, workload, app_port)]),
    };
    let from = origins(
        peer_auth
            .map(|p| p.source.clone())
            .into_iter()
            .chain(policies.iter().map(|p| p.source.clone()))
            .chain(used.sources())
            .chain(edge.sources()),
    );
    let target = Target {
        trust_domain: &options.mesh.trust_domain,
        app_port,
        tcp: workload.tcp,
    };
    let cluster_name = format!("inbound|{app_port}");
    let filters = |route_name: &str| {
        if workload.tcp {
            let mut filters = rbac::network_filters(&policies, target, INBOUND_LISTENER);
            filters.push(tcp_proxy(&cluster_name));
            filters
        } else {
            let mut http = rbac::http_filters();
            http.splice(0..0, jwt::filter(&used, requirement.as_deref()));
            http.extend(edge.http_filters(ctx));
            vec![http_connection_manager(ctx, http, route_name)]
        }
    };
    let routes = match workload.tcp {
        true => Vec::new(),
        false => {
            let rules = rbac::per_route(&policies, target);
            let plaintext = match mode {
                MtlsMode::Strict => refusing_route(INBOUND_PLAINTEXT),
                _ => inbound_route(INBOUND_PLAINTEXT, &cluster_name, rules.clone()),
            };
            vec![
                inbound_route(INBOUND_LISTENER, &cluster_name, rules),
                plaintext,
            ]
        }
    };
    let tls_chain = || FilterChain {
        filters: filters(INBOUND_LISTENER),
        transport_socket: Some(downstream_mtls(&options.mesh.trust_domain)),
        ..Default::default()
    };
    let plain_chain = || FilterChain {
        filters: filters(INBOUND_PLAINTEXT),
        ..Default::default()
    };
    let (filter_chains, listener_filters) = match mode {
        MtlsMode::Strict => (vec![tls_chain()], vec![]),
        MtlsMode::Disable => (vec![plain_chain()], vec![]),
        MtlsMode::Permissive => (
            vec![
                with_transport(tls_chain(), "tls"),
                with_transport(plain_chain(), "raw_buffer"),
            ],
            vec![ListenerFilter {
                name: TLS_INSPECTOR.to_string(),
                config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
                    TlsInspector::default(),
                ))),
                ..Default::default()
            }],
        ),
    };
    let port = workload.inbound_port.unwrap_or(options.mesh.inbound_port);
    let listener = Listener {
        name: INBOUND_LISTENER.to_string(),
        stat_prefix: INBOUND_LISTENER.to_string(),
        address: Some(socket_address(&options.mesh_listener_address, port)),
        filter_chains,
        listener_filters,
        ..Default::default()
    };
    Some(Inbound {
        listener,
        routes,
        cluster: app_cluster(&cluster_name, app_port, options.connect_timeout),
        origins: from,
        jwt: used,
    })
}

/// Policy attachment candidates of a workload's inbound side, most specific first: for each
/// Service of its namespace labelled with its service account
/// ([`security::SERVICE_ACCOUNT_LABEL`]), the port serving `app_port`, then the Service.
fn service_candidates(ctx: &Context<'_>, workload: &Workload, app_port: u16) -> Vec<Reach> {
    let mut ports = Vec::new();
    let mut whole = Vec::new();
    let services = ctx.world.services.values().filter(|s| {
        s.key.namespace == workload.namespace
            && s.labels.get(security::SERVICE_ACCOUNT_LABEL) == Some(&workload.service_account)
    });
    for svc in services {
        for p in &svc.ports {
            let target = match &p.target_port {
                Some(portolan_model::TargetPort::Number(n)) => *n,
                _ => p.port,
            };
            if target == app_port || p.port == app_port {
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

fn with_transport(mut chain: FilterChain, transport_protocol: &str) -> FilterChain {
    chain.filter_chain_match = Some(FilterChainMatch {
        transport_protocol: transport_protocol.to_string(),
        ..Default::default()
    });
    chain
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

/// The application on 127.0.0.1.
fn app_cluster(name: &str, port: u16, connect_timeout: std::time::Duration) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(duration(connect_timeout)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![lb_endpoint("127.0.0.1", port)],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

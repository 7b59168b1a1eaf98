//! Policy changes on open TCP connections of the inbound listener.
//!
//! Envoy's network RBAC filter decides once, when a connection starts, and a policy change in
//! a filter chain is a listener update that drains the changed chain: its open connections
//! keep the old decision for the whole drain time (600 s by default) and are then closed,
//! allowed or not. So on a TCP port the filter chains never change with a policy; each known
//! caller's connections go through a cluster of their own, and a policy change that refuses a
//! caller closes exactly its connections, within a second, leaving everyone else's alone:
//!
//! * The port's TLS chains set the filter state object [`PEER_KEY`] to the verified client
//!   certificate's URI SAN once the TLS handshake is done, and their TCP proxy connects (only
//!   then) to the cluster [`callers_name`], an internal listener of the same name that picks a
//!   filter chain by that object: one per known caller, to its cluster `inbound|PORT|from|NS/SA`
//!   ([`caller_cluster`]), behind a network RBAC filter refusing everything while the caller
//!   is refused (so only a refused caller's chain changes), and `others`, the network RBAC
//!   filters (matching the caller's ID in that filter state object: the internal connection
//!   has no certificate) and the port's plain `inbound|PORT` cluster. The plaintext chains go to
//!   `inbound|PORT|from|plaintext` the same way.
//! * Each caller's cluster (and the plaintext one) is the application's port on 127.0.0.1
//!   with an active HTTP health check that asks the route configuration [`POLICY_ROUTES`]
//!   (served over RDS by the listener [`POLICY_LISTENER`] on an abstract Unix socket) whether
//!   that caller is admitted: 200 or 503, decided here by [`rbac::tcp_allows`] (the network
//!   RBAC filters' decision). Envoy closes every connection to a host when it fails an active
//!   health check and its cluster says `close_connections_on_host_health_failure` (host
//!   removal, cluster updates and EDS health only drain). A policy change is then an RDS
//!   update of [`POLICY_ROUTES`] and an update of the chains of the callers whose decision
//!   changed (and of `others`), made in place: at its next check (a 503 counts at once; a
//!   check that times out or cannot connect only twice in a row) a refused caller's cluster
//!   turns unhealthy and its open connections close; its new ones are refused by its chain.
//!
//! Known callers are the service accounts the World knows: its ServiceAccounts (every one of
//! the watched namespaces, in a cluster) and those of Services labelled with
//! [`security::SERVICE_ACCOUNT_LABEL`]. Any other caller goes through `others`: checked by
//! network RBAC when it connects only, and drained like any changed chain.

use crate::address::socket_address;
use crate::cluster::duration;
use crate::context::Context;
use crate::filters::{HTTP_CONNECTION_MANAGER, ROUTER, http_filter};
use crate::rbac::{self, Target};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::health_check::{HealthChecker, HttpHealthCheck};
use envoy_types::pb::envoy::config::core::v3::{
    Address, EnvoyInternalAddress, HealthCheck, Pipe, TransportSocket, address,
    envoy_internal_address, transport_socket,
};
use envoy_types::pb::envoy::config::endpoint::v3::endpoint::HealthCheckConfig;
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::listener::v3::listener::{
    InternalListenerConfig, ListenerSpecifier,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteConfiguration, RouteMatch, VirtualHost, route,
    route_match::PathSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::common::set_filter_state::v3::{
    FilterStateValue, filter_state_value,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, Rds, http_connection_manager,
};
use envoy_types::pb::envoy::extensions::filters::network::set_filter_state::v3::Config as SetFilterState;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, UpstreamConnectMode, tcp_proxy::ClusterSpecifier,
};
use envoy_types::pb::envoy::extensions::matching::common_inputs::network::v3::FilterStateInput;
use envoy_types::pb::envoy::extensions::transport_sockets::internal_upstream::v3::InternalUpstreamTransport;
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::google::protobuf::{StringValue, UInt32Value};
use envoy_types::pb::xds::core::v3::TypedExtensionConfig;
use envoy_types::pb::xds::r#type::matcher::v3::matcher::matcher_list::predicate::{
    MatchType, SinglePredicate, single_predicate,
};
use envoy_types::pb::xds::r#type::matcher::v3::matcher::matcher_list::{FieldMatcher, Predicate};
use envoy_types::pb::xds::r#type::matcher::v3::matcher::{
    MatcherList, MatcherType, OnMatch, on_match,
};
use envoy_types::pb::xds::r#type::matcher::v3::{Matcher, StringMatcher, string_matcher};
use envoy_types::util::pack_any;
use portolan_api::Kind;
use portolan_model::security::{self, AccessPolicy, MtlsMode};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// The listener answering the health checks, on an abstract Unix socket of the proxy's
/// network namespace (no port to collide with the application's).
pub const POLICY_LISTENER: &str = "inbound-policy";
/// Its route configuration: one route per checked cluster, `/PORT/NS/SA` or
/// `/PORT/plaintext`, answering 200 (admitted) or 503 (refused).
pub const POLICY_ROUTES: &str = "inbound-policy";
/// The filter state object holding the caller's SPIFFE ID.
pub const PEER_KEY: &str = "portolan.peer";
/// How often each checked cluster asks. A 503 marks the cluster unhealthy at once; a check
/// that times out or cannot connect counts only [`UNHEALTHY_AFTER`] times in a row (one lost
/// check is not a refusal).
const CHECK_INTERVAL: Duration = Duration::from_millis(300);
/// How often a cluster no connection ever used asks (a caller that never connected has
/// nothing to close; its first connection is covered from its next check on).
const IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
const UNHEALTHY_AFTER: u32 = 2;
/// The first bytes a caller sends before its upstream connection exists are buffered up to
/// this.
const EARLY_DATA_BYTES: u32 = 64 * 1024;
const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
const SET_FILTER_STATE: &str = "envoy.filters.network.set_filter_state";
/// The name of the filter chain (of [`callers_name`]) for callers that are not known.
const OTHERS: &str = "others";

/// What one TCP port of the inbound listener gets so that policy changes reach its open
/// connections.
pub(crate) struct PortChecks {
    /// The TLS chains' filters.
    pub tls_filters: Vec<Filter>,
    /// The plaintext chains' filters.
    pub plaintext_filters: Vec<Filter>,
    /// The internal listener choosing a caller's cluster.
    pub listener: Listener,
    /// The internal listener's cluster, then each checked cluster.
    pub clusters: Vec<Cluster>,
    /// The routes of [`POLICY_ROUTES`] for this port.
    pub routes: Vec<Route>,
}

/// The SPIFFE IDs of the known callers, by ID, each with its `NS/SA`: the ServiceAccounts
/// (every one in a cluster; in files, the ServiceAccount documents) and the service accounts
/// Services are labelled with.
pub(crate) fn known_callers(ctx: &Context<'_>) -> Vec<(String, String)> {
    let trust_domain = &ctx.options.mesh.trust_domain;
    let labelled = ctx.world.services.values().filter_map(|s| {
        let sa = s.labels.get(security::SERVICE_ACCOUNT_LABEL)?;
        Some((s.key.namespace.as_str(), sa.as_str()))
    });
    let accounts = ctx
        .world
        .gateway_api
        .keys()
        .filter(|o| o.kind == Kind::ServiceAccount)
        .map(|o| (o.namespace.as_str(), o.name.as_str()));
    let accounts: BTreeSet<(&str, &str)> = labelled.chain(accounts).collect();
    accounts
        .into_iter()
        .map(|(ns, sa)| {
            let id = crate::mesh::spiffe_id(trust_domain, ns, sa);
            (id, format!("{ns}/{sa}"))
        })
        .collect()
}

/// The internal listener (and cluster) choosing the cluster of a caller on `port`.
pub fn callers_name(port: u16) -> String {
    format!("inbound|{port}|callers")
}

/// The checked cluster of a caller (`NS/SA`, or `plaintext`) on `port`.
pub fn caller_cluster(port: u16, caller: &str) -> String {
    format!("inbound|{port}|from|{caller}")
}

/// The health check path of a caller on `port`.
fn check_path(port: u16, caller: &str) -> String {
    format!("/{port}/{caller}")
}

/// The abstract socket of [`POLICY_LISTENER`]: one per inbound listener port, so that
/// several sidecars sharing a network namespace do not collide.
fn policy_socket(listener_port: u16) -> Address {
    Address {
        address: Some(address::Address::Pipe(Pipe {
            path: format!("@portolan-inbound-policy-{listener_port}"),
            mode: 0,
        })),
    }
}

/// Everything TCP port `port` (served by `app_cluster`) needs, for `callers`
/// ([`known_callers`]) under `policies` and `mode`.
pub(crate) fn port_checks(
    ctx: &Context<'_>,
    port: u16,
    app_cluster: &str,
    callers: &[(String, String)],
    policies: &[&Arc<AccessPolicy>],
    mode: MtlsMode,
    listener_port: u16,
) -> PortChecks {
    let target = Target {
        trust_domain: &ctx.options.mesh.trust_domain,
        port: Some(port),
        tcp: true,
        peer_state: None,
    };
    let connect_timeout = ctx.options.connect_timeout;
    let socket = policy_socket(listener_port);
    let callers_cluster = callers_name(port);
    let mut clusters = vec![internal_cluster(&callers_cluster, connect_timeout)];
    let mut routes = Vec::new();
    let mut chains = Vec::new();
    let mut matchers = Vec::new();
    for (id, caller) in callers {
        let cluster = caller_cluster(port, caller);
        let path = check_path(port, caller);
        clusters.push(checked_cluster(
            &cluster,
            port,
            &path,
            &socket,
            connect_timeout,
        ));
        let admitted = rbac::tcp_allows(policies, target, Some(id));
        routes.push(check_route(&path, admitted));
        matchers.push(peer_matcher(id, caller));
        chains.push(FilterChain {
            name: caller.clone(),
            filters: admit(admitted, &cluster),
            ..Default::default()
        });
    }
    // The internal connection has no certificate: the rules read the caller's ID from the
    // filter state the TLS chain shared.
    let from_state = Target {
        peer_state: Some(PEER_KEY),
        ..target
    };
    let mut others = rbac::network_filters(policies, from_state, crate::inbound::INBOUND_LISTENER);
    others.push(tcp_proxy(app_cluster, None));
    chains.push(FilterChain {
        name: OTHERS.to_string(),
        filters: others,
        ..Default::default()
    });
    let plaintext_cluster = caller_cluster(port, "plaintext");
    let path = check_path(port, "plaintext");
    clusters.push(checked_cluster(
        &plaintext_cluster,
        port,
        &path,
        &socket,
        connect_timeout,
    ));
    let plaintext_admitted = mode != MtlsMode::Strict && rbac::tcp_allows(policies, target, None);
    routes.push(check_route(&path, plaintext_admitted));
    PortChecks {
        tls_filters: vec![
            peer_filter_state(),
            tcp_proxy(
                &callers_cluster,
                Some(UpstreamConnectMode::OnDownstreamTlsHandshake),
            ),
        ],
        plaintext_filters: admit(plaintext_admitted, &plaintext_cluster),
        listener: internal_listener(&callers_cluster, chains, matchers),
        clusters,
        routes,
    }
}

/// The listener answering the health checks of every TCP port's checked clusters over
/// [`POLICY_ROUTES`].
pub(crate) fn policy_listener(listener_port: u16) -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: POLICY_LISTENER.to_string(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(crate::cluster::ads_config_source()),
            route_config_name: POLICY_ROUTES.to_string(),
        })),
        http_filters: vec![http_filter(ROUTER, pack_any(Router::default()))],
        ..Default::default()
    };
    Listener {
        name: POLICY_LISTENER.to_string(),
        stat_prefix: POLICY_LISTENER.to_string(),
        address: Some(policy_socket(listener_port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: HTTP_CONNECTION_MANAGER.to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// [`POLICY_ROUTES`] with `routes`; anything else is refused (404).
pub(crate) fn policy_routes(routes: Vec<Route>) -> RouteConfiguration {
    RouteConfiguration {
        name: POLICY_ROUTES.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: POLICY_ROUTES.to_string(),
            domains: vec!["*".to_string()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `path` answered 200 when `admitted`, else 503.
fn check_route(path: &str, admitted: bool) -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::Path(path.to_string())),
            ..Default::default()
        }),
        action: Some(route::Action::DirectResponse(DirectResponseAction {
            status: if admitted { 200 } else { 503 },
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A caller's filters: a TCP proxy to its `cluster`, behind a network RBAC filter refusing
/// every connection while it is not `admitted` (a chain that changes only when the decision
/// does, so the admitted callers' chains are never drained).
fn admit(admitted: bool, cluster: &str) -> Vec<Filter> {
    let refuse = (!admitted).then(|| rbac::refuse_all(crate::inbound::INBOUND_LISTENER));
    refuse
        .into_iter()
        .chain([tcp_proxy(cluster, None)])
        .collect()
}

/// Sets [`PEER_KEY`] to the client certificate's URI SAN once the TLS handshake is done,
/// shared with the upstream (internal) connection.
fn peer_filter_state() -> Filter {
    let value = FilterStateValue {
        key: Some(filter_state_value::Key::ObjectKey(PEER_KEY.to_string())),
        factory_key: "envoy.string".to_string(),
        value: Some(filter_state_value::Value::FormatString(
            crate::inbound::text_format("%DOWNSTREAM_PEER_URI_SAN%"),
        )),
        shared_with_upstream: filter_state_value::SharedWithUpstream::Once as i32,
        ..Default::default()
    };
    let config = SetFilterState {
        on_downstream_tls_handshake: vec![value],
        ..Default::default()
    };
    Filter {
        name: SET_FILTER_STATE.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(config))),
    }
}

/// A TCP proxy to `cluster`, connecting when `mode` says (`None`: at once).
fn tcp_proxy(cluster: &str, mode: Option<UpstreamConnectMode>) -> Filter {
    let proxy = TcpProxy {
        stat_prefix: crate::inbound::INBOUND_LISTENER.to_string(),
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_string())),
        upstream_connect_mode: mode.map_or(0, |m| m as i32),
        max_early_data_bytes: mode.map(|_| UInt32Value {
            value: EARLY_DATA_BYTES,
        }),
        ..Default::default()
    };
    Filter {
        name: TCP_PROXY.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(proxy))),
    }
}

/// Chooses the filter chain of the caller `id` (named `chain`).
fn peer_matcher(id: &str, chain: &str) -> FieldMatcher {
    let input = TypedExtensionConfig {
        name: PEER_KEY.to_string(),
        typed_config: Some(pack_any(FilterStateInput {
            key: PEER_KEY.to_string(),
            ..Default::default()
        })),
    };
    FieldMatcher {
        predicate: Some(Predicate {
            match_type: Some(MatchType::SinglePredicate(SinglePredicate {
                input: Some(input),
                matcher: Some(single_predicate::Matcher::ValueMatch(StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(id.to_string())),
                    ..Default::default()
                })),
            })),
        }),
        on_match: Some(chain_action(chain)),
    }
}

/// The filter chain matcher's action selecting the chain `name`.
fn chain_action(name: &str) -> OnMatch {
    OnMatch {
        on_match: Some(on_match::OnMatch::Action(TypedExtensionConfig {
            name: name.to_string(),
            typed_config: Some(pack_any(StringValue {
                value: name.to_string(),
            })),
        })),
        ..Default::default()
    }
}

/// The internal listener `name` choosing among `chains` by [`PEER_KEY`] (a list, not a map:
/// its encoding, and so the resource version, stays the same from build to build).
fn internal_listener(
    name: &str,
    chains: Vec<FilterChain>,
    matchers: Vec<FieldMatcher>,
) -> Listener {
    Listener {
        name: name.to_string(),
        stat_prefix: name.to_string(),
        filter_chains: chains,
        filter_chain_matcher: Some(Matcher {
            matcher_type: Some(MatcherType::MatcherList(MatcherList { matchers })),
            on_no_match: Some(Box::new(chain_action(OTHERS))),
        }),
        listener_specifier: Some(ListenerSpecifier::InternalListener(
            InternalListenerConfig::default(),
        )),
        ..Default::default()
    }
}

/// The cluster of the internal listener `name`: one upstream connection per downstream one,
/// each carrying that connection's [`PEER_KEY`].
fn internal_cluster(name: &str, connect_timeout: Duration) -> Cluster {
    let endpoint = LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(address::Address::EnvoyInternalAddress(
                    EnvoyInternalAddress {
                        address_name_specifier: Some(
                            envoy_internal_address::AddressNameSpecifier::ServerListenerName(
                                name.to_string(),
                            ),
                        ),
                        ..Default::default()
                    },
                )),
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    let internal = InternalUpstreamTransport {
        transport_socket: Some(TransportSocket {
            name: "envoy.transport_sockets.raw_buffer".to_string(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(
                RawBuffer::default(),
            ))),
        }),
        ..Default::default()
    };
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(duration(connect_timeout)),
        connection_pool_per_downstream_connection: true,
        load_assignment: Some(load_assignment(name, endpoint)),
        transport_socket: Some(TransportSocket {
            name: "envoy.transport_sockets.internal_upstream".to_string(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(
                internal,
            ))),
        }),
        ..Default::default()
    }
}

/// The application's `port` on 127.0.0.1, health-checked at `path` of [`POLICY_LISTENER`],
/// closing its connections when the check fails.
fn checked_cluster(
    name: &str,
    port: u16,
    path: &str,
    socket: &Address,
    connect_timeout: Duration,
) -> Cluster {
    let endpoint = LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(socket_address("127.0.0.1", port)),
            health_check_config: Some(HealthCheckConfig {
                address: Some(socket.clone()),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    let check = HealthCheck {
        timeout: Some(duration(CHECK_TIMEOUT)),
        interval: Some(duration(CHECK_INTERVAL)),
        no_traffic_interval: Some(duration(IDLE_CHECK_INTERVAL)),
        unhealthy_threshold: Some(UInt32Value {
            value: UNHEALTHY_AFTER,
        }),
        healthy_threshold: Some(UInt32Value { value: 1 }),
        health_checker: Some(HealthChecker::HttpHealthCheck(HttpHealthCheck {
            host: POLICY_LISTENER.to_string(),
            path: path.to_string(),
            ..Default::default()
        })),
        ..Default::default()
    };
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(duration(connect_timeout)),
        close_connections_on_host_health_failure: true,
        health_checks: vec![check],
        load_assignment: Some(load_assignment(name, endpoint)),
        ..Default::default()
    }
}

fn load_assignment(name: &str, endpoint: LbEndpoint) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![endpoint],
            ..Default::default()
        }],
        ..Default::default()
    }
}

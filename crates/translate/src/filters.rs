//! The HTTP connection manager every listener uses: routes over RDS and the HTTP filters
//! fault, CORS and router, in that order. Fault and CORS do nothing unless a route carries
//! per-route config for them. Gateway listeners add the edge filters (external authorization,
//! rate limits, see [`crate::edge`]) before the router. Telemetry (access logs, request ids, tracing) comes from
//! [`crate::telemetry`].

use crate::cluster::ads_config_source;
use crate::telemetry::{self, Telemetry};
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::config::route::v3::FilterConfig;
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;

/// Well-known name of the HTTP connection manager network filter.
pub(crate) const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";

/// Well-known name of the fault injection HTTP filter.
pub(crate) const FAULT: &str = "envoy.filters.http.fault";

/// The upgrade type of WebSocket connections (the `Upgrade` header's value).
const WEBSOCKET: &str = "websocket";

/// Well-known name of the CORS HTTP filter.
pub(crate) const CORS: &str = "envoy.filters.http.cors";

/// Well-known name of the router HTTP filter.
pub(crate) const ROUTER: &str = "envoy.filters.http.router";

/// The HTTP connection manager network filter, taking route config `route_name` over ADS.
pub(crate) fn http_connection_manager(
    stat_prefix: &str,
    route_name: &str,
    telemetry: &Telemetry,
) -> Filter {
    http_connection_manager_with(stat_prefix, route_name, telemetry, None, Vec::new())
}

/// [`http_connection_manager`] with `first` (e.g. JWT authentication) before the other HTTP
/// filters, and `edge` filters (external authorization, rate limits, see [`crate::edge`]) after
/// fault and CORS, before the router.
pub(crate) fn http_connection_manager_with(
    stat_prefix: &str,
    route_name: &str,
    telemetry: &Telemetry,
    first: Option<HttpFilter>,
    edge: Vec<HttpFilter>,
) -> Filter {
    let mut hcm = hcm(stat_prefix, route_name, telemetry);
    hcm.http_filters.splice(0..0, first);
    let router = hcm.http_filters.len() - 1;
    hcm.http_filters.splice(router..router, edge);
    crate::jwt::apply_local_reply(&mut hcm);
    Filter {
        name: HTTP_CONNECTION_MANAGER.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
    }
}

/// The HTTP connection manager of a Gateway API listener: as [`http_connection_manager_with`],
/// the Host header's port is ignored when virtual hosts are chosen (the spec's hostname
/// matching does not consider it).
pub(crate) fn gateway_api_connection_manager(
    stat_prefix: &str,
    route_name: &str,
    telemetry: &Telemetry,
    first: Option<HttpFilter>,
    edge: Vec<HttpFilter>,
) -> Filter {
    let mut hcm = hcm(stat_prefix, route_name, telemetry);
    hcm.http_filters.splice(0..0, first);
    let router = hcm.http_filters.len() - 1;
    hcm.http_filters.splice(router..router, edge);
    crate::jwt::apply_local_reply(&mut hcm);
    hcm.strip_port_mode = Some(http_connection_manager::StripPortMode::StripAnyHostPort(
        true,
    ));
    Filter {
        name: HTTP_CONNECTION_MANAGER.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
    }
}

/// The upgrades every HTTP connection manager of Portolan's accepts: WebSocket, as Istio
/// does. An upgrade request is proxied like any other request (routes, filters, RBAC) and
/// then carries the connection's bytes both ways; a backend that does not upgrade answers as
/// it would any request. HTTP/1.1 upstreams only: an HTTP/2 upstream (a gRPC port) would
/// need extended CONNECT.
pub(crate) fn upgrades() -> Vec<http_connection_manager::UpgradeConfig> {
    vec![http_connection_manager::UpgradeConfig {
        upgrade_type: WEBSOCKET.to_string(),
        ..Default::default()
    }]
}

fn hcm(stat_prefix: &str, route_name: &str, telemetry: &Telemetry) -> HttpConnectionManager {
    let mut hcm = HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: route_name.to_string(),
        })),
        http_filters: vec![
            http_filter(FAULT, pack_any(HttpFault::default())),
            http_filter(CORS, pack_any(Cors::default())),
            http_filter(ROUTER, pack_any(Router::default())),
        ],
        upgrade_configs: upgrades(),
        ..Default::default()
    };
    telemetry::apply(&mut hcm, telemetry);
    hcm
}

/// Per-route filter config (`envoy.config.route.v3.FilterConfig`) that enables a filter the
/// connection manager disables by default, with the filter's own per-route `config` (Envoy
/// refuses a `FilterConfig` without one).
pub(crate) fn enabled_on_route(config: Any) -> Any {
    pack_any(FilterConfig {
        config: Some(config),
        ..Default::default()
    })
}

/// Per-route filter config that turns a filter off for one route (or virtual host).
pub(crate) fn disabled_on_route() -> Any {
    pack_any(FilterConfig {
        disabled: true,
        ..Default::default()
    })
}

pub(crate) fn http_filter(name: &str, config: Any) -> HttpFilter {
    HttpFilter {
        name: name.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

//! The mesh outbound listener: an HTTP connection manager that takes its routes over RDS.

use crate::Options;
use crate::address::socket_address;
use crate::cluster::ads_config_source;
use crate::names;
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::util::pack_any;

/// Well-known name of the HTTP connection manager network filter.
const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";

/// Well-known name of the router HTTP filter.
const ROUTER: &str = "envoy.filters.http.router";

/// The `mesh-outbound` listener, emitted even when there are no services.
pub(crate) fn mesh_outbound(options: &Options) -> Listener {
    let filter = Filter {
        name: HTTP_CONNECTION_MANAGER.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(
            http_connection_manager(),
        ))),
    };
    Listener {
        name: names::MESH_LISTENER.to_string(),
        address: Some(socket_address(
            &options.mesh_listener_address,
            options.mesh_listener_port,
        )),
        filter_chains: vec![FilterChain {
            filters: vec![filter],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn http_connection_manager() -> HttpConnectionManager {
    let router = HttpFilter {
        name: ROUTER.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
            Router::default(),
        ))),
        ..Default::default()
    };
    HttpConnectionManager {
        stat_prefix: names::MESH_STAT_PREFIX.to_string(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: names::MESH_ROUTE.to_string(),
        })),
        http_filters: vec![router],
        ..Default::default()
    }
}

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

use crate::ProxyGroup;
use crate::address::socket_address;
use crate::context::Context;
use crate::filters;
use crate::names;
use crate::route::route_configuration;
use crate::route_rules;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterNotFoundResponseCode;
use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost, route};
use portolan_model::World;
use portolan_model::gateway_api::{ApiGateway, ApiPort, ApiVirtualHost};
use portolan_model::routing::HttpRoute;
use std::sync::Arc;

/// The Gateway API Gateway whose proxies make up `group`, if any.
pub(crate) fn selecting<'w>(world: &'w World, group: &ProxyGroup) -> Option<&'w Arc<ApiGateway>> {
    world
        .api_gateways
        .values()
        .find(|g| g.group == group.cluster)
}

/// The Gateway's listeners and route configurations, one of each per listener port.
pub(crate) fn resources(
    ctx: &Context<'_>,
    gateway: &ApiGateway,
) -> (Vec<Listener>, Vec<RouteConfiguration>) {
    gateway
        .ports
        .iter()
        .map(|port| {
            let name = names::gateway_listener_name(port.port);
            let chain = FilterChain {
                filters: vec![filters::gateway_api_connection_manager(
                    &names::gateway_stat_prefix(port.port),
                    &name,
                    &ctx.options.telemetry,
                )],
                ..Default::default()
            };
            let listener = Listener {
                name: name.clone(),
                address: Some(socket_address(&gateway.address, port.port)),
                filter_chains: vec![chain],
                ..Default::default()
            };
            (listener, route_config(ctx, &name, port))
        })
        .unzip()
}

fn route_config(ctx: &Context<'_>, name: &str, port: &ApiPort) -> RouteConfiguration {
    let virtual_hosts = port
        .virtual_hosts
        .iter()
        .map(|vh| virtual_host(ctx, vh))
        .collect();
    route_configuration(name, virtual_hosts)
}

fn virtual_host(ctx: &Context<'_>, vh: &ApiVirtualHost) -> VirtualHost {
    // The connection manager strips the Host header's port before matching.
    let domains = vec![vh.hostname.clone()];
    let routes = vh
        .rules
        .iter()
        .flat_map(|r| {
            let one = HttpRoute {
                source: r.route.clone(),
                generation: 0,
                hosts: Vec::new(),
                parents: Vec::new(),
                http: vec![r.rule.clone()],
                tcp: Vec::new(),
            };
            route_rules::routes(ctx, &one, None)
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

fn answer_missing_clusters_with_500(mut r: Route) -> Route {
    if let Some(route::Action::Route(action)) = &mut r.action {
        action.cluster_not_found_response_code =
            ClusterNotFoundResponseCode::InternalServerError as i32;
    }
    r
}

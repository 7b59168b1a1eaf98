//! GAMMA in the mesh's outbound route configuration: the HTTPRoutes and GRPCRoutes attached
//! to a Service (compiled by the model, see `portolan_model::gateway_api::mesh`) replace the
//! default route of that Service's virtual host, port by port.
//!
//! Which routes apply depends on the sidecar: a consumer route applies to the sidecars of its
//! own namespace (and wins over the producer routes there), a producer route to every other
//! one ([`Context::consumer`]). The rules are translated exactly as a Gateway's are (the same
//! [`route_rules`] and the same 500 for a backend that did not resolve, see
//! [`crate::gateway_api`]).

use crate::context::{Context, VirtualHostTarget};
use crate::gateway_api::{answer_missing_clusters_with_500, one_rule};
use crate::provenance::{Origins, Part, origins, union};
use crate::route_rules;
use envoy_types::pb::envoy::config::route::v3::Route;
use portolan_model::ServiceKey;
use portolan_model::gateway_api::ApiRule;

/// The GAMMA rules of port `port` of Service `key` for this group, if any route has them.
pub(crate) fn rules_for<'w>(
    ctx: &Context<'w>,
    key: &ServiceKey,
    port: u16,
) -> Option<&'w [ApiRule]> {
    let mesh = &ctx.world.api_mesh;
    if mesh.is_empty() {
        return None;
    }
    mesh.rules(key, port, ctx.consumer.as_deref())
}

/// The Envoy routes of `rules` on the virtual host `vhost`, in their precedence order.
pub(crate) fn routes(
    ctx: &Context<'_>,
    rules: &[ApiRule],
    vhost: &VirtualHostTarget,
) -> Vec<Route> {
    rules
        .iter()
        .flat_map(|r| route_rules::routes(ctx, &one_rule(r), Some(vhost)))
        .map(answer_missing_clusters_with_500)
        .collect()
}

/// The parts of a virtual host routed by `rules`: itself (behind its Service and every route
/// it holds) and each rule, behind its route.
pub(crate) fn parts(name: &str, from: &Origins, rules: &[ApiRule]) -> Vec<Part> {
    let by_rule: Vec<(portolan_model::routing::HttpRoute, Origins)> = rules
        .iter()
        .map(|r| (one_rule(r), origins([r.route.clone()])))
        .collect();
    let all = union(std::iter::once(from).chain(by_rule.iter().map(|(_, o)| o)));
    let mut parts = vec![Part::virtual_host(name, all)];
    for (route, by_route) in &by_rule {
        parts.extend(route_rules::parts(route, by_route));
    }
    parts
}

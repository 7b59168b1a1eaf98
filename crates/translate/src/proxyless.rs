//! Proxyless gRPC clients (the xDS resolver, `xds:///svc.ns:port`): what a group of them gets
//! instead of Envoy's listeners, and what is left out of the shared resources because gRPC
//! cannot use it (and would NACK some of it).
//!
//! * Listeners: one API listener per host name of the mesh route configuration (the target
//!   authority, e.g. `reviews.default:9080`, `reviews.default.svc.cluster.local:9080`, and the
//!   port-less names for a Service's first port), each an HTTP connection manager taking
//!   [`GRPC_ROUTE`] over ADS, with only the router filter.
//! * [`GRPC_ROUTE`]: the mesh route configuration with only what gRPC implements (gRFC A28,
//!   A31, A44): matches, weighted clusters and header hash policies stay; a route timeout
//!   becomes `max_stream_duration`; retries keep their gRPC status codes (`unavailable` when
//!   none is named) with an explicit back-off; per-filter config, header edits, rewrites and
//!   mirrors are dropped.
//! * Clusters: EDS only (STATIC and DNS clusters are left out); no transport socket, health
//!   checks or protocol options; load balancing round robin or ring hash (others become round
//!   robin). Outlier detection and circuit breakers stay (gRFC A50, A32).
//! * Endpoints: every locality gets a weight (gRPC ignores localities without one).

use crate::Resources;
use crate::cluster::ads_config_source;
use crate::filters::{self, ROUTER};
use crate::service_clusters::ServiceClusters;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbPolicy,
};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{ApiListener, Listener};
use envoy_types::pb::envoy::config::route::v3::retry_policy::RetryBackOff;
use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::PolicySpecifier;
use envoy_types::pb::envoy::config::route::v3::route_action::{
    MaxStreamDuration, RequestMirrorPolicy,
};
use envoy_types::pb::envoy::config::route::v3::{
    RetryPolicy, Route, RouteAction, RouteConfiguration, route,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, Rds, http_connection_manager,
};
use envoy_types::pb::google::protobuf::{Duration, UInt32Value};
use envoy_types::util::pack_any;
use std::collections::HashSet;

/// Name of the route configuration every gRPC API listener asks for.
pub const GRPC_ROUTE: &str = "grpc-outbound";

/// The retry conditions gRPC knows (gRFC A44): status codes.
const GRPC_RETRY_ON: [&str; 5] = [
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// What kind of client a group is of: Envoy, or a proxyless gRPC client (the group key's
/// [`ClientKind`](portolan_model::group::ClientKind)).
pub use portolan_model::group::ClientKind as Client;

/// How a shared resource fits a gRPC client.
enum Fit<T> {
    /// As it is.
    Keep,
    /// Changed.
    Replace(T),
    /// Not at all.
    Drop,
}

/// The API listeners of a gRPC group, one per host name of `routes` (sorted, distinct).
pub(crate) fn listeners(routes: &RouteConfiguration) -> Vec<Listener> {
    let mut names: Vec<&str> = routes
        .virtual_hosts
        .iter()
        .flat_map(|v| v.domains.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let hcm = pack_any(http_connection_manager());
    names
        .into_iter()
        .map(|name| Listener {
            name: name.to_string(),
            api_listener: Some(ApiListener {
                api_listener: Some(hcm.clone()),
            }),
            ..Default::default()
        })
        .collect()
}

/// RDS over ADS for [`GRPC_ROUTE`], and the router filter only.
fn http_connection_manager() -> HttpConnectionManager {
    HttpConnectionManager {
        stat_prefix: GRPC_ROUTE.to_string(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: GRPC_ROUTE.to_string(),
        })),
        http_filters: vec![filters::http_filter(ROUTER, pack_any(Router::default()))],
        ..Default::default()
    }
}

/// The mesh route configuration as [`GRPC_ROUTE`], with only what gRPC uses.
pub(crate) fn route_configuration(mut routes: RouteConfiguration) -> RouteConfiguration {
    routes.name = GRPC_ROUTE.to_string();
    routes.validate_clusters = None;
    for vhost in &mut routes.virtual_hosts {
        vhost.typed_per_filter_config.clear();
        vhost.request_headers_to_add.clear();
        vhost.request_headers_to_remove.clear();
        vhost.response_headers_to_add.clear();
        vhost.response_headers_to_remove.clear();
        vhost.retry_policy = None;
        vhost.routes.iter_mut().for_each(fit_route);
    }
    routes
}

fn fit_route(route: &mut Route) {
    route.typed_per_filter_config.clear();
    route.request_headers_to_add.clear();
    route.request_headers_to_remove.clear();
    route.response_headers_to_add.clear();
    route.response_headers_to_remove.clear();
    if let Some(route::Action::Route(action)) = &mut route.action {
        fit_action(action);
    }
}

fn fit_action(action: &mut RouteAction) {
    if let Some(timeout) = action.timeout.take().filter(|t| *t != Duration::default()) {
        action.max_stream_duration = Some(MaxStreamDuration {
            max_stream_duration: Some(timeout),
            ..Default::default()
        });
    }
    action.retry_policy = action.retry_policy.take().and_then(fit_retry);
    action.request_mirror_policies = Vec::<RequestMirrorPolicy>::new();
    action.prefix_rewrite.clear();
    action.regex_rewrite = None;
    action.host_rewrite_specifier = None;
    action.hash_policy.retain(|h| {
        matches!(
            h.policy_specifier,
            Some(PolicySpecifier::Header(_)) | Some(PolicySpecifier::FilterState(_))
        )
    });
}

/// gRPC status codes only (`unavailable` when none is named), an explicit back-off (Envoy's
/// defaults: 25 ms base, 250 ms max); none at all without a retry.
fn fit_retry(retry: RetryPolicy) -> Option<RetryPolicy> {
    let retries = retry.num_retries.as_ref().map_or(1, |n| n.value);
    if retries == 0 {
        return None;
    }
    let codes: Vec<&str> = retry
        .retry_on
        .split(',')
        .map(str::trim)
        .filter(|c| GRPC_RETRY_ON.contains(c))
        .collect();
    let retry_on = if codes.is_empty() {
        "unavailable".to_string()
    } else {
        codes.join(",")
    };
    Some(RetryPolicy {
        retry_on,
        num_retries: Some(UInt32Value { value: retries }),
        retry_back_off: Some(RetryBackOff {
            base_interval: Some(millis(25)),
            max_interval: Some(millis(250)),
        }),
        ..Default::default()
    })
}

fn millis(ms: i32) -> Duration {
    Duration {
        seconds: 0,
        nanos: ms * 1_000_000,
    }
}

/// A cluster as gRPC uses it (see the module docs).
fn fit_cluster(cluster: &Cluster) -> Fit<Cluster> {
    let eds = Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
    if cluster.cluster_discovery_type != eds {
        return Fit::Drop;
    }
    let lb_ok =
        [LbPolicy::RoundRobin as i32, LbPolicy::RingHash as i32].contains(&cluster.lb_policy);
    if lb_ok
        && cluster.transport_socket.is_none()
        && cluster.health_checks.is_empty()
        && cluster.typed_extension_protocol_options.is_empty()
    {
        return Fit::Keep;
    }
    let mut fitted = cluster.clone();
    fitted.transport_socket = None;
    fitted.health_checks.clear();
    fitted.typed_extension_protocol_options.clear();
    if !lb_ok {
        fitted.lb_policy = LbPolicy::RoundRobin as i32;
        fitted.lb_config = None;
    }
    Fit::Replace(fitted)
}

/// Every locality weighted 1 when it has no weight.
fn fit_load_assignment(cla: &ClusterLoadAssignment) -> Fit<ClusterLoadAssignment> {
    if cla.endpoints.iter().all(|l| {
        l.load_balancing_weight
            .as_ref()
            .is_some_and(|w| w.value > 0)
    }) {
        return Fit::Keep;
    }
    let mut fitted = cla.clone();
    for locality in &mut fitted.endpoints {
        if locality
            .load_balancing_weight
            .as_ref()
            .is_none_or(|w| w.value == 0)
        {
            locality.load_balancing_weight = Some(UInt32Value { value: 1 });
        }
    }
    Fit::Replace(fitted)
}

/// Applies a fit to each element of a list from `first` on, keeping order.
fn fit_list<T>(list: &mut Vec<T>, first: usize, fit: impl Fn(&T) -> Fit<T>) {
    for item in list.split_off(first) {
        match fit(&item) {
            Fit::Keep => list.push(item),
            Fit::Replace(new) => list.push(new),
            Fit::Drop => {}
        }
    }
}

/// Fits a gRPC group's clusters and assignments but the Services' (listeners and routes are
/// made for it).
pub(crate) fn fit(resources: &mut Resources) {
    fit_lists(
        &mut resources.clusters,
        &mut resources.load_assignments,
        (0, 0),
    );
}

/// [`fit`] for the clusters and assignments of one Service, those `out` got since `mark` (how
/// many clusters and assignments it had before). An assignment belongs to a cluster of the
/// same Service, so fitting Service by Service gives the same as fitting all at once.
pub(crate) fn fit_service(out: &mut ServiceClusters, mark: (usize, usize)) {
    fit_lists(&mut out.clusters, &mut out.load_assignments, mark);
}

/// Drops the clusters gRPC cannot use and the assignments of clusters dropped; fits the rest
/// (of each list, what comes from `mark` on).
fn fit_lists(
    clusters: &mut Vec<Cluster>,
    load_assignments: &mut Vec<ClusterLoadAssignment>,
    (first_cluster, first_assignment): (usize, usize),
) {
    fit_list(clusters, first_cluster, fit_cluster);
    let names: HashSet<&str> = clusters[first_cluster..]
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    fit_list(load_assignments, first_assignment, |a| {
        if names.contains(a.cluster_name.as_str()) {
            fit_load_assignment(a)
        } else {
            Fit::Drop
        }
    });
}

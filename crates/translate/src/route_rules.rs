//! A TrafficRoute's HTTP rules as Envoy routes: one Envoy route per match entry (a rule with
//! no match entry matches everything), each with the rule's action, header edits, and fault
//! and CORS settings as per-route filter config.

use crate::actions::{self, RuleSite, fraction, seconds};
use crate::context::{Context, VirtualHostTarget};
use crate::filters;
use crate::matches::{match_all, route_match, string_matcher};
use crate::provenance::{Origins, Part, PartKind};
use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::config::route::v3::{Route, RouteAction, route, route_action};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay, fault_delay::FaultDelaySecifier,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort::ErrorType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use envoy_types::pb::google::protobuf::{Any, BoolValue};
use envoy_types::util::pack_any;
use portolan_model::policy::DestinationPolicy;
use portolan_model::routing::{
    Cors, Fault, HeaderOps, HttpRoute, HttpRule, PathMatch, StringMatch,
};
use std::collections::HashMap;

use crate::cluster::duration;

/// The Envoy routes of a TrafficRoute on one virtual host, in rule order.
pub(crate) fn routes(
    ctx: &Context<'_>,
    route: &HttpRoute,
    vhost: Option<&VirtualHostTarget>,
) -> Vec<Route> {
    let at = RuleSite {
        namespace: &route.source.namespace,
        vhost,
    };
    route
        .http
        .iter()
        .enumerate()
        .flat_map(|(i, rule)| rule_routes(ctx, &at, route, i, rule))
        .collect()
}

fn rule_routes(
    ctx: &Context<'_>,
    at: &RuleSite<'_>,
    route: &HttpRoute,
    index: usize,
    rule: &HttpRule,
) -> Vec<Route> {
    let name = rule_name(route, index, rule);
    let template = Route {
        name,
        typed_per_filter_config: per_filter_config(rule),
        request_headers_to_add: headers_to_add(&rule.request_headers),
        request_headers_to_remove: rule.request_headers.remove.clone(),
        response_headers_to_add: headers_to_add(&rule.response_headers),
        response_headers_to_remove: rule.response_headers.remove.clone(),
        ..Default::default()
    };
    if rule.matches.is_empty() {
        return vec![Route {
            r#match: Some(match_all()),
            action: Some(actions::action(ctx, at, rule, None)),
            ..template
        }];
    }
    rule.matches
        .iter()
        .map(|m| Route {
            r#match: Some(route_match(m)),
            action: Some(actions::action(ctx, at, rule, m.path.as_ref())),
            ..template.clone()
        })
        .collect()
}

/// `{namespace}/{route}/{rule name or index}`, for stats and config dumps.
/// The parts a TrafficRoute's rules make of a route configuration: one per rule, named as its
/// Envoy routes are, quoting the rule's regexes (Envoy quotes a regex it refuses).
pub(crate) fn parts<'a>(
    route: &'a HttpRoute,
    origins: &'a Origins,
) -> impl Iterator<Item = Part> + 'a {
    route.http.iter().enumerate().map(move |(i, rule)| Part {
        kind: PartKind::Route,
        name: rule_name(route, i, rule),
        quotes: regexes(rule).map(str::to_string).collect(),
        origins: origins.clone(),
    })
}

/// Every regex of a rule's matches.
fn regexes(rule: &HttpRule) -> impl Iterator<Item = &str> {
    fn value(v: &StringMatch) -> Option<&str> {
        match v {
            StringMatch::Regex(r) => Some(r.as_str()),
            _ => None,
        }
    }
    rule.matches.iter().flat_map(|m| {
        let path = match &m.path {
            Some(PathMatch::Regex(r)) => Some(r.as_str()),
            _ => None,
        };
        let headers = m.headers.iter().filter_map(|h| value(&h.value));
        let params = m.query_params.iter().filter_map(|q| value(&q.value));
        path.into_iter().chain(headers).chain(params)
    })
}

fn rule_name(route: &HttpRoute, index: usize, rule: &HttpRule) -> String {
    let rule_name = rule.name.clone().unwrap_or_else(|| index.to_string());
    format!(
        "{}/{}/{rule_name}",
        route.source.namespace, route.source.name
    )
}

/// Everything (`/` prefix) to one cluster, with the cluster's hash policy if it has one.
pub(crate) fn default_route(cluster: &str, policy: Option<&DestinationPolicy>) -> Route {
    Route {
        r#match: Some(match_all()),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.to_string())),
            hash_policy: policy.map(actions::hash_policy).unwrap_or_default(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// `set` overwrites (or adds), `add` appends; sorted by header name within each.
pub(crate) fn headers_to_add(ops: &HeaderOps) -> Vec<HeaderValueOption> {
    let option = |(key, value): (&String, &String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    let set = ops
        .set
        .iter()
        .map(|kv| option(kv, HeaderAppendAction::OverwriteIfExistsOrAdd));
    let add = ops
        .add
        .iter()
        .map(|kv| option(kv, HeaderAppendAction::AppendIfExistsOrAdd));
    set.chain(add).collect()
}

fn per_filter_config(rule: &HttpRule) -> HashMap<String, Any> {
    let mut config = HashMap::new();
    if let Some(fault) = &rule.fault {
        config.insert(filters::FAULT.to_string(), pack_any(http_fault(fault)));
    }
    if let Some(cors) = &rule.cors {
        config.insert(filters::CORS.to_string(), pack_any(cors_policy(cors)));
    }
    config
}

fn http_fault(fault: &Fault) -> HttpFault {
    HttpFault {
        delay: fault.delay.as_ref().map(|d| FaultDelay {
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(duration(d.delay))),
            percentage: Some(fraction(d.percent)),
        }),
        abort: fault.abort.as_ref().map(|a| FaultAbort {
            error_type: Some(ErrorType::HttpStatus(u32::from(a.status))),
            percentage: Some(fraction(a.percent)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn cors_policy(cors: &Cors) -> CorsPolicy {
    CorsPolicy {
        allow_origin_string_match: cors.allow_origins.iter().map(origin_matcher).collect(),
        allow_methods: cors.allow_methods.join(","),
        allow_headers: cors.allow_headers.join(","),
        expose_headers: cors.expose_headers.join(","),
        max_age: cors.max_age.map(seconds).unwrap_or_default(),
        allow_credentials: cors.allow_credentials.map(|value| BoolValue { value }),
        ..Default::default()
    }
}

/// An origin condition; "present" means any origin.
fn origin_matcher(origin: &StringMatch) -> StringMatcher {
    string_matcher(origin).unwrap_or_else(|| StringMatcher {
        match_pattern: Some(MatchPattern::SafeRegex(crate::matches::regex(".*"))),
        ..Default::default()
    })
}

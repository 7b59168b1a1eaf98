//! TrafficRoute -> [`HttpRoute`], with the defaults of the CRD spec: gateways `[mesh]`,
//! weight 1 for a single unweighted destination, redirect code 301, fault and mirror
//! percentages 100, retryOn `5xx,connect-failure,reset`.

use super::{count, duration, port};
use crate::routing::*;
use portolan_api::Resource;
use portolan_api::crd::common::{self as api_common};
use portolan_api::crd::traffic_route as api;

/// Retry conditions when `retryOn` is not set.
pub const DEFAULT_RETRY_ON: &[&str] = &["5xx", "connect-failure", "reset"];

pub(super) fn traffic_route(resource: &Resource, route: &api::TrafficRoute) -> HttpRoute {
    let source = resource.object_ref();
    let spec = &route.spec;
    HttpRoute {
        parents: parents(&source.namespace, &spec.gateways),
        source,
        generation: resource.generation(),
        hosts: spec.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        http: spec.http.iter().map(http_rule).collect(),
        tcp: spec.tcp.iter().flat_map(tcp_rules).collect(),
    }
}

/// `mesh`, `name` (same namespace) or `namespace/name`; none means the mesh.
fn parents(namespace: &str, gateways: &[String]) -> Vec<Parent> {
    if gateways.is_empty() {
        return vec![Parent::Mesh];
    }
    gateways
        .iter()
        .map(|g| match g.split_once('/') {
            _ if g == "mesh" => Parent::Mesh,
            Some((ns, name)) => Parent::Gateway {
                namespace: ns.to_string(),
                name: name.to_string(),
            },
            None => Parent::Gateway {
                namespace: namespace.to_string(),
                name: g.clone(),
            },
        })
        .collect()
}

fn http_rule(rule: &api::HttpRule) -> HttpRule {
    let (request_headers, response_headers) = rule
        .headers
        .as_ref()
        .map(|h| {
            (
                header_ops(h.request.as_ref()),
                header_ops(h.response.as_ref()),
            )
        })
        .unwrap_or_default();
    HttpRule {
        name: rule.name.clone(),
        matches: rule.match_.iter().map(http_match).collect(),
        action: action(rule),
        timeout: duration(rule.timeout.as_deref()),
        retry: rule.retries.as_ref().map(retry),
        fault: rule.fault.as_ref().map(fault),
        mirrors: rule
            .mirror
            .iter()
            .map(|m| Mirror {
                destination: destination(m),
                percent: rule.mirror_percentage.unwrap_or(100.0),
            })
            .collect(),
        request_headers,
        response_headers,
        cors: rule.cors_policy.as_ref().map(cors),
    }
}

fn action(rule: &api::HttpRule) -> HttpAction {
    if let Some(r) = &rule.redirect {
        return HttpAction::Redirect(Redirect {
            uri: r.uri.clone(),
            prefix: false,
            authority: r.authority.clone(),
            scheme: r.scheme.map(|s| match s {
                api::Scheme::Http => "http".to_string(),
                api::Scheme::Https => "https".to_string(),
            }),
            port: r.port.map(port),
            code: r.redirect_code.map(|c| c as u16).unwrap_or(301),
        });
    }
    if let Some(d) = &rule.direct_response {
        return HttpAction::DirectResponse {
            status: u16::try_from(d.status).unwrap_or(500),
            body: d.body.clone(),
        };
    }
    HttpAction::Forward {
        backends: backends(rule.route.as_deref().unwrap_or_default()),
        rewrite: rule.rewrite.as_ref().map(|r| Rewrite {
            uri: r.uri.clone(),
            authority: r.authority.clone(),
            full_path: false,
        }),
    }
}

/// Weighted backends; an unweighted destination (only valid alone) weighs 1.
fn backends(route: &[api::RouteDestination]) -> Vec<Backend> {
    route
        .iter()
        .map(|d| Backend {
            destination: destination(&d.destination),
            weight: d.weight.and_then(|w| u32::try_from(w).ok()).unwrap_or(1),
            headers: Default::default(),
        })
        .collect()
}

fn destination(d: &api_common::Destination) -> Destination {
    Destination {
        host: d.host.to_ascii_lowercase(),
        port: d.port.map(port),
        subset: d.subset.clone(),
    }
}

fn http_match(m: &api::HttpMatch) -> HttpMatch {
    HttpMatch {
        path: m.path.as_ref().and_then(path_match),
        headers: m
            .headers
            .iter()
            .map(|h| HeaderMatch {
                name: h.name.to_ascii_lowercase(),
                value: value_match(&h.exact, &h.prefix, &h.regex),
                invert: h.invert.unwrap_or(false),
            })
            .collect(),
        query_params: m
            .query_params
            .iter()
            .map(|q| QueryParamMatch {
                name: q.name.clone(),
                value: value_match(&q.exact, &q.prefix, &q.regex),
            })
            .collect(),
        method: m.method.as_ref().map(|s| s.to_ascii_uppercase()),
    }
}

fn path_match(m: &api_common::StringMatch) -> Option<PathMatch> {
    match string_match(m)? {
        StringMatch::Exact(s) => Some(PathMatch::Exact(s)),
        StringMatch::Prefix(s) => Some(PathMatch::Prefix(s)),
        StringMatch::Regex(s) => Some(PathMatch::Regex(s)),
        StringMatch::Present => None,
    }
}

/// exact | prefix | regex (validated: exactly one is set).
fn string_match(m: &api_common::StringMatch) -> Option<StringMatch> {
    if let Some(s) = &m.exact {
        return Some(StringMatch::Exact(s.clone()));
    }
    if let Some(s) = &m.prefix {
        return Some(StringMatch::Prefix(s.clone()));
    }
    m.regex.clone().map(StringMatch::Regex)
}

/// exact | prefix | regex | present (validated: exactly one is set; absent means present).
fn value_match(
    exact: &Option<String>,
    prefix: &Option<String>,
    regex: &Option<String>,
) -> StringMatch {
    match (exact, prefix, regex) {
        (Some(s), _, _) => StringMatch::Exact(s.clone()),
        (_, Some(s), _) => StringMatch::Prefix(s.clone()),
        (_, _, Some(s)) => StringMatch::Regex(s.clone()),
        _ => StringMatch::Present,
    }
}

fn retry(r: &api::Retries) -> RetryPolicy {
    let retry_on = match &r.retry_on {
        Some(s) => s
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect(),
        None => DEFAULT_RETRY_ON.iter().map(|s| s.to_string()).collect(),
    };
    RetryPolicy {
        attempts: count(Some(r.attempts)).unwrap_or_default(),
        per_try_timeout: duration(r.per_try_timeout.as_deref()),
        retry_on,
    }
}

fn fault(f: &api::Fault) -> Fault {
    Fault {
        delay: f.delay.as_ref().and_then(|d| {
            Some(FaultDelay {
                delay: duration(Some(&d.fixed_delay))?,
                percent: d.percentage.unwrap_or(100.0),
            })
        }),
        abort: f.abort.as_ref().map(|a| FaultAbort {
            status: u16::try_from(a.http_status).unwrap_or(500),
            percent: a.percentage.unwrap_or(100.0),
        }),
    }
}

fn header_ops(ops: Option<&api::HeaderOps>) -> HeaderOps {
    let Some(ops) = ops else {
        return HeaderOps::default();
    };
    let lower = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect()
    };
    HeaderOps {
        set: lower(&ops.set),
        add: lower(&ops.add),
        remove: ops.remove.iter().map(|h| h.to_ascii_lowercase()).collect(),
    }
}

fn cors(c: &api::CorsPolicy) -> Cors {
    Cors {
        allow_origins: c.allow_origins.iter().filter_map(string_match).collect(),
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age: duration(c.max_age.as_deref()),
        allow_credentials: c.allow_credentials,
    }
}

/// One model rule per matched port; a rule without matches applies to every port.
fn tcp_rules(rule: &api::TcpRule) -> Vec<TcpRule> {
    let backends = backends(&rule.route);
    if rule.match_.is_empty() {
        return vec![TcpRule {
            port: None,
            backends,
        }];
    }
    rule.match_
        .iter()
        .map(|m| TcpRule {
            port: m.port.map(port),
            backends: backends.clone(),
        })
        .collect()
}

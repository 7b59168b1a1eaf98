//! Validation of `TrafficRoute`.

use super::*;
use crate::crd::traffic_route::*;

/// Largest weight of one destination.
pub const MAX_WEIGHT: i64 = 1_000_000;

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Envoy `retry_on` conditions (HTTP and gRPC).
const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

const REDIRECT_CODES: &[i32] = &[301, 302, 303, 307, 308];

pub(super) fn traffic_route(route: &TrafficRoute, errors: &mut Errors) {
    object_name(route.metadata.name.as_deref(), errors);
    let spec = &route.spec;
    let path = spec_path();
    let on_gateway = gateways(&spec.gateways, &path.field("gateways"), errors);
    hosts(&spec.hosts, on_gateway, &path.field("hosts"), errors);
    if spec.http.is_empty() && spec.tcp.is_empty() {
        errors.push(path.clone(), "at least one of http, tcp is required");
    }
    for (i, rule) in spec.http.iter().enumerate() {
        http_rule(rule, path.field("http").index(i), errors);
    }
    for (i, rule) in spec.tcp.iter().enumerate() {
        tcp_rule(rule, path.field("tcp").index(i), errors);
    }
}

/// Checks gateway references; returns whether the route attaches to any Gateway.
fn gateways(refs: &[String], path: &FieldPath, errors: &mut Errors) -> bool {
    let mut on_gateway = false;
    for (i, r) in refs.iter().enumerate() {
        if r == "mesh" {
            continue;
        }
        on_gateway = true;
        let ok = match r.split_once('/') {
            Some((ns, name)) => is_dns_label(ns) && is_dns_name(name),
            None => is_dns_name(r),
        };
        if !ok {
            errors.push(
                path.index(i),
                format!("{r:?} is not a gateway reference: \"mesh\", a Gateway name, or \"namespace/name\""),
            );
        }
    }
    unique(refs, |r| r.clone(), path, "", "gateway", errors);
    on_gateway
}

fn hosts(hosts: &[String], on_gateway: bool, path: &FieldPath, errors: &mut Errors) {
    if hosts.is_empty() {
        errors.push(path.clone(), "at least one host is required");
    }
    for (i, h) in hosts.iter().enumerate() {
        if h.starts_with("*.") && !on_gateway {
            errors.push(
                path.index(i),
                format!("{h:?}: wildcard hosts are only allowed on routes attached to a Gateway"),
            );
        } else {
            host_name(h, true, path.index(i), errors);
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, h) in hosts.iter().enumerate() {
        if !seen.insert(h) {
            errors.push(path.index(i), format!("duplicate host {h:?}"));
        }
    }
}

fn http_rule(rule: &HttpRule, path: FieldPath, errors: &mut Errors) {
    exactly_one(
        path.clone(),
        &[
            ("route", rule.route.is_some()),
            ("redirect", rule.redirect.is_some()),
            ("directResponse", rule.direct_response.is_some()),
        ],
        errors,
    );
    for (i, m) in rule.match_.iter().enumerate() {
        http_match(m, path.field("match").index(i), errors);
    }
    if let Some(route) = &rule.route {
        destinations(route, &path.field("route"), errors);
    }
    if let Some(r) = &rule.redirect {
        redirect(r, path.field("redirect"), errors);
    }
    if let Some(d) = &rule.direct_response
        && !(100..=599).contains(&d.status)
    {
        errors.push(
            path.field("directResponse").field("status"),
            format!("{} is not an HTTP status: must be 100-599", d.status),
        );
    }
    if let Some(rw) = &rule.rewrite {
        rewrite(rw, rule.route.is_some(), path.field("rewrite"), errors);
    }
    duration(rule.timeout.as_deref(), path.field("timeout"), errors);
    if let Some(r) = &rule.retries {
        retries(r, path.field("retries"), errors);
    }
    if let Some(f) = &rule.fault {
        fault(f, path.field("fault"), errors);
    }
    mirror(rule, &path, errors);
    if let Some(h) = &rule.headers {
        if let Some(ops) = &h.request {
            header_ops(ops, path.field("headers").field("request"), errors);
        }
        if let Some(ops) = &h.response {
            header_ops(ops, path.field("headers").field("response"), errors);
        }
    }
    if let Some(c) = &rule.cors_policy {
        cors(c, path.field("corsPolicy"), errors);
    }
}

fn http_match(m: &HttpMatch, path: FieldPath, errors: &mut Errors) {
    if let Some(p) = &m.path {
        let p_path = path.field("path");
        string_match(p, p_path.clone(), errors);
        for (field, value) in [("exact", &p.exact), ("prefix", &p.prefix)] {
            if let Some(v) = value
                && !v.starts_with('/')
            {
                errors.push(
                    p_path.field(field),
                    format!("{v:?} is not a path: must start with '/'"),
                );
            }
        }
    }
    for (i, h) in m.headers.iter().enumerate() {
        let p = path.field("headers").index(i);
        header_name(&h.name, p.field("name"), errors);
        value_match([&h.exact, &h.prefix, &h.regex], h.present, &p, errors);
    }
    for (i, q) in m.query_params.iter().enumerate() {
        let p = path.field("queryParams").index(i);
        if q.name.is_empty() {
            errors.push(p.field("name"), "required");
        }
        value_match([&q.exact, &q.prefix, &q.regex], q.present, &p, errors);
    }
    if let Some(method) = &m.method
        && !METHODS.contains(&method.as_str())
    {
        errors.push(
            path.field("method"),
            format!(
                "{method:?} is not an HTTP method: one of {}",
                METHODS.join(", ")
            ),
        );
    }
}

/// exact | prefix | regex | present: true.
fn value_match(
    [exact, prefix, regex_value]: [&Option<String>; 3],
    present: Option<bool>,
    path: &FieldPath,
    errors: &mut Errors,
) {
    exactly_one(
        path.clone(),
        &[
            ("exact", exact.is_some()),
            ("prefix", prefix.is_some()),
            ("regex", regex_value.is_some()),
            ("present", present.is_some()),
        ],
        errors,
    );
    if let Some(r) = regex_value {
        regex(r, path.field("regex"), errors);
    }
    if present == Some(false) {
        errors.push(
            path.field("present"),
            "false is not allowed: write present: true, and invert: true for absence",
        );
    }
}

/// Weighted destinations (`route` of HTTP and TCP rules).
fn destinations(route: &[RouteDestination], path: &FieldPath, errors: &mut Errors) {
    if route.is_empty() {
        errors.push(path.clone(), "at least one destination is required");
        return;
    }
    for (i, d) in route.iter().enumerate() {
        let p = path.index(i);
        destination(&d.destination, p.field("destination"), errors);
        match d.weight {
            Some(w) if !(0..=MAX_WEIGHT).contains(&w) => errors.push(
                p.field("weight"),
                format!("{w} is not a weight: must be 0-{MAX_WEIGHT}"),
            ),
            None if route.len() > 1 => errors.push(
                p.field("weight"),
                "required when there is more than one destination",
            ),
            _ => {}
        }
    }
    if route.iter().all(|d| d.weight == Some(0)) {
        errors.push(
            path.clone(),
            "all weights are 0: at least one destination needs a positive weight",
        );
    }
}

fn redirect(r: &Redirect, path: FieldPath, errors: &mut Errors) {
    if r.uri.is_none() && r.authority.is_none() && r.scheme.is_none() && r.port.is_none() {
        errors.push(
            path.clone(),
            "at least one of uri, authority, scheme, port is required",
        );
    }
    if let Some(u) = &r.uri
        && !u.starts_with('/')
    {
        errors.push(
            path.field("uri"),
            format!("{u:?} is not a path: must start with '/'"),
        );
    }
    opt_port(r.port, path.field("port"), errors);
    if let Some(c) = r.redirect_code
        && !REDIRECT_CODES.contains(&c)
    {
        errors.push(
            path.field("redirectCode"),
            format!("{c} is not a redirect code: one of 301, 302, 303, 307, 308"),
        );
    }
}

fn rewrite(rw: &Rewrite, with_route: bool, path: FieldPath, errors: &mut Errors) {
    if !with_route {
        errors.push(path.clone(), "only allowed with route");
    }
    if rw.uri.is_none() && rw.authority.is_none() {
        errors.push(path.clone(), "at least one of uri, authority is required");
    }
    if let Some(u) = &rw.uri
        && !u.starts_with('/')
    {
        errors.push(
            path.field("uri"),
            format!("{u:?} is not a path: must start with '/'"),
        );
    }
    if rw.authority.as_deref() == Some("") {
        errors.push(path.field("authority"), "must not be empty");
    }
}

fn retries(r: &Retries, path: FieldPath, errors: &mut Errors) {
    count(Some(r.attempts), 0, path.field("attempts"), errors);
    duration(
        r.per_try_timeout.as_deref(),
        path.field("perTryTimeout"),
        errors,
    );
    if let Some(on) = &r.retry_on {
        for cond in on.split(',').map(str::trim) {
            if !RETRY_ON.contains(&cond) {
                errors.push(
                    path.field("retryOn"),
                    format!(
                        "{cond:?} is not a retry condition: one of {}",
                        RETRY_ON.join(", ")
                    ),
                );
            }
        }
    }
}

fn fault(f: &Fault, path: FieldPath, errors: &mut Errors) {
    if f.delay.is_none() && f.abort.is_none() {
        errors.push(path.clone(), "at least one of delay, abort is required");
    }
    if let Some(d) = &f.delay {
        let p = path.field("delay");
        duration(Some(&d.fixed_delay), p.field("fixedDelay"), errors);
        percentage(d.percentage, p.field("percentage"), errors);
    }
    if let Some(a) = &f.abort {
        let p = path.field("abort");
        if !(200..=599).contains(&a.http_status) {
            errors.push(
                p.field("httpStatus"),
                format!("{} is not an error status: must be 200-599", a.http_status),
            );
        }
        percentage(a.percentage, p.field("percentage"), errors);
    }
}

fn mirror(rule: &HttpRule, path: &FieldPath, errors: &mut Errors) {
    if let Some(m) = &rule.mirror {
        destination(m, path.field("mirror"), errors);
    } else if rule.mirror_percentage.is_some() {
        errors.push(path.field("mirrorPercentage"), "only allowed with mirror");
    }
    percentage(
        rule.mirror_percentage,
        path.field("mirrorPercentage"),
        errors,
    );
}

fn header_ops(ops: &HeaderOps, path: FieldPath, errors: &mut Errors) {
    for (field, map) in [("set", &ops.set), ("add", &ops.add)] {
        for name in map.keys() {
            header_name(name, path.field(field).key(name), errors);
        }
    }
    for (i, name) in ops.remove.iter().enumerate() {
        header_name(name, path.field("remove").index(i), errors);
    }
}

fn cors(c: &CorsPolicy, path: FieldPath, errors: &mut Errors) {
    for (i, o) in c.allow_origins.iter().enumerate() {
        string_match(o, path.field("allowOrigins").index(i), errors);
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if !METHODS.contains(&m.as_str()) {
            errors.push(
                path.field("allowMethods").index(i),
                format!("{m:?} is not an HTTP method: one of {}", METHODS.join(", ")),
            );
        }
    }
    for (field, list) in [
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        for (i, h) in list.iter().enumerate() {
            header_name(h, path.field(field).index(i), errors);
        }
    }
    duration(c.max_age.as_deref(), path.field("maxAge"), errors);
}

fn tcp_rule(rule: &TcpRule, path: FieldPath, errors: &mut Errors) {
    for (i, m) in rule.match_.iter().enumerate() {
        opt_port(m.port, path.field("match").index(i).field("port"), errors);
    }
    destinations(&rule.route, &path.field("route"), errors);
}

#[cfg(test)]
mod tests {
    use super::super::test_support::table;
    use serde_json::{Value, json};

    fn check(cases: &[(Value, &[&str])]) {
        table("portolan.dev/v1alpha1", "TrafficRoute", cases);
    }

    #[test]
    fn valid_routes() {
        check(&[
            (
                json!({"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}),
                &[],
            ),
            (
                json!({"hosts": ["reviews.shop.svc.cluster.local"], "gateways": ["mesh", "ingress", "infra/edge"],
                       "http": [{
                           "name": "jason",
                           "match": [{"path": {"prefix": "/api"}, "headers": [{"name": "end-user", "exact": "jason"}],
                                      "queryParams": [{"name": "debug", "present": true}], "method": "GET"}],
                           "route": [{"destination": {"host": "reviews", "port": 9080, "subset": "v2"}, "weight": 90},
                                     {"destination": {"host": "reviews", "subset": "v1"}, "weight": 10}],
                           "rewrite": {"uri": "/v2/"}, "timeout": "1m30s",
                           "retries": {"attempts": 3, "perTryTimeout": "500ms", "retryOn": "5xx,reset"},
                           "fault": {"delay": {"fixedDelay": "1.5s", "percentage": 50}, "abort": {"httpStatus": 503}},
                           "mirror": {"host": "reviews", "subset": "v3"}, "mirrorPercentage": 12.5,
                           "headers": {"request": {"set": {"x-a": "1"}, "remove": ["x-c"]}},
                           "corsPolicy": {"allowOrigins": [{"exact": "https://a.example.com"}], "allowMethods": ["GET"], "maxAge": "24h"}
                       }],
                       "tcp": [{"match": [{"port": 9000}], "route": [{"destination": {"host": "db", "port": 5432}}]}]}),
                &[],
            ),
            (
                json!({"hosts": ["*.example.com"], "gateways": ["edge"],
                       "http": [{"redirect": {"scheme": "https", "redirectCode": 308}}]}),
                &[],
            ),
        ]);
    }

    #[test]
    fn actions_and_weights() {
        check(&[
            (
                json!({"hosts": ["r"], "http": [
                    {"route": [{"destination": {"host": "r"}}], "redirect": {"uri": "/x"}},
                    {"route": [{"destination": {"host": "r"}, "weight": -5}, {"destination": {"host": "s"}}]},
                    {}
                ]}),
                &[
                    "spec.http[0]: exactly one of route, redirect, directResponse is required, found route and redirect",
                    "spec.http[1].route[0].weight: -5 is not a weight: must be 0-1000000",
                    "spec.http[1].route[1].weight: required when there is more than one destination",
                    "spec.http[2]: exactly one of route, redirect, directResponse is required, found none",
                ],
            ),
            (
                json!({"hosts": ["r"], "http": [{"route": [
                    {"destination": {"host": "r"}, "weight": 0}, {"destination": {"host": "s"}, "weight": 0}]}]}),
                &[
                    "spec.http[0].route: all weights are 0: at least one destination needs a positive weight",
                ],
            ),
            (
                json!({"hosts": ["r"], "http": [{"directResponse": {"status": 99}, "rewrite": {"uri": "/a"}},
                                                {"redirect": {"redirectCode": 305}}]}),
                &[
                    "spec.http[0].directResponse.status: 99 is not an HTTP status: must be 100-599",
                    "spec.http[0].rewrite: only allowed with route",
                    "spec.http[1].redirect: at least one of uri, authority, scheme, port is required",
                    "spec.http[1].redirect.redirectCode: 305 is not a redirect code: one of 301, 302, 303, 307, 308",
                ],
            ),
        ]);
    }

    #[test]
    fn matches() {
        check(&[(
            json!({"hosts": ["r"], "http": [{"match": [
                {"path": {"exact": "/a", "prefix": "/b"}},
                {"path": {"regex": "/(a"}},
                {"path": {"prefix": "api"}, "method": "FETCH"},
                {"headers": [{"name": "bad header", "present": false}], "queryParams": [{"name": "q"}]}
            ], "route": [{"destination": {"host": "r"}}]}]}),
            &[
                "spec.http[0].match[0].path: exactly one of exact, prefix, regex is required, found exact and prefix",
                "spec.http[0].match[1].path.regex: \"/(a\" is not a valid regular expression (RE2 syntax): unclosed group",
                "spec.http[0].match[2].path.prefix: \"api\" is not a path: must start with '/'",
                "spec.http[0].match[2].method: \"FETCH\" is not an HTTP method: one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH",
                "spec.http[0].match[3].headers[0].name: \"bad header\" is not a header name: letters, digits and !#$%&'*+-.^_`|~",
                "spec.http[0].match[3].headers[0].present: false is not allowed: write present: true, and invert: true for absence",
                "spec.http[0].match[3].queryParams[0]: exactly one of exact, prefix, regex, present is required, found none",
            ],
        )]);
    }

    #[test]
    fn durations_percentages_and_hosts() {
        check(&[
            (
                json!({"hosts": ["r"], "http": [{
                    "route": [{"destination": {"host": "r", "port": 70000}}],
                    "timeout": "2 seconds",
                    "retries": {"attempts": -1, "retryOn": "5xx,sometimes"},
                    "fault": {"delay": {"fixedDelay": "1d", "percentage": 101}},
                    "mirrorPercentage": 50
                }]}),
                &[
                    "spec.http[0].route[0].destination.port: 70000 is not a port: must be 1-65535",
                    "spec.http[0].timeout: \"2 seconds\" is not a duration: write a number and a unit of ms, s, m or h, like 500ms, 1.5s or 1m30s",
                    "spec.http[0].retries.attempts: -1 is out of range: must be 0-4294967295",
                    "spec.http[0].retries.retryOn: \"sometimes\" is not a retry condition: one of 5xx, gateway-error, reset, reset-before-request, connect-failure, envoy-ratelimited, retriable-4xx, refused-stream, retriable-status-codes, retriable-headers, http3-post-connect-failure, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable",
                    "spec.http[0].fault.delay.fixedDelay: \"1d\" is not a duration: write a number and a unit of ms, s, m or h, like 500ms, 1.5s or 1m30s",
                    "spec.http[0].fault.delay.percentage: 101 is not a percentage: must be 0-100",
                    "spec.http[0].mirrorPercentage: only allowed with mirror",
                ],
            ),
            (
                json!({"hosts": ["*.example.com", "Reviews", "r", "r"], "gateways": ["a/b/c"], "tcp": []}),
                &[
                    "spec.gateways[0]: \"a/b/c\" is not a gateway reference: \"mesh\", a Gateway name, or \"namespace/name\"",
                    "spec.hosts[1]: \"Reviews\" is not a host name: must be a lower-case DNS name, optionally starting with \"*.\"",
                    "spec.hosts[3]: duplicate host \"r\"",
                    "spec: at least one of http, tcp is required",
                ],
            ),
            (
                json!({"hosts": ["*.example.com"], "http": [{"directResponse": {"status": 200}}]}),
                &[
                    "spec.hosts[0]: \"*.example.com\": wildcard hosts are only allowed on routes attached to a Gateway",
                ],
            ),
        ]);
    }
}

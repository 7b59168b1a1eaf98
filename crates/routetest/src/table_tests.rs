//! The evaluator against small hand-written route tables: virtual host selection, route order,
//! path/regex/header/query matching, weights, redirects, direct responses and header changes.

use super::*;
use serde_json::json;

fn req(host: &str, path: &str) -> HttpRequest {
    HttpRequest {
        host: host.into(),
        method: "GET".into(),
        path: path.into(),
        ..HttpRequest::default()
    }
}

fn with_header(mut r: HttpRequest, k: &str, v: &str) -> HttpRequest {
    r.headers.insert(k.into(), v.into());
    r
}

fn to(cluster: &str) -> Value {
    json!({"cluster": cluster})
}

/// One listener on 15001 with the given virtual hosts.
fn tables(vhosts: Value) -> Rendered {
    Rendered::from_json(&json!({
        "listeners": [{
            "name": "mesh-outbound",
            "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {"rds": {"route_config_name": "rc"}}
            }]}]
        }],
        "routes": [{"name": "rc", "virtual_hosts": vhosts}],
        "clusters": [{"name": "a", "type": "EDS"}],
        "endpoints": [{"cluster_name": "a", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}},
             "health_status": "HEALTHY"}]}]}]
    }))
}

fn action_for(t: &Rendered, r: &HttpRequest) -> Option<(usize, Action)> {
    let eval = t.evaluate(r, 15001).expect("evaluates");
    eval.route.map(|m| (m.index, m.action))
}

fn forward(c: &str) -> Action {
    Action::Forward(vec![(c.into(), 100)])
}

#[test]
fn virtual_hosts_exact_then_longest_suffix_then_prefix_then_any() {
    let t = tables(json!([
        {"name": "any", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": to("any")}]},
        {"name": "prefix", "domains": ["api.*"], "routes": [{"match": {"prefix": "/"}, "route": to("prefix")}]},
        {"name": "suffix", "domains": ["*.example.com"], "routes": [{"match": {"prefix": "/"}, "route": to("suffix")}]},
        {"name": "longer", "domains": ["*.eu.example.com"], "routes": [{"match": {"prefix": "/"}, "route": to("longer")}]},
        {"name": "exact", "domains": ["api.example.com"], "routes": [{"match": {"prefix": "/"}, "route": to("exact")}]},
    ]));
    let vh = |host: &str| {
        t.evaluate(&req(host, "/"), 15001)
            .expect("evaluates")
            .virtual_host
            .map(|v| v.0)
    };
    assert_eq!(vh("API.example.com").as_deref(), Some("exact"));
    assert_eq!(vh("www.eu.example.com").as_deref(), Some("longer"));
    assert_eq!(vh("www.example.com").as_deref(), Some("suffix"));
    assert_eq!(vh("api.internal").as_deref(), Some("prefix"));
    assert_eq!(vh("other").as_deref(), Some("any"));
    // A bare `*.example.com` does not match `example.com` itself.
    assert_eq!(vh("example.com").as_deref(), Some("any"));
}

#[test]
fn no_virtual_host_or_route_is_404() {
    let t = tables(json!([
        {"name": "r", "domains": ["r"], "routes": [{"match": {"path": "/only"}, "route": to("a")}]}
    ]));
    let out = crate::verdict::predicted(&t, &req("other", "/"), 15001);
    assert_eq!(out.status, Some(404));
    let out = crate::verdict::predicted(&t, &req("r", "/else"), 15001);
    assert_eq!(out.status, Some(404));
}

#[test]
fn the_first_matching_route_wins_in_order() {
    let t = tables(json!([{"name": "r", "domains": ["r"], "routes": [
        {"match": {"prefix": "/api/v1/"}, "route": to("v1")},
        {"match": {"prefix": "/api/"}, "route": to("api")},
        {"match": {"prefix": "/api/v1/late"}, "route": to("never")},
        {"match": {"prefix": "/"}, "route": to("rest")},
    ]}]));
    assert_eq!(
        action_for(&t, &req("r", "/api/v1/late")),
        Some((0, forward("v1")))
    );
    assert_eq!(
        action_for(&t, &req("r", "/api/v2")),
        Some((1, forward("api")))
    );
    assert_eq!(
        action_for(&t, &req("r", "/apix")),
        Some((3, forward("rest")))
    );
}

#[test]
fn exact_paths_ignore_the_query_and_regexes_match_whole_paths() {
    let t = tables(json!([{"name": "r", "domains": ["r"], "routes": [
        {"match": {"path": "/exact"}, "route": to("exact")},
        {"match": {"safe_regex": {"regex": "/users/[0-9]+"}}, "route": to("user")},
        {"match": {"prefix": "/"}, "route": to("rest")},
    ]}]));
    assert_eq!(
        action_for(&t, &req("r", "/exact?x=1")),
        Some((0, forward("exact")))
    );
    assert_eq!(
        action_for(&t, &req("r", "/exact/more")),
        Some((2, forward("rest")))
    );
    assert_eq!(
        action_for(&t, &req("r", "/users/42")),
        Some((1, forward("user")))
    );
    // Not anchored by the writer, anchored by Envoy: a longer path does not match.
    assert_eq!(
        action_for(&t, &req("r", "/users/42/x")),
        Some((2, forward("rest")))
    );
    assert_eq!(
        action_for(&t, &req("r", "/users/abc")),
        Some((2, forward("rest")))
    );
}

#[test]
fn header_matchers_exact_regex_present_inverted_and_method() {
    let t = tables(json!([{"name": "r", "domains": ["r"], "routes": [
        {"match": {"prefix": "/", "headers": [{"name": "x-user", "string_match": {"exact": "jason"}}]}, "route": to("jason")},
        {"match": {"prefix": "/", "headers": [{"name": "x-user", "string_match": {"safe_regex": {"regex": "a.*"}}}]}, "route": to("a-users")},
        {"match": {"prefix": "/", "headers": [{"name": "x-canary", "present_match": true}]}, "route": to("canary")},
        {"match": {"prefix": "/", "headers": [{"name": ":method", "string_match": {"exact": "POST"}}]}, "route": to("posts")},
        {"match": {"prefix": "/", "headers": [{"name": "x-env", "string_match": {"exact": "prod"}, "invert_match": true}]}, "route": to("not-prod")},
        {"match": {"prefix": "/"}, "route": to("rest")},
    ]}]));
    let r = || req("r", "/");
    assert_eq!(
        action_for(&t, &with_header(r(), "x-user", "jason")),
        Some((0, forward("jason")))
    );
    assert_eq!(
        action_for(&t, &with_header(r(), "x-user", "anna")),
        Some((1, forward("a-users")))
    );
    assert_eq!(
        action_for(&t, &with_header(r(), "x-user", "bob-anna")).map(|a| a.0),
        Some(4)
    );
    assert_eq!(
        action_for(&t, &with_header(r(), "x-canary", "")),
        Some((2, forward("canary")))
    );
    let mut post = with_header(r(), "x-env", "prod");
    post.method = "POST".into();
    assert_eq!(action_for(&t, &post), Some((3, forward("posts"))));
    // No x-env header at all: the inverted matcher holds.
    assert_eq!(action_for(&t, &r()), Some((4, forward("not-prod"))));
    assert_eq!(
        action_for(&t, &with_header(r(), "x-env", "prod")),
        Some((5, forward("rest")))
    );
}

#[test]
fn query_parameters() {
    let t = tables(json!([{"name": "r", "domains": ["r"], "routes": [
        {"match": {"prefix": "/", "query_parameters": [{"name": "beta", "string_match": {"exact": "1"}}]}, "route": to("beta")},
        {"match": {"prefix": "/", "query_parameters": [{"name": "debug", "present_match": true}]}, "route": to("debug")},
        {"match": {"prefix": "/"}, "route": to("rest")},
    ]}]));
    assert_eq!(
        action_for(&t, &req("r", "/?beta=1")),
        Some((0, forward("beta")))
    );
    assert_eq!(
        action_for(&t, &req("r", "/?beta=2&debug")),
        Some((1, forward("debug")))
    );
    assert_eq!(action_for(&t, &req("r", "/")), Some((2, forward("rest"))));
}

#[test]
fn weighted_clusters_are_reported_as_the_set() {
    let t = tables(json!([{"name": "r", "domains": ["r"], "routes": [
        {"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [
            {"name": "v1", "weight": 75}, {"name": "v2", "weight": 25}]}}}
    ]}]));
    assert_eq!(
        action_for(&t, &req("r", "/")),
        Some((
            0,
            Action::Forward(vec![("v1".into(), 75), ("v2".into(), 25)])
        ))
    );
}

#[test]
fn redirects_direct_responses_and_aborts() {
    let t = tables(json!([{"name": "r", "domains": ["r", "r:8080"], "routes": [
        {"match": {"path": "/old"}, "redirect": {"path_redirect": "/new"}},
        {"match": {"prefix": "/s/"}, "redirect": {"https_redirect": true, "prefix_rewrite": "/secure/", "response_code": "PERMANENT_REDIRECT"}},
        {"match": {"path": "/ping"}, "direct_response": {"status": 204, "body": {"inline_string": "ok"}}},
        {"match": {"prefix": "/fail"}, "route": to("a"), "typed_per_filter_config": {"envoy.filters.http.fault": {
            "abort": {"http_status": 503, "percentage": {"numerator": 100}}}}},
        {"match": {"prefix": "/flaky"}, "route": to("a"), "typed_per_filter_config": {"envoy.filters.http.fault": {
            "abort": {"http_status": 503, "percentage": {"numerator": 50}}}}},
    ]}]));
    let redirect = |status, location: &str| Action::Redirect {
        status,
        location: location.into(),
    };
    assert_eq!(
        action_for(&t, &req("r:8080", "/old?q=1")).map(|a| a.1),
        Some(redirect(301, "http://r:8080/new?q=1"))
    );
    assert_eq!(
        action_for(&t, &req("r", "/s/x")).map(|a| a.1),
        Some(redirect(308, "https://r/secure/x"))
    );
    assert_eq!(
        action_for(&t, &req("r", "/ping")).map(|a| a.1),
        Some(Action::Direct {
            status: 204,
            body: "ok".into()
        })
    );
    assert_eq!(
        action_for(&t, &req("r", "/fail")).map(|a| a.1),
        Some(Action::Abort(503))
    );
    // A fault that fires for some requests only is not modelled: the route forwards.
    assert_eq!(
        action_for(&t, &req("r", "/flaky")).map(|a| a.1),
        Some(forward("a"))
    );
}

#[test]
fn policies_and_header_changes_route_then_virtual_host() {
    let t = tables(json!([{"name": "r", "domains": ["r"],
        "retry_policy": {"retry_on": "5xx"},
        "request_headers_to_add": [{"header": {"key": "x-vh", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
        "routes": [
        {"match": {"prefix": "/api/"}, "route": {"cluster": "a", "timeout": "2.500s", "prefix_rewrite": "/v2/"},
         "request_headers_to_add": [
            {"header": {"key": "x-set", "value": "new"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
            {"header": {"key": "x-add", "value": "b"}},
            {"header": {"key": "x-absent", "value": "kept"}, "append_action": "ADD_IF_ABSENT"}],
         "request_headers_to_remove": ["x-drop"]},
        {"match": {"prefix": "/"}, "route": {"cluster": "a", "timeout": "0s"}},
    ]}]));
    let mut r = req("r", "/api/items");
    for (k, v) in [
        ("x-set", "old"),
        ("x-add", "a"),
        ("x-absent", "mine"),
        ("x-drop", "1"),
    ] {
        r.headers.insert(k.into(), v.into());
    }
    let out = crate::verdict::predicted(&t, &r, 15001);
    let headers = out.request_headers.expect("forwarded");
    assert_eq!(headers["x-set"], "new");
    assert_eq!(headers["x-add"], "a,b");
    assert_eq!(headers["x-absent"], "mine");
    assert_eq!(headers["x-vh"], "1");
    assert!(!headers.contains_key("x-drop"));
    assert_eq!(out.upstream_path.as_deref(), Some("/v2/items"));
    assert_eq!(out.timeout_ms, Some(2500));
    // The virtual host's retry policy applies; num_retries defaults to 1.
    assert_eq!(out.retries, Some((1, None, Some("5xx".into()))));
    let out = crate::verdict::predicted(&t, &req("r", "/"), 15001);
    assert_eq!(out.timeout_ms, Some(0), "0s turns the timeout off");
}

#[test]
fn listeners_by_port_and_default() {
    let t = tables(json!([]));
    assert!(t.listener_for(Some(15001), 15001).is_ok());
    let err = t.listener_for(Some(8080), 15001).expect_err("no listener");
    assert!(
        err.to_string().contains("mesh-outbound (port 15001)"),
        "{err}"
    );
    // Not the mesh port, but the only HTTP listener.
    assert!(t.listener_for(None, 9999).is_ok());
    assert_eq!(
        t.endpoints_of("a"),
        Some(vec![(
            "10.0.0.1:80".into(),
            "HEALTHY".into(),
            String::new()
        )])
    );
}

#[test]
fn filters_the_evaluator_does_not_model_are_named_per_listener() {
    let hcm = |filters: Value| {
        json!({"name": "envoy.filters.network.http_connection_manager",
               "typed_config": {"rds": {"route_config_name": "rc"}, "http_filters": filters}})
    };
    let rendered = Rendered::from_json(&json!({"listeners": [
        {"name": "gateway-8080", "filter_chains": [{"filters": [hcm(json!([
            {"name": "envoy.filters.http.jwt_authn"},
            {"name": "envoy.filters.http.fault"},
            {"name": "envoy.filters.http.router"}]))]}]},
        {"name": "mesh-outbound", "filter_chains": [{"filters": [hcm(json!([
            {"name": "envoy.filters.http.cors"},
            {"name": "envoy.filters.http.router"}]))]}]}
    ]}));
    assert_eq!(
        rendered.unmodelled_filters(),
        vec!["gateway-8080: envoy.filters.http.jwt_authn".to_string()]
    );
}

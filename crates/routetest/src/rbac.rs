//! Envoy's RBAC HTTP filter (AccessPolicy) evaluated on a request: the filters of a listener's
//! HTTP connection manager in order, each ALLOW (deny unless a policy matches) or DENY (deny
//! when one does); a policy matches when one of its permissions and one of its principals do.
//! The caller's identity is the SPIFFE ID of its (assumed, verified) client certificate.
//!
//! [`principal_header`] rewrites `authenticated` principals into header matchers, so that the
//! test Envoy, which speaks plain HTTP, evaluates the same policies on an identity the test
//! client sends in a header.

use crate::table::{self, HttpRequest, str_at};
use serde_json::{Value, json};

/// The header that carries the caller's identity to the test Envoy.
pub const PEER_HEADER: &str = "x-portolan-test-peer";

/// The type of Envoy's RBAC HTTP filter's configuration.
const RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// Whether the listener's RBAC filters deny the request from `peer` arriving on `port`. Each
/// filter's rules are its per-filter configuration in the route configuration's first virtual
/// host when that has one (an entry without `rbac` disables the filter), else its own.
pub fn denied(
    listener: &Value,
    route_config: &Value,
    req: &HttpRequest,
    peer: Option<&str>,
    port: u16,
) -> bool {
    let Some(hcm) = table::hcm(listener) else {
        return false;
    };
    let per_filter = &route_config["virtual_hosts"][0]["typed_per_filter_config"];
    hcm["http_filters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| str_at(f, "/typed_config/@type") == RBAC_TYPE)
        .any(|f| {
            let config = match per_filter.get(str_at(f, "/name")) {
                Some(per_route) => &per_route["rbac"],
                None => &f["typed_config"],
            };
            filter_denies(config, req, peer, port)
        })
}

fn filter_denies(config: &Value, req: &HttpRequest, peer: Option<&str>, port: u16) -> bool {
    let Some(rules) = config.get("rules") else {
        return false;
    };
    let matched = rules["policies"]
        .as_object()
        .into_iter()
        .flatten()
        .any(|(_, p)| policy_matches(p, req, peer, port));
    match rules["action"].as_str().unwrap_or("ALLOW") {
        "DENY" => matched,
        "ALLOW" => !matched,
        // LOG and unknown actions do not decide.
        _ => false,
    }
}

fn policy_matches(p: &Value, req: &HttpRequest, peer: Option<&str>, port: u16) -> bool {
    let any_of =
        |list: &Value, f: &dyn Fn(&Value) -> bool| list.as_array().into_iter().flatten().any(f);
    any_of(&p["permissions"], &|x| permission(x, req, port))
        && any_of(&p["principals"], &|x| principal(x, req, peer))
}

fn all(list: &Value, f: &dyn Fn(&Value) -> bool) -> bool {
    list.as_array().into_iter().flatten().all(f)
}

fn some(list: &Value, f: &dyn Fn(&Value) -> bool) -> bool {
    list.as_array().into_iter().flatten().any(f)
}

fn permission(x: &Value, req: &HttpRequest, port: u16) -> bool {
    if x["any"].as_bool() == Some(true) {
        return true;
    }
    if let Some(set) = x.get("and_rules") {
        return all(&set["rules"], &|r| permission(r, req, port));
    }
    if let Some(set) = x.get("or_rules") {
        return some(&set["rules"], &|r| permission(r, req, port));
    }
    if let Some(inner) = x.get("not_rule") {
        return !permission(inner, req, port);
    }
    if let Some(h) = x.get("header") {
        return table::header_matches(h, req);
    }
    if let Some(p) = x.get("url_path") {
        return path_matches(p, req);
    }
    if let Some(p) = x["destination_port"].as_u64() {
        return p == u64::from(port);
    }
    false
}

fn principal(x: &Value, req: &HttpRequest, peer: Option<&str>) -> bool {
    if x["any"].as_bool() == Some(true) {
        return true;
    }
    if let Some(set) = x.get("and_ids") {
        return all(&set["ids"], &|i| principal(i, req, peer));
    }
    if let Some(set) = x.get("or_ids") {
        return some(&set["ids"], &|i| principal(i, req, peer));
    }
    if let Some(inner) = x.get("not_id") {
        return !principal(inner, req, peer);
    }
    if let Some(a) = x.get("authenticated") {
        return match (peer, a.get("principal_name")) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(id), Some(sm)) => table::string_matches(sm, id),
        };
    }
    if let Some(h) = x.get("header") {
        return table::header_matches(h, req);
    }
    if let Some(p) = x.get("url_path") {
        return path_matches(p, req);
    }
    false
}

/// A `PathMatcher` on the path without the query.
fn path_matches(p: &Value, req: &HttpRequest) -> bool {
    let path = req.path.split('?').next().unwrap_or("/");
    p.get("path")
        .is_some_and(|sm| table::string_matches(sm, path))
}

/// Rewrites every `authenticated` principal (any depth) into a matcher of [`PEER_HEADER`].
pub fn principal_header(value: &mut Value) {
    match value {
        Value::Object(m) => {
            if let Some(a) = m.remove("authenticated") {
                let header = match a.get("principal_name") {
                    Some(sm) => json!({"name": PEER_HEADER, "string_match": sm}),
                    None => json!({"name": PEER_HEADER, "present_match": true}),
                };
                m.insert("header".into(), header);
            }
            m.values_mut().for_each(principal_header);
        }
        Value::Array(items) => items.iter_mut().for_each(principal_header),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(filters: Value) -> Value {
        json!({"name": "inbound", "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {"http_filters": filters}}]}]})
    }

    fn req(method: &str, path: &str) -> HttpRequest {
        HttpRequest {
            host: "server".into(),
            method: method.into(),
            path: path.into(),
            ..HttpRequest::default()
        }
    }

    #[test]
    fn deny_wins_then_allow_needs_a_match() {
        let l = listener(json!([
            {"name": "deny", "typed_config": {"@type": RBAC_TYPE, "rules": {"action": "DENY", "policies": {"deny": {
                "permissions": [{"any": true}],
                "principals": [{"and_ids": {"ids": [
                    {"authenticated": {"principal_name": {"prefix": "spiffe://cluster.local/ns/batch/sa/"}}},
                    {"url_path": {"path": {"prefix": "/admin"}}}]}}]}}}}},
            {"name": "allow", "typed_config": {"@type": RBAC_TYPE, "rules": {"policies": {"allow": {
                "permissions": [{"any": true}],
                "principals": [
                    {"and_ids": {"ids": [
                        {"authenticated": {"principal_name": {"exact": "spiffe://cluster.local/ns/shop/sa/client"}}},
                        {"header": {"name": ":method", "string_match": {"exact": "GET"}}}]}},
                    {"url_path": {"path": {"exact": "/healthz"}}}]}}}}},
        ]));
        let client = Some("spiffe://cluster.local/ns/shop/sa/client");
        let batch = Some("spiffe://cluster.local/ns/batch/sa/job");
        assert!(!denied(
            &l,
            &json!({}),
            &req("GET", "/api?x=1"),
            client,
            15006
        ));
        assert!(denied(&l, &json!({}), &req("POST", "/api"), client, 15006));
        assert!(denied(&l, &json!({}), &req("GET", "/api"), batch, 15006));
        assert!(!denied(
            &l,
            &json!({}),
            &req("GET", "/healthz"),
            None,
            15006
        ));
        assert!(denied(
            &l,
            &json!({}),
            &req("GET", "/admin/x"),
            batch,
            15006
        ));
        assert!(denied(&l, &json!({}), &req("GET", "/api"), None, 15006));
    }

    #[test]
    fn an_allow_filter_without_policies_denies_everything() {
        let l = listener(json!([{"name": "a", "typed_config": {"@type": RBAC_TYPE, "rules": {}}}]));
        assert!(denied(
            &l,
            &json!({}),
            &req("GET", "/"),
            Some("spiffe://x/ns/a/sa/b"),
            1
        ));
        let none = listener(json!([]));
        assert!(!denied(&none, &json!({}), &req("GET", "/"), None, 1));
    }

    /// Portolan's inbound listener: two filters without rules, the rules per virtual host.
    #[test]
    fn the_route_configurations_rules_override_the_filters() {
        let l = listener(json!([
            {"name": "envoy.filters.http.rbac.deny", "typed_config": {"@type": RBAC_TYPE}},
            {"name": "envoy.filters.http.rbac.allow", "typed_config": {"@type": RBAC_TYPE}},
        ]));
        let allow_client = json!({"virtual_hosts": [{"typed_per_filter_config": {
            "envoy.filters.http.rbac.allow": {"rbac": {"rules": {"policies": {"allow": {
                "permissions": [{"any": true}],
                "principals": [{"authenticated": {"principal_name": {"exact": "spiffe://c"}}}]}}}}}}}]});
        assert!(!denied(
            &l,
            &allow_client,
            &req("GET", "/"),
            Some("spiffe://c"),
            1
        ));
        assert!(denied(
            &l,
            &allow_client,
            &req("GET", "/"),
            Some("spiffe://d"),
            1
        ));
        // No per-route rules: the filters enforce nothing.
        assert!(!denied(
            &l,
            &json!({"virtual_hosts": [{}]}),
            &req("GET", "/"),
            None,
            1
        ));
    }

    #[test]
    fn principals_become_header_matchers() {
        let mut v = json!({"ids": [{"authenticated": {"principal_name": {"exact": "spiffe://a"}}},
                                   {"authenticated": {}}]});
        principal_header(&mut v);
        assert_eq!(
            v,
            json!({"ids": [{"header": {"name": PEER_HEADER, "string_match": {"exact": "spiffe://a"}}},
                           {"header": {"name": PEER_HEADER, "present_match": true}}]})
        );
    }
}

//! GRPCRoute rules onto the routing model: a gRPC call is an HTTP/2 POST to
//! `/SERVICE/METHOD`, so each match becomes a path match (and header matches) on the same
//! [`HttpRule`](crate::routing::HttpRule)s HTTPRoutes produce, sharing their filters, backends
//! and precedence ([`super::rules`]).
//!
//! * `Exact` with service and method: the exact path `/SERVICE/METHOD`; service only: the
//!   prefix `/SERVICE/`; method only: the regular expression `/[^/]+/METHOD`.
//! * `RegularExpression`: `/(SERVICE)/(METHOD)` with `[^/]+` for the part not given.
//! * No match: every call (prefix `/`).

use super::ApiRule;
use super::rules::{self, Converted, RouteRefs};
use crate::routing::{HttpMatch, PathMatch};
use portolan_api::ObjectRef;
use portolan_api::gwapi::{GrpcMethodMatch, GrpcRoute, GrpcRouteMatch, HttpRouteRule};

pub(super) fn convert(source: &ObjectRef, route: &GrpcRoute, refs: &RouteRefs<'_>) -> Converted {
    let mut out = Converted::default();
    let created = route
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string());
    for (rule_index, rule) in route.spec.rules.iter().enumerate() {
        let as_http = HttpRouteRule {
            name: rule.name.clone(),
            filters: rule.filters.clone(),
            backend_refs: rule.backend_refs.clone(),
            ..Default::default()
        };
        let base = rules::rule_base(source, rule_index, &as_http, refs, &mut out.unresolved);
        let default_match = [GrpcRouteMatch::default()];
        let matches = if rule.matches.is_empty() {
            &default_match[..]
        } else {
            &rule.matches[..]
        };
        for (index, m) in matches.iter().enumerate() {
            let model_match = grpc_match(m);
            let key = rules::precedence(&model_match, created.clone(), source, rule_index, index);
            let mut rule = base.clone();
            rule.matches = vec![model_match];
            out.rules.push((
                key,
                ApiRule {
                    route: source.clone(),
                    index: rule_index,
                    rule,
                },
            ));
        }
    }
    out
}

fn grpc_match(m: &GrpcRouteMatch) -> HttpMatch {
    HttpMatch {
        path: Some(
            m.method
                .as_ref()
                .map(method_path)
                .unwrap_or_else(|| PathMatch::Prefix("/".to_string())),
        ),
        headers: m.headers.iter().map(rules::header_match).collect(),
        query_params: Vec::new(),
        method: None,
    }
}

/// The path match of a method match.
pub(super) fn method_path(m: &GrpcMethodMatch) -> PathMatch {
    let service = m.service.as_deref().filter(|s| !s.is_empty());
    let method = m.method.as_deref().filter(|s| !s.is_empty());
    if m.type_.as_deref() == Some("RegularExpression") {
        return PathMatch::Regex(format!(
            "/({})/({})",
            service.unwrap_or("[^/]+"),
            method.unwrap_or("[^/]+")
        ));
    }
    match (service, method) {
        (Some(s), Some(m)) => PathMatch::Exact(format!("/{s}/{m}")),
        (Some(s), None) => PathMatch::Prefix(format!("/{s}/")),
        (None, Some(m)) => PathMatch::Regex(format!("/[^/]+/{}", escape(m))),
        (None, None) => PathMatch::Prefix("/".to_string()),
    }
}

/// Escapes RE2 metacharacters.
fn escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let meta = "\\.+*?()|[]{}^$".contains(c);
            meta.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(type_: Option<&str>, service: Option<&str>, method: Option<&str>) -> GrpcMethodMatch {
        GrpcMethodMatch {
            type_: type_.map(str::to_string),
            service: service.map(str::to_string),
            method: method.map(str::to_string),
        }
    }

    #[test]
    fn method_matches_become_paths() {
        assert_eq!(
            method_path(&m(None, Some("a.B"), Some("C"))),
            PathMatch::Exact("/a.B/C".to_string())
        );
        assert_eq!(
            method_path(&m(Some("Exact"), Some("a.B"), None)),
            PathMatch::Prefix("/a.B/".to_string())
        );
        assert_eq!(
            method_path(&m(None, None, Some("C"))),
            PathMatch::Regex("/[^/]+/C".to_string())
        );
        assert_eq!(
            method_path(&m(Some("RegularExpression"), Some(r"a\..*"), None)),
            PathMatch::Regex(r"/(a\..*)/([^/]+)".to_string())
        );
        assert_eq!(escape("a.b"), r"a\.b");
    }
}

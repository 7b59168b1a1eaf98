//! Route matches: path (exact, prefix, regex), headers, query parameters and method.
//!
//! A match without a path matches every path (prefix `/`). The method is matched as the
//! `:method` pseudo-header.

use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RouteMatch, header_matcher::HeaderMatchSpecifier,
    query_parameter_matcher::QueryParameterMatchSpecifier, route_match::PathSpecifier,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatcher, StringMatcher, string_matcher::MatchPattern,
};
use portolan_model::routing::{HeaderMatch, HttpMatch, PathMatch, QueryParamMatch, StringMatch};

/// The Envoy match of one match entry.
pub(crate) fn route_match(m: &HttpMatch) -> RouteMatch {
    let mut headers: Vec<HeaderMatcher> = m.headers.iter().map(header_matcher).collect();
    if let Some(method) = &m.method {
        headers.push(HeaderMatcher {
            name: ":method".to_string(),
            header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(exact(method))),
            ..Default::default()
        });
    }
    RouteMatch {
        path_specifier: Some(path_specifier(m.path.as_ref())),
        headers,
        query_parameters: m.query_params.iter().map(query_matcher).collect(),
        ..Default::default()
    }
}

/// Matches every request.
pub(crate) fn match_all() -> RouteMatch {
    RouteMatch {
        path_specifier: Some(path_specifier(None)),
        ..Default::default()
    }
}

fn path_specifier(path: Option<&PathMatch>) -> PathSpecifier {
    match path {
        None => PathSpecifier::Prefix("/".to_string()),
        Some(PathMatch::Exact(p)) => PathSpecifier::Path(p.clone()),
        Some(PathMatch::Prefix(p)) => PathSpecifier::Prefix(p.clone()),
        Some(PathMatch::Regex(re)) => PathSpecifier::SafeRegex(regex(re)),
        Some(PathMatch::SegmentPrefix(p)) if p.is_empty() || p == "/" => {
            PathSpecifier::Prefix("/".to_string())
        }
        Some(PathMatch::SegmentPrefix(p)) => PathSpecifier::PathSeparatedPrefix(p.clone()),
    }
}

fn header_matcher(h: &HeaderMatch) -> HeaderMatcher {
    let specifier = match string_matcher(&h.value) {
        Some(m) => HeaderMatchSpecifier::StringMatch(m),
        None => HeaderMatchSpecifier::PresentMatch(true),
    };
    HeaderMatcher {
        name: h.name.clone(),
        invert_match: h.invert,
        header_match_specifier: Some(specifier),
        ..Default::default()
    }
}

fn query_matcher(q: &QueryParamMatch) -> QueryParameterMatcher {
    let specifier = match string_matcher(&q.value) {
        Some(m) => QueryParameterMatchSpecifier::StringMatch(m),
        None => QueryParameterMatchSpecifier::PresentMatch(true),
    };
    QueryParameterMatcher {
        name: q.name.clone(),
        query_parameter_match_specifier: Some(specifier),
    }
}

/// The string matcher of a condition; `None` for [`StringMatch::Present`].
pub(crate) fn string_matcher(value: &StringMatch) -> Option<StringMatcher> {
    let pattern = match value {
        StringMatch::Exact(v) => MatchPattern::Exact(v.clone()),
        StringMatch::Prefix(v) => MatchPattern::Prefix(v.clone()),
        StringMatch::Regex(re) => MatchPattern::SafeRegex(regex(re)),
        StringMatch::Present => return None,
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    })
}

pub(crate) fn exact(value: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(MatchPattern::Exact(value.to_string())),
        ..Default::default()
    }
}

/// An RE2 matcher (Envoy's default engine).
pub(crate) fn regex(re: &str) -> RegexMatcher {
    RegexMatcher {
        regex: re.to_string(),
        ..Default::default()
    }
}

//! HTTPRoute rules onto the routing model, and their precedence across every route on a
//! listener.
//!
//! Each match of each rule becomes one [`ApiRule`] (a rule without matches has the default
//! match, `PathPrefix /`). Precedence, as the spec orders it: an exact path, then the
//! longest prefix (regular expressions after both), then a method match, then the most
//! header matches, then the most query parameter matches, then the oldest route
//! (`creationTimestamp`), then the route's namespace/name, then rule and match order.
//!
//! Backends: a Service (group `""`, kind `Service`) with a port; in another namespace only
//! with a ReferenceGrant there. An invalid or missing backend keeps its weight but points
//! at a cluster that does not exist, which the gateway's routes answer with 500, so it gets
//! exactly its share of 500s; no valid backend at all is a 500 for every request.

use super::ApiRule;
use crate::routing::{
    Backend, BackendHeaders, Cors, Destination, HeaderMatch, HeaderOps, HttpAction, HttpMatch,
    HttpRule, Mirror, PathMatch, QueryParamMatch, Redirect, Rewrite, StringMatch,
};
use crate::types::ServiceKey;
use crate::world::World;
use portolan_api::gwapi::{
    self, CorsFilter, GROUP, HeaderModifier, HttpBackendRef, HttpRoute, HttpRouteFilter,
    HttpRouteMatch, HttpRouteRule, ObjectReference, ReferenceGrant, ValueMatch,
};
use portolan_api::{ObjectRef, Resource};
use std::cmp::Reverse;
use std::time::Duration;

/// A host no Service or ExternalService has: the cluster it names never exists.
pub const INVALID_BACKEND_HOST: &str = "invalid-backend.portolan.invalid";

/// Sort key of one match: smaller sorts first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Precedence {
    path_kind: u8,
    path_len: Reverse<usize>,
    method: Reverse<bool>,
    headers: Reverse<usize>,
    query: Reverse<usize>,
    /// RFC 3339 sorts as text; a route without one (files) sorts as the newest.
    created: Reverse<Option<Reverse<String>>>,
    route: (String, String),
    rule: usize,
    index: usize,
}

/// What routes may reference: Services, and ReferenceGrants for other namespaces.
pub(super) struct RouteRefs<'w> {
    pub world: &'w World,
    grants: Vec<(&'w str, &'w ReferenceGrant)>,
    /// Service ports whose BackendTLSPolicy has no valid CA: routed to, they answer 500.
    refused: std::collections::BTreeSet<(ServiceKey, u16)>,
}

impl<'w> RouteRefs<'w> {
    pub fn new(world: &'w World) -> Self {
        let grants = world
            .gateway_api
            .iter()
            .filter_map(|(source, r)| match &**r {
                Resource::ReferenceGrant(g) => Some((source.namespace.as_str(), &**g)),
                _ => None,
            })
            .collect();
        Self {
            world,
            grants,
            refused: Default::default(),
        }
    }

    /// The same, with the Service ports connections to which must fail.
    pub fn refusing(mut self, refused: std::collections::BTreeSet<(ServiceKey, u16)>) -> Self {
        self.refused = refused;
        self
    }

    /// Whether a backendRef of `source` names a Service port whose BackendTLSPolicy cannot
    /// verify its servers.
    fn tls_refused(&self, source: &ObjectRef, b: &ObjectReference) -> bool {
        let namespace = b.namespace.as_deref().unwrap_or(&source.namespace);
        let port = b.port.and_then(|p| u16::try_from(p).ok());
        port.is_some_and(|p| {
            self.refused
                .contains(&(ServiceKey::new(namespace, &b.name), p))
        })
    }

    /// Whether an object of kind `from` (`HTTPRoute`, `Gateway`, ...) in `from_ns` may
    /// reference the core object `to` (`Service`, `Secret`) named `name` in `to_ns`: always in
    /// its own namespace, elsewhere only with a ReferenceGrant there.
    pub fn permits(&self, from: &str, from_ns: &str, to: &str, to_ns: &str, name: &str) -> bool {
        from_ns == to_ns
            || self.grants.iter().any(|(ns, g)| {
                *ns == to_ns
                    && g.spec
                        .from
                        .iter()
                        .any(|f| f.group == GROUP && f.kind == from && f.namespace == from_ns)
                    && g.spec.to.iter().any(|t| {
                        t.group.is_empty()
                            && t.kind == to
                            && t.name.as_deref().is_none_or(|n| n == name)
                    })
            })
    }
}

/// A route's rules, converted, and why a backendRef did not resolve (the first reason).
#[derive(Clone, Debug, Default)]
pub(super) struct Converted {
    pub rules: Vec<(Precedence, ApiRule)>,
    pub unresolved: Option<(&'static str, String)>,
}

pub(super) fn convert(source: &ObjectRef, route: &HttpRoute, refs: &RouteRefs<'_>) -> Converted {
    let mut out = Converted::default();
    let created = route
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string());
    for (rule_index, rule) in route.spec.rules.iter().enumerate() {
        let base = rule_base(source, rule_index, rule, refs, &mut out.unresolved);
        let default_match = [HttpRouteMatch::default()];
        let matches = if rule.matches.is_empty() {
            &default_match[..]
        } else {
            &rule.matches[..]
        };
        for (index, m) in matches.iter().enumerate() {
            let model_match = http_match(m);
            let key = precedence(&model_match, created.clone(), source, rule_index, index);
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

/// The rules in precedence order, each once (a route may reach a host through two names).
pub(super) fn sorted(mut rules: Vec<(Precedence, ApiRule)>) -> Vec<ApiRule> {
    rules.sort_by(|a, b| a.0.cmp(&b.0));
    rules.dedup_by(|a, b| a.0 == b.0);
    rules.into_iter().map(|(_, r)| r).collect()
}

pub(super) fn precedence(
    m: &HttpMatch,
    created: Option<String>,
    source: &ObjectRef,
    rule: usize,
    index: usize,
) -> Precedence {
    let (path_kind, path_len) = match &m.path {
        Some(PathMatch::Exact(p)) => (0, p.len()),
        Some(PathMatch::SegmentPrefix(p) | PathMatch::Prefix(p)) => (1, p.len().max(1)),
        Some(PathMatch::Regex(p)) => (2, p.len()),
        None => (1, 1),
    };
    Precedence {
        path_kind,
        path_len: Reverse(path_len),
        method: Reverse(m.method.is_some()),
        headers: Reverse(m.headers.len()),
        query: Reverse(m.query_params.len()),
        created: Reverse(created.map(Reverse)),
        route: (source.namespace.clone(), source.name.clone()),
        rule,
        index,
    }
}

fn http_match(m: &HttpRouteMatch) -> HttpMatch {
    let path = m.path.as_ref().map(|p| {
        let value = p.value.clone().unwrap_or_else(|| "/".to_string());
        match p.type_.as_deref().unwrap_or("PathPrefix") {
            "Exact" => PathMatch::Exact(value),
            "RegularExpression" => PathMatch::Regex(value),
            _ => {
                let trimmed = value.trim_end_matches('/');
                PathMatch::SegmentPrefix(if trimmed.is_empty() {
                    "/".to_string()
                } else {
                    trimmed.to_string()
                })
            }
        }
    });
    HttpMatch {
        path: path.or(Some(PathMatch::SegmentPrefix("/".to_string()))),
        headers: m.headers.iter().map(header_match).collect(),
        query_params: m
            .query_params
            .iter()
            .map(|q| QueryParamMatch {
                name: q.name.clone(),
                value: string_match(q),
            })
            .collect(),
        method: m.method.as_ref().map(|s| s.to_ascii_uppercase()),
    }
}

/// A header match (names compared case-insensitively, as HTTP does).
pub(super) fn header_match(h: &ValueMatch) -> HeaderMatch {
    HeaderMatch {
        name: h.name.to_ascii_lowercase(),
        value: string_match(h),
        invert: false,
    }
}

fn string_match(v: &ValueMatch) -> StringMatch {
    match v.type_.as_deref() {
        Some("RegularExpression") => StringMatch::Regex(v.value.clone()),
        _ => StringMatch::Exact(v.value.clone()),
    }
}

/// A rule's action, filters and timeout (matches are set per match).
pub(super) fn rule_base(
    source: &ObjectRef,
    index: usize,
    rule: &HttpRouteRule,
    refs: &RouteRefs<'_>,
    unresolved: &mut Option<(&'static str, String)>,
) -> HttpRule {
    let at = |i: usize| format!("spec.rules[{index}].backendRefs[{i}]");
    let mut backends = Vec::new();
    for (i, b) in rule.backend_refs.iter().enumerate() {
        let weight = u32::try_from(b.weight.unwrap_or(1)).unwrap_or_default();
        let reference = ObjectReference {
            group: b.group.clone(),
            kind: b.kind.clone(),
            name: b.name.clone(),
            namespace: b.namespace.clone(),
            port: b.port,
        };
        let (destination, headers) = match backend(source, &reference, refs) {
            // A BackendTLSPolicy without a valid CA: the connection must fail (500).
            Ok(_) if refs.tls_refused(source, &reference) => {
                (invalid_destination(), BackendHeaders::default())
            }
            Ok(d) => match backend_headers(b) {
                Some(headers) => (d, headers),
                // A filter Portolan cannot apply to this backend: its share answers 500.
                None => (invalid_destination(), BackendHeaders::default()),
            },
            Err((reason, message)) => {
                unresolved.get_or_insert((reason, format!("{}: {message}", at(i))));
                (invalid_destination(), BackendHeaders::default())
            }
        };
        if weight > 0 {
            backends.push(Backend {
                destination,
                weight,
                headers,
            });
        }
    }
    let all_invalid = backends
        .iter()
        .all(|b| b.destination.host == INVALID_BACKEND_HOST);
    let mut out = HttpRule {
        name: Some(index.to_string()),
        matches: Vec::new(),
        action: if all_invalid {
            internal_error()
        } else {
            HttpAction::Forward {
                backends,
                rewrite: None,
            }
        },
        timeout: rule
            .timeouts
            .as_ref()
            .and_then(|t| t.request.as_ref().or(t.backend_request.as_ref()))
            .and_then(|t| gwapi::parse_duration(t))
            .filter(|d| !d.is_zero()),
        retry: None,
        fault: None,
        mirrors: Vec::new(),
        request_headers: HeaderOps::default(),
        response_headers: HeaderOps::default(),
        cors: None,
    };
    for (j, f) in rule.filters.iter().enumerate() {
        let at = format!("spec.rules[{index}].filters[{j}]");
        extension_ref(f, &at, unresolved);
        if let Some(m) = &f.request_mirror
            && let Err((reason, message)) = backend(source, &m.backend_ref, refs)
        {
            // The mirror is left out; the rule's own backends still serve.
            unresolved.get_or_insert((reason, format!("{at}.requestMirror.backendRef: {message}")));
        }
        if !apply_filter(source, f, refs, &mut out) {
            out.action = internal_error();
        }
    }
    for (i, b) in rule.backend_refs.iter().enumerate() {
        for (j, f) in b.filters.iter().enumerate() {
            extension_ref(f, &format!("{}.filters[{j}]", at(i)), unresolved);
        }
    }
    out
}

/// An `ExtensionRef` filter names a kind Portolan has no extension for: ResolvedRefs is
/// False with `InvalidKind`, and the rule (or the backend's share) answers 500 instead of
/// skipping the filter, as the spec requires.
fn extension_ref(f: &HttpRouteFilter, at: &str, unresolved: &mut Option<(&'static str, String)>) {
    if f.type_ != "ExtensionRef" {
        return;
    }
    let message = match &f.extension_ref {
        Some(r) => format!(
            "{at}.extensionRef: {}/{} {:?} is not a filter kind Portolan supports (it has no extension filters)",
            r.group, r.kind, r.name
        ),
        None => format!("{at}.extensionRef: required for type ExtensionRef"),
    };
    unresolved.get_or_insert(("InvalidKind", message));
}

fn internal_error() -> HttpAction {
    HttpAction::DirectResponse {
        status: 500,
        body: None,
    }
}

pub(super) fn invalid_destination() -> Destination {
    Destination {
        host: INVALID_BACKEND_HOST.to_string(),
        port: None,
        subset: None,
    }
}

/// A backendRef as a destination, or the ResolvedRefs reason and message.
pub(super) fn backend(
    source: &ObjectRef,
    b: &ObjectReference,
    refs: &RouteRefs<'_>,
) -> Result<Destination, (&'static str, String)> {
    let group = b.group.as_deref().unwrap_or("");
    let kind = b.kind.as_deref().unwrap_or("Service");
    if !group.is_empty() || kind != "Service" {
        return Err((
            "InvalidKind",
            format!("{group}/{kind} is not a supported backend kind (core Service)"),
        ));
    }
    let namespace = b.namespace.as_deref().unwrap_or(&source.namespace);
    let from = source.kind.as_str();
    if !refs.permits(from, &source.namespace, "Service", namespace, &b.name) {
        return Err((
            "RefNotPermitted",
            format!(
                "Service {namespace}/{} is in another namespace and no ReferenceGrant there allows it",
                b.name
            ),
        ));
    }
    let key = ServiceKey::new(namespace, &b.name);
    if !refs.world.services.contains_key(&key) {
        return Err(("BackendNotFound", format!("Service {key} does not exist")));
    }
    let port = b.port.and_then(|p| u16::try_from(p).ok());
    Ok(Destination {
        host: format!("{}.{namespace}", b.name),
        port,
        subset: None,
    })
}

/// Applies one filter; `false` for a filter Portolan cannot apply (the rule answers 500, as
/// the spec requires instead of skipping it).
fn apply_filter(
    source: &ObjectRef,
    f: &HttpRouteFilter,
    refs: &RouteRefs<'_>,
    rule: &mut HttpRule,
) -> bool {
    match f.type_.as_str() {
        "RequestHeaderModifier" => f
            .request_header_modifier
            .as_ref()
            .map(|m| header_ops(m, &mut rule.request_headers))
            .is_some(),
        "ResponseHeaderModifier" => f
            .response_header_modifier
            .as_ref()
            .map(|m| header_ops(m, &mut rule.response_headers))
            .is_some(),
        "RequestRedirect" => {
            let Some(r) = &f.request_redirect else {
                return false;
            };
            let (uri, prefix) = match &r.path {
                None => (None, false),
                Some(p) if p.type_ == "ReplaceFullPath" => (p.replace_full_path.clone(), false),
                Some(p) if p.type_ == "ReplacePrefixMatch" => {
                    (p.replace_prefix_match.clone(), true)
                }
                Some(_) => return false,
            };
            rule.action = HttpAction::Redirect(Redirect {
                uri,
                prefix,
                authority: r.hostname.clone(),
                scheme: r.scheme.clone(),
                port: r.port.and_then(|p| u16::try_from(p).ok()),
                code: r
                    .status_code
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(302),
            });
            true
        }
        "URLRewrite" => {
            let Some(u) = &f.url_rewrite else {
                return false;
            };
            let HttpAction::Forward { rewrite, .. } = &mut rule.action else {
                return true;
            };
            let (uri, full_path) = match &u.path {
                None => (None, false),
                Some(p) if p.type_ == "ReplaceFullPath" => (p.replace_full_path.clone(), true),
                Some(p) => (p.replace_prefix_match.clone(), false),
            };
            *rewrite = Some(Rewrite {
                uri,
                authority: u.hostname.clone(),
                full_path,
            });
            true
        }
        "RequestMirror" => {
            let Some(m) = &f.request_mirror else {
                return false;
            };
            let Ok(destination) = backend(source, &m.backend_ref, refs) else {
                return true;
            };
            rule.mirrors.push(Mirror {
                destination,
                percent: m.percentage(),
            });
            true
        }
        "CORS" => {
            let Some(c) = &f.cors else {
                return false;
            };
            rule.cors = Some(cors(c));
            true
        }
        _ => false,
    }
}

/// A backendRef's own filters: header modifiers only; `None` for anything else.
fn backend_headers(b: &HttpBackendRef) -> Option<BackendHeaders> {
    let mut out = BackendHeaders::default();
    for f in &b.filters {
        let (modifier, ops) = match f.type_.as_str() {
            "RequestHeaderModifier" => (&f.request_header_modifier, &mut out.request),
            "ResponseHeaderModifier" => (&f.response_header_modifier, &mut out.response),
            _ => return None,
        };
        header_ops(modifier.as_ref()?, ops);
    }
    Some(out)
}

/// The spec's default `maxAge`, in seconds.
const CORS_DEFAULT_MAX_AGE: u64 = 5;

/// The CORS filter: origins as exact values, or a regular expression for a `*` in the host
/// (any number of labels) and for `*` alone.
fn cors(c: &CorsFilter) -> Cors {
    Cors {
        allow_origins: c.allow_origins.iter().map(|o| origin(o)).collect(),
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age: Some(Duration::from_secs(
            c.max_age
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(CORS_DEFAULT_MAX_AGE),
        )),
        allow_credentials: c.allow_credentials.filter(|a| *a),
    }
}

fn origin(o: &str) -> StringMatch {
    if o == "*" {
        return StringMatch::Regex(".*".to_string());
    }
    if !o.contains('*') {
        return StringMatch::Exact(o.to_string());
    }
    let escaped: String = o
        .chars()
        .map(|c| match c {
            '*' => ".+".to_string(),
            c if c.is_ascii_alphanumeric() => c.to_string(),
            c => format!("\\{c}"),
        })
        .collect();
    StringMatch::Regex(escaped)
}

fn header_ops(m: &HeaderModifier, ops: &mut HeaderOps) {
    for h in &m.set {
        ops.set.insert(h.name.to_ascii_lowercase(), h.value.clone());
    }
    for h in &m.add {
        ops.add.insert(h.name.to_ascii_lowercase(), h.value.clone());
    }
    ops.remove
        .extend(m.remove.iter().map(|h| h.to_ascii_lowercase()));
}

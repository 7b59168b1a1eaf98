//! AccessPolicies as Envoy RBAC filters: `envoy.filters.http.rbac` on HTTP inbound listeners
//! (the rules in the route configuration, per virtual host, so that a policy change reaches
//! open connections: see [`http_filters`]), `envoy.filters.network.rbac` on TCP ones.
//!
//! Deny wins: a DENY filter (the DENY policies' rules) runs first, then an ALLOW filter (the
//! ALLOW policies' rules) when any ALLOW policy applies; an ALLOW filter with no rule denies
//! everything (default-deny). Each filter holds one RBAC policy named after its action whose
//! principals are the rules, in policy-name order: Envoy's `policies` is a map, and one entry
//! keeps the encoding (and so the resource version) deterministic.
//!
//! A rule becomes one principal: `and_ids` of "any of the `from` identities" (the SPIFFE ID of
//! the verified client certificate, `authenticated.principal_name`), the `:method` header, the
//! path, and the headers. The destination port is decided here: each port the inbound
//! listener serves has its own rules (its own route configurations, or its own chains' network
//! filters), so a rule whose `ports` leave that port out can never match there and is dropped.
//! On TCP, an ALLOW rule with HTTP-only fields (methods, paths, headers, request principals,
//! claims) is dropped (it cannot be checked, so it allows nothing) and a DENY rule keeps only
//! its other fields (it denies more, never less).
//!
//! Request principals and claims read the verified JWT's payload that
//! `envoy.filters.http.jwt_authn` (see [`crate::jwt`]) leaves in dynamic metadata: a request
//! principal `ISSUER/SUBJECT` is `iss` and `sub` equal to those, a claim condition the
//! claim equal to one of its values or, for a list claim, holding one. A request without a
//! verified token has no payload and matches none of them.

use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::config::rbac::v3::{
    MetadataSource, Permission, Policy, Principal, Rbac, SourcedMetadata, permission, principal,
    rbac::Action,
};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, header_matcher::HeaderMatchSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::{Rbac as HttpRbac, RbacPerRoute};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::envoy::r#type::matcher::v3::metadata_matcher::{PathSegment, path_segment};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    FilterStateMatcher, ListMatcher, MetadataMatcher, PathMatcher, StringMatcher, ValueMatcher,
    filter_state_matcher, list_matcher, path_matcher, string_matcher::MatchPattern, value_matcher,
};
use envoy_types::util::pack_any;
use portolan_model::security::{
    AccessAction, AccessPolicy, AccessRule, HeaderValue, Operation, PathMatch, Peer,
    RequestPrincipal,
};
use std::collections::HashMap;
use std::sync::Arc;

/// Well-known name of the network RBAC filter.
pub(crate) const NETWORK_RBAC: &str = "envoy.filters.network.rbac";
/// Names of the inbound HTTP RBAC filters (Envoy's `envoy.filters.http.rbac`, told apart by
/// name so that each has its own per-route configuration).
pub(crate) const HTTP_RBAC_DENY: &str = "envoy.filters.http.rbac.deny";
pub(crate) const HTTP_RBAC_ALLOW: &str = "envoy.filters.http.rbac.allow";

/// What the rules are translated for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target<'a> {
    pub trust_domain: &'a str,
    /// The workload port the rules are for; `None` for the ports no Service declares and no
    /// rule names (the inbound passthrough's catch-all), where no rule with ports applies.
    pub port: Option<u16>,
    pub tcp: bool,
    /// Where the caller's SPIFFE ID is: `None` the verified client certificate of the
    /// connection, `Some(KEY)` the string filter state object `KEY` (a connection that reached
    /// an internal listener has no certificate of its own: see [`crate::inbound_tcp`]).
    pub peer_state: Option<&'a str>,
}

/// The RBAC configurations for `policies`: DENY (if any DENY rule survives), then ALLOW (if
/// any ALLOW policy applies).
pub(crate) fn rbac_rules(policies: &[&Arc<AccessPolicy>], target: Target<'_>) -> Vec<Rbac> {
    let mut out = Vec::new();
    let of = |action| policies.iter().filter(move |p| p.action == action);
    let deny: Vec<Principal> = of(AccessAction::Deny)
        .flat_map(|p| &p.rules)
        .filter_map(|r| rule_principal(r, AccessAction::Deny, target))
        .collect();
    if !deny.is_empty() {
        out.push(rbac(Action::Deny, "deny", deny));
    }
    if of(AccessAction::Allow).next().is_some() {
        let allow: Vec<Principal> = of(AccessAction::Allow)
            .flat_map(|p| &p.rules)
            .filter_map(|r| rule_principal(r, AccessAction::Allow, target))
            .collect();
        out.push(rbac(Action::Allow, "allow", allow));
    }
    out
}

/// The HTTP RBAC filters of an inbound listener, always both, in this order, each without
/// rules (which Envoy reads as "enforce nothing"): the rules come per virtual host from the
/// route configuration ([`per_route`]). A policy change is then an RDS update, which Envoy
/// applies to the next request on every open connection; a listener update would leave open
/// connections on the old rules for the whole drain time (600 s by default).
pub(crate) fn http_filters() -> Vec<HttpFilter> {
    [HTTP_RBAC_DENY, HTTP_RBAC_ALLOW]
        .into_iter()
        .map(|name| HttpFilter {
            name: name.to_string(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                HttpRbac::default(),
            ))),
            ..Default::default()
        })
        .collect()
}

/// The per-filter configuration of the inbound virtual host for `policies`: the DENY rules
/// for [`HTTP_RBAC_DENY`] and the ALLOW rules for [`HTTP_RBAC_ALLOW`] when there are any
/// (a filter without an entry enforces nothing).
pub(crate) fn per_route(
    policies: &[&Arc<AccessPolicy>],
    target: Target<'_>,
) -> Vec<(String, envoy_types::pb::google::protobuf::Any)> {
    rbac_rules(policies, target)
        .into_iter()
        .map(|rules| {
            let name = if rules.action == Action::Deny as i32 {
                HTTP_RBAC_DENY
            } else {
                HTTP_RBAC_ALLOW
            };
            let config = RbacPerRoute {
                rbac: Some(HttpRbac {
                    rules: Some(rules),
                    ..Default::default()
                }),
            };
            (name.to_string(), pack_any(config))
        })
        .collect()
}

/// The network filters for `policies`, in order.
pub(crate) fn network_filters(
    policies: &[&Arc<AccessPolicy>],
    target: Target<'_>,
    stat_prefix: &str,
) -> Vec<Filter> {
    rbac_rules(policies, target)
        .into_iter()
        .map(|rules| Filter {
            name: NETWORK_RBAC.to_string(),
            config_type: Some(filter::ConfigType::TypedConfig(pack_any(NetworkRbac {
                rules: Some(rules),
                stat_prefix: stat_prefix.to_string(),
                ..Default::default()
            }))),
        })
        .collect()
}

/// A network RBAC filter refusing every connection (an ALLOW filter without rules).
pub(crate) fn refuse_all(stat_prefix: &str) -> Filter {
    Filter {
        name: NETWORK_RBAC.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(NetworkRbac {
            rules: Some(rbac(Action::Allow, "allow", Vec::new())),
            stat_prefix: stat_prefix.to_string(),
            ..Default::default()
        }))),
    }
}

fn rbac(action: Action, name: &str, principals: Vec<Principal>) -> Rbac {
    let policies = if principals.is_empty() {
        HashMap::new()
    } else {
        HashMap::from([(
            name.to_string(),
            Policy {
                permissions: vec![Permission {
                    rule: Some(permission::Rule::Any(true)),
                }],
                principals,
                ..Default::default()
            },
        )])
    };
    Rbac {
        action: action as i32,
        policies,
        ..Default::default()
    }
}

/// One rule as a principal; `None` when it cannot match (or, on TCP, cannot be checked and
/// would allow).
fn rule_principal(
    rule: &AccessRule,
    action: AccessAction,
    target: Target<'_>,
) -> Option<Principal> {
    if dropped(rule, action, target) {
        return None;
    }
    let mut ids = Vec::new();
    if let Some(from) = &rule.from {
        ids.push(or(from.iter().map(|p| peer(p, target)).collect()));
    }
    if !target.tcp {
        ids.extend(jwt_conditions(rule));
        if let Some(to) = &rule.to {
            ids.extend(operation_conditions(to));
        }
    }
    Some(match ids.len() {
        0 => any(),
        1 => ids.pop().unwrap_or_else(any),
        _ => Principal {
            identifier: Some(principal::Identifier::AndIds(principal::Set { ids })),
        },
    })
}

/// Whether `rule` can never match at `target`: its ports leave the target's out, or, on
/// TCP, it is an ALLOW rule with HTTP-only fields (which cannot be checked there).
fn dropped(rule: &AccessRule, action: AccessAction, target: Target<'_>) -> bool {
    let jwt = rule.has_jwt_fields();
    let (ports, http) = rule.to.as_ref().map_or((false, false), |to| {
        let outside = !to.ports.is_empty() && !target.port.is_some_and(|p| to.ports.contains(&p));
        (outside, to.has_http_fields())
    });
    ports || (target.tcp && action == AccessAction::Allow && (jwt || http))
}

/// Whether the network RBAC filters of `policies` at `target` (a TCP port) admit a
/// connection whose verified client certificate names `peer` (a SPIFFE ID; `None`: a
/// plaintext connection, which no `from` matches). The same decision as the filters
/// [`network_filters`] builds, taken here so that the inbound listener can tell which open
/// connections a policy change refuses (see [`crate::inbound_tcp`]).
pub(crate) fn tcp_allows(
    policies: &[&Arc<AccessPolicy>],
    target: Target<'_>,
    peer_id: Option<&str>,
) -> bool {
    let matches = |action: AccessAction| {
        policies
            .iter()
            .filter(move |p| p.action == action)
            .flat_map(|p| &p.rules)
            .filter(move |r| !dropped(r, action, target))
            .any(|r| from_matches(r.from.as_deref(), peer_id, target.trust_domain))
    };
    if matches(AccessAction::Deny) {
        return false;
    }
    let any_allow = policies.iter().any(|p| p.action == AccessAction::Allow);
    !any_allow || matches(AccessAction::Allow)
}

/// Whether a rule's `from` (`None`: anyone, plaintext too) admits `peer_id`.
fn from_matches(from: Option<&[Peer]>, peer_id: Option<&str>, trust_domain: &str) -> bool {
    let Some(from) = from else {
        return true;
    };
    let Some(id) = peer_id else {
        return false;
    };
    from.iter().any(|p| match p {
        Peer::Principal(principal) => id == principal,
        Peer::PrincipalPrefix(prefix) => id.starts_with(prefix.as_str()),
        Peer::Namespace(ns) => id.starts_with(&format!("spiffe://{trust_domain}/ns/{ns}/sa/")),
        Peer::ServiceAccount { namespace, name } => {
            id == crate::mesh::spiffe_id(trust_domain, namespace, name)
        }
    })
}

/// The HTTP conditions of a rule's operation: method (any of), path (any of), each header.
fn operation_conditions(to: &Operation) -> Vec<Principal> {
    let mut ids = Vec::new();
    if !to.methods.is_empty() {
        ids.push(or(to
            .methods
            .iter()
            .map(|m| header(":method", exact_header(m)))
            .collect()));
    }
    if !to.paths.is_empty() {
        ids.push(or(to.paths.iter().map(path).collect()));
    }
    for h in &to.headers {
        let spec = match &h.value {
            HeaderValue::Exact(v) => exact_header(v),
            HeaderValue::Prefix(v) => {
                HeaderMatchSpecifier::StringMatch(string(MatchPattern::Prefix(v.clone())))
            }
            HeaderValue::Present => HeaderMatchSpecifier::PresentMatch(true),
        };
        ids.push(header(&h.name, spec));
    }
    ids
}

/// The request principal (any of) and claim (each) conditions of a rule.
fn jwt_conditions(rule: &AccessRule) -> Vec<Principal> {
    let mut ids = Vec::new();
    if !rule.request_principals.is_empty() {
        ids.push(or(rule
            .request_principals
            .iter()
            .map(request_principal)
            .collect()));
    }
    for claim in &rule.claims {
        let any_value = claim.values.iter().flat_map(|v| {
            [
                payload(&claim.path, exact_value(v)),
                payload(&claim.path, list_holding(v)),
            ]
        });
        ids.push(or(any_value.collect()));
    }
    ids
}

fn request_principal(p: &RequestPrincipal) -> Principal {
    let key = |k: &str| vec![k.to_string()];
    match p {
        RequestPrincipal::Any => payload(&key("iss"), present()),
        RequestPrincipal::Issuer(iss) => payload(&key("iss"), exact_value(iss)),
        RequestPrincipal::IssuerSubject { issuer, subject } => Principal {
            identifier: Some(principal::Identifier::AndIds(principal::Set {
                ids: vec![
                    payload(&key("iss"), exact_value(issuer)),
                    payload(&key("sub"), exact_value(subject)),
                ],
            })),
        },
    }
}

/// A value at `path` of the JWT payload in dynamic metadata.
fn payload(path: &[String], value: ValueMatcher) -> Principal {
    let segments = std::iter::once(crate::jwt::PAYLOAD_KEY.to_string())
        .chain(path.iter().cloned())
        .map(|key| PathSegment {
            segment: Some(path_segment::Segment::Key(key)),
        })
        .collect();
    Principal {
        identifier: Some(principal::Identifier::SourcedMetadata(SourcedMetadata {
            metadata_matcher: Some(MetadataMatcher {
                filter: crate::jwt::JWT_AUTHN.to_string(),
                path: segments,
                value: Some(value),
                ..Default::default()
            }),
            metadata_source: MetadataSource::Dynamic as i32,
        })),
    }
}

fn exact_value(v: &str) -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::StringMatch(string(
            MatchPattern::Exact(v.to_string()),
        ))),
    }
}

fn list_holding(v: &str) -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::ListMatch(Box::new(
            ListMatcher {
                match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(exact_value(v)))),
            },
        ))),
    }
}

fn present() -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::PresentMatch(true)),
    }
}

fn any() -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Any(true)),
    }
}

fn or(mut ids: Vec<Principal>) -> Principal {
    if ids.len() == 1 {
        return ids.pop().unwrap_or_else(any);
    }
    Principal {
        identifier: Some(principal::Identifier::OrIds(principal::Set { ids })),
    }
}

fn string(pattern: MatchPattern) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    }
}

fn authenticated(pattern: MatchPattern) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Authenticated(
            principal::Authenticated {
                principal_name: Some(string(pattern)),
            },
        )),
    }
}

fn peer(p: &Peer, target: Target<'_>) -> Principal {
    let trust_domain = target.trust_domain;
    let pattern = match p {
        Peer::Principal(id) => MatchPattern::Exact(id.clone()),
        Peer::PrincipalPrefix(prefix) => MatchPattern::Prefix(prefix.clone()),
        Peer::Namespace(ns) => MatchPattern::Prefix(format!("spiffe://{trust_domain}/ns/{ns}/sa/")),
        Peer::ServiceAccount { namespace, name } => {
            MatchPattern::Exact(crate::mesh::spiffe_id(trust_domain, namespace, name))
        }
    };
    match target.peer_state {
        None => authenticated(pattern),
        Some(key) => Principal {
            identifier: Some(principal::Identifier::FilterState(FilterStateMatcher {
                key: key.to_string(),
                matcher: Some(filter_state_matcher::Matcher::StringMatch(string(pattern))),
            })),
        },
    }
}

fn exact_header(v: &str) -> HeaderMatchSpecifier {
    HeaderMatchSpecifier::StringMatch(string(MatchPattern::Exact(v.to_string())))
}

fn header(name: &str, spec: HeaderMatchSpecifier) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Header(HeaderMatcher {
            name: name.to_string(),
            header_match_specifier: Some(spec),
            ..Default::default()
        })),
    }
}

fn path(p: &PathMatch) -> Principal {
    let pattern = match p {
        PathMatch::Any => return any(),
        PathMatch::Exact(p) => MatchPattern::Exact(p.clone()),
        PathMatch::Prefix(p) => MatchPattern::Prefix(p.clone()),
    };
    Principal {
        identifier: Some(principal::Identifier::UrlPath(PathMatcher {
            rule: Some(path_matcher::Rule::Path(string(pattern))),
        })),
    }
}

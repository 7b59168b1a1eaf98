//! Route actions: weighted forwarding (with rewrites, timeout, retries, mirroring and the
//! destination's hash policy), redirects and direct responses.

use crate::context::{Context, VirtualHostTarget};
use crate::matches::regex;
use crate::policy::u32_value;
use crate::route_rules::headers_to_add;
use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::config::route::v3::redirect_action::{
    PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier,
};
use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::{
    ConnectionProperties, Cookie, Header, PolicySpecifier,
};
use envoy_types::pb::envoy::config::route::v3::route_action::{
    ClusterSpecifier, HashPolicy, HostRewriteSpecifier, RequestMirrorPolicy,
};
use envoy_types::pb::envoy::config::route::v3::weighted_cluster::ClusterWeight;
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction, RetryPolicy as EnvoyRetryPolicy, RouteAction,
    WeightedCluster, route,
};
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use portolan_model::policy::{DestinationPolicy, HashKey, LbAlgorithm};
use portolan_model::routing::{
    Backend, HttpAction, HttpRule, Mirror, PathMatch, Redirect, RetryPolicy, Rewrite,
};
use std::time::Duration;

use crate::cluster::duration;
use crate::tls::inline;

/// Retry conditions when a rule's retries name none.
const DEFAULT_RETRY_ON: &str = "5xx,connect-failure,reset";

/// Parts of a million in one percent.
const PER_MILLION_PER_PERCENT: f64 = 10_000.0;

/// Where a rule is translated: the route's namespace (destinations resolve against it) and
/// the virtual host's target (the host it routes, for destinations without a port).
pub(crate) struct RuleSite<'a> {
    pub namespace: &'a str,
    pub vhost: Option<&'a VirtualHostTarget>,
}

/// The action of a rule, for one of its matches (`path` decides how a URI rewrite is done).
pub(crate) fn action(
    ctx: &Context<'_>,
    at: &RuleSite<'_>,
    rule: &HttpRule,
    path: Option<&PathMatch>,
) -> route::Action {
    match &rule.action {
        HttpAction::Forward { backends, rewrite } => {
            route::Action::Route(forward(ctx, at, rule, backends, rewrite.as_ref(), path))
        }
        HttpAction::Redirect(r) => route::Action::Redirect(redirect(r, path)),
        HttpAction::DirectResponse { status, body } => {
            route::Action::DirectResponse(DirectResponseAction {
                status: u32::from(*status),
                body: body.as_deref().map(inline),
                ..Default::default()
            })
        }
    }
}

fn forward(
    ctx: &Context<'_>,
    at: &RuleSite<'_>,
    rule: &HttpRule,
    backends: &[Backend],
    rewrite: Option<&Rewrite>,
    path: Option<&PathMatch>,
) -> RouteAction {
    let resolved: Vec<_> = backends
        .iter()
        .map(|b| {
            (
                ctx.resolve(at.namespace, &b.destination, at.vhost),
                b.weight,
            )
        })
        .collect();
    let hash = resolved
        .first()
        .and_then(|(r, _)| r.policy.as_deref())
        .map(hash_policy)
        .unwrap_or_default();
    let specifier = if backends.iter().all(|b| b.headers.is_empty()) {
        let weighted = resolved.into_iter().map(|(r, w)| (r.cluster, w)).collect();
        cluster_specifier(weighted)
    } else {
        let clusters = resolved.into_iter().map(|(r, _)| r.cluster);
        with_backend_headers(clusters.zip(backends).collect())
    };
    let mut action = RouteAction {
        cluster_specifier: Some(specifier),
        timeout: rule.timeout.map(duration),
        retry_policy: rule.retry.as_ref().map(retry_policy),
        request_mirror_policies: rule.mirrors.iter().map(|m| mirror(ctx, at, m)).collect(),
        hash_policy: hash,
        ..Default::default()
    };
    if let Some(rewrite) = rewrite {
        apply_rewrite(&mut action, rewrite, path);
    }
    action
}

/// One cluster, or weighted clusters (weights of repeated clusters added up, first order kept).
pub(crate) fn cluster_specifier(backends: Vec<(String, u32)>) -> ClusterSpecifier {
    let merged = merge_weights(backends);
    if let [(only, _)] = merged.as_slice() {
        return ClusterSpecifier::Cluster(only.clone());
    }
    ClusterSpecifier::WeightedClusters(WeightedCluster {
        clusters: merged
            .into_iter()
            .map(|(name, weight)| ClusterWeight {
                name,
                weight: Some(u32_value(weight)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

/// Weighted clusters, each with its backend's own header edits (Gateway API per-backendRef
/// filters): one entry per backend, never merged, even for a single backend.
fn with_backend_headers(backends: Vec<(String, &Backend)>) -> ClusterSpecifier {
    ClusterSpecifier::WeightedClusters(WeightedCluster {
        clusters: backends
            .into_iter()
            .map(|(name, b)| ClusterWeight {
                name,
                weight: Some(u32_value(b.weight)),
                request_headers_to_add: headers_to_add(&b.headers.request),
                request_headers_to_remove: b.headers.request.remove.clone(),
                response_headers_to_add: headers_to_add(&b.headers.response),
                response_headers_to_remove: b.headers.response.remove.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

/// Adds up the weights of a cluster named more than once, keeping first-seen order.
pub(crate) fn merge_weights(backends: Vec<(String, u32)>) -> Vec<(String, u32)> {
    let mut merged: Vec<(String, u32)> = Vec::with_capacity(backends.len());
    for (name, weight) in backends {
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, w)) => *w = w.saturating_add(weight),
            None => merged.push((name, weight)),
        }
    }
    merged
}

fn retry_policy(retry: &RetryPolicy) -> EnvoyRetryPolicy {
    let retry_on = if retry.retry_on.is_empty() {
        DEFAULT_RETRY_ON.to_string()
    } else {
        retry.retry_on.join(",")
    };
    EnvoyRetryPolicy {
        retry_on,
        num_retries: Some(u32_value(retry.attempts)),
        per_try_timeout: retry.per_try_timeout.map(duration),
        ..Default::default()
    }
}

fn mirror(ctx: &Context<'_>, at: &RuleSite<'_>, m: &Mirror) -> RequestMirrorPolicy {
    RequestMirrorPolicy {
        cluster: ctx.resolve(at.namespace, &m.destination, at.vhost).cluster,
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(fraction(m.percent)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A percentage (0..=100) as parts per million.
pub(crate) fn fraction(percent: f64) -> FractionalPercent {
    let parts = (percent * PER_MILLION_PER_PERCENT)
        .round()
        .clamp(0.0, 1_000_000.0);
    FractionalPercent {
        // In 0..=1_000_000 after the clamp, so the cast is exact.
        numerator: parts as u32,
        denominator: DenominatorType::Million as i32,
    }
}

/// `s` with RE2 metacharacters escaped.
fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let meta = "\\.+*?()|[]{}^$".contains(c);
            meta.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

/// The path rewrite replaces the matched prefix for a prefix match, else the whole path.
fn apply_rewrite(action: &mut RouteAction, rewrite: &Rewrite, path: Option<&PathMatch>) {
    if let Some(uri) = &rewrite.uri {
        let path = if rewrite.full_path { None } else { path };
        match path {
            Some(PathMatch::Prefix(_)) => action.prefix_rewrite.clone_from(uri),
            // Gateway API ReplacePrefixMatch: the matched path elements are replaced, and
            // a `/` in between is kept exactly once (`/foo/x` with `/` becomes `/x`).
            Some(PathMatch::SegmentPrefix(prefix)) => {
                action.regex_rewrite = Some(segment_prefix_rewrite(prefix, uri));
            }
            _ => {
                action.regex_rewrite = Some(RegexMatchAndSubstitute {
                    pattern: Some(regex("^.*$")),
                    substitution: uri.clone(),
                })
            }
        }
    }
    if let Some(authority) = &rewrite.authority {
        action.host_rewrite_specifier =
            Some(HostRewriteSpecifier::HostRewriteLiteral(authority.clone()));
    }
}

/// Gateway API ReplacePrefixMatch: the matched path elements are replaced, and a `/` in
/// between is kept exactly once (`/foo/x` with `/` becomes `/x`).
fn segment_prefix_rewrite(prefix: &str, uri: &str) -> RegexMatchAndSubstitute {
    let prefix = prefix.trim_end_matches('/');
    let replacement = uri.trim_end_matches('/');
    RegexMatchAndSubstitute {
        pattern: Some(regex(&format!("^{}(/?)(.*)", regex_escape(prefix)))),
        substitution: if replacement.is_empty() {
            "/\\2".to_string()
        } else {
            format!("{replacement}\\1\\2")
        },
    }
}

/// The redirect's path: the whole path, or (`prefix`) the matched prefix replaced.
fn redirect_path(r: &Redirect, path: Option<&PathMatch>) -> Option<PathRewriteSpecifier> {
    let uri = r.uri.clone()?;
    Some(match (r.prefix, path) {
        (true, Some(PathMatch::Prefix(_))) => PathRewriteSpecifier::PrefixRewrite(uri),
        (true, Some(PathMatch::SegmentPrefix(prefix))) => {
            PathRewriteSpecifier::RegexRewrite(segment_prefix_rewrite(prefix, &uri))
        }
        _ => PathRewriteSpecifier::PathRedirect(uri),
    })
}

fn redirect(r: &Redirect, path: Option<&PathMatch>) -> RedirectAction {
    RedirectAction {
        host_redirect: r.authority.clone().unwrap_or_default(),
        port_redirect: r.port.map(u32::from).unwrap_or_default(),
        response_code: redirect_code(r.code) as i32,
        scheme_rewrite_specifier: r.scheme.clone().map(SchemeRewriteSpecifier::SchemeRedirect),
        path_rewrite_specifier: redirect_path(r, path),
        ..Default::default()
    }
}

/// 301 (and anything unknown, which validation rejects) is Envoy's default.
fn redirect_code(code: u16) -> RedirectResponseCode {
    match code {
        302 => RedirectResponseCode::Found,
        303 => RedirectResponseCode::SeeOther,
        307 => RedirectResponseCode::TemporaryRedirect,
        308 => RedirectResponseCode::PermanentRedirect,
        _ => RedirectResponseCode::MovedPermanently,
    }
}

/// The hash policy a RingHash or Maglev TrafficPolicy asks for (none for other algorithms).
pub(crate) fn hash_policy(policy: &DestinationPolicy) -> Vec<HashPolicy> {
    let Some(lb) = &policy.load_balancer else {
        return Vec::new();
    };
    if !matches!(lb.algorithm, LbAlgorithm::RingHash | LbAlgorithm::Maglev) {
        return Vec::new();
    }
    let Some(key) = &lb.hash_key else {
        return Vec::new();
    };
    let specifier = match key {
        HashKey::Header(name) => PolicySpecifier::Header(Header {
            header_name: name.clone(),
            ..Default::default()
        }),
        HashKey::Cookie { name, ttl, path } => PolicySpecifier::Cookie(Cookie {
            name: name.clone(),
            ttl: ttl.map(duration),
            path: path.clone().unwrap_or_default(),
            ..Default::default()
        }),
        HashKey::SourceIp => {
            PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true })
        }
    };
    vec![HashPolicy {
        policy_specifier: Some(specifier),
        ..Default::default()
    }]
}

/// Envoy's `max_age` for CORS: whole seconds.
pub(crate) fn seconds(d: Duration) -> String {
    d.as_secs().to_string()
}

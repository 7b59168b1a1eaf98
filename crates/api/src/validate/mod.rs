//! The one validation module: every source (files, Kubernetes, `portolan validate`, the
//! admission webhook) calls [`validate`]. Each error names the field path, what was wrong and
//! what is allowed. An object with errors is rejected whole; its last good version stays.
//!
//! One file per kind; this module holds the checks the kinds share (durations, regexes,
//! percentages, header names, host names, "exactly one of").

mod access_policy;
mod core;
mod envoy_patch_policy;
mod ext_auth_policy;
mod external_service;
mod gateway;
mod gateway_api;
mod peer_authentication;
pub(crate) mod pem;
mod policy_target;
mod proxy_scope;
mod rate_limit_policy;
mod request_authentication;
mod secret;
mod traffic_policy;
mod traffic_route;

pub use self::core::{SERVICE_NAME_LABEL, is_dns_label, is_dns_name};
pub use policy_target::{TARGET_KINDS, target_refs};
pub use proxy_scope::scope_entry;
pub use secret::{TLS_CERT_KEY, TLS_KEY_KEY, tls_data};

use crate::crd::common::{Destination, StringMatch, parse_duration};
use crate::field::{FieldError, FieldPath};
use crate::resource::Resource;

/// Validates a decoded resource. An empty list means valid.
pub fn validate(resource: &Resource) -> Vec<FieldError> {
    let mut errors = Errors::default();
    match resource {
        Resource::Service(s) => self::core::service(s, &mut errors),
        Resource::EndpointSlice(s) => self::core::endpoint_slice(s, &mut errors),
        Resource::Endpoints(e) => self::core::endpoints(e, &mut errors),
        Resource::TrafficRoute(r) => traffic_route::traffic_route(r, &mut errors),
        Resource::TrafficPolicy(p) => traffic_policy::traffic_policy(p, &mut errors),
        Resource::Gateway(g) => gateway::gateway(g, &mut errors),
        Resource::ExternalService(e) => external_service::external_service(e, &mut errors),
        Resource::PeerAuthentication(p) => peer_authentication::peer_authentication(p, &mut errors),
        Resource::AccessPolicy(p) => access_policy::access_policy(p, &mut errors),
        Resource::ProxyScope(p) => proxy_scope::proxy_scope(p, &mut errors),
        Resource::ExtAuthPolicy(p) => ext_auth_policy::ext_auth_policy(p, &mut errors),
        Resource::RateLimitPolicy(p) => rate_limit_policy::rate_limit_policy(p, &mut errors),
        Resource::EnvoyPatchPolicy(p) => envoy_patch_policy::envoy_patch_policy(p, &mut errors),
        Resource::RequestAuthentication(r) => {
            request_authentication::request_authentication(r, &mut errors)
        }
        Resource::Secret(s) => secret::secret(s, &mut errors),
        Resource::Namespace(_) | Resource::ServiceAccount(_) => {}
        Resource::GatewayClass(c) => gateway_api::gateway_class(c, &mut errors),
        Resource::ApiGateway(g) => gateway_api::gateway(g, &mut errors),
        Resource::HttpRoute(r) => gateway_api::http_route(r, &mut errors),
        Resource::ReferenceGrant(g) => gateway_api::reference_grant(g, &mut errors),
        Resource::GrpcRoute(r) => gateway_api::grpc_route(r, &mut errors),
        Resource::TlsRoute(r) => gateway_api::tls_route(r, &mut errors),
        Resource::TcpRoute(r) => gateway_api::tcp_route(r, &mut errors),
        Resource::UdpRoute(r) => gateway_api::udp_route(r, &mut errors),
        Resource::BackendTlsPolicy(p) => gateway_api::backend_tls_policy(p, &mut errors),
        Resource::ListenerSet(l) => gateway_api::listener_set(l, &mut errors),
        Resource::ConfigMap(c) => gateway_api::ca_config_map(c, &mut errors),
    }
    errors.0
}

/// Errors collected while validating one object.
#[derive(Default)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    pub(crate) fn push(&mut self, path: FieldPath, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }
}

/// `spec`.
fn spec_path() -> FieldPath {
    FieldPath::root().field("spec")
}

/// `metadata.name` of a custom resource: a DNS subdomain, as Kubernetes requires.
fn object_name(meta_name: Option<&str>, errors: &mut Errors) {
    let path = FieldPath::root().field("metadata").field("name");
    match meta_name {
        Some(n) if is_dns_name(n) => {}
        Some(n) => errors.push(
            path,
            format!("{n:?} is not a DNS name: dot-separated lower-case labels of letters, digits and '-', at most 253 characters"),
        ),
        None => errors.push(path, "required"),
    }
}

/// "exactly one of a, b, c is required, found a and b".
fn exactly_one(path: FieldPath, fields: &[(&str, bool)], errors: &mut Errors) {
    let found: Vec<&str> = fields
        .iter()
        .filter(|(_, set)| *set)
        .map(|(n, _)| *n)
        .collect();
    if found.len() == 1 {
        return;
    }
    let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
    let found = match found.as_slice() {
        [] => "none".to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    };
    errors.push(
        path,
        format!(
            "exactly one of {} is required, found {found}",
            names.join(", ")
        ),
    );
}

fn duration(value: Option<&str>, path: FieldPath, errors: &mut Errors) {
    if let Some(v) = value
        && let Err(e) = parse_duration(v)
    {
        errors.push(path, e);
    }
}

fn regex(value: &str, path: FieldPath, errors: &mut Errors) {
    if let Err(e) = regex::Regex::new(value) {
        let detail = e.to_string();
        let detail = detail
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .trim()
            .trim_start_matches("error: ");
        errors.push(
            path,
            format!("{value:?} is not a valid regular expression (RE2 syntax): {detail}"),
        );
    }
}

fn percentage(value: Option<f64>, path: FieldPath, errors: &mut Errors) {
    if let Some(p) = value
        && !(0.0..=100.0).contains(&p)
    {
        errors.push(path, format!("{p} is not a percentage: must be 0-100"));
    }
}

/// An optional port (`i32` in the CRDs).
fn opt_port(port: Option<i32>, path: FieldPath, errors: &mut Errors) {
    if let Some(p) = port {
        self::core::port_number(p, path, errors);
    }
}

fn port(port: i32, path: FieldPath, errors: &mut Errors) {
    self::core::port_number(port, path, errors);
}

/// A non-negative count that fits a u32.
fn count(value: Option<i64>, min: i64, path: FieldPath, errors: &mut Errors) {
    if let Some(v) = value
        && !(min..=i64::from(u32::MAX)).contains(&v)
    {
        errors.push(
            path,
            format!("{v} is out of range: must be {min}-{}", u32::MAX),
        );
    }
}

/// RFC 7230 token: what HTTP allows as a header name.
pub fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn header_name(name: &str, path: FieldPath, errors: &mut Errors) {
    if !is_header_name(name) {
        errors.push(
            path,
            format!("{name:?} is not a header name: letters, digits and !#$%&'*+-.^_`|~"),
        );
    }
}

/// A DNS name, optionally with a leading `*.` wildcard label.
pub fn is_wildcard_dns_name(s: &str) -> bool {
    is_dns_name(s.strip_prefix("*.").unwrap_or(s))
}

fn host_name(host: &str, wildcard: bool, path: FieldPath, errors: &mut Errors) {
    let ok = if wildcard {
        is_wildcard_dns_name(host)
    } else {
        is_dns_name(host)
    };
    if !ok {
        let allowed = if wildcard {
            "lower-case DNS name, optionally starting with \"*.\""
        } else {
            "lower-case DNS name (dot-separated labels of letters, digits and '-')"
        };
        errors.push(
            path,
            format!("{host:?} is not a host name: must be a {allowed}"),
        );
    }
}

fn dns_label(value: &str, what: &str, path: FieldPath, errors: &mut Errors) {
    if !is_dns_label(value) {
        errors.push(
            path,
            format!("{value:?} is not a valid {what}: a DNS label (lower-case letters, digits and '-', 1-63 characters)"),
        );
    }
}

fn destination(dest: &Destination, path: FieldPath, errors: &mut Errors) {
    host_name(&dest.host, false, path.field("host"), errors);
    opt_port(dest.port, path.field("port"), errors);
    if let Some(s) = &dest.subset {
        dns_label(s, "subset name", path.field("subset"), errors);
    }
}

/// exact | prefix | regex, each checked.
fn string_match(m: &StringMatch, path: FieldPath, errors: &mut Errors) {
    exactly_one(
        path.clone(),
        &[
            ("exact", m.exact.is_some()),
            ("prefix", m.prefix.is_some()),
            ("regex", m.regex.is_some()),
        ],
        errors,
    );
    if let Some(r) = &m.regex {
        regex(r, path.field("regex"), errors);
    }
}

/// Reports duplicates in `items` (by `key`) at `path[i].field` (`path[i]` for an empty field).
fn unique<'a, T>(
    items: &'a [T],
    key: impl Fn(&'a T) -> String,
    path: &FieldPath,
    field: &str,
    what: &str,
    errors: &mut Errors,
) {
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let k = key(item);
        if !seen.insert(k.clone()) {
            let p = if field.is_empty() {
                path.index(i)
            } else {
                path.index(i).field(field)
            };
            errors.push(p, format!("duplicate {what} {k:?}"));
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::validate;
    use crate::resource::Resource;
    use serde_json::Value;

    /// The rendered errors of a document, which must decode.
    pub fn errors_of(doc: Value) -> Vec<String> {
        let r = Resource::decode(doc.clone())
            .unwrap_or_else(|e| panic!("{doc} does not decode: {e}"))
            .expect("is read");
        validate(&r).iter().map(ToString::to_string).collect()
    }

    /// Checks each `(spec, errors)` case of one kind.
    pub fn table(api_version: &str, kind: &str, cases: &[(Value, &[&str])]) {
        for (spec, want) in cases {
            let doc = serde_json::json!({
                "apiVersion": api_version, "kind": kind,
                "metadata": {"name": "x", "namespace": "default"}, "spec": spec
            });
            assert_eq!(errors_of(doc), *want, "for {spec}");
        }
    }
}

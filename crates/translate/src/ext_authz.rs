//! ExtAuthPolicies as Envoy `envoy.filters.http.ext_authz` filters: one filter per policy in
//! the HTTP connection manager of each listener it applies to, named
//! `envoy.filters.http.ext_authz/{namespace}/{name}`. A policy on a whole listener is enabled
//! there; a policy on routes is disabled in the connection manager and enabled by those routes'
//! per-filter config (see [`crate::filters::enabled_on_route`]). A route whose policy is
//! `disabled: true` (or that another policy overrides) turns the listener's filter off with
//! `ExtAuthzPerRoute { disabled: true }`.
//!
//! Pure functions from the model ([`portolan_model::edge`]) to Envoy protos; the cluster of the
//! authorization service is resolved by the caller.

use crate::cluster::duration;
use crate::filters::http_filter;
use envoy_types::pb::envoy::config::core::v3::{
    ApiVersion, GrpcService, HttpUri, grpc_service, http_uri,
};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    AuthorizationRequest, AuthorizationResponse, BufferSettings, CheckSettings, ExtAuthz,
    ExtAuthzPerRoute, HttpService, ext_authz, ext_authz_per_route,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    ListStringMatcher, StringMatcher, string_matcher::MatchPattern,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;
use portolan_api::ObjectRef;
use portolan_model::edge::{AuthService, ExtAuth, HttpAuth};

/// Well-known name of the external authorization HTTP filter.
pub(crate) const EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";

/// The status a fail-closed filter answers when the service cannot: 403, as Envoy's default.
const STATUS_ON_ERROR: i32 = 403;

/// `envoy.filters.http.ext_authz/{namespace}/{name}`: the filter of one policy.
pub(crate) fn filter_name(policy: &ObjectRef) -> String {
    format!("{EXT_AUTHZ}/{}/{}", policy.namespace, policy.name)
}

/// The filter of a policy that names a service, talking to `cluster`; `enabled`: on for every
/// route of the listener (else only on routes that enable it). `None` for a disabled policy.
pub(crate) fn http_filter_for(
    policy: &ExtAuth,
    cluster: &str,
    enabled: bool,
) -> Option<HttpFilter> {
    let service = policy.service.as_ref()?;
    let mut filter = http_filter(
        &filter_name(policy.source()),
        pack_any(config(policy, service, cluster)),
    );
    filter.disabled = !enabled;
    Some(filter)
}

/// The filter's configuration.
pub(crate) fn config(policy: &ExtAuth, service: &AuthService, cluster: &str) -> ExtAuthz {
    let services = match service {
        AuthService::Grpc(dest) => ext_authz::Services::GrpcService(GrpcService {
            timeout: Some(duration(policy.timeout)),
            target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                grpc_service::EnvoyGrpc {
                    cluster_name: cluster.to_string(),
                    // Envoy's default `:authority` is the cluster name, whose `|` strict
                    // HTTP/2 servers refuse.
                    authority: dest.host.clone(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
        AuthService::Http(http) => {
            ext_authz::Services::HttpService(http_service(policy, http, cluster))
        }
    };
    ExtAuthz {
        transport_api_version: ApiVersion::V3 as i32,
        failure_mode_allow: policy.fail_open,
        with_request_body: policy.body.map(|b| BufferSettings {
            max_request_bytes: b.max_bytes,
            allow_partial_message: b.allow_partial,
            ..Default::default()
        }),
        status_on_error: Some(HttpStatus {
            code: STATUS_ON_ERROR,
        }),
        allowed_headers: exact_names(&policy.allowed_headers),
        stat_prefix: stat_prefix(policy.source()),
        services: Some(services),
        ..Default::default()
    }
}

fn http_service(policy: &ExtAuth, http: &HttpAuth, cluster: &str) -> HttpService {
    let port = http
        .destination
        .port
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    HttpService {
        server_uri: Some(HttpUri {
            uri: format!("http://{}{port}", http.destination.host),
            timeout: Some(duration(policy.timeout)),
            http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(cluster.to_string())),
        }),
        path_prefix: http.path_prefix.clone(),
        authorization_request: Some(AuthorizationRequest::default()),
        authorization_response: Some(AuthorizationResponse {
            allowed_upstream_headers: exact_names(&http.headers_to_upstream),
            allowed_client_headers: exact_names(&http.headers_to_client),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Stats under `http.<hcm prefix>.ext_authz.{namespace}_{name}.`.
fn stat_prefix(policy: &ObjectRef) -> String {
    format!("{}_{}", policy.namespace, policy.name)
}

/// Case-insensitive exact matches of header names (none: `None`, Envoy's default set).
fn exact_names(names: &[String]) -> Option<ListStringMatcher> {
    (!names.is_empty()).then(|| ListStringMatcher {
        patterns: names
            .iter()
            .map(|n| StringMatcher {
                match_pattern: Some(MatchPattern::Exact(n.clone())),
                ignore_case: true,
            })
            .collect(),
    })
}

/// Per-route config that enables a policy's filter (disabled in the connection manager) on
/// one route.
pub(crate) fn enabled_on_route() -> Any {
    crate::filters::enabled_on_route(pack_any(ExtAuthzPerRoute {
        r#override: Some(ext_authz_per_route::Override::CheckSettings(
            CheckSettings::default(),
        )),
    }))
}

/// Per-route config that turns an enabled ext_authz filter off for one route.
pub(crate) fn disabled_on_route() -> Any {
    pack_any(ExtAuthzPerRoute {
        r#override: Some(ext_authz_per_route::Override::Disabled(true)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use portolan_api::Kind;
    use portolan_model::edge::{BodySettings, DEFAULT_AUTH_TIMEOUT};
    use portolan_model::policy_attach::PolicyMeta;
    use portolan_model::routing::Destination;

    fn mk_policy(service: Option<AuthService>) -> ExtAuth {
        ExtAuth {
            meta: PolicyMeta {
                source: ObjectRef::new(Kind::ExtAuthPolicy, "shop", "authz"),
                generation: 1,
                created: None,
                targets: vec![],
            },
            service,
            allowed_headers: vec!["x-user".into()],
            timeout: DEFAULT_AUTH_TIMEOUT,
            fail_open: true,
            body: Some(BodySettings {
                max_bytes: 1024,
                allow_partial: false,
            }),
        }
    }

    fn dest(host: &str, port: u16) -> Destination {
        Destination {
            host: host.into(),
            port: Some(port),
            subset: None,
        }
    }

    #[test]
    fn grpc_and_http_services() {
        let grpc = mk_policy(Some(AuthService::Grpc(dest("authz", 9000))));
        let f = http_filter_for(&grpc, "outbound|9000||authz.shop.svc.cluster.local", false)
            .expect("a filter");
        assert_eq!(f.name, "envoy.filters.http.ext_authz/shop/authz");
        assert!(f.disabled);
        let c = config(&grpc, grpc.service.as_ref().expect("service"), "c");
        assert!(c.failure_mode_allow);
        assert_eq!(c.with_request_body.map(|b| b.max_request_bytes), Some(1024));
        assert!(matches!(
            c.services,
            Some(ext_authz::Services::GrpcService(_))
        ));
        let http = mk_policy(Some(AuthService::Http(HttpAuth {
            destination: dest("authz", 8080),
            path_prefix: "/check".into(),
            headers_to_upstream: vec!["x-auth-user".into()],
            headers_to_client: vec![],
        })));
        let c = config(&http, http.service.as_ref().expect("service"), "c");
        let Some(ext_authz::Services::HttpService(s)) = c.services else {
            panic!("not http")
        };
        assert_eq!(s.path_prefix, "/check");
        assert_eq!(
            s.server_uri.map(|u| u.uri),
            Some("http://authz:8080".into())
        );
        let resp = s.authorization_response.expect("response");
        assert_eq!(
            resp.allowed_upstream_headers.map(|m| m.patterns.len()),
            Some(1)
        );
        assert!(resp.allowed_client_headers.is_none());
    }

    #[test]
    fn a_disabled_policy_has_no_filter() {
        assert!(http_filter_for(&mk_policy(None), "c", true).is_none());
    }
}

//! RequestAuthentications as Envoy's `envoy.filters.http.jwt_authn`.
//!
//! A listener whose routes (or inbound side) some RequestAuthentication reaches gets one
//! jwt_authn filter, first in its HTTP filter chain. Its providers are every provider of
//! those policies, named `NS/POLICY/PROVIDER`; its `requirement_map` holds one requirement
//! per policy (named `NS/POLICY`): a token of one of the allowed providers, or with
//! `optional`, no token at all (`allow_missing`; a token that is present must still be
//! valid). Gateway routes select their policy's requirement with per-route config
//! ([`per_route`]); routes no policy reaches carry none, and the filter lets them through.
//! The inbound listener (a Service target) requires its policy for every request.
//!
//! A verified token's payload is written to dynamic metadata under the filter's name, key
//! [`PAYLOAD_KEY`], where AccessPolicy claim and request-principal rules read it
//! ([`crate::rbac`]).
//!
//! A refused token gets 401, including one whose audience is not allowed, which jwt_authn
//! itself answers with 403: each provider writes its failure to dynamic metadata (key
//! [`FAILURE_KEY`]), and a connection manager with the filter maps a 403 whose failure
//! message is jwt_authn's audience one to 401 ([`apply_local_reply`]). Other 403s (an
//! AccessPolicy's RBAC, ext_authz) are untouched, even when a missing optional token left a
//! failure in the metadata.
//!
//! A remote JWKS is fetched through a cluster named `jwks|HOST|PORT` (`jwks-tls|...` for
//! https, verified against the system's CA certificates with SNI `HOST`); [`clusters`] makes
//! them for the policies a group uses.
//!
//! `providers` and `requirement_map` are protobuf maps, which the generated types keep in a
//! `HashMap`: the filter config is encoded one map entry at a time in sorted order and the
//! pieces concatenated (protobuf merges concatenated messages, appending map entries), so
//! the bytes, and the resource version, do not change from one translation to the next.

use crate::cluster::duration;
use crate::external::lb_endpoint;
use envoy_types::pb::envoy::config::accesslog::v3::access_log_filter::FilterSpecifier;
use envoy_types::pb::envoy::config::accesslog::v3::{
    AccessLogFilter, AndFilter, ComparisonFilter, MetadataFilter, StatusCodeFilter,
    comparison_filter,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, LbPolicy,
};
use envoy_types::pb::envoy::config::core::v3::RuntimeUInt32;
use envoy_types::pb::envoy::config::core::v3::{HttpUri, TransportSocket, http_uri};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use envoy_types::pb::envoy::config::route::v3::{RouteMatch, route_match};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3 as pb;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, LocalReplyConfig, ResponseMapper,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, UpstreamTlsContext,
    certificate_validation_context::SystemRootCerts, common_tls_context::ValidationContextType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    MetadataMatcher, StringMatcher, ValueMatcher, metadata_matcher, string_matcher, value_matcher,
};
use envoy_types::pb::google::protobuf::{Any, BoolValue, UInt32Value};
use envoy_types::util::pack_any;
use portolan_api::ObjectRef;
use portolan_model::World;
use portolan_model::jwt::{Jwks, JwtProvider, RequestAuthentication};
use portolan_model::policy_attach::Reach;
use prost::{Message, Name};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

/// Well-known name of the JWT authentication HTTP filter.
pub(crate) const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";

/// The dynamic metadata key (under [`JWT_AUTHN`]) of a verified token's payload.
pub(crate) const PAYLOAD_KEY: &str = "payload";

/// The dynamic metadata key (under [`JWT_AUTHN`]) of a token's verification failure
/// (`{code, message}`).
pub(crate) const FAILURE_KEY: &str = "failure";

/// jwt_authn's failure message for a token whose audience is not allowed (the only failure it
/// answers with 403).
const AUDIENCE_NOT_ALLOWED: &str = "Audiences in Jwt are not allowed";

/// The RequestAuthentications one listener uses, by source object.
#[derive(Clone, Debug, Default)]
pub(crate) struct JwtUse {
    pub policies: BTreeMap<ObjectRef, Arc<RequestAuthentication>>,
}

// === impl JwtUse ===

impl JwtUse {
    /// The policy that applies given `candidates` (most specific first), recorded as used.
    pub(crate) fn effective(&mut self, world: &World, candidates: &[Reach]) -> Option<String> {
        let source = world.jwt.effective(candidates)?;
        let policy = world.request_authentications.get(source)?;
        self.policies.insert(source.clone(), policy.clone());
        Some(requirement_name(source))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Adds another listener's policies (for the group's JWKS clusters).
    pub(crate) fn extend(&mut self, other: &JwtUse) {
        self.policies.extend(other.policies.clone());
    }

    pub(crate) fn sources(&self) -> impl Iterator<Item = ObjectRef> + '_ {
        self.policies.keys().cloned()
    }
}

/// `NS/POLICY`: the requirement of one policy.
pub(crate) fn requirement_name(policy: &ObjectRef) -> String {
    format!("{}/{}", policy.namespace, policy.name)
}

fn provider_name(policy: &ObjectRef, provider: &JwtProvider) -> String {
    format!("{}/{}/{}", policy.namespace, policy.name, provider.name)
}

/// Per-route config selecting `requirement` (a [`requirement_name`]).
pub(crate) fn per_route(requirement: String) -> (String, Any) {
    let config = pb::PerRouteConfig {
        requirement_specifier: Some(pb::per_route_config::RequirementSpecifier::RequirementName(
            requirement,
        )),
    };
    (JWT_AUTHN.to_string(), pack_any(config))
}

/// The jwt_authn filter for the policies of `used`; `require` names a requirement applied to
/// every request (the inbound listener) instead of per route. `None` when `used` is empty.
pub(crate) fn filter(used: &JwtUse, require: Option<&str>) -> Option<HttpFilter> {
    if used.is_empty() {
        return None;
    }
    let mut base = pb::JwtAuthentication::default();
    if let Some(name) = require {
        base.rules = vec![pb::RequirementRule {
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                ..Default::default()
            }),
            requirement_type: Some(pb::requirement_rule::RequirementType::RequirementName(
                name.to_string(),
            )),
        }];
    }
    let mut bytes = base.encode_to_vec();
    for (source, policy) in &used.policies {
        for p in &policy.providers {
            let entry = pb::JwtAuthentication {
                providers: HashMap::from([(provider_name(source, p), provider(p))]),
                ..Default::default()
            };
            entry.encode(&mut bytes).unwrap_or_default();
        }
        let entry = pb::JwtAuthentication {
            requirement_map: HashMap::from([(requirement_name(source), requirement(policy))]),
            ..Default::default()
        };
        entry.encode(&mut bytes).unwrap_or_default();
    }
    let config = Any {
        type_url: pb::JwtAuthentication::type_url(),
        value: bytes,
    };
    Some(crate::filters::http_filter(JWT_AUTHN, config))
}

/// Gives a connection manager that has the jwt_authn filter a local reply mapper turning
/// jwt_authn's 403 for a token of a wrong audience into 401 (a 403 whose dynamic metadata
/// carries that failure; `match_if_key_not_found: false`, so no other 403 matches).
pub(crate) fn apply_local_reply(hcm: &mut HttpConnectionManager) {
    if !hcm.http_filters.iter().any(|f| f.name == JWT_AUTHN) {
        return;
    }
    let forbidden = AccessLogFilter {
        filter_specifier: Some(FilterSpecifier::StatusCodeFilter(StatusCodeFilter {
            comparison: Some(ComparisonFilter {
                op: comparison_filter::Op::Eq as i32,
                value: Some(RuntimeUInt32 {
                    default_value: 403,
                    runtime_key: "portolan.jwt_audience_status".to_string(),
                }),
            }),
        })),
    };
    let audience = AccessLogFilter {
        filter_specifier: Some(FilterSpecifier::MetadataFilter(MetadataFilter {
            matcher: Some(MetadataMatcher {
                filter: JWT_AUTHN.to_string(),
                path: [FAILURE_KEY, "message"]
                    .map(|key| metadata_matcher::PathSegment {
                        segment: Some(metadata_matcher::path_segment::Segment::Key(
                            key.to_string(),
                        )),
                    })
                    .to_vec(),
                value: Some(ValueMatcher {
                    match_pattern: Some(value_matcher::MatchPattern::StringMatch(StringMatcher {
                        match_pattern: Some(string_matcher::MatchPattern::Exact(
                            AUDIENCE_NOT_ALLOWED.to_string(),
                        )),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            match_if_key_not_found: Some(BoolValue { value: false }),
        })),
    };
    let mapper = ResponseMapper {
        filter: Some(AccessLogFilter {
            filter_specifier: Some(FilterSpecifier::AndFilter(AndFilter {
                filters: vec![forbidden, audience],
            })),
        }),
        status_code: Some(UInt32Value { value: 401 }),
        ..Default::default()
    };
    hcm.local_reply_config
        .get_or_insert_with(LocalReplyConfig::default)
        .mappers
        .push(mapper);
}

fn provider(p: &JwtProvider) -> pb::JwtProvider {
    let jwks = match &p.jwks {
        Jwks::Remote {
            uri,
            host,
            port,
            tls,
            cache_duration,
            timeout,
        } => pb::jwt_provider::JwksSourceSpecifier::RemoteJwks(pb::RemoteJwks {
            http_uri: Some(HttpUri {
                uri: uri.clone(),
                timeout: Some(duration(*timeout)),
                http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(cluster_name(
                    host, *port, *tls,
                ))),
            }),
            cache_duration: Some(duration(*cache_duration)),
            ..Default::default()
        }),
        Jwks::Local(inline) => {
            pb::jwt_provider::JwksSourceSpecifier::LocalJwks(crate::tls::inline(inline))
        }
    };
    let (from_headers, from_params) =
        if p.from_headers.is_empty() && p.from_params.is_empty() && p.from_cookies.is_empty() {
            // Envoy's own default (Authorization: Bearer, access_token), written out.
            (
                vec![pb::JwtHeader {
                    name: "Authorization".into(),
                    value_prefix: "Bearer ".into(),
                }],
                vec!["access_token".to_string()],
            )
        } else {
            let headers = p.from_headers.iter().map(|(name, prefix)| pb::JwtHeader {
                name: name.clone(),
                value_prefix: prefix.clone().unwrap_or_default(),
            });
            (headers.collect(), p.from_params.clone())
        };
    pb::JwtProvider {
        issuer: p.issuer.clone(),
        audiences: p.audiences.clone(),
        forward: p.forward_token,
        from_headers,
        from_params,
        from_cookies: p.from_cookies.clone(),
        payload_in_metadata: PAYLOAD_KEY.to_string(),
        failed_status_in_metadata: FAILURE_KEY.to_string(),
        claim_to_headers: p
            .claim_to_headers
            .iter()
            .map(|(claim, header)| pb::JwtClaimToHeader {
                header_name: header.clone(),
                claim_name: claim.clone(),
                ..Default::default()
            })
            .collect(),
        jwks_source_specifier: Some(jwks),
        ..Default::default()
    }
}

/// A token of one of the allowed providers (or, optional, none).
fn requirement(policy: &RequestAuthentication) -> pb::JwtRequirement {
    let source = policy.source();
    let mut any: Vec<pb::JwtRequirement> = policy
        .allowed()
        .map(|p| pb::JwtRequirement {
            requires_type: Some(pb::jwt_requirement::RequiresType::ProviderName(
                provider_name(source, p),
            )),
        })
        .collect();
    if policy.requirement.optional {
        any.push(pb::JwtRequirement {
            requires_type: Some(pb::jwt_requirement::RequiresType::AllowMissing(
                Default::default(),
            )),
        });
    }
    if any.len() == 1 {
        return any.pop().unwrap_or_default();
    }
    pb::JwtRequirement {
        requires_type: Some(pb::jwt_requirement::RequiresType::RequiresAny(
            pb::JwtRequirementOrList { requirements: any },
        )),
    }
}

fn cluster_name(host: &str, port: u16, tls: bool) -> String {
    let prefix = if tls { "jwks-tls" } else { "jwks" };
    format!("{prefix}|{host}|{port}")
}

/// One cluster per remote JWKS host and port the policies of `used` fetch from.
pub(crate) fn clusters(used: &JwtUse, connect_timeout: std::time::Duration) -> Vec<Cluster> {
    let mut hosts = BTreeSet::new();
    for policy in used.policies.values() {
        for p in &policy.providers {
            if let Jwks::Remote {
                host, port, tls, ..
            } = &p.jwks
            {
                hosts.insert((host.clone(), *port, *tls));
            }
        }
    }
    hosts
        .into_iter()
        .map(|(host, port, tls)| jwks_cluster(&host, port, tls, connect_timeout))
        .collect()
}

fn jwks_cluster(host: &str, port: u16, tls: bool, connect_timeout: std::time::Duration) -> Cluster {
    let name = cluster_name(host, port, tls);
    let kind = if host.parse::<IpAddr>().is_ok() {
        DiscoveryType::Static
    } else {
        DiscoveryType::LogicalDns
    };
    Cluster {
        name: name.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(kind as i32)),
        connect_timeout: Some(duration(connect_timeout)),
        lb_policy: LbPolicy::RoundRobin as i32,
        dns_lookup_family: DnsLookupFamily::V4Preferred as i32,
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name,
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![lb_endpoint(host, port)],
                ..Default::default()
            }],
            ..Default::default()
        }),
        transport_socket: tls.then(|| tls_socket(host)),
        ..Default::default()
    }
}

/// TLS to a JWKS server: SNI `host`, verified against the system's CA certificates.
fn tls_socket(host: &str) -> TransportSocket {
    let context = UpstreamTlsContext {
        sni: host.to_string(),
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: Some(ValidationContextType::ValidationContext(
                CertificateValidationContext {
                    system_root_certs: Some(SystemRootCerts::default()),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(
            envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
                pack_any(context),
            ),
        ),
    }
}

#[cfg(test)]
mod local_reply_tests {
    use super::*;

    fn hcm_with(filters: &[&str]) -> HttpConnectionManager {
        HttpConnectionManager {
            http_filters: filters
                .iter()
                .map(|name| crate::filters::http_filter(name, Any::default()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_connection_manager_with_jwt_authn_maps_the_audience_403_to_401() {
        let mut without = hcm_with(&["envoy.filters.http.router"]);
        apply_local_reply(&mut without);
        assert_eq!(without.local_reply_config, None);

        let mut with = hcm_with(&[JWT_AUTHN, "envoy.filters.http.router"]);
        apply_local_reply(&mut with);
        let mappers = with
            .local_reply_config
            .expect("a local reply config")
            .mappers;
        assert_eq!(mappers.len(), 1);
        assert_eq!(mappers[0].status_code, Some(UInt32Value { value: 401 }));
        let Some(FilterSpecifier::AndFilter(and)) = mappers[0]
            .filter
            .as_ref()
            .and_then(|f| f.filter_specifier.clone())
        else {
            panic!("an and filter: {:?}", mappers[0].filter);
        };
        let [status, metadata] = and.filters.as_slice() else {
            panic!("two filters: {and:?}");
        };
        assert!(matches!(
            &status.filter_specifier,
            Some(FilterSpecifier::StatusCodeFilter(s))
                if s.comparison.as_ref().and_then(|c| c.value.as_ref()).map(|v| v.default_value) == Some(403)
        ));
        let Some(FilterSpecifier::MetadataFilter(m)) = &metadata.filter_specifier else {
            panic!("a metadata filter: {metadata:?}");
        };
        assert_eq!(
            m.match_if_key_not_found,
            Some(BoolValue { value: false }),
            "a 403 without a JWT failure (RBAC, ext_authz) must not match"
        );
    }
}

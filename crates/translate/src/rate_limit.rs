//! RateLimitPolicies as Envoy filters:
//!
//! * local limits: one `envoy.filters.http.local_ratelimit` filter per HTTP connection manager.
//!   A policy on a whole listener is its token bucket (one bucket for the listener); a policy on
//!   routes gives each of their Envoy routes its own bucket through per-route config.
//! * global limits: one `envoy.filters.http.ratelimit/{namespace}/{name}` filter per policy,
//!   holding the rate limit service, the domain, the failure mode and the descriptors
//!   (`rate_limits`, built from request headers, the client address, the path, fixed values
//!   and JWT claims). Enabled on the listener or per route like ext_authz.
//!
//! Pure functions from [`portolan_model::edge`] to Envoy protos.

use crate::cluster::duration;
use crate::filters::http_filter;
use envoy_types::pb::envoy::config::core::v3::{
    ApiVersion, GrpcService, HeaderValue, HeaderValueOption, RuntimeFractionalPercent, grpc_service,
};
use envoy_types::pb::envoy::config::ratelimit::v3::RateLimitServiceConfig;
use envoy_types::pb::envoy::config::route::v3::{RateLimit as EnvoyRateLimit, rate_limit};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::XRateLimitHeadersRfcVersion;
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::extensions::filters::http::ratelimit::v3::{
    RateLimit as RateLimitFilter, RateLimitPerRoute, rate_limit as rate_limit_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use envoy_types::pb::envoy::r#type::metadata::v3::{
    MetadataKey, metadata_key::PathSegment, metadata_key::path_segment::Segment,
};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, TokenBucket};
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use envoy_types::util::pack_any;
use portolan_api::ObjectRef;
use portolan_model::edge::{DescriptorEntry, GlobalLimit, LocalLimit};

/// Well-known name of the local rate limit HTTP filter.
pub(crate) const LOCAL_RATE_LIMIT: &str = "envoy.filters.http.local_ratelimit";

/// Well-known name of the (global) rate limit HTTP filter.
pub(crate) const RATE_LIMIT: &str = "envoy.filters.http.ratelimit";

/// Stat prefix of the local rate limit filter (`http.<hcm>.local_rate_limit.*` ... as Envoy
/// names them: `<prefix>.http_local_rate_limit.*`).
const LOCAL_STAT_PREFIX: &str = "local_rate_limit";

/// The local rate limit filter of a connection manager: with `listener`'s bucket when a policy
/// covers the whole listener; otherwise disabled (routes with a policy enable it with theirs).
pub(crate) fn local_filter(listener: Option<&LocalLimit>) -> HttpFilter {
    let config = match listener {
        Some(limit) => local_config(limit),
        None => LocalRateLimit {
            stat_prefix: LOCAL_STAT_PREFIX.to_string(),
            ..Default::default()
        },
    };
    let mut filter = http_filter(LOCAL_RATE_LIMIT, pack_any(config));
    filter.disabled = listener.is_none();
    filter
}

/// A token bucket enforced on every request it sees.
pub(crate) fn local_config(limit: &LocalLimit) -> LocalRateLimit {
    let headers = match limit.response_headers {
        true => XRateLimitHeadersRfcVersion::DraftVersion03,
        false => XRateLimitHeadersRfcVersion::Off,
    };
    LocalRateLimit {
        stat_prefix: LOCAL_STAT_PREFIX.to_string(),
        token_bucket: Some(TokenBucket {
            max_tokens: limit.max_tokens,
            tokens_per_fill: Some(UInt32Value {
                value: limit.tokens_per_fill,
            }),
            fill_interval: Some(duration(limit.fill_interval)),
        }),
        filter_enabled: Some(all_requests("local_rate_limit_enabled")),
        filter_enforced: Some(all_requests("local_rate_limit_enforced")),
        response_headers_to_add: vec![HeaderValueOption {
            header: Some(HeaderValue {
                key: "x-local-rate-limit".to_string(),
                value: "true".to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        enable_x_ratelimit_headers: headers as i32,
        ..Default::default()
    }
}

fn all_requests(runtime_key: &str) -> RuntimeFractionalPercent {
    RuntimeFractionalPercent {
        default_value: Some(FractionalPercent {
            numerator: 100,
            ..Default::default()
        }),
        runtime_key: runtime_key.to_string(),
    }
}

/// Per-route config giving one route its own bucket (enables a disabled filter).
pub(crate) fn local_on_route(limit: &LocalLimit) -> Any {
    crate::filters::enabled_on_route(pack_any(local_config(limit)))
}

/// Per-route config that enables a policy's global filter (disabled in the connection
/// manager) on one route, with the filter's own descriptors.
pub(crate) fn global_on_route() -> Any {
    crate::filters::enabled_on_route(pack_any(RateLimitPerRoute::default()))
}

/// `envoy.filters.http.ratelimit/{namespace}/{name}`: the global filter of one policy.
pub(crate) fn global_filter_name(policy: &ObjectRef) -> String {
    format!("{RATE_LIMIT}/{}/{}", policy.namespace, policy.name)
}

/// The global filter of a policy talking to the rate limit service at `cluster`; `enabled`:
/// on for every route of the listener.
pub(crate) fn global_filter(
    policy: &ObjectRef,
    limit: &GlobalLimit,
    cluster: &str,
    enabled: bool,
) -> HttpFilter {
    let mut filter = http_filter(
        &global_filter_name(policy),
        pack_any(global_config(limit, cluster)),
    );
    filter.disabled = !enabled;
    filter
}

pub(crate) fn global_config(limit: &GlobalLimit, cluster: &str) -> RateLimitFilter {
    let headers = match limit.response_headers {
        true => rate_limit_filter::XRateLimitHeadersRfcVersion::DraftVersion03,
        false => rate_limit_filter::XRateLimitHeadersRfcVersion::Off,
    };
    RateLimitFilter {
        domain: limit.domain.clone(),
        timeout: Some(duration(limit.timeout)),
        failure_mode_deny: limit.failure_mode_deny,
        rate_limit_service: Some(RateLimitServiceConfig {
            grpc_service: Some(GrpcService {
                target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                    grpc_service::EnvoyGrpc {
                        cluster_name: cluster.to_string(),
                        // Not the cluster name: its `|` is refused by strict HTTP/2 servers.
                        authority: limit.service.host.clone(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            transport_api_version: ApiVersion::V3 as i32,
        }),
        enable_x_ratelimit_headers: headers as i32,
        rate_limits: limit.descriptors.iter().map(|d| descriptor(d)).collect(),
        ..Default::default()
    }
}

/// One descriptor: its entries as rate limit actions, in order.
fn descriptor(entries: &[DescriptorEntry]) -> EnvoyRateLimit {
    EnvoyRateLimit {
        actions: entries
            .iter()
            .map(|e| rate_limit::Action {
                action_specifier: Some(action(e)),
            })
            .collect(),
        ..Default::default()
    }
}

fn action(entry: &DescriptorEntry) -> rate_limit::action::ActionSpecifier {
    use rate_limit::action::{self as a, ActionSpecifier as S};
    match entry {
        DescriptorEntry::RequestHeader { name, key } => S::RequestHeaders(a::RequestHeaders {
            header_name: name.clone(),
            descriptor_key: key.clone(),
            ..Default::default()
        }),
        DescriptorEntry::RemoteAddress => S::RemoteAddress(a::RemoteAddress {}),
        DescriptorEntry::Path { key } => S::RequestHeaders(a::RequestHeaders {
            header_name: ":path".to_string(),
            descriptor_key: key.clone(),
            ..Default::default()
        }),
        DescriptorEntry::Generic { key, value } => S::GenericKey(a::GenericKey {
            descriptor_key: key.clone(),
            descriptor_value: value.clone(),
            ..Default::default()
        }),
        DescriptorEntry::JwtClaim { claim, key } => S::Metadata(a::MetaData {
            descriptor_key: key.clone(),
            metadata_key: Some(MetadataKey {
                key: crate::jwt::JWT_AUTHN.to_string(),
                path: [crate::jwt::PAYLOAD_KEY, claim.as_str()]
                    .into_iter()
                    .map(|k| PathSegment {
                        segment: Some(Segment::Key(k.to_string())),
                    })
                    .collect(),
            }),
            source: a::meta_data::Source::Dynamic as i32,
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portolan_api::Kind;
    use portolan_model::routing::Destination;
    use std::time::Duration;

    #[test]
    fn a_listener_bucket_is_enforced_on_every_request() {
        let limit = LocalLimit {
            max_tokens: 3,
            tokens_per_fill: 3,
            fill_interval: Duration::from_secs(60),
            response_headers: true,
        };
        let f = local_filter(Some(&limit));
        assert!(!f.disabled);
        let c = local_config(&limit);
        assert_eq!(c.token_bucket.map(|b| b.max_tokens), Some(3));
        assert_eq!(
            c.filter_enforced
                .and_then(|p| p.default_value)
                .map(|v| v.numerator),
            Some(100)
        );
        assert!(local_filter(None).disabled);
    }

    #[test]
    fn descriptors_become_actions() {
        let limit = GlobalLimit {
            service: Destination {
                host: "rls".into(),
                port: Some(8081),
                subset: None,
            },
            domain: "edge".into(),
            descriptors: vec![vec![
                DescriptorEntry::RequestHeader {
                    name: "x-user".into(),
                    key: "user".into(),
                },
                DescriptorEntry::Path { key: "path".into() },
                DescriptorEntry::JwtClaim {
                    claim: "sub".into(),
                    key: "subject".into(),
                },
            ]],
            timeout: Duration::from_millis(20),
            failure_mode_deny: true,
            response_headers: true,
        };
        let policy = ObjectRef::new(Kind::RateLimitPolicy, "shop", "rl");
        let f = global_filter(&policy, &limit, "rls-cluster", true);
        assert_eq!(f.name, "envoy.filters.http.ratelimit/shop/rl");
        let c = global_config(&limit, "rls-cluster");
        assert!(c.failure_mode_deny);
        assert_eq!(c.rate_limits.len(), 1);
        assert_eq!(c.rate_limits[0].actions.len(), 3);
    }
}

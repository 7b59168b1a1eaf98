//! ExtAuthPolicy and RateLimitPolicy -> [`crate::edge`].

use super::{count, duration, port};
use crate::edge::*;
use crate::policy_attach::PolicyMeta;
use crate::routing::Destination;
use portolan_api::Resource;
use portolan_api::crd::common::Destination as ApiDestination;
use portolan_api::crd::ext_auth_policy as ea;
use portolan_api::crd::policy_target::PolicyTargetRef;
use portolan_api::crd::rate_limit_policy as rl;

fn meta(resource: &Resource, targets: &[PolicyTargetRef]) -> PolicyMeta {
    PolicyMeta {
        source: resource.object_ref(),
        generation: resource.generation(),
        created: resource
            .metadata()
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
        targets: targets.to_vec(),
    }
}

pub(super) fn ext_auth(resource: &Resource, p: &ea::ExtAuthPolicy) -> ExtAuth {
    let spec = &p.spec;
    let service = match (&spec.grpc, &spec.http) {
        _ if spec.disabled == Some(true) => None,
        (Some(g), _) => Some(AuthService::Grpc(destination(&g.service))),
        (None, Some(h)) => Some(AuthService::Http(HttpAuth {
            destination: destination(&h.service),
            path_prefix: h.path_prefix.clone().unwrap_or_default(),
            headers_to_upstream: lower(&h.headers_to_upstream),
            headers_to_client: lower(&h.headers_to_client),
        })),
        (None, None) => None,
    };
    ExtAuth {
        meta: meta(resource, &spec.target_refs),
        service,
        allowed_headers: lower(&spec.allowed_headers),
        timeout: duration(spec.timeout.as_deref()).unwrap_or(DEFAULT_AUTH_TIMEOUT),
        fail_open: spec.fail_open.unwrap_or(false),
        body: spec.include_body.as_ref().map(|b| BodySettings {
            max_bytes: count(Some(b.max_bytes)).unwrap_or(u32::MAX),
            allow_partial: b.allow_partial.unwrap_or(false),
        }),
    }
}

pub(super) fn rate_limit(resource: &Resource, p: &rl::RateLimitPolicy) -> RateLimit {
    RateLimit {
        meta: meta(resource, &p.spec.target_refs),
        local: p.spec.local.as_ref().map(local),
        global: p.spec.global.as_ref().map(global),
    }
}

fn local(l: &rl::LocalRateLimit) -> LocalLimit {
    let per_fill = count(Some(l.requests)).unwrap_or(1);
    LocalLimit {
        max_tokens: count(l.burst).unwrap_or(per_fill),
        tokens_per_fill: per_fill,
        fill_interval: duration(Some(&l.per)).unwrap_or(std::time::Duration::from_secs(1)),
        response_headers: l.response_headers.unwrap_or(true),
    }
}

fn global(g: &rl::GlobalRateLimit) -> GlobalLimit {
    GlobalLimit {
        service: destination(&g.service),
        domain: g.domain.clone(),
        descriptors: g
            .descriptors
            .iter()
            .map(|d| d.entries.iter().filter_map(entry).collect())
            .collect(),
        timeout: duration(g.timeout.as_deref()).unwrap_or(DEFAULT_RLS_TIMEOUT),
        failure_mode_deny: g.failure_mode_deny.unwrap_or(false),
        response_headers: g.response_headers.unwrap_or(true),
    }
}

fn entry(e: &rl::DescriptorEntry) -> Option<DescriptorEntry> {
    if let Some(h) = &e.request_header {
        return Some(DescriptorEntry::RequestHeader {
            name: h.name.to_ascii_lowercase(),
            key: h.key.clone(),
        });
    }
    if e.remote_address.is_some() {
        return Some(DescriptorEntry::RemoteAddress);
    }
    if let Some(p) = &e.path {
        let key = p.key.clone().unwrap_or_else(|| "path".to_string());
        return Some(DescriptorEntry::Path { key });
    }
    if let Some(g) = &e.generic {
        return Some(DescriptorEntry::Generic {
            key: g.key.clone().unwrap_or_else(|| "generic_key".to_string()),
            value: g.value.clone(),
        });
    }
    e.jwt_claim.as_ref().map(|c| DescriptorEntry::JwtClaim {
        claim: c.claim.clone(),
        key: c.key.clone(),
    })
}

fn destination(d: &ApiDestination) -> Destination {
    Destination {
        host: d.host.to_ascii_lowercase(),
        port: d.port.map(port),
        subset: d.subset.clone(),
    }
}

fn lower(names: &[String]) -> Vec<String> {
    names.iter().map(|n| n.to_ascii_lowercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::object;
    use crate::edge::*;
    use crate::types::Object;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn ext_auth_defaults_fail_closed_with_envoys_timeout() {
        let Object::ExtAuth(p) = object(json!({
            "apiVersion": "portolan.dev/v1alpha1", "kind": "ExtAuthPolicy",
            "metadata": {"name": "a", "namespace": "shop"},
            "spec": {"targetRefs": [{"group": "portolan.dev", "kind": "Gateway", "name": "edge"}],
                     "http": {"service": {"host": "authz", "port": 80}, "headersToUpstream": ["X-User"]},
                     "allowedHeaders": ["X-Tenant"]}
        })) else {
            panic!("not an ExtAuthPolicy")
        };
        assert!(!p.fail_open);
        assert_eq!(p.timeout, DEFAULT_AUTH_TIMEOUT);
        assert_eq!(p.allowed_headers, ["x-tenant"]);
        let Some(AuthService::Http(h)) = &p.service else {
            panic!("not http")
        };
        assert_eq!(
            (h.destination.host.as_str(), h.destination.port),
            ("authz", Some(80))
        );
        assert_eq!(h.headers_to_upstream, ["x-user"]);
        let Object::ExtAuth(off) = object(json!({
            "apiVersion": "portolan.dev/v1alpha1", "kind": "ExtAuthPolicy",
            "metadata": {"name": "off"},
            "spec": {"targetRefs": [{"group": "portolan.dev", "kind": "Gateway", "name": "edge"}], "disabled": true}
        })) else {
            panic!("not an ExtAuthPolicy")
        };
        assert_eq!(off.service, None);
    }

    #[test]
    fn rate_limit_buckets_and_descriptors() {
        let Object::RateLimit(p) = object(json!({
            "apiVersion": "portolan.dev/v1alpha1", "kind": "RateLimitPolicy",
            "metadata": {"name": "r"},
            "spec": {"targetRefs": [{"group": "portolan.dev", "kind": "Gateway", "name": "edge"}],
                     "local": {"requests": 3, "per": "1m"},
                     "global": {"service": {"host": "rls", "port": 8081}, "domain": "d", "descriptors": [
                        {"entries": [{"requestHeader": {"name": "X-User", "key": "user"}}, {"path": {}},
                                     {"remoteAddress": {}}, {"generic": {"value": "v"}}]}]}}
        })) else {
            panic!("not a RateLimitPolicy")
        };
        let local = p.local.expect("local");
        assert_eq!(
            (
                local.max_tokens,
                local.tokens_per_fill,
                local.fill_interval,
                local.response_headers
            ),
            (3, 3, Duration::from_secs(60), true)
        );
        let global = p.global.clone().expect("global");
        assert!(!global.failure_mode_deny);
        assert_eq!(global.timeout, DEFAULT_RLS_TIMEOUT);
        assert_eq!(
            global.descriptors,
            [vec![
                DescriptorEntry::RequestHeader {
                    name: "x-user".into(),
                    key: "user".into()
                },
                DescriptorEntry::Path { key: "path".into() },
                DescriptorEntry::RemoteAddress,
                DescriptorEntry::Generic {
                    key: "generic_key".into(),
                    value: "v".into()
                },
            ]]
        );
    }
}

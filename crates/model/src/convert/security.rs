//! PeerAuthentication and AccessPolicy -> the security model ([`crate::security`]);
//! ProxyScope -> [`crate::proxy_scope`] (selected the same way).

use super::port;
use crate::proxy_scope::{Discovery, ProxyScope};
use crate::security::*;
use portolan_api::Resource;
use portolan_api::crd::access_policy as ap;
use portolan_api::crd::common::WorkloadSelector;
use portolan_api::crd::peer_authentication as pa;
use portolan_api::crd::proxy_scope as ps;
use std::collections::BTreeMap;

pub(super) fn peer_authentication(
    resource: &Resource,
    p: &pa::PeerAuthentication,
) -> PeerAuthentication {
    PeerAuthentication {
        source: resource.object_ref(),
        generation: resource.generation(),
        selector: selector(p.spec.selector.as_ref()),
        mode: match p.spec.mtls.mode {
            pa::MtlsMode::Strict => MtlsMode::Strict,
            pa::MtlsMode::Permissive => MtlsMode::Permissive,
            pa::MtlsMode::Disable => MtlsMode::Disable,
        },
    }
}

pub(super) fn proxy_scope(resource: &Resource, p: &ps::ProxyScope) -> ProxyScope {
    ProxyScope {
        source: resource.object_ref(),
        generation: resource.generation(),
        created: resource
            .metadata()
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
        selector: selector(p.spec.selector.as_ref()),
        hosts: p.spec.hosts.clone(),
        discovery: p.spec.discovery.map(|d| match d {
            ps::DiscoveryMode::Full => Discovery::Full,
            ps::DiscoveryMode::OnDemand => Discovery::OnDemand,
        }),
    }
}

pub(super) fn access_policy(resource: &Resource, p: &ap::AccessPolicy) -> AccessPolicy {
    let source = resource.object_ref();
    let namespace = source.namespace.clone();
    AccessPolicy {
        generation: resource.generation(),
        selector: selector(p.spec.selector.as_ref()),
        action: match p.spec.action {
            ap::AccessAction::Allow => AccessAction::Allow,
            ap::AccessAction::Deny => AccessAction::Deny,
        },
        rules: p
            .spec
            .rules
            .iter()
            .map(|r| AccessRule {
                from: r
                    .from
                    .as_ref()
                    .map(|f| peers(&namespace, f))
                    .filter(|peers| !peers.is_empty()),
                to: r.to.as_ref().map(operation),
                request_principals: r
                    .from
                    .iter()
                    .flat_map(|f| &f.request_principals)
                    .map(|p| request_principal(p))
                    .collect(),
                claims: r
                    .claims
                    .iter()
                    .map(|c| ClaimCondition {
                        path: c.name.split('.').map(str::to_string).collect(),
                        values: c.values.clone(),
                    })
                    .collect(),
            })
            .collect(),
        source,
    }
}

/// `*`, `ISSUER/*` or `ISSUER/SUBJECT` (split at the last `/`).
fn request_principal(p: &str) -> RequestPrincipal {
    match p.rsplit_once('/') {
        _ if p == "*" => RequestPrincipal::Any,
        Some((issuer, "*")) => RequestPrincipal::Issuer(issuer.to_string()),
        Some((issuer, subject)) => RequestPrincipal::IssuerSubject {
            issuer: issuer.to_string(),
            subject: subject.to_string(),
        },
        None => RequestPrincipal::Any,
    }
}

fn selector(s: Option<&WorkloadSelector>) -> Option<BTreeMap<String, String>> {
    s.map(|s| s.match_labels.clone())
}

fn peers(namespace: &str, from: &ap::AccessSource) -> Vec<Peer> {
    let principals = from.principals.iter().map(|p| match p.strip_suffix('*') {
        Some(prefix) => Peer::PrincipalPrefix(prefix.to_string()),
        None => Peer::Principal(p.clone()),
    });
    let namespaces = from.namespaces.iter().cloned().map(Peer::Namespace);
    let accounts = from
        .service_accounts
        .iter()
        .map(|sa| match sa.split_once('/') {
            Some((ns, name)) => Peer::ServiceAccount {
                namespace: ns.to_string(),
                name: name.to_string(),
            },
            None => Peer::ServiceAccount {
                namespace: namespace.to_string(),
                name: sa.clone(),
            },
        });
    principals.chain(namespaces).chain(accounts).collect()
}

fn operation(to: &ap::AccessOperation) -> Operation {
    Operation {
        ports: to.ports.iter().map(|p| port(*p)).collect(),
        methods: to.methods.clone(),
        paths: to
            .paths
            .iter()
            .map(|p| {
                if p == "*" {
                    PathMatch::Any
                } else if let Some(prefix) = p.strip_suffix('*') {
                    PathMatch::Prefix(prefix.to_string())
                } else {
                    PathMatch::Exact(p.clone())
                }
            })
            .collect(),
        headers: to
            .headers
            .iter()
            .map(|h| HeaderCondition {
                name: h.name.to_ascii_lowercase(),
                value: match (&h.exact, &h.prefix) {
                    (Some(v), _) => HeaderValue::Exact(v.clone()),
                    (None, Some(v)) => HeaderValue::Prefix(v.clone()),
                    (None, None) => HeaderValue::Present,
                },
            })
            .collect(),
    }
}

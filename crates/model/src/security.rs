//! The mesh security model: mutual TLS modes (`PeerAuthentication`) and access policies
//! (`AccessPolicy`), independent of the CRD shapes, and which of them apply to a workload.
//!
//! A workload is a proxy group with an identity: its namespace and the labels of its node.
//! A selector matches when every one of its labels is on the workload; a policy without a
//! selector applies to every workload of its namespace.

use crate::world::World;
use portolan_api::ObjectRef;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Label on a Service naming the service account its workloads run as. A Service with it is
/// in the mesh: callers with an identity originate mutual TLS to it (unless its mode is
/// DISABLE) and check that the server is `spiffe://TD/ns/NS/sa/THAT`.
pub const SERVICE_ACCOUNT_LABEL: &str = "portolan.dev/service-account";

/// Whether inbound listeners require, accept or refuse mutual TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MtlsMode {
    Strict,
    #[default]
    Permissive,
    Disable,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAuthentication {
    pub source: ObjectRef,
    pub generation: i64,
    /// `None`: the whole namespace.
    pub selector: Option<BTreeMap<String, String>>,
    pub mode: MtlsMode,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessAction {
    #[default]
    Allow,
    Deny,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessPolicy {
    pub source: ObjectRef,
    pub generation: i64,
    /// `None`: the whole namespace.
    pub selector: Option<BTreeMap<String, String>>,
    pub action: AccessAction,
    /// Any rule matching makes the policy match; none: the policy matches nothing (an ALLOW
    /// policy without rules denies everything).
    pub rules: Vec<AccessRule>,
}

/// Matches when `from` matches (`None`: anyone), `to` matches (`None`: anything), the
/// request's verified JWT has one of `request_principals` (empty: no condition) and every
/// claim condition holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessRule {
    /// Any of these identities.
    pub from: Option<Vec<Peer>>,
    pub to: Option<Operation>,
    /// Any of these (HTTP only).
    pub request_principals: Vec<RequestPrincipal>,
    /// All of these (HTTP only).
    pub claims: Vec<ClaimCondition>,
}

/// Who a verified JWT names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestPrincipal {
    /// Any verified token.
    Any,
    /// Any subject of this issuer.
    Issuer(String),
    IssuerSubject {
        issuer: String,
        subject: String,
    },
}

/// A claim (by its path in the payload: `realm.role` is `["realm", "role"]`) equal to one of
/// `values`, or a list claim holding one of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimCondition {
    pub path: Vec<String>,
    pub values: Vec<String>,
}

// === impl AccessRule ===

impl AccessRule {
    /// Whether it has conditions on the request's JWT (HTTP only).
    pub fn has_jwt_fields(&self) -> bool {
        !(self.request_principals.is_empty() && self.claims.is_empty())
    }
}

/// A caller identity, by its SPIFFE ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A full SPIFFE ID.
    Principal(String),
    /// SPIFFE IDs starting with this.
    PrincipalPrefix(String),
    /// Any service account of a namespace.
    Namespace(String),
    ServiceAccount {
        namespace: String,
        name: String,
    },
}

/// Each non-empty list must match (any of its entries); headers must all match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Operation {
    pub ports: Vec<u16>,
    pub methods: Vec<String>,
    pub paths: Vec<PathMatch>,
    pub headers: Vec<HeaderCondition>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderCondition {
    pub name: String,
    pub value: HeaderValue,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderValue {
    Exact(String),
    Prefix(String),
    Present,
}

// === impl Operation ===

impl Operation {
    /// Whether it says anything only HTTP can check (methods, paths, headers).
    pub fn has_http_fields(&self) -> bool {
        !(self.methods.is_empty() && self.paths.is_empty() && self.headers.is_empty())
    }
}

/// Whether every label of `selector` is in `labels` (`None` selects everything).
pub fn selects(
    selector: Option<&BTreeMap<String, String>>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.is_none_or(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The mode of a workload: its own (selector) PeerAuthentication, else its namespace's, else
/// PERMISSIVE. Among several of one kind the first by name wins.
pub fn mtls_mode(world: &World, namespace: &str, labels: &BTreeMap<String, String>) -> MtlsMode {
    peer_authentication(world, namespace, labels).map_or(MtlsMode::default(), |p| p.mode)
}

/// The PeerAuthentication whose mode applies to a workload: the first in its namespace whose
/// selector selects it, else the namespace-wide one.
pub fn peer_authentication<'w>(
    world: &'w World,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Option<&'w Arc<PeerAuthentication>> {
    let in_ns = || {
        world
            .peer_authentications
            .values()
            .filter(move |p| p.source.namespace == namespace)
    };
    in_ns()
        .find(|p| p.selector.is_some() && selects(p.selector.as_ref(), labels))
        .or_else(|| in_ns().find(|p| p.selector.is_none()))
}

/// The namespace-wide mode of `namespace` (what callers assume for its Services).
pub fn namespace_mtls_mode(world: &World, namespace: &str) -> MtlsMode {
    world
        .peer_authentications
        .values()
        .find(|p| p.source.namespace == namespace && p.selector.is_none())
        .map_or(MtlsMode::default(), |p| p.mode)
}

/// The AccessPolicies that apply to a workload, in name order.
pub fn access_policies<'w>(
    world: &'w World,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<&'w Arc<AccessPolicy>> {
    world
        .access_policies
        .values()
        .filter(|p| p.source.namespace == namespace && selects(p.selector.as_ref(), labels))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use portolan_api::Kind;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pa(
        ns: &str,
        name: &str,
        selector: Option<&[(&str, &str)]>,
        mode: MtlsMode,
    ) -> Arc<PeerAuthentication> {
        Arc::new(PeerAuthentication {
            source: ObjectRef::new(Kind::PeerAuthentication, ns, name),
            generation: 1,
            selector: selector.map(labels),
            mode,
        })
    }

    #[test]
    fn the_workload_policy_wins_over_the_namespace_and_the_default_is_permissive() {
        let mut world = World::default();
        assert_eq!(
            mtls_mode(&world, "shop", &labels(&[])),
            MtlsMode::Permissive
        );
        for p in [
            pa("shop", "ns", None, MtlsMode::Strict),
            pa("shop", "web", Some(&[("app", "web")]), MtlsMode::Disable),
            pa("other", "ns", None, MtlsMode::Disable),
        ] {
            world.peer_authentications.insert(p.source.clone(), p);
        }
        assert_eq!(
            mtls_mode(&world, "shop", &labels(&[("app", "db")])),
            MtlsMode::Strict
        );
        assert_eq!(
            mtls_mode(&world, "shop", &labels(&[("app", "web"), ("v", "1")])),
            MtlsMode::Disable
        );
        assert_eq!(namespace_mtls_mode(&world, "shop"), MtlsMode::Strict);
        assert_eq!(
            mtls_mode(&world, "third", &labels(&[])),
            MtlsMode::Permissive
        );
    }
}

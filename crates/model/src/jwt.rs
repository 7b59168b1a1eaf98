//! JWT authentication (`RequestAuthentication`): token providers and requirements,
//! independent of the CRD shape, attached to gateways, routes and Services through
//! [`crate::policy_attach`].
//!
//! [`attach`] resolves every RequestAuthentication of a World; translation asks
//! [`crate::policy_attach::Resolution::effective`] which one applies to a route rule or a
//! workload's inbound side. [`statuses`] gives each policy its summary `Accepted` condition
//! (True when at least one target is attached) and its per-target outcomes.

use crate::policy_attach::{self, PolicyMeta, Resolution};
use crate::status::Condition;
use crate::world::World;
use portolan_api::ObjectRef;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestAuthentication {
    pub meta: PolicyMeta,
    pub providers: Vec<JwtProvider>,
    pub requirement: JwtRequirement,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtProvider {
    /// Unique within its policy.
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks: Jwks,
    /// `(header, value prefix)`.
    pub from_headers: Vec<(String, Option<String>)>,
    pub from_params: Vec<String>,
    pub from_cookies: Vec<String>,
    /// `(claim, header)`.
    pub claim_to_headers: Vec<(String, String)>,
    pub forward_token: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Jwks {
    /// Fetched by the proxy from `uri` (through a cluster to `host:port`, TLS when `tls`).
    Remote {
        uri: String,
        host: String,
        port: u16,
        tls: bool,
        cache_duration: Duration,
        timeout: Duration,
    },
    /// A JWKS JSON document.
    Local(String),
}

/// What a request must present: a valid token of one of `providers` (empty: any of the
/// policy's). `optional`: a request without a token passes too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JwtRequirement {
    pub optional: bool,
    pub providers: Vec<String>,
}

// === impl RequestAuthentication ===

impl RequestAuthentication {
    pub fn source(&self) -> &ObjectRef {
        &self.meta.source
    }

    /// The providers a request may present a token of.
    pub fn allowed(&self) -> impl Iterator<Item = &JwtProvider> {
        self.providers.iter().filter(|p| {
            self.requirement.providers.is_empty() || self.requirement.providers.contains(&p.name)
        })
    }
}

/// Resolves the targets of every RequestAuthentication of `world`.
pub fn attach(world: &World) -> Resolution {
    policy_attach::resolve(
        world,
        world.request_authentications.values().map(|r| &r.meta),
    )
}

/// The summary condition of each policy of `resolution`: `Accepted` True (reason
/// `Accepted`) when at least one target is attached, else False with the first target's
/// reason; the message lists every target's outcome.
pub fn statuses(resolution: &Resolution) -> BTreeMap<ObjectRef, Vec<Condition>> {
    resolution
        .statuses
        .iter()
        .map(|(policy, outcomes)| (policy.clone(), vec![policy_attach::summary(outcomes)]))
        .collect()
}

/// Completes a World whose objects and Gateway API compilation are in place: resolves the
/// RequestAuthentications and adds their statuses (summary conditions to `statuses`, the
/// per-target entries to `api_statuses`).
pub fn finish(world: &mut World) {
    let mut resolution = attach(world);
    policy_attach::refuse_mesh_only_routes(world, &mut resolution, "JWT authentication");
    world.statuses.extend(statuses(&resolution));
    for (policy, outcomes) in &resolution.statuses {
        let status = crate::policy_status::policy_status(world, &policy.namespace, outcomes);
        world.api_statuses.insert(
            policy.clone(),
            crate::gateway_api::ApiStatus::Policy(status),
        );
    }
    world.jwt = std::sync::Arc::new(resolution);
}

#[cfg(test)]
mod tests {
    use crate::index::Index;
    use portolan_api::{Kind, ObjectRef, Resource};
    use serde_json::json;

    fn apply(idx: &mut Index, doc: serde_json::Value) {
        let r = Resource::decode(doc).expect("decodes").expect("is read");
        assert!(portolan_api::validate::validate(&r).is_empty());
        idx.apply(crate::convert::to_object(&r));
    }

    fn policy(name: &str, target: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "RequestAuthentication",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"targetRefs": [target], "providers": [{"name": "idp", "issuer": "https://idp",
                "remoteJwks": {"uri": "https://idp:8443/keys", "timeout": "2s"}}],
                "requirement": {"mode": "Optional"}}})
    }

    #[test]
    fn converted_resolved_and_summarized() {
        let mut idx = Index::new();
        apply(
            &mut idx,
            json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
                "metadata": {"name": "mesh-only", "namespace": "shop"},
                "spec": {"hosts": ["web"], "http": [{"directResponse": {"status": 200}}]}}),
        );
        apply(
            &mut idx,
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"ports": [{"name": "http", "port": 80}]}}),
        );
        let route = json!({"group": "portolan.dev", "kind": "TrafficRoute", "name": "mesh-only"});
        let svc = json!({"group": "", "kind": "Service", "name": "web"});
        apply(&mut idx, policy("on-route", route));
        apply(&mut idx, policy("on-svc", svc));
        let w = idx.world();

        let on_svc = ObjectRef::new(Kind::RequestAuthentication, "shop", "on-svc");
        let p = &w.request_authentications[&on_svc];
        assert!(p.requirement.optional);
        match &p.providers[0].jwks {
            super::Jwks::Remote {
                host,
                port,
                tls,
                timeout,
                cache_duration,
                ..
            } => {
                assert_eq!((host.as_str(), *port, *tls), ("idp", 8443, true));
                assert_eq!(timeout.as_secs(), 2);
                assert_eq!(cache_duration.as_secs(), 300, "default cache duration");
            }
            other => panic!("{other:?}"),
        }
        assert!(w.jwt.is_attached(&on_svc));
        assert!(w.statuses[&on_svc][0].status);

        // A route attached to the mesh only is not where JWT is enforced: refused, wins nothing.
        let on_route = ObjectRef::new(Kind::RequestAuthentication, "shop", "on-route");
        let c = &w.statuses[&on_route][0];
        assert_eq!((c.status, c.reason.as_str()), (false, "Invalid"), "{c:?}");
        assert!(c.message.contains("attached to the mesh only"), "{c:?}");
        assert!(!w.jwt.is_attached(&on_route));
        assert!(matches!(
            w.api_statuses.get(&on_route),
            Some(crate::gateway_api::ApiStatus::Policy(s)) if s.ancestors.len() == 1
        ));
    }
}

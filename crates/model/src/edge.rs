//! Edge and API policies that run in the HTTP connection manager before routing: external
//! authorization ([`ExtAuth`]) and rate limits ([`RateLimit`]), independent of the CRD shapes.
//!
//! Where they apply (which Gateways, listeners and routes) is [`crate::policy_attach`]'s
//! business: [`finish`] resolves both kinds' targets into the World ([`World::ext_auth`],
//! [`World::rate_limit`]) with their statuses; translation asks
//! [`Resolution::effective`] which policy applies to a route rule.

use crate::policy_attach::{self, PolicyMeta, Resolution};
use crate::routing::Destination;
use crate::status::Condition;
use crate::world::World;
use portolan_api::ObjectRef;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Envoy's default check timeout, which Portolan keeps.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_millis(200);

/// Envoy's default rate limit service timeout, which Portolan keeps.
pub const DEFAULT_RLS_TIMEOUT: Duration = Duration::from_millis(20);

/// An ExtAuthPolicy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtAuth {
    pub meta: PolicyMeta,
    /// `None`: the policy turns authorization off for its targets.
    pub service: Option<AuthService>,
    /// Request headers sent to the service, lower-cased (empty: Envoy's default set).
    pub allowed_headers: Vec<String>,
    pub timeout: Duration,
    /// Let requests through when the service cannot answer.
    pub fail_open: bool,
    pub body: Option<BodySettings>,
}

/// The authorization service and its protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthService {
    Grpc(Destination),
    Http(HttpAuth),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpAuth {
    pub destination: Destination,
    /// Prepended to the checked request's path (empty: none).
    pub path_prefix: String,
    /// Headers of an allowing answer copied onto the upstream request, lower-cased.
    pub headers_to_upstream: Vec<String>,
    /// Headers of a denying answer returned to the client, lower-cased (empty: all).
    pub headers_to_client: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodySettings {
    pub max_bytes: u32,
    pub allow_partial: bool,
}

/// A RateLimitPolicy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub meta: PolicyMeta,
    pub local: Option<LocalLimit>,
    pub global: Option<GlobalLimit>,
}

/// A token bucket: `max_tokens` deep, `tokens_per_fill` added every `fill_interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalLimit {
    pub max_tokens: u32,
    pub tokens_per_fill: u32,
    pub fill_interval: Duration,
    /// Send `x-ratelimit-*` headers.
    pub response_headers: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalLimit {
    pub service: Destination,
    pub domain: String,
    pub descriptors: Vec<Vec<DescriptorEntry>>,
    pub timeout: Duration,
    /// Refuse requests when the service cannot answer.
    pub failure_mode_deny: bool,
    pub response_headers: bool,
}

/// Where one descriptor entry's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DescriptorEntry {
    RequestHeader { name: String, key: String },
    RemoteAddress,
    Path { key: String },
    Generic { key: String, value: String },
    JwtClaim { claim: String, key: String },
}

// === impl ExtAuth ===

impl ExtAuth {
    pub fn source(&self) -> &ObjectRef {
        &self.meta.source
    }
}

// === impl RateLimit ===

impl RateLimit {
    pub fn source(&self) -> &ObjectRef {
        &self.meta.source
    }
}

/// Completes a World whose objects and Gateway API compilation are in place: resolves the
/// targets of every ExtAuthPolicy and RateLimitPolicy and adds their statuses (a summary
/// `Accepted` condition to `statuses`, the per-target entries to `api_statuses`).
pub fn finish(world: &mut World) {
    let mut ext_auth = policy_attach::resolve(world, world.ext_auths.values().map(|p| &p.meta));
    let mut rate_limit = policy_attach::resolve(world, world.rate_limits.values().map(|p| &p.meta));
    policy_attach::refuse_mesh_only_routes(world, &mut ext_auth, "external authorization");
    policy_attach::refuse_mesh_only_routes(world, &mut rate_limit, "rate limiting");
    for resolution in [&ext_auth, &rate_limit] {
        add_statuses(world, resolution);
    }
    world.ext_auth = Arc::new(ext_auth);
    world.rate_limit = Arc::new(rate_limit);
}

fn add_statuses(world: &mut World, resolution: &Resolution) {
    for (policy, outcomes) in &resolution.statuses {
        world
            .statuses
            .insert(policy.clone(), vec![policy_attach::summary(outcomes)]);
        let status = crate::policy_status::policy_status(world, &policy.namespace, outcomes);
        world.api_statuses.insert(
            policy.clone(),
            crate::gateway_api::ApiStatus::Policy(status),
        );
    }
}

/// The summary conditions of a resolution's policies (for tests and tools).
pub fn summaries(resolution: &Resolution) -> BTreeMap<ObjectRef, Condition> {
    resolution
        .statuses
        .iter()
        .map(|(p, o)| (p.clone(), policy_attach::summary(o)))
        .collect()
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

    fn limit(name: &str, target: serde_json::Value, created: &str) -> serde_json::Value {
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "RateLimitPolicy",
            "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created},
            "spec": {"targetRefs": [target], "local": {"requests": 1, "per": "1s"}}})
    }

    #[test]
    fn statuses_per_target_mesh_only_routes_and_conflicts() {
        let mut idx = Index::new();
        for doc in [
            json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
                "metadata": {"name": "mesh-only", "namespace": "shop"},
                "spec": {"hosts": ["web"], "http": [{"directResponse": {"status": 200}}]}}),
            json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "Gateway",
                "metadata": {"name": "edge", "namespace": "shop"},
                "spec": {"selector": {"cluster": "ingress"}, "listeners": [{"name": "web", "port": 80, "protocol": "HTTP"}]}}),
        ] {
            apply(&mut idx, doc);
        }
        let route = json!({"group": "portolan.dev", "kind": "TrafficRoute", "name": "mesh-only"});
        let gateway = json!({"group": "portolan.dev", "kind": "Gateway", "name": "edge"});
        apply(&mut idx, limit("on-route", route, "2026-01-01T00:00:00Z"));
        apply(
            &mut idx,
            limit("older", gateway.clone(), "2026-01-01T00:00:00Z"),
        );
        apply(&mut idx, limit("newer", gateway, "2026-02-01T00:00:00Z"));
        let w = idx.world();
        let status = |name: &str| {
            let c = &w.statuses[&ObjectRef::new(Kind::RateLimitPolicy, "shop", name)][0];
            (c.status, c.reason.clone())
        };
        assert_eq!(status("on-route"), (false, "Invalid".to_string()));
        assert_eq!(status("older"), (true, "Accepted".to_string()));
        assert_eq!(status("newer"), (false, "Conflicted".to_string()));
        let on_route = ObjectRef::new(Kind::RateLimitPolicy, "shop", "on-route");
        assert!(!w.rate_limit.is_attached(&on_route));
        assert!(matches!(
            w.api_statuses.get(&on_route),
            Some(crate::gateway_api::ApiStatus::Policy(s)) if s.ancestors.len() == 1
        ));
    }
}

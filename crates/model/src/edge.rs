//! Edge and API policies that run in the HTTP connection manager before routing: external
//! authorization ([`ExtAuth`]) and rate limits ([`RateLimit`]), independent of the CRD shapes.
//!
//! Where they apply (which Gateways, listeners and routes) is [`crate::policy_attach`]'s
//! business: [`finish`] resolves both kinds' targets into the World ([`World::ext_auth`],
//! [`World::rate_limit`]) with their statuses; translation asks
//! [`Resolution::effective`] which policy applies to a route rule.

use crate::policy_attach::{self, AncestorOutcome, PolicyMeta, Resolution};
use crate::routing::Destination;
use crate::status::{Condition, ConditionType};
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
    let ext_auth = policy_attach::resolve(world, world.ext_auths.values().map(|p| &p.meta));
    let rate_limit = policy_attach::resolve(world, world.rate_limits.values().map(|p| &p.meta));
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
            .insert(policy.clone(), vec![summary(outcomes)]);
        let status = crate::gateway_api::status::policy_status(&policy.namespace, outcomes);
        world.api_statuses.insert(
            policy.clone(),
            crate::gateway_api::ApiStatus::Policy(status),
        );
    }
}

/// `Accepted` True when at least one target is attached, else False with the first target's
/// reason; the message lists every target's outcome.
fn summary(outcomes: &[AncestorOutcome]) -> Condition {
    let generation = outcomes
        .first()
        .map(|o| o.condition.observed_generation)
        .unwrap_or_default();
    let attached = outcomes.iter().any(|o| o.condition.status);
    let reason = match attached {
        true => "Accepted",
        false => outcomes
            .first()
            .map_or("TargetNotFound", |o| o.condition.reason.as_str()),
    };
    let message: Vec<String> = outcomes
        .iter()
        .map(|o| format!("{}: {}", o.condition.reason, o.condition.message))
        .collect();
    Condition::new(
        ConditionType::Accepted,
        attached,
        reason,
        message.join("; "),
        generation,
    )
}

/// The summary conditions of a resolution's policies (for tests and tools).
pub fn summaries(resolution: &Resolution) -> BTreeMap<ObjectRef, Condition> {
    resolution
        .statuses
        .iter()
        .map(|(p, o)| (p.clone(), summary(o)))
        .collect()
}

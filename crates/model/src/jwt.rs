//! JWT authentication (`RequestAuthentication`): token providers and requirements,
//! independent of the CRD shape, attached to gateways, routes and Services through
//! [`crate::policy_attach`].
//!
//! [`attach`] resolves every RequestAuthentication of a World; translation asks
//! [`crate::policy_attach::Resolution::effective`] which one applies to a route rule or a
//! workload's inbound side. [`statuses`] gives each policy its summary `Accepted` condition
//! (True when at least one target is attached) and its per-target outcomes.

use crate::policy_attach::{self, AncestorOutcome, PolicyMeta, Resolution};
use crate::status::{Condition, ConditionType};
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
        .map(|(policy, outcomes)| (policy.clone(), vec![summary(outcomes)]))
        .collect()
}

fn summary(outcomes: &[AncestorOutcome]) -> Condition {
    let generation = outcomes
        .first()
        .map(|o| o.condition.observed_generation)
        .unwrap_or_default();
    let attached = outcomes.iter().any(|o| o.condition.status);
    let reason = if attached {
        "Accepted"
    } else {
        outcomes
            .first()
            .map_or("TargetNotFound", |o| o.condition.reason.as_str())
    };
    let message = outcomes
        .iter()
        .map(|o| format!("{}: {}", o.condition.reason, o.condition.message))
        .collect::<Vec<_>>()
        .join("; ");
    Condition::new(
        ConditionType::Accepted,
        attached,
        reason,
        message,
        generation,
    )
}

/// Completes a World whose objects and Gateway API compilation are in place: resolves the
/// RequestAuthentications and adds their statuses (summary conditions to `statuses`, the
/// per-target entries to `api_statuses`).
pub fn finish(world: &mut World) {
    let resolution = attach(world);
    world.statuses.extend(statuses(&resolution));
    for (policy, outcomes) in &resolution.statuses {
        let status = crate::gateway_api::status::policy_status(&policy.namespace, outcomes);
        world.api_statuses.insert(
            policy.clone(),
            crate::gateway_api::ApiStatus::Policy(status),
        );
    }
    world.jwt = std::sync::Arc::new(resolution);
}

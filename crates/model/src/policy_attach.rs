//! Policy attachment (Gateway API GEP-713): what a policy's `targetRefs` reach in a World,
//! which policy wins where several reach the same thing, and the per-target status.
//!
//! Every policy kind (JWT authentication, external authorization, rate limits, ...) converts
//! its objects into a [`PolicyMeta`] and calls [`resolve`] with all policies of that kind.
//!
//! * A target is local to the policy's namespace. It reaches a Gateway API Gateway of a
//!   Portolan GatewayClass (all listeners, or the listener `sectionName` names), a Portolan
//!   Gateway (likewise), an HTTPRoute, GRPCRoute or TrafficRoute (all its rules, or the rule
//!   `sectionName` names), or a Service (its inbound side; `sectionName` is a port name).
//! * A target that names nothing gives `Accepted=False` reason `TargetNotFound` for that
//!   target; the policy's other targets still apply.
//! * Two policies of one kind reaching the same [`Reach`] conflict: the oldest
//!   (`metadata.creationTimestamp`; objects without one, such as files, count as newest)
//!   wins, then the first by namespace/name. The loser gets `Accepted=False` reason
//!   `Conflicted` for that target.
//! * A more specific attachment wins over a less specific one without conflict: a rule over
//!   its route, a listener over its gateway, a route over the gateway it is served on (see
//!   [`Resolution::effective`], which takes the candidates most specific first).
//!
//! Status: the summary condition is [`summary`]; the per-ancestor entries are
//! [`crate::policy_status`]'s.

use crate::status::{Condition, ConditionType};
use crate::types::ServiceKey;
use crate::world::World;
use portolan_api::crd::common::GROUP;
use portolan_api::crd::policy_target::{GATEWAY_API_GROUP, PolicyTargetRef};
use portolan_api::{Kind, ObjectRef, Resource};
use std::collections::BTreeMap;

/// What every policy kind hands to [`resolve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyMeta {
    pub source: ObjectRef,
    pub generation: i64,
    /// `metadata.creationTimestamp` in seconds since the epoch (none for files).
    pub created: Option<i64>,
    pub targets: Vec<PolicyTargetRef>,
}

/// What one target reference reaches.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reach {
    /// A Portolan Gateway ([`Kind::Gateway`]) or Gateway API Gateway ([`Kind::ApiGateway`]):
    /// every listener, or the one named.
    Gateway {
        gateway: ObjectRef,
        listener: Option<String>,
    },
    /// A TrafficRoute, HTTPRoute or GRPCRoute: every rule, or the one at this index of its
    /// rules (`spec.http` for a TrafficRoute, `spec.rules` for the others).
    Route {
        route: ObjectRef,
        rule: Option<usize>,
    },
    /// A Service's inbound side: every port, or the one named.
    Service {
        service: ServiceKey,
        port: Option<String>,
    },
}

/// The outcome of one target reference of one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AncestorOutcome {
    pub target: PolicyTargetRef,
    /// What it reaches (`None`: not found).
    pub reach: Option<Reach>,
    /// `Accepted`: reason `Accepted`, `TargetNotFound` or `Conflicted`.
    pub condition: Condition,
}

/// The attachments of all policies of one kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Per policy: one outcome per target reference, in `targetRefs` order.
    pub statuses: BTreeMap<ObjectRef, Vec<AncestorOutcome>>,
    /// The winning policy of each target reached.
    pub winners: BTreeMap<Reach, ObjectRef>,
}

// === impl PolicyMeta ===

impl PolicyMeta {
    /// Oldest first, objects without a creation time last, then namespace/name.
    fn precedence(&self) -> (bool, Option<i64>, &str, &str) {
        (
            self.created.is_none(),
            self.created,
            &self.source.namespace,
            &self.source.name,
        )
    }
}

// === impl Resolution ===

impl Resolution {
    /// The policy that applies given `candidates`, most specific first (e.g. the rule, its
    /// route, the listener, its gateway): the winner of the first candidate any policy reaches.
    pub fn effective(&self, candidates: &[Reach]) -> Option<&ObjectRef> {
        candidates.iter().find_map(|c| self.winners.get(c))
    }

    /// Whether `policy` reached at least one target (and won it).
    pub fn is_attached(&self, policy: &ObjectRef) -> bool {
        self.winners.values().any(|p| p == policy)
    }
}

/// Resolves every target of `policies` (all of one kind) and settles conflicts.
pub fn resolve<'p>(
    world: &World,
    policies: impl IntoIterator<Item = &'p PolicyMeta>,
) -> Resolution {
    let mut ordered: Vec<&PolicyMeta> = policies.into_iter().collect();
    ordered.sort_by(|a, b| a.precedence().cmp(&b.precedence()));
    let mut resolution = Resolution::default();
    for policy in ordered {
        let outcomes = policy
            .targets
            .iter()
            .map(|t| outcome(world, policy, t, &mut resolution.winners))
            .collect();
        resolution.statuses.insert(policy.source.clone(), outcomes);
    }
    resolution
}

/// Resolves one target of `policy`, claiming it in `winners` unless an older policy has.
fn outcome(
    world: &World,
    policy: &PolicyMeta,
    target: &PolicyTargetRef,
    winners: &mut BTreeMap<Reach, ObjectRef>,
) -> AncestorOutcome {
    let accepted = |ok, reason: &str, message: String| {
        Condition::new(
            ConditionType::Accepted,
            ok,
            reason,
            message,
            policy.generation,
        )
    };
    let (reach, condition) = match resolve_target(world, &policy.source.namespace, target) {
        Err(message) => (None, accepted(false, "TargetNotFound", message)),
        Ok(reach) => match winners.get(&reach) {
            Some(winner) => {
                let message = format!(
                    "{target}: {winner} applies there already (older, or first by namespace/name)"
                );
                (Some(reach), accepted(false, "Conflicted", message))
            }
            None => {
                winners.insert(reach.clone(), policy.source.clone());
                (
                    Some(reach),
                    accepted(true, "Accepted", format!("applies to {target}")),
                )
            }
        },
    };
    AncestorOutcome {
        target: target.clone(),
        reach,
        condition,
    }
}

/// What `target` (in `namespace`) reaches in `world`, or why it reaches nothing.
pub fn resolve_target(
    world: &World,
    namespace: &str,
    target: &PolicyTargetRef,
) -> Result<Reach, String> {
    let section = target.section_name.as_deref();
    let name = target.name.as_str();
    match (target.group.as_str(), target.kind.as_str()) {
        (GATEWAY_API_GROUP, "Gateway") => api_gateway(world, namespace, name, section),
        (GROUP, "Gateway") => gateway(world, namespace, name, section),
        (GATEWAY_API_GROUP, "HTTPRoute") => {
            api_route(world, Kind::HttpRoute, namespace, name, section)
        }
        (GATEWAY_API_GROUP, "GRPCRoute") => {
            api_route(world, Kind::GrpcRoute, namespace, name, section)
        }
        (GROUP, "TrafficRoute") => traffic_route(world, namespace, name, section),
        ("", "Service") => service(world, namespace, name, section),
        (group, kind) => Err(format!("{kind} in group {group:?} cannot be targeted")),
    }
}

fn not_found(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind} {namespace}/{name} does not exist")
}

/// The index of the entry named `section` in `names` (`None` when no section is asked).
fn section_of<'a>(
    what: &str,
    section: Option<&str>,
    names: impl IntoIterator<Item = Option<&'a str>>,
) -> Result<Option<usize>, String> {
    let Some(section) = section else {
        return Ok(None);
    };
    names
        .into_iter()
        .position(|n| n == Some(section))
        .map(Some)
        .ok_or_else(|| format!("{what} has no section named {section:?}"))
}

fn api_gateway(
    world: &World,
    ns: &str,
    name: &str,
    section: Option<&str>,
) -> Result<Reach, String> {
    let key = ObjectRef::new(Kind::ApiGateway, ns, name);
    let Some(Resource::ApiGateway(g)) = world.gateway_api.get(&key).map(AsRef::as_ref) else {
        return Err(not_found("Gateway.gateway.networking.k8s.io", ns, name));
    };
    if !world.api_gateways.contains_key(&key) {
        return Err(format!(
            "Gateway {ns}/{name} is not served by a Portolan GatewayClass"
        ));
    }
    let listeners = g.spec.listeners.iter().map(|l| Some(l.name.as_str()));
    section_of(&format!("Gateway {ns}/{name}"), section, listeners)?;
    Ok(Reach::Gateway {
        gateway: key,
        listener: section.map(str::to_string),
    })
}

fn gateway(world: &World, ns: &str, name: &str, section: Option<&str>) -> Result<Reach, String> {
    let key = ObjectRef::new(Kind::Gateway, ns, name);
    let g = world
        .gateways
        .get(&key)
        .ok_or_else(|| not_found("Gateway.portolan.dev", ns, name))?;
    let listeners = g.listeners.iter().map(|l| Some(l.name.as_str()));
    section_of(&format!("Gateway {ns}/{name}"), section, listeners)?;
    Ok(Reach::Gateway {
        gateway: key,
        listener: section.map(str::to_string),
    })
}

fn api_route(
    world: &World,
    kind: Kind,
    ns: &str,
    name: &str,
    section: Option<&str>,
) -> Result<Reach, String> {
    let key = ObjectRef::new(kind, ns, name);
    let names: Vec<Option<&str>> = match world.gateway_api.get(&key).map(AsRef::as_ref) {
        Some(Resource::HttpRoute(r)) => r.spec.rules.iter().map(|r| r.name.as_deref()).collect(),
        Some(Resource::GrpcRoute(r)) => r.spec.rules.iter().map(|r| r.name.as_deref()).collect(),
        _ => return Err(not_found(kind.as_str(), ns, name)),
    };
    let rule = section_of(&format!("{kind} {ns}/{name}"), section, names)?;
    Ok(Reach::Route { route: key, rule })
}

fn traffic_route(
    world: &World,
    ns: &str,
    name: &str,
    section: Option<&str>,
) -> Result<Reach, String> {
    let key = ObjectRef::new(Kind::TrafficRoute, ns, name);
    let route = world
        .routes
        .get(&key)
        .ok_or_else(|| not_found("TrafficRoute", ns, name))?;
    let names = route.http.iter().map(|r| r.name.as_deref());
    let rule = section_of(&format!("TrafficRoute {ns}/{name}"), section, names)?;
    Ok(Reach::Route { route: key, rule })
}

fn service(world: &World, ns: &str, name: &str, section: Option<&str>) -> Result<Reach, String> {
    let key = ServiceKey::new(ns, name);
    let svc = world
        .services
        .get(&key)
        .ok_or_else(|| not_found("Service", ns, name))?;
    let ports = svc.ports.iter().map(|p| Some(p.name.as_str()));
    section_of(&format!("Service {ns}/{name}"), section, ports)?;
    Ok(Reach::Service {
        service: key,
        port: section.map(str::to_string),
    })
}

/// The summary `Accepted` condition of one policy, shared by every policy kind: True (reason
/// `Accepted`) when at least one target is attached, else False with the first target's
/// reason; the message lists every target's outcome.
pub fn summary(outcomes: &[AncestorOutcome]) -> Condition {
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

/// A TrafficRoute target attached to the mesh only (no Gateway parent) is not enforced: edge
/// policies (`what`: "JWT authentication", ...) run on gateway listeners and on a workload's
/// inbound side (target its Service), never on the caller's mesh outbound listener. Its
/// outcome becomes `Accepted=False` reason `Invalid`, and it wins nothing.
pub fn refuse_mesh_only_routes(world: &World, resolution: &mut Resolution, what: &str) {
    for outcomes in resolution.statuses.values_mut() {
        for outcome in outcomes.iter_mut() {
            let Some(Reach::Route { route, .. }) = &outcome.reach else {
                continue;
            };
            let Some(r) = world.routes.get(route) else {
                continue;
            };
            let on_gateway = r
                .parents
                .iter()
                .any(|p| matches!(p, crate::routing::Parent::Gateway { .. }));
            if on_gateway || !outcome.condition.status {
                continue;
            }
            if let Some(reach) = &outcome.reach {
                resolution.winners.remove(reach);
            }
            outcome.condition = Condition::new(
                ConditionType::Accepted,
                false,
                "Invalid",
                format!(
                    "{}: {route} is attached to the mesh only; {what} applies where a route is served on a Gateway (target the Service for the server side)",
                    outcome.target
                ),
                outcome.condition.observed_generation,
            );
        }
    }
}

#[cfg(test)]
#[path = "policy_attach_tests.rs"]
mod tests;

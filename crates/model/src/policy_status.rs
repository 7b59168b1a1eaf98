//! A policy's `status.ancestors` (Gateway API GEP-713 `PolicyAncestorStatus`), the same for
//! every policy kind (RequestAuthentication, ExtAuthPolicy, RateLimitPolicy, EnvoyPatchPolicy).
//!
//! An ancestor is the object the policy's effect is judged against, the Gateway where it can:
//!
//! * a Gateway or listener target: the Gateway (Gateway API or Portolan), with `sectionName`
//!   the listener for a listener target;
//! * an HTTPRoute or GRPCRoute target (or a rule of one): each Gateway of Portolan's class the
//!   route is attached to (its `Accepted=True` parents), with the `sectionName` of the
//!   listener when the route's `parentRef` names one;
//! * a TrafficRoute target (or a rule): each Portolan Gateway it names in `gateways`;
//! * a route attached to no Gateway (mesh only, or not accepted anywhere): the route itself;
//! * a Service target: the Service (core group), with `sectionName` the port name;
//! * a target that names nothing: the target as written;
//! * an EnvoyPatchPolicy ([`patch_status`]): its `targetRef` Gateway, none for a `proxies`
//!   selector.
//!
//! The list is a map keyed by ancestor and controller: targets sharing an ancestor (two routes
//! on one Gateway) share one entry, whose `Accepted` condition is True when at least one of
//! them applies there (its message lists each). At most [`MAX_ANCESTORS`] entries are
//! written (the Gateway API `maxItems`), in the order the targets first reach them; every
//! entry carries `controllerName` [`CONTROLLER_NAME`] (the GatewayClass controller's name).

use crate::envoy_patch::{EnvoyPatch, PatchTarget};
use crate::gateway_api::status::{ApiCondition, ApiStatus, PolicyAncestorStatus, PolicyStatus};
use crate::policy_attach::{self, AncestorOutcome, Reach};
use crate::routing::Parent;
use crate::status::{Condition, ConditionType};
use crate::world::World;
use portolan_api::crd::common::GROUP;
use portolan_api::crd::policy_target::{AncestorRef, GATEWAY_API_GROUP, PolicyTargetRef};
use portolan_api::gwapi::{CONTROLLER_NAME, ParentReference};
use portolan_api::{Kind, ObjectRef};

/// The most entries `status.ancestors` holds (Gateway API `PolicyStatus.ancestors` maxItems).
pub const MAX_ANCESTORS: usize = 16;

/// The `status.ancestors` of a policy in `namespace` from its resolved outcomes.
pub fn policy_status(world: &World, namespace: &str, outcomes: &[AncestorOutcome]) -> PolicyStatus {
    let mut grouped: Vec<(AncestorRef, Vec<AncestorOutcome>)> = Vec::new();
    for outcome in outcomes {
        for ancestor in ancestors_of(world, namespace, &outcome.target, outcome.reach.as_ref()) {
            match grouped.iter_mut().find(|(a, _)| *a == ancestor) {
                Some((_, shared)) => shared.push(outcome.clone()),
                None => grouped.push((ancestor, vec![outcome.clone()])),
            }
        }
    }
    grouped.truncate(MAX_ANCESTORS);
    let ancestors = grouped
        .into_iter()
        .map(|(ancestor_ref, outcomes)| entry(ancestor_ref, &outcomes))
        .collect();
    PolicyStatus { ancestors }
}

/// One ancestor entry: a single target's condition as is, several summarized.
fn entry(ancestor_ref: AncestorRef, outcomes: &[AncestorOutcome]) -> PolicyAncestorStatus {
    let c = match outcomes {
        [one] => one.condition.clone(),
        many => policy_attach::summary(many),
    };
    PolicyAncestorStatus {
        ancestor_ref,
        controller_name: CONTROLLER_NAME.to_string(),
        conditions: vec![ApiCondition::new(
            &c.type_.to_string(),
            c.status,
            &c.reason,
            c.message,
            c.observed_generation,
        )],
    }
}

/// The `status.ancestors` of an EnvoyPatchPolicy whose `Accepted` condition (what its patches
/// did, `portolan_pipeline::patch`) is `accepted`: its `targetRef` Gateway with that condition,
/// or `Accepted=False` reason `TargetNotFound` when the Gateway does not exist. A policy that
/// selects proxies by node (`proxies`) has no ancestor.
pub fn patch_status(world: &World, patch: &EnvoyPatch, accepted: &Condition) -> PolicyStatus {
    let (gateway, exists) = match &patch.target {
        PatchTarget::Gateway(g) => (g, world.gateways.contains_key(g)),
        PatchTarget::ApiGateway(g) => (g, world.gateway_api.contains_key(g)),
        PatchTarget::Proxies { .. } => return PolicyStatus { ancestors: vec![] },
    };
    let condition = match exists {
        true => accepted.clone(),
        false => Condition::new(
            ConditionType::Accepted,
            false,
            "TargetNotFound",
            format!("spec.targetRef: {gateway} does not exist"),
            patch.generation,
        ),
    };
    let outcome = AncestorOutcome {
        target: PolicyTargetRef::default(),
        reach: None,
        condition,
    };
    PolicyStatus {
        ancestors: vec![entry(gateway_ref(gateway, None), &[outcome])],
    }
}

/// The ancestors of one target of a policy in `namespace`, `reach` being what it resolved to
/// (`None`: nothing).
pub fn ancestors_of(
    world: &World,
    namespace: &str,
    target: &PolicyTargetRef,
    reach: Option<&Reach>,
) -> Vec<AncestorRef> {
    let itself = || vec![target.ancestor_ref(namespace)];
    match reach {
        None => itself(),
        Some(Reach::Gateway { gateway, listener }) => {
            vec![gateway_ref(gateway, listener.clone())]
        }
        Some(Reach::Service { service, port }) => vec![AncestorRef {
            group: String::new(),
            kind: "Service".to_string(),
            namespace: Some(service.namespace.clone()),
            name: service.name.clone(),
            section_name: port.clone(),
        }],
        Some(Reach::Route { route, .. }) => {
            let gateways = route_gateways(world, route);
            if gateways.is_empty() {
                itself()
            } else {
                gateways
            }
        }
    }
}

/// The ancestor reference of a Portolan Gateway or Gateway API Gateway.
pub fn gateway_ref(gateway: &ObjectRef, listener: Option<String>) -> AncestorRef {
    let group = match gateway.kind {
        Kind::ApiGateway => GATEWAY_API_GROUP,
        _ => GROUP,
    };
    AncestorRef {
        group: group.to_string(),
        kind: "Gateway".to_string(),
        namespace: Some(gateway.namespace.clone()),
        name: gateway.name.clone(),
        section_name: listener,
    }
}

/// The Gateways a route is served on, in its parent order, without repeats.
fn route_gateways(world: &World, route: &ObjectRef) -> Vec<AncestorRef> {
    let mut out: Vec<AncestorRef> = Vec::new();
    let found: Vec<AncestorRef> = match route.kind {
        Kind::TrafficRoute => world
            .routes
            .get(route)
            .map(|r| {
                r.parents
                    .iter()
                    .filter_map(|p| match p {
                        Parent::Gateway { namespace, name } => Some(gateway_ref(
                            &ObjectRef::new(Kind::Gateway, namespace, name),
                            None,
                        )),
                        Parent::Mesh => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => match world.api_statuses.get(route) {
            Some(ApiStatus::Route(status)) => status
                .parents
                .iter()
                .filter(|p| p.controller_name == CONTROLLER_NAME && accepted(&p.conditions))
                .filter_map(|p| api_parent(&route.namespace, &p.parent_ref))
                .collect(),
            _ => Vec::new(),
        },
    };
    for a in found {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

fn accepted(conditions: &[ApiCondition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Accepted" && c.status == "True")
}

/// A route's Gateway API Gateway parentRef as an ancestor (`None` for other parent kinds).
fn api_parent(route_namespace: &str, parent: &ParentReference) -> Option<AncestorRef> {
    let group = parent.group.as_deref().unwrap_or(GATEWAY_API_GROUP);
    let kind = parent.kind.as_deref().unwrap_or("Gateway");
    if group != GATEWAY_API_GROUP || kind != "Gateway" {
        return None;
    }
    let namespace = parent.namespace.as_deref().unwrap_or(route_namespace);
    let gateway = ObjectRef::new(Kind::ApiGateway, namespace, &parent.name);
    Some(gateway_ref(&gateway, parent.section_name.clone()))
}

#[cfg(test)]
#[path = "policy_status_tests.rs"]
mod tests;

//! What status each Portolan custom resource should carry, and when it needs writing. Pure.
//!
//! * Valid objects: `Accepted` and `ResolvedRefs` as `model::resolve` computed them for the
//!   World, and `Programmed`: False (reason `Nacked`, the proxies' ids and Envoy's text) when
//!   connected proxies rejected configuration made from it, else True.
//! * Invalid objects (their newest version failed validation; the last good version, if any,
//!   stays in force): `Accepted=False` reason `Invalid` with every field-path error, at the
//!   invalid version's generation; the last good version's other conditions stay.
//!
//! `observedGeneration` is the generation the conditions were computed from. A condition's
//! `lastTransitionTime` moves only when its status flips, and a status equal to the one on the
//! object (ignoring those times) is not written again.

use crate::decode::Seen;
use crate::feed::LOCATION;
use crate::kinds;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition as MetaCondition, Time};
use k8s_openapi::jiff::Timestamp;
use portolan_api::ObjectRef;
use portolan_model::{Condition, ConditionType, World};
use std::collections::BTreeMap;

/// Longest condition message the API server accepts.
const MAX_MESSAGE: usize = 32_768;

/// The status of one object, as written to `/status`.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    pub observed_generation: i64,
    pub conditions: Vec<MetaCondition>,
    /// Policies only: `status.ancestors` (GEP-713), one entry per target.
    pub ancestors: Option<serde_json::Value>,
}

/// The conditions every Portolan custom resource should carry.
///
/// `programmed` holds `Programmed=False` conditions for NACKed objects; `generations` the
/// generation the cluster last showed for each object (for objects whose newest version is
/// invalid and so is not in `world`).
pub fn desired(
    world: &World,
    programmed: &BTreeMap<ObjectRef, Condition>,
    generations: &BTreeMap<ObjectRef, i64>,
) -> BTreeMap<ObjectRef, Vec<Condition>> {
    let mut out: BTreeMap<ObjectRef, Vec<Condition>> = BTreeMap::new();
    for (object, conditions) in &world.statuses {
        if !kinds::has_status(object.kind) {
            continue;
        }
        let mut conditions = conditions.clone();
        let generation = conditions
            .first()
            .map(|c| c.observed_generation)
            .unwrap_or_default();
        conditions.push(match programmed.get(object) {
            Some(nacked) => nacked.clone(),
            None => Condition::new(
                ConditionType::Programmed,
                true,
                "Programmed",
                "no connected proxy rejected its configuration",
                generation,
            ),
        });
        out.insert(object.clone(), conditions);
    }
    for (object, messages) in invalid(world) {
        let generation = generations.get(&object).copied().unwrap_or_default();
        let accepted = Condition::new(
            ConditionType::Accepted,
            false,
            "Invalid",
            messages.join("; "),
            generation,
        );
        let conditions = out.entry(object).or_default();
        conditions.retain(|c| c.type_ != ConditionType::Accepted);
        conditions.insert(0, accepted);
    }
    out
}

/// The field-path errors of invalid cluster objects that Portolan writes status for.
fn invalid(world: &World) -> BTreeMap<ObjectRef, Vec<String>> {
    let mut out: BTreeMap<ObjectRef, Vec<String>> = BTreeMap::new();
    for e in &world.errors {
        let Some(object) = &e.object else { continue };
        if e.location == LOCATION && kinds::has_status(object.kind) {
            out.entry(object.clone())
                .or_default()
                .push(e.error.to_string());
        }
    }
    out
}

/// The status to write for `conditions`, keeping each condition's `lastTransitionTime` from
/// `existing` when its status did not change.
pub fn status(conditions: &[Condition], existing: &[MetaCondition], now: Timestamp) -> Status {
    let observed_generation = conditions
        .iter()
        .map(|c| c.observed_generation)
        .max()
        .unwrap_or_default();
    let conditions = conditions
        .iter()
        .map(|c| {
            let type_ = c.type_.to_string();
            let status = if c.status { "True" } else { "False" };
            let since = existing
                .iter()
                .find(|e| e.type_ == type_ && e.status == status)
                .map(|e| e.last_transition_time.clone())
                .unwrap_or(Time(now));
            MetaCondition {
                type_,
                status: status.to_string(),
                reason: c.reason.clone(),
                message: truncate(&c.message),
                observed_generation: Some(c.observed_generation),
                last_transition_time: since,
            }
        })
        .collect();
    Status {
        observed_generation,
        conditions,
        ancestors: None,
    }
}

/// Whether the object already carries `status` (transition times aside): its conditions and,
/// for a policy, its `ancestors`.
pub fn is_current(status: &Status, seen: &Seen) -> bool {
    let ancestors_current = status.ancestors.as_ref().is_none_or(|wanted| {
        let carried = seen.status.as_ref().and_then(|s| s.get("ancestors"));
        comparable_ancestors(Some(wanted)) == comparable_ancestors(carried)
    });
    let key = |c: &MetaCondition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    ancestors_current
        && seen.observed_generation == Some(status.observed_generation)
        && seen.conditions.len() == status.conditions.len()
        && seen
            .conditions
            .iter()
            .zip(&status.conditions)
            .all(|(a, b)| key(a) == key(b))
}

fn truncate(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE - 3;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;

/// `status.ancestors` of a policy, from the World's per-ancestor status (see
/// `portolan_model::policy_status`). Each condition keeps its `lastTransitionTime` from
/// `existing` (the `ancestors` the object carries) when the same ancestor's condition of that
/// type had the same status, else gets `now` (Kubernetes requires one). `None` for other kinds.
pub fn ancestors(
    world: &World,
    object: &ObjectRef,
    existing: Option<&serde_json::Value>,
    now: Timestamp,
) -> Option<serde_json::Value> {
    let Some(portolan_model::gateway_api::ApiStatus::Policy(policy)) =
        world.api_statuses.get(object)
    else {
        return None;
    };
    let mut value = serde_json::to_value(&policy.ancestors).ok()?;
    let stamp = serde_json::to_value(Time(now)).ok()?;
    let before = existing.and_then(|e| e.as_array());
    for ancestor in value.as_array_mut()? {
        let was = before.and_then(|b| b.iter().find(|e| same_ancestor(e, ancestor)));
        let Some(conditions) = ancestor
            .get_mut("conditions")
            .and_then(|c| c.as_array_mut())
        else {
            continue;
        };
        for condition in conditions {
            let since = was
                .and_then(|w| transition_time(w, condition))
                .unwrap_or_else(|| stamp.clone());
            if let Some(c) = condition.as_object_mut() {
                c.insert("lastTransitionTime".into(), since);
            }
        }
    }
    Some(value)
}

/// Whether two `ancestors[]` entries are for the same ancestor and controller (the list's
/// map key).
fn same_ancestor(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    a.get("ancestorRef") == b.get("ancestorRef")
        && a.get("controllerName") == b.get("controllerName")
}

/// The `lastTransitionTime` of `entry`'s condition of the type and status of `condition`.
fn transition_time(
    entry: &serde_json::Value,
    condition: &serde_json::Value,
) -> Option<serde_json::Value> {
    entry
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| {
            c.get("type") == condition.get("type") && c.get("status") == condition.get("status")
        })?
        .get("lastTransitionTime")
        .cloned()
}

/// `ancestors` without the conditions' transition times, a missing list as an empty one.
fn comparable_ancestors(ancestors: Option<&serde_json::Value>) -> serde_json::Value {
    let mut value = ancestors.cloned().unwrap_or_else(|| serde_json::json!([]));
    for entry in value.as_array_mut().into_iter().flatten() {
        let conditions = entry.get_mut("conditions").and_then(|c| c.as_array_mut());
        for c in conditions.into_iter().flatten() {
            if let Some(c) = c.as_object_mut() {
                c.remove("lastTransitionTime");
            }
        }
    }
    value
}

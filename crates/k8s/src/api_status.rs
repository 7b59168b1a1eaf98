//! What `/status` each Gateway API object of Portolan's should carry, from the World's
//! `api_statuses` (the same statuses file mode serves on `/debug/status`). Pure.
//!
//! * GatewayClass and Gateway (only Portolan's class; the World has no status for others):
//!   the whole status is Portolan's.
//! * HTTPRoute, GRPCRoute, TLSRoute: `status.parents` is shared by every controller whose
//!   Gateways the route names, and the CRD declares it an atomic list. So the list written is
//!   the entries of other controllers exactly as the object carries them, then Portolan's own
//!   (`controllerName: portolan.dev/gateway-controller`). A route that no longer attaches to a
//!   Portolan Gateway gets its Portolan entries removed and the others kept.
//! * `lastTransitionTime` of a condition stays as written while its status does not change;
//!   a status equal to what the object carries is not written again.

use crate::decode::Seen;
use crate::kinds;
use k8s_openapi::jiff::Timestamp;
use portolan_api::gwapi::{CONTROLLER_NAME, GROUP};
use portolan_api::{Kind, ObjectRef};
use portolan_model::World;
use portolan_model::gateway_api::ApiStatus;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Every Gateway API status that differs from what the cluster object carries.
///
/// `addresses`: the addresses of provisioned Gateways' Services, which replace the ones the
/// World has for them.
pub fn desired(
    world: &World,
    seen: &BTreeMap<ObjectRef, Seen>,
    addresses: &BTreeMap<ObjectRef, Vec<Value>>,
    now: Timestamp,
) -> BTreeMap<ObjectRef, Value> {
    let now = Value::from(now.to_string());
    let mut out = BTreeMap::new();
    for (object, seen) in seen {
        if !kinds::has_api_status(object.kind) {
            continue;
        }
        let existing = seen.status.clone().unwrap_or(Value::Null);
        let wanted = match (world.api_statuses.get(object), object.kind) {
            (
                Some(ApiStatus::Route(_)) | None,
                Kind::HttpRoute | Kind::GrpcRoute | Kind::TlsRoute,
            ) => route(world.api_statuses.get(object), &existing, &now),
            (Some(status), _) => {
                let mut value = stamped(status, &existing, &now);
                if let Some(a) = addresses.get(object) {
                    value["addresses"] = Value::from(a.clone());
                }
                Some(value)
            }
            // Another class's GatewayClass or Gateway: never touched.
            (None, _) => None,
        };
        if let Some(wanted) = wanted.filter(|w| *w != existing) {
            out.insert(object.clone(), wanted);
        }
    }
    out
}

/// A GatewayClass or Gateway status with transition times kept from `existing`.
fn stamped(status: &ApiStatus, existing: &Value, now: &Value) -> Value {
    let mut value = serde_json::to_value(status).unwrap_or(Value::Null);
    stamp(&mut value["conditions"], &existing["conditions"], now);
    if let Some(listeners) = value.get_mut("listeners").and_then(Value::as_array_mut) {
        for l in listeners {
            let old = by_key(&existing["listeners"], "name", &l["name"]);
            stamp(&mut l["conditions"], &old["conditions"], now);
        }
    }
    value
}

/// A route's `parents`: other controllers' entries as they are, then Portolan's. `None` when
/// Portolan has nothing there and nothing to add.
fn route(status: Option<&ApiStatus>, existing: &Value, now: &Value) -> Option<Value> {
    let old: &[Value] = existing["parents"].as_array().map_or(&[], Vec::as_slice);
    let ours = |p: &&Value| p["controllerName"] == CONTROLLER_NAME;
    let mut parents: Vec<Value> = old.iter().filter(|p| !ours(p)).cloned().collect();
    let mine = match status {
        Some(ApiStatus::Route(r)) => r.parents.as_slice(),
        _ => &[],
    };
    if mine.is_empty() && !old.iter().any(|p| ours(&p)) {
        return None;
    }
    for entry in mine {
        let mut value = serde_json::to_value(entry).unwrap_or(Value::Null);
        defaults(&mut value["parentRef"]);
        let before = old
            .iter()
            .filter(ours)
            .find(|p| normalized(&p["parentRef"]) == value["parentRef"])
            .map_or(&Value::Null, |p| &p["conditions"]);
        stamp(&mut value["conditions"], before, now);
        parents.push(value);
    }
    Some(json!({ "parents": parents }))
}

/// Sets each condition's `lastTransitionTime`: the old one when a condition of that type had
/// the same status, else `now`.
fn stamp(conditions: &mut Value, existing: &Value, now: &Value) {
    let Some(conditions) = conditions.as_array_mut() else {
        return;
    };
    for c in conditions {
        let since = existing
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["type"] == c["type"] && e["status"] == c["status"])
            .and_then(|e| e.get("lastTransitionTime"))
            .cloned()
            .unwrap_or_else(|| now.clone());
        c["lastTransitionTime"] = since;
    }
}

/// The entry of a list whose `key` equals `value` (Null when none).
fn by_key<'a>(list: &'a Value, key: &str, value: &Value) -> &'a Value {
    list.as_array()
        .into_iter()
        .flatten()
        .find(|e| e[key] == *value)
        .unwrap_or(&Value::Null)
}

/// A parentRef with the defaults the CRD fills in (group, kind), as the API server stores it.
fn defaults(parent_ref: &mut Value) {
    if let Value::Object(map) = parent_ref {
        map.entry("group").or_insert_with(|| Value::from(GROUP));
        map.entry("kind").or_insert_with(|| Value::from("Gateway"));
    }
}

fn normalized(parent_ref: &Value) -> Value {
    let mut v = parent_ref.clone();
    defaults(&mut v);
    v
}

#[cfg(test)]
#[path = "api_status_tests.rs"]
mod tests;

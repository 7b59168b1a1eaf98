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
//! * BackendTLSPolicy: `status.ancestors` is shared the same way (the CRD declares it atomic):
//!   other controllers' entries exactly as they are, then Portolan's.
//! * A route whose newest version fails validation (its last good version stays in force):
//!   for each parentRef of that version naming a Portolan Gateway, `Accepted=False` reason
//!   `UnsupportedValue` with every field-path error, at that version's generation.
//! * `lastTransitionTime` of a condition stays as written while its status does not change;
//!   a status equal to what the object carries is not written again.

use crate::decode::Seen;
use crate::feed::LOCATION;
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
    let invalid = invalid_routes(world);
    let mut out = BTreeMap::new();
    for (object, seen) in seen {
        if !kinds::has_api_status(object.kind) {
            continue;
        }
        let existing = seen.status.clone().unwrap_or(Value::Null);
        let wanted = match (world.api_statuses.get(object), object.kind) {
            (
                _,
                Kind::HttpRoute
                | Kind::GrpcRoute
                | Kind::TlsRoute
                | Kind::TcpRoute
                | Kind::UdpRoute,
            ) => {
                let mine = match invalid.get(object) {
                    Some(errors) => refused(world, object, seen, errors),
                    None => computed(world.api_statuses.get(object)),
                };
                route(mine, &existing, &now)
            }
            (status, Kind::BackendTlsPolicy) => ancestors(status, &existing, &now),
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

/// The route entries the World computed (empty: the route names no Portolan Gateway).
fn computed(status: Option<&ApiStatus>) -> Vec<Value> {
    match status {
        Some(ApiStatus::Route(r)) => r
            .parents
            .iter()
            .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
            .collect(),
        _ => Vec::new(),
    }
}

/// The field-path errors of routes whose newest cluster version is invalid.
fn invalid_routes(world: &World) -> BTreeMap<ObjectRef, Vec<String>> {
    let mut out: BTreeMap<ObjectRef, Vec<String>> = BTreeMap::new();
    for e in &world.errors {
        let Some(object) = &e.object else { continue };
        let route = matches!(
            object.kind,
            Kind::HttpRoute | Kind::GrpcRoute | Kind::TlsRoute | Kind::TcpRoute | Kind::UdpRoute
        );
        if e.location == LOCATION && route {
            out.entry(object.clone())
                .or_default()
                .push(e.error.to_string());
        }
    }
    out
}

/// `Accepted=False` entries of an invalid route version, one per parentRef naming a Portolan
/// Gateway.
fn refused(world: &World, route: &ObjectRef, seen: &Seen, errors: &[String]) -> Vec<Value> {
    let message = format!("invalid: {}", errors.join("; "));
    seen.parent_refs
        .iter()
        .filter_map(|p| {
            let mut parent_ref = p.clone();
            defaults(&mut parent_ref);
            let gateway = ObjectRef::new(
                Kind::ApiGateway,
                parent_ref["namespace"].as_str().unwrap_or(&route.namespace),
                parent_ref["name"].as_str()?,
            );
            let is_gateway = parent_ref["group"] == GROUP && parent_ref["kind"] == "Gateway";
            (is_gateway && world.api_gateways.contains_key(&gateway)).then(|| {
                json!({
                    "parentRef": parent_ref,
                    "controllerName": CONTROLLER_NAME,
                    "conditions": [{
                        "type": "Accepted", "status": "False", "reason": "UnsupportedValue",
                        "message": message, "observedGeneration": seen.generation,
                    }],
                })
            })
        })
        .collect()
}

/// A route's `parents`: other controllers' entries as they are, then Portolan's (`mine`).
/// `None` when Portolan has nothing there and nothing to add.
fn route(mine: Vec<Value>, existing: &Value, now: &Value) -> Option<Value> {
    let old: &[Value] = existing["parents"].as_array().map_or(&[], Vec::as_slice);
    let ours = |p: &&Value| p["controllerName"] == CONTROLLER_NAME;
    let mut parents: Vec<Value> = old.iter().filter(|p| !ours(p)).cloned().collect();
    if mine.is_empty() && !old.iter().any(|p| ours(&p)) {
        return None;
    }
    for mut value in mine {
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

/// A policy's `ancestors`: other controllers' entries as they are, then Portolan's. `None`
/// when Portolan has nothing there and nothing to add.
fn ancestors(status: Option<&ApiStatus>, existing: &Value, now: &Value) -> Option<Value> {
    let mine: Vec<Value> = match status {
        Some(ApiStatus::Policy(p)) => p
            .ancestors
            .iter()
            .map(|a| serde_json::to_value(a).unwrap_or(Value::Null))
            .collect(),
        _ => Vec::new(),
    };
    let old: &[Value] = existing["ancestors"].as_array().map_or(&[], Vec::as_slice);
    let ours = |a: &&Value| a["controllerName"] == CONTROLLER_NAME;
    if mine.is_empty() && !old.iter().any(|a| ours(&a)) {
        return None;
    }
    let mut list: Vec<Value> = old.iter().filter(|a| !ours(a)).cloned().collect();
    for mut value in mine {
        let before = old
            .iter()
            .filter(ours)
            .find(|a| a["ancestorRef"] == value["ancestorRef"])
            .map_or(&Value::Null, |a| &a["conditions"]);
        stamp(&mut value["conditions"], before, now);
        list.push(value);
    }
    Some(json!({ "ancestors": list }))
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

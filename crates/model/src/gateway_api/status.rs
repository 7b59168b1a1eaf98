//! Gateway API status objects, shaped exactly as they are written to Kubernetes
//! (`status.conditions`, `status.addresses`, `status.listeners`, `status.parents`).

use portolan_api::gwapi::{CONTROLLER_NAME, ParentReference};
use serde::Serialize;
use std::collections::BTreeSet;

/// One `metav1.Condition` (without `lastTransitionTime`, which the writer stamps).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` or `False`.
    pub status: String,
    pub reason: String,
    pub message: String,
    pub observed_generation: i64,
}

impl ApiCondition {
    pub fn new(
        type_: &str,
        ok: bool,
        reason: &str,
        message: impl Into<String>,
        generation: i64,
    ) -> Self {
        Self {
            type_: type_.to_string(),
            status: if ok { "True" } else { "False" }.to_string(),
            reason: reason.to_string(),
            message: message.into(),
            observed_generation: generation,
        }
    }
}

/// The status of one Gateway API object Portolan owns status for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ApiStatus {
    GatewayClass(GatewayClassStatus),
    Gateway(GatewayStatus),
    Route(RouteStatus),
    /// A policy's status per ancestor (GEP-713 `PolicyAncestorStatus`).
    Policy(PolicyStatus),
    /// A ListenerSet: its conditions and one entry per listener.
    ListenerSet(ListenerSetStatus),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSetStatus {
    pub conditions: Vec<ApiCondition>,
    pub listeners: Vec<ListenerStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassStatus {
    pub conditions: Vec<ApiCondition>,
    /// Features Portolan claims and tests (see docs/gateway-api.md).
    pub supported_features: Vec<SupportedFeature>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SupportedFeature {
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    pub addresses: Vec<StatusAddress>,
    pub conditions: Vec<ApiCondition>,
    pub listeners: Vec<ListenerStatus>,
    /// How many ListenerSets are attached (accepted); absent when the Gateway allows none
    /// and none names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached_listener_sets: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusAddress {
    #[serde(rename = "type")]
    pub type_: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    pub name: String,
    pub supported_kinds: Vec<RouteKind>,
    pub attached_routes: i32,
    pub conditions: Vec<ApiCondition>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteKind {
    pub group: String,
    pub kind: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteStatus {
    pub parents: Vec<RouteParentStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: ParentReference,
    pub controller_name: String,
    pub conditions: Vec<ApiCondition>,
}

impl RouteParentStatus {
    pub fn new(parent_ref: ParentReference, conditions: Vec<ApiCondition>) -> Self {
        Self {
            parent_ref,
            controller_name: CONTROLLER_NAME.to_string(),
            conditions,
        }
    }
}

/// The status of a policy: one entry per ancestor (see [`crate::policy_status`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyStatus {
    pub ancestors: Vec<PolicyAncestorStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    pub ancestor_ref: portolan_api::crd::policy_target::AncestorRef,
    pub controller_name: String,
    pub conditions: Vec<ApiCondition>,
}

/// Portolan's condition on a route's `parents[]` entries: whether the data plane took the
/// configuration made from the route (the spec has no route `Programmed`; a NACK sets it
/// `False` with Envoy's text).
pub const PORTOLAN_PROGRAMMED: &str = "portolan.dev/Programmed";

/// `status` with a NACK in force attributed to its object: a Gateway or ListenerSet and its
/// listeners named in `listeners` (every listener when `None`: the NACK is not about some
/// ports only) get `Programmed=False` (`Invalid`, Envoy's text), a route's parent entries of
/// Portolan's controller `portolan.dev/Programmed=False` (`Nacked`). Other kinds unchanged.
pub fn with_nack(
    status: &ApiStatus,
    message: &str,
    listeners: Option<&BTreeSet<String>>,
) -> ApiStatus {
    let mut status = status.clone();
    let nacked = |l: &ListenerStatus| listeners.is_none_or(|names| names.contains(&l.name));
    match &mut status {
        ApiStatus::Gateway(g) => {
            set(&mut g.conditions, "Programmed", "Invalid", message);
            for l in g.listeners.iter_mut().filter(|l| nacked(l)) {
                set(&mut l.conditions, "Programmed", "Invalid", message);
            }
        }
        ApiStatus::Route(r) => {
            for p in r
                .parents
                .iter_mut()
                .filter(|p| p.controller_name == CONTROLLER_NAME)
            {
                set(&mut p.conditions, PORTOLAN_PROGRAMMED, "Nacked", message);
            }
        }
        ApiStatus::ListenerSet(s) => {
            set(&mut s.conditions, "Programmed", "Invalid", message);
            for l in s.listeners.iter_mut().filter(|l| nacked(l)) {
                set(&mut l.conditions, "Programmed", "Invalid", message);
            }
        }
        ApiStatus::GatewayClass(_) | ApiStatus::Policy(_) => {}
    }
    status
}

/// Replaces (or adds) condition `type_` with a `False` one, keeping the generation the
/// other conditions observed.
fn set(conditions: &mut Vec<ApiCondition>, type_: &str, reason: &str, message: &str) {
    let generation = conditions
        .iter()
        .map(|c| c.observed_generation)
        .max()
        .unwrap_or_default();
    let condition = ApiCondition::new(type_, false, reason, message, generation);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => *c = condition,
        None => conditions.push(condition),
    }
}

#[cfg(test)]
mod nack_tests {
    use super::*;

    fn accepted(g: i64) -> ApiCondition {
        ApiCondition::new("Accepted", true, "Accepted", "accepted", g)
    }

    #[test]
    fn a_nack_falsifies_gateway_and_listener_programmed_and_marks_our_route_parents() {
        let gateway = ApiStatus::Gateway(GatewayStatus {
            addresses: Vec::new(),
            conditions: vec![
                accepted(3),
                ApiCondition::new("Programmed", true, "Programmed", "ok", 3),
            ],
            listeners: vec![ListenerStatus {
                name: "http".into(),
                supported_kinds: Vec::new(),
                attached_routes: 1,
                conditions: vec![accepted(3)],
            }],
            attached_listener_sets: None,
        });
        let ApiStatus::Gateway(g) = with_nack(&gateway, "rejected: regex", None) else {
            panic!("a Gateway stays a Gateway");
        };
        let programmed = |cs: &[ApiCondition]| {
            cs.iter()
                .find(|c| c.type_ == "Programmed")
                .cloned()
                .expect("Programmed")
        };
        let p = programmed(&g.conditions);
        assert_eq!(
            (p.status.as_str(), p.reason.as_str(), p.observed_generation),
            ("False", "Invalid", 3)
        );
        assert_eq!(g.conditions.len(), 2, "replaced, not added");
        assert_eq!(programmed(&g.listeners[0].conditions).status, "False");

        let parent_ref = ParentReference {
            name: "edge".into(),
            ..Default::default()
        };
        let mut theirs = RouteParentStatus::new(parent_ref.clone(), vec![accepted(1)]);
        theirs.controller_name = "example.com/other".into();
        let route = ApiStatus::Route(RouteStatus {
            parents: vec![
                RouteParentStatus::new(parent_ref, vec![accepted(1)]),
                theirs,
            ],
        });
        let ApiStatus::Route(r) = with_nack(&route, "rejected: regex", None) else {
            panic!("a route stays a route");
        };
        let ours = &r.parents[0].conditions;
        assert!(ours.iter().any(|c| c.type_ == PORTOLAN_PROGRAMMED
            && c.status == "False"
            && c.reason == "Nacked"
            && c.message == "rejected: regex"));
        assert_eq!(
            r.parents[1].conditions,
            vec![accepted(1)],
            "another controller's entry kept"
        );
    }

    /// A NACK about some ports only: the ListenerSet is not programmed, but only the entries
    /// of its listeners on those ports say so.
    #[test]
    fn a_nack_about_some_listeners_falsifies_only_their_entries() {
        let programmed = ApiCondition::new("Programmed", true, "Programmed", "ok", 2);
        let listener = |name: &str| ListenerStatus {
            name: name.into(),
            supported_kinds: Vec::new(),
            attached_routes: 0,
            conditions: vec![accepted(2), programmed.clone()],
        };
        let set = ApiStatus::ListenerSet(ListenerSetStatus {
            conditions: vec![accepted(2), programmed.clone()],
            listeners: vec![listener("refused"), listener("fine")],
        });
        let only = BTreeSet::from(["refused".to_string()]);
        let ApiStatus::ListenerSet(s) = with_nack(&set, "rejected", Some(&only)) else {
            panic!("a ListenerSet stays a ListenerSet");
        };
        let status_of = |cs: &[ApiCondition]| {
            cs.iter()
                .find(|c| c.type_ == "Programmed")
                .map(|c| c.status.clone())
        };
        assert_eq!(status_of(&s.conditions).as_deref(), Some("False"));
        assert_eq!(
            status_of(&s.listeners[0].conditions).as_deref(),
            Some("False")
        );
        assert_eq!(s.listeners[1].conditions, vec![accepted(2), programmed]);
    }
}

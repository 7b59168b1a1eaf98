//! Which status each object should carry, and when a write is due.

use super::*;
use portolan_api::{FieldError, FieldPath, Kind};
use portolan_model::ConfigError;

fn route_ref() -> ObjectRef {
    ObjectRef::new(Kind::TrafficRoute, "shop", "reviews")
}

fn world_with_route_status(generation: i64) -> World {
    let mut w = World::default();
    w.statuses.insert(
        route_ref(),
        vec![
            Condition::new(ConditionType::Accepted, true, "Accepted", "", generation),
            Condition::new(
                ConditionType::ResolvedRefs,
                false,
                "BackendNotFound",
                "spec.http[0].route[0].destination.host: no Service shop/ratings",
                generation,
            ),
        ],
    );
    // Services carry no status: never in the desired set.
    w.statuses.insert(
        ObjectRef::new(Kind::Service, "shop", "web"),
        vec![Condition::new(
            ConditionType::Accepted,
            true,
            "Accepted",
            "",
            0,
        )],
    );
    w
}

fn types(conditions: &[Condition]) -> Vec<(ConditionType, bool, &str)> {
    conditions
        .iter()
        .map(|c| (c.type_, c.status, c.reason.as_str()))
        .collect()
}

#[test]
fn valid_objects_get_accepted_resolved_refs_and_programmed() {
    let world = world_with_route_status(2);
    let desired = desired(&world, &BTreeMap::new(), &BTreeMap::new());
    assert_eq!(desired.len(), 1, "only Portolan's CRs carry status");
    let c = &desired[&route_ref()];
    assert_eq!(
        types(c),
        [
            (ConditionType::Accepted, true, "Accepted"),
            (ConditionType::ResolvedRefs, false, "BackendNotFound"),
            (ConditionType::Programmed, true, "Programmed"),
        ]
    );
    assert!(c.iter().all(|c| c.observed_generation == 2));
}

#[test]
fn nacked_objects_are_programmed_false_with_the_proxies_and_envoys_text() {
    let world = world_with_route_status(2);
    let nack = Condition::new(
        ConditionType::Programmed,
        false,
        "Nacked",
        "rejected by 1 proxies (edge-1): bad route",
        2,
    );
    let programmed = BTreeMap::from([(route_ref(), nack.clone())]);
    let desired = desired(&world, &programmed, &BTreeMap::new());
    assert_eq!(desired[&route_ref()][2], nack);
}

#[test]
fn invalid_objects_are_accepted_false_at_the_invalid_generation() {
    let mut world = world_with_route_status(2);
    world.errors.push(ConfigError {
        location: LOCATION.to_string(),
        object: Some(route_ref()),
        error: FieldError::new(
            FieldPath::parse("spec.http[0].route[0].weight"),
            "invalid type: string \"ten\", expected i32",
        ),
    });
    let generations = BTreeMap::from([(route_ref(), 3)]);
    let desired = desired(&world, &BTreeMap::new(), &generations);
    let c = &desired[&route_ref()];
    assert_eq!((c[0].type_, c[0].status), (ConditionType::Accepted, false));
    assert_eq!(c[0].reason, "Invalid");
    assert_eq!(c[0].observed_generation, 3);
    assert!(
        c[0].message.contains("spec.http[0].route[0].weight"),
        "{}",
        c[0].message
    );
    assert_eq!(c.len(), 3, "the last good version's other conditions stay");
    assert_eq!(status(c, &[], Timestamp::now()).observed_generation, 3);
}

#[test]
fn transition_times_move_only_when_a_condition_flips() {
    let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("a timestamp");
    let t1: Timestamp = "2026-01-02T00:00:00Z".parse().expect("a timestamp");
    let world = world_with_route_status(2);
    let conditions = &desired(&world, &BTreeMap::new(), &BTreeMap::new())[&route_ref()];
    let first = status(conditions, &[], t0);
    assert!(
        first
            .conditions
            .iter()
            .all(|c| c.last_transition_time.0 == t0)
    );
    // Same conditions later: every time stays.
    let again = status(conditions, &first.conditions, t1);
    assert_eq!(again, first);
    // ResolvedRefs flips to True: only its time moves.
    let mut fixed = conditions.clone();
    fixed[1] = Condition::new(ConditionType::ResolvedRefs, true, "ResolvedRefs", "", 2);
    let later = status(&fixed, &first.conditions, t1);
    assert_eq!(later.conditions[0].last_transition_time.0, t0);
    assert_eq!(later.conditions[1].last_transition_time.0, t1);
}

#[test]
fn a_status_already_on_the_object_is_current() {
    let world = world_with_route_status(2);
    let conditions = &desired(&world, &BTreeMap::new(), &BTreeMap::new())[&route_ref()];
    let wanted = status(conditions, &[], Timestamp::now());
    let mut seen = Seen {
        generation: 2,
        resource_version: Some("7".into()),
        observed_generation: Some(2),
        conditions: wanted.conditions.clone(),
        status: None,
        uid: None,
        parent_refs: vec![],
    };
    assert!(is_current(&wanted, &seen));
    seen.observed_generation = Some(1);
    assert!(!is_current(&wanted, &seen), "observedGeneration differs");
    seen.observed_generation = Some(2);
    seen.conditions[2].message = "old".into();
    assert!(!is_current(&wanted, &seen), "a message differs");
    seen.conditions.clear();
    assert!(!is_current(&wanted, &seen), "no status yet");
}

#[test]
fn long_messages_are_cut_to_what_the_api_server_accepts() {
    let long = "é".repeat(MAX_MESSAGE);
    let cut = truncate(&long);
    assert!(cut.len() <= MAX_MESSAGE && cut.ends_with("..."));
}

fn policy_ref() -> ObjectRef {
    ObjectRef::new(Kind::RequestAuthentication, "shop", "jwt")
}

/// A World where policy `shop/jwt` targets Portolan Gateway `shop/edge`, which exists or not.
fn world_with_policy(gateway_exists: bool) -> World {
    use portolan_api::crd::policy_target::PolicyTargetRef;
    use portolan_model::policy_attach::{AncestorOutcome, Reach};
    let gateway = ObjectRef::new(Kind::Gateway, "shop", "edge");
    let (reach, condition) = match gateway_exists {
        true => (
            Some(Reach::Gateway {
                gateway,
                listener: None,
            }),
            Condition::new(ConditionType::Accepted, true, "Accepted", "applies", 2),
        ),
        false => (
            None,
            Condition::new(
                ConditionType::Accepted,
                false,
                "TargetNotFound",
                "Gateway.portolan.dev shop/edge does not exist",
                2,
            ),
        ),
    };
    let outcome = AncestorOutcome {
        target: PolicyTargetRef {
            group: "portolan.dev".into(),
            kind: "Gateway".into(),
            name: "edge".into(),
            section_name: None,
        },
        reach,
        condition,
    };
    let mut w = World::default();
    let status = portolan_model::policy_status::policy_status(&w, "shop", &[outcome]);
    w.api_statuses.insert(
        policy_ref(),
        portolan_model::gateway_api::ApiStatus::Policy(status),
    );
    w
}

/// A policy's `status.ancestors`: one entry per ancestor, each condition stamped.
#[test]
fn policy_ancestors_are_written_with_transition_times() {
    let w = world_with_policy(false);
    let now = Timestamp::from_second(1_700_000_000).expect("valid");
    let ancestors = ancestors(&w, &policy_ref(), None, now).expect("a policy has ancestors");
    let a = &ancestors[0];
    assert_eq!(a["ancestorRef"]["name"], "edge");
    assert_eq!(a["ancestorRef"]["namespace"], "shop");
    assert_eq!(a["controllerName"], "portolan.dev/gateway-controller");
    let c = &a["conditions"][0];
    assert_eq!(
        (
            &c["type"],
            &c["status"],
            &c["reason"],
            &c["observedGeneration"]
        ),
        (
            &serde_json::json!("Accepted"),
            &serde_json::json!("False"),
            &serde_json::json!("TargetNotFound"),
            &serde_json::json!(2)
        )
    );
    assert!(c["lastTransitionTime"].is_string(), "{c}");
    // Other kinds have none.
    assert_eq!(ancestors_of_route(&w), None);
}

/// The seen state of a policy carrying `ancestors` and the summary `conditions` of `wanted`.
fn seen_policy(wanted: &Status, ancestors: Option<serde_json::Value>) -> Seen {
    Seen {
        generation: 2,
        resource_version: Some("9".into()),
        observed_generation: Some(wanted.observed_generation),
        conditions: wanted.conditions.clone(),
        status: ancestors.map(|a| serde_json::json!({"ancestors": a})),
        uid: None,
        parent_refs: vec![],
    }
}

/// The writer compares `status.ancestors`: equal ones (times aside) are current, a changed or
/// missing list is written; a condition whose status did not flip keeps its time.
#[test]
fn policy_ancestors_are_compared_before_writing() {
    let summary = [Condition::new(
        ConditionType::Accepted,
        true,
        "Accepted",
        "applies",
        2,
    )];
    let t0 = Timestamp::from_second(1_700_000_000).expect("valid");
    let t1 = Timestamp::from_second(1_700_000_100).expect("valid");
    let found = world_with_policy(true);
    let mut first = status(&summary, &[], t0);
    first.ancestors = ancestors(&found, &policy_ref(), None, t0);

    let carried = first.ancestors.clone();
    let mut again = status(&summary, &first.conditions, t1);
    again.ancestors = ancestors(&found, &policy_ref(), carried.as_ref(), t1);
    assert_eq!(
        again.ancestors, first.ancestors,
        "time kept while unchanged"
    );
    assert!(is_current(&again, &seen_policy(&first, carried.clone())));

    // Restamped only: still current (times are not compared).
    let mut restamped = again.clone();
    restamped.ancestors = ancestors(&found, &policy_ref(), None, t1);
    assert!(is_current(
        &restamped,
        &seen_policy(&first, carried.clone())
    ));

    // Not yet written, or written as an empty list: a write is due.
    assert!(!is_current(&again, &seen_policy(&first, None)));
    assert!(!is_current(
        &again,
        &seen_policy(&first, Some(serde_json::json!([])))
    ));

    // The target disappears: the ancestor's condition flips, a write is due and its time moves.
    let gone = world_with_policy(false);
    let mut changed = status(&summary, &first.conditions, t1);
    changed.ancestors = ancestors(&gone, &policy_ref(), carried.as_ref(), t1);
    assert!(!is_current(&changed, &seen_policy(&first, carried)));
    let c = &changed.ancestors.as_ref().expect("ancestors")[0]["conditions"][0];
    assert_eq!(c["status"], "False");
    assert_eq!(
        c["lastTransitionTime"],
        serde_json::to_value(Time(t1)).expect("time")
    );
}

fn ancestors_of_route(w: &World) -> Option<serde_json::Value> {
    ancestors(w, &route_ref(), None, Timestamp::UNIX_EPOCH)
}

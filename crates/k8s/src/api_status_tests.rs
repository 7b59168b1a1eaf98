//! Gateway API status as written to the cluster: GatewayClass Accepted and supportedFeatures,
//! Gateway conditions and listeners, route `parents` with other controllers' entries kept.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::decode::{self, Outcome};
use crate::gateway_api_tests::{gateway, gateway_class, http_route, service};
use kube::core::DynamicObject;
use portolan_model::Index;
use portolan_model::source::Changes;
use std::sync::Arc;

const OTHER: &str = "example.com/other-controller";

/// The World made of these cluster objects, and the view of them the writer has.
fn cluster(objects: &[(Kind, Value)]) -> (Arc<World>, BTreeMap<ObjectRef, Seen>) {
    let mut index = Index::new();
    let mut seen = BTreeMap::new();
    let mut changes = Changes::default();
    for (kind, value) in objects {
        let obj: DynamicObject = serde_json::from_value(value.clone()).unwrap();
        let d = decode::decode(*kind, &obj);
        seen.insert(d.object.clone(), d.seen);
        let Outcome::Valid(object) = d.outcome else {
            panic!("{} is valid: {:?}", d.object, d.outcome);
        };
        changes.apply.push(object);
    }
    changes.apply_to("test", &mut index);
    (index.world(), seen)
}

fn base(route_status: Value) -> Vec<(Kind, Value)> {
    vec![
        (Kind::Service, service()),
        (
            Kind::GatewayClass,
            gateway_class("portolan", CONTROLLER_NAME),
        ),
        (Kind::GatewayClass, gateway_class("other", OTHER)),
        (Kind::ApiGateway, gateway("edge", "portolan")),
        (Kind::ApiGateway, gateway("foreign", "other")),
        (
            Kind::HttpRoute,
            http_route(&["edge", "foreign"], route_status),
        ),
    ]
}

fn route_ref() -> ObjectRef {
    ObjectRef::new(Kind::HttpRoute, "shop", "web")
}

/// The other controller's entry for its Gateway, as it wrote it.
fn foreign_entry() -> Value {
    json!({
        "parentRef": {"group": GROUP, "kind": "Gateway", "name": "foreign", "namespace": "infra"},
        "controllerName": OTHER,
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                        "observedGeneration": 5, "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    })
}

fn condition<'a>(conditions: &'a Value, type_: &str) -> &'a Value {
    conditions
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("{type_} in {conditions}"))
}

#[test]
fn the_gateway_class_is_accepted_with_its_supported_features() {
    let (world, seen) = cluster(&base(Value::Null));
    let out = desired(&world, &seen, &BTreeMap::new(), Timestamp::now());
    let class = &out[&ObjectRef::new(Kind::GatewayClass, "", "portolan")];
    let accepted = condition(&class["conditions"], "Accepted");
    assert_eq!(accepted["status"], "True");
    assert_eq!(accepted["observedGeneration"], 1);
    assert!(accepted["lastTransitionTime"].is_string());
    let features: Vec<&str> = class["supportedFeatures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(
        features.contains(&"HTTPRoute") && features.contains(&"Gateway"),
        "{features:?}"
    );
    assert!(
        !out.contains_key(&ObjectRef::new(Kind::GatewayClass, "", "other")),
        "another controller's class is never touched"
    );
}

#[test]
fn the_gateway_is_accepted_and_programmed_with_its_listeners() {
    let (world, seen) = cluster(&base(Value::Null));
    let out = desired(&world, &seen, &BTreeMap::new(), Timestamp::now());
    let gw = &out[&ObjectRef::new(Kind::ApiGateway, "infra", "edge")];
    for t in ["Accepted", "Programmed"] {
        let c = condition(&gw["conditions"], t);
        assert_eq!(
            (&c["status"], &c["observedGeneration"]),
            (&json!("True"), &json!(2)),
            "{t}"
        );
    }
    let listener = &gw["listeners"][0];
    assert_eq!(listener["name"], "http");
    assert_eq!(listener["attachedRoutes"], 1);
    for t in ["Accepted", "Programmed", "ResolvedRefs"] {
        assert_eq!(
            condition(&listener["conditions"], t)["status"],
            "True",
            "{t}"
        );
    }
    assert!(gw["addresses"].is_array());
    assert!(
        !out.contains_key(&ObjectRef::new(Kind::ApiGateway, "infra", "foreign")),
        "a Gateway of another class is never touched"
    );
}

#[test]
fn route_parents_keep_other_controllers_entries() {
    let (world, seen) = cluster(&base(json!({"parents": [foreign_entry()]})));
    let out = desired(&world, &seen, &BTreeMap::new(), Timestamp::now());
    let parents = out[&route_ref()]["parents"].as_array().unwrap().clone();
    assert_eq!(parents.len(), 2, "{parents:?}");
    assert_eq!(
        parents[0],
        foreign_entry(),
        "the other controller's entry, untouched"
    );
    let ours = &parents[1];
    assert_eq!(ours["controllerName"], CONTROLLER_NAME);
    assert_eq!(
        ours["parentRef"],
        json!({"group": GROUP, "kind": "Gateway", "name": "edge", "namespace": "infra"})
    );
    for t in ["Accepted", "ResolvedRefs"] {
        let c = condition(&ours["conditions"], t);
        assert_eq!(
            (&c["status"], &c["observedGeneration"]),
            (&json!("True"), &json!(5)),
            "{t}"
        );
    }
}

#[test]
fn a_status_already_written_is_not_written_again_and_keeps_its_times() {
    let (world, seen) = cluster(&base(json!({"parents": [foreign_entry()]})));
    let first = desired(&world, &seen, &BTreeMap::new(), Timestamp::now());
    // The cluster now carries what was written.
    let seen: BTreeMap<ObjectRef, Seen> = seen
        .into_iter()
        .map(|(r, mut s)| {
            if let Some(v) = first.get(&r) {
                s.status = Some(v.clone());
            }
            (r, s)
        })
        .collect();
    let later = Timestamp::now() + std::time::Duration::from_secs(60);
    assert!(
        desired(&world, &seen, &BTreeMap::new(), later).is_empty(),
        "nothing differs"
    );
}

#[test]
fn a_route_detached_from_portolan_loses_only_portolans_entry() {
    let mut ours = foreign_entry();
    ours["controllerName"] = json!(CONTROLLER_NAME);
    ours["parentRef"]["name"] = json!("edge");
    let mut objects = base(json!({"parents": [ours, foreign_entry()]}));
    // The route now names only the other controller's Gateway.
    objects[5].1["spec"]["parentRefs"] = json!([{"name": "foreign", "namespace": "infra"}]);
    let (world, seen) = cluster(&objects);
    let out = desired(&world, &seen, &BTreeMap::new(), Timestamp::now());
    assert_eq!(out[&route_ref()], json!({"parents": [foreign_entry()]}));
}

#[test]
fn a_route_portolan_never_served_is_not_touched() {
    let mut objects = base(json!({"parents": [foreign_entry()]}));
    objects[5].1["spec"]["parentRefs"] = json!([{"name": "foreign", "namespace": "infra"}]);
    let (world, seen) = cluster(&objects);
    assert!(!desired(&world, &seen, &BTreeMap::new(), Timestamp::now()).contains_key(&route_ref()));
}

/// The newest version of a route fails validation: its last good version stays in force, and
/// Portolan's entry says `Accepted=False` (`UnsupportedValue`, the field path) at the invalid
/// version's generation; the other controller's entry stays.
#[test]
fn an_invalid_route_version_is_refused_in_its_parent_entry() {
    let view = crate::view::ClusterView::new();
    let mut index = Index::new();
    let mut feeds: BTreeMap<Kind, crate::KindFeed> = BTreeMap::new();
    let mut bad = http_route(&["edge", "foreign"], json!({"parents": [foreign_entry()]}));
    bad["metadata"]["generation"] = json!(6);
    bad["spec"]["rules"][0]["backendRefs"][0]["weight"] = json!(2_000_000);
    let mut objects = base(Value::Null);
    objects.push((Kind::HttpRoute, bad));
    for (kind, value) in objects {
        let feed = feeds
            .entry(kind)
            .or_insert_with(|| crate::KindFeed::new(kind, None, view.clone()));
        let obj: DynamicObject = serde_json::from_value(value).unwrap();
        let handled = feed.handle(kube::runtime::watcher::Event::Apply(obj));
        handled.changes.apply_to(feed.reporter(), &mut index);
    }
    let world = index.world();
    assert!(
        world.gateway_api.contains_key(&route_ref()),
        "the last good version stays"
    );
    let out = desired(&world, &view.snapshot(), &BTreeMap::new(), Timestamp::now());
    let parents = out[&route_ref()]["parents"].as_array().unwrap().clone();
    assert_eq!(parents.len(), 2, "{parents:?}");
    assert_eq!(parents[0], foreign_entry());
    assert_eq!(parents[1]["parentRef"]["name"], "edge");
    let accepted = condition(&parents[1]["conditions"], "Accepted");
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "UnsupportedValue");
    assert_eq!(accepted["observedGeneration"], 6);
    let message = accepted["message"].as_str().unwrap();
    assert!(
        message.contains("spec.rules[0].backendRefs[0].weight"),
        "{message}"
    );
}

/// A BackendTLSPolicy on the route's Service, with its CA ConfigMap (a self-signed test CA
/// is not needed: only the ConfigMap's shape is read here), and `status` as the cluster has it.
fn backend_tls_objects(status: Value) -> Vec<(Kind, Value)> {
    let mut objects = base(Value::Null);
    objects.push((
        Kind::BackendTlsPolicy,
        json!({"metadata": {"name": "web-tls", "namespace": "shop", "generation": 3,
                            "resourceVersion": "4"},
               "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
                        "validation": {"caCertificateRefs": [{"group": "", "kind": "ConfigMap",
                                                              "name": "missing-ca"}],
                                       "hostname": "web.example.com"}},
               "status": status}),
    ));
    objects
}

fn foreign_ancestor() -> Value {
    json!({
        "ancestorRef": {"group": GROUP, "kind": "Gateway", "name": "foreign", "namespace": "infra"},
        "controllerName": OTHER,
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                        "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    })
}

#[test]
fn backend_tls_policy_ancestors_keep_other_controllers_entries() {
    let objects = backend_tls_objects(json!({"ancestors": [foreign_ancestor()]}));
    let (world, seen) = cluster(&objects);
    let out = desired(&world, &seen, &BTreeMap::new(), Timestamp::now());
    let policy = ObjectRef::new(Kind::BackendTlsPolicy, "shop", "web-tls");
    let ancestors = out[&policy]["ancestors"].as_array().unwrap().clone();
    assert_eq!(ancestors.len(), 2, "{ancestors:?}");
    assert_eq!(ancestors[0], foreign_ancestor(), "untouched");
    let ours = &ancestors[1];
    assert_eq!(ours["controllerName"], CONTROLLER_NAME);
    assert_eq!(
        ours["ancestorRef"],
        json!({"group": GROUP, "kind": "Gateway", "name": "edge", "namespace": "infra"})
    );
    let accepted = condition(&ours["conditions"], "Accepted");
    assert_eq!(
        (
            &accepted["status"],
            &accepted["reason"],
            &accepted["observedGeneration"]
        ),
        (&json!("False"), &json!("NoValidCACertificate"), &json!(3))
    );
    let resolved = condition(&ours["conditions"], "ResolvedRefs");
    assert_eq!(resolved["reason"], "InvalidCACertificateRef");
    assert!(
        resolved["message"]
            .as_str()
            .unwrap()
            .contains("spec.validation.caCertificateRefs[0]"),
        "{resolved}"
    );
}

#[test]
fn a_backend_tls_policy_no_route_uses_is_not_touched() {
    let mut objects = backend_tls_objects(Value::Null);
    objects.retain(|(k, _)| *k != Kind::HttpRoute);
    let (world, seen) = cluster(&objects);
    let out = desired(&world, &seen, &BTreeMap::new(), Timestamp::now());
    let policy = ObjectRef::new(Kind::BackendTlsPolicy, "shop", "web-tls");
    assert!(!out.contains_key(&policy), "{out:?}");
}

#[test]
fn a_service_parent_gets_its_entry_next_to_another_meshs() {
    // GAMMA: the route's parent is Service shop/web; another mesh wrote its own entry for it.
    let service_ref = json!({"group": "", "kind": "Service", "name": "web"});
    let theirs = json!({
        "parentRef": service_ref,
        "controllerName": OTHER,
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                        "observedGeneration": 5, "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    });
    let mut route = http_route(&[], json!({"parents": [theirs.clone()]}));
    route["spec"]["parentRefs"] = json!([service_ref]);
    let (world, seen) = cluster(&[(Kind::Service, service()), (Kind::HttpRoute, route)]);
    let out = desired(&world, &seen, &BTreeMap::new(), Timestamp::now());
    let parents = out[&route_ref()]["parents"].as_array().unwrap().clone();
    assert_eq!(parents.len(), 2, "{parents:?}");
    assert_eq!(parents[0], theirs, "the other mesh's entry, untouched");
    let ours = &parents[1];
    assert_eq!(ours["controllerName"], CONTROLLER_NAME);
    assert_eq!(ours["parentRef"], service_ref);
    for t in ["Accepted", "ResolvedRefs"] {
        let c = condition(&ours["conditions"], t);
        assert_eq!(
            (&c["status"], &c["observedGeneration"]),
            (&json!("True"), &json!(5)),
            "{t}"
        );
        assert!(c["lastTransitionTime"].is_string());
    }
}

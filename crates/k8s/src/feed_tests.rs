//! Watcher events fed into the index without an API server: what the World holds after
//! each, and what translation makes of it.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::view::ClusterView;
use envoy_types::pb::envoy::config::core::v3::address::Address;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use portolan_model::{Index, ServiceKey};
use portolan_translate::{Options, ProxyGroup, translate};
use serde_json::{Value, json};

fn obj(value: Value) -> DynamicObject {
    serde_json::from_value(value).expect("a valid object")
}

/// A Service as the API server lists it (list items carry no apiVersion/kind).
fn mk_service(ns: &str, name: &str, port: i64) -> DynamicObject {
    obj(json!({
        "metadata": {"name": name, "namespace": ns, "resourceVersion": "1", "uid": "u1"},
        "spec": {"ports": [{"name": "http", "port": port}], "clusterIP": "10.96.0.10"},
        "status": {"loadBalancer": {}}
    }))
}

fn mk_slice(ns: &str, name: &str, svc: &str, ips: &[&str]) -> DynamicObject {
    obj(json!({
        "metadata": {
            "name": name, "namespace": ns, "resourceVersion": "2",
            "labels": {"kubernetes.io/service-name": svc}
        },
        "addressType": "IPv4",
        "endpoints": ips.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect::<Vec<_>>(),
        "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}]
    }))
}

fn mk_route(ns: &str, name: &str, generation: i64, weight: Value, status: Value) -> DynamicObject {
    obj(json!({
        "apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
        "metadata": {"name": name, "namespace": ns, "generation": generation, "resourceVersion": format!("{generation}")},
        "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "port": 9080}, "weight": weight}]}]},
        "status": status
    }))
}

/// What one event did to the index.
struct Fed {
    changed: bool,
    first_sync: bool,
}

/// Applies what one event amounts to, as the sink does.
fn handle(feed: &mut KindFeed, event: Event<DynamicObject>, index: &mut Index) -> Fed {
    let reporter = feed.reporter().to_string();
    let handled = feed.handle(event);
    Fed {
        changed: handled.changes.apply_to(&reporter, index),
        first_sync: handled.first_sync,
    }
}

fn feed(kind: Kind) -> (KindFeed, Index) {
    (KindFeed::new(kind, None, ClusterView::new()), Index::new())
}

/// `address:port` of every endpoint of a cluster, as translation hands them to Envoy.
fn endpoints(index: &mut Index, cluster: &str) -> Vec<String> {
    let resources = translate(
        &index.world(),
        &ProxyGroup::new("default"),
        &Options::default(),
    );
    let Some(cla) = resources
        .load_assignments
        .iter()
        .find(|c| c.cluster_name == cluster)
    else {
        return Vec::new();
    };
    cla.endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .filter_map(|e| match &e.host_identifier {
            Some(HostIdentifier::Endpoint(ep)) => ep.address.as_ref(),
            _ => None,
        })
        .filter_map(|a| match &a.address {
            Some(Address::SocketAddress(s)) => match s.port_specifier {
                Some(PortSpecifier::PortValue(p)) => Some(format!("{}:{p}", s.address)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

const REVIEWS: &str = "outbound|9080||reviews.shop.svc.cluster.local";

#[test]
fn applied_objects_reach_the_world_and_translation() {
    let (mut services, mut index) = feed(Kind::Service);
    let (mut slices, _) = feed(Kind::EndpointSlice);
    let h = handle(
        &mut services,
        Event::Apply(mk_service("shop", "reviews", 9080)),
        &mut index,
    );
    assert!(h.changed);
    handle(
        &mut slices,
        Event::Apply(mk_slice(
            "shop",
            "reviews-1",
            "reviews",
            &["10.0.0.1", "10.0.0.2"],
        )),
        &mut index,
    );
    let world = index.world();
    assert!(
        world
            .services
            .contains_key(&ServiceKey::new("shop", "reviews"))
    );
    assert_eq!(
        endpoints(&mut index, REVIEWS),
        ["10.0.0.1:9080", "10.0.0.2:9080"]
    );
}

#[test]
fn deleted_objects_leave_the_world() {
    let (mut slices, mut index) = feed(Kind::EndpointSlice);
    let (mut services, _) = feed(Kind::Service);
    handle(
        &mut services,
        Event::Apply(mk_service("shop", "reviews", 9080)),
        &mut index,
    );
    let slice = mk_slice("shop", "reviews-1", "reviews", &["10.0.0.1"]);
    handle(&mut slices, Event::Apply(slice.clone()), &mut index);
    assert_eq!(endpoints(&mut index, REVIEWS), ["10.0.0.1:9080"]);
    let h = handle(&mut slices, Event::Delete(slice), &mut index);
    assert!(h.changed);
    assert!(endpoints(&mut index, REVIEWS).is_empty());
    assert!(index.world().endpoints.is_empty());
}

#[test]
fn first_list_is_applied_at_init_done_and_marks_the_feed_synced() {
    let (mut services, mut index) = feed(Kind::Service);
    handle(&mut services, Event::Init, &mut index);
    let h = handle(
        &mut services,
        Event::InitApply(mk_service("shop", "a", 80)),
        &mut index,
    );
    assert!(!h.changed, "buffered until the list is complete");
    assert!(index.world().services.is_empty());
    assert!(!services.synced());
    let h = handle(&mut services, Event::InitDone, &mut index);
    assert!(h.changed && h.first_sync && services.synced());
    assert_eq!(index.world().services.len(), 1);
}

#[test]
fn a_relist_deletes_what_went_away_while_the_watch_was_down() {
    let (mut slices, mut index) = feed(Kind::EndpointSlice);
    let (mut services, _) = feed(Kind::Service);
    handle(
        &mut services,
        Event::Apply(mk_service("shop", "reviews", 9080)),
        &mut index,
    );
    for e in [
        Event::Init,
        Event::InitApply(mk_slice("shop", "reviews-1", "reviews", &["10.0.0.1"])),
        Event::InitApply(mk_slice("shop", "reviews-2", "reviews", &["10.0.0.2"])),
        Event::InitDone,
    ] {
        handle(&mut slices, e, &mut index);
    }
    assert_eq!(
        endpoints(&mut index, REVIEWS),
        ["10.0.0.1:9080", "10.0.0.2:9080"]
    );
    // The watch restarts; meanwhile reviews-1 was deleted and reviews-2 changed.
    for e in [
        Event::Init,
        Event::InitApply(mk_slice("shop", "reviews-2", "reviews", &["10.0.0.3"])),
    ] {
        handle(&mut slices, e, &mut index);
    }
    assert_eq!(
        endpoints(&mut index, REVIEWS),
        ["10.0.0.1:9080", "10.0.0.2:9080"],
        "the last known state stays until the list is complete"
    );
    let h = handle(&mut slices, Event::InitDone, &mut index);
    assert!(h.changed && !h.first_sync);
    assert_eq!(endpoints(&mut index, REVIEWS), ["10.0.0.3:9080"]);
}

#[test]
fn an_unchanged_relist_makes_no_new_world() {
    let (mut services, mut index) = feed(Kind::Service);
    handle(
        &mut services,
        Event::Apply(mk_service("shop", "a", 80)),
        &mut index,
    );
    let before = index.world().version;
    for e in [
        Event::Init,
        Event::InitApply(mk_service("shop", "a", 80)),
        Event::InitDone,
    ] {
        assert!(!handle(&mut services, e, &mut index).changed);
    }
    assert_eq!(index.world().version, before);
}

#[test]
fn a_status_only_update_changes_nothing() {
    let (mut routes, mut index) = feed(Kind::TrafficRoute);
    let first = mk_route("shop", "reviews", 3, json!(100), json!({}));
    assert!(handle(&mut routes, Event::Apply(first), &mut index).changed);
    let world = index.world();
    // What the status writer's own write looks like when the watch delivers it.
    let mut written = mk_route(
        "shop",
        "reviews",
        3,
        json!(100),
        json!({"observedGeneration": 3, "conditions": [{
            "type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
            "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"
        }]}),
    );
    written.metadata.resource_version = Some("99".into());
    let h = handle(&mut routes, Event::Apply(written), &mut index);
    assert!(!h.changed, "a status write must not make a new World");
    assert!(std::sync::Arc::ptr_eq(&world, &index.world()));
}

#[test]
fn an_invalid_update_keeps_the_last_good_version_and_reports_the_field_path() {
    let (mut routes, mut index) = feed(Kind::TrafficRoute);
    handle(
        &mut routes,
        Event::Apply(mk_route("shop", "reviews", 1, json!(100), json!({}))),
        &mut index,
    );
    let h = handle(
        &mut routes,
        Event::Apply(mk_route("shop", "reviews", 2, json!("ten"), json!({}))),
        &mut index,
    );
    assert!(h.changed, "the error is news");
    let world = index.world();
    let r = ObjectRef::new(Kind::TrafficRoute, "shop", "reviews");
    assert_eq!(
        world.routes[&r].generation, 1,
        "the last good version stays"
    );
    let errors: Vec<String> = world.errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .starts_with("kubernetes: TrafficRoute shop/reviews: spec.http[0].route[0].weight:"),
        "{errors:?}"
    );
    // Fixed: the error goes, the new version is in force.
    handle(
        &mut routes,
        Event::Apply(mk_route("shop", "reviews", 3, json!(50), json!({}))),
        &mut index,
    );
    let world = index.world();
    assert!(world.errors.is_empty());
    assert_eq!(world.routes[&r].generation, 3);
}

#[test]
fn cluster_objects_get_the_same_field_path_errors_as_files() {
    // A Service with a port out of range: validation (not decoding) rejects it.
    let bad = obj(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"ports": [{"name": "http", "port": 80}, {"name": "bad", "port": 70000}]}
    }));
    let (mut services, mut index) = feed(Kind::Service);
    handle(&mut services, Event::Apply(bad.clone()), &mut index);
    let from_cluster = index.world().errors.clone();
    let mut doc = serde_json::to_value(&bad).expect("encodes");
    doc["apiVersion"] = json!("v1");
    doc["kind"] = json!("Service");
    let resource = portolan_api::Resource::decode(doc)
        .expect("decodes")
        .expect("is read");
    let from_file = portolan_api::validate::validate(&resource);
    assert!(!from_file.is_empty());
    let cluster: Vec<_> = from_cluster.iter().map(|e| e.error.clone()).collect();
    assert_eq!(cluster, from_file);
}

#[test]
fn a_relist_without_an_invalid_object_clears_its_error() {
    let (mut routes, mut index) = feed(Kind::TrafficRoute);
    handle(
        &mut routes,
        Event::Apply(mk_route("shop", "reviews", 1, json!("ten"), json!({}))),
        &mut index,
    );
    assert_eq!(index.world().errors.len(), 1);
    for e in [Event::Init, Event::InitDone] {
        handle(&mut routes, e, &mut index);
    }
    assert!(index.world().errors.is_empty());
}

#[test]
fn feeds_of_other_namespaces_do_not_delete_each_others_objects() {
    let view = ClusterView::new();
    let mut shop = KindFeed::new(Kind::Service, Some("shop"), view.clone());
    let mut web = KindFeed::new(Kind::Service, Some("web"), view);
    let mut index = Index::new();
    handle(
        &mut shop,
        Event::Apply(mk_service("shop", "a", 80)),
        &mut index,
    );
    for e in [
        Event::Init,
        Event::InitApply(mk_service("web", "b", 80)),
        Event::InitDone,
    ] {
        handle(&mut web, e, &mut index);
    }
    assert_eq!(index.world().services.len(), 2);
}

#[test]
fn the_cluster_view_tracks_generation_and_written_status() {
    let view = ClusterView::new();
    let mut routes = KindFeed::new(Kind::TrafficRoute, None, view.clone());
    let mut index = Index::new();
    let status = json!({"observedGeneration": 4, "conditions": [{
        "type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
        "observedGeneration": 4, "lastTransitionTime": "2026-01-01T00:00:00Z"
    }]});
    let route = mk_route("shop", "reviews", 5, json!(100), status);
    handle(&mut routes, Event::Apply(route.clone()), &mut index);
    let r = ObjectRef::new(Kind::TrafficRoute, "shop", "reviews");
    let seen = view.get(&r).expect("seen");
    assert_eq!(seen.generation, 5);
    assert_eq!(seen.observed_generation, Some(4));
    assert_eq!(seen.conditions.len(), 1);
    handle(&mut routes, Event::Delete(route), &mut index);
    assert!(view.get(&r).is_none());
}

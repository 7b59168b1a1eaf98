//! Target resolution and conflicts, on a World built from manifests through the Index.

use super::*;
use crate::index::Index;
use serde_json::{Value, json};

fn apply(idx: &mut Index, doc: Value) {
    let r = Resource::decode(doc).expect("decodes").expect("is read");
    let errors = portolan_api::validate::validate(&r);
    assert!(errors.is_empty(), "{errors:?}");
    idx.apply(crate::convert::to_object(&r));
}

fn world() -> std::sync::Arc<World> {
    let mut idx = Index::new();
    for doc in [
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": "portolan"}, "spec": {"controllerName": "portolan.dev/gateway-controller"}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": "other"}, "spec": {"controllerName": "example.com/other"}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "edge"},
            "spec": {"gatewayClassName": "portolan", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "theirs", "namespace": "edge"},
            "spec": {"gatewayClassName": "other", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "api", "namespace": "edge"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": []}, {"name": "admin"}]}}),
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "Gateway",
            "metadata": {"name": "pgw", "namespace": "edge"},
            "spec": {"selector": {"cluster": "edge"}, "listeners": [{"name": "web", "port": 8080, "protocol": "HTTP"}]}}),
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
            "metadata": {"name": "tr", "namespace": "edge"},
            "spec": {"hosts": ["example.com"], "gateways": ["pgw"], "http": [
                {"name": "login", "directResponse": {"status": 200}},
                {"directResponse": {"status": 404}}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "edge"},
            "spec": {"ports": [{"name": "http", "port": 80}]}}),
    ] {
        apply(&mut idx, doc);
    }
    idx.world()
}

fn target(group: &str, kind: &str, name: &str, section: Option<&str>) -> PolicyTargetRef {
    PolicyTargetRef {
        group: group.into(),
        kind: kind.into(),
        name: name.into(),
        section_name: section.map(Into::into),
    }
}

fn policy(name: &str, created: Option<i64>, targets: Vec<PolicyTargetRef>) -> PolicyMeta {
    PolicyMeta {
        source: ObjectRef::new(Kind::AccessPolicy, "edge", name),
        generation: 3,
        created,
        targets,
    }
}

#[test]
fn every_target_kind_resolves_whole_or_by_section() {
    let w = world();
    let r = |t: PolicyTargetRef| resolve_target(&w, "edge", &t);
    assert_eq!(
        r(target(GATEWAY_API_GROUP, "Gateway", "gw", Some("http"))),
        Ok(Reach::Gateway {
            gateway: ObjectRef::new(Kind::ApiGateway, "edge", "gw"),
            listener: Some("http".into())
        })
    );
    assert_eq!(
        r(target(GROUP, "Gateway", "pgw", None)),
        Ok(Reach::Gateway {
            gateway: ObjectRef::new(Kind::Gateway, "edge", "pgw"),
            listener: None
        })
    );
    assert_eq!(
        r(target(GATEWAY_API_GROUP, "HTTPRoute", "api", Some("admin"))),
        Ok(Reach::Route {
            route: ObjectRef::new(Kind::HttpRoute, "edge", "api"),
            rule: Some(1)
        })
    );
    assert_eq!(
        r(target(GROUP, "TrafficRoute", "tr", Some("login"))),
        Ok(Reach::Route {
            route: ObjectRef::new(Kind::TrafficRoute, "edge", "tr"),
            rule: Some(0)
        })
    );
    assert_eq!(
        r(target("", "Service", "web", Some("http"))),
        Ok(Reach::Service {
            service: ServiceKey::new("edge", "web"),
            port: Some("http".into())
        })
    );
}

#[test]
fn missing_targets_sections_and_foreign_gateways_are_not_found() {
    let w = world();
    let err = |t: PolicyTargetRef| resolve_target(&w, "edge", &t).expect_err("not found");
    assert!(err(target(GROUP, "TrafficRoute", "nope", None)).contains("does not exist"));
    assert!(err(target(GROUP, "TrafficRoute", "tr", Some("x"))).contains("no section named \"x\""));
    assert!(err(target(GATEWAY_API_GROUP, "Gateway", "theirs", None)).contains("not served"));
    // Targets are local: the same name in another namespace is not found.
    assert!(resolve_target(&w, "other", &target("", "Service", "web", None)).is_err());
}

#[test]
fn the_oldest_policy_wins_a_conflict_and_the_loser_says_so() {
    let w = world();
    let gw = target(GROUP, "Gateway", "pgw", None);
    let route = target(GROUP, "TrafficRoute", "tr", None);
    let newer = policy("a-newer", Some(200), vec![gw.clone(), route]);
    let older = policy("b-older", Some(100), vec![gw.clone()]);
    let file = policy(
        "0-file",
        None,
        vec![gw, target("", "Service", "gone", None)],
    );
    let res = resolve(&w, [&newer, &older, &file]);

    let reasons = |p: &PolicyMeta| -> Vec<(bool, String)> {
        res.statuses[&p.source]
            .iter()
            .map(|o| (o.condition.status, o.condition.reason.clone()))
            .collect()
    };
    assert_eq!(reasons(&older), [(true, "Accepted".into())]);
    assert_eq!(
        reasons(&newer),
        [(false, "Conflicted".into()), (true, "Accepted".into())]
    );
    assert_eq!(
        reasons(&file),
        [
            (false, "Conflicted".into()),
            (false, "TargetNotFound".into())
        ]
    );
    assert_eq!(
        res.statuses[&file.source][1].condition.observed_generation,
        3
    );
    assert!(!res.is_attached(&file.source));

    // The rule is reached through its route; the gateway policy is the fallback.
    let rule = Reach::Route {
        route: ObjectRef::new(Kind::TrafficRoute, "edge", "tr"),
        rule: Some(0),
    };
    let whole = Reach::Route {
        route: ObjectRef::new(Kind::TrafficRoute, "edge", "tr"),
        rule: None,
    };
    let gateway = Reach::Gateway {
        gateway: ObjectRef::new(Kind::Gateway, "edge", "pgw"),
        listener: None,
    };
    assert_eq!(
        res.effective(&[rule.clone(), whole, gateway.clone()]),
        Some(&newer.source)
    );
    assert_eq!(res.effective(&[rule, gateway]), Some(&older.source));
}

#[test]
fn equal_creation_times_fall_back_to_namespace_and_name() {
    let w = world();
    let t = vec![target("", "Service", "web", None)];
    let b = policy("b", Some(5), t.clone());
    let a = policy("a", Some(5), t);
    let res = resolve(&w, [&b, &a]);
    assert!(res.is_attached(&a.source));
    assert!(!res.is_attached(&b.source));
}

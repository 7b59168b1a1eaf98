//! The Gateway API over a scripted API server: the watchers list GatewayClasses, Gateways,
//! HTTPRoutes (and the rest) into the same index the file source feeds; a Gateway of another
//! class is ignored; a Gateway API kind whose CRD is missing (404) does not stop the sync.

#![allow(clippy::unwrap_used)]

use crate::kinds;
use crate::source::KubernetesSource;
use crate::testing::{TestSink, failure, mock_client, next, respond};
use crate::view::ClusterView;
use portolan_api::{Kind, ObjectRef};
use portolan_model::gateway_api::ApiStatus;
use portolan_model::source::Source;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

const GW: &str = "/apis/gateway.networking.k8s.io";

pub(crate) fn gateway_class(name: &str, controller: &str) -> Value {
    json!({"metadata": {"name": name, "generation": 1, "resourceVersion": "3"},
           "spec": {"controllerName": controller}})
}

pub(crate) fn gateway(name: &str, class: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "infra", "generation": 2, "resourceVersion": "4"},
           "spec": {"gatewayClassName": class,
                    "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP",
                                   "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
}

pub(crate) fn http_route(parents: &[&str], status: Value) -> Value {
    let refs: Vec<Value> = parents
        .iter()
        .map(|p| json!({"name": p, "namespace": "infra"}))
        .collect();
    json!({"metadata": {"name": "web", "namespace": "shop", "generation": 5, "resourceVersion": "9"},
           "spec": {"parentRefs": refs, "hostnames": ["web.example.com"],
                    "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]},
           "status": status})
}

pub(crate) fn service() -> Value {
    json!({"metadata": {"name": "web", "namespace": "shop", "resourceVersion": "1"},
           "spec": {"ports": [{"name": "http", "port": 80}]}})
}

/// What the scripted API server lists at each path (anything else: an empty list).
fn cluster() -> BTreeMap<String, Vec<Value>> {
    BTreeMap::from([
        ("/api/v1/services".to_string(), vec![service()]),
        (
            "/api/v1/namespaces".to_string(),
            vec![json!({"metadata": {"name": "shop", "labels": {"team": "web"}}})],
        ),
        (
            format!("{GW}/v1/gatewayclasses"),
            vec![
                gateway_class("portolan", "portolan.dev/gateway-controller"),
                gateway_class("other", "example.com/other-controller"),
            ],
        ),
        (
            format!("{GW}/v1/gateways"),
            vec![gateway("edge", "portolan"), gateway("foreign", "other")],
        ),
        (
            format!("{GW}/v1/httproutes"),
            vec![http_route(&["edge", "foreign"], Value::Null)],
        ),
    ])
}

#[tokio::test]
async fn gateway_api_objects_listed_from_the_cluster_reach_the_world() {
    let (client, mut api) = mock_client();
    let sink = Arc::new(TestSink::new());
    let index = sink.index.clone();
    let mut synced = sink.synced.subscribe();
    let view = ClusterView::new();
    let source = KubernetesSource::new(client, &["shop".into(), "infra".into()], view.clone());
    let state = source.state();
    let task = tokio::spawn(source.run(sink));
    let objects = cluster();
    let mut open = Vec::new();
    let mut paths = Vec::new();
    let answering = async {
        loop {
            let (req, r) = next(&mut api).await;
            if req.query.contains("watch=true") {
                open.push(r);
                continue;
            }
            paths.push(req.path.clone());
            if req.path.ends_with("/tlsroutes") {
                // The TLSRoute CRD is not installed.
                respond(r, 404, &failure(404, "NotFound"));
                continue;
            }
            if req.path.ends_with("/grpcroutes") {
                // An older chart's RBAC does not grant GRPCRoutes.
                respond(r, 403, &failure(403, "Forbidden"));
                continue;
            }
            // Namespaced kinds are listed per watched namespace: hand each its objects.
            let items: Vec<Value> = objects
                .iter()
                .find(|(p, _)| unscoped(&req.path) == **p)
                .map(|(_, items)| items.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|o| in_scope(&req.path, o))
                .collect();
            respond(
                r,
                200,
                &json!({"kind": "List", "apiVersion": "v1",
                "metadata": {"resourceVersion": "100"}, "items": items}),
            );
        }
    };
    tokio::select! {
        _ = answering => unreachable!(),
        r = synced.wait_for(|s| *s) => { r.unwrap(); }
    }
    // Cluster-scoped kinds are listed once across the cluster, whatever namespaces are watched.
    for p in ["/api/v1/namespaces", &format!("{GW}/v1/gatewayclasses")] {
        assert_eq!(
            paths.iter().filter(|x| *x == p).count(),
            1,
            "{p} in {paths:?}"
        );
    }
    assert!(paths.contains(&format!("{GW}/v1/namespaces/shop/httproutes")));
    assert!(paths.contains(&format!("{GW}/v1beta1/namespaces/shop/referencegrants")));

    let world = index.lock().unwrap().world();
    let edge = ObjectRef::new(Kind::ApiGateway, "infra", "edge");
    let foreign = ObjectRef::new(Kind::ApiGateway, "infra", "foreign");
    let route = ObjectRef::new(Kind::HttpRoute, "shop", "web");
    assert!(world.gateway_api.contains_key(&route));
    assert!(
        world
            .gateway_api
            .contains_key(&ObjectRef::new(Kind::Namespace, "", "shop")),
        "Namespaces (for allowedRoutes selectors) are read"
    );
    assert!(world.api_gateways.contains_key(&edge), "ours is compiled");
    assert!(
        !world.api_gateways.contains_key(&foreign),
        "another class's is ignored"
    );
    assert!(
        !world.api_statuses.contains_key(&foreign),
        "and gets no status"
    );
    assert!(
        !world
            .api_statuses
            .contains_key(&ObjectRef::new(Kind::GatewayClass, "", "other"))
    );
    let Some(ApiStatus::Route(status)) = world.api_statuses.get(&route) else {
        panic!("the route has a status: {:?}", world.api_statuses.keys());
    };
    let parents: Vec<&str> = status
        .parents
        .iter()
        .map(|p| p.parent_ref.name.as_str())
        .collect();
    assert_eq!(parents, ["edge"], "only the parent of Portolan's class");
    let accepted = &status.parents[0].conditions[0];
    assert_eq!(
        (
            accepted.type_.as_str(),
            accepted.status.as_str(),
            accepted.observed_generation
        ),
        ("Accepted", "True", 5)
    );
    // The view knows what the status writer needs: generations and written status.
    assert_eq!(view.get(&route).unwrap().generation, 5);
    assert_eq!(
        view.get(&ObjectRef::new(Kind::GatewayClass, "", "portolan"))
            .unwrap()
            .generation,
        1
    );
    assert!(kinds::WATCHED.contains(&Kind::TlsRoute));
    let watchers = state.borrow().watchers.clone();
    let tls = &watchers["kubernetes/TLSRoute/shop"];
    assert!(tls.synced && tls.up, "{tls:?}");
    assert_eq!(
        tls.last_error.as_deref(),
        Some("not served (CRD not installed)")
    );
    let grpc = &watchers["kubernetes/GRPCRoute/shop"];
    assert!(grpc.synced && grpc.up, "{grpc:?}");
    assert!(
        grpc.last_error
            .as_deref()
            .unwrap_or_default()
            .starts_with("forbidden")
    );
    task.abort();
}

/// `/apis/g/v/namespaces/NS/plural` -> `/apis/g/v/plural`.
fn unscoped(path: &str) -> String {
    match path.split_once("/namespaces/") {
        Some((head, rest)) if rest.contains('/') => {
            let plural = rest.split_once('/').map(|(_, p)| p).unwrap_or_default();
            format!("{head}/{plural}")
        }
        _ => path.to_string(),
    }
}

fn in_scope(path: &str, object: &Value) -> bool {
    match path.split_once("/namespaces/") {
        Some((_, rest)) if rest.contains('/') => {
            let ns = rest.split('/').next().unwrap_or_default();
            object["metadata"]["namespace"] == ns
        }
        _ => true,
    }
}

/// The leader's pass over a scripted API server: forced server-side applies on `/status` of
/// Portolan's GatewayClass, Gateway and route (at the route's resourceVersion, with the other
/// controller's parent entry kept), nothing for the other class's objects.
#[tokio::test]
async fn the_status_writer_applies_gateway_api_status() {
    use crate::writer::{Inputs, StatusWriter};
    let foreign_entry = json!({
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "foreign", "namespace": "infra"},
        "controllerName": "example.com/other-controller",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                        "observedGeneration": 5, "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    });
    let objects = [
        (Kind::Service, service()),
        (
            Kind::GatewayClass,
            gateway_class("portolan", "portolan.dev/gateway-controller"),
        ),
        (
            Kind::GatewayClass,
            gateway_class("other", "example.com/other-controller"),
        ),
        (Kind::ApiGateway, gateway("edge", "portolan")),
        (Kind::ApiGateway, gateway("foreign", "other")),
        (
            Kind::HttpRoute,
            http_route(&["edge", "foreign"], json!({"parents": [foreign_entry]})),
        ),
    ];
    let view = ClusterView::new();
    let mut feeds: BTreeMap<Kind, crate::KindFeed> = BTreeMap::new();
    let mut index = portolan_model::Index::new();
    for (kind, value) in objects {
        let feed = feeds
            .entry(kind)
            .or_insert_with(|| crate::KindFeed::new(kind, None, view.clone()));
        let obj = serde_json::from_value(value).unwrap();
        let handled = feed.handle(kube::runtime::watcher::Event::Apply(obj));
        let reporter = feed.reporter().to_string();
        handled.changes.apply_to(&reporter, &mut index);
    }
    let inputs = Inputs {
        world: index.world(),
        programmed: BTreeMap::new(),
    };
    let (client, mut api) = mock_client();
    let writer = StatusWriter::new(client, view);
    let (_tx, leading) = tokio::sync::watch::channel(true);
    let pass = tokio::spawn(async move { writer.write_pass(&inputs, &leading).await });
    let mut patches = BTreeMap::new();
    for _ in 0..3 {
        let (req, r) = next(&mut api).await;
        assert_eq!(req.method, "PATCH");
        assert!(req.query.contains("fieldManager=portolan") && req.query.contains("force=true"));
        assert_eq!(
            req.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        respond(r, 200, &req.body);
        patches.insert(req.path.clone(), req.body);
    }
    let pass = pass.await.unwrap();
    assert_eq!((pass.written, pass.failed), (3, 0), "{:?}", patches.keys());
    let class = &patches[&format!("{GW}/v1/gatewayclasses/portolan/status")];
    assert_eq!(class["kind"], "GatewayClass");
    assert!(
        class["metadata"].get("namespace").is_none(),
        "cluster-scoped"
    );
    assert_eq!(class["status"]["conditions"][0]["type"], "Accepted");
    let gw = &patches[&format!("{GW}/v1/namespaces/infra/gateways/edge/status")];
    assert_eq!(gw["apiVersion"], "gateway.networking.k8s.io/v1");
    assert!(gw.get("spec").is_none(), "status only");
    assert_eq!(gw["status"]["listeners"][0]["attachedRoutes"], 1);
    let route = &patches[&format!("{GW}/v1/namespaces/shop/httproutes/web/status")];
    assert_eq!(
        route["metadata"]["resourceVersion"], "9",
        "written at the version it was computed from"
    );
    let parents = route["status"]["parents"].as_array().unwrap();
    assert_eq!(
        parents[0], foreign_entry,
        "the other controller's entry stays"
    );
    assert_eq!(
        parents[1]["controllerName"],
        "portolan.dev/gateway-controller"
    );
    assert_eq!(parents[1]["conditions"][0]["observedGeneration"], 5);
}

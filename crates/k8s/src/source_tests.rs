//! The watchers over a scripted API server: list, watch, a watch error (the last known state
//! stays), the retry, and the sync signal.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::testing::{
    Responder, Seen, TestSink, failure, mock_client, next, respond, respond_events,
};
use portolan_model::Index;
use portolan_model::ServiceKey;
use serde_json::{Value, json};
use std::sync::Mutex;

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": "100"}, "items": items})
}

fn service(name: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "shop", "resourceVersion": "10"},
           "spec": {"ports": [{"name": "http", "port": 9080}]}})
}

fn is_watch(req: &Seen) -> bool {
    req.query.contains("watch=true")
}

/// Answers the first list of every watched kind (Services: `reviews`; everything else
/// empty) and keeps the watch requests that follow open. Returns the open Service watch.
async fn answer_first_lists(api: &mut crate::testing::Handle) -> (Responder, Vec<Responder>) {
    let mut service_watch = None;
    let mut open = Vec::new();
    let mut listed = 0;
    while listed < kinds::WATCHED.len() || service_watch.is_none() {
        let (req, r) = next(api).await;
        assert_eq!(req.method, "GET");
        if is_watch(&req) {
            if req.path == "/api/v1/services" {
                service_watch = Some(r);
            } else {
                open.push(r);
            }
            continue;
        }
        listed += 1;
        if req.path == "/api/v1/secrets" {
            assert!(
                req.query
                    .contains("fieldSelector=type%3Dkubernetes.io%2Ftls"),
                "only TLS secrets are listed: {}",
                req.query
            );
        }
        let items = if req.path == "/api/v1/services" {
            vec![service("reviews")]
        } else {
            vec![]
        };
        respond(r, 200, &list("Any", items));
    }
    (service_watch.unwrap(), open)
}

fn has_service(index: &Arc<Mutex<Index>>, name: &str) -> bool {
    index
        .lock()
        .unwrap()
        .world()
        .services
        .contains_key(&ServiceKey::new("shop", name))
}

#[tokio::test]
async fn the_source_lists_syncs_survives_a_watch_error_and_applies_watch_events() {
    let (client, mut api) = mock_client();
    let sink = Arc::new(TestSink::new());
    let index = sink.index.clone();
    let (mut changes, mut synced, mut health) = (
        sink.changed.subscribe(),
        sink.synced.subscribe(),
        sink.health.subscribe(),
    );
    let source = KubernetesSource::new(client, &[], ClusterView::new());
    let mut state = source.state();
    let task = tokio::spawn(source.run(sink));
    let (service_watch, mut open) = answer_first_lists(&mut api).await;
    synced.wait_for(|s| *s).await.unwrap();
    assert!(state.borrow().synced());
    assert!(has_service(&index, "reviews"));
    assert!(changes.has_changed().unwrap());
    changes.mark_unchanged();

    // The API server fails the watch: the source is down, the index keeps what it had.
    respond(service_watch, 500, &failure(500, "InternalError"));
    state
        .wait_for(|s| !s.up() && s.watchers["kubernetes/Service"].errors == 1)
        .await
        .unwrap();
    let down = health.wait_for(|h| !h.up).await.unwrap().clone();
    assert!(has_service(&index, "reviews"), "the last known state stays");
    assert!(state.borrow().errors()[0].starts_with("kubernetes/Service: "));
    let why = down.error.unwrap_or_default();
    assert!(why.starts_with("kubernetes/Service: "), "{why}");

    // After the backoff it watches again and gets events: one added, one deleted.
    let (req, r) = loop {
        let (req, r) = next(&mut api).await;
        if req.path == "/api/v1/services" {
            break (req, r);
        }
        assert!(is_watch(&req), "other kinds only watch: {}", req.path);
        open.push(r);
    };
    let events = [
        json!({"type": "ADDED", "object": service("ratings")}),
        json!({"type": "DELETED", "object": service("reviews")}),
    ];
    if is_watch(&req) {
        respond_events(r, &events);
    } else {
        // A re-list instead: it shows the same end state.
        respond(r, 200, &list("Service", vec![service("ratings")]));
    }
    state.wait_for(SourceState::up).await.unwrap();
    health.wait_for(|h| h.up).await.unwrap();
    changes.changed().await.unwrap();
    let deadline = async {
        while has_service(&index, "reviews") || !has_service(&index, "ratings") {
            changes.changed().await.unwrap();
        }
    };
    deadline.await;
    task.abort();
}

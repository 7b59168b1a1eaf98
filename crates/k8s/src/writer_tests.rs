//! Status writes over a scripted API server: server-side apply on `/status`, and no write
//! when the object already carries its status or this replica does not lead.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::testing::{mock_client, next, respond};
use portolan_api::Kind;
use portolan_model::ConditionType;
use serde_json::Value;

fn route_ref() -> ObjectRef {
    ObjectRef::new(Kind::TrafficRoute, "shop", "reviews")
}

fn inputs() -> Inputs {
    let mut world = World::default();
    world.statuses.insert(
        route_ref(),
        vec![
            Condition::new(ConditionType::Accepted, true, "Accepted", "", 2),
            Condition::new(ConditionType::ResolvedRefs, true, "ResolvedRefs", "", 2),
        ],
    );
    Inputs {
        world: Arc::new(world),
        programmed: BTreeMap::new(),
    }
}

fn view_with_route() -> ClusterView {
    let view = ClusterView::new();
    view.record(
        route_ref(),
        Seen {
            generation: 2,
            resource_version: Some("7".into()),
            ..Seen::default()
        },
    );
    view
}

#[tokio::test]
async fn status_is_server_side_applied_on_the_status_subresource_once() {
    let (client, mut api) = mock_client();
    let view = view_with_route();
    let writer = Arc::new(StatusWriter::new(client, view.clone()));
    let (_leading_tx, leading) = watch::channel(true);
    let w = writer.clone();
    let l = leading.clone();
    let pass = tokio::spawn(async move { w.write_pass(&inputs(), &l).await });
    let (patch, r) = next(&mut api).await;
    assert_eq!(patch.method, "PATCH");
    assert_eq!(
        patch.path,
        "/apis/portolan.dev/v1alpha1/namespaces/shop/trafficroutes/reviews/status"
    );
    assert!(
        patch.query.contains("fieldManager=portolan"),
        "{}",
        patch.query
    );
    assert!(patch.query.contains("force=true"), "{}", patch.query);
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(patch.body["apiVersion"], "portolan.dev/v1alpha1");
    assert_eq!(patch.body["kind"], "TrafficRoute");
    assert!(patch.body.get("spec").is_none(), "status only");
    let status = &patch.body["status"];
    assert_eq!(status["observedGeneration"], 2);
    let types: Vec<&str> = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(types, ["Accepted", "ResolvedRefs", "Programmed"]);
    assert!(
        status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|c| c["observedGeneration"] == 2 && c["lastTransitionTime"].is_string())
    );
    // The API server answers with the object as it now is.
    let mut answer = patch.body.clone();
    answer["metadata"]["resourceVersion"] = Value::from("8");
    answer["metadata"]["generation"] = Value::from(2);
    respond(r, 200, &answer);
    let pass = pass.await.unwrap();
    assert_eq!((pass.written, pass.failed), (1, 0));
    // Nothing changed since: the next pass makes no request at all (the mock is gone, so a
    // request would fail and count as failed).
    drop(api);
    let pass = writer.write_pass(&inputs(), &leading).await;
    assert_eq!(
        pass,
        Pass {
            written: 0,
            current: 1,
            failed: 0
        }
    );
}

#[tokio::test]
async fn nothing_is_written_while_not_leading() {
    let (client, api) = mock_client();
    drop(api);
    let writer = StatusWriter::new(client, view_with_route());
    let (_tx, leading) = watch::channel(false);
    let pass = writer.write_pass(&inputs(), &leading).await;
    assert_eq!((pass.written, pass.failed), (0, 0));
}

#[tokio::test]
async fn objects_not_in_the_cluster_get_no_write() {
    let (client, api) = mock_client();
    drop(api);
    let writer = StatusWriter::new(client, ClusterView::new());
    let (_tx, leading) = watch::channel(true);
    let pass = writer.write_pass(&inputs(), &leading).await;
    assert_eq!(pass, Pass::default());
}

#[tokio::test]
async fn a_refused_write_is_counted_and_retried_next_pass() {
    let (client, mut api) = mock_client();
    let writer = Arc::new(StatusWriter::new(client, view_with_route()));
    let (_tx, leading) = watch::channel(true);
    let (w, l) = (writer.clone(), leading.clone());
    let pass = tokio::spawn(async move { w.write_pass(&inputs(), &l).await });
    let (_, r) = next(&mut api).await;
    respond(r, 403, &crate::testing::failure(403, "Forbidden"));
    assert_eq!(pass.await.unwrap().failed, 1);
    let (w, l) = (writer.clone(), leading.clone());
    let pass = tokio::spawn(async move { w.write_pass(&inputs(), &l).await });
    let (patch, r) = next(&mut api).await;
    assert_eq!(patch.method, "PATCH", "retried");
    respond(r, 200, &patch.body);
    assert_eq!(pass.await.unwrap().written, 1);
}

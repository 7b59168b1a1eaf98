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

fn policy_ref() -> ObjectRef {
    ObjectRef::new(Kind::RequestAuthentication, "shop", "jwt")
}

/// Policy `shop/jwt` on Portolan Gateway `edge`, listener `section` (`None`: the whole
/// Gateway): its summary condition and its one ancestor.
fn policy_inputs(section: Option<&str>) -> Inputs {
    use portolan_api::crd::policy_target::PolicyTargetRef;
    use portolan_model::policy_attach::{AncestorOutcome, Reach};
    let condition = Condition::new(ConditionType::Accepted, true, "Accepted", "applies", 2);
    let outcome = AncestorOutcome {
        target: PolicyTargetRef {
            group: "portolan.dev".into(),
            kind: "Gateway".into(),
            name: "edge".into(),
            section_name: section.map(Into::into),
        },
        reach: Some(Reach::Gateway {
            gateway: ObjectRef::new(Kind::Gateway, "shop", "edge"),
            listener: section.map(Into::into),
        }),
        condition: condition.clone(),
    };
    let mut world = World::default();
    let status = portolan_model::policy_status::policy_status(&world, "shop", &[outcome]);
    world.statuses.insert(policy_ref(), vec![condition]);
    world.api_statuses.insert(
        policy_ref(),
        portolan_model::gateway_api::ApiStatus::Policy(status),
    );
    Inputs {
        world: Arc::new(world),
        programmed: BTreeMap::new(),
    }
}

/// One pass that must write the policy's status once; answers with it and returns the
/// written `status.ancestors`.
async fn write_policy_once(writer: &StatusWriter, inputs: &Inputs) -> Value {
    let (client, mut api) = mock_client();
    let w = StatusWriter::new(client, writer.view.clone());
    let (_leading_tx, leading) = watch::channel(true);
    let inputs = inputs.clone();
    let pass = tokio::spawn(async move { w.write_pass(&inputs, &leading).await });
    let (patch, r) = next(&mut api).await;
    assert_eq!(
        patch.path,
        "/apis/portolan.dev/v1alpha1/namespaces/shop/requestauthentications/jwt/status"
    );
    let mut answer = patch.body.clone();
    answer["metadata"]["resourceVersion"] = Value::from("8");
    answer["metadata"]["generation"] = Value::from(2);
    respond(r, 200, &answer);
    let pass = pass.await.unwrap();
    assert_eq!((pass.written, pass.failed), (1, 0));
    patch.body["status"]["ancestors"].clone()
}

/// `status.ancestors` is part of what is compared: an unchanged list is not written again, a
/// changed one (same conditions) is.
#[tokio::test]
async fn a_policys_ancestors_are_written_when_they_change_and_only_then() {
    let view = ClusterView::new();
    view.record(
        policy_ref(),
        Seen {
            generation: 2,
            resource_version: Some("7".into()),
            ..Seen::default()
        },
    );
    let (client, api) = mock_client();
    let writer = StatusWriter::new(client, view);
    let whole = policy_inputs(None);
    let ancestors = write_policy_once(&writer, &whole).await;
    assert_eq!(ancestors[0]["ancestorRef"]["name"], "edge");
    assert_eq!(
        ancestors[0]["controllerName"],
        "portolan.dev/gateway-controller"
    );
    assert!(ancestors[0]["ancestorRef"].get("sectionName").is_none());

    // Unchanged: no request at all (the mock is gone, so one would fail).
    drop(api);
    let (_leading_tx, leading) = watch::channel(true);
    let pass = writer.write_pass(&whole, &leading).await;
    assert_eq!((pass.written, pass.current, pass.failed), (0, 1, 0));

    // Only the ancestor changes (the listener); the summary condition is the same.
    let listener = policy_inputs(Some("web"));
    assert_eq!(
        listener.world.statuses[&policy_ref()],
        whole.world.statuses[&policy_ref()]
    );
    let ancestors = write_policy_once(&writer, &listener).await;
    assert_eq!(ancestors[0]["ancestorRef"]["sectionName"], "web");
}

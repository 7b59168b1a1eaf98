//! The mesh CA Secret over a scripted API server: read as text, created as Opaque (a lost
//! race to create is no error), replaced at the version read (a conflict is), data that is
//! not text refused naming the entry.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::testing::{failure, mock_client, next, respond};
use serde_json::json;

const SECRETS: &str = "/api/v1/namespaces/portolan/secrets";
const SECRET: &str = "/api/v1/namespaces/portolan/secrets/portolan-ca";

fn data() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("ca.crt".to_string(), "CERT".to_string()),
        ("ca.key".to_string(), "KEY".to_string()),
    ])
}

fn stored(version: &str) -> serde_json::Value {
    // "CERT" and "KEY" in base64.
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "portolan-ca", "namespace": "portolan", "resourceVersion": version},
        "data": {"ca.crt": "Q0VSVA==", "ca.key": "S0VZ"}})
}

#[tokio::test]
async fn reads_the_data_as_text_and_none_when_absent() {
    let (client, mut api) = mock_client();
    let secret = CaSecret::new(client, "portolan", "portolan-ca");
    assert_eq!(secret.name(), "portolan/portolan-ca");
    let s = secret.clone();
    let read = tokio::spawn(async move { s.get().await });
    let (get, r) = next(&mut api).await;
    assert_eq!((get.method.as_str(), get.path.as_str()), ("GET", SECRET));
    respond(r, 200, &stored("7"));
    assert_eq!(read.await.unwrap().unwrap(), Some(data()));
    let read = tokio::spawn(async move { secret.get().await });
    let (_, r) = next(&mut api).await;
    respond(r, 404, &failure(404, "NotFound"));
    assert_eq!(read.await.unwrap().unwrap(), None);
}

#[tokio::test]
async fn creates_an_opaque_secret_and_a_lost_race_is_no_error() {
    let (client, mut api) = mock_client();
    let secret = CaSecret::new(client, "portolan", "portolan-ca");
    let s = secret.clone();
    let create = tokio::spawn(async move { s.create(&data()).await });
    let (post, r) = next(&mut api).await;
    assert_eq!(
        (post.method.as_str(), post.path.as_str()),
        ("POST", SECRETS)
    );
    assert_eq!(post.body["type"], "Opaque");
    assert_eq!(post.body["data"]["ca.crt"], "Q0VSVA==");
    assert_eq!(
        post.body["metadata"]["labels"]["app.kubernetes.io/component"],
        "mesh-ca"
    );
    respond(r, 201, &stored("1"));
    assert!(create.await.unwrap().unwrap());
    let create = tokio::spawn(async move { secret.create(&data()).await });
    let (_, r) = next(&mut api).await;
    respond(r, 409, &failure(409, "AlreadyExists"));
    assert!(
        !create.await.unwrap().unwrap(),
        "another replica created it"
    );
}

#[tokio::test]
async fn replaces_at_the_version_read_and_a_conflict_is_an_error() {
    let (client, mut api) = mock_client();
    let secret = CaSecret::new(client, "portolan", "portolan-ca");
    let mut next_data = data();
    next_data.insert("next.crt".to_string(), "NEXT".to_string());
    let put = tokio::spawn(async move { secret.put(&next_data).await });
    let (get, r) = next(&mut api).await;
    assert_eq!(get.method, "GET");
    respond(r, 200, &stored("7"));
    let (replace, r) = next(&mut api).await;
    assert_eq!(
        (replace.method.as_str(), replace.path.as_str()),
        ("PUT", SECRET)
    );
    assert_eq!(replace.body["metadata"]["resourceVersion"], "7");
    assert_eq!(replace.body["data"]["next.crt"], "TkVYVA==");
    respond(r, 409, &failure(409, "Conflict"));
    let err = put.await.unwrap().expect_err("a conflict");
    assert!(err.is_conflict(), "{err}");
}

#[tokio::test]
async fn data_that_is_not_text_is_refused_naming_the_entry() {
    let (client, mut api) = mock_client();
    let secret = CaSecret::new(client, "portolan", "portolan-ca");
    let read = tokio::spawn(async move { secret.get().await });
    let (_, r) = next(&mut api).await;
    let mut bad = stored("3");
    bad["data"]["ca.key"] = json!("/w==");
    respond(r, 200, &bad);
    let err = read.await.unwrap().expect_err("not UTF-8");
    assert!(err.to_string().contains("data.ca.key"), "{err}");
}

//! The self-managed certificate against a mocked Kubernetes API (`kube::Client` over
//! `tower-test`): a missing Secret is created and `caBundle` patched, a create conflict makes
//! the replica read the winner's Secret, a drifted `caBundle` is patched on resync, and the
//! certificate it serves chains to the CA for the Service's DNS names, over real HTTPS.

mod support;

use axum::http::{Method, Request, Response, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use portolan_webhook::self_signed::{CA_KEY, Issued};
use portolan_webhook::{Admission, Certificates, DryRun, SelfSigned, SelfSignedConfig};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tower_test::mock::{self, Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const SECRET_PATH: &str = "/api/v1/namespaces/portolan/secrets/portolan-webhook-tls";
const SECRETS_PATH: &str = "/api/v1/namespaces/portolan/secrets";
const CONFIG_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/portolan";

fn config() -> SelfSignedConfig {
    SelfSignedConfig {
        namespace: "portolan".into(),
        service: "portolan-webhook".into(),
        secret: "portolan-webhook-tls".into(),
        configuration: "portolan".into(),
        mutating_configuration: None,
        cluster_domain: "cluster.local".into(),
    }
}

fn client() -> (kube::Client, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

fn reply(send: SendResponse<Response<Body>>, code: StatusCode, body: &Value) {
    let bytes = serde_json::to_vec(body).expect("serializes");
    send.send_response(
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(bytes))
            .expect("response"),
    );
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}

/// The next request: asserts method and path, returns the body as JSON (Null when empty).
async fn expect(
    handle: &mut ApiHandle,
    method: Method,
    path: &str,
) -> (Request<()>, Value, SendResponse<Response<Body>>) {
    let (request, send) = handle.next_request().await.expect("a request to the API");
    assert_eq!(request.method(), method, "{}", request.uri());
    assert_eq!(request.uri().path(), path);
    let (parts, body) = request.into_parts();
    let bytes = http_body_util::BodyExt::collect(body)
        .await
        .expect("request body")
        .to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (Request::from_parts(parts, ()), json, send)
}

fn webhook_config(bundles: &[(&str, Option<&str>)]) -> Value {
    let webhooks: Vec<Value> = bundles
        .iter()
        .map(|(name, bundle)| {
            let mut client_config = json!({"service": {"name": "portolan-webhook", "namespace": "portolan", "path": "/validate"}});
            if let Some(b) = bundle {
                client_config["caBundle"] = json!(B64.encode(b));
            }
            json!({"name": name, "clientConfig": client_config, "sideEffects": "None",
                   "admissionReviewVersions": ["v1"]})
        })
        .collect();
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
           "metadata": {"name": "portolan", "resourceVersion": "1"}, "webhooks": webhooks})
}

fn secret_json(issued: &Issued) -> Value {
    serde_json::to_value(issued.to_secret(&config())).expect("serializes")
}

/// The CA in a Secret's JSON.
fn ca_of(secret: &Value) -> String {
    let secret: Secret = serde_json::from_value(secret.clone()).expect("a Secret");
    let bytes = secret.data.expect("data")[CA_KEY].0.clone();
    String::from_utf8(bytes).expect("PEM")
}

#[tokio::test]
async fn an_absent_secret_is_created_and_the_ca_bundle_patched() {
    let (client, mut handle) = client();
    let started = tokio::spawn(SelfSigned::start(client, config()));

    let (_, _, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
    reply(send, StatusCode::NOT_FOUND, &status(404, "NotFound"));
    let (_, created, send) = expect(&mut handle, Method::POST, SECRETS_PATH).await;
    assert_eq!(created["type"], "kubernetes.io/tls");
    assert_eq!(created["metadata"]["name"], "portolan-webhook-tls");
    let ca = ca_of(&created);
    reply(send, StatusCode::CREATED, &created);

    let (_, _, send) = expect(&mut handle, Method::GET, CONFIG_PATH).await;
    let current = webhook_config(&[
        ("validate.portolan.dev", None),
        ("other.portolan.dev", Some("stale")),
    ]);
    reply(send, StatusCode::OK, &current);
    let (req, patch, send) = expect(&mut handle, Method::PATCH, CONFIG_PATH).await;
    assert_eq!(
        req.headers()["content-type"],
        "application/strategic-merge-patch+json"
    );
    let bundle = json!(B64.encode(&ca));
    assert_eq!(
        patch,
        json!({"webhooks": [
            {"name": "validate.portolan.dev", "clientConfig": {"caBundle": bundle}},
            {"name": "other.portolan.dev", "clientConfig": {"caBundle": bundle}}
        ]})
    );
    reply(send, StatusCode::OK, &current);

    let managed = started.await.expect("task").expect("starts");
    assert_eq!(managed.ca_pem(), ca);

    // The served certificate chains to that CA for the Service's DNS name, over HTTPS.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let port = listener.local_addr().expect("address").port();
    let admission = Admission::new(DryRun::new(
        support::index(Vec::new()),
        None,
        portolan_translate::Options::default(),
    ));
    tokio::spawn(portolan_webhook::serve(
        listener,
        Certificates::SelfSigned(Arc::clone(&managed)),
        admission,
        std::future::pending(),
    ));
    let ca_der = CertificateDer::from_pem_slice(ca.as_bytes()).expect("CA PEM");
    for sni in [
        "portolan-webhook.portolan.svc",
        "portolan-webhook.portolan.svc.cluster.local",
    ] {
        let reply = support::request_to(ca_der.clone(), sni, port, "GET", "/healthz", Vec::new())
            .await
            .unwrap_or_else(|e| panic!("HTTPS as {sni}: {e}"));
        assert_eq!(reply.status, 200);
    }
}

#[tokio::test]
async fn a_create_conflict_means_another_replica_won_and_its_secret_is_used() {
    let winner = Issued::generate(&config().dns_names()).expect("generates");
    let (client, mut handle) = client();
    let started = tokio::spawn(SelfSigned::start(client, config()));

    let (_, _, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
    reply(send, StatusCode::NOT_FOUND, &status(404, "NotFound"));
    let (_, _, send) = expect(&mut handle, Method::POST, SECRETS_PATH).await;
    reply(send, StatusCode::CONFLICT, &status(409, "AlreadyExists"));
    let (_, _, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
    reply(send, StatusCode::OK, &secret_json(&winner));
    let (_, _, send) = expect(&mut handle, Method::GET, CONFIG_PATH).await;
    reply(
        send,
        StatusCode::OK,
        &webhook_config(&[("validate.portolan.dev", Some(&winner.ca_pem))]),
    );

    let managed = started.await.expect("task").expect("starts");
    assert_eq!(managed.ca_pem(), winner.ca_pem);
    drop(managed);
    // caBundle already held the winner's CA: nothing was patched.
    assert!(handle.next_request().await.is_none());
}

#[tokio::test]
async fn resync_patches_a_ca_bundle_that_drifted() {
    let existing = Issued::generate(&config().dns_names()).expect("generates");
    let (client, mut handle) = client();
    let in_sync = webhook_config(&[("validate.portolan.dev", Some(&existing.ca_pem))]);
    let started = tokio::spawn(SelfSigned::start(client, config()));
    let (_, _, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
    reply(send, StatusCode::OK, &secret_json(&existing));
    let (_, _, send) = expect(&mut handle, Method::GET, CONFIG_PATH).await;
    reply(send, StatusCode::OK, &in_sync);
    let managed = started.await.expect("task").expect("starts");

    // Someone reset the bundle (a `helm upgrade` rendering it empty, say).
    let resync = tokio::spawn({
        let managed = managed.clone();
        async move { managed.resync().await }
    });
    let (_, _, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
    reply(send, StatusCode::OK, &secret_json(&existing));
    let (_, _, send) = expect(&mut handle, Method::GET, CONFIG_PATH).await;
    reply(
        send,
        StatusCode::OK,
        &webhook_config(&[("validate.portolan.dev", None)]),
    );
    let (_, patch, send) = expect(&mut handle, Method::PATCH, CONFIG_PATH).await;
    assert_eq!(
        patch["webhooks"][0]["clientConfig"]["caBundle"],
        json!(B64.encode(&existing.ca_pem))
    );
    reply(send, StatusCode::OK, &in_sync);
    assert!(
        resync.await.expect("task").expect("resyncs"),
        "reported a change"
    );
}

#[tokio::test]
async fn a_secret_for_another_service_is_replaced_at_its_resource_version() {
    let stale = Issued::generate(&["old-name.portolan.svc".to_string()]).expect("generates");
    let (client, mut handle) = client();
    let started = tokio::spawn(SelfSigned::start(client, config()));
    let (_, _, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
    let mut existing = secret_json(&stale);
    existing["metadata"]["resourceVersion"] = json!("42");
    reply(send, StatusCode::OK, &existing);
    let (_, replaced, send) = expect(&mut handle, Method::PUT, SECRET_PATH).await;
    assert_eq!(replaced["metadata"]["resourceVersion"], "42");
    let ca = ca_of(&replaced);
    assert_ne!(ca, stale.ca_pem);
    reply(send, StatusCode::OK, &replaced);
    let (_, _, send) = expect(&mut handle, Method::GET, CONFIG_PATH).await;
    reply(
        send,
        StatusCode::OK,
        &webhook_config(&[("validate.portolan.dev", Some(&ca))]),
    );
    let managed = started.await.expect("task").expect("starts");
    assert_eq!(managed.ca_pem(), ca);
}

/// With the injector's MutatingWebhookConfiguration named, its stale `caBundle`s are patched
/// too, after the validating configuration's.
#[tokio::test]
async fn the_injector_configuration_gets_the_ca_bundle_too() {
    const MUTATING_PATH: &str =
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/portolan-inject";
    let issued = Issued::generate(&config().dns_names()).expect("generates");
    let mut with_injector = config();
    with_injector.mutating_configuration = Some("portolan-inject".into());
    let (client, mut handle) = client();
    let started = tokio::spawn(SelfSigned::start(client, with_injector));

    let (_, _, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
    reply(send, StatusCode::OK, &secret_json(&issued));
    let (_, _, send) = expect(&mut handle, Method::GET, CONFIG_PATH).await;
    reply(
        send,
        StatusCode::OK,
        &webhook_config(&[("validate.portolan.dev", Some(&issued.ca_pem))]),
    );
    let (_, _, send) = expect(&mut handle, Method::GET, MUTATING_PATH).await;
    let mut mutating = webhook_config(&[
        ("namespace.inject.portolan.dev", None),
        ("pod.inject.portolan.dev", Some(&issued.ca_pem)),
    ]);
    mutating["kind"] = json!("MutatingWebhookConfiguration");
    mutating["metadata"]["name"] = json!("portolan-inject");
    reply(send, StatusCode::OK, &mutating);
    let (_, patch, send) = expect(&mut handle, Method::PATCH, MUTATING_PATH).await;
    assert_eq!(
        patch,
        json!({"webhooks": [{"name": "namespace.inject.portolan.dev",
                              "clientConfig": {"caBundle": B64.encode(&issued.ca_pem)}}]})
    );
    reply(send, StatusCode::OK, &mutating);

    let managed = started.await.expect("task").expect("starts");
    assert_eq!(managed.ca_pem(), issued.ca_pem);
}

//! The webhook over real HTTPS: AdmissionReview JSON in, allowed or denied with the field path
//! out; malformed and oversized bodies refused; a rotated certificate file used by new
//! connections.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::time::Duration;
use support::{TestCa, admission_review, index, request, review, serve, write_pair};

fn service(name: &str, port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": port}]}
    })
}

fn tls_secret(name: &str, cert_pem: &str, key_pem: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"tls.crt": B64.encode(cert_pem), "tls.key": B64.encode(key_pem)}
    })
}

fn route(weights: (i64, i64)) -> Value {
    json!({
        "apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
        "metadata": {"name": "reviews", "namespace": "default", "generation": 1},
        "spec": {
            "hosts": ["reviews"],
            "http": [{"route": [
                {"destination": {"host": "reviews", "port": 9080}, "weight": weights.0},
                {"destination": {"host": "ratings", "port": 9080}, "weight": weights.1}
            ]}]
        }
    })
}

fn gateway(secret: &str) -> Value {
    json!({
        "apiVersion": "portolan.dev/v1alpha1", "kind": "Gateway",
        "metadata": {"name": "ingress", "namespace": "default"},
        "spec": {
            "selector": {"cluster": "ingress"},
            "listeners": [{
                "name": "https", "port": 8443, "protocol": "HTTPS",
                "hostnames": ["*.example.com"],
                "tls": {"secretRef": {"name": secret}}
            }]
        }
    })
}

/// Services `reviews` and `ratings`, a good TLS Secret and one whose key is another
/// certificate's (each PEM valid on its own).
fn cluster_objects() -> Vec<Value> {
    let ca = TestCa::new();
    let good = ca.issue("www.example.com");
    let other = ca.issue("other.example.com");
    vec![
        service("reviews", 9080),
        service("ratings", 9080),
        tls_secret("good-tls", &good.cert_pem, &good.key_pem),
        tls_secret("mismatched-tls", &good.cert_pem, &other.key_pem),
    ]
}

fn response(reply: &support::Reply) -> Value {
    assert_eq!(reply.status, 200, "body: {}", reply.body);
    let v = reply.json();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    v["response"].clone()
}

#[tokio::test]
async fn a_valid_route_is_allowed_and_the_uid_echoed() {
    let served = serve(index(cluster_objects())).await;
    let r = response(
        &review(
            &served,
            &admission_review("uid-1", "CREATE", &route((90, 10))),
        )
        .await,
    );
    assert_eq!(r["uid"], "uid-1");
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("status").is_none(), "{r}");
    // Only the blast radius: no unresolved reference.
    let warnings = r["warnings"].as_array().expect("the blast radius");
    assert!(
        warnings
            .iter()
            .all(|w| w.as_str().is_some_and(|w| w.starts_with("blast radius: "))),
        "{r}"
    );
}

#[tokio::test]
async fn a_bad_weight_is_denied_with_the_object_and_field_path() {
    let served = serve(index(cluster_objects())).await;
    let r = response(
        &review(
            &served,
            &admission_review("uid-2", "UPDATE", &route((-5, 10))),
        )
        .await,
    );
    assert_eq!(r["uid"], "uid-2");
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 422);
    assert_eq!(r["status"]["reason"], "Invalid");
    let message = r["status"]["message"].as_str().expect("a message");
    assert!(
        message.starts_with("TrafficRoute default/reviews: spec.http[0].route[0].weight: -5 is not a weight: must be 0-1000000"),
        "{message}"
    );
}

#[tokio::test]
async fn a_type_error_is_denied_with_the_field_path() {
    let served = serve(index(cluster_objects())).await;
    let mut bad = route((90, 10));
    bad["spec"]["http"][0]["route"][1]["weight"] = json!("ten");
    let r = response(&review(&served, &admission_review("uid-3", "CREATE", &bad)).await);
    assert_eq!(r["allowed"], false);
    let message = r["status"]["message"].as_str().expect("a message");
    assert!(
        message.starts_with("TrafficRoute default/reviews: spec.http[0].route[1].weight: "),
        "{message}"
    );
}

#[tokio::test]
async fn unresolved_references_are_warnings_not_denials() {
    let served = serve(index(vec![service("reviews", 9080)])).await;
    let r = response(
        &review(
            &served,
            &admission_review("uid-4", "CREATE", &route((90, 10))),
        )
        .await,
    );
    assert_eq!(r["allowed"], true, "{r}");
    let warnings = r["warnings"].as_array().expect("warnings");
    assert!(
        warnings.iter().any(|w| {
            let w = w.as_str().unwrap_or_default();
            w.starts_with("TrafficRoute default/reviews: ResolvedRefs=false")
                && w.contains("ratings")
        }),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn a_gateway_whose_translation_envoy_would_reject_is_denied_by_the_dry_run() {
    let served = serve(index(cluster_objects())).await;
    let ok = response(
        &review(
            &served,
            &admission_review("uid-5", "CREATE", &gateway("good-tls")),
        )
        .await,
    );
    assert_eq!(ok["allowed"], true, "{ok}");

    let r = response(
        &review(
            &served,
            &admission_review("uid-6", "CREATE", &gateway("mismatched-tls")),
        )
        .await,
    );
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["status"]["code"], 422);
    let message = r["status"]["message"].as_str().expect("a message");
    assert!(
        message.starts_with("Gateway default/ingress: rejected by the translation dry run: translation for proxy group \"ingress\": listener \"gateway-8443\""),
        "{message}"
    );
    assert!(
        message.contains("does not belong to the certificate"),
        "{message}"
    );
}

#[tokio::test]
async fn a_failure_the_world_already_has_is_a_warning_for_other_objects() {
    let mut objects = cluster_objects();
    objects.push(gateway("mismatched-tls"));
    let served = serve(index(objects)).await;
    let mut attached = route((90, 10));
    attached["spec"]["hosts"] = json!(["www.example.com"]);
    attached["spec"]["gateways"] = json!(["ingress"]);
    let r = response(&review(&served, &admission_review("uid-7", "CREATE", &attached)).await);
    assert_eq!(r["allowed"], true, "{r}");
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("already fails the dry run, not because of TrafficRoute default/reviews"),
        "{warnings}"
    );
}

#[tokio::test]
async fn delete_and_other_kinds_are_allowed() {
    let served = serve(index(cluster_objects())).await;
    let r = response(
        &review(
            &served,
            &admission_review("uid-8", "DELETE", &route((-5, 10))),
        )
        .await,
    );
    assert_eq!(
        (r["uid"].clone(), r["allowed"].clone()),
        (json!("uid-8"), json!(true))
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": 5});
    let r = response(&review(&served, &admission_review("uid-9", "CREATE", &pod)).await);
    assert_eq!(r["allowed"], true);
}

#[tokio::test]
async fn malformed_bodies_get_400_with_the_reason() {
    let served = serve(index(Vec::new())).await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{\"apiVersion\":".to_vec(), "the body is not JSON"),
        (
            serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})).expect("json"),
            "has no request",
        ),
        (
            serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "u"}})).expect("json"),
            "is not served",
        ),
    ];
    for (body, want) in cases {
        let reply = request(&served.ca, served.port, "POST", "/validate", body)
            .await
            .expect("HTTPS request");
        assert_eq!(reply.status, 400, "{}", reply.body);
        assert!(reply.body.contains(want), "{} (want {want:?})", reply.body);
    }
    // An object that is not a mapping is a 200 AdmissionReview denial (400 inside).
    let mut review_json = admission_review("uid-10", "CREATE", &route((1, 1)));
    review_json["request"]["object"] = json!([1]);
    let r = response(&review(&served, &review_json).await);
    assert_eq!(
        (r["allowed"].clone(), r["status"]["code"].clone()),
        (json!(false), json!(400))
    );
}

#[tokio::test]
async fn huge_bodies_are_refused() {
    let served = serve(index(Vec::new())).await;
    let mut body = b"{\"pad\":\"".to_vec();
    body.resize(portolan_webhook::server::MAX_REVIEW_BYTES + 1024, b'a');
    body.extend_from_slice(b"\"}");
    let reply = request(&served.ca, served.port, "POST", "/validate", body)
        .await
        .expect("HTTPS request");
    assert_eq!(reply.status, 413, "{}", reply.body);
}

#[tokio::test]
async fn healthz_answers_over_https() {
    let served = serve(index(Vec::new())).await;
    let reply = request(&served.ca, served.port, "GET", "/healthz", Vec::new())
        .await
        .expect("HTTPS request");
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn a_rotated_certificate_file_is_used_by_new_connections() {
    let served = serve(index(Vec::new())).await;
    let first = request(&served.ca, served.port, "GET", "/healthz", Vec::new())
        .await
        .expect("HTTPS request");
    let next = served.ca.issue("localhost");
    assert_ne!(first.peer_certificate, next.cert_der);
    write_pair(served.dir.path(), &next);
    tokio::spawn(served.tls.clone().watch(Duration::from_millis(20)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = request(&served.ca, served.port, "GET", "/healthz", Vec::new())
            .await
            .expect("HTTPS request");
        if reply.peer_certificate == next.cert_der {
            assert_eq!(reply.status, 200);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

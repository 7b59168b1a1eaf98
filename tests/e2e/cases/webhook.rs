//! End to end, the admission webhook of a real `portolan serve --config-dir ... --webhook-cert
//! ... --webhook-key ...`: AdmissionReview JSON over HTTPS, a valid TrafficRoute allowed (with
//! a warning for the one destination the served config lacks, gone once the watched directory
//! has it), a bad weight denied with the
//! object and field path, a DELETE allowed, a malformed body refused with 400.

use crate::bin;
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::ports::free_port;
use portolan_e2e::tls::{TestCa, https_request};
use portolan_e2e::{Portolan, eventually, service_yaml};
use serde_json::{Value, json};
use std::time::Duration;

fn route(second_host: &str, weight: i64) -> Value {
    json!({
        "apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"hosts": ["reviews"], "http": [{"route": [
            {"destination": {"host": "reviews", "port": 9080}, "weight": weight},
            {"destination": {"host": second_host, "port": 9080}, "weight": 10}
        ]}]}
    })
}

fn review(uid: &str, operation: &str, object: &Value) -> Vec<u8> {
    let (object, old) = if operation == "DELETE" {
        (Value::Null, object.clone())
    } else {
        (object.clone(), Value::Null)
    };
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "portolan.dev", "version": "v1alpha1", "kind": "TrafficRoute"},
            "resource": {"group": "portolan.dev", "version": "v1alpha1", "resource": "trafficroutes"},
            "name": "reviews", "namespace": "default", "operation": operation,
            "userInfo": {"username": "kubernetes-admin"},
            "object": object, "oldObject": old, "dryRun": false
        }
    }))
    .unwrap_or_default()
}

/// Whether every warning of an AdmissionReview response is a blast radius line.
fn only_blast_radius(response: &Value) -> bool {
    response["warnings"].as_array().is_some_and(|w| {
        w.iter()
            .all(|w| w.as_str().is_some_and(|w| w.starts_with("blast radius: ")))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_style_admission_reviews_over_https() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let config = ConfigDir::new()?;
    config.write("reviews.yaml", &service_yaml("default", "reviews", 9080))?;
    config.write("ratings.yaml", &service_yaml("default", "ratings", 9080))?;
    let ca = TestCa::new()?;
    let cert = ca.issue(&["localhost"])?;
    let tls = tempfile::tempdir()?;
    let (cert_file, key_file) = (tls.path().join("tls.crt"), tls.path().join("tls.key"));
    std::fs::write(&cert_file, &cert.cert_pem)?;
    std::fs::write(&key_file, &cert.key_pem)?;
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let args = [
        "--webhook-address",
        address.as_str(),
        "--webhook-cert",
        cert_file.to_str().unwrap_or_default(),
        "--webhook-key",
        key_file.to_str().unwrap_or_default(),
    ];
    let portolan = Portolan::start_with(bin(), &config, Ports::free(), &args).await?;
    let post = |body: Vec<u8>| {
        let ca = &ca;
        async move { https_request(ca, port, "localhost", "POST", "/validate", &body).await }
    };

    let reply = post(review("e2e-1", "CREATE", &route("ratings", 90))).await?;
    assert_eq!(reply.status, 200, "{}\n{}", reply.body, portolan.log_tail());
    assert_eq!(reply.peer_certificate, cert.cert_der);
    let r: Value = serde_json::from_str(&reply.body)?;
    assert_eq!(r["response"]["uid"], "e2e-1");
    assert_eq!(r["response"]["allowed"], true, "{r}");
    assert!(only_blast_radius(&r["response"]), "{r}");
    let warnings = r["response"]["warnings"].to_string();
    assert!(
        warnings.contains("blast radius: group default (connected: 0): push"),
        "{warnings}"
    );

    // `validate --against` prints the same report for files, and refuses a bad one (exit 1).
    let files = tempfile::tempdir()?;
    let good = files.path().join("route.json");
    std::fs::write(&good, serde_json::to_vec(&route("ratings", 90))?)?;
    let against = |file: &std::path::Path| {
        std::process::Command::new(bin())
            .args(["validate", "--against", &portolan.url("")])
            .arg(file)
            .output()
    };
    let out = against(&good)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("blast radius: group default (connected: 0): push"),
        "{stdout}"
    );
    let bad = files.path().join("bad.json");
    std::fs::write(&bad, serde_json::to_vec(&route("ratings", -1))?)?;
    let out = against(&bad)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("spec.http[0].route[0].weight"), "{stdout}");

    // The dry run reads the served config: `details` is not in the directory.
    let r: Value = serde_json::from_str(
        &post(review("e2e-2", "CREATE", &route("details", 90)))
            .await?
            .body,
    )?;
    assert_eq!(r["response"]["allowed"], true, "{r}");
    let warnings = r["response"]["warnings"].to_string();
    assert!(
        warnings.contains("TrafficRoute default/reviews: ResolvedRefs=false"),
        "{warnings}"
    );
    assert!(warnings.contains("details"), "{warnings}");

    // ... and follows it: once `details` is written to the directory, the warning is gone.
    config.write("details.yaml", &service_yaml("default", "details", 9080))?;
    eventually(
        "the dry run to see Service details",
        Duration::from_secs(20),
        || {
            let post = &post;
            async move {
                let reply = post(review("e2e-2b", "CREATE", &route("details", 90)))
                    .await
                    .map_err(|e| e.to_string())?;
                let r: Value = serde_json::from_str(&reply.body).map_err(|e| e.to_string())?;
                if r["response"]["allowed"] == true && only_blast_radius(&r["response"]) {
                    Ok(())
                } else {
                    Err(r.to_string())
                }
            }
        },
    )
    .await?;

    let r: Value = serde_json::from_str(
        &post(review("e2e-3", "UPDATE", &route("ratings", -1)))
            .await?
            .body,
    )?;
    assert_eq!(r["response"]["allowed"], false, "{r}");
    assert_eq!(r["response"]["status"]["code"], 422);
    let message = r["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.starts_with(
            "TrafficRoute default/reviews: spec.http[0].route[0].weight: -1 is not a weight"
        ),
        "{message}"
    );

    let r: Value = serde_json::from_str(
        &post(review("e2e-4", "DELETE", &route("ratings", -1)))
            .await?
            .body,
    )?;
    assert_eq!(r["response"]["allowed"], true, "{r}");

    let reply = post(b"not an AdmissionReview".to_vec()).await?;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.body.contains("the body is not JSON"),
        "{}",
        reply.body
    );
    Ok(())
}

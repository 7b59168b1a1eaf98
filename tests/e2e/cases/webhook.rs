//! End to end, the admission webhook of a real `portolan serve --config-dir ... --webhook-cert
//! ... --webhook-key ...`: AdmissionReview JSON over HTTPS, a valid TrafficRoute allowed (with
//! a warning for the one destination the served config lacks, gone once the watched directory
//! has it), a bad weight denied with the
//! object and field path, a DELETE allowed, a Gateway API route Portolan would refuse allowed
//! with the field path as a warning, a malformed body refused with 400; and the blast
//! radius with a stock Envoy connected: the proxy counted, a removed subset cluster named, in
//! the AdmissionReview warnings and by `portolan validate --against --fail-on-removal`.

use crate::bin;
use portolan_e2e::envoy::Protocol;
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::ports::free_port;
use portolan_e2e::tls::{TestCa, https_request};
use portolan_e2e::{Envoy, Portolan, eventually, service_yaml};
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
    review_of(("TrafficRoute", "trafficroutes"), uid, operation, object)
}

/// An AdmissionReview of a `portolan.dev/v1alpha1` object of `(kind, resource)`.
fn review_of(kind: (&str, &str), uid: &str, operation: &str, object: &Value) -> Vec<u8> {
    let name = object["metadata"]["name"].clone();
    let (object, old) = if operation == "DELETE" {
        (Value::Null, object.clone())
    } else {
        (object.clone(), Value::Null)
    };
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "portolan.dev", "version": "v1alpha1", "kind": kind.0},
            "resource": {"group": "portolan.dev", "version": "v1alpha1", "resource": kind.1},
            "name": name, "namespace": "default", "operation": operation,
            "userInfo": {"username": "kubernetes-admin"},
            "object": object, "oldObject": old, "dryRun": false
        }
    }))
    .unwrap_or_default()
}

/// `portolan serve` on `config` with its webhook on HTTPS (a certificate for `localhost`
/// from a test CA).
struct Webhook {
    portolan: Portolan,
    ca: TestCa,
    cert: portolan_e2e::tls::ServerCert,
    port: u16,
    _tls: tempfile::TempDir,
}

impl Webhook {
    async fn start(config: &ConfigDir, ports: Ports) -> anyhow::Result<Self> {
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
        let portolan = Portolan::start_with(bin(), config, ports, &args).await?;
        Ok(Self {
            portolan,
            ca,
            cert,
            port,
            _tls: tls,
        })
    }
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
    let hook = Webhook::start(&config, Ports::free()).await?;
    let (ca, cert, port, portolan) = (&hook.ca, &hook.cert, hook.port, &hook.portolan);
    let post = |body: Vec<u8>| {
        let ca = &*ca;
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

    // A Gateway API object is never refused: Portolan's field error comes as a warning.
    let httproute = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"parentRefs": [{"name": "edge"}],
                 "rules": [{"backendRefs": [{"name": "reviews", "port": 9080, "weight": -1}]}]}
    });
    let body = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "e2e-5",
            "kind": {"group": "gateway.networking.k8s.io", "version": "v1", "kind": "HTTPRoute"},
            "resource": {"group": "gateway.networking.k8s.io", "version": "v1", "resource": "httproutes"},
            "name": "web", "namespace": "default", "operation": "CREATE",
            "object": httproute, "oldObject": null, "dryRun": false
        }
    }))?;
    let r: Value = serde_json::from_str(&post(body).await?.body)?;
    assert_eq!(r["response"]["allowed"], true, "{r}");
    let warnings = r["response"]["warnings"].to_string();
    assert!(
        warnings.contains("spec.rules[0].backendRefs[0].weight"),
        "{warnings}"
    );

    let reply = post(b"not an AdmissionReview".to_vec()).await?;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.body.contains("the body is not JSON"),
        "{}",
        reply.body
    );
    Ok(())
}

/// A TrafficPolicy on `reviews` with these subsets (labelled `version: NAME`).
fn subsets(names: &[&str]) -> Value {
    let subsets: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "labels": {"version": n}}))
        .collect();
    json!({
        "apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficPolicy",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"host": "reviews", "subsets": subsets}
    })
}

/// The serving directory, a webhook over HTTPS and one stock Envoy of group `default`: an
/// UPDATE that drops a subset warns that it reaches 1 connected proxy and REMOVES the
/// subset's cluster; `validate --against --fail-on-removal` exits 2 on the same file; a
/// DELETE of the policy, and `validate --against --delete` of its file, name both subset
/// clusters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blast_radius_names_connected_proxies_and_removals() -> anyhow::Result<()> {
    let config = ConfigDir::new()?;
    config.write("reviews.yaml", &service_yaml("default", "reviews", 9080))?;
    config.write("policy.yaml", &subsets(&["v1", "v2"]).to_string())?;
    let ports = Ports::free();
    let hook = Webhook::start(&config, ports).await?;
    let (ca, port, portolan) = (&hook.ca, hook.port, &hook.portolan);
    let _envoy = Envoy::start(bin(), ports, "blast-1", "default", Protocol::Sotw).await?;
    let kind = ("TrafficPolicy", "trafficpolicies");
    let ask = |uid: &'static str, operation: &'static str, object: Value| {
        let ca = &*ca;
        async move {
            let body = review_of(kind, uid, operation, &object);
            let reply = https_request(ca, port, "localhost", "POST", "/validate", &body)
                .await
                .map_err(|e| e.to_string())?;
            let r: Value = serde_json::from_str(&reply.body).map_err(|e| e.to_string())?;
            Ok::<String, String>(r["response"]["warnings"].to_string())
        }
    };

    // The registry counts the Envoy once its stream is open (it is LIVE, so it is).
    let dropped = eventually(
        "the warning to count the connected Envoy",
        Duration::from_secs(20),
        || {
            let ask = &ask;
            async move {
                let w = ask("blast-1", "UPDATE", subsets(&["v1"])).await?;
                if w.contains("group default (connected: 1)") {
                    Ok(w)
                } else {
                    Err(w)
                }
            }
        },
    )
    .await?;
    assert!(dropped.contains("REMOVES clusters"), "{dropped}");
    assert!(dropped.contains("v2"), "{dropped}");
    assert!(!dropped.contains("v1"), "{dropped}");

    let deleted = ask("blast-2", "DELETE", subsets(&["v1", "v2"]))
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(deleted.contains("(connected: 1)"), "{deleted}");
    assert!(
        deleted.contains("v1") && deleted.contains("v2"),
        "{deleted}"
    );

    // The same change from a file: printed, and exit 2 with --fail-on-removal.
    let files = tempfile::tempdir()?;
    let file = files.path().join("policy.json");
    std::fs::write(&file, serde_json::to_vec(&subsets(&["v1"]))?)?;
    let out = std::process::Command::new(bin())
        .args([
            "validate",
            "--fail-on-removal",
            "--against",
            &portolan.url(""),
        ])
        .arg(&file)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("group default (connected: 1)"), "{stdout}");
    assert!(stdout.contains("REMOVES clusters"), "{stdout}");

    // A deletion from files: `--delete` takes the manifests of the objects to remove.
    let old = files.path().join("old-policy.json");
    std::fs::write(&old, serde_json::to_vec(&subsets(&["v1", "v2"]))?)?;
    let out = std::process::Command::new(bin())
        .args(["validate", "--against", &portolan.url(""), "--delete"])
        .arg(&old)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("REMOVES clusters"), "{stdout}");
    assert!(
        stdout.contains("|v1|") && stdout.contains("|v2|"),
        "{stdout}"
    );
    Ok(())
}

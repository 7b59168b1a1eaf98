//! End to end, a NACK: a Gateway's TLS Secret is edited to a real certificate with another
//! certificate's private key (Portolan's validation accepts both PEMs; Envoy cannot pair them). Stock Envoy
//! NACKs the SDS secret update (gateway keys are SDS secrets, not part of the listener); the
//! proof is that traffic keeps flowing on the last good config, `/debug/proxies` shows Envoy's
//! error text, `portolan_xds_nacks_total{type="sds"}` counts it, the NACK is attributed to the
//! Gateway and its Secret, the rejected version is not resent in a loop, and a fixed Secret is
//! ACKed.

use crate::bin;
use portolan_e2e::mesh::https_gateway;
use portolan_e2e::tls::{ServerCert, TestCa, https_get};
use portolan_e2e::{Mesh, eventually};
use serde_json::Value;
use std::time::Duration;

const SDS: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The secret status of node `ingress-1` on `/debug/proxies`.
async fn sds_status(m: &Mesh) -> anyhow::Result<Value> {
    let proxies = m.portolan.get_json("/debug/proxies").await?;
    let row = proxies
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["node_id"] == "ingress-1"))
        .cloned()
        .unwrap_or(Value::Null);
    let types = row["types"].as_array().cloned().unwrap_or_default();
    Ok(types
        .into_iter()
        .find(|t| t["type_url"] == SDS)
        .unwrap_or(Value::Null))
}

/// A sample of Portolan's `/metrics` by its exact series name (with labels); 0 when absent.
async fn metric(m: &Mesh, series: &str) -> anyhow::Result<f64> {
    Ok(m.portolan.metric(series).await?.unwrap_or(0.0))
}

async fn serves(ca: &TestCa, port: u16, cert: &ServerCert) -> Result<(), String> {
    match https_get(ca, port, "www.example.com", "/").await {
        Ok(r) if r.status == 200 && r.peer_certificate == cert.cert_der => Ok(()),
        Ok(r) => Err(format!(
            "status {} (certificate matches: {})",
            r.status,
            r.peer_certificate == cert.cert_der
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_nacks_a_bad_certificate_and_keeps_serving_the_last_good_one() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let www = portolan_e2e::Upstream::start("www").await?;
    let ca = TestCa::new()?;
    let good = ca.issue(&["www.example.com"])?;
    let (m, ports) = https_gateway(bin(), &www, &good).await?;
    let https = ports.https;
    eventually(
        "HTTPS with the good certificate",
        Duration::from_secs(20),
        || serves(&ca, https, &good),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;
    let nacks_before = metric(&m, "portolan_xds_nacks_total{type=\"sds\"}").await?;

    // Break the Secret in a way only Envoy can tell: a real certificate with the private key
    // of another one. Portolan's validation accepts both PEMs and pushes them.
    let other = ca.issue(&["other.example.com"])?;
    let bad = ServerCert {
        cert_pem: good.cert_pem.clone(),
        key_pem: other.key_pem.clone(),
        cert_der: Vec::new(),
    };
    m.config.write(
        "www-tls.yaml",
        &bad.secret_yaml("default", "www-example-com-tls"),
    )?;
    let nacked = eventually(
        "a secret NACK on /debug/proxies",
        Duration::from_secs(20),
        || async {
            let status = sds_status(&m).await.map_err(|e| e.to_string())?;
            match status["last_nack"]["message"].as_str() {
                Some(msg) if !msg.is_empty() => Ok(status.clone()),
                _ => Err(status.to_string()),
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;
    let message = nacked["last_nack"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!("Envoy's NACK: {message}");
    assert!(
        message.contains("private key"),
        "the error is about the key: {message}"
    );
    assert_eq!(
        nacked["last_nack"]["version"], nacked["sent_version"],
        "{nacked}"
    );
    assert_ne!(nacked["acked_version"], nacked["sent_version"], "{nacked}");
    assert!(metric(&m, "portolan_xds_nacks_total{type=\"sds\"}").await? >= nacks_before + 1.0);
    assert!(
        m.config_errors().await?.is_empty(),
        "Portolan itself accepted the Secret"
    );

    // The NACK surfaces on the objects behind the rejected listener: Programmed=False on the
    // Gateway and its Secret, naming the proxy and Envoy's text.
    let page = m.portolan.get_json("/debug/config-errors").await?;
    let nack = &page["nacks"][0];
    assert_eq!(nack["node"], "ingress-1", "{page}");
    assert_eq!(nack["type"], "sds", "{page}");
    assert_eq!(nack["message"].as_str(), Some(message.as_str()), "{page}");
    for object in [
        "Gateway default/ingress",
        "Secret default/www-example-com-tls",
    ] {
        let programmed = page["statuses"][object]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Programmed"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(programmed["status"], false, "{object}: {page}");
        assert_eq!(programmed["reason"], "Nacked", "{object}: {page}");
        let text = programmed["message"].as_str().unwrap_or_default();
        assert!(
            text.contains("ingress-1") && text.contains("private key"),
            "{text}"
        );
    }

    // Traffic keeps flowing on the last good listener, with the good certificate.
    serves(&ca, https, &good)
        .await
        .map_err(anyhow::Error::msg)?;

    // No resend loop: the rejected version is not pushed again while nothing changes. (A
    // fixed observation window: absence cannot be polled for.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    let nacks = metric(&m, "portolan_xds_nacks_total{type=\"sds\"}").await? - nacks_before;
    assert!(nacks <= 2.0, "NACKed {nacks} times: resent in a loop");
    let rejected: u64 = m
        .envoy
        .stats_containing("www-example-com-tls.update_rejected")
        .await?
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert!(rejected <= 2, "Envoy rejected {rejected} updates");
    serves(&ca, https, &good)
        .await
        .map_err(anyhow::Error::msg)?;

    // Fixing the Secret (a new certificate) gets a new version, ACKed and served.
    let fixed = ca.issue(&["www.example.com"])?;
    m.config.write(
        "www-tls.yaml",
        &fixed.secret_yaml("default", "www-example-com-tls"),
    )?;
    let acked = eventually(
        "the fixed secret ACKed",
        Duration::from_secs(20),
        || async {
            let status = sds_status(&m).await.map_err(|e| e.to_string())?;
            let synced = status["acked_version"] == status["sent_version"]
                && status["acked_version"] != nacked["sent_version"]
                && status["acked_version"] != nacked["acked_version"];
            if synced {
                Ok(status.clone())
            } else {
                Err(status.to_string())
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;
    assert!(acked["acked_version"].is_string(), "{acked}");
    let page = m.portolan.get_json("/debug/config-errors").await?;
    assert_eq!(
        page["nacks"],
        serde_json::json!([]),
        "the NACK is resolved: {page}"
    );
    eventually(
        "HTTPS with the fixed certificate",
        Duration::from_secs(20),
        || serves(&ca, https, &fixed),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;

    // The fix converged: every connected proxy ACKed it.
    eventually(
        "a convergence observed",
        Duration::from_secs(20),
        || async {
            match metric(&m, "portolan_xds_convergence_seconds_count").await {
                Ok(n) if n >= 1.0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await?;
    assert_eq!(
        metric(&m, "portolan_xds_connected_proxies{client=\"envoy\"}").await?,
        1.0
    );
    assert!(metric(&m, "portolan_debounce_batches_total").await? >= 2.0);
    // The broken and the fixed Secret each went out as a secret push (the listener as before).
    assert!(metric(&m, "portolan_xds_pushes_total{type=\"sds\"}").await? >= 3.0);
    assert!(metric(&m, "portolan_xds_pushes_total{type=\"lds\"}").await? >= 1.0);
    assert!(metric(&m, "portolan_resources{type=\"lds\"}").await? >= 1.0);
    Ok(())
}

/// A TrafficRoute for `api` whose one rule matches `path` (a `regex`, or a `prefix`).
fn api_route(kind: &str, path: &str) -> String {
    format!(
        r#"apiVersion: portolan.dev/v1alpha1
kind: TrafficRoute
metadata:
  name: api-route
  namespace: default
spec:
  hosts: [api]
  http:
  - name: only
    match:
    - path:
        {kind}: '{path}'
    route:
    - destination:
        host: api
"#
    )
}

/// The mesh route configuration NACKed: a TrafficRoute's regex that Portolan's validation
/// accepts (valid RE2 syntax) but Envoy refuses (its RE2 program is bigger than Envoy's limit
/// of 100). Envoy's text quotes the regex, naming neither the route configuration nor the
/// virtual host; the provenance of the group's snapshot points the NACK at the one TrafficRoute
/// whose rule has that regex (`Programmed=False` on it), not at every Service of the mesh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_route_nack_is_attributed_to_the_traffic_route_behind_it() -> anyhow::Result<()> {
    use portolan_e2e::{endpoints_yaml, service_yaml};
    let _shared = portolan_e2e::serial::shared().await;
    let a = portolan_e2e::Upstream::start("a").await?;
    let m = Mesh::start(
        bin(),
        "mesh",
        &[
            ("web/service.yaml", service_yaml("default", "web", 80)),
            (
                "web/endpoints.yaml",
                endpoints_yaml("default", "web", &[&a]),
            ),
            ("api/service.yaml", service_yaml("default", "api", 80)),
            (
                "api/endpoints.yaml",
                endpoints_yaml("default", "api", &[&a]),
            ),
            ("api/route.yaml", api_route("prefix", "/")),
        ],
    )
    .await?;
    m.envoy.wait_for_response("web", 200, "a").await?;
    m.envoy.wait_for_response("api", 200, "a").await?;

    let regex = "/(a|b|c|d|e|f|g|h){40}";
    m.config
        .write("api/route.yaml", &api_route("regex", regex))?;
    let page = eventually(
        "an RDS NACK on /debug/config-errors",
        Duration::from_secs(20),
        || async {
            let page = m
                .portolan
                .get_json("/debug/config-errors")
                .await
                .map_err(|e| e.to_string())?;
            let rds = page["nacks"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n["type"] == "rds"));
            if rds { Ok(page) } else { Err(page.to_string()) }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;
    assert!(m.config_errors().await?.is_empty(), "Portolan accepted it");
    let nack = page["nacks"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["type"] == "rds"))
        .cloned()
        .unwrap_or_default();
    println!("Envoy's NACK: {}", nack["message"]);
    assert!(
        nack["message"].as_str().unwrap_or_default().contains(regex),
        "{nack}"
    );
    assert_eq!(nack["node"], "mesh-1", "{nack}");
    assert_eq!(
        nack["resources"],
        serde_json::json!(["mesh-outbound"]),
        "{nack}"
    );
    assert_eq!(
        nack["objects"],
        serde_json::json!(["TrafficRoute default/api-route"]),
        "{nack}"
    );
    let programmed = |object: &str| {
        page["statuses"][object]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Programmed"))
            .cloned()
            .unwrap_or_default()
    };
    let route = programmed("TrafficRoute default/api-route");
    assert_eq!(route["status"], false, "{page}");
    assert_eq!(route["reason"], "Nacked", "{page}");
    assert!(
        route["message"]
            .as_str()
            .unwrap_or_default()
            .contains("mesh-1"),
        "{route}"
    );
    for other in ["Service default/web", "Service default/api"] {
        assert!(programmed(other).is_null(), "{other}: {page}");
    }
    // The last good route configuration stays in force.
    m.envoy.wait_for_response("api", 200, "a").await?;
    Ok(())
}

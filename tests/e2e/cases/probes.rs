//! The sidecar's static probe listener (`portolan bootstrap --app-probe`, what the injector
//! writes for rewritten kubelet probes), on loopback with stock Envoy and real applications:
//! an HTTP probe forwarded with its original path, query and header, the application's 503
//! reported as a failure; TCP probes passing while the port accepts and failing once it
//! closes; a gRPC probe asking the health service about the original service name and
//! following its SERVING / NOT_SERVING answer. (In network namespaces, under STRICT mutual TLS,
//! see `inject.rs`.)

use crate::bin;
use portolan_e2e::envoy::Protocol;
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::ports::free_port;
use portolan_e2e::upstream::GrpcHealth;
use portolan_e2e::{Envoy, Portolan, Upstream, eventually};
use std::time::Duration;

/// GET `/app-health/NAME` on the probe port: status and response.
async fn probe(port: u16, name: &str) -> Result<(u16, reqwest::Response), String> {
    let url = format!("http://127.0.0.1:{port}/app-health/{name}");
    let response = reqwest::get(&url).await.map_err(|e| e.to_string())?;
    Ok((response.status().as_u16(), response))
}

/// Waits until `/app-health/NAME` answers `status`.
async fn until(port: u16, name: &str, status: u16) -> anyhow::Result<()> {
    eventually(
        &format!("/app-health/{name} answering {status}"),
        Duration::from_secs(20),
        || async move {
            match probe(port, name).await {
                Ok((s, _)) if s == status => Ok(()),
                Ok((s, _)) => Err(format!("status {s}")),
                Err(e) => Err(e),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_listener_checks_the_application_like_the_kubelet() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let config = ConfigDir::new()?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    let app = Upstream::start("app").await?;
    let grpc = GrpcHealth::start().await?;
    let closed = free_port();
    let probe_port = free_port();
    let flags = [
        format!("--probe-port={probe_port}"),
        format!(
            "--app-probe=app/readyz=http://127.0.0.1:{}/headers?full=1",
            app.port()
        ),
        "--app-probe-header=app/readyz=X-Probe:kube%20let".to_string(),
        format!(
            "--app-probe=app/startupz=http://127.0.0.1:{}/status/503",
            app.port()
        ),
        format!("--app-probe=app/livez=tcp://127.0.0.1:{}", app.port()),
        format!("--app-probe=gone/livez=tcp://127.0.0.1:{closed}"),
        format!(
            "--app-probe=api/readyz=grpc://127.0.0.1:{}/shop.Cart",
            grpc.port()
        ),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let envoy = Envoy::start_with(
        bin(),
        portolan.ports(),
        "probed-1",
        "probed",
        Protocol::Sotw,
        &flags,
    )
    .await?;
    let diagnostics = || envoy.log_tail();

    // HTTP: the original path and query, the original header, the application's answer.
    let (status, response) = probe(probe_port, "app/readyz")
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", diagnostics()))?;
    assert_eq!(status, 200);
    let seen_path = response
        .headers()
        .get("x-seen-path")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_eq!(seen_path.as_deref(), Some("/headers?full=1"));
    let headers: serde_json::Value = response.json().await?;
    assert_eq!(
        headers["x-probe"],
        serde_json::json!(["kube let"]),
        "{headers}"
    );
    // The application's 503 is the probe's answer (from the application, not Envoy).
    let (status, response) = probe(probe_port, "app/startupz")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(status, 503);
    assert_eq!(
        response
            .headers()
            .get("x-upstream")
            .and_then(|v| v.to_str().ok()),
        Some("app")
    );

    // TCP: passes while the port accepts, fails while it is closed.
    until(probe_port, "app/livez", 200).await?;
    let (status, _) = probe(probe_port, "gone/livez")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(status, 503, "a closed port passed");

    // gRPC: the health service is asked about the original service; its answer decides.
    until(probe_port, "api/readyz", 200).await?;
    assert!(
        grpc.services().iter().any(|s| s == "shop.Cart"),
        "{:?}",
        grpc.services()
    );
    grpc.set_serving(false);
    until(probe_port, "api/readyz", 503).await?;
    grpc.set_serving(true);
    until(probe_port, "api/readyz", 200).await?;

    // The application going away fails its TCP probe.
    app.stop();
    until(probe_port, "app/livez", 503).await?;
    // An unknown probe is not answered 200.
    let (status, _) = probe(probe_port, "other/readyz")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(status, 404);
    Ok(())
}

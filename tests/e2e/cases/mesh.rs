//! End to end, zero-config mesh: Portolan serving a watched directory, stock Envoy started from
//! `portolan bootstrap`, real upstream servers, real requests through Envoy's mesh listener.
//! Each test has its own Portolan, Envoy and ports, so they run in parallel.

use crate::bin;
use portolan_e2e::envoy::Protocol;
use portolan_e2e::{Mesh, Portolan, Upstream, endpoints_yaml, eventually, service_yaml};
use std::time::Duration;

/// A running mesh: config dir, Portolan and one Envoy in group `mesh` speaking `protocol`.
async fn mesh(protocol: Protocol, files: &[(&str, String)]) -> anyhow::Result<Mesh> {
    Mesh::start_speaking(bin(), "mesh", protocol, files, &[]).await
}

async fn routes_follow_edits(protocol: Protocol) -> anyhow::Result<()> {
    let a = Upstream::start("a").await?;
    let b = Upstream::start("b").await?;
    let m = mesh(
        protocol,
        &[
            ("web/service.yaml", service_yaml("default", "web", 80)),
            (
                "web/endpoints.yaml",
                endpoints_yaml("default", "web", &[&a]),
            ),
        ],
    )
    .await?;

    m.envoy.wait_for_response("web", 200, "a").await?;
    let hits = a.hits();
    for _ in 0..20 {
        assert_eq!(m.envoy.get("web", "/").await?, (200, "a".to_string()));
    }
    assert!(a.hits() >= hits + 20, "requests reached upstream a");

    // Editing the EndpointSlice file moves traffic, without restarting anything.
    m.config.write(
        "web/endpoints.yaml",
        &endpoints_yaml("default", "web", &[&b]),
    )?;
    m.envoy.wait_for_response("web", 200, "b").await?;
    let before = a.hits();
    for _ in 0..20 {
        assert_eq!(m.envoy.get("web", "/").await?, (200, "b".to_string()));
    }
    assert_eq!(a.hits(), before, "no request reached the removed endpoint");

    // Deleting the Service removes its route: Envoy answers 404 (no route for the host).
    m.config.remove("web/service.yaml")?;
    m.envoy.wait_for_response("web", 404, "").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_traffic_follows_endpoint_edits_and_service_deletion() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    routes_follow_edits(Protocol::Sotw).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_traffic_follows_endpoint_edits_and_service_deletion() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    routes_follow_edits(Protocol::Delta).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_host_form_reaches_the_service() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let a = Upstream::start("a").await?;
    let m = mesh(
        Protocol::Sotw,
        &[(
            "web.yaml",
            format!(
                "{}---\n{}",
                service_yaml("shop", "web", 8080),
                endpoints_yaml("shop", "web", &[&a])
            ),
        )],
    )
    .await?;
    m.envoy.wait_for_response("web.shop", 200, "a").await?;
    for host in [
        "web",
        "web:8080",
        "web.shop",
        "web.shop:8080",
        "web.shop.svc",
        "web.shop.svc:8080",
        "web.shop.svc.cluster.local",
        "web.shop.svc.cluster.local:8080",
    ] {
        assert_eq!(
            m.envoy.get(host, "/").await?,
            (200, "a".to_string()),
            "host {host}"
        );
    }
    assert_eq!(m.envoy.get("web:9999", "/").await?.0, 404, "unknown port");
    assert_eq!(m.envoy.get("nope", "/").await?.0, 404, "unknown service");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portolan_restart_does_not_interrupt_traffic() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let a = Upstream::start("a").await?;
    let b = Upstream::start("b").await?;
    let m = mesh(
        Protocol::Sotw,
        &[
            ("svc.yaml", service_yaml("default", "web", 80)),
            ("eps.yaml", endpoints_yaml("default", "web", &[&a])),
        ],
    )
    .await?;
    m.envoy.wait_for_response("web", 200, "a").await?;
    let ports = m.portolan.ports();
    let Mesh {
        config,
        portolan,
        envoy,
    } = m;

    // The control plane dies hard; Envoy keeps serving its last config.
    portolan.kill().await?;
    eventually(
        "envoy to notice the control plane is gone",
        Duration::from_secs(10),
        || async {
            match envoy.stat("control_plane.connected_state").await {
                Ok(Some(0)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await?;
    for i in 0..50 {
        assert_eq!(
            envoy.get("web", "/").await?,
            (200, "a".to_string()),
            "request {i} while portolan is down"
        );
    }

    // A new Portolan on the same ports: Envoy reconnects and takes new changes.
    let portolan = Portolan::start(bin(), &config, ports).await?;
    eventually("envoy to reconnect", Duration::from_secs(30), || async {
        match envoy.stat("control_plane.connected_state").await {
            Ok(Some(1)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    config.write("eps.yaml", &endpoints_yaml("default", "web", &[&b]))?;
    envoy.wait_for_response("web", 200, "b").await?;

    // SIGTERM is a clean shutdown.
    let status = portolan.terminate().await?;
    assert!(status.success(), "portolan exited with {status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_manifest_keeps_the_last_good_config() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let a = Upstream::start("a").await?;
    let b = Upstream::start("b").await?;
    let m = mesh(
        Protocol::Sotw,
        &[
            ("web.yaml", service_yaml("default", "web", 80)),
            ("web-eps.yaml", endpoints_yaml("default", "web", &[&a])),
        ],
    )
    .await?;
    m.envoy.wait_for_response("web", 200, "a").await?;

    // Break web's Service: port 0 is invalid. The old version of web stays in force.
    m.config.write(
        "web.yaml",
        &service_yaml("default", "web", 80).replace("port: 80", "port: 0"),
    )?;
    let errors = eventually(
        "the error to be reported",
        Duration::from_secs(10),
        || async {
            let v = m
                .portolan
                .get_json("/debug/config-errors")
                .await
                .map_err(|e| e.to_string())?;
            let errors = v["errors"].as_array().cloned().unwrap_or_default();
            if errors.is_empty() {
                Err(v.to_string())
            } else {
                Ok(errors)
            }
        },
    )
    .await?;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["location"], "web.yaml#0");
    assert_eq!(errors[0]["object"], "Service default/web");
    assert_eq!(errors[0]["field"], "spec.ports[0].port");

    // The rest of the world keeps updating: a new service appears.
    m.config.write(
        "api.yaml",
        &format!(
            "{}---\n{}",
            service_yaml("default", "api", 80),
            endpoints_yaml("default", "api", &[&b])
        ),
    )?;
    m.envoy.wait_for_response("api", 200, "b").await?;
    assert_eq!(m.envoy.get("web", "/").await?, (200, "a".to_string()));

    // Fixing the file clears the error.
    m.config
        .write("web.yaml", &service_yaml("default", "web", 80))?;
    eventually("the error to clear", Duration::from_secs(10), || async {
        let v = m
            .portolan
            .get_json("/debug/config-errors")
            .await
            .map_err(|e| e.to_string())?;
        match v["errors"].as_array() {
            Some(e) if e.is_empty() => Ok(()),
            _ => Err(v.to_string()),
        }
    })
    .await?;
    let metrics = m.portolan.get_text("/metrics").await?;
    assert!(metrics.contains("portolan_config_errors"), "{metrics}");
    Ok(())
}

//! End to end, what a proxy's identity selects: a Gateway chosen by the labels in the proxy's
//! node metadata (`portolan bootstrap --label`), and locality-aware balancing by the proxy's zone
//! (`portolan bootstrap --zone`).

use crate::bin;
use portolan_e2e::envoy::Protocol;
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::{Envoy, Portolan, Upstream, eventually, service_yaml};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_selects_proxies_by_their_node_labels() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let gw_port = portolan_e2e::ports::free_port();
    let config = ConfigDir::new()?;
    config.write(
        "edge.yaml",
        &format!(
            "apiVersion: portolan.dev/v1alpha1\nkind: Gateway\nmetadata: {{name: edge}}\nspec:\n  selector:\n    metadata: {{tier: edge}}\n  listeners:\n  - {{name: http, port: {gw_port}, protocol: HTTP}}\n---\napiVersion: portolan.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {{name: www}}\nspec:\n  hosts: [www.example.com]\n  gateways: [edge]\n  http:\n  - directResponse: {{status: 200, body: edge}}\n"
        ),
    )?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    let ports = portolan.ports();
    let labelled = Envoy::start_with(
        bin(),
        ports,
        "edge-1",
        "web",
        Protocol::Sotw,
        &["--label", "tier=edge"],
    )
    .await?;
    let plain = Envoy::start(bin(), ports, "web-1", "web", Protocol::Sotw).await?;

    let reply = eventually(
        "the gateway listener to answer",
        Duration::from_secs(20),
        || async {
            match portolan_e2e::http::get(gw_port, "www.example.com", "/").await {
                Ok(r) if r.status == 200 => Ok(r),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", labelled.log_tail()))?;
    assert_eq!(reply.body, "edge");

    // Same node cluster, no label: a sidecar with the mesh listener, not the gateway.
    let listeners = plain.admin("/listeners").await?;
    assert!(listeners.contains("mesh-outbound"), "{listeners}");
    assert!(
        !listeners.contains(&format!("gateway-{gw_port}")),
        "{listeners}"
    );
    let listeners = labelled.admin("/listeners").await?;
    assert!(!listeners.contains("mesh-outbound"), "{listeners}");
    Ok(())
}

fn zoned_slice(name: &str, upstream: &Upstream, zone: &str, ready: bool) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-{name}\n  labels:\n    kubernetes.io/service-name: web\naddressType: IPv4\nendpoints:\n- addresses: [\"{ip}\"]\n  zone: {zone}\n  conditions: {{ready: {ready}}}\nports:\n- name: http\n  port: {port}\n",
        ip = upstream.addr().ip(),
        port = upstream.addr().port(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locality_aware_balancing_prefers_the_proxys_zone() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let a = Upstream::start("a").await?;
    let b = Upstream::start("b").await?;
    let config = ConfigDir::new()?;
    config.write("svc.yaml", &service_yaml("default", "web", 80))?;
    config.write("a.yaml", &zoned_slice("a", &a, "zone-a", true))?;
    config.write("b.yaml", &zoned_slice("b", &b, "zone-b", true))?;
    config.write(
        "policy.yaml",
        "apiVersion: portolan.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: web}\nspec:\n  host: web\n  loadBalancer: {algorithm: RoundRobin, localityAware: true}\n",
    )?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    let envoy = Envoy::start_with(
        bin(),
        portolan.ports(),
        "web-b-1",
        "web",
        Protocol::Sotw,
        &["--zone", "zone-b"],
    )
    .await?;
    envoy.wait_for_response("web", 200, "b").await?;
    for i in 0..30 {
        assert_eq!(
            envoy.get("web", "/").await?,
            (200, "b".to_string()),
            "request {i}: the proxy is in zone-b"
        );
    }
    // The local endpoint goes away: traffic fails over to the other zone.
    config.write("b.yaml", &zoned_slice("b", &b, "zone-b", false))?;
    envoy.wait_for_response("web", 200, "a").await?;
    for i in 0..10 {
        assert_eq!(
            envoy.get("web", "/").await?,
            (200, "a".to_string()),
            "request {i}"
        );
    }
    Ok(())
}

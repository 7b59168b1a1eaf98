//! End to end, the cluster examples of `examples/kubernetes/` (the files
//! docs/getting-started.md applies): served from a watched directory, with EndpointSlices for
//! `echo-v1` and `echo-v2` pointing at real upstreams, a stock Envoy as the `web` sidecar and
//! one as the `ingress` gateway (bootstrapped with the example's `--label role=ingress`).
//! The canary splits 90/10 on the mesh and on the gateway, and after the example's merge
//! patch (`canary-50-50.patch`) 50/50 on both, without a restart.

use crate::bin;
use portolan_e2e::envoy::Protocol;
use portolan_e2e::ports::free_port;
use portolan_e2e::{Envoy, Mesh, Upstream, endpoints_yaml, eventually, http};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

fn read_example(name: &str) -> String {
    // This test's own package path, not the harness's `examples_dir()`: a harness build
    // reused from another checkout would point there.
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/kubernetes")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The example files as Portolan reads them; the Gateway's listener port swapped for a free
/// one (8080 in the example).
fn example_files(gateway_port: u16) -> Vec<(&'static str, String)> {
    let gateway = read_example("ingress-gateway.yaml");
    assert!(
        gateway.contains("      port: 8080\n"),
        "the Gateway listens on 8080"
    );
    vec![
        ("00-namespace.yaml", read_example("00-namespace.yaml")),
        ("echo.yaml", read_example("echo.yaml")),
        ("envoy-sidecar.yaml", read_example("envoy-sidecar.yaml")),
        (
            "ingress-gateway.yaml",
            gateway.replace(
                "      port: 8080\n",
                &format!("      port: {gateway_port}\n"),
            ),
        ),
        ("canary-90-10.yaml", read_example("canary-90-10.yaml")),
    ]
}

/// RFC 7386 JSON merge patch, as `kubectl patch --type merge` applies it.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(out) = target else { return };
    for (k, v) in fields {
        if v.is_null() {
            out.remove(k);
        } else {
            merge_patch(out.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// canary-90-10.yaml with `canary-50-50.patch` applied to its TrafficRoute (JSON is YAML, so
/// the patched route is written as JSON after the unchanged TrafficPolicy).
fn canary_after_patch() -> String {
    let text = read_example("canary-90-10.yaml");
    let docs: Vec<&str> = text.split("\n---\n").collect();
    assert_eq!(
        docs.len(),
        2,
        "canary-90-10.yaml: a TrafficPolicy and a TrafficRoute"
    );
    let mut route: Value = serde_saphyr::from_str(docs[1]).expect("the TrafficRoute parses");
    assert_eq!(route["kind"], "TrafficRoute");
    let patch: Value =
        serde_saphyr::from_str(&read_example("canary-50-50.patch")).expect("the patch parses");
    merge_patch(&mut route, &patch);
    format!("{}\n---\n{}\n", docs[0], route)
}

/// GETs `host` on `port` `n` times; answers per upstream (every one must be 200).
async fn tally(port: u16, host: &str, n: usize) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let r = http::get(port, host, "/").await?;
        anyhow::ensure!(r.status == 200, "request {i} for {host} on {port}: {r:?}");
        *counts
            .entry(r.upstream().unwrap_or("<none>").to_string())
            .or_default() += 1;
    }
    Ok(counts)
}

/// The share of `name` is `percent` ± `tolerance` points (binomial: 10% of 1,000 has sd 0.95
/// points, ±5 is over 5 sd; 50% of 400 has sd 2.5, ±10 is 4 sd), and only v1 and v2 answer.
fn assert_share(counts: &BTreeMap<String, usize>, name: &str, percent: f64, tolerance: f64) {
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["echo-v1", "echo-v2"],
        "only the two versions answer: {counts:?}"
    );
    let total: usize = counts.values().sum();
    let got = counts.get(name).copied().unwrap_or(0) as f64 * 100.0 / total as f64;
    assert!(
        (got - percent).abs() <= tolerance,
        "{name} got {got:.1}% of {total}, want {percent}% ± {tolerance}: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_example_splits_mesh_and_gateway_traffic_and_follows_the_patch()
-> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let v1 = Upstream::start("echo-v1").await?;
    let v2 = Upstream::start("echo-v2").await?;
    let gateway_port = free_port();
    let mut files = example_files(gateway_port);
    files.push((
        "endpoints.yaml",
        [
            endpoints_yaml("demo", "echo", &[&v1, &v2]),
            endpoints_yaml("demo", "echo-v1", &[&v1]),
            endpoints_yaml("demo", "echo-v2", &[&v2]),
        ]
        .join("---\n"),
    ));
    // The sidecar's group is the example bootstrap's `--cluster web`.
    let m = Mesh::start(bin(), "web", &files).await?;
    let gateway = Envoy::start_with(
        bin(),
        m.portolan.ports(),
        "ingress-1",
        "ingress",
        Protocol::Sotw,
        &["--label", "role=ingress"],
    )
    .await?;
    m.wait_config("\"demo/echo-canary/canary\"").await?;
    assert!(
        m.config_errors().await?.is_empty(),
        "{:?}",
        m.config_errors().await?
    );
    let gateway_ready = eventually(
        "the gateway to route echo.example.com",
        Duration::from_secs(20),
        || async {
            match http::get(gateway_port, "echo.example.com", "/").await {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(format!("{} {:?}", r.status, r.body)),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    gateway_ready.map_err(|e| anyhow::anyhow!("{e}\n{}", gateway.log_tail()))?;

    let mesh = m.envoy.mesh_port();
    assert_share(&tally(mesh, "echo.demo", 1000).await?, "echo-v2", 10.0, 5.0);
    assert_share(
        &tally(gateway_port, "echo.example.com", 1000).await?,
        "echo-v2",
        10.0,
        5.0,
    );

    // Step 2: the merge patch, as `kubectl patch --type merge` would apply it.
    m.config.write("canary-90-10.yaml", &canary_after_patch())?;
    // Both proxies have the new weights once their route configuration says 50.
    for envoy in [&m.envoy, &gateway] {
        let updated = eventually(
            "the 50/50 route on the proxy",
            Duration::from_secs(20),
            || async {
                match envoy
                    .admin("/config_dump?resource=dynamic_route_configs")
                    .await
                {
                    Ok(dump)
                        if dump.contains("\"weight\": 50") && !dump.contains("\"weight\": 90") =>
                    {
                        Ok(())
                    }
                    Ok(_) => Err("not yet".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await;
        updated.map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;
    }
    assert_share(&tally(mesh, "echo.demo", 400).await?, "echo-v2", 50.0, 10.0);
    assert_share(
        &tally(gateway_port, "echo.example.com", 400).await?,
        "echo-v2",
        50.0,
        10.0,
    );
    Ok(())
}

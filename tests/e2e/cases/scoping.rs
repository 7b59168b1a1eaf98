//! End to end, per-proxy scoping (`portolan bootstrap --scope`, node metadata
//! `portolan.dev/scope`): a proxy scoped to namespace `shop` reaches shop's Services, has no
//! cluster for namespace `other`'s, and gets no push when `other` changes, while an unscoped
//! proxy of the same node cluster does. Pushes are counted twice: Portolan's per-stream
//! `responses_sent` on `/debug/proxies` and Envoy's own `update_success` stats.
//!
//! A `ProxyScope` in the config directory scopes a proxy that sends no scope at all (only its
//! namespace and labels), and editing it changes what the running Envoy reaches; one with
//! `discovery: on-demand` and hosts makes a Delta proxy learn, on first use, only the hosts
//! its scope admits.

use crate::bin;
use portolan_e2e::envoy::Protocol;
use portolan_e2e::manifests::example;
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::{Envoy, Portolan, Upstream, endpoints_yaml, eventually, service_yaml};
use std::time::Duration;

const X_CLUSTER: &str = "outbound|80||x.other.svc.cluster.local";

/// Responses Portolan sent to a node, summed over its streams (`/debug/proxies`).
async fn responses_sent(portolan: &Portolan, node: &str) -> anyhow::Result<u64> {
    let proxies = portolan.get_json("/debug/proxies").await?;
    let rows = proxies.as_array().cloned().unwrap_or_default();
    let sent = rows
        .iter()
        .filter(|row| row["node_id"] == node)
        .filter_map(|row| row["responses_sent"].as_u64())
        .sum();
    Ok(sent)
}

/// A Prometheus counter of Portolan's `/metrics` (0 when absent).
async fn metric(portolan: &Portolan, name: &str) -> anyhow::Result<u64> {
    Ok(portolan.metric(name).await?.unwrap_or_default() as u64)
}

/// Envoy's successful CDS, EDS (of `other`'s cluster) and LDS updates.
async fn envoy_updates(envoy: &Envoy) -> anyhow::Result<(u64, u64, u64)> {
    let cds = envoy.stat("cluster_manager.cds.update_success").await?;
    let eds = envoy
        .stat(&format!("cluster.{X_CLUSTER}.update_success"))
        .await?;
    let lds = envoy.stat("listener_manager.lds.update_success").await?;
    Ok((
        cds.unwrap_or_default(),
        eds.unwrap_or_default(),
        lds.unwrap_or_default(),
    ))
}

/// Waits until every stream of the node has ACKed what it was sent and the count holds still.
async fn settled(portolan: &Portolan, node: &str) -> anyhow::Result<u64> {
    eventually(
        &format!("{node} to ACK everything sent"),
        Duration::from_secs(20),
        || async {
            let proxies = portolan
                .get_json("/debug/proxies")
                .await
                .map_err(|e| e.to_string())?;
            let rows: Vec<_> = proxies
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|row| row["node_id"] == node)
                .collect();
            let acked = !rows.is_empty()
                && rows.iter().all(|row| {
                    row["types"].as_array().is_some_and(|types| {
                        types.len() >= 4
                            && types
                                .iter()
                                .all(|t| t["sent_version"] == t["acked_version"])
                    })
                });
            if acked {
                Ok(())
            } else {
                Err(format!("{rows:?}"))
            }
        },
    )
    .await?;
    responses_sent(portolan, node).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_proxy_sees_its_namespace_and_is_not_pushed_for_another() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let cart = Upstream::start("cart").await?;
    let x = Upstream::start("x").await?;
    let x2 = Upstream::start("x2").await?;
    let config = ConfigDir::new()?;
    config.write("cart.yaml", &service_yaml("shop", "cart", 80))?;
    config.write("cart-ep.yaml", &endpoints_yaml("shop", "cart", &[&cart]))?;
    config.write("x.yaml", &service_yaml("other", "x", 80))?;
    config.write("x-ep.yaml", &endpoints_yaml("other", "x", &[&x]))?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    let ports = portolan.ports();
    let scoped = Envoy::start_with(
        bin(),
        ports,
        "scoped-1",
        "web",
        Protocol::Sotw,
        &["--scope", "./*", "--scope-namespace", "shop"],
    )
    .await?;
    // The scoped proxy reaches shop's Service, and has neither cluster nor route for other's.
    // (Traffic first, while it is the only Envoy on the mesh port: both bind it with
    // SO_REUSEPORT, so with two a connection may land on either.)
    scoped.wait_for_response("cart.shop", 200, "cart").await?;
    let (status, _) = scoped.get("x.other", "/").await?;
    assert_eq!(
        status, 404,
        "no virtual host for x.other on the scoped proxy"
    );
    assert_eq!(scoped.cluster_config(X_CLUSTER).await?, None);
    let routes = scoped
        .admin("/config_dump?resource=dynamic_route_configs")
        .await?;
    assert!(routes.contains("cart.shop"), "{routes}");
    assert!(!routes.contains("x.other"), "{routes}");

    let plain = Envoy::start(bin(), ports, "plain-1", "web", Protocol::Sotw).await?;
    eventually(
        "the unscoped proxy to get x",
        Duration::from_secs(20),
        || async {
            match plain.cluster_config(X_CLUSTER).await {
                Ok(Some(_)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await?;

    let scoped_before = settled(&portolan, "scoped-1").await?;
    let plain_before = settled(&portolan, "plain-1").await?;
    let envoy_before = envoy_updates(&scoped).await?;
    let builds_before = metric(&portolan, "portolan_snapshot_builds_total").await?;
    let fast_before = metric(&portolan, "portolan_snapshot_builds_endpoints_only_total").await?;

    // Namespace `other` changes: x gets a second endpoint.
    config.write("x-ep.yaml", &endpoints_yaml("other", "x", &[&x, &x2]))?;
    eventually(
        "the unscoped proxy to get x's new endpoint",
        Duration::from_secs(20),
        || async {
            let lines = plain
                .cluster_lines(X_CLUSTER)
                .await
                .map_err(|e| e.to_string())?;
            let hosts = lines.iter().filter(|l| l.contains("::cx_total::")).count();
            if hosts >= 2 {
                Ok(())
            } else {
                Err(format!("{lines:?}"))
            }
        },
    )
    .await?;
    // Both groups were rebuilt for the change (one snapshot each) ...
    eventually("both groups rebuilt", Duration::from_secs(20), || async {
        let builds = metric(&portolan, "portolan_snapshot_builds_total")
            .await
            .map_err(|e| e.to_string())?;
        if builds >= builds_before + 2 {
            Ok(())
        } else {
            Err(format!("{builds} builds, {builds_before} before"))
        }
    })
    .await?;
    // ... each by replacing x's endpoints in its previous snapshot (issue #24's fast path).
    let fast = metric(&portolan, "portolan_snapshot_builds_endpoints_only_total").await?;
    assert!(
        fast >= fast_before + 2,
        "endpoint-only builds: {fast}, {fast_before} before"
    );
    let plain_after = settled(&portolan, "plain-1").await?;
    assert!(
        plain_after > plain_before,
        "the unscoped proxy was pushed: {plain_before} -> {plain_after}"
    );
    // ... but the scoped proxy's identical snapshot sent it nothing.
    let scoped_after = settled(&portolan, "scoped-1").await?;
    assert_eq!(
        scoped_after, scoped_before,
        "no response to the scoped proxy for a change in another namespace"
    );
    assert_eq!(envoy_updates(&scoped).await?, envoy_before);

    // A change in its own namespace does reach it.
    config.write(
        "cart-ep.yaml",
        &endpoints_yaml("shop", "cart", &[&cart, &x2]),
    )?;
    eventually(
        "the scoped proxy to be pushed shop's change",
        Duration::from_secs(20),
        || async {
            let sent = responses_sent(&portolan, "scoped-1")
                .await
                .map_err(|e| e.to_string())?;
            if sent > scoped_after {
                Ok(())
            } else {
                Err(format!("{sent} responses"))
            }
        },
    )
    .await?;
    Ok(())
}

fn proxy_scope_yaml(name: &str, selector: Option<&str>, hosts: &[&str], discovery: &str) -> String {
    let selector = selector.map_or(String::new(), |l| {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        format!("  selector:\n    matchLabels:\n      {k}: {v}\n")
    });
    let hosts = hosts
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let discovery = if discovery.is_empty() {
        String::new()
    } else {
        format!("  discovery: {discovery}\n")
    };
    format!(
        "apiVersion: portolan.dev/v1alpha1\nkind: ProxyScope\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n{selector}  hosts: [{hosts}]\n{discovery}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_scope_scopes_a_proxy_that_sends_no_scope_and_follows_edits() -> anyhow::Result<()>
{
    let _shared = portolan_e2e::serial::shared().await;
    let cart = Upstream::start("cart").await?;
    let x = Upstream::start("x").await?;
    let config = ConfigDir::new()?;
    config.write("cart.yaml", &service_yaml("shop", "cart", 80))?;
    config.write("cart-ep.yaml", &endpoints_yaml("shop", "cart", &[&cart]))?;
    config.write("x.yaml", &service_yaml("other", "x", 80))?;
    config.write("x-ep.yaml", &endpoints_yaml("other", "x", &[&x]))?;
    // The example: shop's namespace default admits ./* and shared/* (its `web` ProxyScope
    // selects app=web, which this proxy is not).
    config.write("scope.yaml", &example("scoping/proxy-scope.yaml"))?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    // No --scope: only the namespace (node.metadata["portolan.dev/namespace"]) is sent.
    let envoy = Envoy::start_with(
        bin(),
        portolan.ports(),
        "cart-1",
        "cart",
        Protocol::Sotw,
        &["--scope-namespace", "shop"],
    )
    .await?;
    let pid = envoy.pid();
    envoy.wait_for_response("cart.shop", 200, "cart").await?;
    let (status, _) = envoy.get("x.other", "/").await?;
    assert_eq!(
        status, 404,
        "x.other is outside the namespace default's scope"
    );
    assert_eq!(envoy.cluster_config(X_CLUSTER).await?, None);

    // Widen the scope: the running Envoy reaches x.other.
    config.write(
        "scope.yaml",
        &proxy_scope_yaml(
            "default",
            None,
            &["./*", "other/x.other.svc.cluster.local"],
            "",
        ),
    )?;
    envoy.wait_for_response("x.other", 200, "x").await?;
    // Narrow it to other's host alone: shop's own Service is gone.
    config.write(
        "scope.yaml",
        &proxy_scope_yaml("default", None, &["*/x.other.svc.cluster.local"], ""),
    )?;
    envoy.wait_for_response("cart.shop", 404, "").await?;
    envoy.wait_for_response("x.other", 200, "x").await?;
    // A selector ProxyScope that does not match the proxy's labels changes nothing ...
    config.write(
        "web-scope.yaml",
        &proxy_scope_yaml("web", Some("app=web"), &["./*"], ""),
    )?;
    // ... and deleting the namespace default gives the proxy everything again.
    config.remove("scope.yaml")?;
    envoy.wait_for_response("cart.shop", 200, "cart").await?;
    envoy.wait_for_response("x.other", 200, "x").await?;
    assert_eq!(envoy.pid(), pid, "the same Envoy process throughout");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_scope_with_on_demand_discovery_learns_only_admitted_hosts() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let cart = Upstream::start("cart").await?;
    let x = Upstream::start("x").await?;
    let config = ConfigDir::new()?;
    config.write("cart.yaml", &service_yaml("shop", "cart", 80))?;
    config.write("cart-ep.yaml", &endpoints_yaml("shop", "cart", &[&cart]))?;
    config.write("x.yaml", &service_yaml("other", "x", 80))?;
    config.write("x-ep.yaml", &endpoints_yaml("other", "x", &[&x]))?;
    // The namespace default would give everything in full; the selector one wins for app=od.
    config.write(
        "default.yaml",
        &proxy_scope_yaml("default", None, &["*/*"], "full"),
    )?;
    config.write(
        "od.yaml",
        &proxy_scope_yaml("od", Some("app=od"), &["./*"], "on-demand"),
    )?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    let envoy = Envoy::start_with(
        bin(),
        portolan.ports(),
        "od-1",
        "cart",
        Protocol::Delta,
        &["--scope-namespace", "shop", "--label", "app=od"],
    )
    .await?;
    let cart_cluster = "outbound|80||cart.shop.svc.cluster.local";
    // On-demand: nothing for cart until the first request, which succeeds.
    eventually("the listener", Duration::from_secs(20), || async {
        let listeners = envoy.admin("/listeners").await.map_err(|e| e.to_string())?;
        if listeners.contains("mesh-outbound") {
            Ok(())
        } else {
            Err(listeners)
        }
    })
    .await?;
    assert_eq!(envoy.cluster_config(cart_cluster).await?, None);
    envoy.wait_for_response("cart.shop", 200, "cart").await?;
    assert!(envoy.cluster_config(cart_cluster).await?.is_some());
    // Scoped: other's host is not in the scope, so its lookup finds nothing: 404 at once.
    let (status, _) = envoy.get("x.other", "/").await?;
    assert_eq!(
        status, 404,
        "x.other is outside the on-demand proxy's scope"
    );
    assert_eq!(envoy.cluster_config(X_CLUSTER).await?, None);
    Ok(())
}

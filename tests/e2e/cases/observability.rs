//! End to end, observability: a stock Envoy connected to Portolan shows up SYNCED in
//! `portolan proxy-status`, its config in `portolan config-dump`, and its clusters in CSDS.

use crate::bin;
use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_client::ClientStatusDiscoveryServiceClient;
use envoy_types::pb::envoy::service::status::v3::{ClientStatusRequest, ConfigStatus};
use portolan_e2e::envoy::Protocol;
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::{Envoy, Portolan, Upstream, endpoints_yaml, eventually, service_yaml};
use std::process::Output;
use std::time::Duration;

const CLUSTER: &str = "outbound|80||web.default.svc.cluster.local";
const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

/// Runs `portolan ARGS...` and returns its output.
async fn portolan(args: &[&str]) -> anyhow::Result<Output> {
    Ok(tokio::process::Command::new(bin())
        .args(args)
        .kill_on_drop(true)
        .output()
        .await?)
}

/// A running mesh of one Envoy (`sidecar-1`, group `mesh`) reaching service `web`.
struct Running {
    _config: ConfigDir,
    _upstream: Upstream,
    portolan: Portolan,
    envoy: Envoy,
}

async fn running(protocol: Protocol) -> anyhow::Result<Running> {
    let upstream = Upstream::start("a").await?;
    let config = ConfigDir::new()?;
    config.write("web/service.yaml", &service_yaml("default", "web", 80))?;
    config.write(
        "web/endpoints.yaml",
        &endpoints_yaml("default", "web", &[&upstream]),
    )?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    let envoy = Envoy::start(bin(), portolan.ports(), "sidecar-1", "mesh", protocol).await?;
    envoy.wait_for_response("web", 200, "a").await?;
    Ok(Running {
        _config: config,
        _upstream: upstream,
        portolan,
        envoy,
    })
}

/// The cells of the proxy-status row of `node` (columns are separated by 3 or more spaces).
fn row(table: &str, node: &str) -> Option<Vec<String>> {
    table.lines().find(|l| l.starts_with(node)).map(|line| {
        line.split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    })
}

/// Waits until `proxy-status` shows the Envoy SYNCED on all four types; returns its row.
async fn synced_row(server: &str) -> anyhow::Result<Vec<String>> {
    eventually(
        "sidecar-1 SYNCED on CDS, EDS, LDS, RDS",
        Duration::from_secs(20),
        || async {
            let out = portolan(&["proxy-status", "--server", server])
                .await
                .map_err(|e| e.to_string())?;
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            if !out.status.success() {
                return Err(format!(
                    "{:?}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            match row(&stdout, "sidecar-1") {
                Some(cells) if cells.len() == 8 && cells[4..].iter().all(|c| c == "SYNCED") => {
                    Ok(cells)
                }
                _ => Err(stdout),
            }
        },
    )
    .await
}

async fn proxy_status_shows_envoy_synced(protocol: Protocol) -> anyhow::Result<()> {
    let m = running(protocol).await?;
    let server = format!("127.0.0.1:{}", m.portolan.ports().xds);
    let cells = synced_row(&server).await.map_err(|e| {
        anyhow::anyhow!(
            "{e}\nportolan:\n{}\nenvoy:\n{}",
            m.portolan.log_tail(),
            m.envoy.log_tail()
        )
    })?;
    assert_eq!(cells[1], "mesh", "group: {cells:?}");
    assert!(cells[2].starts_with("envoy"), "client: {cells:?}");
    let stream = if protocol == Protocol::Delta {
        "ads (delta)"
    } else {
        "ads"
    };
    assert_eq!(cells[3], stream, "stream: {cells:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_proxy_shows_synced_in_proxy_status() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    proxy_status_shows_envoy_synced(Protocol::Sotw).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_proxy_shows_synced_in_proxy_status() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    proxy_status_shows_envoy_synced(Protocol::Delta).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_dump_and_csds_show_what_envoy_runs() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let m = running(Protocol::Sotw).await?;
    let server = format!("127.0.0.1:{}", m.portolan.ports().xds);
    synced_row(&server).await?;

    // config-dump: the group's resources, with the mesh listener, and what Envoy ACKed.
    let out = portolan(&["config-dump", "--node", "sidecar-1", "--server", &server]).await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(dump["group"], "mesh");
    let types = dump["types"].as_array().expect("types");
    let listeners = types
        .iter()
        .find(|t| t["type_url"] == LISTENER_TYPE)
        .expect("listener type");
    let names: Vec<&str> = listeners["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(names.contains(&"mesh-outbound"), "{names:?}");
    assert_eq!(
        listeners["status"]["acked_version"], listeners["version"],
        "Envoy ACKed the listeners the cache holds"
    );

    // An unknown node and a server that is down are clear errors with exit code 1.
    let out = portolan(&["config-dump", "--node", "nobody", "--server", &server]).await?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no connected proxy with node id \"nobody\""),
        "{stderr}"
    );
    let down = format!("127.0.0.1:{}", portolan_e2e::ports::free_port());
    let out = portolan(&["proxy-status", "--server", &down]).await?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to Portolan"), "{stderr}");

    // CSDS: the node and its clusters, synced.
    let mut csds = ClientStatusDiscoveryServiceClient::connect(format!("http://{server}")).await?;
    let response = csds
        .fetch_client_status(ClientStatusRequest::default())
        .await?
        .into_inner();
    let config = response
        .config
        .iter()
        .find(|c| c.node.as_ref().is_some_and(|n| n.id == "sidecar-1"))
        .expect("sidecar-1 in CSDS");
    let cluster = config
        .generic_xds_configs
        .iter()
        .find(|c| c.type_url == CLUSTER_TYPE && c.name == CLUSTER)
        .expect("web's cluster in CSDS");
    assert_eq!(cluster.config_status(), ConfigStatus::Synced);
    assert!(cluster.xds_config.is_some());
    Ok(())
}

/// The clusters of a `/debug/config_dump` answer and whether it came from the cache.
fn dumped(dump: &serde_json::Value) -> (Option<bool>, Vec<String>) {
    let clusters = dump["types"]["cds"]["resources"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (dump["cached"].as_bool(), clusters)
}

/// With no proxy connected, `/readyz` answers with no group built (not even `default`), and
/// `/debug/config_dump` of the default group builds its snapshot for the request without
/// keeping it; the first Envoy of the group gets the group built and served, and the dump is
/// then the cache's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_group_is_built_before_its_first_proxy_and_a_dump_builds_one_on_demand()
-> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let upstream = Upstream::start("a").await?;
    let config = ConfigDir::new()?;
    config.write("web/service.yaml", &service_yaml("default", "web", 80))?;
    config.write(
        "web/endpoints.yaml",
        &endpoints_yaml("default", "web", &[&upstream]),
    )?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    let builds = || async {
        let n = portolan.metric("portolan_snapshot_builds_total").await?;
        anyhow::Ok(n.unwrap_or_default())
    };
    assert_eq!(builds().await?, 0.0, "a group was built with no proxy");

    let dump = portolan
        .get_json("/debug/config_dump?group=default")
        .await?;
    let (cached, clusters) = dumped(&dump);
    assert_eq!(cached, Some(false), "{dump}");
    assert!(clusters.iter().any(|c| c == CLUSTER), "{clusters:?}");
    assert_eq!(builds().await?, 0.0, "the dump's build was kept as a group");

    let envoy = Envoy::start(
        bin(),
        portolan.ports(),
        "first-1",
        "default",
        Protocol::Sotw,
    )
    .await?;
    envoy.wait_for_response("web", 200, "a").await?;
    assert!(builds().await? >= 1.0, "the first proxy's group was built");
    let dump = portolan
        .get_json("/debug/config_dump?group=default")
        .await?;
    let (cached, served) = dumped(&dump);
    assert_eq!(cached, Some(true), "{dump}");
    assert_eq!(served, clusters, "the on-demand dump showed what is served");
    Ok(())
}

//! Scenario 3, `envoy-ack`: a real `portolan serve` over a directory of manifests and one stock
//! Envoy. One EndpointSlice file is edited; the time from the file write until Portolan records
//! Envoy's ACK of the new EDS version (`/debug/proxies`; Envoy ACKs after applying) is measured.
//! Then Envoy itself is checked: the cluster's `update_success` counter moved and `/clusters`
//! shows the new address.
//!
//! The time includes Portolan's file watcher, its debounce (100 ms of quiet by default), the
//! rebuild, the push, Envoy's EDS update and its ACK; plus up to one poll of `/debug/proxies`
//! (polling Envoy's `/stats` instead costs tens of milliseconds per poll with 1,000 clusters).

use crate::measure::median;
use crate::scenario::endpoint_change::with_endpoint;
use crate::synth::SynthService;
use crate::{BenchError, WorldSpec};
use anyhow::{Context, anyhow, bail};
use portolan_e2e::envoy::Protocol;
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::{Envoy, Portolan, eventually};
use portolan_xds::ResourceType;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to start and how big a world to give it.
#[derive(Clone, Debug)]
pub struct EnvoyAckConfig {
    pub spec: WorldSpec,
    pub runs: usize,
    /// `portolan` binary (build it with `cargo build --release -p portolan`).
    pub portolan_bin: PathBuf,
    pub protocol: Protocol,
}

/// The figures of one `envoy-ack` run.
#[derive(Clone, Debug)]
pub struct EnvoyAck {
    pub spec: WorldSpec,
    pub protocol: Protocol,
    pub clusters: usize,
    /// Manifest files written.
    pub files: usize,
    /// From Envoy's start until it had every cluster, warmed.
    pub initial: Duration,
    /// File write to Envoy's ACK of the new EDS version, as Portolan records it, per run.
    pub apply: Vec<Duration>,
    /// Median time of one `/debug/proxies` poll (the resolution of `apply`).
    pub poll: Duration,
}

/// How long Envoy may take to receive the whole world, and then one change.
const INITIAL_TIMEOUT: Duration = Duration::from_secs(120);
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two admin polls, so polling does not starve Portolan and Envoy of CPU.
const POLL_GAP: Duration = Duration::from_millis(2);

/// Runs scenario 3.
pub async fn envoy_ack(config: EnvoyAckConfig) -> Result<EnvoyAck, BenchError> {
    Ok(run(config).await?)
}

async fn run(config: EnvoyAckConfig) -> anyhow::Result<EnvoyAck> {
    let spec = config.spec;
    let target = spec
        .target()
        .context("the world has no service with endpoints")?;
    let services = spec.services_list();
    let dir = ConfigDir::new()?;
    let files = write_world(&dir, &services)?;
    let portolan = Portolan::start(&config.portolan_bin, &dir, Ports::free()).await?;
    let start = Instant::now();
    let envoy = Envoy::start(
        &config.portolan_bin,
        portolan.ports(),
        "bench-sidecar",
        "bench",
        config.protocol,
    )
    .await?;
    let clusters = spec.cluster_count();
    wait_for_clusters(&envoy, clusters).await?;
    let initial = start.elapsed();

    let counter = format!("cluster.{}.update_success", target.cluster);
    let service = &services[target.index];
    let mut apply = Vec::new();
    let mut polls = Vec::new();
    for run in 0..config.runs.max(1) {
        let ip = spec.spare_ip(run % 2);
        let before = envoy.stat(&counter).await?.unwrap_or_default();
        let acked = eds_acked(&portolan).await?;
        let changed = with_endpoint(service, ip.clone());
        let written = Instant::now();
        dir.write(&slice_file(service), &changed.slices_yaml())?;
        let (elapsed, poll) = wait_for_ack(&portolan, &acked, written).await?;
        apply.push(elapsed);
        polls.push(poll);
        check_applied(&envoy, &counter, before, &target.cluster, &ip).await?;
    }
    Ok(EnvoyAck {
        spec,
        protocol: config.protocol,
        clusters,
        files,
        initial,
        apply,
        poll: median(&polls),
    })
}

/// One file per Service and one per service's EndpointSlices.
fn write_world(dir: &ConfigDir, services: &[SynthService]) -> anyhow::Result<usize> {
    for svc in services {
        dir.write(&service_file(svc), &svc.service_yaml())?;
        dir.write(&slice_file(svc), &svc.slices_yaml())?;
    }
    Ok(services.len() * 2)
}

fn service_file(svc: &SynthService) -> String {
    format!("{}/{}-service.yaml", svc.key.namespace, svc.key.name)
}

fn slice_file(svc: &SynthService) -> String {
    format!("{}/{}-endpoints.yaml", svc.key.namespace, svc.key.name)
}

/// Waits until Envoy has every cluster (plus its static xDS cluster) and none is warming.
async fn wait_for_clusters(envoy: &Envoy, clusters: usize) -> anyhow::Result<()> {
    let want = clusters as u64 + 1;
    eventually(
        "Envoy to have every cluster",
        INITIAL_TIMEOUT,
        || async move {
            let active = envoy.stat("cluster_manager.active_clusters").await;
            let warming = envoy.stat("cluster_manager.warming_clusters").await;
            match (active, warming) {
                (Ok(Some(a)), Ok(Some(0))) if a >= want => Ok(()),
                (a, w) => Err(format!("active {a:?}, warming {w:?}, want {want}")),
            }
        },
    )
    .await
}

/// Polls Portolan's `/debug/proxies` every [`POLL_GAP`] until the EDS ACK moves past `before`;
/// returns the time since `written` when that poll returned, and the median time of one poll.
async fn wait_for_ack(
    portolan: &Portolan,
    before: &str,
    written: Instant,
) -> anyhow::Result<(Duration, Duration)> {
    let mut polls = Vec::new();
    loop {
        let start = Instant::now();
        let acked = eds_acked(portolan).await?;
        polls.push(start.elapsed());
        if acked != before {
            return Ok((written.elapsed(), median(&polls)));
        }
        if written.elapsed() > CHANGE_TIMEOUT {
            bail!("EDS ACK stayed at {acked} for {CHANGE_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL_GAP).await;
    }
}

/// The version Envoy last ACKed for EDS, per Portolan's `/debug/proxies`.
async fn eds_acked(portolan: &Portolan) -> anyhow::Result<String> {
    let proxies = portolan.get_json("/debug/proxies").await?;
    let eds = ResourceType::Endpoint.type_url();
    proxies
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["node_id"] == "bench-sidecar")
        .flat_map(|p| p["types"].as_array().cloned().unwrap_or_default())
        .find(|t| t["type_url"] == eds)
        .and_then(|t| t["acked_version"].as_str().map(str::to_string))
        .ok_or_else(|| anyhow!("no EDS ACK for bench-sidecar in /debug/proxies: {proxies}"))
}

/// Envoy applied the change: the cluster's `update_success` moved and it has the new address.
async fn check_applied(
    envoy: &Envoy,
    counter: &str,
    before: u64,
    cluster: &str,
    ip: &str,
) -> anyhow::Result<()> {
    let after = envoy.stat(counter).await?.unwrap_or_default();
    if after <= before {
        bail!("Envoy ACKed but {counter} is still {after}");
    }
    let host = format!("{cluster}::{ip}:");
    if !envoy.admin("/clusters").await?.contains(&host) {
        bail!("Envoy ACKed but its /clusters has no {host}");
    }
    Ok(())
}

//! Memory and bytes per proxy in the three discovery modes (issue #11): full push, scoped to
//! one namespace of the ten, and on-demand, against one real `portolan serve` of the synthetic
//! world (one manifest file per Service).
//!
//! * Portolan's side: `clients` simulated Envoys per mode on real Delta ADS streams
//!   ([`DeltaFleet`]); Portolan's resident memory (`VmRSS`) before and after each fleet
//!   connects, per client; the bytes each client received at start and per host it used.
//!   One warm client per mode first, so every group's snapshot exists before measuring.
//! * Envoy's side (when Envoy exists): one stock Envoy at a time, bootstrapped by `portolan
//!   bootstrap --delta` (plus `--scope ns-1/*` or `--on-demand`); time from its start to
//!   `/ready` and until every cluster it should have is active; its admin `/memory`
//!   (`allocated`, `heap_size`), `VmRSS` and `/config_dump` size. The on-demand Envoy is
//!   measured at start and after real requests to the first N hosts (each answered by a
//!   loopback upstream that the first hosts' endpoints point at).

use crate::WorldSpec;
use crate::scenario::delta_client::{DeltaFleet, DeltaFleetSpec, Mode, check_on_demand};
use crate::scenario::dist::mib;
use crate::scenario::served::{GROUP, STREAMS_PER_CHANNEL};
use crate::synth::SynthService;
use anyhow::{Context, anyhow, bail};
use portolan_e2e::envoy::Protocol;
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::procfs::rss_kib;
use portolan_e2e::{Envoy, Portolan, Upstream, endpoints_yaml, eventually};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The namespace scoped proxies see (one of the world's ten).
pub const SCOPE_NAMESPACE: &str = "ns-1";
/// How long one client may wait for one response.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long Envoy may take to be ready, and then to have every cluster active.
const ENVOY_TIMEOUT: Duration = Duration::from_secs(300);
/// How often Envoy's stats are read while it ingests.
const POLL: Duration = Duration::from_millis(250);

/// What to run.
#[derive(Clone, Debug)]
pub struct ModeMemoryConfig {
    pub spec: WorldSpec,
    /// Simulated clients per mode (Portolan's side).
    pub clients: usize,
    /// Hosts each on-demand client uses.
    pub hosts_per_client: usize,
    /// After how many hosts used the on-demand Envoy is measured (e.g. 10, 100); none: no
    /// Envoy run at all.
    pub envoy_hosts: Vec<usize>,
    pub portolan_bin: PathBuf,
}

/// Portolan's figures for one mode.
#[derive(Clone, Debug)]
pub struct ServedRow {
    pub mode: &'static str,
    pub kib_per_client: f64,
    pub initial_bytes: f64,
    pub initial_responses: f64,
    /// On-demand: mean bytes a client received per host it used.
    pub bytes_per_host: Option<f64>,
    pub clusters: f64,
}

/// One Envoy measurement.
#[derive(Clone, Debug)]
pub struct EnvoyRow {
    pub mode: &'static str,
    /// Hosts requested through it before this measurement (on-demand).
    pub hosts_used: usize,
    pub clusters_active: u64,
    /// Start until `/ready`; start until every expected cluster was active.
    pub ready: Duration,
    pub synced: Duration,
    pub rss_kib: u64,
    pub allocated: u64,
    pub heap_size: u64,
    pub config_dump_bytes: usize,
    /// Median time of a host's first request (on-demand), and how many answered 200.
    pub first_request: Option<Duration>,
    pub ok: usize,
}

/// The figures of one run.
#[derive(Clone, Debug)]
pub struct ModeMemory {
    pub config: ModeMemoryConfig,
    pub portolan_rss_start_kib: u64,
    pub served: Vec<ServedRow>,
    pub envoy: Vec<EnvoyRow>,
}

/// The world on disk (the first hosts' endpoints at `upstream`) and Portolan serving it.
struct World {
    _dir: ConfigDir,
    portolan: Portolan,
    services: Vec<SynthService>,
}

/// Runs the scenario: Portolan's side, then (if asked) Envoy's side, on one Portolan.
pub async fn mode_memory(config: ModeMemoryConfig) -> anyhow::Result<ModeMemory> {
    let upstream = Upstream::start("up").await?;
    let used = config.envoy_hosts.iter().copied().max().unwrap_or(0);
    let world = World::start(&config, &upstream, used).await?;
    let pid = world
        .portolan
        .pid()
        .ok_or_else(|| anyhow!("portolan exited"))?;
    let portolan_rss_start_kib = rss_kib(pid)?;
    let served = served_side(&config, &world, pid).await?;
    let mut envoy = Vec::new();
    if !config.envoy_hosts.is_empty() {
        envoy = envoy_side(&config, &world).await?;
    }
    world.portolan.terminate().await?;
    Ok(ModeMemory {
        config,
        portolan_rss_start_kib,
        served,
        envoy,
    })
}

/// The host of service `i` (`svc-i.ns-j.svc.cluster.local`).
fn host(services: &[SynthService], i: usize) -> String {
    let key = &services[i % services.len()].key;
    format!("{}.{}.svc.cluster.local", key.name, key.namespace)
}

// === impl World ===

impl World {
    async fn start(
        config: &ModeMemoryConfig,
        upstream: &Upstream,
        used: usize,
    ) -> anyhow::Result<Self> {
        let spec = WorldSpec {
            first_octet: 127,
            ..config.spec
        };
        let services = spec.services_list();
        if services.is_empty() {
            bail!("the world has no services");
        }
        let dir = ConfigDir::new()?;
        for (i, svc) in services.iter().enumerate() {
            let (ns, name) = (&svc.key.namespace, &svc.key.name);
            let endpoints = if i < used {
                endpoints_yaml(ns, name, &[upstream])
            } else {
                svc.slices_yaml()
            };
            dir.write(
                &format!("{ns}/{name}.yaml"),
                &format!("{}---\n{endpoints}", svc.service_yaml()),
            )?;
        }
        let portolan = Portolan::start(&config.portolan_bin, &dir, Ports::free()).await?;
        Ok(Self {
            _dir: dir,
            portolan,
            services,
        })
    }

    fn fleet(
        &self,
        config: &ModeMemoryConfig,
        clients: usize,
        prefix: &str,
        mode: Mode,
    ) -> DeltaFleetSpec {
        let k = config.hosts_per_client;
        let hosts = match mode {
            Mode::OnDemand => (0..clients)
                .map(|n| (0..k).map(|j| host(&self.services, n * k + j)).collect())
                .collect(),
            _ => Vec::new(),
        };
        DeltaFleetSpec {
            port: self.portolan.ports().xds,
            clients,
            streams_per_channel: STREAMS_PER_CHANNEL,
            group: GROUP.to_string(),
            id_prefix: prefix.to_string(),
            mode,
            hosts,
            timeout: CLIENT_TIMEOUT,
        }
    }

    /// Clusters a proxy of `namespace` (none: the whole mesh) should hold.
    fn clusters_in(&self, namespace: Option<&str>) -> usize {
        self.services
            .iter()
            .filter(|s| namespace.is_none_or(|ns| s.key.namespace == ns))
            .map(|s| s.ports.len())
            .sum()
    }
}

fn modes() -> [(&'static str, Mode); 3] {
    [
        ("on-demand", Mode::OnDemand),
        ("scoped", Mode::Scoped(format!("{SCOPE_NAMESPACE}/*"))),
        ("full", Mode::Full),
    ]
}

/// One warm client per mode, then the fleets smallest first, Portolan's RSS after each.
async fn served_side(
    config: &ModeMemoryConfig,
    world: &World,
    pid: u32,
) -> anyhow::Result<Vec<ServedRow>> {
    let mut held = Vec::new();
    for (name, mode) in modes() {
        held.push(DeltaFleet::start(&world.fleet(config, 1, &format!("warm-{name}"), mode)).await?);
    }
    let mut rows = Vec::new();
    for (name, mode) in modes() {
        let on_demand = mode == Mode::OnDemand;
        let before = rss_kib(pid)?;
        let fleet = DeltaFleet::start(&world.fleet(config, config.clients, name, mode)).await?;
        let after = rss_kib(pid)?;
        if on_demand {
            check_on_demand(&fleet)?;
        }
        let hosts = fleet.mean(|r| r.hosts_used);
        rows.push(ServedRow {
            mode: name,
            kib_per_client: after.saturating_sub(before) as f64 / config.clients.max(1) as f64,
            initial_bytes: fleet.mean(|r| r.initial_bytes),
            initial_responses: fleet.mean(|r| r.initial_responses),
            bytes_per_host: (on_demand && hosts > 0.0)
                .then(|| fleet.mean(|r| r.used_bytes) / hosts),
            clusters: fleet.mean(|r| r.clusters),
        });
        held.push(fleet);
    }
    for fleet in held {
        fleet.stop();
    }
    Ok(rows)
}

/// One Envoy per mode, one at a time; the on-demand one measured after each checkpoint.
async fn envoy_side(config: &ModeMemoryConfig, world: &World) -> anyhow::Result<Vec<EnvoyRow>> {
    let scope = format!("{SCOPE_NAMESPACE}/*");
    let mut rows = Vec::new();
    let mut checkpoints = config.envoy_hosts.clone();
    checkpoints.sort_unstable();
    checkpoints.dedup();
    rows.extend(on_demand_envoy(world, &checkpoints).await?);
    let scoped = world.clusters_in(Some(SCOPE_NAMESPACE));
    rows.push(pushed_envoy(world, "scoped", &["--scope", &scope], scoped).await?);
    let full = world.clusters_in(None);
    rows.push(pushed_envoy(world, "full", &[], full).await?);
    Ok(rows)
}

async fn start_envoy(world: &World, node: &str, args: &[&str]) -> anyhow::Result<Envoy> {
    Envoy::start_quiet(
        world.portolan.bin(),
        world.portolan.ports(),
        node,
        GROUP,
        Protocol::Delta,
        args,
        ENVOY_TIMEOUT,
    )
    .await
}

/// A full or scoped Envoy: ready, then every one of `clusters` active, then measured.
async fn pushed_envoy(
    world: &World,
    mode: &'static str,
    args: &[&str],
    clusters: usize,
) -> anyhow::Result<EnvoyRow> {
    let start = Instant::now();
    let envoy = start_envoy(world, &format!("envoy-{mode}"), args).await?;
    let ready = start.elapsed();
    let active = wait_all_active(&envoy, clusters).await?;
    let synced = start.elapsed();
    let mut row = measure(&envoy, mode, 0, active).await?;
    (row.ready, row.synced) = (ready, synced);
    Ok(row)
}

/// The on-demand Envoy at start and after each checkpoint of hosts used.
async fn on_demand_envoy(world: &World, checkpoints: &[usize]) -> anyhow::Result<Vec<EnvoyRow>> {
    let start = Instant::now();
    let envoy = start_envoy(world, "envoy-on-demand", &["--on-demand"]).await?;
    let ready = start.elapsed();
    // Which subscriptions Envoy gave up waiting for at start (its initial_fetch_timeout).
    for (name, n) in envoy.stats_containing("init_fetch_timeout").await? {
        if n > 0 {
            eprintln!("on-demand Envoy: {name} = {n}");
        }
    }
    let active = stat(&envoy, "cluster_manager.active_clusters").await?;
    let mut first = measure(&envoy, "on-demand", 0, active).await?;
    (first.ready, first.synced) = (ready, ready);
    let mut rows = vec![first];
    let (mut used, mut ok, mut times) = (0, 0, Vec::new());
    for &checkpoint in checkpoints {
        while used < checkpoint {
            let at = Instant::now();
            let (status, _) = envoy.get(&host(&world.services, used), "/").await?;
            times.push(at.elapsed());
            ok += usize::from(status == 200);
            used += 1;
        }
        let active = stat(&envoy, "cluster_manager.active_clusters").await?;
        let mut row = measure(&envoy, "on-demand", used, active).await?;
        (row.ready, row.synced, row.ok) = (ready, ready, ok);
        row.first_request = Some(crate::measure::median(&times));
        rows.push(row);
    }
    Ok(rows)
}

async fn stat(envoy: &Envoy, name: &str) -> anyhow::Result<u64> {
    envoy
        .stat(name)
        .await?
        .ok_or_else(|| anyhow!("Envoy has no stat {name}"))
}

/// Polls until `clusters` (plus the static xDS cluster) are active and none warms.
async fn wait_all_active(envoy: &Envoy, clusters: usize) -> anyhow::Result<u64> {
    let want = clusters as u64 + 1;
    eventually(
        "Envoy to have every cluster",
        ENVOY_TIMEOUT,
        || async move {
            tokio::time::sleep(POLL).await;
            let active = envoy.stat("cluster_manager.active_clusters").await;
            let warming = envoy.stat("cluster_manager.warming_clusters").await;
            match (active, warming) {
                (Ok(Some(a)), Ok(Some(0))) if a >= want => Ok(a),
                (a, w) => Err(format!("active {a:?}, warming {w:?}, want {want}")),
            }
        },
    )
    .await
}

/// Envoy's memory (admin `/memory` and `VmRSS`), then its `/config_dump` size.
async fn measure(
    envoy: &Envoy,
    mode: &'static str,
    hosts_used: usize,
    clusters_active: u64,
) -> anyhow::Result<EnvoyRow> {
    let pid = envoy.pid().ok_or_else(|| anyhow!("envoy exited"))?;
    let rss_kib = rss_kib(pid)?;
    let memory: serde_json::Value =
        serde_json::from_str(&envoy.admin("/memory").await?).context("Envoy's /memory")?;
    let field = |name: &str| {
        let v = &memory[name];
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or_default()
    };
    let (allocated, heap_size) = (field("allocated"), field("heap_size"));
    let config_dump_bytes = envoy.admin("/config_dump").await?.len();
    Ok(EnvoyRow {
        mode,
        hosts_used,
        clusters_active,
        ready: Duration::ZERO,
        synced: Duration::ZERO,
        rss_kib,
        allocated,
        heap_size,
        config_dump_bytes,
        first_request: None,
        ok: 0,
    })
}

fn kib(bytes: f64) -> String {
    if bytes >= 1_048_576.0 {
        format!("{:.2} MiB", bytes / 1_048_576.0)
    } else {
        format!("{:.1} KiB", bytes / 1024.0)
    }
}

// === impl ModeMemory ===

impl ModeMemory {
    /// The figures as markdown tables: Portolan's side, then Envoy's.
    pub fn markdown(&self) -> String {
        let c = &self.config;
        let mut out = format!(
            "### Memory and bytes per proxy: full, scoped (`{SCOPE_NAMESPACE}/*`), on-demand ({} services, {} endpoints; Delta ADS)\n\n",
            c.spec.services, c.spec.endpoints
        );
        let _ = writeln!(
            out,
            "Portolan's side: {} simulated Delta clients per mode (on-demand ones use {} hosts each); Portolan RSS at start {}.\n",
            c.clients,
            c.hosts_per_client,
            mib(self.portolan_rss_start_kib)
        );
        out.push_str("| Mode | Portolan RSS per client | Initial bytes per client (responses) | Bytes per host used | Clusters per client |\n|---|---:|---:|---:|---:|\n");
        for r in &self.served {
            let per_host = r.bytes_per_host.map_or("—".to_string(), kib);
            let _ = writeln!(
                out,
                "| {} | {:.1} KiB | {} ({:.0}) | {per_host} | {:.0} |",
                r.mode,
                r.kib_per_client,
                kib(r.initial_bytes),
                r.initial_responses,
                r.clusters
            );
        }
        out.push('\n');
        if self.envoy.is_empty() {
            out.push_str("Envoy's side: not run (no Envoy).\n\n");
            return out;
        }
        out.push_str("Envoy's side: one stock Envoy per mode (Delta ADS).\n\n| Mode | Hosts used | Active clusters | Start → /ready | Start → all clusters active | VmRSS | /memory allocated | /memory heap_size | /config_dump | First request (median), 200s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.envoy {
            let first = r.first_request.map_or("—".to_string(), |t| {
                format!("{:.1} ms, {}/{}", t.as_secs_f64() * 1e3, r.ok, r.hosts_used)
            });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} s | {:.1} s | {} | {} | {} | {} | {first} |",
                r.mode,
                r.hosts_used,
                r.clusters_active,
                r.ready.as_secs_f64(),
                r.synced.as_secs_f64(),
                mib(r.rss_kib),
                kib(r.allocated as f64),
                kib(r.heap_size as f64),
                kib(r.config_dump_bytes as f64),
            );
        }
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_service_fqdns_and_wrap() {
        let services = WorldSpec::new(12, 12).services_list();
        assert_eq!(host(&services, 3), "svc-3.ns-3.svc.cluster.local");
        assert_eq!(host(&services, 13), "svc-1.ns-1.svc.cluster.local");
    }
}

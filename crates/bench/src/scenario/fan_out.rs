//! S3 fan-out and S4 memory per proxy (issue #8): N real gRPC ADS clients (SotW, or Delta with
//! `delta`; Envoy-like: CDS, EDS, LDS, RDS, every response ACKed) connected to a real
//! `portolan serve`, all in one proxy group. One endpoint changes; the time from the file write
//! until each client has received and ACKed the new assignment is recorded per client, and
//! Portolan's CPU time over that span (all its threads, from `schedstat`: the rebuild and every
//! stream's push). Portolan's resident memory is read before and after the clients connect. S9
//! runs the same with Portolan limited to a number of tokio worker threads
//! (`TOKIO_WORKER_THREADS`).

use crate::WorldSpec;
use crate::scenario::delta_client::{DeltaFleet, DeltaFleetSpec, Mode};
use crate::scenario::dist::{Dist, mib, ms};
use crate::scenario::served::{CLIENT_TIMEOUT, GROUP, STREAMS_PER_CHANNEL, Served, change_number};
use anyhow::bail;
use portolan_e2e::procfs::{cpu_ns, rss_kib};
use portolan_xds_client::names::endpoint_addresses;
use portolan_xds_client::{Fleet, Received, type_url};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to start and how many clients to connect.
#[derive(Clone, Debug)]
pub struct FanOutConfig {
    pub spec: WorldSpec,
    pub clients: usize,
    /// Endpoint changes, one after the other.
    pub changes: usize,
    pub portolan_bin: PathBuf,
    /// `TOKIO_WORKER_THREADS` for Portolan (none: tokio's default, one per CPU).
    pub worker_threads: Option<usize>,
    /// Delta ADS clients instead of SotW ones.
    pub delta: bool,
    /// Every client a workload (namespace, service account) of a `--identity
    /// insecure-node-metadata` Portolan: its group gets the capture-aware outbound listener
    /// (with ClusterIPs in the world, a filter chain per address).
    pub workload: Option<(String, String)>,
    /// Wait between one change being ACKed everywhere and the next write: longer than
    /// Portolan's debounce, each change is the first after a quiet period and goes out at once
    /// (zero: back to back, so a change may wait out the debounce).
    pub pause: Duration,
}

/// The figures of one fan-out run.
#[derive(Clone, Debug)]
pub struct FanOut {
    pub spec: WorldSpec,
    pub clients: usize,
    pub worker_threads: Option<usize>,
    pub delta: bool,
    pub workload: Option<(String, String)>,
    pub pause: Duration,
    /// From the first connect until every client had all four types.
    pub connect_all: Duration,
    /// Portolan's RSS with one warm-up client (group built), with every client synced, and
    /// [`SETTLE`] later (the last ACKs answered, transient sync buffers freed).
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_settled_kib: u64,
    /// Per change: file write until the last client ACKed it.
    pub all_acked: Vec<Duration>,
    /// Per client and change: file write until that client ACKed it.
    pub arrivals: Vec<Duration>,
    /// Per change: Portolan's CPU time from the file write until the last client ACKed it.
    pub cpu: Vec<Duration>,
}

/// The simulated proxies, of either protocol.
enum Clients {
    Sotw(Fleet),
    Delta(DeltaFleet),
}

// === impl Clients ===

impl Clients {
    async fn start(
        served: &Served,
        clients: usize,
        id_prefix: &str,
        delta: bool,
    ) -> anyhow::Result<Self> {
        if !delta {
            return Ok(Self::Sotw(
                Fleet::start(&served.fleet(clients, id_prefix)).await?,
            ));
        }
        let spec = DeltaFleetSpec {
            port: served.portolan.ports().xds,
            clients,
            streams_per_channel: STREAMS_PER_CHANNEL,
            group: GROUP.to_string(),
            id_prefix: id_prefix.to_string(),
            mode: Mode::Full,
            hosts: Vec::new(),
            timeout: CLIENT_TIMEOUT,
        };
        Ok(Self::Delta(DeltaFleet::start(&spec).await?))
    }

    async fn next_update(&mut self, timeout: Duration) -> anyhow::Result<(usize, Received)> {
        match self {
            Self::Sotw(fleet) => Ok(fleet.next_update(timeout).await?),
            Self::Delta(fleet) => fleet.next_update(timeout).await,
        }
    }

    fn stop(self) {
        match self {
            Self::Sotw(fleet) => fleet.stop(),
            Self::Delta(fleet) => fleet.stop(),
        }
    }
}

/// How long after the initial sync Portolan's memory is read again.
const SETTLE: Duration = Duration::from_secs(2);

/// How long every client together may take to receive one change.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs S3/S4 (and S9's halves).
pub async fn fan_out(config: FanOutConfig) -> anyhow::Result<FanOut> {
    let env_value = config.worker_threads.map(|n| n.to_string());
    let env: Vec<(&str, &str)> = env_value
        .iter()
        .map(|v| ("TOKIO_WORKER_THREADS", v.as_str()))
        .collect();
    let served = Served::start_with(
        &config.portolan_bin,
        config.spec,
        &env,
        config.workload.clone(),
    )
    .await?;
    let warm = Clients::start(&served, 1, "warm", config.delta).await?;
    if let Some((ns, sa)) = &config.workload {
        // The clients must be sidecars of that workload, not plain proxies of group "bench".
        let proxies = served.portolan.get_text("/debug/proxies").await?;
        let key = format!(";ns={ns};sa={sa}");
        if !proxies.contains(&key) {
            bail!("the clients are not in a workload group ({key}): {proxies}");
        }
    }
    let rss_before_kib = rss_kib(served.pid()?)?;
    let start = Instant::now();
    let mut fleet = Clients::start(&served, config.clients, "sim", config.delta).await?;
    let connect_all = start.elapsed();
    let rss_after_kib = rss_kib(served.pid()?)?;
    tokio::time::sleep(SETTLE).await;
    let rss_settled_kib = rss_kib(served.pid()?)?;
    let (mut all_acked, mut arrivals, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
    for k in 1..=config.changes.max(1) {
        if k > 1 {
            tokio::time::sleep(config.pause).await;
        }
        let cpu_before = cpu_ns(served.pid()?)?;
        let times = one_change(&served, &mut fleet, config.clients, k).await?;
        let cpu_after = cpu_ns(served.pid()?)?;
        cpu.push(Duration::from_nanos(cpu_after.saturating_sub(cpu_before)));
        all_acked.push(times.iter().copied().max().unwrap_or_default());
        arrivals.extend(times);
    }
    fleet.stop();
    warm.stop();
    served.portolan.terminate().await?;
    Ok(FanOut {
        spec: config.spec,
        clients: config.clients,
        worker_threads: config.worker_threads,
        delta: config.delta,
        workload: config.workload,
        pause: config.pause,
        connect_all,
        rss_before_kib,
        rss_after_kib,
        rss_settled_kib,
        all_acked,
        arrivals,
        cpu,
    })
}

/// Makes change `k`; returns, per client, the time from the write until it ACKed it.
async fn one_change(
    served: &Served,
    fleet: &mut Clients,
    clients: usize,
    k: usize,
) -> anyhow::Result<Vec<Duration>> {
    let (_, written) = served.change(k)?;
    let mut arrived: Vec<Option<Duration>> = vec![None; clients];
    let mut missing = clients;
    while missing > 0 {
        if written.elapsed() > CHANGE_TIMEOUT {
            bail!("{missing} of {clients} clients did not get change {k} in {CHANGE_TIMEOUT:?}");
        }
        let (n, received) = fleet.next_update(CHANGE_TIMEOUT).await?;
        if received.type_url != type_url::ENDPOINT || arrived[n].is_some() {
            continue;
        }
        let addresses = endpoint_addresses(&received.resources)?;
        if addresses.iter().any(|a| change_number(a) == Some(k)) {
            arrived[n] = Some(received.at.duration_since(written));
            missing -= 1;
        }
    }
    Ok(arrived.into_iter().flatten().collect())
}

// === impl FanOut ===

impl FanOut {
    /// Portolan's resident memory per connected client (KiB), once all are synced.
    pub fn kib_per_client(&self) -> f64 {
        self.per_client(self.rss_after_kib)
    }

    /// The same, [`SETTLE`] later.
    pub fn settled_kib_per_client(&self) -> f64 {
        self.per_client(self.rss_settled_kib)
    }

    fn per_client(&self, rss_kib: u64) -> f64 {
        rss_kib.saturating_sub(self.rss_before_kib) as f64 / self.clients.max(1) as f64
    }

    /// Portolan's CPU time per change (median over the changes), and that divided by the
    /// clients (the rebuild included).
    pub fn cpu_per_change(&self) -> (Duration, Duration) {
        let median = crate::measure::median(&self.cpu);
        let per_client = median / u32::try_from(self.clients.max(1)).unwrap_or(u32::MAX);
        (median, per_client)
    }

    fn threads(&self) -> String {
        self.worker_threads
            .map_or("default (one per CPU)".to_string(), |n| n.to_string())
    }
}

/// S3 and S4 as markdown: one row per client count.
pub fn fan_out_md(runs: &[FanOut]) -> String {
    let mut out = String::new();
    let Some(first) = runs.first() else {
        return out;
    };
    let _ = writeln!(
        out,
        "### S3 fan-out and S4 memory per proxy ({} services, {} endpoints, {}, {} ADS, {} changes per size)\n",
        first.spec.services,
        first.spec.endpoints,
        match &first.workload {
            Some((ns, sa)) =>
                format!("one workload group ({ns}/{sa}: capture listener, a ClusterIP per Service)"),
            None => "one proxy group".to_string(),
        },
        if first.delta { "Delta" } else { "SotW" },
        first.all_acked.len()
    );
    let _ = writeln!(
        out,
        "| Clients | Connect + initial sync (all) | Change → client ACK p50 | p99 | max | Every client ACKed (median over changes) | Portolan CPU per change (median) | per client | Portolan RSS before → after | RSS per client | 2 s later, per client |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in runs {
        let d = Dist::of(&r.arrivals);
        let (cpu, cpu_per_client) = r.cpu_per_change();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} µs | {} → {} | {:.1} KiB | {:.1} KiB |",
            r.clients,
            ms(r.connect_all),
            ms(d.p50),
            ms(d.p99),
            ms(d.max),
            ms(crate::measure::median(&r.all_acked)),
            ms(cpu),
            cpu_per_client.as_secs_f64() * 1e6,
            mib(r.rss_before_kib),
            mib(r.rss_after_kib),
            r.kib_per_client(),
            r.settled_kib_per_client()
        );
    }
    let _ = writeln!(
        out,
        "\nTimes include Portolan's debounce (the first change after quiet goes out at once since #24; changes {} apart) and the file watcher's settle. CPU is all of Portolan's threads from the write until the last ACK (the rebuild included). \"Before\" is Portolan with one warm-up client connected (the group's snapshot built).\n",
        if first.pause.is_zero() {
            "back to back".to_string()
        } else {
            format!("{} ms", first.pause.as_millis())
        }
    );
    out
}

/// S9 as markdown: the same fan-out with different worker thread counts.
pub fn workers_md(runs: &[FanOut]) -> String {
    let mut out = String::new();
    let Some(first) = runs.first() else {
        return out;
    };
    let _ = writeln!(
        out,
        "### S9 worker threads ({} clients, {} services, {} changes each)\n",
        first.clients,
        first.spec.services,
        first.all_acked.len()
    );
    let _ = writeln!(
        out,
        "| TOKIO_WORKER_THREADS | Connect + initial sync (all) | Change → client ACK p50 | p99 | Every client ACKed (median) | vs first row (p99) |\n|---|---:|---:|---:|---:|---:|"
    );
    let base = Dist::of(&first.arrivals).p99;
    for r in runs {
        let d = Dist::of(&r.arrivals);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2}× |",
            r.threads(),
            ms(r.connect_all),
            ms(d.p50),
            ms(d.p99),
            ms(crate::measure::median(&r.all_acked)),
            crate::measure::ratio(d.p99, base)
        );
    }
    out.push('\n');
    out
}

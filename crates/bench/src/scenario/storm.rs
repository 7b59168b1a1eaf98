//! S10 connect storm (issue #24): N simulated SotW proxies, each on its own TCP connection
//! (as Envoys are), connect to a running `portolan serve` at the same instant. Measured: how
//! many were lost (connection refused or reset, stream failed before its initial sync), the
//! time from the start until every surviving proxy was in sync (all four types received and
//! ACKed), and per-proxy sync p50/p99. A proxy is not retried: a lost one counts as lost.
//! Over the same span, the CPU time of Portolan (all its threads) and of the bench process
//! itself (the simulated proxies: their HTTP/2, decoding and ACKs), since both share the
//! machine's cores; and Portolan's resident memory before the storm and once every proxy is in
//! sync. With [`StormConfig::tls`] the xDS port speaks TLS (a test CA's certificate) and every
//! proxy does a TLS handshake on its connection, as Envoys with `bootstrap --xds-ca` do.

use crate::WorldSpec;
use crate::scenario::dist::{Dist, mib, ms};
use crate::scenario::served::{CLIENT_TIMEOUT, GROUP, Served};
use portolan_e2e::procfs::{TICKS_PER_SECOND, cpu_ticks, rss_kib};
use portolan_e2e::tls::TestCa;
use portolan_e2e::xds_tls::TlsDir;
use portolan_translate::names::MESH_ROUTE;
use portolan_xds_client::{ClientError, Follow, SotwClient, SotwSubscriber, channel, node};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Barrier, mpsc, watch};

/// What to start and how many proxies storm it.
#[derive(Clone, Debug)]
pub struct StormConfig {
    pub spec: WorldSpec,
    pub clients: usize,
    pub portolan_bin: PathBuf,
    /// xDS over TLS.
    pub tls: bool,
}

/// The figures of one storm.
#[derive(Clone, Debug)]
pub struct Storm {
    pub spec: WorldSpec,
    pub clients: usize,
    pub tls: bool,
    /// Proxies that failed to connect or to sync (no retry).
    pub lost: usize,
    /// The most common failure texts, with their counts.
    pub failures: BTreeMap<String, usize>,
    /// From the start until the last surviving proxy was in sync.
    pub all_synced: Duration,
    /// Per surviving proxy: start until in sync.
    pub sync: Vec<Duration>,
    /// CPU time from the start until the last proxy was in sync: Portolan's, the bench's own.
    pub server_cpu: Duration,
    pub client_cpu: Duration,
    /// Portolan's resident memory with the warm-up proxy, once every proxy is in sync, and
    /// [`SETTLE`] later (transient sync buffers freed and returned).
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_settled_kib: u64,
}

/// How long after the storm Portolan's memory is read again.
const SETTLE: Duration = Duration::from_secs(2);

/// Runs one storm of `config.clients` proxies.
pub async fn storm(config: StormConfig) -> anyhow::Result<Storm> {
    let tls = match config.tls {
        true => {
            let ca = TestCa::new()?;
            let dir = TlsDir::new(&ca)?;
            Some((Arc::new(ca), dir))
        }
        false => None,
    };
    let extra = tls
        .as_ref()
        .map(|(_, dir)| dir.serve_args(false))
        .unwrap_or_default();
    let served =
        Served::start_serving(&config.portolan_bin, config.spec, &[], None, &extra).await?;
    let port = served.portolan.ports().xds;
    let ca = tls.as_ref().map(|(ca, _)| ca.clone());
    // One proxy first, so the group is built before the storm (what the storm measures is
    // connections, not the first build).
    let warm = connect(port, ca.as_deref(), subscriber(usize::MAX))
        .await
        .map_err(|e| anyhow::anyhow!("the warm-up proxy: {e}"))?;
    let (stop, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    // Every task waits at the barrier, so the connects start together.
    let barrier = Arc::new(Barrier::new(config.clients + 1));
    for n in 0..config.clients {
        let proxy = StormProxy {
            port,
            ca: ca.clone(),
            subscriber: subscriber(n),
            barrier: barrier.clone(),
            done: done_tx.clone(),
            stop: stop_rx.clone(),
        };
        tokio::spawn(proxy.run());
    }
    drop(done_tx);
    let pid = served.pid()?;
    let rss_before_kib = rss_kib(pid)?;
    let cpu =
        || -> anyhow::Result<(u64, u64)> { Ok((cpu_ticks(pid)?, cpu_ticks(std::process::id())?)) };
    barrier.wait().await;
    let start = Instant::now();
    let cpu_before = cpu()?;
    let (mut sync, mut failures, mut lost) = (Vec::new(), BTreeMap::new(), 0);
    let mut last = Duration::ZERO;
    while let Some(result) = done_rx.recv().await {
        match result {
            Ok(at) => {
                let took = at.duration_since(start);
                last = last.max(took);
                sync.push(took);
            }
            Err(e) => {
                lost += 1;
                *failures.entry(failure_kind(&e)).or_insert(0) += 1;
            }
        }
        if sync.len() + lost == config.clients {
            break;
        }
    }
    let cpu_after = cpu()?;
    let rss_after_kib = rss_kib(pid)?;
    let ticks = |after: u64, before: u64| {
        Duration::from_millis(after.saturating_sub(before) * 1000 / TICKS_PER_SECOND)
    };
    tokio::time::sleep(SETTLE).await;
    let rss_settled_kib = rss_kib(pid)?;
    let _ = stop.send(true);
    drop(warm);
    served.portolan.terminate().await?;
    Ok(Storm {
        spec: config.spec,
        clients: config.clients,
        tls: config.tls,
        lost,
        failures,
        all_synced: last,
        sync,
        server_cpu: ticks(cpu_after.0, cpu_before.0),
        client_cpu: ticks(cpu_after.1, cpu_before.1),
        rss_before_kib,
        rss_after_kib,
        rss_settled_kib,
    })
}

fn subscriber(n: usize) -> SotwSubscriber {
    let node = node::envoy(&format!("storm-{n}"), GROUP);
    let routes = vec![MESH_ROUTE.to_string()];
    SotwSubscriber::new(node, Follow::Envoy { routes })
}

/// The first line of an error, without addresses and numbers, to group failures by kind.
fn failure_kind(e: &ClientError) -> String {
    let text = format!("{e}");
    let mut chain: Vec<String> = vec![text];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    let kind = chain.join(": ");
    kind.chars()
        .filter(|c| !c.is_ascii_digit())
        .take(160)
        .collect()
}

/// A proxy's own connection (over TLS trusting `ca`, if given) and its ADS stream, in sync.
async fn connect(
    port: u16,
    ca: Option<&TestCa>,
    subscriber: SotwSubscriber,
) -> Result<SotwClient, ClientError> {
    let shared = match ca {
        None => channel(([127, 0, 0, 1], port), None).await?,
        Some(ca) => portolan_e2e::xds_tls::channel(ca, port, None)
            .await
            .map_err(|e| ClientError::Tls {
                address: format!("127.0.0.1:{port}"),
                message: format!("{e:#}"),
            })?,
    };
    let mut client = SotwClient::connect(shared, subscriber).await?;
    client.sync(CLIENT_TIMEOUT).await?;
    Ok(client)
}

/// One proxy of the storm: its own connection and ADS stream.
struct StormProxy {
    port: u16,
    ca: Option<Arc<TestCa>>,
    subscriber: SotwSubscriber,
    barrier: Arc<Barrier>,
    done: mpsc::UnboundedSender<Result<Instant, ClientError>>,
    stop: watch::Receiver<bool>,
}

// === impl StormProxy ===

impl StormProxy {
    async fn run(mut self) {
        self.barrier.wait().await;
        let synced = connect(self.port, self.ca.as_deref(), self.subscriber).await;
        match synced {
            Ok(client) => {
                let _ = self.done.send(Ok(Instant::now()));
                // Stay connected until every proxy is done, so the storm is all at once.
                let _ = self.stop.wait_for(|s| *s).await;
                drop(client);
            }
            Err(e) => {
                let _ = self.done.send(Err(e));
            }
        }
    }
}

// === impl Storm ===

/// S10 as markdown: one row per storm.
pub fn storm_md(runs: &[Storm]) -> String {
    let mut out = String::new();
    let Some(first) = runs.first() else {
        return out;
    };
    let _ = writeln!(
        out,
        "### S10 connect storm ({} services, {} endpoints; every proxy its own TCP connection{}, all connecting at once, SotW ADS, no retry)\n",
        first.spec.services,
        first.spec.endpoints,
        if first.tls { " over TLS" } else { "" }
    );
    let _ = writeln!(
        out,
        "| Proxies | Lost | Every surviving proxy in sync | Per proxy sync p50 | p99 | max | Portolan CPU | bench (proxies) CPU | Portolan RSS before → after | per proxy | 2 s later, per proxy |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in runs {
        let d = Dist::of(&r.sync);
        let per = |kib: u64| kib.saturating_sub(r.rss_before_kib) as f64 / r.clients.max(1) as f64;
        let (per_proxy, settled) = (per(r.rss_after_kib), per(r.rss_settled_kib));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} → {} | {per_proxy:.1} KiB | {settled:.1} KiB |",
            r.clients,
            r.lost,
            ms(r.all_synced),
            ms(d.p50),
            ms(d.p99),
            ms(d.max),
            ms(r.server_cpu),
            ms(r.client_cpu),
            mib(r.rss_before_kib),
            mib(r.rss_after_kib),
        );
    }
    let _ = writeln!(
        out,
        "\nCPU is user + system time from the start until the last proxy was in sync (10 ms steps): Portolan's, and the bench process's own (the simulated proxies).\n"
    );
    out.push('\n');
    for r in runs {
        for (kind, count) in &r.failures {
            let _ = writeln!(out, "* {} proxies: {count} × `{kind}`", r.clients);
        }
    }
    if runs.iter().any(|r| !r.failures.is_empty()) {
        out.push('\n');
    }
    out
}

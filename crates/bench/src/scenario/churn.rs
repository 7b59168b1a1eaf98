//! S8 sustained churn (issue #8): N real gRPC ADS clients on a `portolan serve` while one
//! endpoint changes R times a second for S seconds (change k moves the target's first
//! endpoint to `spare_ip(k)`, so every assignment a client receives names the latest change it
//! includes). Measured: changes written, Portolan's debounced batches and pushes, its CPU time
//! over the period (`/proc/<pid>/stat`), and per change the time from its write until every
//! client had ACKed an assignment including it (or a later change: debouncing folds changes).

use crate::WorldSpec;
use crate::scenario::dist::{Dist, ms};
use crate::scenario::served::{Served, change_number};
use anyhow::bail;
use portolan_e2e::procfs::{TICKS_PER_SECOND, cpu_ticks};
use portolan_xds_client::names::endpoint_addresses;
use portolan_xds_client::{Fleet, type_url};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct ChurnConfig {
    pub spec: WorldSpec,
    pub clients: usize,
    pub per_second: u32,
    pub seconds: u64,
    pub portolan_bin: PathBuf,
}

/// The figures of one churn run.
#[derive(Clone, Debug)]
pub struct Churn {
    pub config: ChurnConfig,
    pub changes: usize,
    /// First write until the last change reached every client.
    pub wall: Duration,
    /// Portolan's `debounce_batches` and `xds_pushes` over the period.
    pub batches: f64,
    pub pushes: f64,
    /// EDS responses each client received over the period (median over clients).
    pub eds_per_client: usize,
    /// Portolan's user + system CPU time over the period.
    pub cpu: Duration,
    /// Per change: write until every client had it.
    pub convergence: Vec<Duration>,
}

/// How long after the last write every client may take to get it.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs S8.
pub async fn churn(config: ChurnConfig) -> anyhow::Result<Churn> {
    let served = Served::start(&config.portolan_bin, config.spec, &[]).await?;
    let mut fleet = Fleet::start(&served.fleet(config.clients, "churn")).await?;
    let pid = served.pid()?;
    let (batches0, pushes0) = counters(&served).await?;
    let cpu0 = cpu_ticks(pid)?;
    let start = Instant::now();
    let (written, seen) = drive(&served, &mut fleet, &config).await?;
    let wall = start.elapsed();
    let cpu = cpu_ticks(pid)?.saturating_sub(cpu0);
    let (batches1, pushes1) = counters(&served).await?;
    fleet.stop();
    served.portolan.terminate().await?;
    let mut eds: Vec<usize> = seen.iter().map(Vec::len).collect();
    eds.sort_unstable();
    Ok(Churn {
        changes: written.len(),
        wall,
        batches: batches1 - batches0,
        pushes: pushes1 - pushes0,
        eds_per_client: eds.get(eds.len() / 2).copied().unwrap_or_default(),
        cpu: Duration::from_millis(cpu * 1000 / TICKS_PER_SECOND),
        convergence: convergence(&written, &seen),
        config,
    })
}

async fn counters(served: &Served) -> anyhow::Result<(f64, f64)> {
    Ok((
        served.metric("portolan_debounce_batches_total").await?,
        served.metric("portolan_xds_pushes_total").await?,
    ))
}

/// Per client, every (change number, time) of the assignments it ACKed.
type Seen = Vec<Vec<(usize, Instant)>>;

/// Writes the changes at the configured rate while collecting what every client receives;
/// then waits until every client has the last change. Returns the write times (change k at
/// index k - 1) and what each client saw.
async fn drive(
    served: &Served,
    fleet: &mut Fleet,
    config: &ChurnConfig,
) -> anyhow::Result<(Vec<Instant>, Seen)> {
    let total = (u64::from(config.per_second) * config.seconds).max(1) as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / config.per_second.max(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written = Vec::with_capacity(total);
    let mut seen: Seen = vec![Vec::new(); config.clients];
    let mut at_last = 0;
    loop {
        if written.len() == total && at_last == config.clients {
            return Ok((written, seen));
        }
        tokio::select! {
            _ = ticker.tick(), if written.len() < total => {
                written.push(served.change(written.len() + 1)?.1);
            }
            update = fleet.next_update(SETTLE_TIMEOUT) => {
                let (n, received) = update?;
                if received.type_url != type_url::ENDPOINT {
                    continue;
                }
                let Some(k) = endpoint_addresses(&received.resources)?
                    .iter()
                    .filter_map(|a| change_number(a))
                    .max()
                else {
                    continue;
                };
                if k == total && seen[n].last().is_none_or(|(prev, _)| *prev < total) {
                    at_last += 1;
                }
                seen[n].push((k, received.at));
            }
        }
        if let Some(last) = written.last().filter(|_| written.len() == total)
            && last.elapsed() > SETTLE_TIMEOUT
        {
            bail!(
                "{} clients never got the last change",
                config.clients - at_last
            );
        }
    }
}

/// Per change: the write until the last client had ACKed it or a later change.
fn convergence(written: &[Instant], seen: &Seen) -> Vec<Duration> {
    written
        .iter()
        .enumerate()
        .filter_map(|(i, at)| {
            let k = i + 1;
            let arrivals: Option<Vec<Instant>> = seen
                .iter()
                .map(|client| client.iter().find(|(c, _)| *c >= k).map(|(_, t)| *t))
                .collect();
            Some(arrivals?.into_iter().max()?.saturating_duration_since(*at))
        })
        .collect()
}

// === impl Churn ===

impl Churn {
    pub fn markdown(&self) -> String {
        let c = &self.config;
        let d = Dist::of(&self.convergence);
        let cpu_share = self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "### S8 sustained churn ({} clients, {} changes/s for {} s, {} services)\n",
            c.clients, c.per_second, c.seconds, c.spec.services
        );
        let _ = writeln!(out, "| Figure | Value |\n|---|---:|");
        for (name, value) in [
            ("endpoint changes written", self.changes.to_string()),
            (
                "debounced batches (rebuilds) in Portolan",
                format!("{}", self.batches),
            ),
            (
                "EDS responses per client (median)",
                self.eds_per_client.to_string(),
            ),
            ("xDS responses sent in total", format!("{}", self.pushes)),
            (
                "Portolan CPU time (user + system)",
                format!(
                    "{:.2} s over {:.1} s ({:.0}% of one core)",
                    self.cpu.as_secs_f64(),
                    self.wall.as_secs_f64(),
                    cpu_share * 100.0
                ),
            ),
            (
                "change written → every client ACKed, p50 / p99 / max",
                format!("{} / {} / {}", ms(d.p50), ms(d.p99), ms(d.max)),
            ),
        ] {
            let _ = writeln!(out, "| {name} | {value} |");
        }
        out.push('\n');
        out
    }
}

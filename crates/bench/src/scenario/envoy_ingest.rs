//! S7 real Envoy ingest (issue #8): a world of N clusters served by `portolan serve`; one stock
//! Envoy started from `portolan bootstrap`. Measured: from Envoy's start until its
//! `cluster_manager.active_clusters` covers every cluster with none warming (polled every
//! [`POLL`]: a filtered `/stats` is slow with many clusters), then Envoy's and Portolan's RSS.

use crate::WorldSpec;
use crate::scenario::dist::{mib, ms};
use crate::scenario::served::Served;
use anyhow::anyhow;
use portolan_e2e::envoy::Protocol;
use portolan_e2e::procfs::rss_kib;
use portolan_e2e::{Envoy, eventually};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often Envoy's stats are read while it ingests.
const POLL: Duration = Duration::from_millis(250);
const INGEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The figures of one ingest.
#[derive(Clone, Debug)]
pub struct Ingest {
    pub spec: WorldSpec,
    pub clusters: usize,
    /// Envoy's start until every cluster was active.
    pub all_active: Duration,
    pub envoy_rss_kib: u64,
    pub portolan_rss_kib: u64,
}

/// Runs S7 at one size: `services` services with one endpoint each (loopback addresses).
pub async fn envoy_ingest(services: usize, bin: PathBuf) -> anyhow::Result<Ingest> {
    let spec = WorldSpec {
        first_octet: 127,
        ..WorldSpec::new(services, services)
    };
    let served = Served::start(&bin, spec, &[]).await?;
    let clusters = spec.cluster_count();
    let start = Instant::now();
    let envoy = Envoy::start(
        &bin,
        served.portolan.ports(),
        "ingest",
        "ingest",
        Protocol::Sotw,
    )
    .await?;
    wait_all_active(&envoy, clusters).await?;
    let all_active = start.elapsed();
    let envoy_pid = envoy.pid().ok_or_else(|| anyhow!("envoy exited"))?;
    let envoy_rss_kib = rss_kib(envoy_pid)?;
    let portolan_rss_kib = rss_kib(served.pid()?)?;
    drop(envoy);
    served.portolan.terminate().await?;
    Ok(Ingest {
        spec,
        clusters,
        all_active,
        envoy_rss_kib,
        portolan_rss_kib,
    })
}

/// Polls (every [`POLL`] plus the harness's own gap) until every cluster is active.
async fn wait_all_active(envoy: &Envoy, clusters: usize) -> anyhow::Result<()> {
    let want = clusters as u64 + 1;
    eventually(
        "Envoy to have every cluster",
        INGEST_TIMEOUT,
        || async move {
            tokio::time::sleep(POLL).await;
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

/// S7 as markdown, with Envoy's memory per cluster: overall, and marginal between sizes.
pub fn envoy_ingest_md(runs: &[Ingest]) -> String {
    let mut out = String::from("### S7 real Envoy ingest (SotW ADS, one endpoint per cluster)\n\n");
    let _ = writeln!(
        out,
        "| Clusters | Envoy start → all active | Envoy RSS | Envoy RSS / cluster | Marginal KiB / cluster (vs previous row) | Portolan RSS |\n|---:|---:|---:|---:|---:|---:|"
    );
    let mut previous: Option<&Ingest> = None;
    for r in runs {
        let per = r.envoy_rss_kib as f64 / r.clusters.max(1) as f64;
        let marginal = previous.map_or("—".to_string(), |p| {
            let kib = r.envoy_rss_kib as f64 - p.envoy_rss_kib as f64;
            let n = r.clusters as f64 - p.clusters as f64;
            format!("{:.1} KiB", kib / n.max(1.0))
        });
        let _ = writeln!(
            out,
            "| {} | {} | {} | {per:.1} KiB | {marginal} | {} |",
            r.clusters,
            ms(r.all_active),
            mib(r.envoy_rss_kib),
            mib(r.portolan_rss_kib)
        );
        previous = Some(r);
    }
    out.push('\n');
    out
}

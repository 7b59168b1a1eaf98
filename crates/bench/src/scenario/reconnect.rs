//! S6 reconnect storm (issue #8): N real gRPC ADS clients synced to a `portolan serve`; the
//! process is killed (SIGKILL) and a new one started on the same ports and directory; all N
//! clients reconnect at once. Measured: the time until every client is in sync again (all four
//! types received and ACKed), per-client sync p50/p99, and the new Portolan's peak RSS.

use crate::WorldSpec;
use crate::scenario::dist::{Dist, mib, ms};
use crate::scenario::served::Served;
use portolan_e2e::procfs::{peak_rss_kib, rss_kib};
use portolan_xds_client::Fleet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The figures of one reconnect storm.
#[derive(Clone, Debug)]
pub struct Reconnect {
    pub spec: WorldSpec,
    pub clients: usize,
    /// Kill of the old process until the new one answered `/readyz`.
    pub restart: Duration,
    /// From the reconnect until every client was in sync.
    pub all_synced: Duration,
    /// Per client: reconnect until in sync.
    pub sync: Vec<Duration>,
    /// The first process with every client (RSS); the new one's RSS and peak (VmHWM).
    pub rss_first_kib: u64,
    pub rss_after_kib: u64,
    pub peak_after_kib: u64,
}

/// Runs S6.
pub async fn reconnect(spec: WorldSpec, clients: usize, bin: PathBuf) -> anyhow::Result<Reconnect> {
    let served = Served::start(&bin, spec, &[]).await?;
    let fleet = Fleet::start(&served.fleet(clients, "first")).await?;
    let rss_first_kib = rss_kib(served.pid()?)?;
    let (served, restart) = served.restart().await?;
    fleet.stop();
    let start = Instant::now();
    let fleet = Fleet::start(&served.fleet(clients, "again")).await?;
    let all_synced = start.elapsed();
    let pid = served.pid()?;
    let (rss_after_kib, peak_after_kib) = (rss_kib(pid)?, peak_rss_kib(pid)?);
    let sync = fleet.sync_times.clone();
    fleet.stop();
    served.portolan.terminate().await?;
    Ok(Reconnect {
        spec,
        clients,
        restart,
        all_synced,
        sync,
        rss_first_kib,
        rss_after_kib,
        peak_after_kib,
    })
}

// === impl Reconnect ===

impl Reconnect {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let d = Dist::of(&self.sync);
        let _ = writeln!(
            out,
            "### S6 reconnect storm ({} clients, {} services, {} endpoints)\n",
            self.clients, self.spec.services, self.spec.endpoints
        );
        let _ = writeln!(out, "| Step | Time |\n|---|---:|");
        let _ = writeln!(
            out,
            "| SIGKILL → new Portolan ready (`/readyz`) | {} |",
            ms(self.restart)
        );
        let _ = writeln!(
            out,
            "| all {} reconnect at once → every client in sync | {} |",
            self.clients,
            ms(self.all_synced)
        );
        let _ = writeln!(
            out,
            "| per client: reconnect → in sync, p50 / p99 / max | {} / {} / {} |\n",
            ms(d.p50),
            ms(d.p99),
            ms(d.max)
        );
        let _ = writeln!(
            out,
            "Portolan RSS: first process with every client {}; new process after the storm {}, peak (VmHWM) {}.\n",
            mib(self.rss_first_kib),
            mib(self.rss_after_kib),
            mib(self.peak_after_kib)
        );
        out
    }
}

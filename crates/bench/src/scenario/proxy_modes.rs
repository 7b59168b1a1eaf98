//! Proxy modes (issue #11): what one proxy costs with 10k services when it gets the whole mesh
//! (full push) and when it is scoped to one namespace (`;scope=NS/*`), in process: the group's
//! snapshot (Portolan's cache, one per group), the bytes of one proxy's initial sync, the
//! resident memory per connected proxy (simulated SotW Envoys, both ends in this process), and
//! what one endpoint change in another namespace pushes to each proxy. [`proxy_modes_served`]
//! measures the same against a real `portolan serve` with real gRPC ADS clients (like S4):
//! Portolan's resident memory per connected client in each mode, and the responses each
//! client was sent (`/debug/proxies`) for the change.

use crate::measure::{Memory, time_runs};
use crate::proxy::{Push, SotwProxy};
use crate::scenario::endpoint_change::with_endpoint;
use crate::scenario::served::Served;
use crate::{BenchError, WorldSpec};
use anyhow::bail;
use portolan_e2e::procfs::rss_kib;
use portolan_model::group::{GroupKey, ScopeHosts};
use portolan_pipeline::IncrementalBuilder;
use portolan_pipeline::grouping::SCOPE_METADATA;
use portolan_translate::{Options, ProxyGroup};
use portolan_xds::{ResourceType, Snapshot};
use portolan_xds_client::{Fleet, type_url};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// One mode's figures.
#[derive(Clone, Debug)]
pub struct ModeRow {
    /// `full` or `scoped`.
    pub mode: &'static str,
    /// The group key the proxies have.
    pub group: String,
    /// Clusters in the group's snapshot.
    pub clusters: usize,
    /// Encoded bytes of every resource in the group's snapshot.
    pub snapshot_bytes: usize,
    /// Time to build the group's snapshot from scratch.
    pub build: Duration,
    /// One proxy's initial sync.
    pub sync: Push,
    /// RSS growth per connected proxy (KiB).
    pub kib_per_proxy: f64,
    /// What each proxy received for the endpoint change in another namespace.
    pub change: Push,
}

/// Both modes on the same world.
#[derive(Clone, Debug)]
pub struct ProxyModes {
    pub spec: WorldSpec,
    /// Simulated proxies connected per mode (for the memory figure).
    pub proxies: usize,
    /// The namespace the scoped proxies see, and the one that changes.
    pub scoped_namespace: String,
    pub changed_namespace: String,
    pub rows: Vec<ModeRow>,
}

/// Runs both modes with `proxies` simulated proxies each.
pub fn proxy_modes(spec: WorldSpec, proxies: usize) -> Result<ProxyModes, BenchError> {
    let target = spec
        .target()
        .ok_or_else(|| BenchError::Proxy("the world has no service with endpoints".into()))?;
    let changed_namespace = target.key.namespace.clone();
    let scoped_namespace = other_namespace(&changed_namespace).to_string();
    // Scoped first, for the same reason as in the served half.
    let modes = [
        (
            "scoped",
            GroupKey {
                scope: Some(ScopeHosts::canonical(
                    [format!("{scoped_namespace}/*").as_str()],
                    None,
                )),
                ..GroupKey::new("bench")
            },
        ),
        ("full", GroupKey::new("bench")),
    ];
    let services = spec.services_list();
    let mut rows = Vec::new();
    for (mode, key) in modes {
        let mut index = spec.index();
        let group = ProxyGroup::from(&key);
        let options = Options::default();
        let mut builder = IncrementalBuilder::new();
        let world = index.world();
        let (times, first) = time_runs(1, || builder.build(&world, &group, &options, None));
        let first = Arc::new(first?);
        let before = Memory::now();
        let mut fleet = Vec::with_capacity(proxies);
        let mut sync = Push::default();
        for _ in 0..proxies.max(1) {
            let (proxy, push) = SotwProxy::connect(first.clone())?;
            sync = push;
            fleet.push(proxy);
        }
        let after = Memory::now();
        let changed = with_endpoint(&services[target.index], spec.spare_ip(1));
        for object in changed.slice_objects() {
            index.apply(object);
        }
        let world = index.world();
        let next = Arc::new(builder.build(&world, &group, &options, Some(&first))?);
        let mut change = Push::default();
        for proxy in &mut fleet {
            change = proxy.update(next.clone())?;
        }
        rows.push(ModeRow {
            mode,
            group: key.to_string(),
            clusters: first.resources(ResourceType::Cluster).len(),
            snapshot_bytes: snapshot_bytes(&first),
            build: times.first().copied().unwrap_or_default(),
            sync,
            kib_per_proxy: after.rss_kib.saturating_sub(before.rss_kib) as f64
                / proxies.max(1) as f64,
            change,
        });
    }
    Ok(ProxyModes {
        spec,
        proxies: proxies.max(1),
        scoped_namespace,
        changed_namespace,
        rows,
    })
}

/// The served half: Portolan's figures per mode with real clients.
#[derive(Clone, Debug)]
pub struct ServedModes {
    pub spec: WorldSpec,
    pub clients: usize,
    /// Portolan's RSS growth per connected client, full and scoped (KiB).
    pub kib_per_client: [f64; 2],
    /// Responses Portolan sent per client for the change in another namespace, full and scoped.
    pub responses_per_client: [f64; 2],
}

/// Connects `clients` scoped and then `clients` unscoped ADS clients to a real Portolan serving
/// `spec`; reads its RSS after each fleet; makes one endpoint change outside the scope.
pub async fn proxy_modes_served(
    spec: WorldSpec,
    clients: usize,
    bin: &Path,
) -> anyhow::Result<ServedModes> {
    let served = Served::start(bin, spec, &[]).await?;
    let scope = format!("{}/*", other_namespace(&served.target.key.namespace));
    let fleet = |n: usize, prefix: &str, scoped: bool| {
        let mut f = served.fleet(n, prefix);
        if scoped {
            f.metadata = vec![(SCOPE_METADATA.to_string(), scope.clone())];
        }
        f
    };
    let warm_full = Fleet::start(&fleet(1, "warm-full", false)).await?;
    let warm_scoped = Fleet::start(&fleet(1, "warm-scoped", true)).await?;
    // Scoped first: the smaller fleet cannot live off memory the bigger one freed.
    let rss0 = rss_kib(served.pid()?)?;
    let scoped = Fleet::start(&fleet(clients, "scoped", true)).await?;
    let rss1 = rss_kib(served.pid()?)?;
    let mut full = Fleet::start(&fleet(clients, "full", false)).await?;
    let rss2 = rss_kib(served.pid()?)?;
    let before = sent_by_prefix(&served).await?;
    let (_, written) = served.change(1)?;
    let mut seen = 0;
    while seen < clients {
        if written.elapsed() > Duration::from_secs(60) {
            bail!("{seen} of {clients} unscoped clients got the change in 60 s");
        }
        let (_, received) = full.next_update(Duration::from_secs(60)).await?;
        if received.type_url == type_url::ENDPOINT {
            seen += 1;
        }
    }
    let after = sent_by_prefix(&served).await?;
    let per = |i: usize| (after[i] - before[i]) as f64 / clients.max(1) as f64;
    let per_client = |a: u64, b: u64| b.saturating_sub(a) as f64 / clients.max(1) as f64;
    let out = ServedModes {
        spec,
        clients,
        kib_per_client: [per_client(rss1, rss2), per_client(rss0, rss1)],
        responses_per_client: [per(0), per(1)],
    };
    for f in [full, scoped, warm_full, warm_scoped] {
        f.stop();
    }
    served.portolan.terminate().await?;
    Ok(out)
}

/// Responses sent to the `full-*` and the `scoped-*` clients (`/debug/proxies`).
async fn sent_by_prefix(served: &Served) -> anyhow::Result<[u64; 2]> {
    let rows = served.portolan.get_json("/debug/proxies").await?;
    let mut sent = [0u64; 2];
    for row in rows.as_array().into_iter().flatten() {
        let id = row["node_id"].as_str().unwrap_or_default();
        let n = row["responses_sent"].as_u64().unwrap_or_default();
        if id.starts_with("full-") {
            sent[0] += n;
        } else if id.starts_with("scoped-") {
            sent[1] += n;
        }
    }
    Ok(sent)
}

/// A namespace of the synthetic world other than `namespace`.
fn other_namespace(namespace: &str) -> &'static str {
    if namespace == "ns-1" { "ns-2" } else { "ns-1" }
}

fn snapshot_bytes(snapshot: &Snapshot) -> usize {
    ResourceType::ALL
        .iter()
        .flat_map(|&ty| snapshot.resources(ty).values())
        .map(|r| r.value().len())
        .sum()
}

// === impl ProxyModes ===

impl ProxyModes {
    /// The rows as a markdown table.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "### Proxy modes: full push vs scoped ({} services, {} endpoints in 10 namespaces; scoped to `{}/*`; the change is one endpoint in `{}`; {} simulated SotW proxies per mode)\n",
            self.spec.services,
            self.spec.endpoints,
            self.scoped_namespace,
            self.changed_namespace,
            self.proxies
        );
        let _ = writeln!(
            out,
            "| Mode | Clusters | Group snapshot (encoded) | Group build | Initial sync per proxy (responses) | RSS per connected proxy | Pushed per proxy for the change (responses) |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} MiB | {:.1} ms | {:.1} MiB ({}) | {:.0} KiB | {} B ({}) |",
                r.mode,
                r.clusters,
                r.snapshot_bytes as f64 / 1_048_576.0,
                r.build.as_secs_f64() * 1e3,
                r.sync.bytes as f64 / 1_048_576.0,
                r.sync.responses,
                r.kib_per_proxy,
                r.change.bytes,
                r.change.responses
            );
        }
        out.push('\n');
        out
    }
}

// === impl ServedModes ===

impl ServedModes {
    /// The served figures as a markdown table.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "### Proxy modes against `portolan serve` ({} services, {} clients per mode, real gRPC ADS)\n",
            self.spec.services, self.clients
        );
        let _ = writeln!(
            out,
            "| Mode | Portolan RSS per connected client | Responses per client for a change in another namespace |\n|---|---:|---:|"
        );
        for (i, mode) in ["full", "scoped"].into_iter().enumerate() {
            let _ = writeln!(
                out,
                "| {mode} | {:.1} KiB | {:.2} |",
                self.kib_per_client[i], self.responses_per_client[i]
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
    fn a_scoped_proxy_gets_a_tenth_and_nothing_for_other_namespaces() {
        let modes = proxy_modes(WorldSpec::new(200, 2_000), 2).expect("runs");
        let [scoped, full] = &modes.rows[..] else {
            panic!("two rows: {:?}", modes.rows);
        };
        assert!(scoped.clusters * 5 < full.clusters, "{modes:?}");
        assert!(scoped.sync.bytes * 5 < full.sync.bytes, "{modes:?}");
        assert_eq!(full.change.responses, 1, "{modes:?}");
        assert_eq!(scoped.change, Push::default(), "{modes:?}");
        assert!(modes.markdown().contains("| scoped |"));
    }
}

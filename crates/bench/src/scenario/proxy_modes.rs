//! Proxy modes (issue #11): what one proxy costs with 10k services when it gets the whole mesh
//! (full push) and when it is scoped to one namespace (`;scope=NS/*`), in process: the group's
//! snapshot (Portolan's cache, one per group), the bytes of one proxy's initial sync, the
//! resident memory per connected proxy (simulated SotW Envoys, both ends in this process), and
//! what one endpoint change in another namespace pushes to each proxy.

use crate::measure::{Memory, time_runs};
use crate::proxy::{Push, SotwProxy};
use crate::scenario::endpoint_change::with_endpoint;
use crate::{BenchError, WorldSpec};
use portolan::pipeline::IncrementalBuilder;
use portolan_translate::{Options, ProxyGroup};
use portolan_xds::{ResourceType, Snapshot};
use std::fmt::Write as _;
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
    let scoped_namespace = if changed_namespace == "ns-1" {
        "ns-2"
    } else {
        "ns-1"
    }
    .to_string();
    let modes = [
        ("full", "bench".to_string()),
        ("scoped", format!("bench;scope={scoped_namespace}/*")),
    ];
    let services = spec.services_list();
    let mut rows = Vec::new();
    for (mode, key) in modes {
        let mut index = spec.index();
        let group = ProxyGroup::from_key(&key);
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
            group: key,
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

fn snapshot_bytes(snapshot: &Snapshot) -> usize {
    ResourceType::ALL
        .iter()
        .flat_map(|&ty| snapshot.resources(ty).values())
        .map(|r| r.any().value.len())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scoped_proxy_gets_a_tenth_and_nothing_for_other_namespaces() {
        let modes = proxy_modes(WorldSpec::new(200, 2_000), 2).expect("runs");
        let [full, scoped] = &modes.rows[..] else {
            panic!("two rows: {:?}", modes.rows);
        };
        assert!(scoped.clusters * 5 < full.clusters, "{modes:?}");
        assert!(scoped.sync.bytes * 5 < full.sync.bytes, "{modes:?}");
        assert_eq!(full.change.responses, 1, "{modes:?}");
        assert_eq!(scoped.change, Push::default(), "{modes:?}");
        assert!(modes.markdown().contains("| scoped |"));
    }
}

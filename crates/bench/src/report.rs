//! Turning measured figures into text: a plain summary for the terminal and markdown tables for
//! `--markdown`. Every figure printed here was measured in the same run.

use crate::measure::{Memory, max, median, ratio};
use crate::scenario::{EndpointChange, EnvoyAck, TranslateBench};
use std::fmt::Write as _;
use std::time::Duration;

/// Where the run happened.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    /// `/proc/loadavg` when the run started.
    pub load: String,
    pub command: String,
}

/// Everything one run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub machine: Machine,
    pub translate: Option<TranslateBench>,
    pub endpoint_change: Option<EndpointChange>,
    pub envoy_ack: Option<EnvoyAck>,
    /// Why scenario 3 did not run, when it did not.
    pub envoy_skipped: Option<String>,
}

// === impl Machine ===

impl Machine {
    /// Reads CPU count, model and load of this machine.
    pub fn current(command: String) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".to_string());
        Self {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            load: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            command,
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn bytes(n: usize) -> String {
    if n >= 10 * 1024 * 1024 {
        format!("{n} B ({:.1} MiB)", n as f64 / 1048576.0)
    } else if n >= 10 * 1024 {
        format!("{n} B ({:.1} KiB)", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

const TYPES: [&str; 4] = [
    "Cluster (CDS)",
    "ClusterLoadAssignment (EDS)",
    "Listener (LDS)",
    "RouteConfiguration (RDS)",
];

// === impl Report ===

impl Report {
    /// All tables, as markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(out, "Command: `{}`  ", m.command);
        let _ = writeln!(
            out,
            "Machine: {} CPUs, {}; load average at start: {}\n",
            m.cpus, m.cpu_model, m.load
        );
        if let Some(t) = &self.translate {
            translate_md(&mut out, t);
        }
        if let Some(e) = &self.endpoint_change {
            change_md(&mut out, e);
        }
        match (&self.envoy_ack, &self.envoy_skipped) {
            (Some(a), _) => envoy_md(&mut out, a),
            (None, Some(why)) => {
                let _ = writeln!(out, "### Scenario 3: envoy-ack\n\nNot run: {why}\n");
            }
            (None, None) => {}
        }
        out
    }
}

fn translate_md(out: &mut String, t: &TranslateBench) {
    let (a, b, c) = (median(&t.translate), median(&t.encode), median(&t.snapshot));
    let _ = writeln!(
        out,
        "### Scenario 1: translate ({} services, {} endpoints, {} runs)\n",
        t.spec.services,
        t.spec.endpoints,
        t.translate.len()
    );
    let _ = writeln!(
        out,
        "| Step | Median | Max | vs encode floor |\n|---|---:|---:|---:|"
    );
    let (a1, c1) = (median(&t.translate_single), median(&t.snapshot_single));
    for (name, times, vs) in [
        ("(a) translate()", &t.translate, Some(ratio(a, b))),
        (
            "(a1) translate() on one thread (`translate_on(.., 1)`)",
            &t.translate_single,
            Some(ratio(a1, b)),
        ),
        (
            "(b) encode floor (encode_to_vec of every resource)",
            &t.encode,
            None,
        ),
        (
            "(c) full snapshot build (translate + encode + check)",
            &t.snapshot,
            Some(ratio(c, b)),
        ),
        (
            "(c1) full snapshot build, translation on one thread",
            &t.snapshot_single,
            Some(ratio(c1, b)),
        ),
        (
            "(d) cold build as `portolan serve` does (encoding each Service as translated)",
            &t.cold_build,
            Some(ratio(median(&t.cold_build), b)),
        ),
    ] {
        let vs = vs.map_or("1.0× (floor)".to_string(), |r| format!("{r:.1}×"));
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {vs} |",
            ms(median(times)),
            ms(max(times))
        );
    }
    let _ = writeln!(
        out,
        "\nWorld build (objects + Index apply + world()), once: {}\n",
        ms(t.world_build)
    );
    let _ = writeln!(
        out,
        "| Resource type | Count | Encoded bytes |\n|---|---:|---:|"
    );
    for (i, name) in TYPES.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {name} | {} | {} |",
            t.bytes.counts[i],
            bytes(t.bytes.bytes[i])
        );
    }
    let _ = writeln!(
        out,
        "| **Total** | {} | {} |\n",
        t.bytes.total_count(),
        bytes(t.bytes.total_bytes())
    );
    let _ = writeln!(
        out,
        "| Memory | RSS | Peak RSS (VmHWM) so far |\n|---|---:|---:|"
    );
    for (name, m) in [
        ("before the world", t.memory_before),
        ("world built", t.memory_world),
        ("after the runs (resources + snapshot held)", t.memory_after),
    ] {
        memory_row(out, name, m);
    }
    if let Some(m) = t.memory_cold_build {
        let name = "after the (d) runs, which come first (snapshot held)";
        memory_row(out, name, m);
    }
    out.push('\n');
}

fn memory_row(out: &mut String, name: &str, m: Memory) {
    let _ = writeln!(out, "| {name} | {} | {} |", mib(m.rss_kib), mib(m.peak_kib));
}

fn change_md(out: &mut String, e: &EndpointChange) {
    let _ = writeln!(
        out,
        "### Scenario 2: endpoint-change ({} services, {} endpoints, {} changes)\n",
        e.spec.services,
        e.spec.endpoints,
        e.rebuild.len()
    );
    let _ = writeln!(out, "Changed: first endpoint of `{}`.\n", e.cluster);
    let _ = writeln!(out, "| Step | Median | Max |\n|---|---:|---:|");
    let _ = writeln!(
        out,
        "| Index apply + world() | {} | {} |",
        ms(median(&e.apply)),
        ms(max(&e.apply))
    );
    let _ = writeln!(
        out,
        "| rebuild from scratch: translate() + snapshot reusing the previous | {} | {} |",
        ms(median(&e.rebuild_full)),
        ms(max(&e.rebuild_full))
    );
    let _ = writeln!(
        out,
        "| rebuild as `portolan serve` does (incremental) | {} | {} |\n",
        ms(median(&e.rebuild)),
        ms(max(&e.rebuild))
    );
    let _ = writeln!(
        out,
        "Incremental / from scratch (medians): {:.3}.\n",
        ratio(median(&e.rebuild), median(&e.rebuild_full))
    );
    let c = e.changed;
    let _ = writeln!(
        out,
        "Resources whose version changed: CDS {}, EDS {}, LDS {}, RDS {}.\n",
        c[0], c[1], c[2], c[3]
    );
    let _ = writeln!(
        out,
        "| One proxy (ADS) receives | SotW | Delta | Delta / SotW |\n|---|---:|---:|---:|"
    );
    for (name, s, d) in [
        ("initial sync", e.sotw_initial, e.delta_initial),
        ("one endpoint change", e.sotw_change, e.delta_change),
        ("one service added", e.sotw_add, e.delta_add),
    ] {
        let r = if s.bytes == 0 {
            0.0
        } else {
            d.bytes as f64 / s.bytes as f64
        };
        let _ = writeln!(
            out,
            "| {name} | {} in {} responses, {} resources | {} in {} responses, {} resources | {r:.3} |",
            bytes(s.bytes),
            s.responses,
            s.resources,
            bytes(d.bytes),
            d.responses,
            d.resources
        );
    }
    let _ = writeln!(
        out,
        "\nFor scale: every ClusterLoadAssignment together is {} (what a SotW server resending the whole EDS subscription would send per change).\n",
        bytes(e.all_cla_bytes)
    );
}

fn envoy_md(out: &mut String, a: &EnvoyAck) {
    let _ = writeln!(
        out,
        "### Scenario 3: envoy-ack ({} services, {} endpoints, {} clusters, {:?} ADS, {} runs)\n",
        a.spec.services,
        a.spec.endpoints,
        a.clusters,
        a.protocol,
        a.apply.len()
    );
    let _ = writeln!(out, "| Step | Median | Max |\n|---|---:|---:|");
    let _ = writeln!(
        out,
        "| Envoy start until every cluster is active (once) | {} | — |",
        ms(a.initial)
    );
    let _ = writeln!(
        out,
        "| EndpointSlice file write → Envoy's EDS ACK recorded by Portolan | {} | {} |",
        ms(median(&a.apply)),
        ms(max(&a.apply))
    );
    let _ = writeln!(
        out,
        "| one `/debug/proxies` poll (resolution of the above) | {} | — |\n",
        ms(a.poll)
    );
    let _ = writeln!(
        out,
        "Includes Portolan's 100 ms debounce. After each ACK the cluster's `update_success` counter had moved and Envoy's `/clusters` listed the new address. {} manifest files.\n",
        a.files
    );
}

//! Measures the files source on one endpoint change in a large tree: a world of N Services,
//! one file each (a Service and an EndpointSlice of 10 endpoints), one file rewritten per round.
//!
//! Prints, per round: the time from the write of the file to the source's `Changes` reaching
//! its sink (the real notify watcher, the settle time given), and the time of a full
//! `FileSource::rescan` and of `FileSource::rescan_paths` (the changed path only) after the
//! same kind of change. Run in release:
//!
//! ```text
//! cargo run --release -p portolan-files --example file_change -- [SERVICES] [ROUNDS] [SETTLE_MS]
//! ```

#[path = "common/tree.rs"]
mod tree;

use portolan_files::FileSource;
use portolan_model::source::{Changes, Source, SourceHealth, SourceSink};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

struct Sink(mpsc::Sender<(Instant, usize)>);

impl SourceSink for Sink {
    fn write(&self, _reporter: &str, changes: Changes) -> bool {
        let n = changes.apply.len() + changes.delete.len();
        let _ = self.0.send((Instant::now(), n));
        true
    }
    fn health(&self, _health: SourceHealth) {}
    fn synced(&self) {}
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let services = tree::arg(1, 10_000);
    let rounds = tree::arg(2, 10);
    let settle = Duration::from_millis(tree::arg(3, 50) as u64);
    let tmp = tree::world(services);

    // The full rescan alone.
    let mut source = FileSource::new(tmp.path());
    let t = Instant::now();
    let first = source.rescan().expect("scan");
    println!(
        "initial scan: {} objects in {:.1} ms",
        first.apply.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut full = Vec::new();
    for round in 1..=rounds {
        let i = (round * 7919) % services;
        let path = tmp.path().join(format!("ns-{}/svc-{i}.yaml", i % 10));
        std::fs::write(&path, tree::manifest(i, round)).expect("write");
        let t = Instant::now();
        let changes = source.rescan().expect("rescan");
        full.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(changes.apply.len(), 1);
    }
    println!(
        "full rescan after one change: median {:.2} ms {full:.2?}",
        median(full.clone())
    );
    let mut only = Vec::new();
    for round in 1..=rounds {
        let i = (round * 7919) % services;
        let path = tmp.path().join(format!("ns-{}/svc-{i}.yaml", i % 10));
        std::fs::write(&path, tree::manifest(i, round + 50)).expect("write");
        let t = Instant::now();
        let changes = source.rescan_paths([path.as_path()]).expect("rescan");
        only.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(changes.apply.len(), 1);
    }
    println!(
        "rescan of the changed path only: median {:.3} ms {only:.3?}",
        median(only.clone())
    );

    // Write -> Changes at the sink, through the real watcher.
    let (tx, rx) = mpsc::channel();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let source = FileSource::new(tmp.path()).with_settle(settle);
    rt.spawn(source.run(Arc::new(Sink(tx))));
    rx.recv().expect("initial");
    let mut e2e = Vec::new();
    for round in 1..=rounds {
        std::thread::sleep(Duration::from_millis(300));
        let i = (round * 104_729) % services;
        let path = tmp.path().join(format!("ns-{}/svc-{i}.yaml", i % 10));
        let t = Instant::now();
        std::fs::write(&path, tree::manifest(i, round + 100)).expect("write");
        let (at, n) = rx.recv_timeout(Duration::from_secs(10)).expect("changes");
        assert_eq!(n, 1);
        e2e.push((at - t).as_secs_f64() * 1e3);
    }
    println!(
        "write -> Changes at the sink (settle {} ms): median {:.2} ms {e2e:.2?}",
        settle.as_millis(),
        median(e2e.clone())
    );
    println!(
        "  minus settle: median {:.2} ms",
        median(e2e.clone()) - settle.as_secs_f64() * 1e3
    );
}

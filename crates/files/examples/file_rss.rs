//! Resident memory (not live heap) of reading a large file tree, with mimalloc as the global
//! allocator as `portolan serve` has it: anonymous RSS after the files source read a tree of N
//! Services, after an index took its changes and built a World, and after the source was
//! dropped. Compare with `file_memory` (the live heap, counted by dhat): the difference is what
//! the allocator keeps around the live objects. Run in release:
//!
//! ```text
//! cargo run --release -p portolan-files --example file_rss -- [SERVICES]
//! ```

#[path = "common/tree.rs"]
mod tree;

use portolan_files::FileSource;
use portolan_model::Index;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Anonymous resident memory of this process, in MiB.
fn anon_mib() -> f64 {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let kib: u64 = rollup
        .lines()
        .find_map(|l| l.strip_prefix("Anonymous:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    kib as f64 / 1024.0
}

fn main() {
    let services = tree::arg(1, 10_000);
    let tmp = tree::world(services);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let base = anon_mib();
    let mut source = FileSource::new(tmp.path());
    let changes = source.rescan().expect("scan");
    println!("after the scan              {:6.1} MiB", anon_mib() - base);
    let mut index = Index::new();
    for object in changes.apply {
        index.apply(object);
    }
    index.set_errors("files", changes.errors);
    let world = index.world();
    std::thread::sleep(std::time::Duration::from_millis(500));
    println!("source + index + World      {:6.1} MiB", anon_mib() - base);
    drop(source);
    std::thread::sleep(std::time::Duration::from_millis(500));
    println!("index + World               {:6.1} MiB", anon_mib() - base);
    println!("({} Services)", world.services.len());
}

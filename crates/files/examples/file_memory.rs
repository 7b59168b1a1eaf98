//! Where the memory of a large file tree goes: the live heap (counted by dhat) after the files
//! source read a tree of N Services (one file each: a Service and an EndpointSlice of 10
//! endpoints), the index took its changes and built a World; then with the source dropped,
//! then with the index dropped too (the World alone). Run in release:
//!
//! ```text
//! cargo run --release -p portolan-files --example file_memory -- [SERVICES]
//! ```
//!
//! dhat counts every allocation of this process (it is the global allocator here), so the
//! figures are bytes asked for, without allocator slack; `portolan serve`'s resident memory
//! adds its allocator's share on top.

#[path = "common/tree.rs"]
mod tree;

use portolan_files::FileSource;
use portolan_model::Index;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn live() -> u64 {
    dhat::HeapStats::get().curr_bytes as u64
}

fn report(what: &str, bytes: u64, services: usize) {
    println!(
        "{what:<44} {:>8.1} MiB {:>7.0} B per Service",
        bytes as f64 / (1024.0 * 1024.0),
        bytes as f64 / services as f64
    );
}

fn main() {
    let services = tree::arg(1, 10_000);
    let tmp = tree::world(services);

    // FILE_MEMORY_PROFILE=1: keep only the files source alive at the end and write
    // dhat-heap.json, whose end-of-run bytes per allocation site show where it goes.
    let profile = std::env::var_os("FILE_MEMORY_PROFILE").is_some();
    let profiler = match profile {
        true => dhat::Profiler::builder().build(),
        false => dhat::Profiler::builder().testing().build(),
    };
    let base = live();
    let mut source = FileSource::new(tmp.path());
    let changes = source.rescan().expect("scan");
    let after_scan = live();
    let mut index = Index::new();
    for object in changes.apply {
        index.apply(object);
    }
    index.set_errors("files", changes.errors);
    let world = index.world();
    let all = live();
    if profile {
        drop(index);
        drop(world);
        std::mem::forget(source);
        drop(profiler);
        return;
    }
    drop(source);
    let without_source = live();
    drop(index);
    let world_alone = live();

    report("files source (after the scan)", after_scan - base, services);
    report("source + index + World", all - base, services);
    report(
        "  of which the files source",
        all - without_source,
        services,
    );
    report(
        "  of which the index",
        without_source - world_alone,
        services,
    );
    report("  of which the World alone", world_alone - base, services);
    println!(
        "World: {} Services, {} endpoint groups",
        world.services.len(),
        world.endpoints.len()
    );
}

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

use portolan_files::FileSource;
use portolan_model::Index;
use std::path::Path;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn manifest(i: usize) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: ns-{ns}\nspec:\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc-{i}-a\n  namespace: ns-{ns}\n  labels:\n    kubernetes.io/service-name: svc-{i}\naddressType: IPv4\nports:\n- name: http\n  port: 8080\nendpoints:\n",
        ns = i % 10
    );
    for e in 0..10 {
        s.push_str(&format!(
            "- addresses: [\"10.{}.{}.{e}\"]\n  zone: zone-a\n",
            (i / 250) % 250,
            i % 250
        ));
    }
    s
}

fn write_world(dir: &Path, services: usize) {
    for i in 0..services {
        let sub = dir.join(format!("ns-{}", i % 10));
        std::fs::create_dir_all(&sub).expect("mkdir");
        std::fs::write(sub.join(format!("svc-{i}.yaml")), manifest(i)).expect("write");
    }
}

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
    let services = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("a number"))
        .unwrap_or(10_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    write_world(tmp.path(), services);

    let _profiler = dhat::Profiler::builder().testing().build();
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

//! The quick scenarios 1 and 2 run through the library, as CI's smoke run: structure only
//! (resource counts, what changed, what a proxy received), never time.

use portolan_bench::WorldSpec;
use portolan_bench::scenario::{endpoint_change, translate};

const QUICK: WorldSpec = WorldSpec {
    services: 200,
    endpoints: 2_000,
    first_octet: 10,
};

#[test]
fn translate_produces_one_cluster_per_port() {
    let t = translate(QUICK, 1).expect("scenario 1 runs");
    let clusters = QUICK.cluster_count();
    assert_eq!(clusters, 202, "every 100th service has two ports");
    assert_eq!(t.bytes.counts, [clusters, clusters, 1, 1]);
    assert!(t.bytes.bytes.iter().all(|&b| b > 0));
    assert_eq!(t.translate.len(), 1);
    assert_eq!(t.snapshot.len(), 1);
    assert!(t.memory_after.peak_kib >= t.memory_after.rss_kib);
}

#[test]
fn one_endpoint_change_is_one_assignment() {
    let e = endpoint_change(QUICK, 2).expect("scenario 2 runs");
    assert_eq!(
        e.changed,
        [0, 1, 0, 0],
        "only the service's CLA changes version"
    );
    assert_eq!(e.rebuild.len(), 2);

    // Initial sync: every resource once, over both protocols.
    let all = 2 * QUICK.cluster_count() + 2;
    assert_eq!(e.sotw_initial.resources, all);
    assert_eq!(e.delta_initial.resources, all);

    // One endpoint change: one EDS response with the one CLA, on both protocols.
    assert_eq!((e.sotw_change.responses, e.sotw_change.resources), (1, 1));
    assert_eq!((e.delta_change.responses, e.delta_change.resources), (1, 1));
    assert!(e.sotw_change.bytes < e.all_cla_bytes / 100);
    assert!(e.delta_change.bytes < e.all_cla_bytes / 100);

    // A new service: SotW resends every cluster (CDS is full state), Delta only the new one.
    assert_eq!(
        e.sotw_add.resources,
        QUICK.cluster_count() + 3,
        "every cluster, the new CLA, the route config"
    );
    assert_eq!(
        e.delta_add.resources, 3,
        "new cluster, its CLA, the route config"
    );
    assert!(e.delta_add.bytes < e.sotw_add.bytes);
}

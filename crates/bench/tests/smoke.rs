//! The quick scenarios 1 and 2 run through the library, as CI's smoke run: structure only
//! (resource counts, what changed, what a proxy received), never time.

use portolan_bench::WorldSpec;
use portolan_bench::scenario::{endpoint_change, translate};

const QUICK: WorldSpec = WorldSpec {
    services: 200,
    endpoints: 2_000,
    routes: 20,
    first_octet: 10,
    cluster_ips: false,
    http_routes: 0,
};

#[test]
fn translate_produces_one_cluster_per_port() {
    let t = translate(QUICK, 1, "default").expect("scenario 1 runs");
    let clusters = QUICK.cluster_count();
    assert_eq!(clusters, 202, "every 100th service has two ports");
    assert_eq!(t.bytes.counts, [clusters, clusters, 1, 1]);
    assert!(t.bytes.bytes.iter().all(|&b| b > 0));
    assert_eq!(t.translate.len(), 1);
    assert_eq!(t.snapshot.len(), 1);
    assert!(t.memory_after.peak_kib >= t.memory_after.rss_kib);
    assert_eq!(t.cold_build.len(), 1);
    // The cold build's peak is read after resetting it (Linux): at least the RSS then.
    let cold = t.memory_cold_build.expect("the peak can be reset on Linux");
    assert!(cold.peak_kib >= cold.rss_kib && cold.rss_kib > 0);
}

#[test]
fn a_capture_workload_group_gets_the_cluster_ip_listener() {
    let spec = WorldSpec {
        cluster_ips: true,
        ..QUICK
    };
    let t = translate(spec, 1, "web;ns=ns-0;sa=web").expect("scenario 1 runs for a workload");
    let clusters = spec.cluster_count();
    // The service clusters, plus what a capture workload adds (the passthrough cluster).
    assert!(t.bytes.counts[0] > clusters, "{:?}", t.bytes.counts);
    assert!(
        t.bytes.counts[2] >= 1,
        "at least the outbound listener: {:?}",
        t.bytes.counts
    );
    let bad = translate(spec, 1, "web;ns=");
    assert!(bad.is_err(), "a malformed group key is a setup error");
}

#[test]
fn http_routes_reach_the_gateways_group_only() {
    let spec = WorldSpec {
        http_routes: 20,
        ..QUICK
    };
    let gateway = translate(spec, 1, "gateway:ns-0/edge").expect("S1 for the Gateway's group");
    // One listener (port 8080) and its route configuration with a virtual host per route.
    assert_eq!(gateway.bytes.counts[2], 1, "{:?}", gateway.bytes.counts);
    assert_eq!(gateway.bytes.counts[3], 1, "{:?}", gateway.bytes.counts);
    let plain = translate(QUICK, 1, "default").expect("S1 without routes");
    let with_routes = translate(spec, 1, "default").expect("S1 with routes");
    assert_eq!(
        plain.bytes.counts, with_routes.bytes.counts,
        "HTTPRoutes change nothing for a mesh proxy"
    );
    assert!(
        gateway.bytes.bytes[3] > 20 * 100,
        "every route has a virtual host: {:?}",
        gateway.bytes.bytes
    );
    let e = endpoint_change(spec, 2, "gateway:ns-0/edge").expect("S2 for the Gateway's group");
    assert_eq!(e.rebuild.len(), 2);
}

#[test]
fn one_endpoint_change_is_one_assignment() {
    let e = endpoint_change(QUICK, 2, "default").expect("scenario 2 runs");
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

// === issue #8: the client-fleet scenarios against a real `portolan serve`, tiny ===

/// The `portolan` binary `cargo test --workspace` builds (or `PORTOLAN_BIN`).
fn portolan_bin() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("PORTOLAN_BIN") {
        return bin.into();
    }
    let root = portolan_e2e::workspace_root();
    let debug = root.join("target/debug/portolan");
    assert!(
        debug.exists(),
        "no {}: run `cargo build -p portolan` (or set PORTOLAN_BIN)",
        debug.display()
    );
    debug
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

const FLEET: WorldSpec = WorldSpec {
    services: 20,
    endpoints: 200,
    routes: 2,
    first_octet: 10,
    cluster_ips: false,
    http_routes: 0,
};

#[test]
fn quick_fleet_scenarios_reach_every_client() {
    use portolan_bench::scenario::{self, ChurnConfig, FanOutConfig};
    let rt = runtime();
    let f = rt
        .block_on(scenario::fan_out(FanOutConfig {
            spec: FLEET,
            clients: 20,
            changes: 2,
            portolan_bin: portolan_bin(),
            worker_threads: Some(1),
            delta: false,
            workload: None,
            pause: std::time::Duration::ZERO,
        }))
        .expect("S3 runs");
    assert_eq!(f.arrivals.len(), 40, "every client got both changes");
    assert_eq!(f.all_acked.len(), 2);
    assert_eq!(f.cpu.len(), 2);
    assert!(f.rss_after_kib > 0 && f.rss_before_kib > 0);
    assert!(scenario::fan_out_md(&[f]).contains("| 20 |"));

    let d = rt
        .block_on(scenario::fan_out(FanOutConfig {
            spec: FLEET,
            clients: 10,
            changes: 2,
            portolan_bin: portolan_bin(),
            worker_threads: Some(1),
            delta: true,
            workload: None,
            pause: std::time::Duration::from_millis(150),
        }))
        .expect("S3 over Delta runs");
    assert_eq!(d.arrivals.len(), 20, "every Delta client got both changes");
    assert!(scenario::fan_out_md(&[d]).contains("Delta ADS"));

    // Sidecars of transparent capture: workload clients, Services with ClusterIPs.
    let w = rt
        .block_on(scenario::fan_out(FanOutConfig {
            spec: WorldSpec {
                cluster_ips: true,
                ..FLEET
            },
            clients: 10,
            changes: 1,
            portolan_bin: portolan_bin(),
            worker_threads: Some(1),
            delta: false,
            workload: Some(("ns-0".into(), "web".into())),
            pause: std::time::Duration::ZERO,
        }))
        .expect("S3 with workload clients runs");
    assert_eq!(w.arrivals.len(), 10, "every workload client got the change");

    let r = rt
        .block_on(scenario::reconnect(FLEET, 20, portolan_bin()))
        .expect("S6 runs");
    assert_eq!(r.sync.len(), 20);
    assert!(r.peak_after_kib >= r.rss_after_kib);

    let c = rt
        .block_on(scenario::churn(ChurnConfig {
            spec: FLEET,
            clients: 10,
            per_second: 20,
            seconds: 1,
            portolan_bin: portolan_bin(),
        }))
        .expect("S8 runs");
    assert_eq!(c.changes, 20);
    assert_eq!(c.convergence.len(), 20, "every change reached every client");
    assert!(c.batches >= 1.0 && c.eds_per_client >= 1);
}

#[test]
fn scoped_clients_of_a_real_portolan_get_nothing_for_another_namespace() {
    let served = runtime()
        .block_on(portolan_bench::scenario::proxy_modes_served(
            FLEET,
            10,
            &portolan_bin(),
        ))
        .expect("proxy modes (served) run");
    assert_eq!(served.responses_per_client, [1.0, 0.0], "{served:?}");
    assert!(served.markdown().contains("| scoped |"));
}

#[test]
fn delta_bytes_are_one_assignment_at_every_size() {
    let runs =
        portolan_bench::scenario::delta_bytes(&[WorldSpec::new(20, 200), QUICK]).expect("S5 runs");
    for e in &runs {
        assert_eq!((e.sotw_change.resources, e.delta_change.resources), (1, 1));
    }
}

#[test]
fn the_three_modes_cost_what_their_proxies_hold() {
    use portolan_bench::scenario::{ModeMemoryConfig, mode_memory};
    // Envoy's side only where Envoy is installed (ENVOY_BIN or .venv/bin/envoy).
    let envoy = portolan_e2e::envoy::envoy_bin().exists();
    let config = ModeMemoryConfig {
        spec: WorldSpec::new(200, 2_000),
        clients: 5,
        hosts_per_client: 3,
        envoy_hosts: if envoy { vec![2] } else { Vec::new() },
        portolan_bin: portolan_bin(),
    };
    let m = runtime()
        .block_on(mode_memory(config))
        .expect("mode-memory runs");
    let [on_demand, scoped, full] = &m.served[..] else {
        panic!("three served rows: {m:?}");
    };
    assert_eq!(
        (on_demand.mode, scoped.mode, full.mode),
        ("on-demand", "scoped", "full")
    );
    // 202 clusters in the world, 20 in ns-1; an on-demand client holds what it used.
    assert_eq!(
        (full.clusters, scoped.clusters, on_demand.clusters),
        (202.0, 20.0, 3.0)
    );
    assert!(
        on_demand.initial_bytes * 10.0 < scoped.initial_bytes,
        "{m:?}"
    );
    assert!(scoped.initial_bytes * 5.0 < full.initial_bytes, "{m:?}");
    assert!(on_demand.bytes_per_host.is_some_and(|b| b > 0.0), "{m:?}");
    if envoy {
        let modes: Vec<_> = m.envoy.iter().map(|r| (r.mode, r.hosts_used)).collect();
        assert_eq!(
            modes,
            [
                ("on-demand", 0),
                ("on-demand", 2),
                ("scoped", 0),
                ("full", 0)
            ]
        );
        // The used hosts answered through Envoy; it then held their clusters (plus the xDS one).
        assert_eq!((m.envoy[1].ok, m.envoy[1].clusters_active), (2, 3), "{m:?}");
        assert!(m.envoy[0].config_dump_bytes < m.envoy[3].config_dump_bytes);
    }
    assert!(m.markdown().contains("| on-demand |"));
}

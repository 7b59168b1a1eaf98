//! `portolan validate PATH...`: the same validation the server applies, for CI and editors.
//!
//! Errors (exit 1) are documents Portolan would reject. Warnings are references that do not
//! resolve among the given files (a route naming a Service that is not there, say): they are
//! printed, but do not fail the run, since the missing objects may live elsewhere.

use crate::cli::ValidateArgs;
use crate::output::println;
use portolan_model::Index;
use std::process::ExitCode;

pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let report = portolan_files::validate_paths(&args.paths)?;
    for e in &report.errors {
        println(&e.to_string())?;
    }
    let mut index = Index::new();
    for object in report.valid {
        index.apply(object);
    }
    let world = index.world();
    let mut warnings = 0;
    for (object, conditions) in &world.statuses {
        for c in conditions.iter().filter(|c| !c.status) {
            warnings += 1;
            println(&format!(
                "warning: {object}: {}={} ({}): {}",
                c.type_, c.status, c.reason, c.message
            ))?;
        }
    }
    let summary = format!(
        "{} objects valid, {} errors, {warnings} warnings",
        report.objects,
        report.errors.len()
    );
    println(&summary)?;
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

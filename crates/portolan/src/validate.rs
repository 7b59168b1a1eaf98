//! `portolan validate PATH...`: the same validation the server applies, for CI and editors.

use crate::cli::ValidateArgs;
use std::process::ExitCode;

pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let report = portolan_files::validate_paths(&args.paths)?;
    for e in &report.errors {
        println!("{e}");
    }
    if report.errors.is_empty() {
        println!("{} objects valid", report.objects);
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{} objects valid, {} errors",
            report.objects,
            report.errors.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

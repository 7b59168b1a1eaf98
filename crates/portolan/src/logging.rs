//! Log setup: human-readable by default, JSON lines with `--log-format json`; to stderr.

use crate::cli::{LogArgs, LogFormat};
use tracing_subscriber::EnvFilter;

pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_new(&args.log_level).unwrap_or_else(|e| {
        eprintln!("invalid --log-level {:?} ({e}); using info", args.log_level);
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

//! The errors a benchmark run can end with.

use portolan_xds::SnapshotError;

/// Why a scenario could not produce its figures.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The translated resources did not pass the snapshot's consistency check.
    #[error("snapshot refused: {0}")]
    Snapshot(#[from] SnapshotError),
    /// A simulated proxy did not get what a real one would (a bug in the bench or in xds).
    #[error("simulated proxy: {0}")]
    Proxy(String),
    /// Portolan or Envoy could not be started, or did not converge in time.
    #[error("envoy-ack: {0:#}")]
    Harness(#[from] anyhow::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A command-line setting the scenario cannot use.
    #[error("setup: {0}")]
    Setup(String),
}

//! The files source's error type: only failures that stop a scan (the watched directory or a
//! path given on the command line cannot be read). Problems inside manifests are not errors
//! here; they are [`portolan_model::ConfigError`]s reported next to the objects.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The directory (or a path given to `validate`) cannot be read: missing, not a
    /// directory, or no permission.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file-system watcher could not be started.
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

// === impl FilesError ===

impl FilesError {
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Read {
            path: path.into(),
            source,
        }
    }
}

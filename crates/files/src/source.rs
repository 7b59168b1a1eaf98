//! [`FileSource`]: the state of one watched directory between scans, and the [`Changes`]
//! each scan produces for the index (under the reporter name [`REPORTER`]).
//!
//! Each scan computes the complete desired set of objects and diffs it against what was
//! applied before, so renaming a file or moving a document between files changes nothing,
//! and an unchanged file is not parsed again (its content hash is remembered).

use crate::document::{self, ParsedFile};
use crate::error::FilesError;
use crate::resolve::{FileState, Resolved, resolve};
use crate::walk;
use portolan_api::{FieldError, FieldPath, ObjectRef};
use portolan_model::source::Changes;
use portolan_model::{ConfigError, Object};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Quiet time after the last file-system event before a rescan, unless set otherwise.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(50);

/// The name under which the files source reports its errors to the index.
pub const REPORTER: &str = "files";

/// A directory of manifests, as last read.
#[derive(Debug)]
pub struct FileSource {
    dir: PathBuf,
    files: BTreeMap<String, FileState>,
    /// What this source has handed out: the index holds exactly these objects from us.
    applied: BTreeMap<ObjectRef, Object>,
    /// Quiet time after the last file-system event before a rescan (see `watch.rs`).
    settle: Duration,
}

// === impl FileSource ===

impl FileSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            files: BTreeMap::new(),
            applied: BTreeMap::new(),
            settle: DEFAULT_SETTLE,
        }
    }

    /// Rescans once file-system events have been quiet for `settle` (default
    /// [`DEFAULT_SETTLE`]): an editor's or `kubectl cp`'s several writes of one file become one
    /// rescan of the finished file.
    pub fn with_settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// The quiet time before a rescan.
    pub fn settle(&self) -> Duration {
        self.settle
    }

    /// The directory this source reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the whole directory tree and returns what changed since the previous scan (the
    /// first call returns everything). Fails only when the directory itself cannot be read;
    /// then nothing changes and the last good state stays.
    pub fn rescan(&mut self) -> Result<Changes, FilesError> {
        let listing = walk::list(&self.dir).map_err(|e| FilesError::read(&self.dir, e))?;
        let mut previous = std::mem::take(&mut self.files);
        for (rel, path) in listing.files {
            if let Some(state) = read_file(&rel, &path, previous.remove(&rel)) {
                self.files.insert(rel, state);
            }
        }
        let mut dir_errors = Vec::new();
        for (dir, why) in listing.unreadable {
            // Keep what we knew of the files in there: unreadable is not deleted.
            let inside = format!("{dir}/");
            let kept: Vec<String> = previous
                .keys()
                .filter(|rel| rel.starts_with(&inside))
                .cloned()
                .collect();
            for rel in kept {
                if let Some(state) = previous.remove(&rel) {
                    self.files.insert(rel, state);
                }
            }
            dir_errors.push(ConfigError {
                location: dir,
                object: None,
                error: FieldError::new(FieldPath::root(), format!("cannot read directory: {why}")),
            });
        }
        let mut resolved = resolve(
            self.files.iter().map(|(rel, st)| (rel.as_str(), st)),
            &self.applied,
        );
        resolved.errors.extend(dir_errors);
        Ok(self.diff(resolved))
    }

    /// Diffs the desired objects against the applied ones and remembers them as applied.
    fn diff(&mut self, resolved: Resolved) -> Changes {
        let apply = resolved
            .objects
            .iter()
            .filter(|(r, o)| self.applied.get(*r) != Some(*o))
            .map(|(_, o)| o.clone())
            .collect();
        let delete = self
            .applied
            .keys()
            .filter(|r| !resolved.objects.contains_key(*r))
            .cloned()
            .collect();
        self.applied = resolved.objects;
        let mut errors = resolved.errors;
        errors.sort();
        Changes {
            apply,
            delete,
            errors,
        }
    }
}

/// Reads and parses one file, reusing `previous` when its content is unchanged. `None` when
/// the file vanished between listing and reading.
pub(crate) fn read_file(rel: &str, path: &Path, previous: Option<FileState>) -> Option<FileState> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let hash = xxhash_rust::xxh3::xxh3_128(&bytes);
            match previous {
                Some(prev) if prev.hash == Some(hash) => Some(prev),
                prev => Some(FileState::new(
                    prev,
                    Some(hash),
                    document::parse(rel, &bytes),
                )),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            let parsed = ParsedFile::unreadable(rel, format!("cannot read file: {e}"));
            Some(FileState::new(previous, None, parsed))
        }
    }
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;

//! [`FileSource`]: the state of one watched directory between scans, and the [`Changes`]
//! each scan produces for the index (under the reporter name [`REPORTER`]).
//!
//! A scan re-reads files (all of them in [`FileSource::rescan`], only the paths the watcher
//! reported in [`FileSource::rescan_paths`]), and re-resolves only the objects the files that
//! changed define or defined before: an index from each object to the files defining it gives
//! the first definition (sorted by path, then document) and the duplicates, so renaming a file
//! or moving a document between files changes nothing, and the cost of a change is that of the
//! files and objects it touches. An unchanged file is not parsed again (its content hash is
//! remembered).

use crate::document::{self, Outcome, ParsedFile};
use crate::error::FilesError;
use crate::resolve::FileState;
use crate::walk;
use portolan_api::{FieldError, FieldPath, ObjectRef};
use portolan_model::source::Changes;
use portolan_model::{ConfigError, Object};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
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
    /// The files that define (or hold on to) each object, sorted (almost always one: a
    /// vector, not a set, whose first node alone would take ~280 bytes).
    definers: BTreeMap<ObjectRef, Vec<String>>,
    /// Duplicate-definition errors, by object.
    duplicates: BTreeMap<ObjectRef, Vec<ConfigError>>,
    /// Subdirectories the last full scan could not read.
    dir_errors: Vec<ConfigError>,
    /// The tree had a symbolic link at the last full scan: a file's content may then change
    /// through a path the watcher reports under another name, so every scan is a full one.
    links: bool,
    /// What this source has handed out: the index holds exactly these objects from us.
    /// Each object shares its `Arc` with the document that defined it (or defined it last,
    /// while its document is broken) and with the index: one copy per object.
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
            definers: BTreeMap::new(),
            duplicates: BTreeMap::new(),
            dir_errors: Vec::new(),
            links: false,
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
        let mut gone: BTreeSet<String> = self.files.keys().cloned().collect();
        let mut touched = BTreeSet::new();
        for (rel, path) in listing.files {
            gone.remove(&rel);
            let loaded = load(&rel, &path, self.files.get(&rel));
            self.apply_load(&rel, loaded, &mut touched);
        }
        self.dir_errors.clear();
        for (dir, why) in listing.unreadable {
            // Keep what we knew of the files in there: unreadable is not deleted.
            let inside = format!("{dir}/");
            gone.retain(|rel| !rel.starts_with(&inside));
            self.dir_errors.push(ConfigError {
                location: dir,
                object: None,
                error: FieldError::new(FieldPath::root(), format!("cannot read directory: {why}")),
            });
        }
        for rel in gone {
            self.replace(&rel, None, &mut touched);
        }
        self.links = listing.links;
        Ok(self.resolve_touched(touched))
    }

    /// Re-reads only `paths` (as the watcher reported them: files created, written, removed or
    /// renamed) and returns what changed. Falls back to [`FileSource::rescan`] when a path
    /// cannot be attributed to one manifest file: a directory, a symbolic link, a path outside
    /// the directory, or a tree that has symbolic links.
    pub fn rescan_paths<'a>(
        &mut self,
        paths: impl IntoIterator<Item = &'a Path>,
    ) -> Result<Changes, FilesError> {
        if self.links {
            return self.rescan();
        }
        let mut reads = Vec::new();
        for path in paths {
            match self.attribute(path) {
                Target::Ignore => {}
                Target::File(rel) => reads.push((rel, path.to_path_buf())),
                Target::Everything => return self.rescan(),
            }
        }
        let mut touched = BTreeSet::new();
        for (rel, path) in reads {
            let loaded = load(&rel, &path, self.files.get(&rel));
            self.apply_load(&rel, loaded, &mut touched);
        }
        Ok(self.resolve_touched(touched))
    }

    /// What a path the watcher reported means for this source.
    fn attribute(&self, path: &Path) -> Target {
        let Some(rel) = relative(&self.dir, path) else {
            return Target::Everything;
        };
        if rel.split('/').any(|part| part.starts_with('.')) {
            // Never read (no links in the tree, so nothing we read points in there).
            return Target::Ignore;
        }
        if self.has_files_under(&rel) {
            // A directory we read from was removed, moved or changed.
            return Target::Everything;
        }
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_file() && walk::is_manifest(name) => Target::File(rel),
            Ok(meta) if meta.is_file() => Target::Ignore,
            Ok(_) => Target::Everything,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && walk::is_manifest(name) => {
                Target::File(rel)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Target::Ignore,
            Err(_) => Target::Everything,
        }
    }

    fn has_files_under(&self, rel: &str) -> bool {
        let inside = format!("{rel}/");
        self.files
            .range(inside.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&inside))
    }

    /// Records the outcome of reading one file.
    fn apply_load(&mut self, rel: &str, loaded: Load, touched: &mut BTreeSet<ObjectRef>) {
        match loaded {
            Load::Unchanged => {}
            Load::Parsed(state) => self.replace(rel, Some(state), touched),
            Load::Gone => self.replace(rel, None, touched),
        }
    }

    /// Puts `state` in place of what was known of the file `rel`, keeping the index of
    /// definers in step and noting every object either version defines.
    fn replace(&mut self, rel: &str, state: Option<FileState>, touched: &mut BTreeSet<ObjectRef>) {
        let old = match state {
            Some(state) => self.files.insert(rel.to_string(), state),
            None => self.files.remove(rel),
        };
        for object in old.iter().flat_map(FileState::refs) {
            if let Some(files) = self.definers.get_mut(&object) {
                files.retain(|f| f != rel);
                if files.is_empty() {
                    self.definers.remove(&object);
                }
            }
            touched.insert(object);
        }
        for object in self.files.get(rel).iter().flat_map(|s| s.refs()) {
            let files = self.definers.entry(object.clone()).or_default();
            if let Err(at) = files.binary_search_by(|f| f.as_str().cmp(rel)) {
                files.insert(at, rel.to_string());
            }
            touched.insert(object);
        }
    }

    /// Resolves the `touched` objects again, diffs them against the applied ones (which they
    /// then become) and returns the changes with the complete list of errors.
    fn resolve_touched(&mut self, touched: BTreeSet<ObjectRef>) -> Changes {
        let mut apply = Vec::new();
        let mut delete = Vec::new();
        for object in touched {
            match self.resolve_one(&object) {
                Some(desired) => {
                    if self.applied.get(&object) != Some(&desired) {
                        apply.push(desired.clone());
                    }
                    // Even when equal: share the current document's copy, not the old one's.
                    self.applied.insert(object, desired);
                }
                None => {
                    if self.applied.remove(&object).is_some() {
                        delete.push(object);
                    }
                }
            }
        }
        let mut errors: Vec<ConfigError> = self
            .files
            .values()
            .flat_map(|f| f.errors.iter().cloned())
            .chain(self.duplicates.values().flatten().cloned())
            .chain(self.dir_errors.iter().cloned())
            .collect();
        errors.sort();
        Changes {
            apply,
            delete,
            errors,
            manifests: Vec::new(),
        }
    }

    /// The desired version of one object: the first definition by (path, document) wins, later
    /// ones are duplicates; a broken first definition keeps the version applied before.
    fn resolve_one(&mut self, object: &ObjectRef) -> Option<Object> {
        let mut claim: Option<String> = None;
        let mut desired = None;
        let mut duplicates = Vec::new();
        let definers = self.definers.get(object).into_iter().flatten();
        for (rel, file) in definers.filter_map(|rel| Some((rel, self.files.get(rel)?))) {
            let docs = file.parsed.documents.iter();
            for doc in docs.filter(|d| d.outcome.object_ref().as_ref() == Some(object)) {
                if let Some(first) = &claim {
                    duplicates.push(ConfigError {
                        location: doc.location.to_string(),
                        object: Some(object.clone()),
                        error: FieldError::new(
                            FieldPath::root(),
                            format!("duplicate: already defined at {first}"),
                        ),
                    });
                    continue;
                }
                claim = Some(doc.location.describe());
                desired = match &doc.outcome {
                    Outcome::Valid(o) => Some(o.clone()),
                    _ => self.applied.get(object).cloned(),
                };
            }
            if claim.is_none() && file.held.contains(object) {
                claim = Some(rel.clone());
                desired = self.applied.get(object).cloned();
            }
        }
        if duplicates.is_empty() {
            self.duplicates.remove(object);
        } else {
            self.duplicates.insert(object.clone(), duplicates);
        }
        desired
    }
}

/// What a path reported by the watcher means.
enum Target {
    /// Nothing this source reads.
    Ignore,
    /// The manifest file at this relative path (it may be gone).
    File(String),
    /// Cannot tell: scan everything.
    Everything,
}

/// `path` relative to `root` with '/' separators, when it is inside `root` and UTF-8.
fn relative(root: &Path, path: &Path) -> Option<String> {
    let rest = path.strip_prefix(root).ok()?;
    let mut parts = Vec::new();
    for part in rest.components() {
        match part {
            Component::Normal(name) => parts.push(name.to_str()?),
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The outcome of reading one file against what was known of it.
pub(crate) enum Load {
    /// Same content as before: nothing to do.
    Unchanged,
    Parsed(FileState),
    /// The file does not exist (any more).
    Gone,
}

/// Reads one file; parses it only when its content differs from `previous`.
pub(crate) fn load(rel: &str, path: &Path, previous: Option<&FileState>) -> Load {
    match std::fs::read(path) {
        Ok(bytes) => {
            let hash = xxhash_rust::xxh3::xxh3_128(&bytes);
            match previous {
                Some(prev) if prev.hash == Some(hash) => Load::Unchanged,
                prev => Load::Parsed(FileState::new(
                    prev,
                    Some(hash),
                    document::parse(rel, &bytes),
                )),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Load::Gone,
        Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => Load::Gone,
        Err(e) => {
            let parsed = ParsedFile::unreadable(rel, format!("cannot read file: {e}"));
            Load::Parsed(FileState::new(previous, None, parsed))
        }
    }
}

/// Reads and parses one file, reusing `previous` when its content is unchanged. `None` when
/// the file vanished between listing and reading.
pub(crate) fn read_file(rel: &str, path: &Path, previous: Option<FileState>) -> Option<FileState> {
    match load(rel, path, previous.as_ref()) {
        Load::Unchanged => previous,
        Load::Parsed(state) => Some(state),
        Load::Gone => None,
    }
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;

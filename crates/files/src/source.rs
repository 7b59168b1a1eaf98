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
use std::ops::Bound;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Quiet time after the last file-system event before a rescan, unless set otherwise.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(50);

/// The name under which the files source reports its errors to the index.
pub const REPORTER: &str = "files";

/// A directory of manifests, as last read.
#[derive(Debug)]
pub struct FileSource {
    dir: PathBuf,
    /// Every file read, by path relative to `dir` (the name shared with `objects`).
    files: BTreeMap<Arc<str>, FileState>,
    /// Every object some file defines or holds on to: which files, and what this source
    /// applied of it. One map (one copy of each object's key) for both.
    objects: BTreeMap<ObjectRef, Known>,
    /// Duplicate-definition errors, by object.
    duplicates: BTreeMap<ObjectRef, Vec<ConfigError>>,
    /// Subdirectories the last full scan could not read.
    dir_errors: Vec<ConfigError>,
    /// The tree had a symbolic link at the last full scan: a file's content may then change
    /// through a path the watcher reports under another name, so every scan is a full one.
    links: bool,
    /// Quiet time after the last file-system event before a rescan (see `watch.rs`).
    settle: Duration,
}

/// What the source knows of one object. An entry exists while some file defines the object.
#[derive(Debug, Default)]
struct Known {
    /// The files that define (or hold on to) the object, sorted (almost always one: a
    /// vector, not a set, whose first node alone would take ~280 bytes); the names are the
    /// `files` map's own.
    definers: Vec<Arc<str>>,
    /// What this source has handed out: the index holds exactly these objects from us.
    /// Each object shares its `Arc` with the document that defined it (or defined it last,
    /// while its document is broken) and with the index: one copy per object.
    applied: Option<Object>,
}

// === impl FileSource ===

impl FileSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            files: BTreeMap::new(),
            objects: BTreeMap::new(),
            duplicates: BTreeMap::new(),
            dir_errors: Vec::new(),
            links: false,
            settle: DEFAULT_SETTLE,
        }
    }

    /// Rescans once file-system events have been quiet for `settle` (default
    /// [`DEFAULT_SETTLE`]): an editor's or `kubectl cp`'s several writes of one file become one
    /// rescan of the finished file. A burst whose written files have all been closed by their
    /// writers is complete and rescanned at once.
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
        let mut gone: BTreeSet<Arc<str>> = self.files.keys().cloned().collect();
        let mut touched = BTreeSet::new();
        for (rel, path) in listing.files {
            gone.remove(rel.as_str());
            let loaded = load(&rel, &path, self.files.get(rel.as_str()));
            self.apply_load(&rel, loaded, &mut touched);
        }
        self.dir_errors.clear();
        for (dir, why) in listing.unreadable {
            // Keep what we knew of the files in there: unreadable is not deleted.
            let inside = format!("{dir}/");
            gone.retain(|rel| !rel.starts_with(inside.as_str()));
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
            let loaded = load(&rel, &path, self.files.get(rel.as_str()));
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
            .range::<str, _>((Bound::Included(inside.as_str()), Bound::Unbounded))
            .next()
            .is_some_and(|(k, _)| k.starts_with(inside.as_str()))
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
        // `insert` keeps the map's key when there is one: the name stays shared.
        let old = match state {
            Some(state) => self.files.insert(rel.into(), state),
            None => self.files.remove(rel),
        };
        for object in old.iter().flat_map(FileState::refs) {
            if let Some(known) = self.objects.get_mut(&object) {
                known.definers.retain(|f| **f != *rel);
            }
            touched.insert(object);
        }
        let Some((name, state)) = self.files.get_key_value(rel) else {
            return;
        };
        for object in state.refs() {
            let known = match self.objects.get_mut(&object) {
                Some(known) => known,
                None => self.objects.entry(object.clone()).or_default(),
            };
            if known.definers.is_empty() {
                // Room for one (almost always all there is), not the four a push makes.
                known.definers = vec![name.clone()];
            } else if let Err(at) = known.definers.binary_search_by(|f| (**f).cmp(rel)) {
                known.definers.insert(at, name.clone());
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
            let desired = self.resolve_one(&object);
            let Some(known) = self.objects.get_mut(&object) else {
                continue;
            };
            match desired {
                Some(desired) => {
                    if known.applied.as_ref() != Some(&desired) {
                        apply.push(desired.clone());
                    }
                    // Even when equal: share the current document's copy, not the old one's.
                    known.applied = Some(desired);
                }
                None => {
                    if known.applied.take().is_some() {
                        delete.push(object.clone());
                    }
                }
            }
            if known.definers.is_empty() {
                self.objects.remove(&object);
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

    /// What this source applied of `object` (tests: which copy it shares).
    #[cfg(test)]
    pub(crate) fn applied(&self, object: &ObjectRef) -> Option<&Object> {
        self.objects.get(object)?.applied.as_ref()
    }

    /// The desired version of one object: the first definition by (path, document) wins, later
    /// ones are duplicates; a broken first definition keeps the version applied before.
    fn resolve_one(&mut self, object: &ObjectRef) -> Option<Object> {
        let mut claim: Option<String> = None;
        let mut desired = None;
        let mut duplicates = Vec::new();
        let known = self.objects.get(object);
        let applied = known.and_then(|k| k.applied.as_ref());
        let definers = known.into_iter().flat_map(|k| &k.definers);
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
                    _ => applied.cloned(),
                };
            }
            if claim.is_none() && file.held.contains(object) {
                claim = Some(rel.to_string());
                desired = applied.cloned();
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

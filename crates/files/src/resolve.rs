//! From parsed files to the desired set of objects: who defines what, duplicates, and which
//! objects keep their last good version because their document is broken.
//!
//! Pure: parsed files and the previously applied objects in, desired objects and the complete
//! list of errors out. The first definition by sorted (path, document index) wins.

use crate::document::{Outcome, ParsedFile};
use portolan_api::{FieldError, FieldPath, ObjectRef};
use portolan_model::{ConfigError, Object};
use std::collections::{BTreeMap, BTreeSet};

/// What is remembered of one file between scans.
#[derive(Clone, Debug, Default)]
pub(crate) struct FileState {
    /// Content hash; `None` when the file could not be read (read it again next time).
    pub hash: Option<u128>,
    pub parsed: ParsedFile,
    /// Objects the file defined when it last parsed, kept while it is broken.
    pub held: BTreeSet<ObjectRef>,
    /// The file's own errors (its documents' and its own), which no other file affects.
    pub errors: Vec<ConfigError>,
}

/// The desired objects and every error.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    pub objects: BTreeMap<ObjectRef, Object>,
    pub errors: Vec<ConfigError>,
}

// === impl FileState ===

impl FileState {
    /// The state after parsing a file anew. A broken file holds on to whatever it defined
    /// before (`previous`), so a syntax error does not delete its objects.
    pub fn new(previous: Option<&FileState>, hash: Option<u128>, parsed: ParsedFile) -> Self {
        let held = match previous {
            Some(prev) if parsed.is_broken() => {
                let mut held = prev.held.clone();
                held.extend(prev.parsed.object_refs());
                held
            }
            _ => BTreeSet::new(),
        };
        let mut errors: Vec<ConfigError> =
            parsed.documents.iter().flat_map(|d| d.errors()).collect();
        errors.extend(parsed.file_errors.iter().cloned());
        Self {
            hash,
            parsed,
            held,
            errors,
        }
    }

    /// Every object this file defines or holds on to: the objects a change of it can affect.
    pub fn refs(&self) -> BTreeSet<ObjectRef> {
        let mut refs = self.held.clone();
        refs.extend(self.parsed.object_refs());
        refs
    }
}

/// Resolves files (in the order given, which must be sorted by path) against the objects
/// applied so far.
pub(crate) fn resolve<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a FileState)>,
    applied: &BTreeMap<ObjectRef, Object>,
) -> Resolved {
    let mut r = Resolver {
        applied,
        claims: BTreeMap::new(),
        out: Resolved::default(),
    };
    for (path, file) in files {
        r.file(path, file);
    }
    r.out
}

struct Resolver<'a> {
    applied: &'a BTreeMap<ObjectRef, Object>,
    /// Who defined each object first: its location.
    claims: BTreeMap<ObjectRef, String>,
    out: Resolved,
}

// === impl Resolver ===

impl Resolver<'_> {
    fn file(&mut self, path: &str, file: &FileState) {
        for doc in &file.parsed.documents {
            self.out.errors.extend(doc.errors());
            let Some(object) = doc.outcome.object_ref() else {
                continue;
            };
            let location = doc.location.to_string();
            if let Some(first) = self.claims.get(&object) {
                let message = format!("duplicate: already defined at {first}");
                self.out.errors.push(ConfigError {
                    location,
                    object: Some(object),
                    error: FieldError::new(FieldPath::root(), message),
                });
                continue;
            }
            self.claims.insert(object.clone(), doc.location.describe());
            match &doc.outcome {
                Outcome::Valid(o) => {
                    self.out.objects.insert(object, o.clone());
                }
                _ => self.keep_last_good(object),
            }
        }
        self.out
            .errors
            .extend(file.parsed.file_errors.iter().cloned());
        for object in &file.held {
            if !self.claims.contains_key(object) {
                self.claims.insert(object.clone(), path.to_string());
                self.keep_last_good(object.clone());
            }
        }
    }

    /// An object whose definition is broken keeps the version applied before, if any.
    fn keep_last_good(&mut self, object: ObjectRef) {
        if let Some(last) = self.applied.get(&object) {
            self.out.objects.insert(object, last.clone());
        }
    }
}

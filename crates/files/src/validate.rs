//! `portolan validate`: reads files and directories given on the command line and reports
//! every error (location, object, field path) and how many objects were valid.

use crate::error::FilesError;
use crate::resolve::{FileState, resolve};
use crate::source::read_file;
use crate::walk;
use portolan_api::{FieldError, FieldPath};
use portolan_model::ConfigError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The outcome of validating some paths.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValidationReport {
    /// Valid objects (each counted once).
    pub objects: usize,
    /// Those objects, for a caller that wants to resolve references between them.
    pub valid: Vec<portolan_model::Object>,
    /// Every error, sorted by location.
    pub errors: Vec<ConfigError>,
}

/// Reads the given files and directories (recursively, as the watched directory is read).
/// A file named explicitly is read whatever its extension. Locations are the paths as given,
/// joined with the path inside a directory (`examples/bookinfo.yaml#0`). Fails when a
/// given path cannot be read.
pub fn validate_paths(paths: &[PathBuf]) -> Result<ValidationReport, FilesError> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| FilesError::read(path, e))?;
        if meta.is_dir() {
            let listing = walk::list(path).map_err(|e| FilesError::read(path, e))?;
            for (rel, full) in listing.files {
                files.push((display(&path.join(rel)), full));
            }
            errors.extend(
                listing
                    .unreadable
                    .into_iter()
                    .map(|(rel, why)| ConfigError {
                        location: display(&path.join(rel)),
                        object: None,
                        error: FieldError::new(
                            FieldPath::root(),
                            format!("cannot read directory: {why}"),
                        ),
                    }),
            );
        } else {
            files.push((display(path), path.clone()));
        }
    }
    let states: Vec<(String, FileState)> = files
        .into_iter()
        .filter_map(|(name, full)| {
            let state = read_file(&name, &full, None)?;
            Some((name, state))
        })
        .collect();
    Ok(report(states, errors))
}

/// Validates files given as (name, content) pairs, as [`validate_paths`] validates files on
/// disk: what `serve`'s `POST /debug/blast-radius` receives from `portolan validate --against`.
pub fn validate_documents(files: &[(String, String)]) -> ValidationReport {
    let states: Vec<(String, FileState)> = files
        .iter()
        .map(|(name, content)| {
            let parsed = crate::document::parse(name, content.as_bytes());
            (name.clone(), FileState::new(None, None, parsed))
        })
        .collect();
    report(states, Vec::new())
}

fn report(states: Vec<(String, FileState)>, mut errors: Vec<ConfigError>) -> ValidationReport {
    let resolved = resolve(
        states.iter().map(|(name, st)| (name.as_str(), st)),
        &BTreeMap::new(),
    );
    errors.extend(resolved.errors);
    errors.sort();
    ValidationReport {
        objects: resolved.objects.len(),
        valid: resolved.objects.into_values().collect(),
        errors,
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

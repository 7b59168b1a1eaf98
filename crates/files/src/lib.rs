//! Portolan's files source: a directory of Kubernetes manifests (YAML or JSON) read into the
//! model and watched for changes.
//!
//! [`FileSource::rescan`] reads the tree and returns its
//! [`Changes`](portolan_model::source::Changes) (objects to apply, objects to delete, the
//! complete list of errors); as a [`Source`](portolan_model::source::Source), a
//! [`FileSource`] does that on every change on disk and writes them to its sink;
//! [`validate_paths`] serves `portolan validate`. Invalid documents never remove objects: the
//! last good version of an object stays until its document is fixed or deleted.

#![forbid(unsafe_code)]

mod document;
mod error;
mod resolve;
mod source;
mod validate;
mod walk;
mod watch;

#[cfg(test)]
mod fixtures;

pub use error::FilesError;
pub use source::{DEFAULT_SETTLE, FileSource, REPORTER};
pub use validate::{ValidationReport, validate_documents, validate_paths};

//! [`BuildError`]: why a proxy group's snapshot is not built (the previous one stays).

use portolan_translate::scope::ScopeError;
use portolan_xds::SnapshotError;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BuildError {
    /// The group's scope has an entry that does not parse: its proxies are not served until
    /// they send a valid one.
    #[error("invalid proxy scope: {0}")]
    Scope(ScopeError),
    /// An `EnvoyPatchPolicy` that does not apply to the group (see [`crate::patch`]).
    #[error("{0}")]
    Patch(crate::patch::PatchError),
    #[error("inconsistent snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
}

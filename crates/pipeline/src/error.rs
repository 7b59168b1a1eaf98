//! [`BuildError`]: why a proxy group's snapshot is not built (the previous one stays);
//! [`PreviewError`]: why no snapshot of a group can be shown (`Pipeline::snapshot_for`).

use portolan_model::group::GroupKeyError;
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

/// Why [`crate::Pipeline::snapshot_for`] has no snapshot of a group.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// A name no grouping hook writes.
    #[error("not a proxy group: {0}")]
    Group(GroupKeyError),
    /// The group is not served (its scope is invalid, or its snapshot inconsistent).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The build task failed.
    #[error("snapshot build task failed: {0}")]
    Task(String),
}

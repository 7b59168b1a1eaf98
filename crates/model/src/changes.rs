//! What changed between World versions, as the [`crate::Index`] saw it: per version, either
//! "the endpoint groups of these Services" or "something else".
//!
//! A rebuild can ask a World which Services' endpoints are all that changed since an earlier
//! World of the same index ([`World::endpoint_changes_since`]), and translate only those
//! Services' ClusterLoadAssignments. Anything the log cannot vouch for answers `None` (rebuild
//! everything): another index, a World made or altered outside the index (a copy whose version
//! was bumped by hand, a test's World), a version older than the one asked from, a log that no
//! longer reaches back that far, or any change that is not an endpoint group's.

use crate::types::ServiceKey;
use crate::world::World;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Changes an index remembers (older ones are forgotten; a rebuild further behind than this
/// translates everything).
pub const LOG_LEN: usize = 1024;

/// The id of the next index (never 0: 0 is "no index").
static NEXT_INDEX: AtomicU64 = AtomicU64::new(1);

/// What one change of the index (one version) was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// An EndpointSlice or Endpoints object of these Services was applied or deleted
    /// (two Services when a group moved from one to another).
    Endpoints(Vec<ServiceKey>),
    /// Anything else: a Service, a route, a policy, an error report, ...
    Other,
}

/// Which World of which index: what a rebuild remembers of the World it built from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorldStamp {
    pub index: u64,
    pub version: u64,
}

/// The changes an index made before a World, newest last (`(version made, change)`).
#[derive(Clone, Debug, Default)]
pub struct ChangeLog {
    /// The index's id (0: not from an index).
    index: u64,
    /// The World version the log was taken at.
    version: u64,
    entries: Arc<[(u64, Arc<Change>)]>,
}

/// The index's side: the running log.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    index: u64,
    entries: VecDeque<(u64, Arc<Change>)>,
}

// === impl Recorder ===

impl Recorder {
    /// Records that `version` was made by `change`.
    pub(crate) fn record(&mut self, version: u64, change: Change) {
        if self.entries.len() == LOG_LEN {
            self.entries.pop_front();
        }
        self.entries.push_back((version, Arc::new(change)));
    }

    /// The log as of World `version`.
    pub(crate) fn log(&mut self, version: u64) -> ChangeLog {
        if self.index == 0 {
            self.index = NEXT_INDEX.fetch_add(1, Ordering::Relaxed);
        }
        ChangeLog {
            index: self.index,
            version,
            entries: self.entries.iter().cloned().collect(),
        }
    }
}

// === impl World ===

impl World {
    /// Which World this is (a stamp from a World made outside an index never matches).
    pub fn stamp(&self) -> WorldStamp {
        WorldStamp {
            index: self.changes.index,
            version: self.version,
        }
    }

    /// The Services whose endpoint groups changed between the World `since` and this one,
    /// when nothing else changed (empty: nothing changed); `None` when the log cannot tell
    /// (see the module doc).
    pub fn endpoint_changes_since(&self, since: WorldStamp) -> Option<BTreeSet<ServiceKey>> {
        let log = &self.changes;
        if log.index == 0
            || since.index != log.index
            || log.version != self.version
            || since.version > self.version
        {
            return None;
        }
        let mut services = BTreeSet::new();
        if since.version == self.version {
            return Some(services);
        }
        let first = log.entries.first().map(|(v, _)| *v)?;
        if first > since.version + 1 {
            return None;
        }
        for (version, change) in log.entries.iter() {
            if *version <= since.version || *version > self.version {
                continue;
            }
            match &**change {
                Change::Endpoints(keys) => services.extend(keys.iter().cloned()),
                Change::Other => return None,
            }
        }
        Some(services)
    }
}

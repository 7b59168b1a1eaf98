//! The build path under measurement: translated resources into a [`Snapshot`] (what
//! `portolan serve` does per proxy group), and the protobuf encode floor it is compared with.

use portolan_translate::Resources;
use portolan_xds::{ResourceType, Snapshot};
use prost::Message;

/// Encodes translated resources into a snapshot, exactly as `portolan serve` does per proxy
/// group: every resource encoded once, versioned by its bytes, the set checked for consistency.
pub use portolan_pipeline::snapshot;

/// Count and encoded bytes per resource type, in push order (CDS, EDS, LDS, RDS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TypeBytes {
    pub counts: [usize; 4],
    pub bytes: [usize; 4],
}

// === impl TypeBytes ===

impl TypeBytes {
    pub fn total_bytes(&self) -> usize {
        self.bytes.iter().sum()
    }

    pub fn total_count(&self) -> usize {
        self.counts.iter().sum()
    }

    fn add(&mut self, slot: usize, encoded: &[u8]) {
        self.counts[slot] += 1;
        self.bytes[slot] += encoded.len();
    }
}

/// The encode floor: `encode_to_vec` of every resource, nothing else. Returns what it encoded.
pub fn encode_all(resources: &Resources) -> TypeBytes {
    let mut out = TypeBytes::default();
    for c in &resources.clusters {
        out.add(0, &c.encode_to_vec());
    }
    for e in &resources.load_assignments {
        out.add(1, &e.encode_to_vec());
    }
    for l in &resources.listeners {
        out.add(2, &l.encode_to_vec());
    }
    for r in &resources.routes {
        out.add(3, &r.encode_to_vec());
    }
    out
}

/// How many resources of each type differ (by content version, or by presence) between two
/// snapshots.
pub fn changed_versions(before: &Snapshot, after: &Snapshot) -> [usize; 4] {
    ResourceType::ALL.map(|ty| {
        let (old, new) = (before.resources(ty), after.resources(ty));
        let changed = new
            .iter()
            .filter(|(name, r)| old.get(*name).map(|o| o.version()) != Some(r.version()))
            .count();
        let removed = old.keys().filter(|name| !new.contains_key(*name)).count();
        changed + removed
    })
}

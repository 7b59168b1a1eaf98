//! One entry point for fuzzers (`fuzz/`, cargo-fuzz) and for tests: the bytes of a manifest
//! file through everything `portolan serve` does with them — YAML documents, decode, validate,
//! convert, index, translate for a mesh group and a gateway group (formed as `serve` forms them), snapshot consistency, JSON
//! rendering. Whatever the input, it must not panic.

use crate::{groups, snapshot};
use portolan_api::Resource;
use portolan_model::{Index, convert};
use portolan_translate::Options;

/// The proxy groups translated for: the mesh, and a group gateways may select.
const GROUPS: &[&str] = &["default", "ingress;zone=zone-a;l.tier=edge"];

/// Runs a manifest file's bytes through the whole build path. Returns how many documents
/// were accepted (for tests; fuzzers ignore it).
pub fn manifest_bytes(data: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0;
    };
    let Ok(docs) = serde_saphyr::from_str_multiple::<serde_json::Value, Vec<_>>(text) else {
        return 0;
    };
    let mut index = Index::new();
    let mut accepted = 0;
    for doc in docs {
        let Ok(Some(resource)) = Resource::decode(doc) else {
            continue;
        };
        if portolan_api::validate::validate(&resource).is_empty() {
            index.apply(convert::to_object(&resource));
            accepted += 1;
        }
    }
    let world = index.world();
    let options = Options::default();
    for group in GROUPS
        .iter()
        .filter_map(|g| groups::group_for_name(g, &world).ok())
    {
        let resources = portolan_translate::translate(&world, &group, &options);
        let _ = snapshot(&resources, None);
        let _ = portolan_translate::json::resources_to_json(&resources);
    }
    accepted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz target's seed corpus is the shipped examples: each goes through whole.
    #[test]
    fn the_examples_go_through() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut files = 0;
        for dir in ["bookinfo", "routing"] {
            for entry in std::fs::read_dir(root.join(dir)).expect("examples dir") {
                let path = entry.expect("entry").path();
                let bytes = std::fs::read(&path).expect("readable");
                assert!(
                    manifest_bytes(&bytes) > 0,
                    "{} accepted nothing",
                    path.display()
                );
                files += 1;
            }
        }
        assert!(files > 10, "{files} example files");
    }

    #[test]
    fn garbage_goes_through() {
        for input in [
            &b"\xff\xfe"[..],
            b"---\n---\n",
            b"kind: [",
            b"apiVersion: v1\nkind: Service\n",
            b"{}",
        ] {
            assert_eq!(manifest_bytes(input), 0);
        }
    }
}

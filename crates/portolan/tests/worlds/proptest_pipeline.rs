//! Property tests of the whole path a manifest takes in `portolan serve`: decode, validate,
//! convert, index, translate, snapshot. Any document (mutated manifests with wrong types,
//! missing fields, huge numbers, unicode, deep nesting) goes through without a panic; a valid
//! generated world translates into a snapshot that passes the consistency check, and every
//! resource renders to Envoy JSON.

use crate::support::{GROUPS, any_json, build, mutation, translate, valid_world};
use portolan_pipeline::snapshot;
use proptest::prelude::*;
use serde_json::Value;

/// Runs every step; panics are what this test looks for.
fn translate_everything(docs: &[Value]) {
    let built = build(docs);
    for group in GROUPS {
        let resources = translate(&built.world, group);
        let _ = snapshot(&resources, None);
        let _ = portolan_translate::json::resources_to_json(&resources);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn mutated_manifests_never_panic(
        world in valid_world(),
        mutations in proptest::collection::vec((any::<usize>(), mutation()), 1..6),
    ) {
        let mut docs = world;
        for (which, m) in &mutations {
            let n = docs.len();
            m.apply(&mut docs[which % n]);
        }
        translate_everything(&docs);
    }

    #[test]
    fn arbitrary_documents_never_panic(
        docs in proptest::collection::vec(any_json(), 0..6),
        kind in proptest::sample::select(&[
            ("v1", "Service"), ("discovery.k8s.io/v1", "EndpointSlice"), ("v1", "Endpoints"),
            ("portolan.dev/v1alpha1", "TrafficRoute"), ("portolan.dev/v1alpha1", "TrafficPolicy"),
            ("portolan.dev/v1alpha1", "Gateway"), ("portolan.dev/v1alpha1", "ExternalService"),
            ("portolan.dev/v1alpha1", "ProxyScope"), ("v1", "Secret"),
        ][..]),
        spec in any_json(),
    ) {
        // Random values, and random values wearing a real kind's apiVersion and kind.
        let mut all = docs;
        all.push(serde_json::json!({
            "apiVersion": kind.0, "kind": kind.1, "type": "kubernetes.io/tls",
            "metadata": {"name": "x", "namespace": "default"},
            "spec": spec.clone(), "endpoints": spec.clone(), "subsets": spec.clone(),
            "data": spec, "addressType": "IPv4",
        }));
        translate_everything(&all);
    }

    #[test]
    fn valid_worlds_make_consistent_snapshots_that_render(world in valid_world()) {
        let built = build(&world);
        prop_assert!(built.rejected.is_empty(), "generated world rejected: {:?}", built.rejected);
        for group in GROUPS {
            let resources = translate(&built.world, group);
            prop_assert!(!resources.clusters.is_empty());
            let snap = snapshot(&resources, None);
            prop_assert!(snap.is_ok(), "{group}: {:?}", snap.err());
            let json = portolan_translate::json::resources_to_json(&resources);
            prop_assert!(json.is_ok(), "{group}: {:?}", json.err());
        }
    }
}

//! Property tests of the files source on arbitrary input: any bytes in a manifest file, and
//! YAML that looks almost like a manifest, never panic a scan; every rejected document is
//! reported with its location (`file#doc`).

use portolan_files::FileSource;
use proptest::prelude::*;

/// Fragments of real manifests, so random mixes get past the YAML parser often.
const FRAGMENTS: &[&str] = &[
    "apiVersion: v1\n",
    "apiVersion: discovery.k8s.io/v1\n",
    "apiVersion: portolan.dev/v1alpha1\n",
    "kind: Service\n",
    "kind: EndpointSlice\n",
    "kind: TrafficRoute\n",
    "kind: List\n",
    "metadata:\n  name: web\n",
    "metadata: {name: x, namespace: \"\"}\n",
    "spec:\n  ports:\n  - port: 80\n",
    "spec: {ports: [{port: 99999999999999999999}]}\n",
    "endpoints:\n- addresses: [\"10.0.0.1\"]\n",
    "items:\n- kind: Service\n",
    "---\n",
    "- - - [\n",
    "{\"a\": [1, 2, {\"b\": null}]}\n",
    "&anchor x\n*anchor\n",
    "key: !!binary aGVsbG8=\n",
    "\u{feff}\u{0}\u{7f}\n",
    "日本語: ✓\n",
    "    indented: wrong\n",
    "\t tab: x\n",
];

fn scan(name: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    std::fs::write(dir.path().join(name), bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let changes = FileSource::new(dir.path())
        .rescan()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    for e in &changes.errors {
        prop_assert!(
            e.location.starts_with(name),
            "error without its file: {e:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_scan_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        scan("random.yaml", &bytes)?;
    }

    #[test]
    fn any_bytes_as_json_scan_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        scan("random.json", &bytes)?;
    }

    #[test]
    fn manifest_like_text_scans_without_panic(
        parts in proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..24),
        noise in "\\PC{0,40}",
    ) {
        let mut text: String = parts.concat();
        text.push_str(&noise);
        scan("mixed.yaml", text.as_bytes())?;
    }
}

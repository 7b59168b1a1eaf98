//! The CRDs: structural schemas, YAML that round-trips, and `crds/` kept up to date.

use portolan_api::crds;
use portolan_api::k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use std::path::PathBuf;

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crds")
}

/// The only fields kept as written (any JSON): an EnvoyPatchPolicy's merge patches and
/// operation values, which are Envoy's JSON, checked when applied.
const FREE_FORM: &[&str] = &[
    "envoypatchpolicies.portolan.dev/v1alpha1.spec.patches[].merge",
    "envoypatchpolicies.portolan.dev/v1alpha1.spec.patches[].operations[].value",
];

/// Every node has a type, and nothing is left untyped or preserved unknown (but
/// [`FREE_FORM`], which Kubernetes allows without a type).
fn assert_structural(path: &str, s: &JSONSchemaProps) {
    if FREE_FORM.contains(&path) {
        assert_eq!(s.x_kubernetes_preserve_unknown_fields, Some(true), "{path}");
        return;
    }
    assert!(s.type_.is_some(), "{path}: no type");
    assert!(
        s.any_of.is_none() && s.one_of.is_none() && s.all_of.is_none() && s.not.is_none(),
        "{path}: anyOf/oneOf/allOf/not"
    );
    assert!(
        s.x_kubernetes_preserve_unknown_fields.is_none(),
        "{path}: preserves unknown fields"
    );
    for (name, p) in s.properties.iter().flatten() {
        assert_structural(&format!("{path}.{name}"), p);
    }
    if let Some(items) = &s.items {
        let json = serde_json::to_value(items).expect("serializes");
        let items: JSONSchemaProps = serde_json::from_value(json).expect("one schema");
        assert_structural(&format!("{path}[]"), &items);
    }
}

#[test]
fn schemas_are_structural() {
    for crd in crds::all() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        for v in &crd.spec.versions {
            let schema = v
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("has a schema");
            assert_structural(&format!("{name}/{}", v.name), schema);
            assert!(
                v.subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some()
            );
        }
        assert_eq!(crd.spec.group, "portolan.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
    }
}

#[test]
fn yaml_round_trips() {
    for crd in crds::all() {
        let yaml = crds::to_yaml(&crd).expect("renders");
        let back: CustomResourceDefinition = serde_saphyr::from_str(&yaml).expect("parses back");
        assert_eq!(back, crd);
    }
    let all = crds::all_yaml().expect("renders");
    assert_eq!(
        all.matches("kind: CustomResourceDefinition").count(),
        crds::all().len()
    );
}

#[test]
fn crds_dir_is_up_to_date() {
    let dir = crds_dir();
    for (name, want) in crds::files().expect("renders") {
        let path = dir.join(&name);
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "crds/ is out of date ({name} differs): run `cargo run -p portolan -- crds --out crds/`"
        );
    }
}

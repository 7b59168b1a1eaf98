//! `validate_paths`: files and directories given on the command line, and the shipped examples.

use portolan_files::{FilesError, validate_paths};
use std::path::{Path, PathBuf};

const GOOD: &str =
    "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n";
const BAD: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {ports: [{port: 80, protocol: HTTP}]}\n";

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

#[test]
fn validates_a_single_file_with_location_object_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("svc.yaml");
    write(&file, &format!("{GOOD}---\n{BAD}"));
    let report = validate_paths(std::slice::from_ref(&file)).expect("readable");
    assert_eq!(report.objects, 1);
    assert_eq!(report.errors.len(), 1);
    let e = &report.errors[0];
    assert_eq!(e.location, format!("{}#1", file.display()));
    assert_eq!(
        e.object.as_ref().map(ToString::to_string).as_deref(),
        Some("Service default/b")
    );
    assert_eq!(e.error.path.as_str(), "spec.ports[0].protocol");
}

#[test]
fn validates_a_directory_recursively_including_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("a.yaml"), GOOD);
    write(&dir.path().join("nested/b.yaml"), BAD);
    write(
        &dir.path().join("nested/c.json"),
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"ports":[{"port":81}]}}"#,
    );
    write(&dir.path().join(".hidden/d.yaml"), "not: [valid");
    let report = validate_paths(&[dir.path().to_path_buf()]).expect("readable");
    assert_eq!(report.objects, 1);
    let rendered: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    let root = dir.path().display();
    assert_eq!(
        rendered,
        [
            format!(
                "{root}/nested/b.yaml#0: Service default/b: spec.ports[0].protocol: \"HTTP\" is not one of TCP, UDP, SCTP"
            ),
            format!(
                "{root}/nested/c.json#0: Service default/a: <root>: duplicate: already defined at {root}/a.yaml#0"
            ),
        ]
    );
}

#[test]
fn a_missing_path_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = validate_paths(&[dir.path().join("missing.yaml")]).expect_err("missing");
    assert!(matches!(err, FilesError::Read { .. }));
}

#[test]
fn the_shipped_examples_load_without_errors() {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/bookinfo");
    let report = validate_paths(&[examples]).expect("examples/bookinfo is readable");
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    assert!(
        report.objects >= 6,
        "bookinfo: 3 Services and 3 EndpointSlices, got {}",
        report.objects
    );
}

//! Tests of document parsing: multi-document YAML, JSON, lists, indices and syntax errors.

use super::*;
use crate::fixtures::*;
use portolan_api::Kind;

fn refs(parsed: &ParsedFile) -> Vec<String> {
    parsed.object_refs().map(|r| r.to_string()).collect()
}

fn errors(parsed: &ParsedFile) -> Vec<String> {
    let docs = parsed.documents.iter().flat_map(Document::errors);
    parsed
        .file_errors
        .iter()
        .cloned()
        .chain(docs)
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn multi_document_yaml_skips_unknown_kinds() {
    let text = stream(&[
        service("reviews", 9080),
        deployment("reviews-v1"),
        slice("reviews-1", "reviews", "10.0.0.1"),
    ]);
    let parsed = parse("a.yaml", text.as_bytes());
    assert_eq!(
        refs(&parsed),
        ["Service default/reviews", "EndpointSlice default/reviews-1"]
    );
    let docs: Vec<_> = parsed
        .documents
        .iter()
        .map(|d| d.location.to_string())
        .collect();
    assert_eq!(docs, ["a.yaml#0", "a.yaml#2"]);
    assert!(errors(&parsed).is_empty());
}

#[test]
fn document_indices_count_empty_documents_but_not_a_leading_comment() {
    let text = format!(
        "# license header\n---\n{}---\n---\n# only a comment\n---\n{}",
        service("a", 80),
        service("b", 80)
    );
    let parsed = parse("x.yaml", text.as_bytes());
    let docs: Vec<_> = parsed
        .documents
        .iter()
        .map(|d| d.location.to_string())
        .collect();
    assert_eq!(docs, ["x.yaml#0", "x.yaml#3"]);
}

#[test]
fn a_leading_marker_is_not_an_extra_document() {
    let text = format!("---\n{}", service("a", 80));
    let parsed = parse("x.yml", text.as_bytes());
    assert_eq!(parsed.documents[0].location.to_string(), "x.yml#0");
}

#[test]
fn json_object_and_list_items() {
    let json = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}, "spec": {"ports": [{"port": 0}]}}
    ]}"#;
    let parsed = parse("l.json", json.as_bytes());
    assert_eq!(refs(&parsed), ["Service default/a", "Service default/b"]);
    assert_eq!(
        errors(&parsed),
        [
            "l.json#0: Service default/b: items[1].spec.ports[0].port: 0 is not a port: must be 1-65535"
        ]
    );
    assert!(matches!(parsed.documents[0].outcome, Outcome::Valid(_)));
}

#[test]
fn typed_lists_fill_in_kind_of_items() {
    let yaml = "apiVersion: v1\nkind: ServiceList\nitems:\n- metadata: {name: a}\n  spec: {ports: [{port: 80}]}\n";
    let parsed = parse("l.yaml", yaml.as_bytes());
    assert_eq!(refs(&parsed), ["Service default/a"]);
    assert!(errors(&parsed).is_empty(), "{:?}", errors(&parsed));
}

#[test]
fn invalid_document_names_object_and_field() {
    let bad = service("reviews", 9080).replace("port: 9080", "port: nine");
    let text = stream(&[service("ratings", 9080), bad]);
    let parsed = parse("mesh/r.yaml", text.as_bytes());
    let Outcome::Invalid(invalid) = &parsed.documents[1].outcome else {
        panic!(
            "second document should be invalid: {:?}",
            parsed.documents[1]
        );
    };
    assert_eq!(
        invalid.object,
        ObjectRef::new(Kind::Service, "default", "reviews")
    );
    let errs = parsed.documents[1].errors();
    assert_eq!(errs[0].location, "mesh/r.yaml#1");
    assert_eq!(errs[0].error.path.as_str(), "spec.ports[0].port");
    assert!(matches!(parsed.documents[0].outcome, Outcome::Valid(_)));
}

#[test]
fn unidentifiable_documents_are_errors_without_object() {
    let parsed = parse(
        "u.yaml",
        b"apiVersion: v1\nkind: Service\nmetadata: {}\n---\n- 1\n",
    );
    assert_eq!(
        errors(&parsed),
        [
            "u.yaml#0: metadata.name: required field is missing or not a string",
            "u.yaml#1: <root>: document is not a mapping",
        ]
    );
    assert!(!parsed.is_broken());
}

#[test]
fn yaml_syntax_error_has_the_line_in_the_file() {
    let text = format!(
        "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: [x\n",
        service("a", 80)
    );
    let parsed = parse("s.yaml", text.as_bytes());
    assert!(parsed.is_broken());
    let e = &parsed.file_errors[0];
    assert_eq!(e.location, "s.yaml#1");
    assert!(e.error.path.is_root());
    assert!(
        e.error.message == "YAML syntax error: unclosed bracket '[' at line 13, column 18",
        "{}",
        e.error.message
    );
    // the document before the broken one still parses
    assert_eq!(refs(&parsed), ["Service default/a"]);
}

#[test]
fn json_syntax_error_has_line_and_column() {
    let parsed = parse("j.json", b"{\"apiVersion\": \"v1\",\n \"kind\": }");
    assert!(parsed.is_broken());
    let msg = &parsed.file_errors[0].error.message;
    assert!(msg.contains("line 2 column"), "{msg}");
}

#[test]
fn non_utf8_is_a_file_error() {
    let parsed = parse("b.yaml", &[0xff, 0xfe, 0x00]);
    assert!(parsed.is_broken());
}

#[test]
fn splits_only_at_column_zero_markers() {
    let pieces = split_documents("a: 1\n--- \nb: |\n  ---\n---\n");
    let texts: Vec<_> = pieces
        .iter()
        .map(|p| (p.text, p.first_line, p.leading))
        .collect();
    assert_eq!(
        texts,
        [
            ("a: 1\n", 0, true),
            ("--- \nb: |\n  ---\n", 1, false),
            ("---\n", 4, false)
        ]
    );
}

#[test]
fn an_outcome_is_as_small_as_a_valid_object() {
    // Every document of every file keeps one until the file changes.
    assert!(std::mem::size_of::<Outcome>() <= std::mem::size_of::<Object>());
}

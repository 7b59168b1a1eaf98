//! The example manifests under `examples/` are valid (`portolan validate` finds every object
//! and no error), and docs/crds.md shows each routing, security, scoping and policy example exactly
//! as it is on disk.

use crate::bin;
use portolan_e2e::manifests::examples_dir;
use portolan_e2e::workspace_root;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every `.yaml` file under `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// YAML documents in a file that hold an object (not only comments).
fn documents(text: &str) -> usize {
    text.split("\n---")
        .filter(|doc| {
            doc.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .count()
}

#[test]
fn every_example_is_valid() {
    let files = yaml_files(&examples_dir().join("routing"));
    assert!(files.len() >= 12, "routing examples: {files:?}");
    let mut expected = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("example readable");
        let docs = documents(&text);
        expected += docs;
        let out = Command::new(bin())
            .arg("validate")
            .arg(file)
            .output()
            .expect("portolan validate runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {stdout}{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("{docs} objects valid, 0 errors")),
            "{}: every document is read as an object: {stdout}",
            file.display()
        );
    }
    // All of them together: no duplicate objects, no conflicts that are errors.
    let out = Command::new(bin())
        .arg("validate")
        .arg(examples_dir().join("routing"))
        .output()
        .expect("portolan validate runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("{expected} objects valid, 0 errors")),
        "{stdout}"
    );
    // Every reference resolves among the examples, except the gateway's Secret (it holds a
    // private key, so the docs show how to create it instead of shipping one).
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stdout}");
    assert!(
        warnings[0].contains("SecretNotFound") && warnings[0].contains("www-example-com-tls"),
        "{stdout}"
    );
}

#[test]
fn the_crd_reference_shows_every_routing_example_verbatim() {
    let page = "docs/crds.md";
    let doc = std::fs::read_to_string(workspace_root().join(page)).expect("the page is readable");
    for file in yaml_files(&examples_dir().join("routing")) {
        let name = file
            .strip_prefix(workspace_root())
            .expect("under the workspace")
            .display()
            .to_string();
        let text = std::fs::read_to_string(&file).expect("example readable");
        let block = format!("```yaml\n# {name}\n{text}```");
        assert!(
            doc.contains(&block),
            "{page} must show {name} verbatim in a ```yaml block whose first line is `# {name}`"
        );
    }
}

#[test]
fn every_security_example_is_valid_and_shown_verbatim() {
    valid_and_shown_verbatim("security", 5);
}

#[test]
fn every_scoping_example_is_valid_and_shown_verbatim() {
    valid_and_shown_verbatim("scoping", 1);
}

#[test]
fn every_policy_example_is_valid_and_shown_verbatim() {
    valid_and_shown_verbatim("policies", 1);
}

#[test]
fn every_edge_policy_example_is_valid_and_shown_verbatim() {
    valid_and_shown_verbatim("edge", 4);
}

/// `portolan validate` passes every file of `examples/{dir}` (at least `min` files), and
/// docs/crds.md shows each verbatim.
fn valid_and_shown_verbatim(dir: &str, min: usize) {
    valid_and_shown_verbatim_in(dir, min, "docs/crds.md");
}

/// The Gateway API example is valid and docs/gateway-api.md shows it verbatim.
#[test]
fn every_gateway_api_example_is_valid_and_shown_verbatim() {
    valid_and_shown_verbatim_in("gateway-api", 1, "docs/gateway-api.md");
}

/// `portolan validate` passes every file of `examples/{dir}` (at least `min` files), and the
/// page `doc` shows each verbatim.
fn valid_and_shown_verbatim_in(dir: &str, min: usize, doc: &str) {
    let dir = examples_dir().join(dir);
    let files = yaml_files(&dir);
    assert!(files.len() >= min, "{} examples: {files:?}", dir.display());
    let expected: usize = files
        .iter()
        .map(|f| documents(&std::fs::read_to_string(f).expect("example readable")))
        .sum();
    let out = Command::new(bin())
        .arg("validate")
        .arg(&dir)
        .output()
        .expect("portolan validate runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("{expected} objects valid, 0 errors, 0 warnings")),
        "{stdout}"
    );
    let page = doc;
    let doc = std::fs::read_to_string(workspace_root().join(page)).expect("the page is readable");
    for file in files {
        let name = file
            .strip_prefix(workspace_root())
            .expect("under the workspace")
            .display()
            .to_string();
        let text = std::fs::read_to_string(&file).expect("example readable");
        assert!(
            doc.contains(&format!("```yaml\n# {name}\n{text}```")),
            "{page} must show {name} verbatim in a ```yaml block whose first line is `# {name}`"
        );
    }
}

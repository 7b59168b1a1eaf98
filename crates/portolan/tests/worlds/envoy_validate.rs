//! Envoy's own check of what Portolan translates: the resources for the examples (bookinfo,
//! the JWT gateway policy example, and every routing example with the TLS Secret its gateway
//! names) and for generated valid
//! worlds are put into a static bootstrap (EDS and RDS inlined) and `envoy --mode validate`
//! must accept it. This catches any field Envoy rejects that our own checks let through.

use crate::support::{
    GROUPS, build, envoy_validate, resources_json, static_bootstrap, translate, valid_world,
};
use portolan_e2e::manifests::examples_dir;
use portolan_e2e::tls::TestCa;
use portolan_files::FileSource;
use portolan_model::Index;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use std::path::Path;

/// Reads a directory as `portolan serve` does and validates what each group would get.
fn validate_dir(dir: &Path, what: &str) {
    let changes = FileSource::new(dir).rescan().expect("directory readable");
    assert!(changes.errors.is_empty(), "{what}: {:?}", changes.errors);
    let mut index = Index::new();
    changes.apply_to(portolan_files::REPORTER, &mut index);
    let world = index.world();
    for group in GROUPS {
        let resources = translate(&world, group);
        let json = resources_json(&resources);
        let bootstrap = static_bootstrap(&json, group).unwrap_or_else(|e| panic!("{what}: {e}"));
        envoy_validate(&bootstrap, &format!("{what} (group {group})"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The TLS origination example holds a placeholder where the user puts a CA bundle; put a
/// real one there, as a user would. (Validation does not parse the PEM: a placeholder left in
/// would be NACKed by Envoy.)
fn with_real_ca(text: &str, ca_pem: &str) -> String {
    const PLACEHOLDER: &str = "(the CA certificate that signed the server's certificate)";
    let Some(at) = text.find(PLACEHOLDER) else {
        return text.to_string();
    };
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let indent = &text[line_start..at];
    let begin = text[..line_start].rfind("-----BEGIN").unwrap_or(line_start);
    let end_marker = "-----END CERTIFICATE-----";
    let end = text[at..]
        .find(end_marker)
        .map_or(at, |i| at + i + end_marker.len());
    let pem: Vec<&str> = ca_pem.trim().lines().collect();
    format!(
        "{}{}{}",
        &text[..begin],
        pem.join(&format!("\n{indent}")),
        &text[end..]
    )
}

#[test]
fn envoy_accepts_every_example() {
    let ca = TestCa::new().expect("test CA");
    let secret = ca
        .issue(&["www.example.com", "*.example.com"])
        .expect("server certificate")
        .secret_yaml("default", "www-example-com-tls");
    let mut files: Vec<_> = std::fs::read_dir(examples_dir().join("routing"))
        .expect("examples/routing")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.push(examples_dir().join("bookinfo/bookinfo.yaml"));
    files.push(examples_dir().join("policies/jwt-gateway.yaml"));
    files.sort();
    assert!(files.len() >= 13, "{files:?}");
    // One directory per example: the routing examples define some Services more than once.
    for file in &files {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = std::fs::read_to_string(file).expect("example readable");
        let text = with_real_ca(&text, &ca.cert_pem());
        std::fs::write(dir.path().join("example.yaml"), text).expect("write");
        std::fs::write(dir.path().join("secret.yaml"), &secret).expect("write");
        validate_dir(dir.path(), &file.display().to_string());
    }
}

#[test]
fn envoy_accepts_generated_worlds() {
    let mut runner = TestRunner::deterministic();
    for n in 0..12 {
        let world = valid_world()
            .new_tree(&mut runner)
            .expect("a generated world")
            .current();
        let built = build(&world);
        assert!(built.rejected.is_empty(), "{:?}", built.rejected);
        for group in GROUPS {
            let resources = translate(&built.world, group);
            let json = resources_json(&resources);
            let bootstrap = static_bootstrap(&json, group).unwrap_or_else(|e| panic!("{e}"));
            envoy_validate(&bootstrap, &format!("generated world {n}"))
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

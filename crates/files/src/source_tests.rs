//! Tests of the files source across scans: last good versions, duplicates, deletes, renames.

use super::*;
use crate::fixtures::*;
use portolan_api::Kind;
use portolan_model::Index;

fn svc_ref(name: &str) -> ObjectRef {
    ObjectRef::new(Kind::Service, "default", name)
}

fn applied(c: &Changes) -> Vec<String> {
    c.apply.iter().map(|o| o.object_ref().to_string()).collect()
}

fn deleted(c: &Changes) -> Vec<String> {
    c.delete.iter().map(ToString::to_string).collect()
}

fn errors(c: &Changes) -> Vec<String> {
    c.errors.iter().map(ToString::to_string).collect()
}

fn port_of(c: &Changes, name: &str) -> Option<u16> {
    c.apply.iter().find_map(|o| match o {
        Object::Service(s) if s.key.name == name => Some(s.ports[0].port),
        _ => None,
    })
}

fn rescan(src: &mut FileSource) -> Changes {
    src.rescan().expect("directory is readable")
}

#[test]
fn first_scan_reads_multi_document_yaml_json_and_lists() {
    let d = TestDir::new();
    d.write(
        "reviews.yaml",
        &stream(&[
            service("reviews", 9080),
            slice("reviews-1", "reviews", "10.0.0.1"),
            deployment("reviews-v1"),
        ]),
    );
    d.write(
        "ratings.json",
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ratings"},
            "spec": {"ports": [{"port": 9080}]}}"#,
    );
    d.write(
        "list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: details}\n  spec: {ports: [{port: 9080}]}\n",
    );
    let c = rescan(&mut d.source());
    assert_eq!(
        applied(&c),
        [
            "Service default/details",
            "Service default/ratings",
            "Service default/reviews",
            "EndpointSlice default/reviews-1",
        ]
    );
    assert!(c.delete.is_empty());
    assert!(c.errors.is_empty(), "{:?}", errors(&c));
}

#[test]
fn a_bad_document_is_reported_and_the_others_still_apply() {
    let d = TestDir::new();
    let bad = service("reviews", 9080).replace("port: 9080", "port: nine");
    d.write(
        "mesh/bookinfo.yaml",
        &stream(&[service("ratings", 9080), bad]),
    );
    let c = rescan(&mut d.source());
    assert_eq!(applied(&c), ["Service default/ratings"]);
    assert_eq!(c.errors.len(), 1);
    let e = &c.errors[0];
    assert_eq!(e.location, "mesh/bookinfo.yaml#1");
    assert_eq!(e.object, Some(svc_ref("reviews")));
    assert_eq!(e.error.path.as_str(), "spec.ports[0].port");
}

#[test]
fn the_last_good_version_stays_until_fixed() {
    let d = TestDir::new();
    let mut src = d.source();
    d.write("reviews.yaml", &service("reviews", 9080));
    assert_eq!(applied(&rescan(&mut src)), ["Service default/reviews"]);

    d.write("reviews.yaml", &service("reviews", 0));
    let c = rescan(&mut src);
    assert!(c.is_empty(), "nothing applied or deleted: {c:?}");
    assert_eq!(
        errors(&c),
        [
            "reviews.yaml#0: Service default/reviews: spec.ports[0].port: 0 is not a port: must be 1-65535"
        ]
    );

    d.write("reviews.yaml", &service("reviews", 9081));
    let c = rescan(&mut src);
    assert_eq!(port_of(&c, "reviews"), Some(9081));
    assert!(c.delete.is_empty() && c.errors.is_empty());
}

#[test]
fn an_object_never_valid_is_absent() {
    let d = TestDir::new();
    d.write("a.yaml", &service("a", 70000));
    let c = rescan(&mut d.source());
    assert!(c.apply.is_empty() && c.delete.is_empty());
    assert_eq!(c.errors[0].object, Some(svc_ref("a")));
}

#[test]
fn a_yaml_syntax_error_keeps_the_files_objects() {
    let d = TestDir::new();
    let mut src = d.source();
    let good = stream(&[service("a", 80), slice("a-1", "a", "10.0.0.1")]);
    d.write("a.yaml", &good);
    assert_eq!(rescan(&mut src).apply.len(), 2);

    d.write(
        "a.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: [unclosed\n",
    );
    let c = rescan(&mut src);
    assert!(c.is_empty(), "objects stay: {c:?}");
    assert_eq!(c.errors.len(), 1);
    assert_eq!(c.errors[0].location, "a.yaml#0");
    assert!(
        c.errors[0].error.message.contains("line 3"),
        "{}",
        c.errors[0]
    );

    // still broken, differently: still kept
    d.write("a.yaml", "kind: [\n");
    assert!(rescan(&mut src).is_empty());

    d.write("a.yaml", &good);
    let c = rescan(&mut src);
    assert!(
        c.is_empty() && c.errors.is_empty(),
        "back to the same objects: {c:?}"
    );
}

#[test]
fn the_first_definition_wins_and_the_duplicate_is_an_error() {
    let d = TestDir::new();
    let mut src = d.source();
    d.write("a.yaml", &service("x", 80));
    d.write(
        "b/x.yaml",
        &stream(&[service("other", 80), service("x", 81)]),
    );
    let c = rescan(&mut src);
    assert_eq!(port_of(&c, "x"), Some(80));
    assert_eq!(
        errors(&c),
        ["b/x.yaml#1: Service default/x: <root>: duplicate: already defined at a.yaml#0"]
    );

    d.remove("a.yaml");
    let c = rescan(&mut src);
    assert_eq!(port_of(&c, "x"), Some(81));
    assert!(c.delete.is_empty() && c.errors.is_empty(), "{c:?}");
}

#[test]
fn deleting_a_file_deletes_its_objects_unless_defined_elsewhere() {
    let d = TestDir::new();
    let mut src = d.source();
    d.write(
        "a.yaml",
        &stream(&[service("a", 80), service("shared", 80)]),
    );
    d.write("b.yaml", &service("shared", 80));
    let c = rescan(&mut src);
    assert_eq!(c.apply.len(), 2);
    assert_eq!(c.errors.len(), 1, "b's shared is a duplicate");

    d.remove("a.yaml");
    let c = rescan(&mut src);
    assert_eq!(deleted(&c), ["Service default/a"]);
    assert!(c.apply.is_empty(), "shared is unchanged: {c:?}");
    assert!(c.errors.is_empty());
}

#[test]
fn renaming_a_file_changes_nothing() {
    let d = TestDir::new();
    let mut src = d.source();
    d.write(
        "a.yaml",
        &stream(&[service("a", 80), slice("a-1", "a", "10.0.0.1")]),
    );
    rescan(&mut src);
    std::fs::create_dir(d.path("moved")).expect("mkdir");
    d.rename("a.yaml", "moved/z.yml");
    assert_eq!(rescan(&mut src), Changes::default());
}

#[test]
fn a_touch_that_changes_nothing_is_empty_and_keeps_the_errors() {
    let d = TestDir::new();
    let mut src = d.source();
    d.write("a.yaml", &stream(&[service("a", 80), service("b", 0)]));
    let first = rescan(&mut src);
    // same objects, other bytes: parsed again, nothing to send
    d.write(
        "a.yaml",
        &format!("# edited\n{}", stream(&[service("a", 80), service("b", 0)])),
    );
    let c = rescan(&mut src);
    assert!(c.is_empty());
    assert_eq!(c.errors, first.errors);
}

#[test]
fn unchanged_content_is_not_parsed_again() {
    let d = TestDir::new();
    d.write("a.yaml", &service("a", 80));
    let first = read_file("a.yaml", &d.path("a.yaml"), None).expect("exists");
    // A previous state with the same hash is reused as it is, even if its parse differs.
    let sentinel = FileState {
        parsed: ParsedFile::unreadable("sentinel", "not parsed again"),
        ..first.clone()
    };
    let again = read_file("a.yaml", &d.path("a.yaml"), Some(sentinel)).expect("exists");
    assert_eq!(again.parsed.file_errors[0].location, "sentinel");
    d.write("a.yaml", &service("a", 81));
    let changed = read_file("a.yaml", &d.path("a.yaml"), Some(first)).expect("exists");
    assert!(!changed.parsed.is_broken());
}

#[test]
fn nested_directories_are_read_and_hidden_files_ignored() {
    let d = TestDir::new();
    d.write("mesh/deep/a.yaml", &service("a", 80));
    d.write(".hidden/b.yaml", &service("b", 80));
    d.write(".c.yaml", &service("c", 80));
    d.write("d.yaml~", &service("d", 80));
    d.write("e.yaml.swp", &service("e", 80));
    d.write("notes.txt", "not yaml: [");
    let c = rescan(&mut d.source());
    assert_eq!(applied(&c), ["Service default/a"]);
    assert!(c.errors.is_empty());
}

#[test]
fn an_unreadable_directory_changes_nothing() {
    let d = TestDir::new();
    d.write("dir/a.yaml", &service("a", 80));
    let mut src = FileSource::new(d.path("dir"));
    assert_eq!(rescan(&mut src).apply.len(), 1);
    d.rename("dir", "gone");
    assert!(matches!(src.rescan(), Err(FilesError::Read { .. })));
    d.rename("gone", "dir");
    assert_eq!(rescan(&mut src), Changes::default());
}

#[test]
fn changes_apply_to_the_index_with_errors_under_files() {
    let d = TestDir::new();
    let mut src = d.source();
    d.write("a.yaml", &stream(&[service("a", 80), service("b", 0)]));
    let mut index = Index::new();
    assert!(rescan(&mut src).apply_to(REPORTER, &mut index));
    let world = index.world();
    assert!(index.contains(&svc_ref("a")));
    assert_eq!(world.errors.len(), 1);

    assert!(
        !rescan(&mut src).apply_to(REPORTER, &mut index),
        "nothing changed"
    );

    d.remove("a.yaml");
    assert!(rescan(&mut src).apply_to(REPORTER, &mut index));
    assert!(!index.contains(&svc_ref("a")));
    assert!(index.world().errors.is_empty());
}

#[test]
fn an_invalid_first_definition_keeps_its_last_good_version_over_a_duplicate() {
    let d = TestDir::new();
    let mut src = d.source();
    d.write("a.yaml", &service("x", 80));
    d.write("b.yaml", &service("x", 81));
    assert_eq!(port_of(&rescan(&mut src), "x"), Some(80));

    d.write("a.yaml", &service("x", 0));
    let c = rescan(&mut src);
    assert!(c.is_empty(), "b's duplicate does not take over: {c:?}");
    assert_eq!(
        c.errors.len(),
        2,
        "a's field error and b's duplicate: {c:?}"
    );
}

#[test]
fn a_proxy_scope_is_read_and_a_bad_entry_is_rejected_by_field_path() {
    let d = TestDir::new();
    let scope = |hosts: &str| {
        format!(
            "apiVersion: portolan.dev/v1alpha1\nkind: ProxyScope\nmetadata:\n  name: cart\n  namespace: shop\nspec:\n  hosts: {hosts}\n  discovery: on-demand\n"
        )
    };
    d.write("scope.yaml", &scope("[\"./*\", \"shared/*\"]"));
    let mut src = d.source();
    let c = rescan(&mut src);
    assert_eq!(applied(&c), ["ProxyScope shop/cart"]);
    assert!(errors(&c).is_empty(), "{:?}", errors(&c));
    d.write("scope.yaml", &scope("[\"./*\", \"shared\"]"));
    let c = rescan(&mut src);
    let errors = errors(&c);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .contains("ProxyScope shop/cart: spec.hosts[1]: \"shared\" is not `namespace/host`"),
        "{errors:?}"
    );
}

/// What a source handed out so far, applied in order.
fn world_after(world: &mut BTreeMap<ObjectRef, Object>, c: &Changes) {
    for o in &c.apply {
        world.insert(o.object_ref(), o.clone());
    }
    for r in &c.delete {
        world.remove(r);
    }
}

fn fresh_world(d: &TestDir) -> (BTreeMap<ObjectRef, Object>, Vec<ConfigError>) {
    let c = rescan(&mut d.source());
    let mut world = BTreeMap::new();
    world_after(&mut world, &c);
    (world, c.errors)
}

/// An edit of a test directory.
type Edit = Box<dyn Fn(&TestDir)>;

#[test]
fn rescanning_only_the_changed_paths_equals_a_full_scan() {
    let d = TestDir::new();
    d.write("a.yaml", &service("a", 80));
    d.write(
        "b.yaml",
        &stream(&[service("b", 80), slice("b-1", "b", "10.0.0.1")]),
    );
    d.write("mesh/c.yaml", &service("c", 80));
    let mut src = d.source();
    let mut world = BTreeMap::new();
    world_after(&mut world, &rescan(&mut src));
    // Each step: an edit, then the paths a watcher would report for it.
    let steps: Vec<(Edit, Vec<&str>)> = vec![
        (
            Box::new(|d| d.write("a.yaml", &service("a", 81))),
            vec!["a.yaml"],
        ),
        // A duplicate in a later file, then the first definition removed.
        (
            Box::new(|d| d.write("z.yaml", &service("a", 82))),
            vec!["z.yaml"],
        ),
        (Box::new(|d| d.remove("a.yaml")), vec!["a.yaml"]),
        // A document moved between files.
        (
            Box::new(|d| {
                d.write("b.yaml", &service("b", 80));
                d.write(
                    "mesh/c.yaml",
                    &stream(&[service("c", 80), slice("b-1", "b", "10.0.0.2")]),
                );
            }),
            vec!["b.yaml", "mesh/c.yaml"],
        ),
        (
            Box::new(|d| d.rename("mesh/c.yaml", "c.yaml")),
            vec!["mesh/c.yaml", "c.yaml"],
        ),
        // Files Portolan does not read, and hidden ones, change nothing.
        (
            Box::new(|d| d.write("notes.txt", &service("n", 80))),
            vec!["notes.txt"],
        ),
        (
            Box::new(|d| d.write(".h/x.yaml", &service("h", 80))),
            vec![".h/x.yaml", ".h"],
        ),
        // A directory event reads the whole tree (here: a file the events did not name).
        (
            Box::new(|d| d.write("new/d.yaml", &service("d", 80))),
            vec!["new"],
        ),
        (
            Box::new(|d| d.write("e.yaml", &service("e", 80))),
            vec!["mesh"],
        ),
    ];
    for (i, (edit, paths)) in steps.into_iter().enumerate() {
        edit(&d);
        let paths: Vec<PathBuf> = paths.iter().map(|p| d.path(p)).collect();
        let c = src
            .rescan_paths(paths.iter().map(PathBuf::as_path))
            .expect("readable");
        world_after(&mut world, &c);
        let (want, want_errors) = fresh_world(&d);
        assert_eq!(world, want, "step {i}");
        assert_eq!(c.errors, want_errors, "step {i}");
    }
    assert!(world.contains_key(&svc_ref("d")) && world.contains_key(&svc_ref("e")));
}

#[test]
fn a_broken_file_rescanned_alone_keeps_its_objects_and_names_the_field() {
    let d = TestDir::new();
    d.write("a.yaml", &service("a", 80));
    d.write("b.yaml", &service("b", 80));
    let mut src = d.source();
    rescan(&mut src);
    d.write("a.yaml", &service("a", 0));
    let c = src
        .rescan_paths([d.path("a.yaml").as_path()])
        .expect("readable");
    assert!(c.is_empty(), "the last good a stays: {c:?}");
    let errs = errors(&c);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("a.yaml") && errs[0].contains("spec.ports[0].port"),
        "{errs:?}"
    );
    d.write("a.yaml", "kind: [");
    let c = src
        .rescan_paths([d.path("a.yaml").as_path()])
        .expect("readable");
    assert!(
        c.is_empty(),
        "a file that does not parse keeps its objects: {c:?}"
    );
    d.write("a.yaml", &service("a", 81));
    let c = src
        .rescan_paths([d.path("a.yaml").as_path()])
        .expect("readable");
    assert_eq!(port_of(&c, "a"), Some(81));
    assert!(c.errors.is_empty());
}

#[test]
fn a_request_authentication_is_read_and_a_bad_provider_is_rejected_by_field_path() {
    let d = TestDir::new();
    let policy = |uri: &str| {
        format!(
            "apiVersion: portolan.dev/v1alpha1\nkind: RequestAuthentication\nmetadata:\n  name: edge-jwt\n  namespace: shop\nspec:\n  targetRefs:\n  - {{group: portolan.dev, kind: Gateway, name: edge}}\n  providers:\n  - name: idp\n    issuer: https://idp\n    remoteJwks:\n      uri: {uri}\n"
        )
    };
    d.write("authn.yaml", &policy("https://idp/jwks.json"));
    let mut src = d.source();
    let c = rescan(&mut src);
    assert_eq!(applied(&c), ["RequestAuthentication shop/edge-jwt"]);
    assert!(errors(&c).is_empty(), "{:?}", errors(&c));
    d.write("authn.yaml", &policy("ftp://idp/jwks.json"));
    let c = rescan(&mut src);
    let errors = errors(&c);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(
            "RequestAuthentication shop/edge-jwt: spec.providers[0].remoteJwks.uri: scheme \"ftp\" is not http or https"
        ),
        "{errors:?}"
    );
}

#[test]
fn one_copy_of_each_object_is_shared_by_its_document_what_was_applied_and_the_changes() {
    let d = TestDir::new();
    d.write("a.yaml", &stream(&[service("a", 80), service("b", 80)]));
    let mut src = d.source();
    let c = rescan(&mut src);
    let Some(Object::Service(handed)) = c.apply.first() else {
        panic!("a Service first: {:?}", applied(&c));
    };
    let Some(Object::Service(kept)) = src.applied(&svc_ref("a")) else {
        panic!("a is applied");
    };
    let Some(Object::Service(in_doc)) =
        src.files["a.yaml"]
            .parsed
            .documents
            .iter()
            .find_map(|doc| match &doc.outcome {
                Outcome::Valid(o) if o.object_ref() == svc_ref("a") => Some(o),
                _ => None,
            })
    else {
        panic!("a's document is valid");
    };
    assert!(std::sync::Arc::ptr_eq(handed, kept));
    assert!(std::sync::Arc::ptr_eq(kept, in_doc));
    let kept = kept.clone();
    // Rewriting the file with `b` changed keeps `a` out of the changes, and what is kept for
    // `a` is now the new document's copy (the old file's objects are freed).
    d.write("a.yaml", &stream(&[service("a", 80), service("b", 81)]));
    let c = rescan(&mut src);
    assert_eq!(applied(&c), ["Service default/b"]);
    let Some(Object::Service(kept_now)) = src.applied(&svc_ref("a")) else {
        panic!("a is applied");
    };
    assert!(!std::sync::Arc::ptr_eq(&kept, kept_now));
}

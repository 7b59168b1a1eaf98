//! The escape hatch's failure kinds, each refused with its field path while the rest is
//! served; selection, fallback to the last good version, provenance and conditions.

use super::*;
use crate::IncrementalBuilder;
use crate::programmed::attribute;
use portolan_api::Kind;
use portolan_model::Index;
use portolan_translate::Options;
use portolan_xds::{ResourceType, Snapshot};
use serde_json::json;

const LISTENER: &str = "gateway-8080";
const CLUSTER: &str = "outbound|80||web.default.svc.cluster.local";

fn apply(index: &mut Index, doc: Value) {
    let resource = portolan_api::Resource::decode(doc)
        .expect("decodes")
        .expect("a kind Portolan reads");
    let errors = portolan_api::validate::validate(&resource);
    assert!(errors.is_empty(), "{errors:?}");
    index.apply(portolan_model::convert::to_object(&resource));
}

/// A Service `web` and a Gateway `edge` (HTTP on 8080) for the `edge` proxies.
fn index() -> Index {
    let mut index = Index::new();
    apply(
        &mut index,
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"port": 80}]}}),
    );
    apply(
        &mut index,
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": "default"},
            "spec": {"selector": {"cluster": "edge"},
                     "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}}),
    );
    index
}

fn policy(name: &str, generation: i64, target: Value, patches: Value) -> Value {
    let mut spec = target;
    spec["patches"] = patches;
    json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "EnvoyPatchPolicy",
        "metadata": {"name": name, "namespace": "default", "generation": generation},
        "spec": spec})
}

fn gateway_target() -> Value {
    json!({"targetRef": {"group": "portolan.dev", "kind": "Gateway", "name": "edge"}})
}

fn buffer_limit(value: Value) -> Value {
    json!([{"type": "Listener", "name": LISTENER, "operations": [
        {"op": "add", "path": "/per_connection_buffer_limit_bytes", "value": value}]}])
}

fn group(key: &str) -> ProxyGroup {
    ProxyGroup::from(&key.parse::<portolan_model::GroupKey>().expect("a key"))
}

/// Builds `group` in `world` with the candidates `patches` gives, recording the outcomes.
fn build(
    index: &mut Index,
    patches: &Patches,
    key: &str,
) -> (Option<Snapshot>, Provenance, Vec<Outcome>) {
    let world = index.world();
    let group = group(key);
    let candidates = patches.candidates(&world, &group);
    let mut builder = IncrementalBuilder::new();
    let (built, outcomes) =
        builder.build_patched(&world, &group, &Options::default(), None, &[], &candidates);
    patches.record(key, outcomes.clone(), built.is_ok());
    match built {
        Ok((snapshot, provenance)) => (Some(snapshot), provenance, outcomes),
        Err(_) => (None, Provenance::new(), outcomes),
    }
}

fn listener_json(snapshot: &Snapshot) -> Value {
    let r = &snapshot.resources(ResourceType::Listener)[LISTENER];
    portolan_envoy_json::bytes_to_json(&type_name(PatchedType::Listener), r.value())
        .expect("renders")
}

fn error_of(outcomes: &[Outcome]) -> String {
    let e = outcomes[0].error.as_ref().expect("refused");
    format!("{}: {}", e.path, e.message)
}

#[test]
fn a_patch_adds_an_unmodelled_setting_and_names_what_it_touched() {
    let mut index = index();
    apply(
        &mut index,
        policy("buffers", 1, gateway_target(), buffer_limit(json!(32768))),
    );
    let patches = Patches::new(true);
    let (snapshot, provenance, outcomes) = build(&mut index, &patches, "edge");
    let snapshot = snapshot.expect("served");
    assert_eq!(
        listener_json(&snapshot)["per_connection_buffer_limit_bytes"],
        32768
    );
    assert_eq!(outcomes[0].touched, [vec![format!("Listener {LISTENER}")]]);
    assert!(outcomes[0].is_current());
    // A NACK of the patched listener points at the policy (and the Gateway).
    let text = format!("Error adding/updating listener(s) {LISTENER}: buffer too small");
    let found = attribute(
        &provenance,
        ResourceKind::Listener,
        &[LISTENER.into()],
        &text,
    );
    let objects: Vec<String> = found.objects.iter().map(ToString::to_string).collect();
    assert!(
        objects.contains(&"EnvoyPatchPolicy default/buffers".to_string()),
        "{objects:?}"
    );
    // Another group is not selected and not patched.
    let (other, _, none) = build(&mut index, &patches, "web");
    assert!(none.is_empty());
    assert!(
        other
            .expect("served")
            .resources(ResourceType::Listener)
            .get(LISTENER)
            .is_none()
    );
}

#[test]
fn a_merge_patches_a_cluster_and_a_proxies_selector_picks_groups_by_node() {
    let mut index = index();
    let merge = json!([{"type": "Cluster", "name": CLUSTER,
        "merge": {"dns_lookup_family": "V4_ONLY", "per_connection_buffer_limit_bytes": 1024}}]);
    apply(
        &mut index,
        policy(
            "web-v4",
            1,
            json!({"proxies": {"cluster": "web", "labels": {"tier": "front"}}}),
            merge,
        ),
    );
    let patches = Patches::new(true);
    let (_, _, unselected) = build(&mut index, &patches, "web");
    assert!(unselected.is_empty(), "the label does not match");
    let (snapshot, _, outcomes) = build(&mut index, &patches, "web;l.tier=front");
    assert!(outcomes[0].is_current(), "{outcomes:?}");
    let snapshot = snapshot.expect("served");
    let r = &snapshot.resources(ResourceType::Cluster)[CLUSTER];
    let json = portolan_envoy_json::bytes_to_json(&type_name(PatchedType::Cluster), r.value())
        .expect("renders");
    assert_eq!(json["dns_lookup_family"], "V4_ONLY");
    assert_eq!(json["per_connection_buffer_limit_bytes"], 1024);
}

/// Each way a patch can fail, refused with its field path; the group is still served.
#[test]
fn every_failure_kind_is_refused_with_its_field_path() {
    let ops = |ops: Value| json!([{"type": "Listener", "name": LISTENER, "operations": ops}]);
    let cases: &[(Value, &str)] = &[
        (
            ops(
                json!([{"op": "add", "path": "/per_connection_buffer_limit_bytes", "value": 1},
                       {"op": "remove", "path": "/no_such_field"}]),
            ),
            "spec.patches[0].operations[1].path: \"/no_such_field\"",
        ),
        (
            ops(json!([{"op": "test", "path": "/name", "value": "other"}])),
            "spec.patches[0].operations[0].path: \"/name\"",
        ),
        (
            json!([{"type": "Cluster", "name": "outbound|80||nope.default.svc.cluster.local",
                    "merge": {"dns_lookup_family": "V4_ONLY"}}]),
            "spec.patches[0].name: this proxy group has no Cluster named \"outbound|80||nope.default.svc.cluster.local\" to patch",
        ),
        (
            buffer_limit(json!("lots")),
            "spec.patches[0]: the patched Listener \"gateway-8080\" is not a valid Envoy message: envoy.config.listener.v3.Listener at per_connection_buffer_limit_bytes",
        ),
        (
            ops(json!([{"op": "add", "path": "/no_such_setting", "value": true}])),
            "spec.patches[0]: the patched Listener \"gateway-8080\" is not a valid Envoy message: envoy.config.listener.v3.Listener at the top level: unrecognized field name 'no_such_setting'",
        ),
        (
            ops(
                json!([{"op": "add", "path": "/filter_chains/0/filters/0/typed_config/server_nam", "value": "x"}]),
            ),
            "spec.patches[0]: the patched Listener \"gateway-8080\" is not a valid Envoy message: envoy.config.listener.v3.Listener at filter_chains[0].filters[0].typed_config: unrecognized field name 'server_nam'",
        ),
        (
            ops(json!([{"op": "move", "from": "/nope", "path": "/stat_prefix"}])),
            "spec.patches[0].operations[0].from: no such place in the resource to move or copy from",
        ),
        (
            ops(
                json!([{"op": "replace", "path": "/filter_chains/0/filters/0/typed_config/@type",
                        "value": "type.googleapis.com/envoy.extensions.filters.network.nope.v3.Nope"}]),
            ),
            "spec.patches[0]: the patched Listener \"gateway-8080\" is not a valid Envoy message: envoy.config.listener.v3.Listener at filter_chains[0].filters[0].typed_config",
        ),
        (
            ops(json!([{"op": "replace", "path": "/name", "value": "gateway-9090"}])),
            "spec.patches[0]: the patch renames the Listener (name must stay \"gateway-8080\")",
        ),
    ];
    for (patches_json, want) in cases {
        let mut index = index();
        apply(
            &mut index,
            policy("bad", 1, gateway_target(), patches_json.clone()),
        );
        let (snapshot, _, outcomes) = build(&mut index, &Patches::new(true), "edge");
        let got = error_of(&outcomes);
        assert!(got.starts_with(want), "{got}\n  wanted {want}");
        let snapshot = snapshot.expect("the group is still served, unpatched");
        assert!(
            listener_json(&snapshot)
                .get("per_connection_buffer_limit_bytes")
                .is_none()
        );
    }
}

/// A patch whose resources decode but whose snapshot is inconsistent (the listener names a
/// route configuration that does not exist) is refused; a good policy is still served.
#[test]
fn an_inconsistent_snapshot_refuses_the_policy_that_made_it() {
    let mut index = index();
    let rds = json!([{"type": "Listener", "name": LISTENER, "operations": [{"op": "replace",
        "path": "/filter_chains/0/filters/0/typed_config/rds/route_config_name", "value": "missing"}]}]);
    apply(
        &mut index,
        policy("a-good", 1, gateway_target(), buffer_limit(json!(4096))),
    );
    apply(&mut index, policy("b-dangling", 1, gateway_target(), rds));
    let (snapshot, _, outcomes) = build(&mut index, &Patches::new(true), "edge");
    assert!(outcomes[0].is_current(), "{outcomes:?}");
    let e = outcomes[1].error.as_ref().expect("refused");
    assert_eq!(e.policy.to_string(), "EnvoyPatchPolicy default/b-dangling");
    assert_eq!(e.path, "spec.patches");
    assert!(e.message.contains("missing"), "{}", e.message);
    let served = listener_json(&snapshot.expect("served"));
    assert_eq!(served["per_connection_buffer_limit_bytes"], 4096);
}

/// A bad new version of a policy keeps its last good version in force for the group, and
/// the conditions say so; other changes keep being served.
#[test]
fn a_refused_version_keeps_the_last_good_one_and_status_says_why() {
    let mut index = index();
    let patches = Patches::new(true);
    apply(
        &mut index,
        policy("buffers", 1, gateway_target(), buffer_limit(json!(32768))),
    );
    build(&mut index, &patches, "edge");
    apply(
        &mut index,
        policy("buffers", 2, gateway_target(), buffer_limit(json!("lots"))),
    );
    apply(
        &mut index,
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "api", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}}),
    );
    let (snapshot, _, outcomes) = build(&mut index, &patches, "edge");
    let snapshot = snapshot.expect("served");
    assert_eq!(outcomes[0].served, Some(1), "{outcomes:?}");
    assert_eq!(
        listener_json(&snapshot)["per_connection_buffer_limit_bytes"],
        32768
    );
    let clusters = snapshot.resources(ResourceType::Cluster);
    assert!(
        clusters.keys().any(|c| c.contains("api.default")),
        "the new Service is served"
    );
    let world = index.world();
    let conditions =
        &patches.conditions(&world)[&ObjectRef::new(Kind::EnvoyPatchPolicy, "default", "buffers")];
    assert_eq!(
        (conditions[0].status, conditions[0].reason.as_str()),
        (false, "Invalid")
    );
    assert!(
        conditions[0]
            .message
            .contains("proxy group edge: spec.patches[0]: the patched Listener"),
        "{}",
        conditions[0].message
    );
    assert_eq!(conditions[0].observed_generation, 2);
    assert!(
        conditions[1].message.contains("keeps generation 1"),
        "{}",
        conditions[1].message
    );
    // Fixed: the new version applies and the policy is Accepted and Programmed.
    apply(
        &mut index,
        policy("buffers", 3, gateway_target(), buffer_limit(json!(65536))),
    );
    let (snapshot, _, _) = build(&mut index, &patches, "edge");
    assert_eq!(
        listener_json(&snapshot.expect("served"))["per_connection_buffer_limit_bytes"],
        65536
    );
    let world = index.world();
    let c =
        &patches.conditions(&world)[&ObjectRef::new(Kind::EnvoyPatchPolicy, "default", "buffers")];
    assert!(c[0].status && c[1].status, "{c:?}");
    assert_eq!(
        c[1].message,
        "proxy group edge: spec.patches[0]: Listener gateway-8080"
    );
}

#[test]
fn disabled_nothing_is_patched_and_every_policy_says_disabled() {
    let mut index = index();
    apply(
        &mut index,
        policy("buffers", 1, gateway_target(), buffer_limit(json!(32768))),
    );
    let patches = Patches::new(false);
    let (snapshot, _, outcomes) = build(&mut index, &patches, "edge");
    assert!(outcomes.is_empty());
    assert!(
        listener_json(&snapshot.expect("served"))
            .get("per_connection_buffer_limit_bytes")
            .is_none()
    );
    let world = index.world();
    let c =
        &patches.conditions(&world)[&ObjectRef::new(Kind::EnvoyPatchPolicy, "default", "buffers")];
    assert_eq!((c[0].status, c[0].reason.as_str()), (false, "Disabled"));
    assert!(
        c[0].message.contains("--enable-envoy-patch-policy"),
        "{}",
        c[0].message
    );
}

/// The webhook's dry run (`translate_checked`) refuses a bad patch when enabled.
#[test]
fn translate_checked_refuses_a_bad_patch_when_enabled() {
    let mut index = index();
    apply(
        &mut index,
        policy("bad", 1, gateway_target(), buffer_limit(json!("lots"))),
    );
    let world = index.world();
    let options = Options {
        envoy_patch_policy: true,
        ..Options::default()
    };
    let error = crate::translate_checked(&world, &group("edge"), &options)
        .map(|_| ())
        .expect_err("refused");
    assert!(
        error
            .to_string()
            .starts_with("EnvoyPatchPolicy default/bad: spec.patches[0]: the patched Listener"),
        "{error}"
    );
    assert!(crate::translate_checked(&world, &group("edge"), &Options::default()).is_ok());
}

//! Validation of `EnvoyPatchPolicy`: the target (exactly one of a Gateway reference or a
//! proxy selector), and each patch's shape: exactly one of `operations` or `merge`, each
//! operation with a JSON pointer `path`, `from` exactly for `move`/`copy`, `value` exactly for
//! `add`/`replace`/`test`, a merge that is an object. Whether a patch applies is decided
//! against the generated resources, when served (`portolan_pipeline::patch`).

use super::*;
use crate::crd::envoy_patch_policy::{
    EnvoyPatchPolicy, GATEWAY_API_GROUP, PORTOLAN_GROUP, PatchOp, PatchOperation, PatchTargetRef,
    ProxySelector, ResourcePatch,
};

pub(super) fn envoy_patch_policy(policy: &EnvoyPatchPolicy, errors: &mut Errors) {
    object_name(policy.metadata.name.as_deref(), errors);
    let spec = &policy.spec;
    exactly_one(
        spec_path(),
        &[
            ("targetRef", spec.target_ref.is_some()),
            ("proxies", spec.proxies.is_some()),
        ],
        errors,
    );
    if let Some(target) = &spec.target_ref {
        target_ref(target, spec_path().field("targetRef"), errors);
    }
    if let Some(proxies) = &spec.proxies {
        proxy_selector(proxies, spec_path().field("proxies"), errors);
    }
    let path = spec_path().field("patches");
    if spec.patches.is_empty() {
        errors.push(path.clone(), "at least one patch is required");
    }
    for (i, patch) in spec.patches.iter().enumerate() {
        resource_patch(patch, path.index(i), errors);
    }
}

fn target_ref(target: &PatchTargetRef, path: FieldPath, errors: &mut Errors) {
    if target.group != PORTOLAN_GROUP && target.group != GATEWAY_API_GROUP {
        errors.push(
            path.field("group"),
            format!(
                "{:?} is not a group a Gateway comes from: {PORTOLAN_GROUP} or {GATEWAY_API_GROUP}",
                target.group
            ),
        );
    }
    if target.kind != "Gateway" {
        errors.push(
            path.field("kind"),
            format!(
                "{:?} is not a kind patches attach to: Gateway (or select proxies with spec.proxies)",
                target.kind
            ),
        );
    }
    if !is_dns_name(&target.name) {
        errors.push(
            path.field("name"),
            format!("{:?} is not a Gateway name (a DNS name)", target.name),
        );
    }
}

fn proxy_selector(proxies: &ProxySelector, path: FieldPath, errors: &mut Errors) {
    let labels = proxies.labels.as_ref();
    if proxies.cluster.is_none() && labels.is_none_or(|l| l.is_empty()) {
        errors.push(
            path.clone(),
            "name a cluster or at least one label (selecting every proxy is not allowed)",
        );
    }
    if let Some(cluster) = &proxies.cluster
        && cluster.trim().is_empty()
    {
        errors.push(path.field("cluster"), "must not be empty");
    }
}

fn resource_patch(patch: &ResourcePatch, path: FieldPath, errors: &mut Errors) {
    if patch.name.trim().is_empty() {
        errors.push(path.field("name"), "must name the generated resource");
    }
    exactly_one(
        path.clone(),
        &[
            ("operations", patch.operations.is_some()),
            ("merge", patch.merge.is_some()),
        ],
        errors,
    );
    if let Some(merge) = &patch.merge
        && !merge.is_object()
    {
        errors.push(
            path.field("merge"),
            "must be an object (an RFC 7386 merge patch of the resource)",
        );
    }
    let Some(operations) = &patch.operations else {
        return;
    };
    let path = path.field("operations");
    if operations.is_empty() {
        errors.push(path.clone(), "at least one operation is required");
    }
    for (j, op) in operations.iter().enumerate() {
        operation(op, path.index(j), errors);
    }
}

fn operation(op: &PatchOperation, path: FieldPath, errors: &mut Errors) {
    if let Err(e) = pointer(&op.path) {
        errors.push(path.field("path"), e);
    }
    let needs_from = matches!(op.op, PatchOp::Move | PatchOp::Copy);
    match (&op.from, needs_from) {
        (Some(from), true) => {
            if let Err(e) = pointer(from) {
                errors.push(path.field("from"), e);
            }
        }
        (None, true) => errors.push(path.field("from"), "required for move and copy"),
        (Some(_), false) => errors.push(path.field("from"), "only move and copy take from"),
        (None, false) => {}
    }
    let needs_value = matches!(op.op, PatchOp::Add | PatchOp::Replace | PatchOp::Test);
    match (op.value.is_some(), needs_value) {
        (false, true) => errors.push(path.field("value"), "required for add, replace and test"),
        (true, false) => errors.push(
            path.field("value"),
            "only add, replace and test take a value",
        ),
        _ => {}
    }
}

/// An RFC 6901 JSON pointer below the resource's root: `/a/b/0`, `~0` and `~1` escapes.
fn pointer(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!(
            "{p:?} is not a JSON pointer into the resource: it starts with '/' (the whole resource cannot be replaced)"
        ));
    }
    let bytes = p.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'~' && !matches!(bytes.get(i + 1), Some(b'0' | b'1')) {
            return Err(format!(
                "{p:?} is not a JSON pointer: '~' must be followed by 0 or 1"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::table;
    use serde_json::json;

    const API: &str = "portolan.dev/v1alpha1";

    #[test]
    fn envoy_patch_policy_table() {
        let op = |o: serde_json::Value| {
            json!({"proxies": {"cluster": "edge"},
            "patches": [{"type": "Listener", "name": "gateway-8080", "operations": [o]}]})
        };
        table(
            API,
            "EnvoyPatchPolicy",
            &[
                (
                    json!({"targetRef": {"group": "portolan.dev", "kind": "Gateway", "name": "edge"},
                        "patches": [{"type": "Cluster", "name": "c", "merge": {"dns_lookup_family": "V4_ONLY"}}]}),
                    &[],
                ),
                (
                    op(
                        json!({"op": "add", "path": "/per_connection_buffer_limit_bytes", "value": 1024}),
                    ),
                    &[],
                ),
                (
                    json!({"patches": []}),
                    &[
                        "spec: exactly one of targetRef, proxies is required, found none",
                        "spec.patches: at least one patch is required",
                    ],
                ),
                (
                    json!({"targetRef": {"group": "apps", "kind": "Service", "name": "Edge"},
                        "proxies": {"labels": {}},
                        "patches": [{"type": "Cluster", "name": " ", "merge": 5, "operations": []}]}),
                    &[
                        "spec: exactly one of targetRef, proxies is required, found targetRef and proxies",
                        "spec.targetRef.group: \"apps\" is not a group a Gateway comes from: portolan.dev or gateway.networking.k8s.io",
                        "spec.targetRef.kind: \"Service\" is not a kind patches attach to: Gateway (or select proxies with spec.proxies)",
                        "spec.targetRef.name: \"Edge\" is not a Gateway name (a DNS name)",
                        "spec.proxies: name a cluster or at least one label (selecting every proxy is not allowed)",
                        "spec.patches[0].name: must name the generated resource",
                        "spec.patches[0]: exactly one of operations, merge is required, found operations and merge",
                        "spec.patches[0].merge: must be an object (an RFC 7386 merge patch of the resource)",
                        "spec.patches[0].operations: at least one operation is required",
                    ],
                ),
                (
                    op(json!({"op": "replace", "path": "name"})),
                    &[
                        "spec.patches[0].operations[0].path: \"name\" is not a JSON pointer into the resource: it starts with '/' (the whole resource cannot be replaced)",
                        "spec.patches[0].operations[0].value: required for add, replace and test",
                    ],
                ),
                (
                    op(json!({"op": "move", "path": "/a~2", "value": 1})),
                    &[
                        "spec.patches[0].operations[0].path: \"/a~2\" is not a JSON pointer: '~' must be followed by 0 or 1",
                        "spec.patches[0].operations[0].from: required for move and copy",
                        "spec.patches[0].operations[0].value: only add, replace and test take a value",
                    ],
                ),
                (
                    op(json!({"op": "remove", "path": "/a", "from": "/b"})),
                    &["spec.patches[0].operations[0].from: only move and copy take from"],
                ),
            ],
        );
    }

    #[test]
    fn secrets_and_unknown_ops_are_decode_errors_naming_the_field() {
        let doc = |patch: serde_json::Value| {
            json!({"apiVersion": API, "kind": "EnvoyPatchPolicy",
                "metadata": {"name": "x", "namespace": "default"},
                "spec": {"proxies": {"cluster": "edge"}, "patches": [patch]}})
        };
        let secret =
            crate::Resource::decode(doc(json!({"type": "Secret", "name": "s", "merge": {}})))
                .expect_err("secrets are never patched")
                .to_string();
        assert!(secret.contains("spec.patches[0].type"), "{secret}");
        let op = crate::Resource::decode(doc(json!({"type": "Cluster", "name": "c",
            "operations": [{"op": "delete", "path": "/a"}]})))
        .expect_err("delete is not an RFC 6902 op")
        .to_string();
        assert!(op.contains("spec.patches[0].operations[0].op"), "{op}");
    }
}

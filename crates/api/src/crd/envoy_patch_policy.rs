//! `EnvoyPatchPolicy`: the validated escape hatch. JSON patches (RFC 6902) or merges
//! (RFC 7386) applied to the Envoy resources Portolan generated for selected proxy groups, for
//! Envoy settings Portolan does not model. Off unless `portolan serve
//! --enable-envoy-patch-policy`; every patched resource is decoded back into Envoy's typed
//! message and the snapshot is checked before it is served.

use super::policy_target::PolicyAncestorStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Status of an EnvoyPatchPolicy: `Accepted`, `ResolvedRefs` and `Programmed`, and (with a
/// `targetRef`) one ancestor entry for the Gateway, carrying the policy's `Accepted`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyPatchPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

/// API group of Portolan's own Gateway, as a `targetRef.group`.
pub const PORTOLAN_GROUP: &str = "portolan.dev";
/// API group of the Kubernetes Gateway API, as a `targetRef.group`.
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

/// Patches to the generated Envoy resources of the proxy groups `targetRef` or `proxies`
/// selects (exactly one), applied in order after translation. The last resort: prefer a
/// modelled field whenever one exists.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portolan.dev",
    version = "v1alpha1",
    kind = "EnvoyPatchPolicy",
    namespaced,
    status = "EnvoyPatchPolicyStatus",
    shortname = "epp",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.targetRef), has(self.proxies)].filter(x, x).size() == 1",
    "message": "exactly one of targetRef, proxies is required"
}]))]
pub struct EnvoyPatchPolicySpec {
    /// A Gateway in this policy's namespace: Portolan's (`group: portolan.dev`) or a Gateway
    /// API Gateway (`group: gateway.networking.k8s.io`); the patches apply to the proxy
    /// groups that run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PatchTargetRef>,
    /// Proxy groups by their node: `node.cluster` and `labels` metadata (all must match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxies: Option<ProxySelector>,
    /// The patches, applied in order; each names one generated resource.
    #[schemars(length(min = 1, max = 64))]
    pub patches: Vec<ResourcePatch>,
}

/// A Gateway the patches attach to (Gateway API policy attachment: same namespace).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatchTargetRef {
    /// `portolan.dev` or `gateway.networking.k8s.io`.
    pub group: String,
    /// `Gateway`.
    pub kind: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Proxy groups by their node: every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxySelector {
    /// Envoy `node.cluster` (`default` for nodes that name none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// String fields of the node's `labels` metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// One generated resource and what to do to it: `operations` (RFC 6902 JSON patch) or
/// `merge` (RFC 7386 JSON merge patch), exactly one, on the resource's proto3 JSON form
/// (proto field names, `typed_config` with its `@type`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.operations), has(self.merge)].filter(x, x).size() == 1",
    "message": "exactly one of operations, merge is required"
}]))]
pub struct ResourcePatch {
    /// The xDS type of the resource (Secrets are never patched).
    #[serde(rename = "type")]
    pub type_: PatchedType,
    /// The resource's name: a listener's, route configuration's or cluster's name, or an
    /// assignment's cluster name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// RFC 6902 operations, applied as one: all or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<PatchOperation>>,
    /// An RFC 7386 merge patch (an object; `null` removes a field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub merge: Option<serde_json::Value>,
}

/// The xDS resource types a patch may name.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum PatchedType {
    #[default]
    Listener,
    RouteConfiguration,
    Cluster,
    ClusterLoadAssignment,
}

/// One RFC 6902 operation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatchOperation {
    pub op: PatchOp,
    /// A JSON pointer (RFC 6901) into the resource: `/per_connection_buffer_limit_bytes`,
    /// `/filter_chains/0/filters/0/typed_config/server_name`.
    pub path: String,
    /// The source pointer of `move` and `copy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The value of `add`, `replace` and `test`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json")]
    pub value: Option<serde_json::Value>,
}

/// RFC 6902 operation names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PatchOp {
    #[default]
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
}

// === impl PatchedType ===

impl PatchedType {
    pub fn as_str(self) -> &'static str {
        match self {
            PatchedType::Listener => "Listener",
            PatchedType::RouteConfiguration => "RouteConfiguration",
            PatchedType::Cluster => "Cluster",
            PatchedType::ClusterLoadAssignment => "ClusterLoadAssignment",
        }
    }
}

impl std::fmt::Display for PatchedType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Any JSON object (Kubernetes keeps it as written).
fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// Any JSON value (Kubernetes keeps it as written).
fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

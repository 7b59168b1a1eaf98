//! `AccessPolicy`: who may call a namespace's (or some workloads') inbound listeners, by the
//! caller's proven mesh identity and by what it asks for.

use super::common::{ObjectStatus, WorkloadSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Status of an AccessPolicy.
pub type AccessPolicyStatus = ObjectStatus;

/// Allow or deny inbound requests. A request matching any DENY policy is refused (403 for
/// HTTP, connection closed for TCP). When any ALLOW policy applies to a workload, a request
/// must match one of its rules; an ALLOW policy without rules therefore denies everything
/// (default-deny for the namespace when it has no selector).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portolan.dev",
    version = "v1alpha1",
    kind = "AccessPolicy",
    namespaced,
    status = "AccessPolicyStatus",
    shortname = "ap",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicySpec {
    /// The workloads this applies to; absent: every workload of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    pub action: AccessAction,
    /// A request matches the policy when it matches any rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub rules: Vec<AccessRule>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum AccessAction {
    #[default]
    Allow,
    Deny,
}

/// A rule matches when the source matches `from` (absent: any source), the request matches
/// `to` (absent: any request), and every `claims` condition holds on the request's verified
/// JWT (see RequestAuthentication; a request without one matches no claim condition).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<AccessSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<AccessOperation>,
    /// Conditions on the claims of the request's verified JWT; all must hold (HTTP only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub claims: Vec<ClaimCondition>,
}

/// A JWT claim condition: the claim (`group`, or nested `realm.role`) is one of `values`, or,
/// when the claim is a list, holds one of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimCondition {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub values: Vec<String>,
}

/// The caller, by the SPIFFE ID of its verified certificate: a source matches when the caller
/// is one of `principals`, or in one of `namespaces`, or one of `serviceAccounts`. A plaintext
/// caller has no identity and matches no source. `requestPrincipals` adds (AND) a condition
/// on the request's verified JWT: its `ISSUER/SUBJECT` is one of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.principals) && size(self.principals) > 0) || (has(self.namespaces) && size(self.namespaces) > 0) || (has(self.serviceAccounts) && size(self.serviceAccounts) > 0) || (has(self.requestPrincipals) && size(self.requestPrincipals) > 0)",
    "message": "from needs at least one of principals, namespaces, serviceAccounts, requestPrincipals"
}]))]
pub struct AccessSource {
    /// Full SPIFFE IDs (`spiffe://cluster.local/ns/shop/sa/web`); a trailing `*` matches any
    /// suffix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Any service account of these namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// `NAME` (in the policy's namespace) or `NAMESPACE/NAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    /// `ISSUER/SUBJECT` of the request's verified JWT (split at the last `/`);
    /// `ISSUER/*`: any subject of that issuer; `*`: any verified token. HTTP only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
}

/// What is asked for; every field given must match (each list: any of its entries). `methods`,
/// `paths` and `headers` are HTTP-only (see docs/security.md for TCP listeners).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessOperation {
    /// Destination ports (the workload ports its inbound listener serves).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<i32>,
    /// `GET`, `POST`, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Exact paths; `/api/*` matches a prefix, `*` anything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Every header condition must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<AccessHeader>,
}

/// A request header: `exact`, `prefix`, or `present` (exactly one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.exact), has(self.prefix), has(self.present)].filter(x, x).size() == 1",
    "message": "exactly one of exact, prefix, present is required"
}]))]
pub struct AccessHeader {
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

//! `ExtAuthPolicy`: ask an external authorization service (HTTP or gRPC, Envoy's ext_authz
//! protocol) whether each request on the targeted Gateways, listeners or routes may pass.

use super::common::{DURATION_PATTERN, Destination};
use super::policy_target::{PolicyAncestorStatus, PolicyTargetRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Status of an ExtAuthPolicy: a summary `Accepted` condition (True when at least one target
/// is attached; its message lists every target's outcome) and one entry per target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtAuthPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

/// Requests on the targets are sent (headers, optionally the body) to an authorization service
/// first; it allows them (its answer's headers may reach the upstream) or denies them (its
/// status and body reach the client). A policy with `disabled: true` turns authorization off
/// for what it targets (a route under a Gateway-wide policy, say).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portolan.dev",
    version = "v1alpha1",
    kind = "ExtAuthPolicy",
    namespaced,
    status = "ExtAuthPolicyStatus",
    shortname = "eap",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.disabled) && self.disabled) ? !has(self.grpc) && !has(self.http) : [has(self.grpc), has(self.http)].filter(x, x).size() == 1",
    "message": "exactly one of grpc, http is required (neither with disabled: true)"
}]))]
pub struct ExtAuthPolicySpec {
    /// What this applies to, in this namespace: Gateways (or one listener) and routes (or
    /// one rule); the most specific attachment wins.
    #[schemars(length(min = 1, max = 16))]
    pub target_refs: Vec<PolicyTargetRef>,
    /// Turn external authorization off for the targets (no service is named then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// A gRPC authorization service (`envoy.service.auth.v3.Authorization/Check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcAuthService>,
    /// An HTTP authorization service: a 200 answer allows, anything else denies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpAuthService>,
    /// Request headers sent to the service (exact names, case-insensitive). Absent: every
    /// header for gRPC services; for HTTP services Host, Method, Path, Content-Length and
    /// Authorization only (Envoy's defaults).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub allowed_headers: Vec<String>,
    /// How long to wait for the service's answer; default 200ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<String>,
    /// When the service cannot be reached or fails: `true` lets the request through
    /// (fail-open), `false` (the default) refuses it with 403 (fail-closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_open: Option<bool>,
    /// Send the request body too (buffered, up to `maxBytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_body: Option<IncludeBody>,
}

/// The gRPC service: a Service port speaking HTTP/2 (`appProtocol: grpc`, or a port name
/// starting `grpc`). ExternalService ports are HTTP/1.1 and cannot serve gRPC.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrpcAuthService {
    /// Where the service runs (`host`: a Service name; `port`).
    pub service: Destination,
}

/// The HTTP service: Envoy sends the request's method and path (after `pathPrefix`) with the
/// allowed headers and no body unless `includeBody`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpAuthService {
    /// Where the service runs (`host`: a Service name or an ExternalService host; `port`).
    pub service: Destination,
    /// Prepended to the request's path in the check request (`/authz` + `/orders/1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Headers of an allowing answer copied onto the request to the upstream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub headers_to_upstream: Vec<String>,
    /// Headers of a denying answer returned to the client (absent: all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub headers_to_client: Vec<String>,
}

/// Buffer the request body and send it with the check.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncludeBody {
    /// The most bytes buffered; a larger body is refused with 413 unless `allowPartial`.
    #[schemars(range(min = 1, max = 67108864))]
    pub max_bytes: i64,
    /// Send the first `maxBytes` of a larger body instead of refusing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_partial: Option<bool>,
}

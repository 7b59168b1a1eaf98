//! `RateLimitPolicy`: limit request rates on the targeted Gateways, listeners or routes,
//! locally (a token bucket in each proxy) or globally (a rate limit service shared by every
//! proxy, Envoy's `envoy.service.ratelimit.v3` protocol).

use super::common::{DURATION_PATTERN, Destination};
use super::policy_target::{PolicyAncestorStatus, PolicyTargetRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Status of a RateLimitPolicy: a summary `Accepted` condition (True when at least one target
/// is attached; its message lists every target's outcome) and one entry per target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

/// A local token bucket, a global limit through a rate limit service, or both. A request
/// over either limit gets 429.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portolan.dev",
    version = "v1alpha1",
    kind = "RateLimitPolicy",
    namespaced,
    status = "RateLimitPolicyStatus",
    shortname = "rlp",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.local) || has(self.global)",
    "message": "at least one of local, global is required"
}]))]
pub struct RateLimitPolicySpec {
    /// What this applies to, in this namespace: Gateways (or one listener) and routes (or
    /// one rule); the most specific attachment wins.
    #[schemars(length(min = 1, max = 16))]
    pub target_refs: Vec<PolicyTargetRef>,
    /// A token bucket in each proxy: per listener when the policy targets a Gateway or
    /// listener, per route when it targets a route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalRateLimit>,
    /// Descriptors sent to a rate limit service, which says OK or OVER_LIMIT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<GlobalRateLimit>,
}

/// `requests` tokens refilled every `per`; each request takes one, a request finding none
/// gets 429.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalRateLimit {
    /// Tokens added every `per`.
    #[schemars(range(min = 1, max = 4294967295i64))]
    pub requests: i64,
    /// The refill interval (at least 50ms): `1s`, `1m`.
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub per: String,
    /// The bucket's size (the largest burst); default `requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967295i64))]
    pub burst: Option<i64>,
    /// Add `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset` to responses;
    /// default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<bool>,
}

/// A rate limit service run by the user (such as envoyproxy/ratelimit).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GlobalRateLimit {
    /// The service: a Service port speaking HTTP/2 (`appProtocol: grpc`, or a port name
    /// starting `grpc`).
    pub service: Destination,
    /// The domain the service's limits are configured under.
    #[schemars(length(min = 1, max = 253))]
    pub domain: String,
    /// One descriptor per entry; each is sent when every one of its entries has a value.
    #[schemars(length(min = 1, max = 16))]
    pub descriptors: Vec<RateLimitDescriptor>,
    /// How long to wait for the service; default 20ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<String>,
    /// When the service cannot be reached: `true` refuses the request (500), `false` (the
    /// default) lets it through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_mode_deny: Option<bool>,
    /// Add the `x-ratelimit-*` headers from the service's answer; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<bool>,
}

/// An ordered list of `(key, value)` entries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitDescriptor {
    #[schemars(length(min = 1, max = 16))]
    pub entries: Vec<DescriptorEntry>,
}

/// Where one entry's value comes from: exactly one of the fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.requestHeader), has(self.remoteAddress), has(self.path), has(self.generic), has(self.jwtClaim)].filter(x, x).size() == 1",
    "message": "exactly one of requestHeader, remoteAddress, path, generic, jwtClaim is required"
}]))]
pub struct DescriptorEntry {
    /// The value of a request header (the descriptor is not sent without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header: Option<HeaderEntry>,
    /// The client's address, under key `remote_address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_address: Option<RemoteAddressEntry>,
    /// The request path (with its query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathEntry>,
    /// A fixed `(key, value)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic: Option<GenericEntry>,
    /// A claim of the request's verified JWT (a JwtPolicy on the same targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_claim: Option<JwtClaimEntry>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderEntry {
    /// The header name.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// The descriptor key.
    #[schemars(length(min = 1, max = 256))]
    pub key: String,
}

/// No settings: the key is always `remote_address`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteAddressEntry {}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathEntry {
    /// The descriptor key; default `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub key: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenericEntry {
    /// The descriptor key; default `generic_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub key: Option<String>,
    #[schemars(length(min = 1, max = 256))]
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtClaimEntry {
    /// A top-level claim of the token's payload (`sub`, `tenant`).
    #[schemars(length(min = 1, max = 256))]
    pub claim: String,
    /// The descriptor key.
    #[schemars(length(min = 1, max = 256))]
    pub key: String,
}

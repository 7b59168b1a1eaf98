//! `RequestAuthentication`: JWT authentication of requests at the gateways, routes and
//! Services it targets (policy attachment, see [`super::policy_target`]), verified by Envoy's
//! `envoy.filters.http.jwt_authn`.

use super::policy_target::{PolicyAncestorStatus, PolicyTargetRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Status of a RequestAuthentication: a summary `Accepted` condition (True when at least one
/// target is attached; its message lists every target's outcome) and one entry per target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestAuthenticationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

/// JWT providers (who issues tokens, where their keys are, where the token is read from) and
/// what a request must present on the targets.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portolan.dev",
    version = "v1alpha1",
    kind = "RequestAuthentication",
    namespaced,
    status = "RequestAuthenticationStatus",
    shortname = "reqauthn",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct RequestAuthenticationSpec {
    /// What this applies to, in this namespace.
    #[schemars(length(min = 1, max = 16))]
    pub target_refs: Vec<PolicyTargetRef>,
    /// The token issuers a request may present a token of.
    #[schemars(length(min = 1, max = 16))]
    pub providers: Vec<JwtProvider>,
    /// What a request must present; absent: a valid token of any provider, required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirement: Option<JwtRequirement>,
}

/// One token issuer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.remoteJwks) != has(self.localJwks)",
    "message": "exactly one of remoteJwks, localJwks is required"
}]))]
pub struct JwtProvider {
    /// Unique in the policy; `requirement.providers` names it.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The `iss` claim tokens must carry.
    #[schemars(length(min = 1))]
    pub issuer: String,
    /// The token's `aud` must hold one of these; empty: any audience.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Keys fetched over HTTP(S) by the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_jwks: Option<RemoteJwks>,
    /// Keys given inline (a JWKS JSON document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_jwks: Option<LocalJwks>,
    /// Headers the token is read from; with none of `fromHeaders`, `fromParams`,
    /// `fromCookies`: `Authorization: Bearer <token>` and the `access_token` query parameter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters the token is read from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<String>,
    /// Cookies the token is read from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_cookies: Vec<String>,
    /// Claims copied into request headers for the upstream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claim_to_headers: Vec<ClaimToHeader>,
    /// Keep the token in the request sent upstream (default: removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_token: Option<bool>,
}

/// A JWKS served over HTTP(S). The proxy fetches it through a cluster Portolan creates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteJwks {
    /// `http://` or `https://` URI with a host name or IP address and optional port.
    #[schemars(length(min = 1, max = 2048))]
    pub uri: String,
    /// How long fetched keys are kept (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub cache_duration: Option<String>,
    /// Timeout of one fetch (default `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
}

/// An inline JWKS.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalJwks {
    /// The JWKS JSON document (`{"keys": [...]}`).
    #[schemars(length(min = 1))]
    pub inline: String,
}

/// A header carrying the token, after `prefix` (e.g. `Bearer `).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtHeader {
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Copies a claim (a top-level claim name, or nested `a.b`) into a request header.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimToHeader {
    #[schemars(length(min = 1))]
    pub claim: String,
    #[schemars(length(min = 1))]
    pub header: String,
}

/// What a request must present on the targets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtRequirement {
    /// `Required` (default): a request without a valid token gets 401. `Optional`: a request
    /// without a token passes (an invalid token is still refused).
    #[serde(default)]
    pub mode: JwtMode,
    /// The providers whose tokens are accepted; empty: any of the policy's providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum JwtMode {
    #[default]
    Required,
    Optional,
}

/// Where a remote JWKS is: scheme, host, port and the URI as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksUri {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// Parses a `remoteJwks.uri`: `http://` or `https://`, a host, an optional port.
pub fn parse_jwks_uri(uri: &str) -> Result<JwksUri, String> {
    let parsed = url::Url::parse(uri).map_err(|e| format!("{uri:?} is not a URI: {e}"))?;
    let tls = match parsed.scheme() {
        "https" => true,
        "http" => false,
        other => return Err(format!("scheme {other:?} is not http or https")),
    };
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{uri:?} has no host"))?;
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| format!("{uri:?} has no port"))?;
    Ok(JwksUri {
        tls,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
    })
}

//! Edge and API policies that run in the HTTP connection manager before routing: external
//! authorization ([`ExtAuth`]) and rate limits ([`RateLimit`]), independent of the CRD shapes.
//!
//! Where they apply (which Gateways, listeners and routes) is the policy attachment
//! framework's business; this module holds what each policy asks Envoy to do.

use crate::routing::Destination;
use portolan_api::ObjectRef;
use std::time::Duration;

/// Envoy's default check timeout, which Portolan keeps.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_millis(200);

/// Envoy's default rate limit service timeout, which Portolan keeps.
pub const DEFAULT_RLS_TIMEOUT: Duration = Duration::from_millis(20);

/// An ExtAuthPolicy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtAuth {
    pub source: ObjectRef,
    pub generation: i64,
    /// `None`: the policy turns authorization off for its targets.
    pub service: Option<AuthService>,
    /// Request headers sent to the service, lower-cased (empty: Envoy's default set).
    pub allowed_headers: Vec<String>,
    pub timeout: Duration,
    /// Let requests through when the service cannot answer.
    pub fail_open: bool,
    pub body: Option<BodySettings>,
}

/// The authorization service and its protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthService {
    Grpc(Destination),
    Http(HttpAuth),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpAuth {
    pub destination: Destination,
    /// Prepended to the checked request's path (empty: none).
    pub path_prefix: String,
    /// Headers of an allowing answer copied onto the upstream request, lower-cased.
    pub headers_to_upstream: Vec<String>,
    /// Headers of a denying answer returned to the client, lower-cased (empty: all).
    pub headers_to_client: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodySettings {
    pub max_bytes: u32,
    pub allow_partial: bool,
}

/// A RateLimitPolicy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub source: ObjectRef,
    pub generation: i64,
    pub local: Option<LocalLimit>,
    pub global: Option<GlobalLimit>,
}

/// A token bucket: `max_tokens` deep, `tokens_per_fill` added every `fill_interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalLimit {
    pub max_tokens: u32,
    pub tokens_per_fill: u32,
    pub fill_interval: Duration,
    /// Send `x-ratelimit-*` headers.
    pub response_headers: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalLimit {
    pub service: Destination,
    pub domain: String,
    pub descriptors: Vec<Vec<DescriptorEntry>>,
    pub timeout: Duration,
    /// Refuse requests when the service cannot answer.
    pub failure_mode_deny: bool,
    pub response_headers: bool,
}

/// Where one descriptor entry's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DescriptorEntry {
    RequestHeader { name: String, key: String },
    RemoteAddress,
    Path { key: String },
    Generic { key: String, value: String },
    JwtClaim { claim: String, key: String },
}

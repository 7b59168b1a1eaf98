//! The routing model: what requests for a host match and where they go.
//!
//! Independent of any CRD shape: Portolan's `TrafficRoute` maps onto it today, and Gateway API
//! routes (HTTPRoute, GRPCRoute, GAMMA) will map onto the same types, so translation is written
//! once. Durations are `std::time::Duration`; percentages are `f64` in 0..=100.

use portolan_api::ObjectRef;
use std::collections::BTreeMap;
use std::time::Duration;

/// Routing for a set of hosts, attached to the mesh and/or gateways.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpRoute {
    /// The object this came from (a TrafficRoute).
    pub source: ObjectRef,
    /// `metadata.generation`, for status `observedGeneration` (0 when the source has none).
    pub generation: i64,
    /// Host names as written (lower-cased): a Service short name (`reviews`), `svc.ns`, an FQDN,
    /// an ExternalService host, or for gateways any hostname, possibly `*.example.com`.
    pub hosts: Vec<String>,
    /// Where the route applies; empty means the mesh.
    pub parents: Vec<Parent>,
    /// HTTP rules in order: the first whose match fits a request wins.
    pub http: Vec<HttpRule>,
    /// TCP rules (on gateway TCP listeners, or mesh TCP later).
    pub tcp: Vec<TcpRule>,
}

/// What a route attaches to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Parent {
    /// The mesh outbound listener of every sidecar.
    Mesh,
    /// A Gateway by namespace and name.
    Gateway { namespace: String, name: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpRule {
    pub name: Option<String>,
    /// Any of these matches (OR); empty matches every request.
    pub matches: Vec<HttpMatch>,
    pub action: HttpAction,
    /// Whole-request timeout (Envoy route timeout); `None` keeps Envoy's default (15 s).
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    pub fault: Option<Fault>,
    /// Copies of each request go to every mirror (a Gateway API rule may have several).
    pub mirrors: Vec<Mirror>,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    pub cors: Option<Cors>,
}

/// All conditions must hold (AND).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HttpMatch {
    pub path: Option<PathMatch>,
    pub headers: Vec<HeaderMatch>,
    pub query_params: Vec<QueryParamMatch>,
    /// Upper-case HTTP method.
    pub method: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    /// RE2 syntax, matched against the whole path.
    Regex(String),
    /// A prefix of whole `/`-separated path elements (Gateway API `PathPrefix`): `/foo`
    /// matches `/foo` and `/foo/bar`, not `/foobar`. Written without a trailing `/`.
    SegmentPrefix(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    /// RE2 syntax, whole value.
    Regex(String),
    /// The header or parameter is present, with any value.
    Present,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Lower-case header name.
    pub name: String,
    pub value: StringMatch,
    /// Match when the condition does NOT hold.
    pub invert: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryParamMatch {
    pub name: String,
    pub value: StringMatch,
}

/// What a matched request gets.
#[derive(Clone, Debug, PartialEq)]
pub enum HttpAction {
    /// Proxy to weighted backends, optionally rewriting the path or authority on the way.
    Forward {
        backends: Vec<Backend>,
        rewrite: Option<Rewrite>,
    },
    Redirect(Redirect),
    DirectResponse {
        status: u16,
        body: Option<String>,
    },
}

/// A weighted destination. Weights are proportions: they need not sum to 100.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub destination: Destination,
    pub weight: u32,
    /// Header edits for requests sent to, and responses from, this backend only (Gateway API
    /// per-backendRef filters); applied after the rule's own.
    pub headers: BackendHeaders,
}

/// Per-backend header edits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendHeaders {
    pub request: HeaderOps,
    pub response: HeaderOps,
}

impl BackendHeaders {
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

/// A service (or ExternalService host), a port, and optionally a subset.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    /// As written: `reviews`, `reviews.shop`, `reviews.shop.svc.cluster.local`, or an external host.
    pub host: String,
    /// Required when the destination has more than one port.
    pub port: Option<u16>,
    pub subset: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// Replaces the matched path prefix (or the whole path for exact and regex matches).
    pub uri: Option<String>,
    /// Replaces the Host/authority header.
    pub authority: Option<String>,
    /// `uri` replaces the whole path even for a prefix match (Gateway API ReplaceFullPath).
    pub full_path: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// Replaces the whole path, or with `prefix` the part a prefix match matched.
    pub uri: Option<String>,
    /// `uri` replaces the matched prefix (Gateway API `ReplacePrefixMatch`).
    pub prefix: bool,
    pub authority: Option<String>,
    /// `http` or `https`.
    pub scheme: Option<String>,
    pub port: Option<u16>,
    /// 301, 302, 303, 307 or 308.
    pub code: u16,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    /// Envoy retry-on conditions (`5xx`, `gateway-error`, `reset`, `connect-failure`,
    /// `retriable-4xx`, `refused-stream`, ...). Empty means `5xx,connect-failure,reset`.
    pub retry_on: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FaultDelay {
    pub delay: Duration,
    pub percent: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FaultAbort {
    pub status: u16,
    pub percent: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mirror {
    pub destination: Destination,
    pub percent: f64,
}

/// Header edits: `set` overwrites, `add` appends, `remove` deletes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderOps {
    pub set: BTreeMap<String, String>,
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cors {
    pub allow_origins: Vec<StringMatch>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<Duration>,
    pub allow_credentials: Option<bool>,
}

/// Weighted TCP proxying for connections to a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpRule {
    /// The listener port this applies to; `None` for every port of the parent.
    pub port: Option<u16>,
    pub backends: Vec<Backend>,
}

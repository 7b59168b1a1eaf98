//! The destination policy model: how traffic to one service (and optionally one port) is
//! balanced, limited, checked and secured, and which subsets of its endpoints exist.

use portolan_api::ObjectRef;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct DestinationPolicy {
    /// The object this came from (a TrafficPolicy).
    pub source: ObjectRef,
    pub generation: i64,
    /// The destination as written: a Service name (`reviews`, `reviews.shop`, FQDN) or an
    /// ExternalService host. Resolved against the policy's namespace.
    pub host: String,
    /// Only this port of the destination; `None` for every port.
    pub port: Option<u16>,
    pub subsets: Vec<Subset>,
    pub load_balancer: Option<LoadBalancer>,
    pub connection_pool: Option<ConnectionPool>,
    pub outlier_detection: Option<OutlierDetection>,
    pub health_check: Option<HealthCheck>,
    pub tls: Option<UpstreamTls>,
}

/// A named group of endpoints selected by labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subset {
    pub name: String,
    /// Endpoints whose labels include all of these.
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LbAlgorithm {
    #[default]
    RoundRobin,
    LeastRequest,
    Random,
    RingHash,
    Maglev,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadBalancer {
    pub algorithm: LbAlgorithm,
    /// For RingHash and Maglev: what to hash.
    pub hash_key: Option<HashKey>,
    /// Prefer endpoints in the proxy's own zone (Envoy zone-aware routing).
    pub locality_aware: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    Header(String),
    Cookie {
        name: String,
        ttl: Option<Duration>,
        path: Option<String>,
    },
    SourceIp,
}

/// Circuit-breaker thresholds and connection settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionPool {
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
    pub connect_timeout: Option<Duration>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutlierDetection {
    pub consecutive_5xx_errors: Option<u32>,
    pub consecutive_gateway_errors: Option<u32>,
    pub interval: Option<Duration>,
    pub base_ejection_time: Option<Duration>,
    pub max_ejection_percent: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthCheckKind {
    Http {
        path: String,
        /// Host header; `None` uses the cluster name.
        host: Option<String>,
    },
    Tcp,
}

/// TLS origination towards the destination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// SNI to send; `None` sends none.
    pub sni: Option<String>,
    /// PEM CA bundle to verify the server with; `None` does not verify (explicit opt-in only).
    pub ca_certificates: Option<String>,
    /// Subject alternative names to accept (when verifying).
    pub subject_alt_names: Vec<String>,
    /// Skip verification (requires `ca_certificates` to be unset). Explicit and loud.
    pub insecure_skip_verify: bool,
}

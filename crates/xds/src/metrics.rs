//! Prometheus metrics of the xDS server: connected streams and proxies, pushes, bytes, push
//! latency, ACKs and NACKs, and convergence (see [`crate::convergence`]).
//!
//! Labels are `&'static str`, so counting on the stream path allocates nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::convergence::{self, Rollouts};
use crate::resource::ResourceType;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeltaLabels {
    delta: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientLabels {
    client: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Debug)]
struct Inner {
    connected: Family<DeltaLabels, Gauge>,
    proxies: Family<ClientLabels, Gauge>,
    pushes: Family<TypeLabels, Counter>,
    push_bytes: Family<TypeLabels, Counter>,
    push_seconds: HistogramFamily<TypeLabels>,
    nacks: Family<TypeLabels, Counter>,
    acks: Family<TypeLabels, Counter>,
    auth_refusals: Family<ReasonLabels, Counter>,
    convergence_seconds: Histogram,
    convergence_timeouts: Counter,
    rollouts: Rollouts,
}

/// The xDS server's metrics (cheap to clone).
#[derive(Clone, Debug)]
pub struct XdsMetrics {
    inner: Arc<Inner>,
}

impl Default for XdsMetrics {
    fn default() -> Self {
        Self::with_convergence_timeout(convergence::DEFAULT_TIMEOUT)
    }
}

/// Push latency buckets: 0.1 ms to about 3 s.
fn push_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

// === impl XdsMetrics ===

impl XdsMetrics {
    /// Registers `xds_connected_streams{delta}`, `xds_connected_proxies{client}`,
    /// `xds_pushes_total{type}`, `xds_push_bytes_total{type}`,
    /// `xds_push_latency_seconds{type}`, `xds_nacks_total{type}`, `xds_acks_total{type}`,
    /// `xds_auth_refusals_total{reason}`, `xds_convergence_seconds` and
    /// `xds_convergence_timeouts_total`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self::unregistered();
        let inner = &metrics.inner;
        registry.register(
            "xds_connected_streams",
            "Connected xDS streams",
            inner.connected.clone(),
        );
        registry.register(
            "xds_connected_proxies",
            "Connected xDS streams by client (envoy, grpc, other; from node.user_agent_name); \
             a proxy on ADS has one",
            inner.proxies.clone(),
        );
        registry.register("xds_pushes", "xDS responses sent", inner.pushes.clone());
        registry.register(
            "xds_push_bytes",
            "Encoded bytes of xDS responses sent",
            inner.push_bytes.clone(),
        );
        registry.register_with_unit(
            "xds_push_latency",
            "Time from a snapshot being set in the cache to a response of it handed to the stream",
            Unit::Seconds,
            inner.push_seconds.clone(),
        );
        registry.register("xds_nacks", "xDS NACKs received", inner.nacks.clone());
        registry.register("xds_acks", "xDS ACKs received", inner.acks.clone());
        registry.register(
            "xds_auth_refusals",
            "xDS streams refused for their service account token, by reason (missing, expired, \
             wrong_audience, invalid, unverifiable, group_mismatch, namespace_mismatch)",
            inner.auth_refusals.clone(),
        );
        registry.register_with_unit(
            "xds_convergence",
            "Time from the first change of a debounced batch to every connected proxy ACKing it",
            Unit::Seconds,
            inner.convergence_seconds.clone(),
        );
        registry.register(
            "xds_convergence_timeouts",
            "Batches of changes not ACKed by every connected proxy within the convergence timeout",
            inner.convergence_timeouts.clone(),
        );
        metrics
    }

    /// Metrics that are counted but exported nowhere (tests, tools).
    pub fn unregistered() -> Self {
        Self::default()
    }

    /// Unregistered metrics whose rollouts time out after `timeout`.
    pub fn with_convergence_timeout(timeout: Duration) -> Self {
        let convergence_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        let convergence_timeouts = Counter::default();
        let rollouts = Rollouts::new(
            timeout,
            convergence_seconds.clone(),
            convergence_timeouts.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                connected: Family::default(),
                proxies: Family::default(),
                pushes: Family::default(),
                push_bytes: Family::default(),
                push_seconds: Family::new_with_constructor(push_buckets),
                nacks: Family::default(),
                acks: Family::default(),
                auth_refusals: Family::default(),
                convergence_seconds,
                convergence_timeouts,
                rollouts,
            }),
        }
    }

    /// The convergence tracker the pipeline begins rollouts on.
    pub fn rollouts(&self) -> &Rollouts {
        &self.inner.rollouts
    }

    pub(crate) fn proxy_connected(&self, client: &'static str) {
        self.inner
            .proxies
            .get_or_create(&ClientLabels { client })
            .inc();
    }

    pub(crate) fn proxy_disconnected(&self, client: &'static str) {
        self.inner
            .proxies
            .get_or_create(&ClientLabels { client })
            .dec();
    }

    pub(crate) fn push_latency(&self, ty: ResourceType, published: Instant) {
        self.inner
            .push_seconds
            .get_or_create(&type_labels(ty))
            .observe(published.elapsed().as_secs_f64());
    }

    pub(crate) fn stream_opened(&self, delta: bool) {
        self.inner
            .connected
            .get_or_create(&delta_labels(delta))
            .inc();
    }

    pub(crate) fn stream_closed(&self, delta: bool) {
        self.inner
            .connected
            .get_or_create(&delta_labels(delta))
            .dec();
    }

    pub(crate) fn pushed(&self, ty: ResourceType, bytes: usize) {
        let labels = type_labels(ty);
        self.inner.pushes.get_or_create(&labels).inc();
        self.inner
            .push_bytes
            .get_or_create(&labels)
            .inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// A stream refused for its token (the reason's label).
    pub fn auth_refused(&self, reason: &'static str) {
        self.inner
            .auth_refusals
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub(crate) fn acked(&self, ty: ResourceType) {
        self.inner.acks.get_or_create(&type_labels(ty)).inc();
    }

    pub(crate) fn nacked(&self, ty: ResourceType) {
        self.inner.nacks.get_or_create(&type_labels(ty)).inc();
    }

    /// Connected streams (for tests and `/debug`).
    pub fn connected_streams(&self, delta: bool) -> i64 {
        self.inner
            .connected
            .get_or_create(&delta_labels(delta))
            .get()
    }

    /// Responses sent of a type.
    pub fn pushes(&self, ty: ResourceType) -> u64 {
        self.inner.pushes.get_or_create(&type_labels(ty)).get()
    }

    /// NACKs received for a type.
    pub fn nacks(&self, ty: ResourceType) -> u64 {
        self.inner.nacks.get_or_create(&type_labels(ty)).get()
    }

    /// Connected streams of a client kind (`envoy`, `grpc`, `other`).
    pub fn connected_proxies(&self, client: &'static str) -> i64 {
        self.inner
            .proxies
            .get_or_create(&ClientLabels { client })
            .get()
    }

    /// Rollouts that converged.
    pub fn convergences(&self) -> u64 {
        self.inner.rollouts.converged()
    }

    /// Rollouts that timed out.
    pub fn convergence_timeouts(&self) -> u64 {
        self.inner.convergence_timeouts.get()
    }
}

/// The kind of xDS client, from `node.user_agent_name`: `envoy`, `grpc` (gRPC's xDS clients
/// say `gRPC Go`, `gRPC Java`, ...) or `other`.
pub fn client_kind(user_agent_name: &str) -> &'static str {
    let name = user_agent_name.trim();
    if name.eq_ignore_ascii_case("envoy") {
        "envoy"
    } else if name
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("grpc"))
    {
        "grpc"
    } else {
        "other"
    }
}

fn type_labels(ty: ResourceType) -> TypeLabels {
    TypeLabels {
        r#type: ty.short_name(),
    }
}

fn delta_labels(delta: bool) -> DeltaLabels {
    DeltaLabels {
        delta: if delta { "true" } else { "false" },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn metrics_are_exported() {
        let mut registry = Registry::with_prefix("portolan");
        let metrics = XdsMetrics::new(&mut registry);
        metrics.stream_opened(true);
        metrics.pushed(ResourceType::Endpoint, 10);
        metrics.acked(ResourceType::Endpoint);
        metrics.nacked(ResourceType::Cluster);
        metrics.proxy_connected(client_kind("envoy"));
        metrics.push_latency(ResourceType::Listener, Instant::now());
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains("portolan_xds_connected_streams{delta=\"true\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("portolan_xds_pushes_total{type=\"eds\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("portolan_xds_push_bytes_total{type=\"eds\"} 10"),
            "{text}"
        );
        assert!(
            text.contains("portolan_xds_acks_total{type=\"eds\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("portolan_xds_nacks_total{type=\"cds\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("portolan_xds_connected_proxies{client=\"envoy\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("portolan_xds_push_latency_seconds_count{type=\"lds\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("portolan_xds_convergence_seconds_count 0"),
            "{text}"
        );
        assert!(
            text.contains("portolan_xds_convergence_timeouts_total 0"),
            "{text}"
        );
    }

    #[test]
    fn clients_are_classified_by_user_agent() {
        assert_eq!(client_kind("envoy"), "envoy");
        assert_eq!(client_kind("gRPC Go"), "grpc");
        assert_eq!(client_kind("grpc-java"), "grpc");
        assert_eq!(client_kind(""), "other");
        assert_eq!(client_kind("gr"), "other");
        assert_eq!(client_kind("gé-x"), "other");
    }
}

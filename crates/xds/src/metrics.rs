//! Prometheus metrics of the xDS server: connected streams, pushes, bytes, ACKs and NACKs.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::resource::ResourceType;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeltaLabels {
    delta: &'static str,
}

#[derive(Debug, Default)]
struct Inner {
    connected: Family<DeltaLabels, Gauge>,
    pushes: Family<TypeLabels, Counter>,
    push_bytes: Family<TypeLabels, Counter>,
    nacks: Family<TypeLabels, Counter>,
    acks: Family<TypeLabels, Counter>,
}

/// The xDS server's metrics (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct XdsMetrics {
    inner: Arc<Inner>,
}

// === impl XdsMetrics ===

impl XdsMetrics {
    /// Registers `xds_connected_streams{delta}`, `xds_pushes_total{type}`,
    /// `xds_push_bytes_total{type}`, `xds_nacks_total{type}` and `xds_acks_total{type}`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self::unregistered();
        let inner = &metrics.inner;
        registry.register(
            "xds_connected_streams",
            "Connected xDS streams",
            inner.connected.clone(),
        );
        registry.register("xds_pushes", "xDS responses sent", inner.pushes.clone());
        registry.register(
            "xds_push_bytes",
            "Encoded bytes of xDS responses sent",
            inner.push_bytes.clone(),
        );
        registry.register("xds_nacks", "xDS NACKs received", inner.nacks.clone());
        registry.register("xds_acks", "xDS ACKs received", inner.acks.clone());
        metrics
    }

    /// Metrics that are counted but exported nowhere (tests, tools).
    pub fn unregistered() -> Self {
        Self::default()
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
    }
}

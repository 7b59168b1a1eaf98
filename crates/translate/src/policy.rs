//! TrafficPolicy settings on a cluster: load balancing, circuit breakers, connect timeout,
//! outlier detection, active health checks and upstream TLS.
//!
//! Locality-aware balancing is not translated: Envoy's zone-aware routing needs the proxy's
//! own zone and a local cluster, which a proxy group does not know yet.

use crate::cluster::duration;
use crate::tls;
use envoy_types::pb::envoy::config::cluster::v3::circuit_breakers::Thresholds;
use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
use envoy_types::pb::envoy::config::cluster::v3::{CircuitBreakers, Cluster, OutlierDetection};
use envoy_types::pb::envoy::config::core::v3::health_check::{
    HealthChecker, HttpHealthCheck, TcpHealthCheck,
};
use envoy_types::pb::envoy::config::core::v3::{HealthCheck as EnvoyHealthCheck, RoutingPriority};
use envoy_types::pb::google::protobuf::UInt32Value;
use portolan_model::policy::{
    ConnectionPool, DestinationPolicy, HealthCheck, HealthCheckKind, LbAlgorithm,
    OutlierDetection as Outlier,
};

/// Ejection enforcement when consecutive errors are configured: always eject.
const ENFORCE_ALWAYS: u32 = 100;

/// Applies a policy's settings to a cluster (a Service port, subset or external cluster).
pub(crate) fn apply(cluster: &mut Cluster, policy: &DestinationPolicy) {
    if let Some(lb) = &policy.load_balancer {
        cluster.lb_policy = lb_policy(lb.algorithm) as i32;
    }
    if let Some(pool) = &policy.connection_pool {
        apply_pool(cluster, pool);
    }
    if let Some(od) = &policy.outlier_detection {
        cluster.outlier_detection = Some(outlier_detection(od));
    }
    if let Some(hc) = &policy.health_check {
        cluster.health_checks = vec![health_check(hc)];
    }
    if let Some(upstream) = &policy.tls {
        cluster.transport_socket = Some(tls::upstream_transport_socket(upstream));
    }
}

fn lb_policy(algorithm: LbAlgorithm) -> LbPolicy {
    match algorithm {
        LbAlgorithm::RoundRobin => LbPolicy::RoundRobin,
        LbAlgorithm::LeastRequest => LbPolicy::LeastRequest,
        LbAlgorithm::Random => LbPolicy::Random,
        LbAlgorithm::RingHash => LbPolicy::RingHash,
        LbAlgorithm::Maglev => LbPolicy::Maglev,
    }
}

fn apply_pool(cluster: &mut Cluster, pool: &ConnectionPool) {
    if let Some(timeout) = pool.connect_timeout {
        cluster.connect_timeout = Some(duration(timeout));
    }
    let thresholds = Thresholds {
        priority: RoutingPriority::Default as i32,
        max_connections: pool.max_connections.map(u32_value),
        max_pending_requests: pool.max_pending_requests.map(u32_value),
        max_requests: pool.max_requests.map(u32_value),
        max_retries: pool.max_retries.map(u32_value),
        ..Default::default()
    };
    if thresholds != (Thresholds::default()) {
        cluster.circuit_breakers = Some(CircuitBreakers {
            thresholds: vec![thresholds],
            ..Default::default()
        });
    }
}

fn outlier_detection(od: &Outlier) -> OutlierDetection {
    let enforce = |set: Option<u32>| set.map(|_| u32_value(ENFORCE_ALWAYS));
    OutlierDetection {
        consecutive_5xx: od.consecutive_5xx_errors.map(u32_value),
        enforcing_consecutive_5xx: enforce(od.consecutive_5xx_errors),
        consecutive_gateway_failure: od.consecutive_gateway_errors.map(u32_value),
        enforcing_consecutive_gateway_failure: enforce(od.consecutive_gateway_errors),
        interval: od.interval.map(duration),
        base_ejection_time: od.base_ejection_time.map(duration),
        max_ejection_percent: od.max_ejection_percent.map(u32_value),
        ..Default::default()
    }
}

/// An active health check; `no_traffic_interval` is the interval too, so a cluster without
/// traffic is checked as often as a busy one.
fn health_check(hc: &HealthCheck) -> EnvoyHealthCheck {
    let checker = match &hc.kind {
        HealthCheckKind::Http { path, host } => HealthChecker::HttpHealthCheck(HttpHealthCheck {
            path: path.clone(),
            host: host.clone().unwrap_or_default(),
            ..Default::default()
        }),
        HealthCheckKind::Tcp => HealthChecker::TcpHealthCheck(TcpHealthCheck::default()),
    };
    EnvoyHealthCheck {
        timeout: Some(duration(hc.timeout)),
        interval: Some(duration(hc.interval)),
        no_traffic_interval: Some(duration(hc.interval)),
        unhealthy_threshold: Some(u32_value(hc.unhealthy_threshold)),
        healthy_threshold: Some(u32_value(hc.healthy_threshold)),
        health_checker: Some(checker),
        ..Default::default()
    }
}

pub(crate) fn u32_value(value: u32) -> UInt32Value {
    UInt32Value { value }
}

//! TrafficPolicy -> [`DestinationPolicy`], with the health check defaults: interval 10s,
//! timeout 1s, unhealthyThreshold 3, healthyThreshold 1; algorithm RoundRobin.

use super::{count, duration, port};
use crate::policy::*;
use portolan_api::Resource;
use portolan_api::crd::traffic_policy as api;
use std::time::Duration;

/// Health check interval when none is given.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(10);
/// Health check timeout when none is given.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 1;

pub(super) fn traffic_policy(
    resource: &Resource,
    policy: &api::TrafficPolicy,
) -> DestinationPolicy {
    let spec = &policy.spec;
    DestinationPolicy {
        source: resource.object_ref(),
        generation: resource.generation(),
        host: spec.host.to_ascii_lowercase(),
        port: spec.port.map(port),
        subsets: spec
            .subsets
            .iter()
            .map(|s| Subset {
                name: s.name.clone(),
                labels: s.labels.clone(),
            })
            .collect(),
        load_balancer: spec.load_balancer.as_ref().map(load_balancer),
        connection_pool: spec.connection_pool.as_ref().map(|c| ConnectionPool {
            max_connections: count(c.max_connections),
            max_pending_requests: count(c.max_pending_requests),
            max_requests: count(c.max_requests),
            max_retries: count(c.max_retries),
            connect_timeout: duration(c.connect_timeout.as_deref()),
        }),
        outlier_detection: spec.outlier_detection.as_ref().map(|o| OutlierDetection {
            consecutive_5xx_errors: count(o.consecutive_5xx_errors),
            consecutive_gateway_errors: count(o.consecutive_gateway_errors),
            interval: duration(o.interval.as_deref()),
            base_ejection_time: duration(o.base_ejection_time.as_deref()),
            max_ejection_percent: count(o.max_ejection_percent),
        }),
        health_check: spec.health_check.as_ref().map(health_check),
        tls: spec.tls.as_ref().map(|t| UpstreamTls {
            sni: t.sni.clone(),
            ca_certificates: t.ca_certificates.clone(),
            subject_alt_names: t.subject_alt_names.clone(),
            insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
        }),
    }
}

fn load_balancer(lb: &api::LoadBalancer) -> LoadBalancer {
    LoadBalancer {
        algorithm: match lb.algorithm {
            None | Some(api::LbAlgorithm::RoundRobin) => LbAlgorithm::RoundRobin,
            Some(api::LbAlgorithm::LeastRequest) => LbAlgorithm::LeastRequest,
            Some(api::LbAlgorithm::Random) => LbAlgorithm::Random,
            Some(api::LbAlgorithm::RingHash) => LbAlgorithm::RingHash,
            Some(api::LbAlgorithm::Maglev) => LbAlgorithm::Maglev,
        },
        hash_key: lb.hash_key.as_ref().and_then(hash_key),
        locality_aware: lb.locality_aware.unwrap_or(false),
    }
}

fn hash_key(k: &api::HashKey) -> Option<HashKey> {
    if let Some(h) = &k.header {
        return Some(HashKey::Header(h.to_ascii_lowercase()));
    }
    if let Some(c) = &k.cookie {
        return Some(HashKey::Cookie {
            name: c.name.clone(),
            ttl: duration(c.ttl.as_deref()),
            path: c.path.clone(),
        });
    }
    (k.source_ip == Some(true)).then_some(HashKey::SourceIp)
}

fn health_check(h: &api::HealthCheck) -> HealthCheck {
    let kind = match &h.http {
        Some(http) => HealthCheckKind::Http {
            path: http.path.clone(),
            host: http.host.clone(),
        },
        None => HealthCheckKind::Tcp,
    };
    HealthCheck {
        kind,
        interval: duration(h.interval.as_deref()).unwrap_or(DEFAULT_HEALTH_INTERVAL),
        timeout: duration(h.timeout.as_deref()).unwrap_or(DEFAULT_HEALTH_TIMEOUT),
        unhealthy_threshold: count(h.unhealthy_threshold).unwrap_or(DEFAULT_UNHEALTHY_THRESHOLD),
        healthy_threshold: count(h.healthy_threshold).unwrap_or(DEFAULT_HEALTHY_THRESHOLD),
    }
}

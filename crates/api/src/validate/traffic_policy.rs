//! Validation of `TrafficPolicy`.

use super::*;
use crate::crd::traffic_policy::*;

pub(super) fn traffic_policy(policy: &TrafficPolicy, errors: &mut Errors) {
    object_name(policy.metadata.name.as_deref(), errors);
    let spec = &policy.spec;
    let path = spec_path();
    host_name(&spec.host, false, path.field("host"), errors);
    opt_port(spec.port, path.field("port"), errors);
    subsets(&spec.subsets, &path.field("subsets"), errors);
    if let Some(lb) = &spec.load_balancer {
        load_balancer(lb, path.field("loadBalancer"), errors);
    }
    if let Some(cp) = &spec.connection_pool {
        let p = path.field("connectionPool");
        count(cp.max_connections, 0, p.field("maxConnections"), errors);
        count(
            cp.max_pending_requests,
            0,
            p.field("maxPendingRequests"),
            errors,
        );
        count(cp.max_requests, 0, p.field("maxRequests"), errors);
        count(cp.max_retries, 0, p.field("maxRetries"), errors);
        duration(
            cp.connect_timeout.as_deref(),
            p.field("connectTimeout"),
            errors,
        );
    }
    if let Some(od) = &spec.outlier_detection {
        let p = path.field("outlierDetection");
        count(
            od.consecutive_5xx_errors,
            0,
            p.field("consecutive5xxErrors"),
            errors,
        );
        count(
            od.consecutive_gateway_errors,
            0,
            p.field("consecutiveGatewayErrors"),
            errors,
        );
        duration(od.interval.as_deref(), p.field("interval"), errors);
        duration(
            od.base_ejection_time.as_deref(),
            p.field("baseEjectionTime"),
            errors,
        );
        if let Some(m) = od.max_ejection_percent
            && !(0..=100).contains(&m)
        {
            errors.push(
                p.field("maxEjectionPercent"),
                format!("{m} is not a percentage: must be 0-100"),
            );
        }
    }
    if let Some(hc) = &spec.health_check {
        health_check(hc, path.field("healthCheck"), errors);
    }
    if let Some(tls) = &spec.tls {
        upstream_tls(tls, path.field("tls"), errors);
    }
}

fn subsets(subsets: &[Subset], path: &FieldPath, errors: &mut Errors) {
    for (i, s) in subsets.iter().enumerate() {
        dns_label(&s.name, "subset name", path.index(i).field("name"), errors);
        for key in s.labels.keys() {
            if key.is_empty() {
                errors.push(
                    path.index(i).field("labels"),
                    "label names must not be empty",
                );
            }
        }
    }
    unique(
        subsets,
        |s| s.name.clone(),
        path,
        "name",
        "subset name",
        errors,
    );
}

fn load_balancer(lb: &LoadBalancer, path: FieldPath, errors: &mut Errors) {
    let hashing = matches!(
        lb.algorithm,
        Some(LbAlgorithm::RingHash | LbAlgorithm::Maglev)
    );
    match (&lb.hash_key, hashing) {
        (None, true) => errors.push(
            path.field("hashKey"),
            "required with algorithm RingHash or Maglev",
        ),
        (Some(_), false) => errors.push(
            path.field("hashKey"),
            "only allowed with algorithm RingHash or Maglev",
        ),
        _ => {}
    }
    let Some(key) = &lb.hash_key else {
        return;
    };
    let p = path.field("hashKey");
    exactly_one(
        p.clone(),
        &[
            ("header", key.header.is_some()),
            ("cookie", key.cookie.is_some()),
            ("sourceIP", key.source_ip.is_some()),
        ],
        errors,
    );
    if let Some(h) = &key.header {
        header_name(h, p.field("header"), errors);
    }
    if let Some(c) = &key.cookie {
        if c.name.is_empty() {
            errors.push(p.field("cookie").field("name"), "required");
        }
        duration(c.ttl.as_deref(), p.field("cookie").field("ttl"), errors);
    }
    if key.source_ip == Some(false) {
        errors.push(
            p.field("sourceIP"),
            "false is not allowed: write sourceIP: true or omit it",
        );
    }
}

fn health_check(hc: &HealthCheck, path: FieldPath, errors: &mut Errors) {
    exactly_one(
        path.clone(),
        &[("http", hc.http.is_some()), ("tcp", hc.tcp.is_some())],
        errors,
    );
    if let Some(h) = &hc.http
        && !h.path.starts_with('/')
    {
        errors.push(
            path.field("http").field("path"),
            format!("{:?} is not a path: must start with '/'", h.path),
        );
    }
    duration(hc.interval.as_deref(), path.field("interval"), errors);
    duration(hc.timeout.as_deref(), path.field("timeout"), errors);
    count(
        hc.unhealthy_threshold,
        1,
        path.field("unhealthyThreshold"),
        errors,
    );
    count(
        hc.healthy_threshold,
        1,
        path.field("healthyThreshold"),
        errors,
    );
}

fn upstream_tls(tls: &UpstreamTls, path: FieldPath, errors: &mut Errors) {
    let skip = tls.insecure_skip_verify == Some(true);
    match (&tls.ca_certificates, skip) {
        (Some(_), true) => errors.push(
            path.field("insecureSkipVerify"),
            "not allowed with caCertificates: either verify with caCertificates or skip verification",
        ),
        (None, false) => errors.push(
            path.clone(),
            "caCertificates is required (or insecureSkipVerify: true to not verify the server)",
        ),
        _ => {}
    }
    if let Some(ca) = &tls.ca_certificates
        && let Err(why) = super::pem::certificates(ca)
    {
        errors.push(
            path.field("caCertificates"),
            format!("not a PEM certificate bundle: {why}"),
        );
    }
    if let Some(sni) = &tls.sni {
        host_name(sni, false, path.field("sni"), errors);
    }
    for (i, san) in tls.subject_alt_names.iter().enumerate() {
        if san.is_empty() {
            errors.push(path.field("subjectAltNames").index(i), "must not be empty");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::table;
    use serde_json::{Value, json};

    fn check(cases: &[(Value, &[&str])]) {
        table("portolan.dev/v1alpha1", "TrafficPolicy", cases);
    }

    #[test]
    fn policy_table() {
        check(&[
            (
                json!({"host": "reviews", "port": 9080,
                       "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
                       "loadBalancer": {"algorithm": "RingHash", "hashKey": {"cookie": {"name": "s", "ttl": "1h"}}},
                       "connectionPool": {"maxConnections": 1, "connectTimeout": "1s"},
                       "outlierDetection": {"consecutive5xxErrors": 3, "interval": "1s", "maxEjectionPercent": 100},
                       "healthCheck": {"http": {"path": "/healthz"}, "interval": "1s"},
                       "tls": {"sni": "api.example.com", "insecureSkipVerify": true}}),
                &[],
            ),
            (
                json!({"host": "Reviews!", "port": 0,
                       "subsets": [{"name": "v1"}, {"name": "V2"}, {"name": "v1"}],
                       "loadBalancer": {"algorithm": "RoundRobin", "hashKey": {"header": "x"}}}),
                &[
                    "spec.host: \"Reviews!\" is not a host name: must be a lower-case DNS name (dot-separated labels of letters, digits and '-')",
                    "spec.port: 0 is not a port: must be 1-65535",
                    "spec.subsets[1].name: \"V2\" is not a valid subset name: a DNS label (lower-case letters, digits and '-', 1-63 characters)",
                    "spec.subsets[2].name: duplicate subset name \"v1\"",
                    "spec.loadBalancer.hashKey: only allowed with algorithm RingHash or Maglev",
                ],
            ),
            (
                json!({"host": "r",
                       "loadBalancer": {"algorithm": "Maglev"},
                       "connectionPool": {"maxRequests": -1},
                       "outlierDetection": {"maxEjectionPercent": 120, "baseEjectionTime": "30"},
                       "healthCheck": {"http": {"path": "healthz"}, "tcp": {}, "healthyThreshold": 0},
                       "tls": {"caCertificates": "nope"}}),
                &[
                    "spec.loadBalancer.hashKey: required with algorithm RingHash or Maglev",
                    "spec.connectionPool.maxRequests: -1 is out of range: must be 0-4294967295",
                    "spec.outlierDetection.baseEjectionTime: \"30\" is not a duration: write a number and a unit of ms, s, m or h, like 500ms, 1.5s or 1m30s",
                    "spec.outlierDetection.maxEjectionPercent: 120 is not a percentage: must be 0-100",
                    "spec.healthCheck: exactly one of http, tcp is required, found http and tcp",
                    "spec.healthCheck.http.path: \"healthz\" is not a path: must start with '/'",
                    "spec.healthCheck.healthyThreshold: 0 is out of range: must be 1-4294967295",
                    "spec.tls.caCertificates: not a PEM certificate bundle: no certificate: expected -----BEGIN CERTIFICATE-----",
                ],
            ),
            (
                json!({"host": "r", "loadBalancer": {"algorithm": "RingHash", "hashKey": {"header": "x", "sourceIP": true}},
                       "tls": {}}),
                &[
                    "spec.loadBalancer.hashKey: exactly one of header, cookie, sourceIP is required, found header and sourceIP",
                    "spec.tls: caCertificates is required (or insecureSkipVerify: true to not verify the server)",
                ],
            ),
        ]);
    }
}

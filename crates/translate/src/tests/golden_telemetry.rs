//! Golden file of the mesh with telemetry on: JSON access logs, request ids and an
//! OpenTelemetry tracer exporting to the collector cluster.

use super::*;
use crate::json::resources_to_json;
use crate::telemetry::{AccessLog, COLLECTOR_CLUSTER, Collector, Telemetry};

fn telemetry_on() -> Options {
    Options {
        telemetry: Telemetry {
            access_log: AccessLog::Json,
            collector: Some(Collector {
                host: "otel-collector.observability".to_string(),
                port: 4317,
            }),
        },
        ..Options::default()
    }
}

#[test]
fn mesh_with_access_logs_and_tracing() {
    let resources = translate(&World::default(), &ProxyGroup::default(), &telemetry_on());
    assert!(
        resources
            .clusters
            .iter()
            .any(|c| c.name == COLLECTOR_CLUSTER)
    );
    let json = resources_to_json(&resources).expect("renders");
    insta::assert_json_snapshot!("mesh_with_access_logs_and_tracing", json);
}

#[test]
fn access_logs_alone_add_no_tracer_and_no_collector() {
    let options = Options {
        telemetry: Telemetry {
            access_log: AccessLog::Json,
            collector: None,
        },
        ..Options::default()
    };
    let resources = translate(&World::default(), &ProxyGroup::default(), &options);
    assert!(resources.clusters.is_empty());
    let text = resources_to_json(&resources).expect("renders").to_string();
    assert!(text.contains("envoy.access_loggers.stdout"), "{text}");
    assert!(text.contains("preserve_external_request_id"), "{text}");
    assert!(!text.contains("envoy.tracers.opentelemetry"), "{text}");
}

//! Telemetry of the mesh, applied to every HTTP connection manager (mesh and gateways): JSON
//! access logs to Envoy's stdout, request id and trace header propagation, and an optional
//! OpenTelemetry tracer exporting over gRPC to the `portolan-otel-collector` cluster.
//!
//! With telemetry off (the default) connection managers are left exactly as before.

use crate::cluster::{duration, http2_protocol_options};
use envoy_types::pb::envoy::config::accesslog::v3::{AccessLog as EnvoyAccessLog, access_log};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbPolicy,
};
use envoy_types::pb::envoy::config::core::v3::{GrpcService, grpc_service};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use envoy_types::pb::envoy::config::trace::v3::{OpenTelemetryConfig, tracing};
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3::StdoutAccessLog;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, RequestIdExtension, http_connection_manager,
};
use envoy_types::pb::envoy::extensions::request_id::uuid::v3::UuidRequestIdConfig;
use envoy_types::pb::google::protobuf::{Any, BoolValue, Value, value};
use envoy_types::util::pack_any;
use prost::{Message, Name};
use std::collections::BTreeMap;
use std::time::Duration;

/// Name of the cluster the OpenTelemetry tracer exports to.
pub const COLLECTOR_CLUSTER: &str = "portolan-otel-collector";

/// Well-known name of Envoy's stdout access logger.
const STDOUT_ACCESS_LOG: &str = "envoy.access_loggers.stdout";

/// Well-known name of Envoy's OpenTelemetry tracer.
const OPENTELEMETRY: &str = "envoy.tracers.opentelemetry";

/// The fields of a JSON access-log line and the Envoy command operator of each.
const JSON_FIELDS: &[(&str, &str)] = &[
    ("authority", "%REQ(:AUTHORITY)%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration_ms", "%DURATION%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("route_name", "%ROUTE_NAME%"),
    ("start_time", "%START_TIME%"),
    ("status", "%RESPONSE_CODE%"),
    ("traceparent", "%REQ(TRACEPARENT)%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
];

/// What the mesh reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Telemetry {
    pub access_log: AccessLog,
    /// The OpenTelemetry collector spans are exported to (OTLP over gRPC), if any.
    pub collector: Option<Collector>,
}

/// Access logging of every HTTP request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessLog {
    #[default]
    Off,
    /// One JSON object per request on Envoy's stdout.
    Json,
}

/// An OTLP/gRPC collector address: a DNS name or IP literal, and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collector {
    pub host: String,
    pub port: u16,
}

// === impl Telemetry ===

impl Telemetry {
    /// Whether anything is on (request ids are then propagated too).
    pub fn is_enabled(&self) -> bool {
        self.access_log != AccessLog::Off || self.collector.is_some()
    }
}

// === impl Collector ===

impl Collector {
    /// Parses `HOST:PORT` (`[v6]:PORT` for IPv6 literals).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not HOST:PORT"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?}: {port:?} is not a port number"))?;
        if host.is_empty() || port == 0 {
            return Err(format!("{s:?} is not HOST:PORT"));
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

/// Turns on the telemetry settings in a connection manager.
pub(crate) fn apply(hcm: &mut HttpConnectionManager, telemetry: &Telemetry) {
    if !telemetry.is_enabled() {
        return;
    }
    hcm.generate_request_id = Some(BoolValue { value: true });
    hcm.preserve_external_request_id = true;
    hcm.request_id_extension = Some(request_id_extension());
    if telemetry.access_log == AccessLog::Json {
        hcm.access_log = vec![json_access_log()];
    }
    if telemetry.collector.is_some() {
        hcm.tracing = Some(opentelemetry_tracing());
    }
}

/// UUID request ids that do not carry the trace decision, so a request id passed in from
/// outside stays as it was and sampling does not depend on it.
fn request_id_extension() -> RequestIdExtension {
    RequestIdExtension {
        typed_config: Some(pack_any(UuidRequestIdConfig {
            pack_trace_reason: Some(BoolValue { value: false }),
            use_request_id_for_trace_sampling: Some(BoolValue { value: false }),
        })),
    }
}

fn json_access_log() -> EnvoyAccessLog {
    EnvoyAccessLog {
        name: STDOUT_ACCESS_LOG.to_string(),
        config_type: Some(access_log::ConfigType::TypedConfig(stdout_json_config())),
        ..Default::default()
    }
}

/// `StdoutAccessLog{log_format{json_format}}`, encoded by hand: the generated `Struct` keeps
/// its fields in a `HashMap`, whose order (and so the encoded bytes, and so the resource's
/// version) would change from one translation to the next. These mirror messages have the same
/// field numbers and a sorted map.
fn stdout_json_config() -> Any {
    let fields = JSON_FIELDS
        .iter()
        .map(|(name, op)| {
            let value = Value {
                kind: Some(value::Kind::StringValue((*op).to_string())),
            };
            ((*name).to_string(), value)
        })
        .collect();
    let config = StdoutJson {
        log_format: Some(JsonFormatString {
            json_format: Some(SortedStruct { fields }),
        }),
    };
    Any {
        type_url: StdoutAccessLog::type_url(),
        value: config.encode_to_vec(),
    }
}

/// `envoy.extensions.access_loggers.stream.v3.StdoutAccessLog`, `log_format` only.
#[derive(Clone, PartialEq, Message)]
struct StdoutJson {
    #[prost(message, optional, tag = "1")]
    log_format: Option<JsonFormatString>,
}

/// `envoy.config.core.v3.SubstitutionFormatString`, `json_format` only.
#[derive(Clone, PartialEq, Message)]
struct JsonFormatString {
    #[prost(message, optional, tag = "2")]
    json_format: Option<SortedStruct>,
}

/// `google.protobuf.Struct` with its fields in name order.
#[derive(Clone, PartialEq, Message)]
struct SortedStruct {
    #[prost(btree_map = "string, message", tag = "1")]
    fields: BTreeMap<String, Value>,
}

fn opentelemetry_tracing() -> http_connection_manager::Tracing {
    let config = OpenTelemetryConfig {
        grpc_service: Some(GrpcService {
            target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                grpc_service::EnvoyGrpc {
                    cluster_name: COLLECTOR_CLUSTER.to_string(),
                    ..Default::default()
                },
            )),
            timeout: Some(duration(Duration::from_secs(1))),
            ..Default::default()
        }),
        ..Default::default()
    };
    http_connection_manager::Tracing {
        provider: Some(tracing::Http {
            name: OPENTELEMETRY.to_string(),
            config_type: Some(tracing::http::ConfigType::TypedConfig(pack_any(config))),
        }),
        ..Default::default()
    }
}

/// The STRICT_DNS, HTTP/2 cluster of the collector, when one is set.
pub(crate) fn collector_cluster(
    telemetry: &Telemetry,
    connect_timeout: Duration,
) -> Option<Cluster> {
    let collector = telemetry.collector.as_ref()?;
    let endpoint = LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(crate::address::socket_address(
                &collector.host,
                collector.port,
            )),
            ..Default::default()
        })),
        ..Default::default()
    };
    Some(Cluster {
        name: COLLECTOR_CLUSTER.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32)),
        connect_timeout: Some(duration(connect_timeout)),
        lb_policy: LbPolicy::RoundRobin as i32,
        typed_extension_protocol_options: http2_protocol_options(),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: COLLECTOR_CLUSTER.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![endpoint],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::Struct;

    #[test]
    fn collector_addresses_parse() {
        assert_eq!(
            Collector::parse("otel.observability:4317"),
            Ok(Collector {
                host: "otel.observability".into(),
                port: 4317
            })
        );
        assert_eq!(
            Collector::parse("[::1]:4317").map(|c| c.host),
            Ok("::1".to_string())
        );
        assert!(Collector::parse("otel").is_err());
        assert!(Collector::parse(":4317").is_err());
        assert!(Collector::parse("otel:http").is_err());
        assert!(Collector::parse("otel:0").is_err());
    }

    #[test]
    fn json_access_log_config_decodes_as_envoy_s_message_and_is_stable() {
        let any = stdout_json_config();
        assert_eq!(any, stdout_json_config(), "same bytes every time");
        let decoded = StdoutAccessLog::decode(any.value.as_slice()).expect("decodes");
        let Some(
            envoy_types::pb::envoy::extensions::access_loggers::stream::v3::stdout_access_log::AccessLogFormat::LogFormat(format),
        ) = decoded.access_log_format
        else {
            panic!("no log format: {decoded:?}");
        };
        let Some(envoy_types::pb::envoy::config::core::v3::substitution_format_string::Format::JsonFormat(Struct { fields })) =
            format.format
        else {
            panic!("not a JSON format: {format:?}");
        };
        assert_eq!(fields.len(), JSON_FIELDS.len());
        let status = fields.get("status").and_then(|v| v.kind.clone());
        assert_eq!(
            status,
            Some(value::Kind::StringValue("%RESPONSE_CODE%".into()))
        );
    }

    #[test]
    fn telemetry_off_leaves_the_connection_manager_alone() {
        let mut hcm = HttpConnectionManager::default();
        apply(&mut hcm, &Telemetry::default());
        assert_eq!(hcm, HttpConnectionManager::default());
        assert!(collector_cluster(&Telemetry::default(), Duration::from_secs(1)).is_none());
    }
}

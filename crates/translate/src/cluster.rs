//! Clusters: one EDS cluster per TCP Service port.

use crate::Options;
use crate::protocol;
use crate::service::PortPlan;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy,
};
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, Http2ProtocolOptions, config_source,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
};
use envoy_types::pb::google::protobuf::Duration;
use envoy_types::util::pack_any;
use std::collections::HashMap;

/// Key of `typed_extension_protocol_options` for upstream HTTP options.
pub(crate) const HTTP_PROTOCOL_OPTIONS: &str =
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// The EDS cluster of one Service port; its EDS service name is the cluster name.
pub(crate) fn eds_cluster(port: &PortPlan<'_>, options: &Options) -> Cluster {
    Cluster {
        name: port.cluster.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads_config_source()),
            service_name: port.cluster.clone(),
        }),
        connect_timeout: Some(duration(options.connect_timeout)),
        lb_policy: LbPolicy::RoundRobin as i32,
        typed_extension_protocol_options: protocol_options(port),
        ..Default::default()
    }
}

/// `ads: {}` with `resource_api_version: V3`: fetch over the ADS stream.
pub(crate) fn ads_config_source() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource::default(),
        )),
        ..Default::default()
    }
}

fn protocol_options(
    port: &PortPlan<'_>,
) -> HashMap<String, envoy_types::pb::google::protobuf::Any> {
    if protocol::is_http2(port.port) {
        http2_protocol_options()
    } else {
        HashMap::new()
    }
}

/// `typed_extension_protocol_options` that make Envoy speak HTTP/2 (prior knowledge) upstream.
pub(crate) fn http2_protocol_options() -> HashMap<String, envoy_types::pb::google::protobuf::Any> {
    let http2 = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            },
        )),
        ..Default::default()
    };
    HashMap::from([(HTTP_PROTOCOL_OPTIONS.to_string(), pack_any(http2))])
}

/// A protobuf Duration; saturates instead of overflowing.
pub(crate) fn duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or_default(),
    }
}

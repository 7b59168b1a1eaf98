//! Mesh identity in translation: the workload a proxy group is, the SDS secrets its
//! certificates come in, and the TLS contexts of mutual TLS between mesh proxies.
//!
//! Certificates are never inline: clusters and listeners name two SDS secrets,
//! [`WORKLOAD_CERT_SECRET`] (the group's own certificate and key) and [`TRUST_BUNDLE_SECRET`]
//! (the mesh root), fetched over ADS. The names are the same for every group; each group's
//! snapshot holds its own identity's secret under that name (see [`workload_secrets`]), so
//! cluster translation does not depend on the identity and a rotation changes one secret.

use crate::cluster::ads_config_source;
use crate::tls::inline;
use envoy_types::pb::envoy::config::core::v3::TransportSocket;
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
    SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext,
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
    secret,
    subject_alt_name_matcher::SanType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::util::pack_any;
use portolan_model::group::WorkloadKey;

/// SDS name of a group's workload certificate and key.
pub const WORKLOAD_CERT_SECRET: &str = "portolan-workload-cert";
/// SDS name of the mesh root certificates peers are verified with.
pub const TRUST_BUNDLE_SECRET: &str = "portolan-trust-bundle";

/// Well-known name of the TLS transport socket.
const TLS_SOCKET: &str = "envoy.transport_sockets.tls";

/// Translation options of the mesh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshOptions {
    /// The SPIFFE trust domain (`spiffe://TRUST_DOMAIN/ns/NS/sa/SA`).
    pub trust_domain: String,
    /// The inbound listener's port when the node names none (`node.metadata.inboundPort`).
    pub inbound_port: u16,
    /// The longest a mutual TLS connection to a mesh Service lasts (the workload certificate
    /// lifetime): Envoy closes it gracefully after that, so no connection outlives the
    /// certificate that authenticated it, and rotated certificates are used by the next one.
    pub max_connection_duration: Option<std::time::Duration>,
    /// What a workload's sidecar does with captured connections to destinations Portolan does
    /// not know (see [`crate::capture`]).
    pub outbound_policy: crate::capture::OutboundPolicy,
    /// Whether a policy change closes the open connections it refuses on the inbound
    /// listener's TCP ports (see [`crate::inbound_tcp`]; the sidecar's bootstrap needs Envoy's
    /// internal listener extension, which `portolan bootstrap` adds).
    pub tcp_connection_checks: bool,
}

impl Default for MeshOptions {
    fn default() -> Self {
        Self {
            trust_domain: "cluster.local".to_string(),
            inbound_port: 15006,
            max_connection_duration: None,
            outbound_policy: crate::capture::OutboundPolicy::AllowAny,
            tcp_connection_checks: true,
        }
    }
}

/// A proxy group with a proven identity: a workload of a namespace running as a service
/// account, and where its application listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    pub namespace: String,
    pub service_account: String,
    /// The application's port on 127.0.0.1 (`node.metadata.appPort`); without one there is
    /// no inbound listener. The other ports the inbound listener serves come from the
    /// Services of the workload's service account (see [`crate::inbound`]).
    pub app_port: Option<u16>,
    /// The inbound listener's port (`node.metadata.inboundPort`; default
    /// [`MeshOptions::inbound_port`]).
    pub inbound_port: Option<u16>,
    /// The mesh outbound listener's port, when not the global one
    /// (`node.metadata.outboundPort`: several sidecars on one host).
    pub outbound_port: Option<u16>,
    /// The application port speaks TCP, not HTTP (`node.metadata.appProtocol: tcp`; without
    /// it, the Service port targeting it decides).
    pub tcp: bool,
}

// === impl Workload ===

impl From<&WorkloadKey> for Workload {
    /// The workload a group key names (`tcp`: its protocol is `tcp`, in any case).
    fn from(key: &WorkloadKey) -> Self {
        Self {
            namespace: key.namespace.clone(),
            service_account: key.service_account.clone(),
            app_port: key.app_port,
            inbound_port: key.inbound_port,
            outbound_port: key.outbound_port,
            tcp: key
                .protocol
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case("tcp")),
        }
    }
}

impl Workload {
    /// The workload's SPIFFE ID.
    pub fn spiffe_id(&self, trust_domain: &str) -> String {
        spiffe_id(trust_domain, &self.namespace, &self.service_account)
    }
}

/// `spiffe://TD/ns/NS/sa/SA`.
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

/// The SDS secrets of a workload: its certificate chain and key under
/// [`WORKLOAD_CERT_SECRET`], the root under [`TRUST_BUNDLE_SECRET`].
pub fn workload_secrets(cert_chain_pem: &str, key_pem: &str, root_pem: &str) -> [Secret; 2] {
    [
        Secret {
            name: WORKLOAD_CERT_SECRET.to_string(),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(inline(cert_chain_pem)),
                private_key: Some(inline(key_pem)),
                ..Default::default()
            })),
        },
        Secret {
            name: TRUST_BUNDLE_SECRET.to_string(),
            r#type: Some(secret::Type::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: Some(inline(root_pem)),
                    ..Default::default()
                },
            )),
        },
    ]
}

fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(ads_config_source()),
    }
}

fn uri_san(pattern: MatchPattern) -> SubjectAltNameMatcher {
    SubjectAltNameMatcher {
        san_type: SanType::Uri as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(pattern),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The workload certificate, and peers verified against the trust bundle with SANs `sans`.
fn common_context(sans: Vec<SubjectAltNameMatcher>) -> CommonTlsContext {
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![sds(WORKLOAD_CERT_SECRET)],
        validation_context_type: Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: sans,
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(sds(TRUST_BUNDLE_SECRET)),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

fn transport_socket(config: envoy_types::pb::google::protobuf::Any) -> TransportSocket {
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(config)),
    }
}

/// Mutual TLS towards a mesh Service: the workload certificate, and the server must present
/// one of `server_ids` (SPIFFE IDs; a trailing `/` means any ID with that prefix).
pub(crate) fn upstream_mtls(server_ids: &[String]) -> TransportSocket {
    let sans = server_ids
        .iter()
        .map(|id| {
            if id.ends_with('/') {
                uri_san(MatchPattern::Prefix(id.clone()))
            } else {
                uri_san(MatchPattern::Exact(id.clone()))
            }
        })
        .collect();
    transport_socket(pack_any(UpstreamTlsContext {
        common_tls_context: Some(common_context(sans)),
        ..Default::default()
    }))
}

/// Bounds how long the cluster's HTTP connections last (keeping its HTTP/2 setting, if any).
pub(crate) fn bound_connection_duration(
    cluster: &mut envoy_types::pb::envoy::config::cluster::v3::Cluster,
    max: std::time::Duration,
) {
    use crate::cluster::HTTP_PROTOCOL_OPTIONS;
    use envoy_types::pb::envoy::config::core::v3::{
        Http1ProtocolOptions, HttpProtocolOptions as CommonOptions,
    };
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
    };
    use prost::Message;
    let options = &mut cluster.typed_extension_protocol_options;
    let mut http = options
        .get(HTTP_PROTOCOL_OPTIONS)
        .and_then(|any| HttpProtocolOptions::decode(any.value.as_slice()).ok())
        .unwrap_or_else(|| HttpProtocolOptions {
            upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::HttpProtocolOptions(
                        Http1ProtocolOptions::default(),
                    )),
                },
            )),
            ..Default::default()
        });
    http.common_http_protocol_options = Some(CommonOptions {
        max_connection_duration: Some(crate::cluster::duration(max)),
        ..http.common_http_protocol_options.unwrap_or_default()
    });
    options.insert(HTTP_PROTOCOL_OPTIONS.to_string(), pack_any(http));
}

/// Mutual TLS termination on the inbound listener: the client must present a certificate of
/// the trust domain.
pub(crate) fn downstream_mtls(trust_domain: &str) -> TransportSocket {
    let sans = vec![uri_san(MatchPattern::Prefix(format!(
        "spiffe://{trust_domain}/"
    )))];
    transport_socket(pack_any(DownstreamTlsContext {
        common_tls_context: Some(common_context(sans)),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_keys_workload_is_the_translated_workload() {
        let key = WorkloadKey {
            app_port: Some(8080),
            protocol: Some("TCP".into()),
            ..WorkloadKey::new("shop", "web")
        };
        let w = Workload::from(&key);
        assert_eq!(w.app_port, Some(8080));
        assert_eq!(w.inbound_port, None);
        assert!(w.tcp);
        assert_eq!(w.spiffe_id("td"), "spiffe://td/ns/shop/sa/web");
        assert!(!Workload::from(&WorkloadKey::new("shop", "web")).tcp);
    }
}

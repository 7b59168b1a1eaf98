//! TLS transport sockets: upstream origination (TrafficPolicy `tls`) and downstream
//! termination (Gateway HTTPS listeners).

use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
use envoy_types::pb::envoy::config::core::v3::{DataSource, TransportSocket, data_source};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SubjectAltNameMatcher,
    TlsCertificate, UpstreamTlsContext, common_tls_context::ValidationContextType,
    subject_alt_name_matcher::SanType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use envoy_types::util::pack_any;
use portolan_model::gateway::TlsSecret;
use portolan_model::policy::UpstreamTls;

/// Well-known name of the TLS transport socket.
const TLS_SOCKET: &str = "envoy.transport_sockets.tls";

/// TLS towards the endpoints: SNI, and the CA and SANs to verify the server with (no
/// verification when there is no CA or verification is skipped).
pub(crate) fn upstream_transport_socket(tls: &UpstreamTls) -> TransportSocket {
    let validation = tls
        .ca_certificates
        .as_ref()
        .filter(|_| !tls.insecure_skip_verify)
        .map(|ca| {
            ValidationContextType::ValidationContext(CertificateValidationContext {
                trusted_ca: Some(inline(ca)),
                match_typed_subject_alt_names: tls
                    .subject_alt_names
                    .iter()
                    .map(|n| dns_san(n))
                    .collect(),
                ..Default::default()
            })
        });
    let context = UpstreamTlsContext {
        sni: tls.sni.clone().unwrap_or_default(),
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: validation,
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(pack_any(context))),
    }
}

/// TLS termination with a Secret's certificate chain and key, inline.
pub(crate) fn downstream_transport_socket(secret: &TlsSecret) -> TransportSocket {
    let context = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificates: vec![TlsCertificate {
                certificate_chain: Some(inline(&secret.cert_chain)),
                private_key: Some(inline(&secret.private_key)),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(pack_any(context))),
    }
}

/// TLS termination for a Gateway API HTTPS listener: every certificate of its
/// certificateRefs (Envoy picks by SNI and key type), ALPN `h2` and `http/1.1` (gRPC needs h2).
pub(crate) fn terminating_transport_socket(certificates: &[&TlsSecret]) -> TransportSocket {
    let context = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificates: certificates
                .iter()
                .map(|s| TlsCertificate {
                    certificate_chain: Some(inline(&s.cert_chain)),
                    private_key: Some(inline(&s.private_key)),
                    ..Default::default()
                })
                .collect(),
            alpn_protocols: vec!["h2".to_string(), "http/1.1".to_string()],
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(pack_any(context))),
    }
}

fn dns_san(name: &str) -> SubjectAltNameMatcher {
    SubjectAltNameMatcher {
        san_type: SanType::Dns as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(name.to_string())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn inline(text: &str) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::InlineString(text.to_string())),
        ..Default::default()
    }
}

//! TLS transport sockets: upstream origination (TrafficPolicy `tls`, Gateway API
//! BackendTLSPolicy) and downstream termination (Gateway HTTPS listeners).
//!
//! A gateway never carries a private key in its listener: each terminating filter chain names
//! its certificates as SDS secrets over ADS ([`gateway_secret_name`]: `gateway-cert|NS/NAME`
//! of the `kubernetes.io/tls` Secret), and the group's snapshot holds those secrets
//! ([`GatewaySecrets`]), so only the proxies of the gateway's group receive the key, and a
//! rotated Secret is one new SDS secret while the listener stays the same.

use crate::cluster::ads_config_source;
use crate::provenance::{Entry, Provenance, ResourceKind, origins};
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
use envoy_types::pb::envoy::config::core::v3::{DataSource, TransportSocket, data_source};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
    SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext,
    certificate_validation_context::TrustChainVerification,
    common_tls_context::ValidationContextType, secret, subject_alt_name_matcher::SanType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use envoy_types::util::pack_any;
use portolan_api::ObjectRef;
use portolan_model::gateway::TlsSecret;
use portolan_model::gateway_api::ClientValidation;
use portolan_model::gateway_api::backend_tls::{BackendTls, SYSTEM_CA_BUNDLE, San, Trust};
use portolan_model::policy::UpstreamTls;
use std::collections::{BTreeMap, BTreeSet};

/// Prefix of the SDS names of gateway certificates.
pub const GATEWAY_CERT_PREFIX: &str = "gateway-cert|";

/// Prefix of the SDS names of the client-certificate CAs of Gateway API HTTPS listeners
/// (`gateway-client-ca|NS/GATEWAY/PORT`).
pub const GATEWAY_CLIENT_CA_PREFIX: &str = "gateway-client-ca|";

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

/// TLS towards a Service port a BackendTLSPolicy covers: SNI `hostname`, the server verified
/// against the policy's CA bundle (inline) or the system trust store ([`SYSTEM_CA_BUNDLE`] on
/// the proxy), and one of the policy's subject alternative names required. `http2`: the
/// cluster speaks HTTP/2 (gRPC), so ALPN offers `h2`.
pub(crate) fn backend_transport_socket(tls: &BackendTls, http2: bool) -> TransportSocket {
    let trusted_ca = match &tls.trust {
        Trust::Bundle(pem) => inline(pem),
        Trust::System => DataSource {
            specifier: Some(data_source::Specifier::Filename(
                SYSTEM_CA_BUNDLE.to_string(),
            )),
            ..Default::default()
        },
    };
    let validation = CertificateValidationContext {
        trusted_ca: Some(trusted_ca),
        match_typed_subject_alt_names: tls
            .subject_alt_names
            .iter()
            .map(|san| match san {
                San::Dns(name) => dns_san(name),
                San::Uri(uri) => san_matcher(SanType::Uri, uri),
            })
            .collect(),
        ..Default::default()
    };
    let context = UpstreamTlsContext {
        sni: tls.sni.clone(),
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: Some(ValidationContextType::ValidationContext(validation)),
            alpn_protocols: if http2 {
                vec!["h2".to_string()]
            } else {
                Vec::new()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(pack_any(context))),
    }
}

/// The SDS name of a gateway certificate: `gateway-cert|NS/NAME` of its Secret.
pub fn gateway_secret_name(source: &ObjectRef) -> String {
    format!("{GATEWAY_CERT_PREFIX}{}/{}", source.namespace, source.name)
}

/// The SDS secrets a gateway group's listeners name, by name (each Secret once), with the
/// objects behind each (the Secret and the Gateways whose listeners name it).
#[derive(Debug, Default)]
pub(crate) struct GatewaySecrets(BTreeMap<String, (Secret, BTreeSet<ObjectRef>)>);

// === impl GatewaySecrets ===

impl GatewaySecrets {
    /// Records `tls` (a certificate chain and key) served by `gateway`'s listener and gives
    /// the SDS reference to it.
    pub(crate) fn reference(&mut self, tls: &TlsSecret, gateway: &ObjectRef) -> SdsSecretConfig {
        let name = gateway_secret_name(&tls.source);
        let (_, from) = self.0.entry(name.clone()).or_insert_with(|| {
            let secret = Secret {
                name: name.clone(),
                r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                    certificate_chain: Some(inline(&tls.cert_chain)),
                    private_key: Some(inline(&tls.private_key)),
                    ..Default::default()
                })),
            };
            (secret, BTreeSet::from([tls.source.clone()]))
        });
        from.insert(gateway.clone());
        SdsSecretConfig {
            name,
            sds_config: Some(ads_config_source()),
        }
    }

    /// Records the CA bundle client certificates are verified with on a listener of
    /// `gateway` and gives the SDS reference to it (a validation context secret: in mode
    /// `AllowInsecureFallback` it accepts certificates that do not verify).
    pub(crate) fn validation(
        &mut self,
        v: &ClientValidation,
        gateway: &ObjectRef,
    ) -> SdsSecretConfig {
        let name = format!("{GATEWAY_CLIENT_CA_PREFIX}{}", v.name);
        let (_, from) = self.0.entry(name.clone()).or_insert_with(|| {
            let trust = if v.insecure_fallback {
                TrustChainVerification::AcceptUntrusted
            } else {
                TrustChainVerification::VerifyTrustChain
            };
            let secret = Secret {
                name: name.clone(),
                r#type: Some(secret::Type::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: Some(inline(&v.ca_bundle)),
                        trust_chain_verification: trust as i32,
                        ..Default::default()
                    },
                )),
            };
            (secret, v.sources.iter().cloned().collect())
        });
        from.insert(gateway.clone());
        SdsSecretConfig {
            name,
            sds_config: Some(ads_config_source()),
        }
    }

    /// The recorded secrets, sorted by name, each recorded in `provenance`.
    pub(crate) fn into_secrets(self, provenance: &mut Provenance) -> Vec<Secret> {
        self.0
            .into_values()
            .map(|(secret, from)| {
                provenance.push(Entry::new(
                    ResourceKind::Secret,
                    &secret.name,
                    origins(from),
                ));
                secret
            })
            .collect()
    }
}

/// TLS termination with a Secret's certificate chain and key, named over SDS.
pub(crate) fn downstream_transport_socket(
    tls: &TlsSecret,
    gateway: &ObjectRef,
    secrets: &mut GatewaySecrets,
) -> TransportSocket {
    let context = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![secrets.reference(tls, gateway)],
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
/// certificateRefs named over SDS (Envoy picks by SNI and key type), ALPN `h2` and
/// `http/1.1` (gRPC needs h2).
pub(crate) fn terminating_transport_socket(
    certificates: &[&TlsSecret],
    client_validation: Option<&ClientValidation>,
    gateway: &ObjectRef,
    secrets: &mut GatewaySecrets,
) -> TransportSocket {
    let validation = client_validation.map(|v| {
        ValidationContextType::ValidationContextSdsSecretConfig(secrets.validation(v, gateway))
    });
    let context = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: certificates
                .iter()
                .map(|s| secrets.reference(s, gateway))
                .collect(),
            validation_context_type: validation,
            alpn_protocols: vec!["h2".to_string(), "http/1.1".to_string()],
            ..Default::default()
        }),
        // AllowValidOnly: no certificate, no connection. AllowInsecureFallback asks for one
        // and lets a client without it through.
        require_client_certificate: client_validation
            .map(|v| !v.insecure_fallback)
            .map(|b| envoy_types::pb::google::protobuf::BoolValue { value: b }),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(pack_any(context))),
    }
}

fn dns_san(name: &str) -> SubjectAltNameMatcher {
    san_matcher(SanType::Dns, name)
}

fn san_matcher(san_type: SanType, value: &str) -> SubjectAltNameMatcher {
    SubjectAltNameMatcher {
        san_type: san_type as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(value.to_string())),
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

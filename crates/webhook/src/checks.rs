//! Checks on one group's translation: the pipeline's own snapshot assembly and consistency
//! check ([`portolan_pipeline::translate_checked`]: no duplicate names, every EDS cluster has
//! its assignment, every RDS name exists, the group's scope parses), and what stock Envoy
//! would NACK although every object is valid on its own: a downstream TLS certificate whose
//! private key is another certificate's (inline, or in the SDS secret a filter chain names:
//! gateway keys travel as the group's SDS secrets).

use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    DownstreamTlsContext, Secret, TlsCertificate, secret,
};
use portolan_model::World;
use portolan_pipeline::BuildError;
use portolan_translate::{Options, ProxyGroup};
use prost::Message;
use std::collections::HashMap;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;

/// Why translated resources would not be served, or not be accepted by Envoy.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CheckError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("listener {listener:?} filter chain {chain}: {reason}")]
    Tls {
        listener: String,
        chain: usize,
        reason: String,
    },
}

/// Translates `world` for `group` and runs every check on the result.
pub fn group(world: &World, group: &ProxyGroup, options: &Options) -> Result<(), CheckError> {
    let (resources, _snapshot) = portolan_pipeline::translate_checked(world, group, options)?;
    let secrets: HashMap<&str, &Secret> = resources
        .secrets
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    for listener in &resources.listeners {
        tls_pairs(listener, &secrets)?;
    }
    Ok(())
}

/// Every certificate of the listener's TLS contexts (inline, or the group's SDS secret named)
/// pairs with its private key.
fn tls_pairs(listener: &Listener, secrets: &HashMap<&str, &Secret>) -> Result<(), CheckError> {
    for (chain, fc) in listener.filter_chains.iter().enumerate() {
        let fail = |reason: String| CheckError::Tls {
            listener: listener.name.clone(),
            chain,
            reason,
        };
        let Some(ConfigType::TypedConfig(any)) = fc
            .transport_socket
            .as_ref()
            .and_then(|t| t.config_type.as_ref())
        else {
            continue;
        };
        if !any.type_url.ends_with("DownstreamTlsContext") {
            continue;
        }
        let context = DownstreamTlsContext::decode(any.value.as_slice())
            .map_err(|e| fail(format!("TLS context does not decode: {e}")))?;
        let common = context.common_tls_context.unwrap_or_default();
        let by_sds = common
            .tls_certificate_sds_secret_configs
            .iter()
            .filter_map(|c| secrets.get(c.name.as_str()))
            .filter_map(|s| match &s.r#type {
                Some(secret::Type::TlsCertificate(cert)) => Some(cert),
                _ => None,
            });
        let certificates: Vec<&TlsCertificate> =
            common.tls_certificates.iter().chain(by_sds).collect();
        for cert in certificates {
            let (Some(chain_pem), Some(key_pem)) = (
                inline(cert.certificate_chain.as_ref()),
                inline(cert.private_key.as_ref()),
            ) else {
                continue;
            };
            pair(chain_pem, key_pem).map_err(fail)?;
        }
    }
    Ok(())
}

/// The inline bytes of a data source (files and env vars are Envoy's to read).
fn inline(source: Option<&DataSource>) -> Option<&[u8]> {
    match source?.specifier.as_ref()? {
        Specifier::InlineString(s) => Some(s.as_bytes()),
        Specifier::InlineBytes(b) => Some(b),
        _ => None,
    }
}

/// Whether the key is the certificate's (the first certificate of the chain).
fn pair(chain_pem: &[u8], key_pem: &[u8]) -> Result<(), String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("certificate chain: no certificate".to_string());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("private key: {e}"))?;
    CertifiedKey::from_der(chain, key, &ring::default_provider())
        .map(drop)
        .map_err(|e| {
            format!("the private key does not belong to the certificate, Envoy would reject the listener ({e})")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, filter};
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        HttpConnectionManager, Rds, http_connection_manager::RouteSpecifier,
    };
    use envoy_types::util::pack_any;

    fn pem_pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    /// The snapshot check the pipeline applies, as the dry run sees it.
    #[test]
    fn a_listener_naming_a_missing_route_configuration_fails_the_snapshot_check() {
        let hcm = HttpConnectionManager {
            stat_prefix: "x".into(),
            route_specifier: Some(RouteSpecifier::Rds(Rds {
                route_config_name: "missing".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let listener = Listener {
            name: "l".into(),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: "envoy.filters.network.http_connection_manager".into(),
                    config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let r = portolan_translate::Resources {
            listeners: vec![listener],
            ..Default::default()
        };
        let err = CheckError::from(BuildError::from(
            portolan_pipeline::snapshot(&r, None).expect_err("inconsistent"),
        ));
        assert!(err.to_string().contains("\"missing\""), "{err}");
        assert!(
            err.to_string().starts_with("inconsistent snapshot: "),
            "{err}"
        );
    }

    #[test]
    fn certificate_and_key_must_pair() {
        let (cert_a, key_a) = pem_pair("a.example");
        let (_, key_b) = pem_pair("b.example");
        assert_eq!(pair(cert_a.as_bytes(), key_a.as_bytes()), Ok(()));
        let err = pair(cert_a.as_bytes(), key_b.as_bytes()).expect_err("mismatch");
        assert!(err.contains("does not belong"), "{err}");
        assert!(pair(b"", key_a.as_bytes()).is_err());
    }
}

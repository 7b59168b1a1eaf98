//! TLS for the CLI's admin client (`proxy-status`, `config-dump` with `--xds-ca`): the same
//! material `portolan bootstrap` gives Envoy: a CA bundle to verify Portolan's certificate, the
//! name to verify it for (`--xds-sni`, default the host of `--server`; an IP address is checked
//! against IP SANs and never sent as SNI), and optionally a client certificate (mutual TLS).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

/// What the admin client needs to speak TLS to Portolan's xDS port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA bundle Portolan's certificate must chain to.
    pub ca: PathBuf,
    /// PEM client certificate and key (mutual TLS).
    pub client: Option<(PathBuf, PathBuf)>,
    /// The name to verify Portolan's certificate for; default the server's host.
    pub sni: Option<String>,
}

/// Why the TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0:?} is not a valid server name")]
    Name(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

// === impl ClientTls ===

impl ClientTls {
    /// A connector and the server name to present for `host` (the host of `--server`).
    pub fn connector(&self, host: &str) -> Result<(TlsConnector, ServerName<'static>), TlsError> {
        let name = self.sni.as_deref().unwrap_or(host);
        let name =
            ServerName::try_from(name.to_string()).map_err(|_| TlsError::Name(name.into()))?;
        Ok((TlsConnector::from(Arc::new(self.config()?)), name))
    }

    fn config(&self) -> Result<ClientConfig, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in certificates(&self.ca)? {
            roots
                .add(cert)
                .map_err(|e| file_error(&self.ca, e.to_string()))?;
        }
        let provider = Arc::new(crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match &self.client {
            Some((cert, key)) => {
                let key_der = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| file_error(key, e.to_string()))?;
                builder
                    .with_client_auth_cert(certificates(cert)?, key_der)
                    .map_err(|e| file_error(cert, e.to_string()))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate in the file".to_string()));
    }
    Ok(certs)
}

fn file_error(path: &Path, message: String) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message,
    }
}

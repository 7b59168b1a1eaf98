//! xDS over TLS for security tests: PEM files on disk for `portolan serve --xds-tls-*` and
//! `portolan bootstrap --xds-*`, a gRPC channel to Portolan over (mutual) TLS, and a bare
//! handshake that reports the certificate Portolan presents to a new connection.

use crate::tls::{ServerCert, TestCa};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};
use tonic::transport::{Channel, Endpoint, Uri};

/// The name Portolan's test certificates are issued for (Envoy and clients send it as SNI).
pub const XDS_SNI: &str = "portolan.test";

/// A directory of PEM files: the CA, Portolan's certificate, and client certificates.
pub struct TlsDir {
    dir: tempfile::TempDir,
}

// === impl TlsDir ===

impl TlsDir {
    /// Writes `ca.crt` and Portolan's `server.crt`/`server.key` issued for [`XDS_SNI`].
    pub fn new(ca: &TestCa) -> anyhow::Result<Self> {
        let dir = Self {
            dir: tempfile::tempdir()?,
        };
        std::fs::write(dir.path("ca.crt"), ca.cert_pem())?;
        dir.write_pair("server", &ca.issue(&[XDS_SNI])?)?;
        Ok(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `{name}.crt` and `{name}.key`, each atomically (temp file, then rename).
    pub fn write_pair(&self, name: &str, cert: &ServerCert) -> anyhow::Result<()> {
        write_atomic(&self.path(&format!("{name}.key")), &cert.key_pem)?;
        write_atomic(&self.path(&format!("{name}.crt")), &cert.cert_pem)?;
        Ok(())
    }

    /// `portolan serve` flags for TLS, and mutual TLS with `client_ca`.
    pub fn serve_args(&self, mutual: bool) -> Vec<String> {
        let mut args = vec![
            "--xds-tls-cert".to_string(),
            self.path_string("server.crt"),
            "--xds-tls-key".to_string(),
            self.path_string("server.key"),
            "--xds-tls-reload".to_string(),
            "200ms".to_string(),
        ];
        if mutual {
            args.extend(["--xds-client-ca".to_string(), self.path_string("ca.crt")]);
        }
        args
    }

    /// `portolan bootstrap` flags: trust the CA, and present `{client}.crt` if given.
    pub fn bootstrap_args(&self, client: Option<&str>) -> Vec<String> {
        let mut args = vec![
            "--xds-ca".to_string(),
            self.path_string("ca.crt"),
            "--xds-sni".to_string(),
            XDS_SNI.to_string(),
        ];
        if let Some(name) = client {
            args.extend([
                "--xds-client-cert".to_string(),
                self.path_string(&format!("{name}.crt")),
                "--xds-client-key".to_string(),
                self.path_string(&format!("{name}.key")),
            ]);
        }
        args
    }

    fn path_string(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }
}

fn write_atomic(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn client_config(ca: &TestCa, client: Option<&ServerCert>) -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der())?;
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match client {
        Some(c) => builder.with_client_auth_cert(
            vec![CertificateDer::from(c.cert_der.clone())],
            PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes())?,
        )?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A TLS handshake with Portolan's xDS port on a new connection; the leaf certificate it
/// presented (DER).
pub async fn presented_certificate(ca: &TestCa, port: u16) -> anyhow::Result<Vec<u8>> {
    let config = client_config(ca, None)?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(XDS_SNI)?, tcp)
        .await?;
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or_else(|| anyhow::anyhow!("no server certificate"))
}

/// A gRPC channel to Portolan over TLS (trusting `ca`), presenting `client` if given.
pub async fn channel(
    ca: &TestCa,
    port: u16,
    client: Option<&ServerCert>,
) -> anyhow::Result<Channel> {
    let connector = TlsConnector::from(Arc::new(client_config(ca, client)?));
    let connect = tower::service_fn(move |_: Uri| {
        let connector = connector.clone();
        async move {
            let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
            let name = ServerName::try_from(XDS_SNI).map_err(std::io::Error::other)?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect_with_connector(connect)
        .await?)
}

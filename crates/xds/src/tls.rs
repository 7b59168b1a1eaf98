//! TLS for the xDS port: a rustls server configuration built from PEM files (certificate chain,
//! private key, and optionally a client CA, which makes client certificates mandatory), rebuilt
//! when the files change so that new connections use the new certificate without a restart.
//!
//! Existing connections keep the session they negotiated. A reload that fails (a half-written
//! file, a key that does not match the certificate) keeps the previous configuration and is
//! retried at the next poll.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tracing::{info, warn};

/// Where the server's TLS material lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates that client certificates must chain to; set means mutual TLS.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path}: no certificate in the file")]
    NoCertificate { path: PathBuf },
    #[error("client CA {path}: {reason}")]
    ClientCa { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The current server configuration, swapped when the files change.
#[derive(Debug)]
pub struct TlsReloader {
    files: TlsFiles,
    /// ALPN protocols offered (`h2` for xDS).
    alpn: Vec<Vec<u8>>,
    current: RwLock<Arc<ServerConfig>>,
    /// (modified time, length) of each file when `current` was built.
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
    last_error: Mutex<Option<String>>,
}

// === impl TlsFiles ===

impl TlsFiles {
    fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![self.cert.as_path(), self.key.as_path()];
        paths.extend(self.client_ca.as_deref());
        paths
    }

    /// Builds a rustls server configuration (ring provider, TLS 1.2 and 1.3, ALPN `h2`).
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        self.server_config_with_alpn(&[b"h2".to_vec()])
    }

    /// Like [`TlsFiles::server_config`], offering these ALPN protocols instead of `h2` (the
    /// admission webhook serves HTTP/1.1).
    pub fn server_config_with_alpn(&self, alpn: &[Vec<u8>]) -> Result<ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match &self.client_ca {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for ca in read_certs(path)? {
                    roots.add(ca).map_err(|e| TlsError::ClientCa {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::ClientCa {
                            path: path.clone(),
                            reason: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|source| TlsError::Pem {
            path: self.key.clone(),
            source,
        })?;
        let mut config = builder.with_single_cert(read_certs(&self.cert)?, key)?;
        config.alpn_protocols = alpn.to_vec();
        Ok(config)
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

// === impl TlsReloader ===

impl TlsReloader {
    /// Loads the files; an error here is a startup error.
    pub fn new(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        Self::with_alpn(files, vec![b"h2".to_vec()])
    }

    /// Like [`TlsReloader::new`], offering these ALPN protocols instead of `h2`.
    pub fn with_alpn(files: TlsFiles, alpn: Vec<Vec<u8>>) -> Result<Arc<Self>, TlsError> {
        let stamps = files.paths().into_iter().map(stamp).collect();
        let config = files.server_config_with_alpn(&alpn)?;
        Ok(Arc::new(Self {
            files,
            alpn,
            current: RwLock::new(Arc::new(config)),
            stamps: Mutex::new(stamps),
            last_error: Mutex::new(None),
        }))
    }

    /// Whether client certificates are required.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// An acceptor with the current configuration (one per connection).
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        TlsAcceptor::from(config)
    }

    /// Rebuilds the configuration if any file's modification time or size changed; true if a
    /// new configuration is in use. On error the previous one stays.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now: Vec<_> = self.files.paths().into_iter().map(stamp).collect();
        let mut stamps = self.stamps.lock().unwrap_or_else(PoisonError::into_inner);
        if *stamps == now {
            return Ok(false);
        }
        let config = self.files.server_config_with_alpn(&self.alpn)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        *stamps = now;
        Ok(true)
    }

    /// Polls the files every `every` until the task is dropped, logging reloads and (once per
    /// distinct error) failures.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut last = self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match self.reload_if_changed() {
                Ok(true) => {
                    info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                    *last = None;
                }
                Ok(false) => {}
                Err(e) => {
                    let text = e.to_string();
                    if last.as_deref() != Some(&text) {
                        warn!(error = %text, cert = %self.files.cert.display(), "TLS files changed but cannot be loaded; keeping the previous certificate");
                        *last = Some(text);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn pair(name: &str) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    fn write(dir: &Path, (cert, key): &(String, String)) -> TlsFiles {
        std::fs::write(dir.join("tls.crt"), cert).expect("write cert");
        std::fs::write(dir.join("tls.key"), key).expect("write key");
        TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            client_ca: None,
        }
    }

    #[test]
    fn reloads_a_changed_pair_and_keeps_the_old_one_on_a_mismatch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write(dir.path(), &pair("one.example"));
        let tls = TlsReloader::new(files.clone()).expect("loads");
        assert!(!tls.mutual());
        assert!(!tls.reload_if_changed().expect("unchanged"));

        // A certificate whose key is not the one on disk: refused, the old config stays.
        let (other_cert, _) = pair("two.example");
        std::fs::write(&files.cert, format!("{other_cert}\n")).expect("write");
        assert!(tls.reload_if_changed().is_err());

        write(dir.path(), &pair("three.example"));
        assert!(tls.reload_if_changed().expect("reloads"));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write(dir.path(), &pair("one.example"));
        std::fs::write(&files.cert, "not pem").expect("write");
        let err = TlsReloader::new(files).expect_err("no certificate");
        assert!(err.to_string().contains("tls.crt"), "{err}");
    }
}

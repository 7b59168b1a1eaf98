//! HTTPS upstreams: the same server as a plain [`Upstream`] (same paths, same answers, same
//! counters), behind TLS with a certificate from a test CA ([`crate::tls::TestCa`]), for TLS
//! origination tests. The SNI name of every ClientHello is recorded
//! ([`Upstream::server_names`]), also for handshakes the client then abandons (a client that
//! does not trust the certificate), and every response carries the SNI of its connection in
//! `x-seen-sni` (empty when the client sent none).

use super::{UpState, Upstream, router};
use crate::tls::ServerCert;
use axum::Router;
use axum::http::HeaderValue;
use axum::middleware::map_response;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::Acceptor;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

// === impl Upstream ===

impl Upstream {
    /// Starts an HTTPS server on 127.0.0.1 with a free port that presents `cert` to every
    /// client (whatever SNI it sends) and speaks HTTP/1.1 inside TLS.
    pub async fn start_tls(name: &str, cert: &ServerCert) -> anyhow::Result<Self> {
        let config = server_config(cert)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = UpState::new(name);
        let task = tokio::spawn(serve_tls(
            listener,
            router(state.clone()),
            config,
            state.clone(),
        ));
        Ok(Self {
            name: name.to_string(),
            addr,
            state,
            task,
        })
    }
}

fn server_config(cert: &ServerCert) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = vec![CertificateDer::from(cert.cert_der.clone())];
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("the server key is not PEM: {e}"))?;
    let provider = Arc::new(crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// Accepts connections until aborted; each does its handshake on its own task, so a client
/// that never finishes one holds up nobody else. Aborting drops the set, closing them all.
async fn serve_tls(listener: TcpListener, app: Router, config: Arc<ServerConfig>, state: UpState) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::task::yield_now().await;
            continue;
        };
        connections.spawn(serve_connection(
            stream,
            app.clone(),
            config.clone(),
            state.clone(),
        ));
        while connections.try_join_next().is_some() {}
    }
}

/// One connection: the ClientHello (its SNI recorded), the rest of the handshake (a failed
/// one just closes the connection), then HTTP/1.1.
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    config: Arc<ServerConfig>,
    state: UpState,
) {
    let handshake = async {
        let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
        let sni = start.client_hello().server_name().map(str::to_string);
        if let Some(sni) = &sni {
            let mut names = state.server_names.lock().unwrap_or_else(|p| p.into_inner());
            names.push(sni.clone());
        }
        start.into_stream(config).await.map(|tls| (tls, sni))
    };
    let Ok(Ok((tls, sni))) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await else {
        return;
    };
    let seen = HeaderValue::from_str(sni.as_deref().unwrap_or_default())
        .unwrap_or_else(|_| HeaderValue::from_static(""));
    let app = app.layer(map_response(move |mut r: Response| {
        let seen = seen.clone();
        async move {
            r.headers_mut().insert("x-seen-sni", seen);
            r
        }
    }));
    let service = TowerToHyperService::new(app);
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

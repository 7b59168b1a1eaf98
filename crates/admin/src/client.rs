//! The CLI's client of the admin API: connects to a running `portolan serve` and turns transport
//! and RPC failures into messages an operator can act on.

use std::error::Error as _;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};

use crate::tls::ClientTls;

use crate::proto::admin_client::AdminClient;
use crate::proto::{
    ConfigDumpRequest, ConfigDumpResponse, ProxyStatusRequest, ProxyStatusResponse,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{server:?} is not a server address (HOST:PORT): {message}")]
    Address { server: String, message: String },
    #[error(
        "cannot connect to Portolan at {server}: {message} (is `portolan serve` running with its xDS port there? If that port speaks TLS, give --xds-ca, and for mutual TLS --xds-client-cert/--xds-client-key)"
    )]
    Connect { server: String, message: String },
    #[error("TLS to {server}: {source}")]
    Tls {
        server: String,
        source: crate::tls::TlsError,
    },
    #[error("{server} does not serve Portolan's admin API (is it Portolan's xDS port?)")]
    Unimplemented { server: String },
    #[error("{message}")]
    NotFound { message: String },
    #[error("admin call to {server} failed: {code:?}: {message}")]
    Rpc {
        server: String,
        code: Code,
        message: String,
    },
}

/// A connected admin client.
#[derive(Clone, Debug)]
pub struct Client {
    server: String,
    inner: AdminClient<Channel>,
}

// === impl Client ===

impl Client {
    /// Connects to `server` (`HOST:PORT`, or a `http://` URI) in plaintext.
    pub async fn connect(server: &str) -> Result<Self, ClientError> {
        Self::connect_with(server, None).await
    }

    /// Connects to `server`, over TLS when `tls` is given.
    pub async fn connect_with(server: &str, tls: Option<&ClientTls>) -> Result<Self, ClientError> {
        let uri = if server.contains("://") {
            server.to_string()
        } else {
            format!("http://{server}")
        };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| ClientError::Address {
                server: server.to_string(),
                message: chain(&e),
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        let connected = match tls {
            None => endpoint.connect().await,
            Some(tls) => {
                let host = endpoint.uri().host().unwrap_or_default();
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let (connector, name) = tls.connector(host).map_err(|source| ClientError::Tls {
                    server: server.to_string(),
                    source,
                })?;
                let connect = tower::service_fn(move |uri: Uri| {
                    let (connector, name) = (connector.clone(), name.clone());
                    async move {
                        let host = uri.host().unwrap_or_default();
                        let host = host.trim_start_matches('[').trim_end_matches(']');
                        let port = uri.port_u16().unwrap_or(18000);
                        let tcp = TcpStream::connect((host, port)).await?;
                        let tls = connector.connect(name, tcp).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(tls))
                    }
                });
                endpoint.connect_with_connector(connect).await
            }
        };
        let channel = connected.map_err(|e| ClientError::Connect {
            server: server.to_string(),
            message: chain(&e),
        })?;
        Ok(Self {
            server: server.to_string(),
            inner: AdminClient::new(channel),
        })
    }

    /// Every connected stream.
    pub async fn proxy_status(&mut self) -> Result<ProxyStatusResponse, ClientError> {
        let request = ProxyStatusRequest::default();
        match self.inner.proxy_status(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(self.rpc_error(status)),
        }
    }

    /// The config of one connected proxy.
    pub async fn config_dump(&mut self, node_id: &str) -> Result<ConfigDumpResponse, ClientError> {
        let request = ConfigDumpRequest {
            node_id: node_id.to_string(),
        };
        match self.inner.config_dump(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(self.rpc_error(status)),
        }
    }

    fn rpc_error(&self, status: Status) -> ClientError {
        let server = self.server.clone();
        match status.code() {
            Code::Unimplemented => ClientError::Unimplemented { server },
            Code::NotFound => ClientError::NotFound {
                message: status.message().to_string(),
            },
            // A plaintext client on a TLS port gets no gRPC answer at all: the connection breaks
            // (`transport error`) or what comes back is not HTTP/2 (`h2 protocol error`).
            Code::Unknown | Code::Internal
                if ["transport error", "protocol error"]
                    .iter()
                    .any(|m| status.message().contains(m)) =>
            {
                ClientError::Connect {
                    server,
                    message: status.message().to_string(),
                }
            }
            Code::Unavailable => ClientError::Connect {
                server,
                message: status.message().to_string(),
            },
            code => ClientError::Rpc {
                server,
                code,
                message: status.message().to_string(),
            },
        }
    }
}

/// An error and its causes, `: `-separated (tonic's transport errors say little on their own).
fn chain(error: &tonic::transport::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

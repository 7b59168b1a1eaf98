//! The CLI's client of the admin API: connects to a running `portolan serve` and turns transport
//! and RPC failures into messages an operator can act on.

use std::error::Error as _;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

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
        "cannot connect to Portolan at {server}: {message} (is `portolan serve` running with its xDS port there?)"
    )]
    Connect { server: String, message: String },
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
    /// Connects to `server` (`HOST:PORT`, or a `http://` URI).
    pub async fn connect(server: &str) -> Result<Self, ClientError> {
        let uri = if server.contains("://") {
            server.to_string()
        } else {
            format!("http://{server}")
        };
        let endpoint = Endpoint::from_shared(uri).map_err(|e| ClientError::Address {
            server: server.to_string(),
            message: chain(&e),
        })?;
        let channel = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .connect()
            .await
            .map_err(|e| ClientError::Connect {
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

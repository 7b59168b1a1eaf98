//! What can go wrong on a simulated client's side.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// A TLS connection that could not be set up (the bench's own TLS connector).
    #[error("connecting to {address} over TLS: {message}")]
    Tls { address: String, message: String },
    /// The server answered the stream with (or ended it on) a gRPC status.
    #[error("the server ended the stream: {0}")]
    Status(#[from] tonic::Status),
    #[error("the stream ended without a status")]
    Ended,
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("the request stream is closed")]
    Closed,
    #[error("no per-type xDS service serves {0}")]
    NoService(String),
    #[error("a response of a type this client did not subscribe to: {0}")]
    UnexpectedType(String),
    #[error("decoding a resource of {type_url}: {source}")]
    Decode {
        type_url: String,
        #[source]
        source: prost::DecodeError,
    },
}

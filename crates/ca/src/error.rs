//! The CA's error type.

use std::path::PathBuf;

/// Why the CA could not load, generate or issue.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    InvalidRoot { what: String, message: String },
    #[error("issuing a certificate for {id}: {message}")]
    Issue { id: String, message: String },
    #[error(
        "{0:?} is not a SPIFFE ID of the form spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT"
    )]
    NotASpiffeId(String),
    #[error("a CA rotation is under way (phase {0}); start the next once it is steady")]
    Rotating(&'static str),
}

//! Portolan's admin gRPC API (`proto/portolan/admin/v1/admin.proto`): ProxyStatus (what every
//! connected proxy was sent and accepted) and ConfigDump (what a proxy's group holds).
//!
//! [`AdminService`] serves it read-only over the xDS [`portolan_xds::Cache`]; [`client`] and
//! [`table`] are the CLI's side (`portolan proxy-status`, `portolan config-dump`; over TLS with
//! [`tls`]).

#![forbid(unsafe_code)]

pub mod client;
mod convert;
pub mod dump;
pub mod redact;
pub mod service;
pub mod table;
pub mod tls;

/// The generated messages, client and server of `portolan.admin.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("portolan.admin.v1");
}

pub use redact::redact_secrets;
pub use service::AdminService;

//! Portolan's mesh certificate authority.
//!
//! A root ([`Authority`]: loaded from PEM files, or generated and persisted to a directory)
//! issues short-lived workload certificates ([`WorkloadCert`]) whose only SAN is the
//! workload's SPIFFE ID ([`SpiffeId`], `spiffe://TRUST_DOMAIN/ns/NS/sa/SA`). [`WorkloadCerts`]
//! keeps the current certificate of each identity and replaces it at half of its lifetime
//! ([`rotation_time`]), so a proxy always holds a certificate with half its life left.
//!
//! No I/O except [`Authority::load_or_generate`] reading and writing the root files; the clock
//! is passed in.

#![forbid(unsafe_code)]

mod authority;
mod error;
mod spiffe;
mod store;
mod workload;

pub use authority::Authority;
pub use error::CaError;
pub use spiffe::SpiffeId;
pub use store::WorkloadCerts;
pub use workload::{WorkloadCert, rotation_time};

#[cfg(test)]
mod tests;

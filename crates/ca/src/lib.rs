//! Portolan's mesh certificate authority.
//!
//! A root ([`Authority`]: loaded from PEM files, or generated and persisted to a directory)
//! issues short-lived workload certificates ([`WorkloadCert`]) whose only SAN is the
//! workload's SPIFFE ID ([`SpiffeId`], `spiffe://TRUST_DOMAIN/ns/NS/sa/SA`). [`WorkloadCerts`]
//! keeps the current certificate of each identity and replaces it at half of its lifetime
//! ([`rotation_time`]), so a proxy always holds a certificate with half its life left.
//!
//! The roots are a [`TrustState`]: the signing root, and during a rotation the next or the
//! previous root, all in the trust bundle proxies verify peers with (see [`rotation`] for the
//! phases). It is kept in a directory ([`persist`]) or, by `serve --kubernetes`, in a Secret,
//! under the same data names.
//!
//! No I/O except [`Authority::load_or_generate`] and [`persist`] reading and writing the root
//! files; the clock is passed in.

#![forbid(unsafe_code)]

mod authority;
mod error;
pub mod persist;
pub mod rotation;
mod spiffe;
mod store;
mod workload;

pub use authority::{Authority, fingerprint};
pub use error::CaError;
pub use rotation::{Phase, RotationTiming, TrustState};
pub use spiffe::SpiffeId;
pub use store::WorkloadCerts;
pub use workload::{WorkloadCert, rotation_time};

#[cfg(test)]
mod rotation_tests;
#[cfg(test)]
mod tests;

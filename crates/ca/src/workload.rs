//! Workload certificates and when to replace them.

use crate::spiffe::SpiffeId;
use std::time::{Duration, SystemTime};

/// A certificate (PEM, leaf signed by the root) and its private key for one identity.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkloadCert {
    pub id: SpiffeId,
    /// The fingerprint of the root that signed it (see [`crate::fingerprint`]).
    pub root: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// When it was issued (its `notBefore` is a minute earlier, for clock skew).
    pub issued_at: SystemTime,
    /// Its `notAfter`.
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for WorkloadCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("id", &self.id)
            .field("root", &self.root)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

// === impl WorkloadCert ===

impl WorkloadCert {
    /// When this certificate is replaced: see [`rotation_time`].
    pub fn rotate_at(&self) -> SystemTime {
        rotation_time(self.issued_at, self.expires_at)
    }

    /// Whether it is due for replacement at `now`.
    pub fn due(&self, now: SystemTime) -> bool {
        now >= self.rotate_at()
    }
}

/// Half-way through a certificate's life: a proxy then always holds a certificate with at
/// least half its lifetime left, and a missed rotation (Portolan restarting, a proxy
/// reconnecting) has the other half to happen before anything expires.
pub fn rotation_time(issued_at: SystemTime, expires_at: SystemTime) -> SystemTime {
    let life = expires_at
        .duration_since(issued_at)
        .unwrap_or(Duration::ZERO);
    issued_at + life / 2
}

//! The current certificate of every identity in use, reissued when due.

use crate::authority::Authority;
use crate::error::CaError;
use crate::spiffe::SpiffeId;
use crate::workload::WorkloadCert;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Workload certificates by identity. A certificate is issued on first use and replaced once
/// due ([`WorkloadCert::due`]); until then every caller gets the same one (same PEM, so the
/// same SDS version).
#[derive(Debug)]
pub struct WorkloadCerts {
    authority: Authority,
    lifetime: Duration,
    certs: Mutex<BTreeMap<SpiffeId, Arc<WorkloadCert>>>,
}

// === impl WorkloadCerts ===

impl WorkloadCerts {
    pub fn new(authority: Authority, lifetime: Duration) -> Self {
        Self {
            authority,
            lifetime,
            certs: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The current certificate of `id` at `now`: the one held unless it is due, else a new one.
    pub fn current(&self, id: &SpiffeId, now: SystemTime) -> Result<Arc<WorkloadCert>, CaError> {
        let mut certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cert) = certs.get(id).filter(|c| !c.due(now)) {
            return Ok(cert.clone());
        }
        let cert = Arc::new(self.authority.issue(id, now, self.lifetime)?);
        tracing::info!(identity = %id, expires_in = ?self.lifetime, "workload certificate issued");
        certs.insert(id.clone(), cert.clone());
        Ok(cert)
    }

    /// The earliest time a held certificate is due, if any is held.
    pub fn next_rotation(&self) -> Option<SystemTime> {
        let certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
        certs.values().map(|c| c.rotate_at()).min()
    }

    /// Forgets the certificates of identities not in `keep` (no proxy uses them any more).
    pub fn retain(&self, keep: &BTreeSet<SpiffeId>) {
        let mut certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
        certs.retain(|id, _| keep.contains(id));
    }
}

//! The current certificate of every identity in use, reissued when due or when another root
//! signs, and the trust state they are issued under.

use crate::error::CaError;
use crate::rotation::TrustState;
use crate::spiffe::SpiffeId;
use crate::workload::WorkloadCert;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Workload certificates by identity. A certificate is issued on first use and replaced once
/// due ([`WorkloadCert::due`]) or once it is not signed by the signing root of the trust state
/// (a rotation moved to signing); until then every caller gets the same one (same PEM, so the
/// same SDS version).
#[derive(Debug)]
pub struct WorkloadCerts {
    trust: Mutex<TrustState>,
    lifetime: Duration,
    certs: Mutex<BTreeMap<SpiffeId, Arc<WorkloadCert>>>,
}

// === impl WorkloadCerts ===

impl WorkloadCerts {
    pub fn new(trust: TrustState, lifetime: Duration) -> Self {
        Self {
            trust: Mutex::new(trust),
            lifetime,
            certs: Mutex::new(BTreeMap::new()),
        }
    }

    /// A copy of the trust state.
    pub fn trust(&self) -> TrustState {
        self.lock_trust().clone()
    }

    /// Changes the trust state with `f` (a rotation step, a reload); returns what `f` does.
    pub fn update_trust<R>(&self, f: impl FnOnce(&mut TrustState) -> R) -> R {
        f(&mut self.lock_trust())
    }

    /// The trusted roots as one PEM text.
    pub fn bundle_pem(&self) -> String {
        self.lock_trust().bundle_pem()
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The current certificate of `id` at `now`: the one held unless it is due or signed by
    /// a root that no longer signs, else a new one.
    pub fn current(&self, id: &SpiffeId, now: SystemTime) -> Result<Arc<WorkloadCert>, CaError> {
        let trust = self.trust();
        let signer = trust.signer();
        let root = signer.fingerprint();
        let mut certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cert) = certs.get(id).filter(|c| !c.due(now) && c.root == root) {
            return Ok(cert.clone());
        }
        let cert = Arc::new(signer.issue(id, now, self.lifetime)?);
        tracing::info!(identity = %id, %root, expires_in = ?self.lifetime, "workload certificate issued");
        certs.insert(id.clone(), cert.clone());
        Ok(cert)
    }

    /// The earliest time a held certificate is due, if any is held (long past for one signed
    /// by a root that no longer signs).
    pub fn next_rotation(&self) -> Option<SystemTime> {
        let root = self.lock_trust().signer().fingerprint();
        let certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
        certs
            .values()
            .map(|c| {
                if c.root == root {
                    c.rotate_at()
                } else {
                    UNIX_EPOCH
                }
            })
            .min()
    }

    /// The certificates held now.
    pub fn held(&self) -> Vec<Arc<WorkloadCert>> {
        let certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
        certs.values().cloned().collect()
    }

    /// How many held certificates a root other than the signing one signed.
    pub fn signed_by_other_roots(&self) -> usize {
        let root = self.lock_trust().signer().fingerprint();
        let certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
        certs.values().filter(|c| c.root != root).count()
    }

    /// Forgets the certificates of identities not in `keep` (no proxy uses them any more).
    pub fn retain(&self, keep: &BTreeSet<SpiffeId>) {
        let mut certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
        certs.retain(|id, _| keep.contains(id));
    }

    fn lock_trust(&self) -> std::sync::MutexGuard<'_, TrustState> {
        self.trust.lock().unwrap_or_else(|p| p.into_inner())
    }
}

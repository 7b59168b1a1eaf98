//! Workload certificates of mesh groups: the snapshot of a group with a workload identity holds
//! that identity's certificate and the trust bundle as SDS secrets, issued on first use by the
//! mesh CA ([`WorkloadCerts`]) and replaced at half their lifetime, so a rotation is a new
//! Secret version pushed to that group's proxies (see [`crate::Pipeline::rotate_certificates`]).

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use portolan_ca::{SpiffeId, WorkloadCerts};
use portolan_translate::ProxyGroup;
use portolan_translate::mesh::Workload;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The CA's workload certificates, for the identities of one trust domain.
#[derive(Clone)]
pub(crate) struct MeshCerts {
    certs: Arc<WorkloadCerts>,
    trust_domain: String,
}

// === impl MeshCerts ===

impl MeshCerts {
    pub(crate) fn new(certs: Arc<WorkloadCerts>, trust_domain: &str) -> Self {
        Self {
            certs,
            trust_domain: trust_domain.to_string(),
        }
    }

    /// The SDS secrets of a mesh group: its identity's current certificate and the trust
    /// bundle, every root trusted (two during a CA rotation); none for a group without a
    /// workload identity.
    pub(crate) fn secrets(&self, group: &ProxyGroup) -> Vec<Secret> {
        let Some(workload) = &group.workload else {
            return Vec::new();
        };
        let id = self.spiffe_id(workload);
        match self.certs.current(&id, SystemTime::now()) {
            Ok(cert) => portolan_translate::mesh::workload_secrets(
                &cert.cert_pem,
                &cert.key_pem,
                &self.certs.bundle_pem(),
            )
            .to_vec(),
            Err(e) => {
                tracing::error!(group = %group.name, identity = %id, error = %e, "no workload certificate; the group's mesh TLS cannot start");
                Vec::new()
            }
        }
    }

    /// Drops the certificates of identities none of `groups` has any more.
    pub(crate) fn retain(&self, groups: &[ProxyGroup]) {
        let used: BTreeSet<SpiffeId> = groups
            .iter()
            .filter_map(|g| g.workload.as_ref())
            .map(|w| self.spiffe_id(w))
            .collect();
        self.certs.retain(&used);
    }

    /// How long until the next certificate is due (capped at a minute; a second while none
    /// has been issued yet, as they are issued on first build).
    pub(crate) fn until_next_rotation(&self) -> Duration {
        let wait = self
            .certs
            .next_rotation()
            .map_or(Duration::from_secs(1), |at| {
                at.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
            });
        wait.min(Duration::from_secs(60))
    }

    /// Whether a certificate is due now.
    pub(crate) fn rotation_due(&self) -> bool {
        self.certs
            .next_rotation()
            .is_some_and(|at| at <= SystemTime::now())
    }

    fn spiffe_id(&self, workload: &Workload) -> SpiffeId {
        SpiffeId::new(
            self.trust_domain.clone(),
            workload.namespace.clone(),
            workload.service_account.clone(),
        )
    }
}

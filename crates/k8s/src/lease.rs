//! Leader election with a coordination.k8s.io/v1 Lease: every replica serves xDS, the one
//! holding the Lease writes status.
//!
//! * Free (no Lease, or no holder): create or take it.
//! * Held by this replica: renew (`renewTime`) every `renew_every`, well before it expires.
//! * Held by another: taken over once its record has not changed for `leaseDurationSeconds`
//!   as measured on this replica's clock (like client-go: immune to clock skew between
//!   replicas).
//! * A renew that fails (error, conflict, timeout) loses the lead at once: status writes stop
//!   until the Lease is held again.
//!
//! Writes use the Lease's `resourceVersion`, so two replicas racing for it cannot both win.

use crate::error::K8sError;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How a replica takes part in the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica (its pod name).
    pub identity: String,
    /// How long a Lease not renewed stays held.
    pub duration: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
    /// How often the others check whether it expired.
    pub retry_every: Duration,
    /// Longest one attempt may take; a renew slower than this loses the lead.
    pub timeout: Duration,
}

/// One replica's view of the Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The other holder's record (resource version) and when this replica first saw it.
    observed: Option<(String, Instant)>,
}

// === impl LeaseConfig ===

impl LeaseConfig {
    /// Defaults as client-go's: held 15 s, renewed every 5 s, checked every 2 s.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            retry_every: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }
}

// === impl LeaseLock ===

impl LeaseLock {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    fn what(&self) -> String {
        format!("Lease {}/{}", self.config.namespace, self.config.name)
    }

    /// One round: acquire, renew or observe. `Ok(true)` while this replica holds the Lease.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, K8sError> {
        let what = self.what();
        let current = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(K8sError::api(format!("reading {what}")))?;
        let Some(lease) = current else {
            return self.create().await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        match holder {
            Some(h) if h == self.config.identity => {
                self.observed = None;
                self.replace(lease, spec, false).await
            }
            Some(other) if !self.expired(&lease, &spec) => {
                tracing::debug!(holder = other, "the Lease is held by another replica");
                Ok(false)
            }
            _ => {
                tracing::info!(previous = ?holder, "taking over the Lease");
                self.observed = None;
                self.replace(lease, spec, true).await
            }
        }
    }

    /// Whether the other holder's record has stood unchanged for a whole lease duration.
    fn expired(&mut self, lease: &Lease, spec: &LeaseSpec) -> bool {
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let now = Instant::now();
        let since = match &self.observed {
            Some((v, at)) if *v == version => *at,
            _ => {
                self.observed = Some((version, now));
                now
            }
        };
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.config.duration);
        now.duration_since(since) >= duration
    }

    async fn create(&mut self) -> Result<bool, K8sError> {
        let now = MicroTime(Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        let what = self.what();
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(K8sError::api(format!("creating {what}"))(e)),
        }
    }

    /// Renews (or, with `take`, takes over) the Lease; a conflict means another replica
    /// wrote it first.
    async fn replace(
        &mut self,
        mut lease: Lease,
        mut spec: LeaseSpec,
        take: bool,
    ) -> Result<bool, K8sError> {
        let now = MicroTime(Timestamp::now());
        if take {
            spec.holder_identity = Some(self.config.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or_default() + 1);
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(self.duration_seconds());
        lease.spec = Some(spec);
        lease.metadata.managed_fields = None;
        let what = self.what();
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 && take => Ok(false),
            Err(e) => Err(K8sError::api(format!("renewing {what}"))(e)),
        }
    }

    /// Gives the Lease up (on shutdown), so another replica takes over without waiting for
    /// it to expire.
    pub async fn release(&mut self) -> Result<(), K8sError> {
        let what = self.what();
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(K8sError::api(format!("reading {what}")))?
        else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        lease.metadata.managed_fields = None;
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map_err(K8sError::api(format!("releasing {what}")))?;
        Ok(())
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.config.duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// Takes part in the election until `shutdown` turns true; publishes on `leading`
    /// whether this replica holds the Lease. Releases the Lease on the way out.
    pub async fn run(mut self, leading: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let attempt = tokio::time::timeout(self.config.timeout, self.try_acquire_or_renew());
            let held = match attempt.await {
                Ok(Ok(held)) => held,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "leader election round failed");
                    false
                }
                Err(_) => {
                    tracing::warn!(lease = %self.what(), "leader election round timed out");
                    false
                }
            };
            let was = leading.send_replace(held);
            match (was, held) {
                (false, true) => {
                    tracing::info!(identity = %self.config.identity, lease = %self.what(), "became the leader")
                }
                (true, false) => {
                    tracing::warn!(identity = %self.config.identity, lease = %self.what(), "lost the lead")
                }
                _ => {}
            }
            let wait = if held {
                self.config.renew_every
            } else {
                self.config.retry_every
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        if leading.send_replace(false)
            && let Err(e) = self.release().await
        {
            tracing::warn!(error = %e, "could not release the Lease; it expires by itself");
        }
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;

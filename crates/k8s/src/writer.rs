//! The status writer: server-side apply of each Portolan custom resource's conditions on its
//! `/status` subresource (field manager `portolan`, forced), only while this replica leads,
//! and only for objects whose computed status differs from what they carry. Gateway API
//! objects of Portolan's class get their status the same way ([`crate::api_status`]); a
//! route's write carries the `resourceVersion` it was computed from, so an entry another
//! controller added meanwhile is never overwritten (409: recomputed on the next pass).
//!
//! Status writes cannot cause translation or pushes: the watchers drop `status` before
//! decoding ([`crate::decode`]), so the object the index holds is unchanged and applying it
//! again is not a change.

use crate::api_status;
use crate::decode::Seen;
use crate::error::K8sError;
use crate::kinds;
use crate::provision::{Addresses, ProvisionConfig, Provisioner};
use crate::status::{self, Status};
use crate::view::ClusterView;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::core::DynamicObject;
use kube::{Api, Client};
use portolan_api::{Kind, ObjectRef};
use portolan_model::{Condition, World};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The field manager of Portolan's status writes.
pub const FIELD_MANAGER: &str = "portolan";

/// What the status is computed from.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub world: Arc<World>,
    /// `Programmed=False` conditions of the objects connected proxies NACKed.
    pub programmed: BTreeMap<ObjectRef, Condition>,
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Statuses written.
    pub written: usize,
    /// Objects that already carried their status.
    pub current: usize,
    /// Writes that failed (retried on the next pass).
    pub failed: usize,
}

pub struct StatusWriter {
    client: Client,
    view: ClusterView,
    /// Provisions Gateways' proxies before each pass (`None`: provisioning is off).
    provisioner: Option<(Provisioner, Addresses)>,
}

// === impl StatusWriter ===

impl StatusWriter {
    pub fn new(client: Client, view: ClusterView) -> Self {
        Self {
            client,
            view,
            provisioner: None,
        }
    }

    /// Also provisions the proxies of Portolan's Gateways (while leading), and writes their
    /// Services' addresses into their status.
    pub fn with_provisioner(mut self, config: ProvisionConfig) -> Self {
        let addresses = Addresses::default();
        let provisioner = Provisioner::new(self.client.clone(), config, addresses.clone());
        self.provisioner = Some((provisioner, addresses));
        self
    }

    /// Provisions what changed; failures are logged, counted and retried on the next pass.
    async fn provision(
        &self,
        world: &World,
        pass: &mut Pass,
    ) -> BTreeMap<ObjectRef, Vec<serde_json::Value>> {
        let Some((provisioner, addresses)) = &self.provisioner else {
            return BTreeMap::new();
        };
        let uids = self
            .view
            .snapshot()
            .into_iter()
            .filter_map(|(r, s)| Some((r, s.uid?)))
            .collect();
        let (applied, failed) = provisioner.pass(world, &uids).await;
        if applied > 0 {
            tracing::info!(objects = applied, "Gateway proxies provisioned");
        }
        pass.failed += failed.len();
        for e in failed {
            tracing::warn!(error = %e, "provisioning failed; retrying on the next pass");
        }
        addresses.snapshot()
    }

    /// Writes every status that differs from what the object carries; stops early when
    /// `leading` turns false.
    pub async fn write_pass(&self, inputs: &Inputs, leading: &watch::Receiver<bool>) -> Pass {
        let seen = self.view.snapshot();
        let generations = seen
            .iter()
            .map(|(r, s)| (r.clone(), s.generation))
            .collect();
        let desired = status::desired(&inputs.world, &inputs.programmed, &generations);
        let now = Timestamp::now();
        let mut pass = Pass::default();
        for (object, conditions) in desired {
            // Not in the cluster (yet, or any more): nothing to write to.
            let Some(seen) = seen.get(&object) else {
                continue;
            };
            let mut wanted = status::status(&conditions, &seen.conditions, now);
            let carried = seen.status.as_ref().and_then(|s| s.get("ancestors"));
            wanted.ancestors = status::ancestors(&inputs.world, &object, carried, now);
            if status::is_current(&wanted, seen) {
                pass.current += 1;
                continue;
            }
            if !*leading.borrow() {
                break;
            }
            match self.write(&object, &wanted).await {
                Ok(written) => {
                    tracing::debug!(%object, "status written");
                    self.view.update(&object, written);
                    pass.written += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "status not written; retrying on the next pass");
                    pass.failed += 1;
                }
            }
        }
        if !*leading.borrow() {
            return pass;
        }
        let addresses = self.provision(&inputs.world, &mut pass).await;
        for (object, wanted) in api_status::desired(&inputs.world, &seen, &addresses, now) {
            if !*leading.borrow() {
                break;
            }
            let version = seen
                .get(&object)
                .and_then(|s| s.resource_version.as_deref());
            match self.write_api(&object, &wanted, version).await {
                Ok(written) => {
                    tracing::debug!(%object, "Gateway API status written");
                    self.view.update(&object, written);
                    pass.written += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "status not written; retrying on the next pass");
                    pass.failed += 1;
                }
            }
        }
        pass
    }

    /// Server-side applies a Gateway API object's whole `status`; routes (whose `parents`
    /// other controllers share) only at `resource_version`.
    pub async fn write_api(
        &self,
        object: &ObjectRef,
        status: &serde_json::Value,
        resource_version: Option<&str>,
    ) -> Result<Seen, K8sError> {
        let resource = kinds::api_resource(object.kind);
        let mut metadata = json!({"name": object.name});
        if !object.namespace.is_empty() {
            metadata["namespace"] = json!(object.namespace);
        }
        let shared = matches!(
            object.kind,
            Kind::HttpRoute
                | Kind::GrpcRoute
                | Kind::TlsRoute
                | Kind::TcpRoute
                | Kind::UdpRoute
                | Kind::BackendTlsPolicy
        );
        if let Some(version) = resource_version.filter(|_| shared) {
            metadata["resourceVersion"] = json!(version);
        }
        let patch = json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": metadata,
            "status": status,
        });
        self.apply(object, &patch).await
    }

    /// Server-side applies `status` to one object's `/status`; returns what the object
    /// carries afterwards.
    pub async fn write(&self, object: &ObjectRef, status: &Status) -> Result<Seen, K8sError> {
        let resource = kinds::api_resource(object.kind);
        let mut patch = json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": {"name": object.name, "namespace": object.namespace},
            "status": {
                "observedGeneration": status.observed_generation,
                "conditions": status.conditions,
            },
        });
        if let Some(ancestors) = &status.ancestors {
            patch["status"]["ancestors"] = ancestors.clone();
        }
        self.apply(object, &patch).await
    }

    /// One forced server-side apply on `/status`.
    async fn apply(&self, object: &ObjectRef, patch: &serde_json::Value) -> Result<Seen, K8sError> {
        let resource = kinds::api_resource(object.kind);
        let api: Api<DynamicObject> = if object.kind.cluster_scoped() {
            Api::all_with(self.client.clone(), &resource)
        } else {
            Api::namespaced_with(self.client.clone(), &object.namespace, &resource)
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let written = api
            .patch_status(&object.name, &params, &Patch::Apply(patch))
            .await
            .map_err(|source| K8sError::Status {
                object: object.clone(),
                source,
            })?;
        Ok(crate::decode::decode(object.kind, &written).seen)
    }

    /// Writes status while `leading` is true: a pass every `every`, and after each change
    /// of the index (`wake`). Returns when `leading` closes.
    pub async fn run(
        self,
        inputs: impl Fn() -> Inputs,
        mut leading: watch::Receiver<bool>,
        mut wake: watch::Receiver<u64>,
        every: Duration,
    ) {
        let mut wake_open = true;
        loop {
            if leading.wait_for(|l| *l).await.is_err() {
                return;
            }
            tracing::info!("leading: writing the status of Portolan objects");
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    r = leading.changed() => if r.is_err() { return },
                    _ = tick.tick() => {}
                    r = wake.changed(), if wake_open => wake_open = r.is_ok(),
                }
                if !*leading.borrow() {
                    tracing::info!("no longer leading: status writes stop");
                    break;
                }
                let pass = self.write_pass(&inputs(), &leading).await;
                if pass.written + pass.failed > 0 {
                    tracing::info!(written = pass.written, failed = pass.failed, "status pass");
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;

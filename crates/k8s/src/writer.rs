//! The status writer: server-side apply of each Portolan custom resource's conditions on its
//! `/status` subresource (field manager `portolan`, forced), only while this replica leads,
//! and only for objects whose computed status differs from what they carry.
//!
//! Status writes cannot cause translation or pushes: the watchers drop `status` before
//! decoding ([`crate::decode`]), so the object the index holds is unchanged and applying it
//! again is not a change.

use crate::decode::Seen;
use crate::error::K8sError;
use crate::kinds;
use crate::status::{self, Status};
use crate::view::ClusterView;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::core::DynamicObject;
use kube::{Api, Client};
use portolan_api::ObjectRef;
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
}

// === impl StatusWriter ===

impl StatusWriter {
    pub fn new(client: Client, view: ClusterView) -> Self {
        Self { client, view }
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
            wanted.ancestors = status::ancestors(&inputs.world, &object, now);
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
        pass
    }

    /// Server-side applies `status` to one object's `/status`; returns what the object
    /// carries afterwards.
    pub async fn write(&self, object: &ObjectRef, status: &Status) -> Result<Seen, K8sError> {
        let resource = kinds::api_resource(object.kind);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &object.namespace, &resource);
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
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let written = api
            .patch_status(&object.name, &params, &Patch::Apply(&patch))
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

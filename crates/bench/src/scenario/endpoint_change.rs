//! Scenario 2, `endpoint-change`: one endpoint of one service changes in a big world. How long
//! the rebuild takes (reusing the previous snapshot), how many resources change version, and
//! how many bytes one proxy receives for it over SotW and over Delta ADS.
//!
//! For contrast it also adds one whole service (a new cluster: CDS is full state in SotW).

use crate::build::{changed_versions, snapshot};
use crate::measure::time_runs;
use crate::proxy::{DeltaProxy, Push, SotwProxy};
use crate::synth::SynthService;
use crate::{BenchError, WorldSpec};
use portolan_model::{Index, Object, ServiceKey};
use portolan_pipeline::IncrementalBuilder;
use portolan_translate::Options;
use portolan_xds::{ResourceType, Snapshot};
use std::sync::Arc;
use std::time::Duration;

/// The figures of one `endpoint-change` run.
#[derive(Clone, Debug)]
pub struct EndpointChange {
    pub spec: WorldSpec,
    /// The cluster whose endpoint changed.
    pub cluster: String,
    /// Index apply of the changed EndpointSlice and `world()`, per run.
    pub apply: Vec<Duration>,
    /// translate + snapshot build reusing the previous snapshot, per run, as `portolan serve`
    /// rebuilds (incrementally: see [`IncrementalBuilder`]).
    pub rebuild: Vec<Duration>,
    /// The same rebuild from scratch (`translate()` + snapshot reusing the previous), per run.
    pub rebuild_full: Vec<Duration>,
    /// Resources whose version changed, per type (CDS, EDS, LDS, RDS), for the first change.
    pub changed: [usize; 4],
    /// The initial sync of one proxy.
    pub sotw_initial: Push,
    pub delta_initial: Push,
    /// What one proxy received for the first endpoint change.
    pub sotw_change: Push,
    pub delta_change: Push,
    /// Encoded bytes of every ClusterLoadAssignment (what a SotW server that resent the whole
    /// EDS subscription would send).
    pub all_cla_bytes: usize,
    /// What one proxy received when one service (with endpoints) was added.
    pub sotw_add: Push,
    pub delta_add: Push,
}

/// Runs scenario 2 with `runs` endpoint changes (alternating between two addresses), for the
/// proxy group of `group_key` (as in [`super::translate`]).
pub fn endpoint_change(
    spec: WorldSpec,
    runs: usize,
    group_key: &str,
) -> Result<EndpointChange, BenchError> {
    let target = spec
        .target()
        .ok_or_else(|| BenchError::Proxy("the world has no service with endpoints".into()))?;
    let services = spec.services_list();
    let mut index = spec.index();
    let group = portolan_pipeline::groups::group_for_name(group_key, &index.world())
        .map_err(|e| BenchError::Setup(format!("--translate-group {group_key}: {e}")))?;
    let options = Options::default();
    let mut builder = IncrementalBuilder::new();
    let mut build = |index: &mut Index, previous: Option<&Snapshot>| {
        let world = index.world();
        builder
            .build(&world, &group, &options, previous)
            .map(Arc::new)
    };
    let build_full = |index: &mut Index, previous: Option<&Snapshot>| {
        let world = index.world();
        let resources = portolan_translate::translate(&world, &group, &options);
        snapshot(&resources, previous).map(Arc::new)
    };
    let mut current = build(&mut index, None)?;
    let (mut sotw, sotw_initial) = SotwProxy::connect(current.clone())?;
    let (mut delta, delta_initial) = DeltaProxy::connect(current.clone())?;
    let all_cla_bytes = current
        .resources(ResourceType::Endpoint)
        .values()
        .map(|r| r.value().len())
        .sum();

    let mut apply = Vec::new();
    let mut rebuild = Vec::new();
    let mut rebuild_full = Vec::new();
    let mut first = None;
    for run in 0..runs.max(1) {
        let changed = with_endpoint(&services[target.index], spec.spare_ip(run % 2));
        let (t_apply, _) = time_runs(1, || {
            for object in changed.slice_objects() {
                index.apply(object);
            }
            index.world()
        });
        let (t_full, full) = time_runs(1, || build_full(&mut index, Some(&current)));
        let (t_rebuild, next) = time_runs(1, || build(&mut index, Some(&current)));
        let (full, next) = (full?, next?);
        if !same_versions(&full, &next) {
            return Err(BenchError::Proxy(
                "incremental and full rebuilds differ".into(),
            ));
        }
        apply.extend(t_apply);
        rebuild.extend(t_rebuild);
        rebuild_full.extend(t_full);
        if first.is_none() {
            let counts = changed_versions(&current, &next);
            let pushes = (sotw.update(next.clone())?, delta.update(next.clone())?);
            first = Some((counts, pushes));
        }
        current = next;
    }
    let Some((changed, (sotw_change, delta_change))) = first else {
        return Err(BenchError::Proxy("no change was measured".into()));
    };
    // Keep both proxies in step with the last snapshot, then add one service.
    sotw.update(current.clone())?;
    delta.update(current.clone())?;
    for object in added_service(&spec, &services[target.index]) {
        index.apply(object);
    }
    let added = build(&mut index, Some(&current))?;
    Ok(EndpointChange {
        spec,
        cluster: target.cluster,
        apply,
        rebuild,
        rebuild_full,
        changed,
        sotw_initial,
        delta_initial,
        sotw_change,
        delta_change,
        all_cla_bytes,
        sotw_add: sotw.update(added.clone())?,
        delta_add: delta.update(added)?,
    })
}

/// Whether two snapshots have the same version for every type.
fn same_versions(a: &Snapshot, b: &Snapshot) -> bool {
    ResourceType::ALL
        .iter()
        .all(|&ty| a.version(ty) == b.version(ty))
}

/// The service with its first endpoint moved to `ip`.
pub fn with_endpoint(service: &SynthService, ip: String) -> SynthService {
    let mut changed = service.clone();
    if let Some(first) = changed.endpoints.first_mut() {
        first.0 = ip;
    }
    changed
}

/// A new service shaped like `like`, with its own addresses.
fn added_service(spec: &WorldSpec, like: &SynthService) -> Vec<Object> {
    let mut svc = like.clone();
    svc.key = ServiceKey::new(like.key.namespace.clone(), "svc-added");
    for (i, ep) in svc.endpoints.iter_mut().enumerate() {
        ep.0 = spec.spare_ip(10 + i);
    }
    svc.objects()
}

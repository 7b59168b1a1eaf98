//! Scenario 1, `translate`: how long translation, the bare protobuf encode of its output, and a
//! full snapshot build take on a big world, side by side, and how much memory that needs.

use crate::build::{TypeBytes, encode_all, snapshot};
use crate::measure::{Memory, time_runs};
use crate::{BenchError, WorldSpec};
use portolan_pipeline::IncrementalBuilder;
use portolan_translate::Options;
use std::time::{Duration, Instant};

/// The figures of one `translate` run.
#[derive(Clone, Debug)]
pub struct TranslateBench {
    pub spec: WorldSpec,
    /// Building the model objects and applying them on an Index, then `world()` (once).
    pub world_build: Duration,
    /// (a) `translate()` per run (a second thread on a multi-core machine).
    pub translate: Vec<Duration>,
    /// (a1) `translate_on(.., 1)`: everything on one thread, per run.
    pub translate_single: Vec<Duration>,
    /// (b) `encode_to_vec` of every output resource per run.
    pub encode: Vec<Duration>,
    /// (c) translate + snapshot build (encode, version, consistency check) per run.
    pub snapshot: Vec<Duration>,
    /// (c1) (c) with translation on one thread, per run.
    pub snapshot_single: Vec<Duration>,
    /// (d) the cold build `portolan serve` does: a new [`IncrementalBuilder`]'s first build
    /// (each message encoded as its Service is translated), per run.
    pub cold_build: Vec<Duration>,
    /// Resources and encoded bytes per type.
    pub bytes: TypeBytes,
    /// Before the world was built.
    pub memory_before: Memory,
    /// With the world built.
    pub memory_world: Memory,
    /// After every run, with the last resources and snapshot still held.
    pub memory_after: Memory,
    /// After the (d) runs (the first of the scenario), the peak since the world was built
    /// (`None`: the peak could not be reset), with their last snapshot held.
    pub memory_cold_build: Option<Memory>,
}

/// Runs scenario 1: `runs` times each of translate, encode floor, and full snapshot build, for
/// the proxy group of `group_key` (`default`, or a workload's `web;ns=NS;sa=SA`, which gets
/// the capture-aware outbound listener).
pub fn translate(
    spec: WorldSpec,
    runs: usize,
    group_key: &str,
) -> Result<TranslateBench, BenchError> {
    let memory_before = Memory::now();
    let start = Instant::now();
    let world = spec.index().world();
    let world_build = start.elapsed();
    let memory_world = Memory::now();
    let group = portolan_pipeline::groups::group_for_name(group_key, &world)
        .map_err(|e| BenchError::Setup(format!("--translate-group {group_key}: {e}")))?;
    let options = Options::default();

    // The cold builds first, so that their peak is measured from the world alone (nothing
    // freed by other runs is still held by the allocator).
    let reset = Memory::reset_peak();
    let (cold_build, built) = time_runs(runs, || {
        IncrementalBuilder::new().build(&world, &group, &options, None)
    });
    let memory_cold_build = reset.then(Memory::now);
    drop(built?);

    // The one-thread runs next, their output dropped: the peak RSS below is that of the
    // runs that hold their resources and snapshot, as before they existed.
    let (translate_single, single) = time_runs(runs, || {
        portolan_translate::translate_on(&world, &group, &options, 1)
    });
    drop(single);
    let (snapshot_single, built) = time_runs(runs, || {
        let resources = portolan_translate::translate_on(&world, &group, &options, 1);
        snapshot(&resources, None)
    });
    drop(built?);
    let (translate, resources) = time_runs(runs, || {
        portolan_translate::translate(&world, &group, &options)
    });
    let (encode, bytes) = time_runs(runs, || encode_all(&resources));
    let (snapshot_times, built) = time_runs(runs, || {
        let resources = portolan_translate::translate(&world, &group, &options);
        snapshot(&resources, None)
    });
    let snap = built?;
    let memory_after = Memory::now();
    drop((snap, resources));
    Ok(TranslateBench {
        spec,
        world_build,
        translate,
        translate_single,
        encode,
        snapshot: snapshot_times,
        snapshot_single,
        cold_build,
        bytes,
        memory_before,
        memory_world,
        memory_after,
        memory_cold_build,
    })
}

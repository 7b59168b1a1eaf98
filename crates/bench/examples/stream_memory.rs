//! What the xDS state machines alone hold per connected proxy (issue #24): N SotW or Delta
//! stream state machines (`portolan_xds::SotwStream` / `DeltaStream`, no gRPC, no tasks),
//! each synced by an Envoy-like subscriber to one snapshot of a synthetic world, every response
//! answered and then dropped. The process's resident memory before and after, divided by N,
//! is the live state of a stream in sync (its names, what it believes the client holds, its
//! versions), without HTTP/2, tonic or allocator retention of transient buffers. Run with
//! `MIMALLOC_PURGE_DELAY=0` so that freed pages leave the figure at once.
//!
//! ```sh
//! cargo run --release -p portolan-bench --example stream_memory -- 1000 2000 sotw
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use anyhow::{Context, bail};
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};
use portolan_bench::WorldSpec;
use portolan_e2e::procfs::rss_kib;
use portolan_pipeline::IncrementalBuilder;
use portolan_translate::Options;
use portolan_translate::names::MESH_ROUTE;
use portolan_xds::{DeltaStream, Snapshot, SotwStream, StreamTypes};
use portolan_xds_client::{DeltaSubscriber, Follow, SotwSubscriber, node};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let services: usize = args.get(1).map_or(Ok(1000), |a| a.parse())?;
    let streams: usize = args.get(2).map_or(Ok(2000), |a| a.parse())?;
    let delta = args.get(3).is_some_and(|a| a == "delta");
    let spec = WorldSpec::new(services, services * 10);
    let mut index = spec.index();
    let world = index.world();
    let group = portolan_pipeline::groups::group_for_name("default", &world)
        .context("the default group")?;
    let snapshot =
        Arc::new(IncrementalBuilder::new().build(&world, &group, &Options::default(), None)?);
    drop(world);
    // One stream first, so that what every stream shares (the snapshot's lazily made parts,
    // the allocator's first pages) is in the "before" figure.
    let mut kept: Vec<Box<dyn std::any::Any>> = vec![sync(&snapshot, delta)?];
    let pid = std::process::id();
    let before = rss_kib(pid)?;
    for _ in 0..streams {
        kept.push(sync(&snapshot, delta)?);
    }
    let after = rss_kib(pid)?;
    println!(
        "{} {} streams, {services} services: RSS {before} -> {after} KiB, {:.1} KiB per stream",
        if delta { "Delta" } else { "SotW" },
        streams,
        after.saturating_sub(before) as f64 / streams.max(1) as f64
    );
    drop(kept);
    if !delta {
        before_issue_24(&snapshot, streams)?;
    }
    Ok(())
}

/// What a SotW stream in sync held per name before issue #24's per-stream memory work, built
/// the way it built them, `streams` times: its own map of every cluster (collected), its own
/// set of every EDS name and its own map of every ClusterLoadAssignment (inserted one by one
/// as they were sent); and the request decoder's buffer, which tonic grew to the largest
/// request (the EDS request naming every cluster) and kept.
fn before_issue_24(snapshot: &Arc<Snapshot>, streams: usize) -> anyhow::Result<()> {
    use portolan_xds::ResourceType::{Cluster, Endpoint};
    use std::collections::{BTreeMap, BTreeSet};
    type Name = Arc<str>;
    let pid = std::process::id();
    let shared = |ty| -> Vec<(Name, Arc<portolan_xds::Resource>)> {
        let all = snapshot.resources(ty);
        all.values()
            .map(|r| (Name::from(r.name()), r.clone()))
            .collect()
    };
    // Names shared as the stream shared them (one Arc per name, cloned into every map).
    let (clusters, assignments) = (shared(Cluster), shared(Endpoint));
    let mut maps: Vec<Box<dyn std::any::Any>> = Vec::new();
    let mut measure =
        |what: &str, make: &dyn Fn() -> Box<dyn std::any::Any>| -> anyhow::Result<()> {
            let before = rss_kib(pid)?;
            for _ in 0..streams {
                maps.push(make());
            }
            let after = rss_kib(pid)?;
            println!(
                "  before #24, per stream: {what}: {:.1} KiB",
                after.saturating_sub(before) as f64 / streams.max(1) as f64
            );
            Ok(())
        };
    measure("CDS map of every cluster (collected)", &|| {
        let map: BTreeMap<Name, _> = clusters.iter().cloned().collect();
        Box::new(map)
    })?;
    measure("EDS name set", &|| {
        let set: BTreeSet<Name> = assignments.iter().map(|(n, _)| n.clone()).collect();
        Box::new(set)
    })?;
    measure("EDS map of every assignment (inserted as sent)", &|| {
        let mut map = BTreeMap::new();
        for (name, resource) in &assignments {
            map.insert(name.clone(), resource.clone());
        }
        Box::new(map)
    })?;
    let names: Vec<String> = assignments.iter().map(|(n, _)| n.to_string()).collect();
    let request = envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest {
        resource_names: names,
        type_url: portolan_xds_client::type_url::ENDPOINT.to_string(),
        node: Some(node::envoy("mem", "default")),
        ..Default::default()
    };
    println!(
        "  the EDS request (and every EDS ACK) naming every cluster: {} bytes (tonic's decode buffer grew to it and kept it)",
        prost::Message::encoded_len(&request)
    );
    drop(maps);
    Ok(())
}

/// A stream state machine synced to `snapshot` by an Envoy-like subscriber (the subscriber
/// dropped: the client's side is not Portolan's memory).
fn sync(snapshot: &Arc<Snapshot>, delta: bool) -> anyhow::Result<Box<dyn std::any::Any>> {
    let node = node::envoy("mem", "default");
    let routes = vec![MESH_ROUTE.to_string()];
    if delta {
        let mut stream = DeltaStream::new(StreamTypes::Aggregated);
        let mut subscriber = DeltaSubscriber::new(node, routes);
        let mut queue: VecDeque<DeltaDiscoveryResponse> = VecDeque::new();
        queue.extend(wire(stream.on_snapshot(snapshot.clone()).responses));
        queue.extend(wire(stream.on_request(subscriber.start()).responses));
        while let Some(response) = queue.pop_front() {
            for request in subscriber.accept(&response) {
                queue.extend(wire(stream.on_request(request).responses));
            }
        }
        if !subscriber.synced() {
            bail!("Delta stream did not sync");
        }
        return Ok(Box::new(stream));
    }
    let mut stream = SotwStream::new(StreamTypes::Aggregated);
    let mut subscriber = SotwSubscriber::new(node, Follow::Envoy { routes });
    let mut queue: VecDeque<DiscoveryResponse> = VecDeque::new();
    queue.extend(wire(stream.on_snapshot(snapshot.clone()).responses));
    queue.extend(wire(stream.on_request(subscriber.start()).responses));
    while let Some(response) = queue.pop_front() {
        for request in subscriber.accept(&response)? {
            queue.extend(wire(stream.on_request(request).responses));
        }
    }
    if !subscriber.synced() {
        bail!("SotW stream did not sync");
    }
    Ok(Box::new(stream))
}

fn wire<R, P: From<R>>(responses: Vec<R>) -> Vec<P> {
    responses.into_iter().map(P::from).collect()
}

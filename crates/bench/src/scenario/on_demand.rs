//! On-demand discovery (issue #11): the bytes one proxy receives in on-demand mode (VHDS +
//! on-demand CDS) against a full-push proxy of the same world, both on Delta ADS.
//!
//! Both proxies are Portolan's own Delta stream state machine driven the way Envoy drives it:
//! the full one as [`DeltaProxy`]; the on-demand one (a [`DeltaProxy`] too, with on-demand node
//! metadata) subscribes to wildcard CDS and LDS, the mesh route configuration and VHDS with no
//! names, then, per service first used, asks for its virtual host (`mesh-outbound/HOST`) and its
//! cluster by name, whose arrival subscribes the cluster's endpoints. Every
//! response is ACKed; bytes are the responses' encoded length. Also measured: the snapshot
//! build of each group (on-demand holds one virtual host per domain) and its encoded size.

use crate::measure::{median, time_runs};
use crate::proxy::{DeltaProxy, Push};
use crate::{BenchError, WorldSpec};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::route::v3::{
    VirtualHost, route::Action, route_action::ClusterSpecifier,
};
use portolan_model::group::{DiscoveryMode, GroupKey};
use portolan_pipeline::IncrementalBuilder;
use portolan_pipeline::grouping::DISCOVERY_METADATA;
use portolan_translate::names::MESH_ROUTE;
use portolan_translate::{Options, ProxyGroup};
use portolan_xds::{ResourceType, Snapshot};
use portolan_xds_client::{node, type_url};
use prost::Message;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// Services first used by the on-demand proxy (bytes per service are their mean).
const FIRST_USES: usize = 20;

/// The figures of one run.
#[derive(Clone, Debug)]
pub struct OnDemandBench {
    pub spec: WorldSpec,
    /// The initial sync of a full-push proxy and of an on-demand proxy.
    pub full_initial: Push,
    pub on_demand_initial: Push,
    /// What the on-demand proxy received for [`FIRST_USES`] services used for the first time
    /// (virtual host, cluster and endpoints each).
    pub first_uses: Push,
    pub services_used: usize,
    /// Snapshot build (translate + encode) of each group, from scratch.
    pub full_build: Duration,
    pub on_demand_build: Duration,
    /// Encoded bytes the cache holds for each group's snapshot.
    pub full_snapshot_bytes: usize,
    pub on_demand_snapshot_bytes: usize,
}

/// Runs the scenario on `spec`.
pub fn on_demand(spec: WorldSpec) -> Result<OnDemandBench, BenchError> {
    let mut index = spec.index();
    let world = index.world();
    let options = Options::default();
    let build = |key: GroupKey| {
        let group = ProxyGroup::from(&key);
        let (times, snapshot) = time_runs(1, || {
            IncrementalBuilder::new().build(&world, &group, &options, None)
        });
        Ok::<_, BenchError>((median(&times), Arc::new(snapshot?)))
    };
    let (full_build, full) = build(GroupKey::default())?;
    let (on_demand_build, lazy) = build(GroupKey {
        discovery: DiscoveryMode::OnDemand,
        ..GroupKey::default()
    })?;
    let (_, full_initial) = DeltaProxy::connect(full.clone())?;
    let mut proxy = OnDemandProxy::new(lazy.clone());
    let on_demand_initial = proxy.connect()?;
    let hosts = first_hosts(&lazy, FIRST_USES);
    let mut first_uses = Push::default();
    for (host, cluster) in &hosts {
        first_uses += proxy.first_use(host, cluster)?;
    }
    Ok(OnDemandBench {
        spec,
        full_initial,
        on_demand_initial,
        first_uses,
        services_used: hosts.len(),
        full_build,
        on_demand_build,
        full_snapshot_bytes: snapshot_bytes(&full),
        on_demand_snapshot_bytes: snapshot_bytes(&lazy),
    })
}

fn snapshot_bytes(snapshot: &Snapshot) -> usize {
    ResourceType::SERVED
        .iter()
        .flat_map(|&ty| snapshot.resources(ty).values())
        .map(|r| r.value().len())
        .sum()
}

/// Up to `n` virtual hosts named by a service's FQDN and port, with the cluster each routes to.
fn first_hosts(snapshot: &Snapshot, n: usize) -> Vec<(String, String)> {
    let prefix = format!("{MESH_ROUTE}/");
    snapshot
        .resources(ResourceType::VirtualHost)
        .iter()
        .filter(|(name, _)| name.contains(".svc.cluster.local:"))
        .filter_map(|(name, r)| {
            let vhost = VirtualHost::decode(r.value().clone()).ok()?;
            let cluster = vhost.routes.first().and_then(|route| match &route.action {
                Some(Action::Route(action)) => match &action.cluster_specifier {
                    Some(ClusterSpecifier::Cluster(c)) => Some(c.clone()),
                    _ => None,
                },
                _ => None,
            })?;
            Some((name.strip_prefix(&prefix)?.to_string(), cluster))
        })
        .take(n)
        .collect()
}

/// An on-demand Envoy on a Delta ADS stream.
struct OnDemandProxy {
    proxy: Option<DeltaProxy>,
    snapshot: Arc<Snapshot>,
}

fn on_demand_node() -> Node {
    let node = node::envoy("bench-on-demand", "default");
    node::with_metadata(node, DISCOVERY_METADATA, "on-demand")
}

// === impl OnDemandProxy ===

impl OnDemandProxy {
    fn new(snapshot: Arc<Snapshot>) -> Self {
        Self {
            proxy: None,
            snapshot,
        }
    }

    /// Like Envoy: wildcard CDS, then LDS and the mesh route configuration; then VHDS with no
    /// names.
    fn connect(&mut self) -> Result<Push, BenchError> {
        let (mut proxy, mut total) =
            DeltaProxy::connect_as(on_demand_node(), self.snapshot.clone())?;
        total += proxy.subscribe(type_url::VIRTUAL_HOST, Vec::new())?;
        self.proxy = Some(proxy);
        Ok(total)
    }

    /// A first request for `host`: its virtual host, its cluster (whose arrival subscribes the
    /// cluster's endpoints).
    fn first_use(&mut self, host: &str, cluster: &str) -> Result<Push, BenchError> {
        let proxy = self
            .proxy
            .as_mut()
            .ok_or_else(|| BenchError::Proxy("the on-demand proxy is not connected".into()))?;
        let vhost = format!("{MESH_ROUTE}/{host}");
        let mut push = proxy.subscribe(type_url::VIRTUAL_HOST, vec![vhost])?;
        push += proxy.subscribe(type_url::CLUSTER, vec![cluster.to_string()])?;
        if push.resources < 3 {
            return Err(BenchError::Proxy(format!(
                "first use of {host} carried {} resources, expected 3",
                push.resources
            )));
        }
        Ok(push)
    }
}

/// The scenario as markdown.
pub fn on_demand_md(runs: &[OnDemandBench]) -> String {
    let mut out = String::from(
        "### On-demand discovery: bytes per proxy, full push vs on-demand (Delta)\n\n",
    );
    let _ = writeln!(
        out,
        "| Services | Clusters | Full initial (responses, resources) | On-demand initial (responses, resources) | Bytes per service first used | Build full / on-demand | Snapshot bytes full / on-demand |\n|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in runs {
        let per_service = r.first_uses.bytes / r.services_used.max(1);
        let _ = writeln!(
            out,
            "| {} | {} | {} B ({}, {}) | {} B ({}, {}) | {per_service} B | {:.1} / {:.1} ms | {} / {} |",
            r.spec.services,
            r.spec.cluster_count(),
            r.full_initial.bytes,
            r.full_initial.responses,
            r.full_initial.resources,
            r.on_demand_initial.bytes,
            r.on_demand_initial.responses,
            r.on_demand_initial.resources,
            r.full_build.as_secs_f64() * 1e3,
            r.on_demand_build.as_secs_f64() * 1e3,
            r.full_snapshot_bytes,
            r.on_demand_snapshot_bytes,
        );
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_on_demand_proxy_starts_small_and_learns_each_service() {
        let run = on_demand(WorldSpec::new(50, 200)).expect("runs");
        assert!(run.services_used > 0);
        assert!(
            run.on_demand_initial.bytes * 10 < run.full_initial.bytes,
            "{run:?}"
        );
        // A first use carries one virtual host, one cluster and one assignment each.
        assert_eq!(run.first_uses.resources, 3 * run.services_used, "{run:?}");
    }
}

//! Resources to [`Snapshot`]: the one assembly every build uses: the served builds (translated
//! messages or the [`IncrementalBuilder`](crate::IncrementalBuilder)'s encodings), the
//! admission webhook's dry run, the bench and fuzzing.
//!
//! A group's snapshot holds its clusters, ClusterLoadAssignments, listeners and route
//! configurations, an on-demand group's VHDS virtual hosts (its clusters, but those its
//! listeners use directly, served by name only), a mesh group's SDS secrets and a gateway
//! group's certificates (SDS secrets its listeners name). The builder
//! checks the set for consistency (see [`portolan_xds::SnapshotBuilder::build`]) and shares
//! every resource whose bytes did not change with the previous snapshot.

use crate::BuildError;
use crate::patch::Candidate;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use portolan_model::World;
use portolan_translate::{OnDemandResources, Options, ProxyGroup, Resources};
use portolan_xds::snapshot::Encoded;
use portolan_xds::{ResourceType, Snapshot, SnapshotBuilder, SnapshotError};

/// Fewest ClusterLoadAssignments for which [`assemble`] encodes them on a second thread.
const PARALLEL_ENCODE_MIN: usize = 512;

/// A translated resource as a snapshot takes it: a message, encoded here, or a resource the
/// translator already encoded.
pub trait Encodable: Send {
    /// Whether [`Encodable::encode`] encodes (a message) or only hands over (an encoding).
    const ENCODES: bool;

    /// The resource's name (a cluster's name, an assignment's cluster name, ...).
    fn name(&self) -> &str;

    fn encode(self) -> Encoded;
}

/// What one group's snapshot is assembled from.
pub struct Parts<'a, C, A, R> {
    pub clusters: Vec<C>,
    pub load_assignments: Vec<A>,
    pub listeners: &'a [Listener],
    pub routes: Vec<R>,
    /// An on-demand group's virtual hosts and wildcard clusters.
    pub on_demand: Option<&'a OnDemandResources>,
    /// A mesh group's workload certificate and trust bundle, a gateway group's certificates.
    pub secrets: &'a [Secret],
}

/// [`Parts`] of translated messages.
pub type MessageParts<'a> =
    Parts<'a, &'a Cluster, &'a ClusterLoadAssignment, &'a RouteConfiguration>;

// === impl Encodable ===

impl Encodable for &Cluster {
    const ENCODES: bool = true;

    fn name(&self) -> &str {
        &self.name
    }

    fn encode(self) -> Encoded {
        Encoded::cluster(self)
    }
}

impl Encodable for &ClusterLoadAssignment {
    const ENCODES: bool = true;

    fn name(&self) -> &str {
        &self.cluster_name
    }

    fn encode(self) -> Encoded {
        Encoded::load_assignment(self)
    }
}

impl Encodable for &RouteConfiguration {
    const ENCODES: bool = true;

    fn name(&self) -> &str {
        &self.name
    }

    fn encode(self) -> Encoded {
        Encoded::route(self)
    }
}

impl Encodable for Encoded {
    const ENCODES: bool = false;

    fn name(&self) -> &str {
        self.resource().name()
    }

    fn encode(self) -> Encoded {
        self
    }
}

// === impl Parts ===

impl<'a> Parts<'a, &'a Cluster, &'a ClusterLoadAssignment, &'a RouteConfiguration> {
    /// The parts of translated messages (with the gateway certificates translation gave).
    pub fn of(resources: &'a Resources) -> Self {
        Self {
            clusters: resources.clusters.iter().collect(),
            load_assignments: resources.load_assignments.iter().collect(),
            listeners: &resources.listeners,
            routes: resources.routes.iter().collect(),
            on_demand: resources.on_demand.as_ref(),
            secrets: &resources.secrets,
        }
    }
}

/// Assembles a group's snapshot, sharing unchanged entries with `previous`.
///
/// On a machine with more than one core, a big group's ClusterLoadAssignments still to be
/// encoded are encoded on a scoped second thread while this one encodes the clusters; they are
/// added in the same order, so the snapshot is the same.
pub fn assemble<C, A, R>(
    parts: Parts<'_, C, A, R>,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, SnapshotError>
where
    C: Encodable,
    A: Encodable,
    R: Encodable,
{
    let parallel = A::ENCODES
        && parts.load_assignments.len() >= PARALLEL_ENCODE_MIN
        && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    assemble_on(parts, previous, parallel)
}

/// The snapshot of translated messages ([`portolan_translate::translate`]'s output).
pub fn snapshot(
    resources: &Resources,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, SnapshotError> {
    assemble(Parts::of(resources), previous)
}

/// Translates `world` for `group` and assembles its snapshot as the pipeline serves it, keeping
/// the messages for checks that read them (the admission webhook's dry run). A group whose
/// scope does not parse is refused, as the pipeline refuses to serve it; with
/// `EnvoyPatchPolicy` enabled, the group's policies are applied (current versions only) and
/// the first refused one is the error.
pub fn translate_checked(
    world: &World,
    group: &ProxyGroup,
    options: &Options,
) -> Result<(Resources, Snapshot), BuildError> {
    if let Some(error) = group.scope_error() {
        return Err(BuildError::Scope(error.clone()));
    }
    let mut resources = portolan_translate::translate(world, group, options);
    let candidates: Vec<Candidate> = match options.envoy_patch_policy {
        true => crate::patch::policies_for(world, group)
            .into_iter()
            .map(|p| Candidate {
                current: p.clone(),
                fallback: None,
            })
            .collect(),
        false => Vec::new(),
    };
    if candidates.is_empty() {
        let snapshot = snapshot(&resources, None)?;
        return Ok((resources, snapshot));
    }
    let (built, outcomes) = crate::patch::patch_checked(&candidates, resources, |r: Resources| {
        snapshot(&r, None).map(|s| (r, s))
    });
    if let Some(error) = outcomes.into_iter().find_map(|o| o.error) {
        return Err(BuildError::Patch(error));
    }
    let (patched, snapshot) = built?;
    resources = patched;
    Ok((resources, snapshot))
}

/// [`assemble`], encoding the assignments on a second thread when `parallel`.
fn assemble_on<C, A, R>(
    parts: Parts<'_, C, A, R>,
    previous: Option<&Snapshot>,
    parallel: bool,
) -> Result<Snapshot, SnapshotError>
where
    C: Encodable,
    A: Encodable,
    R: Encodable,
{
    let mut b = Snapshot::builder();
    if let Some(prev) = previous {
        b.reuse(prev);
    }
    if let Some(on_demand) = parts.on_demand {
        add_on_demand(
            &mut b,
            on_demand,
            parts.clusters.iter().map(Encodable::name),
        );
    }
    let (clusters, assignments) = (parts.clusters, parts.load_assignments);
    if parallel {
        let (clusters, assignments) = std::thread::scope(|s| {
            let assignments = s.spawn(|| encode_all(assignments));
            let clusters = encode_all(clusters);
            // A panic while encoding is a bug: pass it on.
            let assignments = assignments
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            (clusters, assignments)
        });
        add_all(&mut b, clusters.into_iter().chain(assignments));
    } else {
        add_all(&mut b, clusters.into_iter().map(Encodable::encode));
        add_all(&mut b, assignments.into_iter().map(Encodable::encode));
    }
    add_all(&mut b, parts.routes.into_iter().map(Encodable::encode));
    for l in parts.listeners {
        b.add_listener(l);
    }
    for s in parts.secrets {
        b.add_secret(s);
    }
    b.build()
}

fn encode_all<E: Encodable>(items: Vec<E>) -> Vec<Encoded> {
    items.into_iter().map(Encodable::encode).collect()
}

fn add_all(b: &mut SnapshotBuilder, encoded: impl Iterator<Item = Encoded>) {
    for e in encoded {
        b.add_encoded(e);
    }
}

/// Adds an on-demand group's VHDS virtual hosts and marks its clusters (but those its
/// listeners use directly) as served by name only (on-demand CDS).
fn add_on_demand<'a>(
    b: &mut SnapshotBuilder,
    on_demand: &OnDemandResources,
    clusters: impl Iterator<Item = &'a str>,
) {
    for v in &on_demand.virtual_hosts {
        b.add_virtual_host(v);
    }
    let named = clusters
        .filter(|c| !on_demand.wildcard_clusters.contains(*c))
        .map(str::to_string);
    b.named_only(ResourceType::Cluster, named);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The group a group key's string form names.
    fn test_group(key: &str) -> ProxyGroup {
        let key: portolan_model::GroupKey = key.parse().unwrap_or_else(|e| panic!("{e}"));
        ProxyGroup::from(&key)
    }

    /// Encoding the assignments on a second thread gives the same snapshot, duplicates and
    /// dangling names included.
    #[test]
    fn parallel_encode_gives_the_same_snapshot() {
        use envoy_types::pb::envoy::config::cluster::v3::cluster;
        let eds = |name: String| Cluster {
            name,
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            )),
            eds_cluster_config: Some(cluster::EdsClusterConfig::default()),
            ..Default::default()
        };
        let cla = |name: String| ClusterLoadAssignment {
            cluster_name: name,
            ..Default::default()
        };
        let n = PARALLEL_ENCODE_MIN + 10;
        let mut resources = Resources {
            clusters: (0..n).map(|i| eds(format!("c{i}"))).collect(),
            load_assignments: (0..n).map(|i| cla(format!("c{i}"))).collect(),
            ..Default::default()
        };
        let seq = assemble_on(Parts::of(&resources), None, false).expect("consistent");
        let par = assemble_on(Parts::of(&resources), None, true).expect("consistent");
        for ty in ResourceType::ALL {
            assert_eq!(seq.version(ty), par.version(ty), "{ty:?}");
            assert_eq!(seq.resources(ty), par.resources(ty), "{ty:?}");
        }
        assert_eq!(seq.resources(ResourceType::Endpoint).len(), n);
        // A cluster whose assignment is missing fails the same way.
        resources.load_assignments.pop();
        let seq = assemble_on(Parts::of(&resources), None, false)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let par = assemble_on(Parts::of(&resources), None, true)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(seq.is_err());
        assert_eq!(seq, par);
    }

    /// The webhook's dry run refuses what the pipeline would not serve.
    #[test]
    fn a_group_whose_scope_does_not_parse_is_refused() {
        let group = test_group("web;scope=payments");
        let error = translate_checked(&World::default(), &group, &Options::default())
            .map(|_| ())
            .expect_err("not served");
        assert!(matches!(error, BuildError::Scope(_)), "{error}");
    }
}

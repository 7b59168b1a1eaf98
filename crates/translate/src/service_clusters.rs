//! The clusters and ClusterLoadAssignments of one Service: one per TCP port and one per subset
//! its TrafficPolicy defines. They depend only on the Service, its endpoint groups, the
//! policy of each port, the mesh TLS towards it, the proxy's zone and the options (what
//! [`crate::Translator`] keys on).
//!
//! Mesh TLS: a proxy with a workload identity originates mutual TLS to a Service in the mesh
//! (one labelled [`SERVICE_ACCOUNT_LABEL`]) unless the Service's PeerAuthentication mode is
//! DISABLE, and checks that the server is `spiffe://TD/ns/NS/sa/SA` for the service accounts
//! the label lists (comma-separated). A TrafficPolicy's own `tls` replaces it.
//!
//! Backend TLS: the proxies of a Gateway API Gateway originate TLS to a Service port that a
//! BackendTLSPolicy covers (see [`portolan_model::gateway_api::backend_tls`]); it replaces
//! both of the above there.

use crate::ProxyGroup;
use crate::cluster;
use crate::context::Context;
use crate::endpoint;
use crate::locality;
use crate::mesh;
use crate::policy;
use crate::provenance::{Entry, Origins, ResourceKind, origins};
use crate::proxyless::{self, Client};
use crate::service::ServicePlan;
use crate::subsets;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use portolan_api::{Kind, ObjectRef};
use portolan_model::gateway_api::BackendTls;
use portolan_model::policy::DestinationPolicy;
use portolan_model::security::{self, MtlsMode, SERVICE_ACCOUNT_LABEL};
use std::sync::Arc;

/// One Service's clusters and assignments, in translation order (not sorted), and the objects
/// behind them.
#[derive(Debug, Default)]
pub(crate) struct ServiceClusters {
    pub clusters: Vec<Cluster>,
    pub load_assignments: Vec<ClusterLoadAssignment>,
    pub provenance: Vec<Entry>,
}

/// The policy of each of the plan's ports, in the plan's order.
pub(crate) fn policies(
    ctx: &Context<'_>,
    plan: &ServicePlan<'_>,
) -> Vec<Option<Arc<DestinationPolicy>>> {
    plan.ports
        .iter()
        .map(|port| ctx.service_policy(&plan.service.key, port.port.port))
        .collect()
}

/// The BackendTLSPolicy TLS of each of the plan's ports, in the plan's order, for a Gateway
/// API Gateway's proxies (`gateway_api`); empty for every other group, or when no policy
/// covers the Service.
pub(crate) fn backend_tls(
    ctx: &Context<'_>,
    plan: &ServicePlan<'_>,
    gateway_api: bool,
) -> Vec<Option<Arc<BackendTls>>> {
    let ports = match ctx.world.backend_tls.get(&plan.service.key) {
        Some(ports) if gateway_api => ports,
        _ => return Vec::new(),
    };
    plan.ports
        .iter()
        .map(|p| ports.get(&p.port.port).cloned())
        .collect()
}

/// The SPIFFE IDs a proxy (with an identity when `in_mesh`) expects from the Service's
/// servers, when it originates mutual TLS to them; `None` for plaintext.
pub(crate) fn mesh_tls(
    ctx: &Context<'_>,
    plan: &ServicePlan<'_>,
    in_mesh: bool,
) -> Option<Vec<String>> {
    if !in_mesh {
        return None;
    }
    let service = plan.service;
    let accounts = service.labels.get(SERVICE_ACCOUNT_LABEL)?;
    let ns = &service.key.namespace;
    if security::mtls_mode(ctx.world, ns, &service.labels) == MtlsMode::Disable {
        return None;
    }
    let td = &ctx.options.mesh.trust_domain;
    let ids: Vec<String> = accounts
        .split(',')
        .map(str::trim)
        .filter(|sa| !sa.is_empty())
        .map(|sa| mesh::spiffe_id(td, ns, sa))
        .collect();
    (!ids.is_empty()).then_some(ids)
}

/// Appends to `out` the clusters and assignments of a Service's ports (with `policies`, one
/// per port) and of their subsets, as `group` gets them: with a locality-aware policy and a
/// proxy zone, endpoints in the proxy's zone come first; a gRPC group's are fitted for gRPC.
/// Both translation paths (cold, and a [`crate::Translator`]'s memo) translate a Service
/// with it.
pub(crate) fn translate_for_group(
    ctx: &Context<'_>,
    plan: &ServicePlan<'_>,
    group: &ProxyGroup,
    policies: &[Option<Arc<DestinationPolicy>>],
    tls: &UpstreamTlsOf,
    out: &mut ServiceClusters,
) {
    let mark = (out.clusters.len(), out.load_assignments.len());
    translate_into(ctx, plan, policies, tls, group.zone.as_deref(), out);
    if group.client == Client::Grpc {
        proxyless::fit_service(out, mark);
    }
}

/// The TLS a proxy originates to a Service: mesh TLS (its servers' SPIFFE IDs) and, per port,
/// a BackendTLSPolicy's (empty: none).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct UpstreamTlsOf {
    pub mesh: Option<Vec<String>>,
    pub backend: Vec<Option<Arc<BackendTls>>>,
}

/// Appends a Service's clusters and assignments to `out` (appending where they are made is
/// one move per message less than collecting and extending: a Cluster is over 3 KB).
fn translate_into(
    ctx: &Context<'_>,
    plan: &ServicePlan<'_>,
    policies: &[Option<Arc<DestinationPolicy>>],
    tls: &UpstreamTlsOf,
    zone: Option<&str>,
    out: &mut ServiceClusters,
) {
    let groups = ctx.world.endpoints_of(&plan.service.key);
    let from = ServiceOrigins::new(plan, groups);
    for (i, (port, policy)) in plan.ports.iter().zip(policies).enumerate() {
        let names_from = out.clusters.len();
        let mut cluster = cluster::eds_cluster(port, ctx.options);
        if let Some(ids) = &tls.mesh {
            cluster.transport_socket = Some(mesh::upstream_mtls(ids));
            if let Some(max) = ctx.options.mesh.max_connection_duration {
                mesh::bound_connection_duration(&mut cluster, max);
            }
        }
        if let Some(policy) = policy {
            policy::apply(&mut cluster, policy);
        }
        let backend = tls.backend.get(i).and_then(Option::as_deref);
        if let Some(backend) = backend {
            let http2 = crate::protocol::is_http2(port.port);
            cluster.transport_socket = Some(crate::tls::backend_transport_socket(backend, http2));
        }
        let local_zone = zone.filter(|_| locality::is_aware(policy.as_deref()));
        let members = groups.iter().map(Arc::as_ref);
        let mut cla = endpoint::load_assignment(&port.cluster, plan.service, port.port, members);
        locality::prefer(&mut cla, local_zone);
        out.load_assignments.push(cla);
        for subset in policy.iter().flat_map(|p| &p.subsets) {
            let domain = &ctx.options.cluster_domain;
            let (c, mut cla) =
                subsets::subset_cluster(plan, port, subset, &cluster, groups, domain);
            locality::prefer(&mut cla, local_zone);
            out.clusters.push(c);
            out.load_assignments.push(cla);
        }
        out.clusters.push(cluster);
        let names: Vec<String> = out.clusters[names_from..]
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let backend_policy = backend.map(|b| &b.policy);
        from.record(
            names,
            policy.as_deref(),
            backend_policy,
            &mut out.provenance,
        );
    }
}

/// The objects behind a Service's clusters (the Service) and assignments (and its
/// EndpointSlices), shared by its ports without a policy.
struct ServiceOrigins {
    service: ObjectRef,
    slices: Vec<ObjectRef>,
    clusters: Origins,
    assignments: Origins,
}

impl ServiceOrigins {
    fn new(plan: &ServicePlan<'_>, groups: &[Arc<portolan_model::EndpointGroup>]) -> Self {
        let key = &plan.service.key;
        let service = ObjectRef::new(Kind::Service, &key.namespace, &key.name);
        let slices: Vec<ObjectRef> = groups.iter().map(|g| g.source.clone()).collect();
        let clusters = origins([service.clone()]);
        let assignments = origins(std::iter::once(service.clone()).chain(slices.iter().cloned()));
        Self {
            service,
            slices,
            clusters,
            assignments,
        }
    }

    /// Records a port's clusters and assignments (`names`), made with `policy` (and the
    /// BackendTLSPolicy `backend`, behind the clusters).
    fn record(
        &self,
        names: Vec<String>,
        policy: Option<&DestinationPolicy>,
        backend: Option<&ObjectRef>,
        out: &mut Vec<Entry>,
    ) {
        let (mut clusters, assignments) = match policy {
            None => (self.clusters.clone(), self.assignments.clone()),
            Some(p) => {
                let with = |objects: &[ObjectRef]| {
                    origins(objects.iter().cloned().chain([p.source.clone()]))
                };
                let mut all = self.slices.clone();
                all.push(self.service.clone());
                (with(std::slice::from_ref(&self.service)), with(&all))
            }
        };
        if let Some(backend) = backend {
            clusters = origins(clusters.iter().cloned().chain([backend.clone()]));
        }
        let names: Arc<[String]> = names.into();
        out.push(Entry {
            kind: ResourceKind::Cluster,
            names: names.clone(),
            origins: clusters,
            parts: Arc::from([]),
            port: None,
        });
        out.push(Entry {
            kind: ResourceKind::Endpoint,
            names,
            origins: assignments,
            parts: Arc::from([]),
            port: None,
        });
    }
}

//! The clusters and ClusterLoadAssignments of one Service: one per TCP port and one per subset
//! its TrafficPolicy defines. They depend only on the Service, its endpoint groups, the
//! policy of each port, the proxy's zone and the options (what [`crate::Translator`] keys on).

use crate::cluster;
use crate::context::Context;
use crate::endpoint;
use crate::locality;
use crate::policy;
use crate::service::ServicePlan;
use crate::subsets;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use portolan_model::policy::DestinationPolicy;
use std::sync::Arc;

/// One Service's clusters and assignments, in translation order (not sorted).
#[derive(Debug, Default)]
pub(crate) struct ServiceClusters {
    pub clusters: Vec<Cluster>,
    pub load_assignments: Vec<ClusterLoadAssignment>,
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

/// The clusters and assignments of a Service's ports (with `policies`, one per port) and of
/// their subsets. With a locality-aware policy and a proxy zone, endpoints in the proxy's zone
/// come first.
pub(crate) fn translate(
    ctx: &Context<'_>,
    plan: &ServicePlan<'_>,
    policies: &[Option<Arc<DestinationPolicy>>],
    zone: Option<&str>,
) -> ServiceClusters {
    let mut out = ServiceClusters::default();
    let groups = ctx.world.endpoints_of(&plan.service.key);
    for (port, policy) in plan.ports.iter().zip(policies) {
        let mut cluster = cluster::eds_cluster(port, ctx.options);
        if let Some(policy) = policy {
            policy::apply(&mut cluster, policy);
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
    }
    out
}

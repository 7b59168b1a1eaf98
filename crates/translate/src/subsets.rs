//! Subset clusters: for every subset a TrafficPolicy defines on a Service port, an EDS cluster
//! `outbound|{port}|{subset}|{fqdn}` with the port cluster's settings and a load assignment of
//! only the endpoint groups whose labels include the subset's labels.

use crate::endpoint;
use crate::names;
use crate::service::{PortPlan, ServicePlan};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use portolan_model::EndpointGroup;
use portolan_model::policy::Subset;
use std::sync::Arc;

/// A subset cluster and its assignment, derived from the port cluster `base`.
pub(crate) fn subset_cluster(
    plan: &ServicePlan<'_>,
    port: &PortPlan<'_>,
    subset: &Subset,
    base: &Cluster,
    groups: &[Arc<EndpointGroup>],
    domain: &str,
) -> (Cluster, ClusterLoadAssignment) {
    let name = names::subset_cluster_name(&plan.service.key, port.port.port, &subset.name, domain);
    let mut cluster = base.clone();
    cluster.name.clone_from(&name);
    if let Some(eds) = cluster.eds_cluster_config.as_mut() {
        eds.service_name.clone_from(&name);
    }
    let members = groups
        .iter()
        .map(Arc::as_ref)
        .filter(|g| selects(subset, g));
    let cla = endpoint::load_assignment(&name, plan.service, port.port, members);
    (cluster, cla)
}

/// Whether a group's labels include every label of the subset.
fn selects(subset: &Subset, group: &EndpointGroup) -> bool {
    subset
        .labels
        .iter()
        .all(|(k, v)| group.labels.get(k) == Some(v))
}

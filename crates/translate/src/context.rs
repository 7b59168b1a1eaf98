//! The translation context: the World, the options and the service plans, and how a route
//! destination becomes a cluster name.

use crate::external::ExternalPlan;
use crate::lookup::{self, TargetId};
use crate::names;
use crate::scope::{self, Visible};
use crate::service::{self, ServicePlan};
use crate::{Options, ProxyGroup};
use portolan_model::policy::DestinationPolicy;
use portolan_model::routing::Destination;
use portolan_model::{ServiceKey, World};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Everything rule translation reads, computed once per translation.
pub(crate) struct Context<'w> {
    pub world: &'w World,
    pub options: &'w Options,
    pub plans: Vec<ServicePlan<'w>>,
    by_key: BTreeMap<ServiceKey, usize>,
    /// What a scoped group sees (`None`: everything).
    visible: Option<Visible>,
    /// The namespace of the group's workload (GAMMA consumer routes of that namespace apply
    /// to it); `None`: not a mesh workload.
    pub consumer: Option<String>,
}

/// The host a virtual host routes and the port it answers on; a destination naming the same
/// host may leave its port out.
#[derive(Clone, Debug)]
pub(crate) struct VirtualHostTarget {
    pub target: TargetId,
    pub port: u16,
}

/// A destination, resolved.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    /// The cluster to send to; a name that does not exist when the destination did not resolve.
    pub cluster: String,
    /// The TrafficPolicy of the destination port, if any (for hash policies).
    pub policy: Option<Arc<DestinationPolicy>>,
}

// === impl Context ===

impl<'w> Context<'w> {
    pub(crate) fn new(world: &'w World, options: &'w Options) -> Self {
        let plans = service::plan_all(world, options);
        let by_key = plans
            .iter()
            .enumerate()
            .map(|(i, p)| (p.service.key.clone(), i))
            .collect();
        Self {
            world,
            options,
            plans,
            by_key,
            visible: None,
            consumer: None,
        }
    }

    /// A context without plans or scope: enough to translate the clusters and assignments of
    /// Services planned apart (see [`crate::Translator::endpoints_only`]); nothing that looks
    /// Services up or asks what a group sees may use it.
    pub(crate) fn without_plans(world: &'w World, options: &'w Options) -> Self {
        Self {
            world,
            options,
            plans: Vec::new(),
            by_key: BTreeMap::new(),
            visible: None,
            consumer: None,
        }
    }

    /// The context of one group's translation: [`Context::new`] with the group's scope.
    pub(crate) fn for_group(world: &'w World, options: &'w Options, group: &ProxyGroup) -> Self {
        let mut ctx = Self::new(world, options);
        ctx.visible = Visible::of(&ctx, group);
        ctx.consumer = group.own_namespace().map(str::to_string);
        ctx
    }

    /// Whether a Service gets its outbound virtual hosts.
    pub(crate) fn admits_service(&self, plan: &ServicePlan<'_>) -> bool {
        self.visible
            .as_ref()
            .is_none_or(|v| v.admits(&TargetId::Service(plan.service.key.clone())))
    }

    /// Whether a Service gets its clusters and assignments.
    pub(crate) fn reaches_service(&self, plan: &ServicePlan<'_>) -> bool {
        self.visible
            .as_ref()
            .is_none_or(|v| v.reaches(&TargetId::Service(plan.service.key.clone())))
    }

    /// Whether an ExternalService host gets its outbound virtual host.
    pub(crate) fn admits_external(&self, plan: &ExternalPlan<'_>) -> bool {
        self.visible
            .as_ref()
            .is_none_or(|v| v.admits(&scope::external_target(plan)))
    }

    /// Whether an ExternalService host gets its cluster.
    pub(crate) fn reaches_external(&self, plan: &ExternalPlan<'_>) -> bool {
        self.visible
            .as_ref()
            .is_none_or(|v| v.reaches(&scope::external_target(plan)))
    }

    pub(crate) fn plan(&self, key: &ServiceKey) -> Option<&ServicePlan<'w>> {
        self.by_key.get(key).map(|&i| &self.plans[i])
    }

    /// The policy of a Service port.
    pub(crate) fn service_policy(
        &self,
        key: &ServiceKey,
        port: u16,
    ) -> Option<Arc<DestinationPolicy>> {
        // Resolving the Service's host costs allocations; without policies there is nothing
        // to find (most worlds: this runs twice per Service port).
        if self.world.policies.is_empty() {
            return None;
        }
        lookup::policy_for(self.world, &key.namespace, &key.name, port)
    }

    /// The cluster a destination written in `namespace` means (see [`Resolved`]).
    pub(crate) fn resolve(
        &self,
        namespace: &str,
        dest: &Destination,
        vhost: Option<&VirtualHostTarget>,
    ) -> Resolved {
        self.try_resolve(namespace, dest, vhost)
            .unwrap_or_else(|| Resolved {
                cluster: names::unresolved_cluster_name(
                    &dest.host,
                    dest.port,
                    dest.subset.as_deref(),
                ),
                policy: None,
            })
    }

    fn try_resolve(
        &self,
        namespace: &str,
        dest: &Destination,
        vhost: Option<&VirtualHostTarget>,
    ) -> Option<Resolved> {
        let target = lookup::target_id(self.world, namespace, &dest.host)?;
        let vhost_port = vhost.filter(|v| v.target == target).map(|v| v.port);
        match &target {
            TargetId::Service(key) => self.resolve_service(key, dest, vhost_port),
            TargetId::External(source, host) => {
                let ext = self.world.external_services.get(source)?;
                let ports: Vec<u16> = ext.ports.iter().map(|p| p.number).collect();
                let port = pick_port(dest.port, vhost_port, &ports)?;
                if dest.subset.is_some() {
                    return None;
                }
                Some(Resolved {
                    cluster: names::external_cluster_name(host, port),
                    policy: lookup::policy_for(self.world, namespace, host, port),
                })
            }
        }
    }

    fn resolve_service(
        &self,
        key: &ServiceKey,
        dest: &Destination,
        vhost_port: Option<u16>,
    ) -> Option<Resolved> {
        let plan = self.plan(key)?;
        let ports: Vec<u16> = plan.ports.iter().map(|p| p.port.port).collect();
        let port = pick_port(dest.port, vhost_port, &ports)?;
        let port_plan = plan.ports.iter().find(|p| p.port.port == port)?;
        let policy = self.service_policy(key, port);
        let cluster = match dest.subset.as_deref() {
            None => port_plan.cluster.clone(),
            Some(subset) => {
                let defined = policy
                    .as_ref()
                    .is_some_and(|p| p.subsets.iter().any(|s| s.name == subset));
                if !defined {
                    return None;
                }
                names::subset_cluster_name(key, port, subset, &self.options.cluster_domain)
            }
        };
        Some(Resolved { cluster, policy })
    }
}

/// The written port if the destination has it; else the virtual host's port (same host);
/// else the destination's only port.
fn pick_port(written: Option<u16>, vhost_port: Option<u16>, ports: &[u16]) -> Option<u16> {
    let port = match (written, vhost_port, ports) {
        (Some(p), _, _) => p,
        (None, Some(p), _) => p,
        (None, None, [only]) => *only,
        _ => return None,
    };
    ports.contains(&port).then_some(port)
}

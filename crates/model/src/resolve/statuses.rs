//! The conditions of routing objects, computed from one World.
//!
//! * TrafficRoute: `Accepted` False with reason `NoMatchingParent` when none of its Gateways
//!   exists, `Conflicted` when it lost a host to an earlier route (by namespace, name) on the
//!   same parent (see [`super::route_owners`]). `ResolvedRefs` False with reason
//!   `GatewayNotFound`, `BackendNotFound` (no such Service/ExternalService, or no such port, or
//!   a port is needed) or `SubsetNotFound` (no TrafficPolicy for the destination defines it).
//! * TrafficPolicy: `Accepted` False `Conflicted` when an earlier policy has the same host and
//!   port (see [`super::policy_for`]); `ResolvedRefs` False `BackendNotFound` when its host
//!   or port does not exist.
//! * Gateway: `ResolvedRefs` False `SecretNotFound` when a listener's Secret is missing.
//! * ExternalService: `Accepted` False `Conflicted` when an earlier one claims the same host.
//! * EnvoyPatchPolicy: `ResolvedRefs` False `TargetNotFound` when its `targetRef` Gateway does
//!   not exist (whether its patches apply is the pipeline's to say, when it serves them).
//! * ProxyScope: `Accepted` False `Conflicted` when an older one (or, equally old, one first by
//!   name) selects some of the same proxies (see [`crate::proxy_scope::conflicts`]).
//!
//! Messages name the field path and the missing object. `observedGeneration` is the object's.

use super::{HostId, Target, host_id, host_key, lookup_host, parents_of, policy_for, route_owners};
use crate::external::ExternalService;
use crate::gateway::Gateway;
use crate::policy::DestinationPolicy;
use crate::routing::{Backend, Destination, HttpAction, HttpRoute, Parent};
use crate::status::{Condition, ConditionType};
use crate::world::World;
use portolan_api::{FieldPath, Kind, ObjectRef};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A failed check: reason and message.
struct Problem {
    reason: &'static str,
    message: String,
}

pub(super) fn statuses(world: &World) -> BTreeMap<ObjectRef, Vec<Condition>> {
    let mut out = BTreeMap::new();
    let mut owners: BTreeMap<Parent, BTreeMap<String, Arc<HttpRoute>>> = BTreeMap::new();
    for route in world.routes.values() {
        for p in parents_of(route) {
            owners
                .entry(p.clone())
                .or_insert_with(|| route_owners(world, &p));
        }
        out.insert(
            route.source.clone(),
            route_conditions(world, route, &owners),
        );
    }
    for policy in world.policies.values() {
        out.insert(policy.source.clone(), policy_conditions(world, policy));
    }
    for gw in world.gateways.values() {
        out.insert(gw.source.clone(), gateway_conditions(world, gw));
    }
    for es in world.external_services.values() {
        out.insert(es.source.clone(), external_conditions(world, es));
    }
    // Security objects refer to nothing by name: accepted once valid.
    for p in world.peer_authentications.values() {
        out.insert(p.source.clone(), conditions(vec![], vec![], p.generation));
    }
    for p in world.access_policies.values() {
        out.insert(p.source.clone(), conditions(vec![], vec![], p.generation));
    }
    for p in world.envoy_patches.values() {
        out.insert(p.source.clone(), envoy_patch_conditions(world, p));
    }
    let lost = crate::proxy_scope::conflicts(world);
    for p in world.proxy_scopes.values() {
        let problems = lost.get(&p.source).map(|winner| Problem {
            reason: "Conflicted",
            message: format!(
                "{}: proxies it selects are also selected by {winner}, which was created first (or is first by name) and scopes them",
                if p.selector.is_some() { "spec.selector" } else { "metadata.namespace" }
            ),
        });
        out.insert(
            p.source.clone(),
            conditions(problems.into_iter().collect(), vec![], p.generation),
        );
    }
    out
}

/// `ResolvedRefs` False when the Gateway the policy targets does not exist.
fn envoy_patch_conditions(world: &World, p: &crate::envoy_patch::EnvoyPatch) -> Vec<Condition> {
    use crate::envoy_patch::PatchTarget;
    let missing = match &p.target {
        PatchTarget::Gateway(g) => (!world.gateways.contains_key(g)).then_some(g),
        PatchTarget::ApiGateway(g) => (!world.gateway_api.contains_key(g)).then_some(g),
        PatchTarget::Proxies { .. } => None,
    };
    let refs = missing.map(|g| Problem {
        reason: "TargetNotFound",
        message: format!("spec.targetRef: {g} does not exist"),
    });
    conditions(vec![], refs.into_iter().collect(), p.generation)
}

/// `Accepted` from the first problem (or True), likewise `ResolvedRefs`.
fn conditions(accepted: Vec<Problem>, refs: Vec<Problem>, generation: i64) -> Vec<Condition> {
    let one = |type_, ok_reason: &str, problems: Vec<Problem>| match problems.first() {
        None => Condition::new(type_, true, ok_reason, "", generation),
        Some(first) => {
            let message = problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            Condition::new(type_, false, first.reason, message, generation)
        }
    };
    vec![
        one(ConditionType::Accepted, "Accepted", accepted),
        one(ConditionType::ResolvedRefs, "ResolvedRefs", refs),
    ]
}

// === routes ===

fn route_conditions(
    world: &World,
    route: &Arc<HttpRoute>,
    owners: &BTreeMap<Parent, BTreeMap<String, Arc<HttpRoute>>>,
) -> Vec<Condition> {
    let spec = FieldPath::root().field("spec");
    let mut accepted = Vec::new();
    let mut refs = Vec::new();
    let parents = parents_of(route);
    let mut live = Vec::new();
    for (i, p) in parents.iter().enumerate() {
        match p {
            Parent::Gateway { namespace, name } => {
                let gw = ObjectRef::new(Kind::Gateway, namespace, name);
                if world.gateways.contains_key(&gw) {
                    live.push(p);
                } else {
                    refs.push(Problem {
                        reason: "GatewayNotFound",
                        message: format!(
                            "{}: gateway {namespace}/{name} not found",
                            spec.field("gateways").index(i)
                        ),
                    });
                }
            }
            Parent::Mesh => live.push(p),
        }
    }
    if live.is_empty() {
        accepted.push(Problem {
            reason: "NoMatchingParent",
            message: "none of the gateways it names exists".to_string(),
        });
    }
    for p in live {
        host_conflicts(world, route, p, owners.get(p), &mut accepted);
    }
    backend_refs(world, route, &mut refs);
    conditions(accepted, refs, route.generation)
}

fn parent_name(p: &Parent) -> String {
    match p {
        Parent::Mesh => "the mesh".to_string(),
        Parent::Gateway { namespace, name } => format!("gateway {namespace}/{name}"),
    }
}

fn host_conflicts(
    world: &World,
    route: &Arc<HttpRoute>,
    parent: &Parent,
    owners: Option<&BTreeMap<String, Arc<HttpRoute>>>,
    out: &mut Vec<Problem>,
) {
    for (i, host) in route.hosts.iter().enumerate() {
        let key = host_key(world, parent, &route.source.namespace, host);
        let Some(owner) = owners.and_then(|o| o.get(&key)) else {
            continue;
        };
        if owner.source != route.source {
            out.push(Problem {
                reason: "Conflicted",
                message: format!(
                    "spec.hosts[{i}]: host {host:?} on {} is already routed by TrafficRoute {}/{}",
                    parent_name(parent),
                    owner.source.namespace,
                    owner.source.name
                ),
            });
        }
    }
}

fn backend_refs(world: &World, route: &HttpRoute, out: &mut Vec<Problem>) {
    let ns = &route.source.namespace;
    let http = FieldPath::root().field("spec").field("http");
    for (i, rule) in route.http.iter().enumerate() {
        if let HttpAction::Forward { backends, .. } = &rule.action {
            for (j, b) in backends.iter().enumerate() {
                let path = http.index(i).field("route").index(j).field("destination");
                check_destination(world, route, ns, &b.destination, &path, out);
            }
        }
        for m in &rule.mirrors {
            let path = http.index(i).field("mirror");
            check_destination(world, route, ns, &m.destination, &path, out);
        }
    }
    // One spec rule with several matched ports becomes consecutive model rules with the same
    // backends: count those as one spec rule.
    let tcp = FieldPath::root().field("spec").field("tcp");
    let mut spec_index = 0;
    let mut previous: Option<&Vec<Backend>> = None;
    for rule in &route.tcp {
        if previous.is_some_and(|p| *p != rule.backends) {
            spec_index += 1;
        }
        if previous.is_none() || previous.is_some_and(|p| *p != rule.backends) {
            for (j, b) in rule.backends.iter().enumerate() {
                let path = tcp
                    .index(spec_index)
                    .field("route")
                    .index(j)
                    .field("destination");
                check_destination(world, route, ns, &b.destination, &path, out);
            }
        }
        previous = Some(&rule.backends);
    }
}

fn check_destination(
    world: &World,
    route: &HttpRoute,
    ns: &str,
    dest: &Destination,
    path: &FieldPath,
    out: &mut Vec<Problem>,
) {
    let missing = |message: String| Problem {
        reason: "BackendNotFound",
        message: format!("{path}: {message}"),
    };
    let (what, port) = match lookup_host(world, ns, &dest.host) {
        None => {
            let message = match host_id(world, ns, &dest.host) {
                HostId::Service(k) => format!("service {k} not found"),
                HostId::Name(n) => {
                    format!("host {n:?} is neither a Service nor an ExternalService host")
                }
            };
            out.push(missing(message));
            return;
        }
        Some(Target::Service(svc)) => {
            let what = format!("service {}", svc.key);
            let ports: Vec<u16> = svc.ports.iter().map(|p| p.port).collect();
            match port_of(route, world, ns, dest, &ports) {
                Ok(p) => (what, p),
                Err(m) => return out.push(missing(format!("{what} {m}"))),
            }
        }
        Some(Target::External(es)) => {
            let what = format!(
                "external service {}/{}",
                es.source.namespace, es.source.name
            );
            let ports: Vec<u16> = es.ports.iter().map(|p| p.number).collect();
            match port_of(route, world, ns, dest, &ports) {
                Ok(p) => (what, p),
                Err(m) => return out.push(missing(format!("{what} {m}"))),
            }
        }
    };
    if let Some(subset) = &dest.subset {
        // Port 0 never matches a port-specific policy: the port-less one applies.
        let policy = policy_for(world, ns, &dest.host, port.unwrap_or(0));
        if !policy.is_some_and(|p| p.subsets.iter().any(|s| &s.name == subset)) {
            out.push(Problem {
                reason: "SubsetNotFound",
                message: format!("{path}: {what} has no subset {subset:?}"),
            });
        }
    }
}

/// The destination's port: as written (it must exist), the only one, or `None` when it is the
/// routed host itself (the request's port is used). `Err` says what is wrong.
fn port_of(
    route: &HttpRoute,
    world: &World,
    ns: &str,
    dest: &Destination,
    ports: &[u16],
) -> Result<Option<u16>, String> {
    match (dest.port, ports) {
        (Some(p), _) if ports.contains(&p) => Ok(Some(p)),
        (Some(p), _) => Err(format!("has no port {p}")),
        (None, [only]) => Ok(Some(*only)),
        (None, _) => {
            let target = host_id(world, ns, &dest.host);
            if route.hosts.iter().any(|h| host_id(world, ns, h) == target) {
                Ok(None)
            } else {
                Err(format!(
                    "has {} ports: the destination needs a port",
                    ports.len()
                ))
            }
        }
    }
}

// === policies, gateways, external services ===

fn policy_conditions(world: &World, policy: &Arc<DestinationPolicy>) -> Vec<Condition> {
    let ns = &policy.source.namespace;
    let mut accepted = Vec::new();
    let mut refs = Vec::new();
    let target = host_id(world, ns, &policy.host);
    let winner = world
        .policies
        .values()
        .find(|p| p.port == policy.port && host_id(world, &p.source.namespace, &p.host) == target);
    if let Some(w) = winner.filter(|w| w.source != policy.source) {
        let port = policy
            .port
            .map(|p| format!(" port {p}"))
            .unwrap_or_default();
        accepted.push(Problem {
            reason: "Conflicted",
            message: format!(
                "spec.host: host {:?}{port} is already configured by TrafficPolicy {}/{}",
                policy.host, w.source.namespace, w.source.name
            ),
        });
    }
    let ports: Option<Vec<u16>> = match lookup_host(world, ns, &policy.host) {
        Some(Target::Service(s)) => Some(s.ports.iter().map(|p| p.port).collect()),
        Some(Target::External(e)) => Some(e.ports.iter().map(|p| p.number).collect()),
        None => {
            let message = match &target {
                HostId::Service(k) => format!("spec.host: service {k} not found"),
                HostId::Name(n) => {
                    format!(
                        "spec.host: host {n:?} is neither a Service nor an ExternalService host"
                    )
                }
            };
            refs.push(Problem {
                reason: "BackendNotFound",
                message,
            });
            None
        }
    };
    if let (Some(ports), Some(p)) = (ports, policy.port)
        && !ports.contains(&p)
    {
        refs.push(Problem {
            reason: "BackendNotFound",
            message: format!("spec.port: {:?} has no port {p}", policy.host),
        });
    }
    conditions(accepted, refs, policy.generation)
}

fn gateway_conditions(world: &World, gw: &Gateway) -> Vec<Condition> {
    let mut refs = Vec::new();
    for (i, l) in gw.listeners.iter().enumerate() {
        let Some(secret) = &l.tls else {
            continue;
        };
        let key = ObjectRef::new(Kind::Secret, &secret.namespace, &secret.name);
        if !world.secrets.contains_key(&key) {
            refs.push(Problem {
                reason: "SecretNotFound",
                message: format!(
                    "spec.listeners[{i}].tls.secretRef: secret {}/{} (type kubernetes.io/tls) not found",
                    secret.namespace, secret.name
                ),
            });
        }
    }
    conditions(Vec::new(), refs, gw.generation)
}

fn external_conditions(world: &World, es: &ExternalService) -> Vec<Condition> {
    let mut accepted = Vec::new();
    for (i, host) in es.hosts.iter().enumerate() {
        let owner = world
            .external_services
            .values()
            .find(|o| o.hosts.contains(host));
        if let Some(o) = owner.filter(|o| o.source != es.source) {
            accepted.push(Problem {
                reason: "Conflicted",
                message: format!(
                    "spec.hosts[{i}]: host {host:?} is already claimed by ExternalService {}/{}",
                    o.source.namespace, o.source.name
                ),
            });
        }
    }
    conditions(accepted, Vec::new(), es.generation)
}

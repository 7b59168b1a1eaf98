//! Which Gateways and routes are Portolan's, how routes (HTTPRoute, GRPCRoute, TLSRoute, TCPRoute,
//! UDPRoute) attach to listeners (parentRefs with sectionName and port, allowedRoutes namespaces and
//! kinds, hostname intersection), the ports and filter chains that result, and the status
//! every object gets from that. The listeners themselves are compiled in [`super::listener`].

use super::address::AddressPool;
use super::listener::{
    ListenerState, Owner, Proto, add_set_listeners, listener_status, listeners, namespaces_admit,
    owning_listener,
};
use super::mesh::{self, MeshState};
use super::rules::{self, RouteRefs};
use super::status::{
    ApiCondition, ApiStatus, GatewayClassStatus, GatewayStatus, ListenerSetStatus, ListenerStatus,
    RouteParentStatus, RouteStatus, StatusAddress, SupportedFeature,
};
use super::tls::{self, PassthroughKey, RefError};
use super::{
    ApiChain, ApiGateway, ApiPort, ApiRule, ApiVirtualHost, ChainKind, Compiled, group_of,
};
use crate::routing::Backend;
use crate::world::World;
use portolan_api::gwapi::{self, CONTROLLER_NAME, GROUP, Gateway, ListenerSet, ParentReference};
use portolan_api::{Kind, ObjectRef, Resource};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The features Portolan claims in GatewayClass status: only those the conformance runners
/// (tests/e2e/cases/gateway_api.rs; `Mesh`: gateway_api_mesh.rs) reproduce.
const SUPPORTED_FEATURES: &[&str] = &[
    "BackendTLSPolicy",
    "BackendTLSPolicySANValidation",
    "Gateway",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GRPCRoute",
    "HTTPRoute",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteCORS",
    "HTTPRoutePathRedirect",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "ListenerSet",
    "Mesh",
    "ReferenceGrant",
    "TCPRoute",
    "TLSRoute",
    "UDPRoute",
];

type HostRules = BTreeMap<String, Vec<(usize, rules::Precedence, ApiRule)>>;
/// Per hostname: (listener index, precedence, backends) of each TLSRoute.
type HostBackends = BTreeMap<String, Vec<(usize, PassthroughKey, Vec<Backend>)>>;

struct GatewayState<'a> {
    source: ObjectRef,
    spec: &'a Gateway,
    address: String,
    listeners: Vec<ListenerState<'a>>,
    /// Per listener port: hostname -> (listener index, rule).
    hosts: BTreeMap<u16, HostRules>,
    /// Per passthrough port: hostname -> TLSRoute backends.
    tls_hosts: BTreeMap<u16, HostBackends>,
    /// The ListenerSets that name it as their parent, in precedence order (oldest first,
    /// then namespace/name); `Owner::Set(i)` listeners are those of `sets[i]`.
    sets: Vec<SetState>,
    /// Per listener index: the HTTPRoutes and GRPCRoutes attached so far, with the hostnames
    /// each serves there (an HTTPRoute and a GRPCRoute must not share one, see
    /// [`cross_kind_conflict`]).
    http_routes: BTreeMap<usize, Vec<(&'a ObjectRef, Vec<String>)>>,
}

/// A ListenerSet whose parent is one of Portolan's Gateways.
struct SetState {
    source: ObjectRef,
    generation: i64,
    /// Why its listeners are not added to the Gateway's (`NotAllowed`,
    /// `ParentNotAccepted`), or `None`: they are.
    refused: Option<(&'static str, String)>,
}

/// What one route brings to the listeners it attaches to.
enum Contribution {
    Http(Vec<(rules::Precedence, ApiRule)>),
    Passthrough(PassthroughKey, Vec<Backend>),
}

/// A route of any kind, as attachment sees it.
struct RouteInput<'r> {
    source: &'r ObjectRef,
    generation: i64,
    /// Its creationTimestamp (RFC 3339 text; `None` in files): routes attach oldest first.
    created: Option<String>,
    parent_refs: &'r [ParentReference],
    hostnames: &'r [String],
    contribution: Contribution,
    unresolved: Option<RefError>,
}

pub(super) fn compile(world: &World, pool: &AddressPool) -> Compiled {
    let mut out = Compiled::default();
    let classes = our_classes(world, &mut out);
    let backend_tls = super::backend_tls::resolve(world);
    let refs = RouteRefs::new(world).refusing(backend_tls.refused.clone());
    let mut gateways = our_gateways(world, &classes, pool, &refs);
    let sets = attach_listener_sets(world, &mut gateways, &refs);
    let mut mesh = MeshState::default();
    let mut routes: Vec<RouteInput<'_>> = world
        .gateway_api
        .iter()
        .filter_map(|(source, resource)| route_input(source, resource, &refs))
        .collect();
    // The oldest first (files have none: the newest), then by namespace/name: where routes
    // compete for a listener (an HTTPRoute and a GRPCRoute on one hostname) the earlier wins.
    routes.sort_by(|a, b| {
        let key = |r: &RouteInput<'_>| {
            (
                r.created.is_none(),
                r.created.clone(),
                r.source.namespace.clone(),
                r.source.name.clone(),
            )
        };
        key(a).cmp(&key(b)).then_with(|| a.source.cmp(b.source))
    });
    // On a Service port, a GRPCRoute takes precedence over an HTTPRoute whatever their age.
    for route in routes.iter().filter(|r| r.source.kind == Kind::GrpcRoute) {
        mesh.claim_grpc(world, &route.source.namespace, route.parent_refs);
    }
    for route in &routes {
        let mut parents = Parents {
            gateways: &mut gateways,
            sets: &sets,
        };
        attach_route(route, &mut parents, &mut mesh, world, &mut out);
    }
    out.mesh = mesh.finish();
    for gw in gateways.into_values() {
        let (status, compiled, set_statuses) = finish_gateway(gw);
        for (set, status) in set_statuses {
            out.statuses.insert(set, ApiStatus::ListenerSet(status));
        }
        out.statuses
            .insert(compiled.source.clone(), ApiStatus::Gateway(status));
        out.gateways
            .insert(compiled.source.clone(), Arc::new(compiled));
    }
    super::backend_tls::statuses(world, &backend_tls, &mut out.statuses);
    out.backend_tls = backend_tls.tls;
    out
}

/// The names of Portolan's GatewayClasses (each gets `Accepted`).
fn our_classes(world: &World, out: &mut Compiled) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (source, resource) in &world.gateway_api {
        let Resource::GatewayClass(class) = &**resource else {
            continue;
        };
        if class.spec.controller_name != CONTROLLER_NAME {
            continue;
        }
        names.insert(source.name.clone());
        let generation = class.metadata.generation.unwrap_or_default();
        let status = GatewayClassStatus {
            conditions: vec![ApiCondition::new(
                "Accepted",
                true,
                "Accepted",
                "Portolan serves this class",
                generation,
            )],
            supported_features: SUPPORTED_FEATURES
                .iter()
                .map(|n| SupportedFeature {
                    name: n.to_string(),
                })
                .collect(),
        };
        out.statuses
            .insert(source.clone(), ApiStatus::GatewayClass(status));
    }
    names
}

/// A route's creationTimestamp, as text (orders routes: oldest first).
macro_rules! created {
    ($r:expr) => {
        $r.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
    };
}

/// A route object as attachment sees it (`None`: not a route).
fn route_input<'r>(
    source: &'r ObjectRef,
    resource: &'r Resource,
    refs: &RouteRefs<'_>,
) -> Option<RouteInput<'r>> {
    let generation = resource.generation();
    let (created, parent_refs, hostnames, converted): (_, _, _, rules::Converted) = match resource {
        Resource::HttpRoute(r) => (
            created!(r),
            &r.spec.parent_refs[..],
            &r.spec.hostnames[..],
            rules::convert(source, r, refs),
        ),
        Resource::GrpcRoute(r) => (
            created!(r),
            &r.spec.parent_refs[..],
            &r.spec.hostnames[..],
            super::grpc::convert(source, r, refs),
        ),
        Resource::TcpRoute(r) => {
            let c = tls::convert(source, created!(r), &r.spec.rules, refs);
            return Some(RouteInput {
                source,
                generation,
                created: created!(r),
                parent_refs: &r.spec.parent_refs,
                hostnames: &[],
                contribution: Contribution::Passthrough(c.key, c.backends),
                unresolved: c.unresolved,
            });
        }
        Resource::UdpRoute(r) => {
            let c = tls::convert(source, created!(r), &r.spec.rules, refs);
            let unresolved = c
                .unresolved
                .or_else(|| tls::udp_port_error(source, &r.spec.rules, refs.world));
            return Some(RouteInput {
                source,
                generation,
                created: created!(r),
                parent_refs: &r.spec.parent_refs,
                hostnames: &[],
                contribution: Contribution::Passthrough(c.key, c.backends),
                unresolved,
            });
        }
        Resource::TlsRoute(r) => {
            let c = tls::convert(source, created!(r), &r.spec.rules, refs);
            return Some(RouteInput {
                source,
                generation,
                created: created!(r),
                parent_refs: &r.spec.parent_refs,
                hostnames: &r.spec.hostnames,
                contribution: Contribution::Passthrough(c.key, c.backends),
                unresolved: c.unresolved,
            });
        }
        _ => return None,
    };
    Some(RouteInput {
        source,
        generation,
        created,
        parent_refs,
        hostnames,
        contribution: Contribution::Http(converted.rules),
        unresolved: converted.unresolved,
    })
}

/// Portolan's Gateways, with their addresses: `spec.addresses` first, then the pool's (in
/// namespace/name order, so an address does not move while the set of Gateways stays).
fn our_gateways<'w>(
    world: &'w World,
    classes: &BTreeSet<String>,
    pool: &AddressPool,
    refs: &RouteRefs<'_>,
) -> BTreeMap<ObjectRef, GatewayState<'w>> {
    let ours: Vec<(&ObjectRef, &Gateway)> = world
        .gateway_api
        .iter()
        .filter_map(|(source, r)| match &**r {
            Resource::ApiGateway(g) if classes.contains(&g.spec.gateway_class_name) => {
                Some((source, &**g))
            }
            _ => None,
        })
        .collect();
    let mut taken: BTreeSet<String> = ours.iter().filter_map(|(_, g)| given_address(g)).collect();
    let mut states = BTreeMap::new();
    for (source, gw) in ours {
        let given = given_address(gw).filter(|_| !pool.binds_any());
        let address = given.or_else(|| {
            let key = format!("{}/{}", source.namespace, source.name);
            let a = pool.assign(&key, &taken)?;
            taken.insert(a.clone());
            Some(a)
        });
        let Some(address) = address else {
            continue;
        };
        let state = GatewayState {
            source: source.clone(),
            spec: gw,
            address,
            listeners: listeners(gw, &source.namespace, refs),
            hosts: BTreeMap::new(),
            tls_hosts: BTreeMap::new(),
            sets: Vec::new(),
            http_routes: BTreeMap::new(),
        };
        states.insert(source.clone(), state);
    }
    states
}

/// The Gateways and ListenerSets routes attach to; `sets`: each ListenerSet of a Portolan
/// Gateway and that Gateway.
struct Parents<'g, 'w> {
    gateways: &'g mut BTreeMap<ObjectRef, GatewayState<'w>>,
    sets: &'g BTreeMap<ObjectRef, ObjectRef>,
}

/// Adds each ListenerSet whose parent is one of Portolan's Gateways to that Gateway: its
/// listeners join the Gateway's when the Gateway's `allowedListeners` admits the set's
/// namespace and the Gateway is accepted. Gives each such set's Gateway.
fn attach_listener_sets<'w>(
    world: &'w World,
    gateways: &mut BTreeMap<ObjectRef, GatewayState<'w>>,
    refs: &RouteRefs<'_>,
) -> BTreeMap<ObjectRef, ObjectRef> {
    let mut sets: Vec<(&ObjectRef, &'w ListenerSet)> = world
        .gateway_api
        .iter()
        .filter_map(|(source, r)| match &**r {
            Resource::ListenerSet(s) => Some((source, &**s)),
            _ => None,
        })
        .collect();
    // Precedence: the oldest first (files have no creationTimestamp: newest), then by
    // namespace/name.
    sets.sort_by_key(|(source, s)| {
        let created = s.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (created.is_none(), created, (*source).clone())
    });
    let mut parents = BTreeMap::new();
    for (source, set) in sets {
        let p = &set.spec.parent_ref;
        if p.group.as_deref().unwrap_or(GROUP) != GROUP
            || p.kind.as_deref().unwrap_or("Gateway") != "Gateway"
        {
            continue;
        }
        let namespace = p.namespace.as_deref().unwrap_or(&source.namespace);
        let key = ObjectRef::new(Kind::ApiGateway, namespace, &p.name);
        let Some(gw) = gateways.get_mut(&key) else {
            continue;
        };
        let refused = set_refusal(gw, &source.namespace, world);
        let index = gw.sets.len();
        if refused.is_none() {
            let gw_namespace = gw.source.namespace.clone();
            add_set_listeners(
                &mut gw.listeners,
                set,
                index,
                &source.namespace,
                gw.spec,
                &gw_namespace,
                refs,
            );
        }
        gw.sets.push(SetState {
            source: source.clone(),
            generation: set.metadata.generation.unwrap_or_default(),
            refused,
        });
        parents.insert(source.clone(), key);
    }
    parents
}

/// Why a ListenerSet in `namespace` cannot add listeners to `gw`, if it cannot.
fn set_refusal(
    gw: &GatewayState<'_>,
    namespace: &str,
    world: &World,
) -> Option<(&'static str, String)> {
    let from = gw
        .spec
        .spec
        .allowed_listeners
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    if !namespaces_admit(from, "None", &gw.source.namespace, namespace, world) {
        return Some((
            "NotAllowed",
            format!(
                "Gateway {} does not allow ListenerSets from namespace {namespace} (spec.allowedListeners)",
                gw.source.name
            ),
        ));
    }
    if !parent_accepted(gw) {
        return Some((
            "ParentNotAccepted",
            format!("Gateway {} is not accepted", gw.source.name),
        ));
    }
    None
}

/// Whether the Gateway itself is accepted (with its own listeners only).
fn parent_accepted(gw: &GatewayState<'_>) -> bool {
    let own: Vec<_> = gw
        .listeners
        .iter()
        .filter(|l| l.owner == Owner::Gateway)
        .collect();
    invalid_parameters(gw.spec).is_none() && (own.is_empty() || own.iter().any(|l| l.valid()))
}

/// The address its listeners bind; in a cluster (they bind `0.0.0.0`) the addresses it asked
/// for, until the Kubernetes source puts its Service's there.
fn status_addresses(gw: &GatewayState<'_>) -> Vec<StatusAddress> {
    if gw.address != super::address::ANY {
        return vec![StatusAddress {
            type_: "IPAddress".to_string(),
            value: gw.address.clone(),
        }];
    }
    gw.spec
        .spec
        .addresses
        .iter()
        .map(|a| StatusAddress {
            type_: a.type_.clone().unwrap_or_else(|| "IPAddress".to_string()),
            value: a.value.clone(),
        })
        .collect()
}

fn given_address(gw: &Gateway) -> Option<String> {
    gw.spec
        .addresses
        .iter()
        .find(|a| a.type_.as_deref().unwrap_or("IPAddress") == "IPAddress")
        .map(|a| a.value.clone())
}

/// Attaches one route to the listeners its parentRefs name, recording its status.
fn attach_route<'w>(
    route: &RouteInput<'w>,
    parents_of: &mut Parents<'_, 'w>,
    mesh: &mut MeshState,
    world: &World,
    out: &mut Compiled,
) {
    let generation = route.generation;
    let mut parents = Vec::new();
    for parent in route.parent_refs {
        let attached = if mesh::is_service(parent) {
            // GAMMA: HTTPRoutes and GRPCRoutes only (a TCPRoute or TLSRoute with a Service
            // parent is not Portolan's to answer).
            let Contribution::Http(rules) = &route.contribution else {
                continue;
            };
            let kind = (route.source.kind, route.source.namespace.as_str());
            mesh.attach(world, kind, parent, rules).map(|()| Vec::new())
        } else {
            let group = parent.group.as_deref().unwrap_or(GROUP);
            let kind = parent.kind.as_deref().unwrap_or("Gateway");
            let namespace = parent
                .namespace
                .as_deref()
                .unwrap_or(&route.source.namespace);
            let (key, owner) = match (group == GROUP, kind) {
                (true, "Gateway") => (
                    ObjectRef::new(Kind::ApiGateway, namespace, &parent.name),
                    None,
                ),
                (true, "ListenerSet") => {
                    let set = ObjectRef::new(Kind::ListenerSet, namespace, &parent.name);
                    let Some(gw) = parents_of.sets.get(&set) else {
                        continue;
                    };
                    (gw.clone(), Some(set))
                }
                _ => continue,
            };
            let Some(gw) = parents_of.gateways.get_mut(&key) else {
                continue;
            };
            let owner = match owner {
                None => Ok(Owner::Gateway),
                Some(set) => set_owner(gw, &set),
            };
            owner.and_then(|owner| attach_to_gateway(route, parent, gw, owner, world))
        };
        let mut superseded = None;
        let accepted = match attached {
            Ok(elsewhere) => {
                superseded = superseded_condition(&elsewhere, generation);
                ApiCondition::new("Accepted", true, "Accepted", "attached", generation)
            }
            Err((reason, message)) => {
                ApiCondition::new("Accepted", false, reason, message, generation)
            }
        };
        let resolved = match &route.unresolved {
            None => ApiCondition::new(
                "ResolvedRefs",
                true,
                "ResolvedRefs",
                "every backendRef resolved",
                generation,
            ),
            Some((reason, message)) => {
                ApiCondition::new("ResolvedRefs", false, reason, message.clone(), generation)
            }
        };
        let conditions = [accepted, resolved].into_iter().chain(superseded);
        parents.push(RouteParentStatus::new(parent.clone(), conditions.collect()));
    }
    if !parents.is_empty() {
        out.statuses.insert(
            route.source.clone(),
            ApiStatus::Route(RouteStatus { parents }),
        );
    }
}

/// The owner whose listeners a route with ListenerSet parent `set` attaches to, or why it
/// cannot (the set is not attached to its Gateway).
fn set_owner(gw: &GatewayState<'_>, set: &ObjectRef) -> Result<Owner, (&'static str, String)> {
    let index = gw
        .sets
        .iter()
        .position(|s| s.source == *set)
        .ok_or_else(|| ("NoMatchingParent", format!("no ListenerSet {set}")))?;
    match &gw.sets[index].refused {
        None => Ok(Owner::Set(index)),
        Some((_, why)) => Err((
            "NoMatchingParent",
            format!("the ListenerSet is not attached to its Gateway: {why}"),
        )),
    }
}

/// Attaches a route to the listeners of one Gateway (its own, or one ListenerSet's: `owner`)
/// a parentRef selects; `Ok` lists the TCP and UDP listeners where an older route is served
/// instead (see [`superseded_condition`]), `Err` is the `Accepted=False` reason and message.
fn attach_to_gateway<'w>(
    route: &RouteInput<'w>,
    parent: &gwapi::ParentReference,
    gw: &mut GatewayState<'w>,
    owner: Owner,
    world: &World,
) -> Result<Vec<String>, (&'static str, String)> {
    let kind = route.source.kind.as_str();
    let candidates: Vec<usize> = (0..gw.listeners.len())
        .filter(|&i| {
            let l = &gw.listeners[i];
            l.owner == owner
                && parent
                    .section_name
                    .as_ref()
                    .is_none_or(|s| *s == l.spec.name)
                && parent.port.is_none_or(|p| p == l.spec.port)
        })
        .collect();
    if candidates.is_empty() {
        return Err((
            "NoMatchingParent",
            "no listener of the Gateway matches sectionName/port".to_string(),
        ));
    }
    let allowed: Vec<usize> = candidates
        .into_iter()
        .filter(|&i| {
            let l = &gw.listeners[i];
            l.valid() && l.serves(kind) && l.admits(&route.source.namespace, world)
        })
        .collect();
    if allowed.is_empty() {
        return Err((
            "NotAllowedByListeners",
            format!("no listener's allowedRoutes (namespaces, kinds) admits this {kind}"),
        ));
    }
    let mut any_host = false;
    let mut conflict = None;
    let mut superseded = Vec::new();
    for &i in &allowed {
        let l = &mut gw.listeners[i];
        // A TCP or UDP listener has no hostnames: the route takes any connection or datagram.
        let hosts = if matches!(l.protocol, Ok(Proto::Tcp | Proto::Udp)) {
            vec!["*".to_string()]
        } else {
            intersect(l.spec.hostname.as_deref(), route.hostnames)
        };
        if hosts.is_empty() {
            continue;
        }
        if let Contribution::Http(_) = &route.contribution {
            let attached = gw.http_routes.entry(i).or_default();
            if let Some(winner) = cross_kind_conflict(route.source, &hosts, attached) {
                conflict.get_or_insert_with(|| (winner.clone(), l.spec.name.clone()));
                continue;
            }
            attached.push((route.source, hosts.clone()));
        }
        // Counted only where the route is accepted, that is where hostnames intersect.
        l.attached += 1;
        any_host = true;
        match &route.contribution {
            Contribution::Http(rules) => {
                let port = gw.hosts.entry(l.port).or_default();
                for host in hosts {
                    let rules = rules.iter().map(|(p, r)| (i, p.clone(), r.clone()));
                    port.entry(host).or_default().extend(rules);
                }
            }
            Contribution::Passthrough(key, backends) => {
                let port = gw.tls_hosts.entry(l.port).or_default();
                if matches!(l.protocol, Ok(Proto::Tcp | Proto::Udp))
                    && let Some(winner) = served_before(port, i, key)
                {
                    let kind = route.source.kind.as_str();
                    superseded.push(format!("listener {}: {kind} {winner}", l.spec.name));
                }
                for host in hosts {
                    port.entry(host)
                        .or_default()
                        .push((i, key.clone(), backends.clone()));
                }
            }
        }
    }
    if let (false, Some((winner, listener))) = (any_host, conflict) {
        return Err((
            HOSTNAME_CONFLICT,
            format!(
                "listener {listener}: {winner} of the other kind (HTTPRoute, GRPCRoute) serves an intersecting hostname there and takes precedence (older, or first by namespace/name)"
            ),
        ));
    }
    if !any_host {
        return Err((
            "NoMatchingListenerHostname",
            "no hostname of the route intersects a listener's hostname".to_string(),
        ));
    }
    Ok(superseded)
}

/// The route (`namespace/name`) served on TCP or UDP listener `listener` instead of a route
/// with sort key `mine`, if one attached there first: such a listener has nothing to tell
/// routes apart (no hostname, no SNI), so only the oldest route, then first by
/// namespace/name, gets its traffic (routes attach in that order, see [`compile`]).
fn served_before(by_host: &HostBackends, listener: usize, mine: &PassthroughKey) -> Option<String> {
    by_host
        .get("*")?
        .iter()
        .filter(|(l, key, _)| *l == listener && key < mine)
        .min_by(|a, b| a.1.cmp(&b.1))
        .map(|(_, (_, namespace, name), _)| format!("{namespace}/{name}"))
}

/// Portolan's condition on the `parents[]` entry of a TCPRoute or UDPRoute that is accepted
/// but not served on some listeners (`elsewhere`: `listener L: KIND ns/name` of the route
/// served there instead). GEP-2645 keeps every such route `Accepted=True` and leaves a
/// reason for the others to a future GEP; `portolan.dev/Superseded=True` (`OlderRouteServed`)
/// says which route gets the traffic. Absent while the route is served everywhere.
fn superseded_condition(elsewhere: &[String], generation: i64) -> Option<ApiCondition> {
    (!elsewhere.is_empty()).then(|| {
        ApiCondition::new(
            SUPERSEDED,
            true,
            "OlderRouteServed",
            format!(
                "{} (older, or first by namespace/name) gets all of the listener's traffic: a TCP or UDP listener serves one route",
                elsewhere.join("; ")
            ),
            generation,
        )
    })
}

/// See [`superseded_condition`].
pub(super) const SUPERSEDED: &str = "portolan.dev/Superseded";

/// The `Accepted=False` reason of a route refused because a route of the other kind
/// (HTTPRoute, GRPCRoute) serves an intersecting hostname on the listener. The spec requires
/// the condition but names no reason for it.
pub(super) const HOSTNAME_CONFLICT: &str = "HostnameConflict";

/// The route already attached to a listener that keeps it from route `me` (serving `hosts`
/// there), if one does: the spec lets an HTTPRoute and a GRPCRoute share a listener only where
/// their hostnames do not intersect, and accepts the first by age, then namespace/name. Routes
/// attach in that order, so the one found (`attached`: those of the listener so far) wins.
fn cross_kind_conflict<'a>(
    me: &ObjectRef,
    hosts: &[String],
    attached: &[(&'a ObjectRef, Vec<String>)],
) -> Option<&'a ObjectRef> {
    attached
        .iter()
        .find(|(other, theirs)| other.kind != me.kind && hosts_intersect(hosts, theirs))
        .map(|(other, _)| *other)
}

/// Whether two sets of hostnames served on one listener (`*`: any) share a name.
fn hosts_intersect(a: &[String], b: &[String]) -> bool {
    a.iter().any(|x| {
        b.iter().any(|y| {
            x == y || x == "*" || y == "*" || wildcard_covers(x, y) || wildcard_covers(y, x)
        })
    })
}

/// The hostnames a route serves on a listener (`*` for any): the spec's intersection.
pub(super) fn intersect(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let Some(l) = listener else {
        return if route.is_empty() {
            vec!["*".to_string()]
        } else {
            route.to_vec()
        };
    };
    if route.is_empty() {
        return vec![l.to_string()];
    }
    let mut out: Vec<String> = route
        .iter()
        .filter_map(|r| {
            if r == l || wildcard_covers(l, r) {
                Some(r.clone())
            } else if wildcard_covers(r, l) {
                Some(l.to_string())
            } else {
                None
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether wildcard `pattern` (`*.example.com`) covers `host` (one or more labels more;
/// a narrower wildcard counts).
pub(super) fn wildcard_covers(pattern: &str, host: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix('*') else {
        return false;
    };
    host.len() > suffix.len() && host.ends_with(suffix)
}

/// The Gateway's status, its compiled form and the status of each of its ListenerSets.
fn finish_gateway(
    gw: GatewayState<'_>,
) -> (
    GatewayStatus,
    ApiGateway,
    Vec<(ObjectRef, ListenerSetStatus)>,
) {
    let generation = gw.spec.metadata.generation.unwrap_or_default();
    let ports = ports(&gw);
    let own: Vec<&ListenerState<'_>> = gw
        .listeners
        .iter()
        .filter(|l| l.owner == Owner::Gateway)
        .collect();
    let listeners: Vec<ListenerStatus> =
        own.iter().map(|l| listener_status(l, generation)).collect();
    let parameters = invalid_parameters(gw.spec);
    let all_invalid = parameters.is_some() || (!own.is_empty() && own.iter().all(|l| !l.valid()));
    let some_invalid = own.iter().any(|l| !l.valid());
    let accepted = match (&parameters, all_invalid, some_invalid) {
        (Some(why), _, _) => {
            ApiCondition::new("Accepted", false, "InvalidParameters", why, generation)
        }
        (None, true, _) => ApiCondition::new(
            "Accepted",
            false,
            "ListenersNotValid",
            "no listener is valid",
            generation,
        ),
        (None, false, true) => ApiCondition::new(
            "Accepted",
            true,
            "ListenersNotValid",
            "some listeners are not valid (see their conditions)",
            generation,
        ),
        _ => ApiCondition::new("Accepted", true, "Accepted", "accepted", generation),
    };
    let programmed = ApiCondition::new(
        "Programmed",
        !all_invalid,
        if all_invalid { "Invalid" } else { "Programmed" },
        "configuration built and served to the Gateway's proxies",
        generation,
    );
    let mut conditions = vec![accepted, programmed];
    if super::frontend::insecure_fallback(gw.spec) {
        conditions.push(ApiCondition::new(
            "InsecureFrontendValidationMode",
            true,
            "ConfigurationChanged",
            "spec.tls.frontend: mode AllowInsecureFallback lets clients through without a valid certificate",
            generation,
        ));
    }
    let set_statuses: Vec<(ObjectRef, ListenerSetStatus)> = gw
        .sets
        .iter()
        .enumerate()
        .map(|(i, set)| (set.source.clone(), set_status(&gw, i, set)))
        .collect();
    let attached_sets = set_statuses
        .iter()
        .filter(|(_, s)| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Accepted" && c.status == "True")
        })
        .count();
    let allows_sets = gw.spec.spec.allowed_listeners.is_some() || !gw.sets.is_empty();
    let status = GatewayStatus {
        addresses: status_addresses(&gw),
        conditions,
        listeners,
        attached_listener_sets: allows_sets
            .then(|| i32::try_from(attached_sets).unwrap_or(i32::MAX)),
    };
    let compiled = ApiGateway {
        group: group_of(&gw.source.namespace, &gw.source.name),
        source: gw.source,
        generation,
        address: gw.address,
        // A Gateway that is not accepted serves nothing.
        ports: if parameters.is_some() {
            Vec::new()
        } else {
            ports.into_values().collect()
        },
    };
    (status, compiled, set_statuses)
}

/// The status of ListenerSet number `index` of `gw`: `NotAllowed` / `ParentNotAccepted` when
/// it is refused; else `ListenersNotValid` when some (`Accepted=True`) or all (`False`) of
/// its listeners are invalid, and one entry per listener.
fn set_status(gw: &GatewayState<'_>, index: usize, set: &SetState) -> ListenerSetStatus {
    let generation = set.generation;
    let c = |t: &str, ok: bool, reason: &str, message: &str| {
        ApiCondition::new(t, ok, reason, message, generation)
    };
    if let Some((reason, why)) = &set.refused {
        return ListenerSetStatus {
            conditions: vec![
                c("Accepted", false, reason, why),
                c("Programmed", false, reason, why),
            ],
            listeners: Vec::new(),
        };
    }
    let mine: Vec<&ListenerState<'_>> = gw
        .listeners
        .iter()
        .filter(|l| l.owner == Owner::Set(index))
        .collect();
    let valid = mine.iter().filter(|l| l.valid()).count();
    let conditions = if valid == mine.len() {
        vec![
            c("Accepted", true, "Accepted", "attached to its Gateway"),
            c(
                "Programmed",
                true,
                "Programmed",
                "configuration built and served to the Gateway's proxies",
            ),
        ]
    } else if valid == 0 {
        let why = "no listener is valid (see their conditions)";
        vec![
            c("Accepted", false, "ListenersNotValid", why),
            c("Programmed", false, "ListenersNotValid", why),
        ]
    } else {
        vec![
            c(
                "Accepted",
                true,
                "ListenersNotValid",
                "some listeners are not valid (see their conditions)",
            ),
            c(
                "Programmed",
                true,
                "Programmed",
                "configuration built and served to the Gateway's proxies",
            ),
        ]
    };
    ListenerSetStatus {
        conditions,
        listeners: mine
            .iter()
            .map(|l| listener_status(l, generation))
            .collect(),
    }
}

/// Why `spec.infrastructure.parametersRef` cannot be used: Portolan knows no parameters
/// kind, so any reference is one it cannot resolve (`None`: there is none).
fn invalid_parameters(gw: &Gateway) -> Option<String> {
    let r = gw.spec.infrastructure.as_ref()?.parameters_ref.as_ref()?;
    Some(format!(
        "spec.infrastructure.parametersRef: {}/{} {} is not a parameters kind Portolan supports",
        r.group, r.kind, r.name
    ))
}

/// The ports of a Gateway's valid listeners: plain HTTP ports with their virtual hosts, TLS
/// ports with one filter chain per HTTPS listener and per TLSRoute hostname.
fn ports(gw: &GatewayState<'_>) -> BTreeMap<(u16, bool), ApiPort> {
    // Keyed by port and whether it is UDP: a UDP listener may share its number with a
    // TCP-based one.
    let mut ports: BTreeMap<(u16, bool), ApiPort> = BTreeMap::new();
    for (i, l) in gw.listeners.iter().enumerate().filter(|(_, l)| l.valid()) {
        let Ok(protocol) = l.protocol else { continue };
        let key = (l.port, protocol == Proto::Udp);
        let port = ports.entry(key).or_insert_with(|| ApiPort {
            port: l.port,
            tls: matches!(protocol, Proto::Https | Proto::Passthrough),
            tcp: protocol == Proto::Tcp,
            udp: protocol == Proto::Udp,
            virtual_hosts: Vec::new(),
            chains: Vec::new(),
            owners: Vec::new(),
        });
        let owner = match l.owner {
            Owner::Gateway => &gw.source,
            Owner::Set(set) => gw.sets.get(set).map_or(&gw.source, |s| &s.source),
        };
        if !port.owners.contains(owner) {
            port.owners.push(owner.clone());
        }
        let empty = HostRules::new();
        let by_host = gw.hosts.get(&l.port).unwrap_or(&empty);
        match protocol {
            Proto::Http if port.virtual_hosts.is_empty() => {
                let owner = |host: &str| owning_listener(&gw.listeners, l.port, host);
                port.virtual_hosts = virtual_hosts(by_host, owner);
            }
            Proto::Http => {}
            Proto::Https => port.chains.push(ApiChain {
                name: l.key.clone(),
                server_names: l.spec.hostname.iter().cloned().collect(),
                kind: ChainKind::Terminate {
                    certificates: l.certificates.clone().unwrap_or_default(),
                    client_validation: l.frontend.validation.clone(),
                    // The SNI chose the listener: its own routes only.
                    virtual_hosts: virtual_hosts(&only_listener(by_host, i), |_| Some(i)),
                },
            }),
            Proto::Passthrough | Proto::Tcp | Proto::Udp => {
                let empty = HostBackends::new();
                let by_host = gw.tls_hosts.get(&l.port).unwrap_or(&empty);
                port.chains.extend(passthrough_chains(&l.key, i, by_host));
            }
        }
    }
    ports
}

/// The rules of one listener.
fn only_listener(by_host: &HostRules, listener: usize) -> HostRules {
    by_host
        .iter()
        .filter_map(|(host, rules)| {
            let mine: Vec<_> = rules
                .iter()
                .filter(|(l, _, _)| *l == listener)
                .cloned()
                .collect();
            (!mine.is_empty()).then(|| (host.clone(), mine))
        })
        .collect()
}

/// One chain per hostname of the TLSRoutes on listener `listener` (the oldest route wins a
/// hostname); `*` (no hostname anywhere) takes any SNI.
fn passthrough_chains(name: &str, listener: usize, by_host: &HostBackends) -> Vec<ApiChain> {
    by_host
        .iter()
        .filter_map(|(host, routes)| {
            let (_, _, backends) = routes
                .iter()
                .filter(|(l, _, _)| *l == listener)
                .min_by(|a, b| a.1.cmp(&b.1))?;
            Some(ApiChain {
                name: format!("{name}/{host}"),
                server_names: if host == "*" {
                    Vec::new()
                } else {
                    vec![host.clone()]
                },
                kind: ChainKind::Passthrough {
                    backends: backends.clone(),
                },
            })
        })
        .collect()
}

/// One virtual host per hostname. A request belongs to the most specific listener whose
/// hostname matches its host (listener isolation); it is matched against the rules of that
/// listener's routes whose hostnames cover it (`a.example.com`, `*.example.com`, any host)
/// in precedence order. Envoy picks one virtual host per request (exact domains first, then
/// the longest wildcard), so each virtual host gets every rule that applies to its name.
fn virtual_hosts(
    by_host: &HostRules,
    owner_of: impl Fn(&str) -> Option<usize>,
) -> Vec<ApiVirtualHost> {
    by_host
        .keys()
        .map(|host| {
            let owner = owner_of(host);
            let applicable = by_host
                .iter()
                .filter(|(w, _)| *w == host || *w == "*" || wildcard_covers(w, host))
                .flat_map(|(_, r)| r.iter())
                .filter(|(listener, _, _)| Some(*listener) == owner)
                .map(|(_, p, r)| (p.clone(), r.clone()))
                .collect();
            ApiVirtualHost {
                hostname: host.clone(),
                rules: rules::sorted(applicable),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hostname_intersection_as_the_spec_says() {
        assert_eq!(intersect(None, &[]), v(&["*"]));
        assert_eq!(intersect(Some("a.com"), &[]), v(&["a.com"]));
        assert_eq!(intersect(None, &v(&["a.com"])), v(&["a.com"]));
        assert_eq!(
            intersect(Some("*.example.com"), &v(&["a.example.com", "b.other.org"])),
            v(&["a.example.com"])
        );
        assert_eq!(
            intersect(Some("very.specific.com"), &v(&["*.specific.com"])),
            v(&["very.specific.com"])
        );
        assert_eq!(
            intersect(Some("*.example.com"), &v(&["*.a.example.com"])),
            v(&["*.a.example.com"])
        );
        assert!(intersect(Some("*.example.com"), &v(&["example.com"])).is_empty());
        assert!(intersect(Some("a.com"), &v(&["b.com"])).is_empty());
    }
}

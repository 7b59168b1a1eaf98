//! Listeners of Portolan's Gateways, as compiled: what each serves (protocol, TLS mode,
//! route kinds, certificates), conflicts on a port, which routes' namespaces it admits, the
//! listener that owns a hostname on a port, and each listener's status.

use super::attach::wildcard_covers;
use super::frontend::{self, Frontend};
use super::rules::RouteRefs;
use super::status::{ApiCondition, ListenerStatus, RouteKind};
use super::tls::{self, RefError};
use crate::gateway::TlsSecret;
use crate::world::World;
use portolan_api::gwapi::{GROUP, Gateway, Listener, ListenerSet, RouteNamespaces};
use portolan_api::{Kind, ObjectRef, Resource};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Proto {
    Http,
    /// HTTPS, TLS terminated with the listener's certificates.
    Https,
    /// TLS, mode Passthrough: TLSRoutes by SNI.
    Passthrough,
    /// TCP: one TCPRoute takes every connection.
    Tcp,
    /// UDP: one UDPRoute takes every datagram.
    Udp,
}

impl Proto {
    /// The route kinds a listener of this protocol can serve.
    pub(super) fn route_kinds(self) -> &'static [&'static str] {
        match self {
            Proto::Http | Proto::Https => &["HTTPRoute", "GRPCRoute"],
            Proto::Passthrough => &["TLSRoute"],
            Proto::Tcp => &["TCPRoute"],
            Proto::Udp => &["UDPRoute"],
        }
    }
}

/// Whose listener it is: the Gateway's own, or one of the ListenerSets attached to it (an
/// index into the Gateway's sets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    Gateway,
    Set(usize),
}

/// One listener of one of Portolan's Gateways (its own or a ListenerSet's), as compiled.
pub(super) struct ListenerState<'a> {
    pub(super) spec: &'a Listener,
    pub(super) owner: Owner,
    /// The owner's namespace (`allowedRoutes.namespaces.from: Same`, certificate refs).
    pub(super) namespace: String,
    /// Unique among the Gateway's listeners: the name, or `NS/SET/NAME` for a ListenerSet's.
    pub(super) key: String,
    pub(super) port: u16,
    /// What it serves, or the `Accepted=False` reason and message.
    pub(super) protocol: Result<Proto, (&'static str, String)>,
    pub(super) kinds: Vec<RouteKind>,
    pub(super) invalid_kinds: bool,
    pub(super) conflict: Option<&'static str>,
    /// HTTPS: the certificates, or why they do not resolve.
    pub(super) certificates: Result<Vec<Arc<TlsSecret>>, RefError>,
    /// HTTPS: client certificate validation (Gateway `spec.tls.frontend`).
    pub(super) frontend: Frontend,
    pub(super) attached: i32,
}

pub(super) fn listeners<'g>(
    gw: &'g Gateway,
    gw_namespace: &str,
    refs: &RouteRefs<'_>,
) -> Vec<ListenerState<'g>> {
    let mut states: Vec<ListenerState<'_>> = gw
        .spec
        .listeners
        .iter()
        .map(|l| listener(l, Owner::Gateway, gw, gw_namespace, gw_namespace, refs))
        .collect();
    // Conflicts: an incompatible protocol on the same port (HTTPS and TLS share one), or the
    // same hostname on the same port.
    for i in 0..states.len() {
        states[i].conflict = conflict(
            &states[i],
            states.iter().enumerate().filter(|(j, _)| *j != i),
        );
    }
    states
}

/// Adds the listeners of ListenerSet number `index` (in namespace `set_namespace`) to those
/// of its Gateway. The Gateway's listeners and earlier sets' take precedence: a listener of
/// this set that conflicts with one of them is the conflicted one; within the set, both are.
///
/// Merged across owners, a port has one protocol: a listener of this set on a port where the
/// Gateway or an earlier set has a listener of another protocol is `ProtocolConflict`, even
/// HTTPS beside TLS (which share a port by SNI within one Gateway or one set). That is the
/// ListenerSet precedence rule as upstream's ListenerSetProtocolAndRouteKindConflicts checks
/// it: the set's TLS listener loses to the Gateway's HTTPS one, which stays accepted.
pub(super) fn add_set_listeners<'g>(
    states: &mut Vec<ListenerState<'g>>,
    set: &'g ListenerSet,
    index: usize,
    set_namespace: &str,
    gw: &'g Gateway,
    gw_namespace: &str,
    refs: &RouteRefs<'_>,
) {
    let first = states.len();
    let set_name = set.metadata.name.as_deref().unwrap_or_default();
    for l in &set.spec.listeners {
        let mut state = listener(l, Owner::Set(index), gw, gw_namespace, set_namespace, refs);
        state.key = format!("{set_namespace}/{set_name}/{}", l.name);
        states.push(state);
    }
    for i in first..states.len() {
        let me = &states[i];
        let merged = states[..first]
            .iter()
            .find(|o| o.port == me.port && protocols_differ(&me.spec.protocol, &o.spec.protocol))
            .map(|_| "ProtocolConflict");
        let others = states
            .iter()
            .enumerate()
            .filter(|(j, o)| *j != i && (*j < first || o.owner == Owner::Set(index)));
        states[i].conflict = merged.or_else(|| conflict(&states[i], others));
    }
}

/// One listener, compiled (no conflicts yet).
fn listener<'g>(
    l: &'g Listener,
    owner: Owner,
    gw: &'g Gateway,
    gw_namespace: &str,
    namespace: &str,
    refs: &RouteRefs<'_>,
) -> ListenerState<'g> {
    let protocol = protocol(l);
    let (kinds, invalid_kinds) = route_kinds(l, protocol.as_ref().ok().copied());
    let from = match owner {
        Owner::Gateway => "Gateway",
        Owner::Set(_) => "ListenerSet",
    };
    let certificates = match protocol {
        Ok(Proto::Https) => tls::certificates(l, from, namespace, refs),
        _ => Ok(Vec::new()),
    };
    let name = gw.metadata.name.as_deref().unwrap_or_default();
    let source = ObjectRef::new(Kind::ApiGateway, gw_namespace, name);
    let frontend = match protocol {
        Ok(Proto::Https) => frontend::resolve(&source, gw, l.port, refs),
        _ => Frontend::default(),
    };
    ListenerState {
        spec: l,
        owner,
        namespace: namespace.to_string(),
        key: l.name.clone(),
        port: u16::try_from(l.port).unwrap_or_default(),
        protocol,
        kinds,
        invalid_kinds,
        conflict: None,
        certificates,
        frontend,
        attached: 0,
    }
}

/// Whether `me` conflicts with one of `others` on its port, and how.
fn conflict<'a, 'g: 'a>(
    me: &ListenerState<'g>,
    others: impl Iterator<Item = (usize, &'a ListenerState<'g>)>,
) -> Option<&'static str> {
    others.into_iter().find_map(|(_, other)| {
        if other.port != me.port || udp_beside_tcp(&me.spec.protocol, &other.spec.protocol) {
            return None;
        }
        if family(&other.spec.protocol) != family(&me.spec.protocol) {
            Some("ProtocolConflict")
        } else if other.spec.hostname == me.spec.hostname {
            Some("HostnameConflict")
        } else {
            None
        }
    })
}

/// Whether one of two listeners is UDP and the other speaks TCP (HTTP, HTTPS, TLS, TCP): the
/// transport tells their traffic apart, so they are distinct and compatible on one port.
fn udp_beside_tcp(a: &str, b: &str) -> bool {
    let tcp = |p: &str| matches!(p, "HTTP" | "HTTPS" | "TLS" | "TCP");
    (a == "UDP" && tcp(b)) || (b == "UDP" && tcp(a))
}

/// Whether two listeners of different owners on one port speak different protocols (a UDP
/// listener beside a TCP one is told apart by its transport, so it is no conflict).
fn protocols_differ(a: &str, b: &str) -> bool {
    a != b && !udp_beside_tcp(a, b)
}

/// Listeners of one family can share a port: HTTPS and TLS both start with a TLS handshake.
fn family(protocol: &str) -> &str {
    match protocol {
        "HTTPS" | "TLS" => "TLS",
        other => other,
    }
}

/// What a listener serves, or why Portolan cannot serve it: `UnsupportedProtocol` for a
/// protocol it does not serve, `UnsupportedValue` for a TLS mode it does not serve.
fn protocol(l: &Listener) -> Result<Proto, (&'static str, String)> {
    let mode = l
        .tls
        .as_ref()
        .and_then(|t| t.mode.as_deref())
        .unwrap_or("Terminate");
    match (l.protocol.as_str(), mode) {
        ("HTTP", _) => Ok(Proto::Http),
        ("HTTPS", "Terminate") => Ok(Proto::Https),
        ("TLS", "Passthrough") => Ok(Proto::Passthrough),
        ("TCP", _) => Ok(Proto::Tcp),
        ("UDP", _) => Ok(Proto::Udp),
        ("HTTPS", m) => Err((
            "UnsupportedValue",
            format!("tls.mode {m}: an HTTPS listener terminates TLS"),
        )),
        ("TLS", m) => Err((
            "UnsupportedValue",
            format!("tls.mode {m}: TLS listeners are served in mode Passthrough only"),
        )),
        (p, _) => Err((
            "UnsupportedProtocol",
            format!("protocol {p} is not supported: HTTP, HTTPS, TLS (Passthrough), TCP and UDP"),
        )),
    }
}

/// The route kinds a listener allows (default: every kind its protocol serves), and whether
/// it named any other.
fn route_kinds(l: &Listener, protocol: Option<Proto>) -> (Vec<RouteKind>, bool) {
    let supported = protocol.map(Proto::route_kinds).unwrap_or_default();
    let kind = |k: &str| RouteKind {
        group: GROUP.to_string(),
        kind: k.to_string(),
    };
    let Some(kinds) = l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()) else {
        return (supported.iter().map(|k| kind(k)).collect(), false);
    };
    let mut ok: Vec<RouteKind> = Vec::new();
    let mut invalid = false;
    for k in kinds {
        let group = k.group.as_deref().unwrap_or(GROUP);
        if group == GROUP && supported.contains(&k.kind.as_str()) {
            if !ok.iter().any(|o| o.kind == k.kind) {
                ok.push(kind(&k.kind));
            }
        } else {
            invalid = true;
        }
    }
    (ok, invalid)
}

impl ListenerState<'_> {
    pub(super) fn valid(&self) -> bool {
        self.protocol.is_ok()
            && self.conflict.is_none()
            && !self.kinds.is_empty()
            && self.certificates.is_ok()
            && self.frontend.usable()
    }

    pub(super) fn serves(&self, kind: &str) -> bool {
        self.kinds.iter().any(|k| k.kind == kind)
    }

    /// Whether a route in `namespace` may attach (namespaces From and the selector; `Same`:
    /// the namespace of the listener's Gateway or ListenerSet).
    pub(super) fn admits(&self, namespace: &str, world: &World) -> bool {
        let from = self
            .spec
            .allowed_routes
            .as_ref()
            .and_then(|a| a.namespaces.as_ref());
        namespaces_admit(from, "Same", &self.namespace, namespace, world)
    }
}

/// Whether `from` (`allowedRoutes.namespaces`, `allowedListeners.namespaces`; `default` when
/// it says nothing) admits an object in `namespace`, the owner being in `own`.
pub(super) fn namespaces_admit(
    from: Option<&RouteNamespaces>,
    default: &str,
    own: &str,
    namespace: &str,
    world: &World,
) -> bool {
    match from.and_then(|f| f.from.as_deref()).unwrap_or(default) {
        "All" => true,
        "Selector" => {
            let selector = from.and_then(|f| f.selector.as_ref());
            selector.is_some_and(|s| selects(s, &namespace_labels(world, namespace)))
        }
        "Same" => namespace == own,
        _ => false,
    }
}

fn namespace_labels(world: &World, namespace: &str) -> BTreeMap<String, String> {
    let key = ObjectRef::new(Kind::Namespace, "", namespace);
    match world.gateway_api.get(&key).map(|r| &**r) {
        Some(Resource::Namespace(ns)) => ns.metadata.labels.clone().unwrap_or_default(),
        _ => BTreeMap::new(),
    }
}

/// A Kubernetes label selector (matchLabels and matchExpressions).
fn selects(
    selector: &portolan_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// The valid listener on `port` with the most specific hostname that matches `host` (an exact
/// name, then the longest wildcard, then a listener without hostname).
pub(super) fn owning_listener(
    listeners: &[ListenerState<'_>],
    port: u16,
    host: &str,
) -> Option<usize> {
    listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| l.port == port && l.valid())
        .filter_map(|(i, l)| {
            let rank = match l.spec.hostname.as_deref() {
                None => 0,
                Some(h) if h == host => usize::MAX,
                Some(h) if wildcard_covers(h, host) => h.len(),
                Some(_) => return None,
            };
            Some((rank, std::cmp::Reverse(i)))
        })
        .max()
        .map(|(_, std::cmp::Reverse(i))| i)
}

pub(super) fn listener_status(l: &ListenerState<'_>, generation: i64) -> ListenerStatus {
    let c = |t: &str, ok: bool, reason: &str, message: &str| {
        ApiCondition::new(t, ok, reason, message, generation)
    };
    let accepted = match (&l.protocol, l.conflict) {
        (Err((reason, why)), _) => c("Accepted", false, reason, why),
        (_, Some(reason)) => c(
            "Accepted",
            false,
            reason,
            "conflicts with another listener on its port",
        ),
        _ if !l.frontend.usable() => c(
            "Accepted",
            false,
            "NoValidCACertificate",
            "no CA certificate reference of the client certificate validation resolves",
        ),
        _ => c("Accepted", true, "Accepted", "accepted"),
    };
    let resolved = match &l.certificates {
        _ if l.invalid_kinds => c(
            "ResolvedRefs",
            false,
            "InvalidRouteKinds",
            "allowedRoutes.kinds names a kind this listener does not serve",
        ),
        Err((reason, message)) => c("ResolvedRefs", false, reason, message),
        Ok(_) => match &l.frontend.error {
            Some((reason, message)) => c("ResolvedRefs", false, reason, message),
            None => c("ResolvedRefs", true, "ResolvedRefs", "resolved"),
        },
    };
    let conflicted = match l.conflict {
        Some(reason) => c(
            "Conflicted",
            true,
            reason,
            "another listener on this port conflicts",
        ),
        None => c("Conflicted", false, "NoConflicts", "no conflicts"),
    };
    let programmed = match l.conflict {
        _ if l.valid() => c("Programmed", true, "Programmed", "programmed"),
        Some(reason) => c(
            "Programmed",
            false,
            reason,
            "conflicts with another listener on its port",
        ),
        None => c("Programmed", false, "Invalid", "the listener is not valid"),
    };
    ListenerStatus {
        name: l.spec.name.clone(),
        supported_kinds: l.kinds.clone(),
        attached_routes: l.attached,
        conditions: vec![accepted, programmed, resolved, conflicted],
    }
}

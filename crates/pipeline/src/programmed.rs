//! `Programmed`: whether connected proxies took the configuration, per object.
//!
//! A NACK in force (the last version sent of a type was rejected) is attributed to objects
//! from the provenance translation recorded for the group's snapshot ([`Provenances`], set
//! by the pipeline with each snapshot; see [`portolan_translate::provenance`]), never from
//! resource names:
//!
//! * a route configuration whose virtual hosts or rules Envoy's text names (a virtual host's
//!   name, a rule's route name `ns/route/rule`, or a regex of the rule, which Envoy quotes
//!   when it refuses one) is attributed to the objects behind those parts only;
//! * otherwise, each resource the text names (as a whole word: `gateway-80` is not named by
//!   a text about `gateway-8081`) is attributed to every object
//!   behind it (a cluster or its endpoints to its Service or ExternalService and the
//!   TrafficPolicy of the port, the endpoints also to the EndpointSlices; a gateway listener
//!   to the Gateways (or Gateway API ListenerSets) with a listener on that port and the
//!   Secrets it serves; a route
//!   configuration to the objects behind all its virtual hosts; the inbound listener to the
//!   PeerAuthentication and AccessPolicies it enforces).
//!
//! Those objects get `Programmed=False` with the proxies' ids and Envoy's text. A NACK whose
//! text points at nothing Portolan made from an object stays listed (with the proxy and the
//! text) without an object.

use portolan_api::ObjectRef;
use portolan_model::gateway_api::converged::Convergence;
use portolan_model::{Condition, ConditionType, World};
use portolan_translate::Provenance;
use portolan_translate::provenance::ResourceKind;
use portolan_xds::status::SyncState;
use portolan_xds::{Cache, ProxyStatus, ResourceType};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// One NACK in force on one proxy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NackReport {
    pub node: String,
    pub group: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub version: String,
    pub message: String,
    /// The resources of that type the message points at.
    pub resources: Vec<String>,
    /// The objects behind what the message points at (`Kind ns/name`).
    pub objects: Vec<String>,
    /// Of `objects`, those behind resources of Gateway ports only, and the ports: a Gateway's
    /// or ListenerSet's listeners on other ports stay `Programmed`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, Vec<u16>>,
}

/// The provenance of each group's snapshot in the cache (set with the snapshot by the
/// pipeline), shared with whoever attributes NACKs.
#[derive(Debug, Default)]
pub struct Provenances {
    by_group: RwLock<HashMap<String, Arc<Provenance>>>,
}

/// What a NACK's text points at among the resources of one type: their names and the objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attribution {
    pub resources: Vec<String>,
    pub objects: BTreeSet<ObjectRef>,
    /// The objects of `objects` found only behind resources of Gateway ports (see
    /// [`portolan_translate::provenance::Entry::port`]), and those ports: the NACK is their
    /// listeners' on those ports only. An object not listed here is attributed whole.
    pub ports: BTreeMap<ObjectRef, BTreeSet<u16>>,
}

// === impl Provenances ===

impl Provenances {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Sets the provenance of `group`'s snapshot.
    pub fn set(&self, group: &str, provenance: Provenance) {
        let mut by_group = self.by_group.write().unwrap_or_else(|p| p.into_inner());
        by_group.insert(group.to_string(), Arc::new(provenance));
    }

    /// The provenance of `group`'s snapshot, if it was built.
    pub fn get(&self, group: &str) -> Option<Arc<Provenance>> {
        let by_group = self.by_group.read().unwrap_or_else(|p| p.into_inner());
        by_group.get(group).cloned()
    }

    /// Forgets the groups `keep` refuses (no longer in the cache).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut by_group = self.by_group.write().unwrap_or_else(|p| p.into_inner());
        by_group.retain(|g, _| keep(g));
    }
}

/// Every NACK in force across connected proxies, attributed to objects by the provenance of
/// each proxy's group.
pub fn nacks(cache: &Cache, provenances: &Provenances, proxies: &[ProxyStatus]) -> Vec<NackReport> {
    let mut out = Vec::new();
    for proxy in proxies {
        let snapshot = cache.get(&proxy.group);
        let provenance = provenances.get(&proxy.group).unwrap_or_default();
        for t in &proxy.types {
            let (Some(nack), Some(ty)) = (&t.last_nack, t.resource_type()) else {
                continue;
            };
            if t.sync_state(snapshot.as_deref()) != SyncState::Nacked {
                continue;
            }
            let covered: Vec<String> = snapshot
                .as_deref()
                .map(|s| {
                    t.covered(s)
                        .into_iter()
                        .map(|r| r.name().to_string())
                        .collect()
                })
                .unwrap_or_default();
            let found = match kind_of(ty) {
                Some(kind) => attribute(&provenance, kind, &covered, &nack.message),
                None => Attribution::default(),
            };
            let ports = found.port_names();
            out.push(NackReport {
                node: proxy.node_id.clone(),
                group: proxy.group.clone(),
                type_: ty.short_name().to_string(),
                version: nack.version.clone(),
                message: nack.message.clone(),
                resources: found.resources,
                objects: found.objects.iter().map(ToString::to_string).collect(),
                ports,
            });
        }
    }
    out
}

/// What Envoy's `text` about resources of `kind` (those of the NACK, `covered`) points at:
/// the parts of a route configuration the text names or quotes, else the resources it names,
/// whole. Resources without provenance are still listed when named, without objects. A
/// secret NACK that names none points at every covered gateway secret.
pub fn attribute(
    provenance: &Provenance,
    kind: ResourceKind,
    covered: &[String],
    text: &str,
) -> Attribution {
    let covered: HashSet<&str> = covered.iter().map(String::as_str).collect();
    let mut finer: BTreeSet<&str> = BTreeSet::new();
    let mut found = Attribution::default();
    let mut scope = Scope::default();
    let of_kind = provenance.entries().iter().filter(|e| e.kind == kind);
    for entry in of_kind.clone().filter(|e| !e.parts.is_empty()) {
        let Some(name) = entry.names.iter().find(|n| covered.contains(n.as_str())) else {
            continue;
        };
        let mut hit = false;
        for part in entry.parts_in(text) {
            hit = true;
            found.objects.extend(part.origins.iter().cloned());
            scope.add(&part.origins, entry.port);
        }
        if hit {
            finer.insert(name);
        }
    }
    let mut named: BTreeSet<&str> = covered
        .iter()
        .copied()
        .filter(|n| !finer.contains(n) && names(text, n))
        .collect();
    if kind == ResourceKind::Secret && finer.is_empty() && named.is_empty() {
        // Envoy's text about a certificate names no secret ("Failed to load private key from
        // <inline>"): the gateway secrets of the rejected response, all of them.
        named = of_kind
            .clone()
            .flat_map(|e| e.names.iter())
            .map(String::as_str)
            .filter(|n| covered.contains(n))
            .collect();
    }
    for entry in of_kind.filter(|e| e.names.iter().any(|n| named.contains(n.as_str()))) {
        let objects = entry.objects();
        found.objects.extend(objects.iter().cloned());
        scope.add(&objects, entry.port);
    }
    found.resources = finer.union(&named).map(|n| n.to_string()).collect();
    found.ports = scope.ports();
    found
}

/// Through which resources each attributed object was found: only through resources of
/// Gateway ports (which), or through one of no port (the whole object).
#[derive(Default)]
struct Scope {
    whole: BTreeSet<ObjectRef>,
    ports: BTreeMap<ObjectRef, BTreeSet<u16>>,
}

impl Scope {
    fn add(&mut self, objects: &[ObjectRef], port: Option<u16>) {
        for o in objects {
            match port {
                Some(p) => {
                    self.ports.entry(o.clone()).or_default().insert(p);
                }
                None => {
                    self.whole.insert(o.clone());
                }
            }
        }
    }

    /// The objects found only through resources of ports, with those ports.
    fn ports(mut self) -> BTreeMap<ObjectRef, BTreeSet<u16>> {
        self.ports.retain(|o, _| !self.whole.contains(o));
        self.ports
    }
}

// === impl Attribution ===

impl Attribution {
    /// [`Attribution::ports`] keyed by `Kind ns/name`, as a [`NackReport`] lists them.
    pub fn port_names(&self) -> BTreeMap<String, Vec<u16>> {
        self.ports
            .iter()
            .map(|(o, ports)| (o.to_string(), ports.iter().copied().collect()))
            .collect()
    }
}

/// Whether `text` names resource `name` as a whole word: `gateway-80` is not named by a text
/// about `gateway-8081` (a name continues with letters, digits, `-` or `_`).
fn names(text: &str, name: &str) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(name).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + name.len()..].chars().next();
        !before.is_some_and(part) && !after.is_some_and(part)
    })
}

/// The kind of resource translation records for an xDS type (gateway certificates; workload
/// certificates come from the CA, not from an object, and have no provenance).
fn kind_of(ty: ResourceType) -> Option<ResourceKind> {
    match ty {
        ResourceType::Cluster => Some(ResourceKind::Cluster),
        ResourceType::Endpoint => Some(ResourceKind::Endpoint),
        ResourceType::Listener => Some(ResourceKind::Listener),
        ResourceType::Route => Some(ResourceKind::Route),
        ResourceType::VirtualHost => Some(ResourceKind::VirtualHost),
        ResourceType::Secret => Some(ResourceKind::Secret),
    }
}

/// `Programmed=False` conditions for the objects NACKs are attributed to.
pub fn conditions(world: &World, reports: &[NackReport]) -> BTreeMap<String, Condition> {
    let mut by_object: BTreeMap<String, Vec<&NackReport>> = BTreeMap::new();
    for r in reports {
        for o in &r.objects {
            by_object.entry(o.clone()).or_default().push(r);
        }
    }
    by_object
        .into_iter()
        .map(|(object, reports)| {
            let nodes: BTreeSet<&str> = reports.iter().map(|r| r.node.as_str()).collect();
            let texts: BTreeSet<&str> = reports.iter().map(|r| r.message.as_str()).collect();
            let message = format!(
                "rejected by {} proxies ({}): {}",
                nodes.len(),
                nodes.into_iter().collect::<Vec<_>>().join(", "),
                texts.into_iter().collect::<Vec<_>>().join("; ")
            );
            let generation = generation_of(world, &object);
            let condition = Condition::new(
                ConditionType::Programmed,
                false,
                "Nacked",
                message,
                generation,
            );
            (object, condition)
        })
        .collect()
}

/// The Gateway API statuses of `world` with the NACKs in force (`conditions`, keyed
/// `Kind ns/name`, from `reports`) applied (see
/// [`portolan_model::gateway_api::status::with_nack`]): a Gateway's or ListenerSet's listeners
/// get `Programmed=False` only on the ports the NACKs are about when `reports` say so (see
/// [`NackReport::ports`]); and each Gateway's `portolan.dev/Converged` from its proxy group's
/// `convergence` (see [`portolan_model::gateway_api::converged`]).
pub fn api_statuses(
    world: &World,
    conditions: &BTreeMap<String, Condition>,
    reports: &[NackReport],
    convergence: &BTreeMap<String, Convergence>,
) -> BTreeMap<ObjectRef, portolan_model::gateway_api::ApiStatus> {
    use portolan_model::gateway_api::{converged, group_of, status};
    world
        .api_statuses
        .iter()
        .map(|(object, api_status)| {
            let key = object.to_string();
            let mut api_status = match conditions.get(&key) {
                Some(c) => {
                    let listeners = nacked_ports(reports, &key)
                        .map(|ports| listeners_on(world, object, &ports));
                    status::with_nack(api_status, &c.message, listeners.as_ref())
                }
                None => api_status.clone(),
            };
            if object.kind == portolan_api::Kind::ApiGateway {
                let group = group_of(&object.namespace, &object.name);
                api_status = converged::with_convergence(&api_status, convergence.get(&group));
            }
            (object.clone(), api_status)
        })
        .collect()
}

/// The ports the NACKs of `reports` that name `object` are about, `None` when one is about
/// the whole object (it names it without ports).
fn nacked_ports(reports: &[NackReport], object: &str) -> Option<BTreeSet<u16>> {
    let mut all = BTreeSet::new();
    for r in reports
        .iter()
        .filter(|r| r.objects.iter().any(|o| o == object))
    {
        all.extend(r.ports.get(object)?.iter().copied());
    }
    Some(all)
}

/// The names of the listeners of Gateway or ListenerSet `object` on one of `ports`.
fn listeners_on(world: &World, object: &ObjectRef, ports: &BTreeSet<u16>) -> BTreeSet<String> {
    use portolan_api::Resource;
    let listeners = match world.gateway_api.get(object).map(AsRef::as_ref) {
        Some(Resource::ApiGateway(g)) => g.spec.listeners.as_slice(),
        Some(Resource::ListenerSet(s)) => s.spec.listeners.as_slice(),
        _ => &[],
    };
    listeners
        .iter()
        .filter(|l| u16::try_from(l.port).is_ok_and(|p| ports.contains(&p)))
        .map(|l| l.name.clone())
        .collect()
}

/// Per proxy group, how far its connected proxies are with the group's snapshot in `cache`:
/// a proxy is behind while any type it subscribes to has a newer version in flight (or one
/// not sent although the snapshot has resources for it), and NACKed while its last answer for
/// a type was a NACK of the version sent. Each node id counts once, whatever its streams.
pub fn convergence(cache: &Cache, proxies: &[ProxyStatus]) -> BTreeMap<String, Convergence> {
    let mut by_group: BTreeMap<String, BTreeMap<String, SyncState>> = BTreeMap::new();
    for proxy in proxies {
        let snapshot = cache.get(&proxy.group);
        let state = proxy
            .types
            .iter()
            .map(|t| match t.sync_state(snapshot.as_deref()) {
                SyncState::NotSent
                    if snapshot.as_deref().is_none_or(|s| t.covered(s).is_empty()) =>
                {
                    SyncState::Synced
                }
                other => other,
            })
            .fold(SyncState::Synced, worst);
        let nodes = by_group.entry(proxy.group.clone()).or_default();
        let held = nodes
            .entry(proxy.node_id.clone())
            .or_insert(SyncState::Synced);
        *held = worst(*held, state);
    }
    by_group
        .into_iter()
        .map(|(group, nodes)| {
            let mut c = Convergence {
                proxies: nodes.len(),
                ..Default::default()
            };
            for (node, state) in nodes {
                match state {
                    SyncState::Synced => {}
                    SyncState::Nacked => c.nacked.push(node),
                    SyncState::Stale | SyncState::NotSent => c.pending.push(node),
                }
            }
            (group, c)
        })
        .collect()
}

/// The less converged of two states: NACKed, then behind, then synced.
fn worst(a: SyncState, b: SyncState) -> SyncState {
    let rank = |s: SyncState| match s {
        SyncState::Synced => 0,
        SyncState::Stale | SyncState::NotSent => 1,
        SyncState::Nacked => 2,
    };
    if rank(b) > rank(a) { b } else { a }
}

fn generation_of(world: &World, object: &str) -> i64 {
    let routes = world.routes.iter().map(|(r, o)| (r, o.generation));
    let policies = world.policies.iter().map(|(r, o)| (r, o.generation));
    let gateways = world.gateways.iter().map(|(r, o)| (r, o.generation));
    let externals = world
        .external_services
        .iter()
        .map(|(r, o)| (r, o.generation));
    let patches = world.envoy_patches.iter().map(|(r, o)| (r, o.generation));
    routes
        .chain(policies)
        .chain(gateways)
        .chain(externals)
        .chain(patches)
        .find(|(r, _)| r.to_string() == object)
        .map(|(_, g)| g)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use portolan_api::Kind;
    use portolan_model::gateway::{Gateway, GatewaySelector};
    use portolan_translate::provenance::{Entry, Part, PartKind, origins};

    const WEB: &str = "outbound|80||web.shop.svc.cluster.local";
    const API_VHOST: &str = "api.shop.svc.cluster.local:80";
    const REGEX: &str = "/(a|b|c|d|e|f|g|h){40}";

    fn service(name: &str) -> ObjectRef {
        ObjectRef::new(Kind::Service, "shop", name)
    }

    fn traffic_route() -> ObjectRef {
        ObjectRef::new(Kind::TrafficRoute, "shop", "api-canary")
    }

    /// What translation records for a mesh group with Services `web` (a TrafficPolicy on it)
    /// and `api` (routed by a TrafficRoute whose rule has a regex).
    fn provenance() -> Provenance {
        let policy = ObjectRef::new(Kind::TrafficPolicy, "shop", "web-lb");
        let slice = ObjectRef::new(Kind::EndpointSlice, "shop", "web-abc");
        let mut p = Provenance::new();
        let web_cluster = origins([service("web"), policy.clone()]);
        p.push(Entry::new(ResourceKind::Cluster, WEB, web_cluster));
        let web_cla = origins([service("web"), policy, slice]);
        p.push(Entry::new(ResourceKind::Endpoint, WEB, web_cla));
        let by_route = origins([traffic_route()]);
        let parts = vec![
            Part::virtual_host("web.shop.svc.cluster.local:80", origins([service("web")])),
            Part::virtual_host(API_VHOST, origins([service("api"), traffic_route()])),
            Part {
                kind: PartKind::Route,
                name: "shop/api-canary/0".into(),
                quotes: vec![REGEX.into()],
                origins: by_route,
            },
        ];
        p.push(Entry::route("mesh-outbound", origins([]), parts));
        p
    }

    fn covered(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn objects(a: &Attribution) -> Vec<String> {
        a.objects.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_named_cluster_is_attributed_to_the_objects_that_made_it() {
        let text = format!("cluster {WEB}: unknown field");
        let found = attribute(
            &provenance(),
            ResourceKind::Cluster,
            &covered(&[WEB]),
            &text,
        );
        assert_eq!(found.resources, [WEB]);
        assert_eq!(
            objects(&found),
            ["Service shop/web", "TrafficPolicy shop/web-lb"]
        );
        let found = attribute(
            &provenance(),
            ResourceKind::Endpoint,
            &covered(&[WEB]),
            &text,
        );
        assert_eq!(
            objects(&found),
            [
                "Service shop/web",
                "EndpointSlice shop/web-abc",
                "TrafficPolicy shop/web-lb"
            ]
        );
    }

    /// Envoy's text for a regex it refuses names neither the route configuration nor the
    /// virtual host; it quotes the regex, which points at the TrafficRoute's rule.
    #[test]
    fn a_mesh_route_nack_quoting_a_rules_regex_is_attributed_to_its_traffic_route() {
        let text = format!(
            "regex '{REGEX}' RE2 program size of 125 > max program size of 100 set for the error level threshold."
        );
        let mesh = covered(&["mesh-outbound"]);
        let found = attribute(&provenance(), ResourceKind::Route, &mesh, &text);
        assert_eq!(found.resources, ["mesh-outbound"]);
        assert_eq!(objects(&found), ["TrafficRoute shop/api-canary"]);
    }

    /// Envoy's text for a certificate it cannot load names no secret: the NACK points at the
    /// gateway secrets it covered (not at workload certificates, which have no provenance).
    #[test]
    fn a_secret_nack_naming_nothing_is_attributed_to_the_covered_gateway_secrets() {
        let gateway = ObjectRef::new(Kind::Gateway, "edge", "ingress");
        let secret = ObjectRef::new(Kind::Secret, "edge", "www-tls");
        let mut p = provenance();
        let name = "gateway-cert|edge/www-tls";
        p.push(Entry::new(
            ResourceKind::Secret,
            name,
            origins([gateway, secret]),
        ));
        let text = "Failed to load private key from <inline>, Cause: KEY_VALUES_MISMATCH";
        let both = covered(&[name, "portolan-workload-cert"]);
        let found = attribute(&p, ResourceKind::Secret, &both, text);
        assert_eq!(found.resources, [name]);
        assert_eq!(
            objects(&found),
            ["Secret edge/www-tls", "Gateway edge/ingress"]
        );
        let none = attribute(
            &p,
            ResourceKind::Secret,
            &covered(&["portolan-workload-cert"]),
            text,
        );
        assert!(none.objects.is_empty() && none.resources.is_empty());
    }

    #[test]
    fn a_named_virtual_host_is_attributed_to_the_objects_that_made_it() {
        let text = format!("route configuration mesh-outbound: in virtual host '{API_VHOST}'");
        let mesh = covered(&["mesh-outbound"]);
        let found = attribute(&provenance(), ResourceKind::Route, &mesh, &text);
        assert_eq!(found.resources, ["mesh-outbound"]);
        assert_eq!(
            objects(&found),
            ["Service shop/api", "TrafficRoute shop/api-canary"]
        );
    }

    #[test]
    fn without_a_finer_match_a_named_route_configuration_is_attributed_whole() {
        let text = "route configuration mesh-outbound rejected";
        let mesh = covered(&["mesh-outbound"]);
        let found = attribute(&provenance(), ResourceKind::Route, &mesh, text);
        assert_eq!(found.resources, ["mesh-outbound"]);
        assert_eq!(
            objects(&found),
            [
                "Service shop/api",
                "Service shop/web",
                "TrafficRoute shop/api-canary"
            ]
        );
    }

    /// Only the resources of the NACK count, and a text that points at nothing recorded
    /// gives no object (a resource named without provenance is still listed).
    #[test]
    fn what_the_text_does_not_point_at_gets_nothing() {
        let p = provenance();
        let text = format!("regex '{REGEX}' is too big; also {WEB}");
        let found = attribute(&p, ResourceKind::Route, &covered(&["gateway-80"]), &text);
        assert_eq!(found, Attribution::default());
        let found = attribute(&p, ResourceKind::Cluster, &covered(&["otel"]), "otel: bad");
        assert_eq!(found.resources, ["otel"]);
        assert!(found.objects.is_empty());
    }

    #[test]
    fn a_name_counts_only_as_a_whole_word() {
        assert!(names("listener(s) gateway-80: bad", "gateway-80"));
        assert!(names("gateway-80", "gateway-80"));
        assert!(names("'gateway-8443/https' rejected", "gateway-8443/https"));
        assert!(!names("listener(s) gateway-8081: bad", "gateway-80"));
        assert!(!names("gateway-8443/https-shop", "gateway-8443/https"));
        assert!(!names("xgateway-80", "gateway-80"));
    }

    #[test]
    fn provenances_are_kept_per_group_and_forgotten_with_it() {
        let store = Provenances::new();
        store.set("a", provenance());
        store.set("b", Provenance::new());
        assert_eq!(store.get("a").map(|p| p.len()), Some(3));
        store.retain(|g| g == "a");
        assert!(store.get("b").is_none());
        assert!(store.get("a").is_some());
    }

    /// A NACK of a rule on a ListenerSet's port, end to end through translation: it is
    /// attributed to the route and the ListenerSet (on that port), and the ListenerSet (its
    /// conditions and the entry of its listener on that port) gets `Programmed=False`; its
    /// listener on another port and the Gateway, whose own listener is fine, stay
    /// `Programmed=True`.
    #[test]
    fn a_nack_on_a_listener_set_port_is_the_listener_sets() {
        use portolan_model::gateway_api::ApiStatus;
        use serde_json::json;
        let regex = "/(a|b){40}";
        let mut idx = portolan_model::Index::new();
        for doc in [
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                "metadata": {"name": "portolan"}, "spec": {"controllerName": "portolan.dev/gateway-controller"}}),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "gw", "namespace": "infra"},
                "spec": {"gatewayClassName": "portolan",
                    "allowedListeners": {"namespaces": {"from": "Same"}},
                    "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "ListenerSet",
                "metadata": {"name": "extra", "namespace": "infra"},
                "spec": {"parentRef": {"name": "gw"}, "listeners": [
                    {"name": "more", "port": 8081, "protocol": "HTTP"},
                    {"name": "other", "port": 8082, "protocol": "HTTP"}]}}),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": "on-set", "namespace": "infra"},
                "spec": {"parentRefs": [{"kind": "ListenerSet", "name": "extra", "sectionName": "more"}],
                    "rules": [{"matches": [{"path": {"type": "RegularExpression", "value": regex}}],
                               "backendRefs": [{"name": "a", "port": 80}]}]}}),
        ] {
            let r = portolan_api::Resource::decode(doc)
                .expect("decodes")
                .expect("is read");
            idx.apply(portolan_model::convert::to_object(&r));
        }
        let world = idx.world();
        let key: portolan_model::GroupKey = "gateway:infra/gw".parse().expect("group key");
        let group = portolan_translate::ProxyGroup::from(&key);
        let out =
            portolan_translate::translate(&world, &group, &portolan_translate::Options::default());
        let text = format!("route gateway-8081: invalid regex '{regex}': too big");
        let found = attribute(
            &out.provenance,
            ResourceKind::Route,
            &covered(&["gateway-80", "gateway-8081"]),
            &text,
        );
        assert_eq!(
            objects(&found),
            ["HTTPRoute infra/on-set", "ListenerSet infra/extra"]
        );
        assert_eq!(
            found.port_names().get("ListenerSet infra/extra"),
            Some(&vec![8081])
        );
        let report = NackReport {
            node: "gw-1".into(),
            group: "gateway:infra/gw".into(),
            type_: "rds".into(),
            version: "v2".into(),
            message: text.clone(),
            resources: found.resources.clone(),
            objects: objects(&found),
            ports: found.port_names(),
        };
        let reports = [report];
        let statuses = api_statuses(
            &world,
            &conditions(&world, &reports),
            &reports,
            &BTreeMap::new(),
        );
        let programmed = |cs: &[portolan_model::gateway_api::status::ApiCondition]| {
            cs.iter()
                .find(|c| c.type_ == "Programmed")
                .map(|c| (c.status.clone(), c.reason.clone()))
        };
        let set = ObjectRef::new(Kind::ListenerSet, "infra", "extra");
        let Some(ApiStatus::ListenerSet(s)) = statuses.get(&set) else {
            panic!("no ListenerSet status");
        };
        let nacked = Some(("False".to_string(), "Invalid".to_string()));
        let fine = Some(("True".to_string(), "Programmed".to_string()));
        assert_eq!(programmed(&s.conditions), nacked);
        let by_name: BTreeMap<&str, _> = s
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), programmed(&l.conditions)))
            .collect();
        assert_eq!(
            by_name,
            BTreeMap::from([("more", nacked.clone()), ("other", fine.clone())])
        );
        let gw = ObjectRef::new(Kind::ApiGateway, "infra", "gw");
        let Some(ApiStatus::Gateway(g)) = statuses.get(&gw) else {
            panic!("no Gateway status");
        };
        assert_eq!(programmed(&g.conditions), fine);
        assert_eq!(programmed(&g.listeners[0].conditions), fine);
    }

    #[test]
    fn conditions_name_the_proxies_and_envoys_text() {
        let mut w = World::default();
        let gw = ObjectRef::new(Kind::Gateway, "default", "edge");
        w.gateways.insert(
            gw.clone(),
            Arc::new(Gateway {
                source: gw,
                generation: 3,
                selector: GatewaySelector::default(),
                listeners: vec![],
            }),
        );
        let report = NackReport {
            node: "edge-1".into(),
            group: "edge".into(),
            type_: "lds".into(),
            version: "v2".into(),
            message: "Error adding/updating listener(s) gateway-8443: bad cert".into(),
            resources: vec!["gateway-8443".into()],
            objects: vec!["Gateway default/edge".into()],
            ports: BTreeMap::new(),
        };
        let c = conditions(&w, &[report]);
        let cond = &c["Gateway default/edge"];
        assert_eq!(cond.type_, ConditionType::Programmed);
        assert!(!cond.status);
        assert_eq!(cond.observed_generation, 3);
        assert!(cond.message.contains("edge-1"), "{}", cond.message);
        assert!(cond.message.contains("bad cert"), "{}", cond.message);
    }
}

//! `Programmed`: whether connected proxies took the configuration, per object.
//!
//! A NACK in force (the last version sent of a type was rejected) is attributed to the objects
//! behind the resources Envoy's error text names: a cluster or its endpoints to its Service or
//! ExternalService and the TrafficPolicies for that host; a gateway listener to the Gateways
//! with a listener on that port and their Secrets; a gateway route configuration to the
//! TrafficRoutes attached to those Gateways. Those objects get `Programmed=False` with the
//! proxies' ids and Envoy's text. A NACK whose text names no resource Portolan knows stays
//! listed (with the proxy and the text) without an object.

use portolan_api::{Kind, ObjectRef};
use portolan_model::resolve::{parents_of, service_key};
use portolan_model::routing::Parent;
use portolan_model::{Condition, ConditionType, World};
use portolan_xds::status::SyncState;
use portolan_xds::{Cache, ProxyStatus, ResourceType};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One NACK in force on one proxy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NackReport {
    pub node: String,
    pub group: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub version: String,
    pub message: String,
    /// The resources of that type the message names.
    pub resources: Vec<String>,
    /// The objects those resources come from (`Kind ns/name`).
    pub objects: Vec<String>,
}

/// Every NACK in force across connected proxies, attributed to objects of `world`.
pub fn nacks(world: &World, cache: &Cache, proxies: &[ProxyStatus]) -> Vec<NackReport> {
    let mut out = Vec::new();
    for proxy in proxies {
        let snapshot = cache.get(&proxy.group);
        for t in &proxy.types {
            let (Some(nack), Some(ty)) = (&t.last_nack, t.resource_type()) else {
                continue;
            };
            if t.sync_state(snapshot.as_deref()) != SyncState::Nacked {
                continue;
            }
            let resources: Vec<String> = snapshot
                .as_deref()
                .map(|s| {
                    t.covered(s)
                        .into_iter()
                        .map(|r| r.name().to_string())
                        .filter(|name| nack.message.contains(name.as_str()))
                        .collect()
                })
                .unwrap_or_default();
            let objects: BTreeSet<ObjectRef> = resources
                .iter()
                .flat_map(|name| objects_of(world, ty, name))
                .collect();
            out.push(NackReport {
                node: proxy.node_id.clone(),
                group: proxy.group.clone(),
                type_: ty.short_name().to_string(),
                version: nack.version.clone(),
                message: nack.message.clone(),
                resources,
                objects: objects.iter().map(ToString::to_string).collect(),
            });
        }
    }
    out
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

fn generation_of(world: &World, object: &str) -> i64 {
    let routes = world.routes.iter().map(|(r, o)| (r, o.generation));
    let policies = world.policies.iter().map(|(r, o)| (r, o.generation));
    let gateways = world.gateways.iter().map(|(r, o)| (r, o.generation));
    let externals = world
        .external_services
        .iter()
        .map(|(r, o)| (r, o.generation));
    routes
        .chain(policies)
        .chain(gateways)
        .chain(externals)
        .find(|(r, _)| r.to_string() == object)
        .map(|(_, g)| g)
        .unwrap_or_default()
}

/// The objects behind one resource name.
fn objects_of(world: &World, ty: ResourceType, name: &str) -> Vec<ObjectRef> {
    match ty {
        ResourceType::Cluster | ResourceType::Endpoint => cluster_objects(world, name),
        ResourceType::Listener => gateway_port(name)
            .map(|port| gateway_objects(world, port, true))
            .unwrap_or_default(),
        ResourceType::Route => gateway_port(name)
            .map(|port| route_objects(world, port))
            .unwrap_or_default(),
        // Workload certificates come from the CA, not from an object.
        ResourceType::Secret => Vec::new(),
        // Virtual hosts are the route configuration's, asked for on demand.
        ResourceType::VirtualHost => Vec::new(),
    }
}

/// `outbound|{port}|{subset}|{host}`: the Service or ExternalService, and policies for it.
fn cluster_objects(world: &World, name: &str) -> Vec<ObjectRef> {
    let Some(host) = name
        .strip_prefix("outbound|")
        .and_then(|r| r.rsplit('|').next())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let service = host
        .split_once(".svc.")
        .and_then(|(short, _)| service_key("", short))
        .filter(|k| world.services.contains_key(k));
    if let Some(key) = &service {
        out.push(ObjectRef::new(Kind::Service, &key.namespace, &key.name));
    }
    for (r, e) in &world.external_services {
        if e.hosts.iter().any(|h| h == host) {
            out.push(r.clone());
        }
    }
    for (r, p) in &world.policies {
        let same_service = service.is_some() && service_key(&r.namespace, &p.host) == service;
        if same_service || p.host == host {
            out.push(r.clone());
        }
    }
    out
}

/// `gateway-{port}` (listener and route configuration names).
fn gateway_port(name: &str) -> Option<u16> {
    name.strip_prefix("gateway-")?.parse().ok()
}

/// Gateways with a listener on `port` (and, for listeners, the Secrets they serve).
fn gateway_objects(world: &World, port: u16, with_secrets: bool) -> Vec<ObjectRef> {
    let mut out = Vec::new();
    for (r, g) in &world.gateways {
        let on_port: Vec<_> = g.listeners.iter().filter(|l| l.port == port).collect();
        if on_port.is_empty() {
            continue;
        }
        out.push(r.clone());
        if with_secrets {
            out.extend(
                on_port
                    .iter()
                    .filter_map(|l| l.tls.as_ref())
                    .map(|s| ObjectRef::new(Kind::Secret, &s.namespace, &s.name)),
            );
        }
    }
    out
}

/// TrafficRoutes attached to the Gateways with a listener on `port`.
fn route_objects(world: &World, port: u16) -> Vec<ObjectRef> {
    let gateways: BTreeSet<Parent> = gateway_objects(world, port, false)
        .into_iter()
        .map(|r| Parent::Gateway {
            namespace: r.namespace,
            name: r.name,
        })
        .collect();
    world
        .routes
        .iter()
        .filter(|(_, route)| parents_of(route).iter().any(|p| gateways.contains(p)))
        .map(|(r, _)| r.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use portolan_model::gateway::{
        Gateway, GatewayListener, GatewaySelector, ListenerProtocol, SecretRef,
    };
    use portolan_model::{Service, ServiceKey};
    use std::sync::Arc;

    fn world() -> World {
        let mut w = World::default();
        let key = ServiceKey::new("shop", "web");
        w.services.insert(
            key.clone(),
            Arc::new(Service {
                key,
                ports: vec![],
                cluster_ip: None,
                external_name: None,
                labels: Default::default(),
            }),
        );
        let gw = ObjectRef::new(Kind::Gateway, "default", "edge");
        w.gateways.insert(
            gw.clone(),
            Arc::new(Gateway {
                source: gw,
                generation: 3,
                selector: GatewaySelector::default(),
                listeners: vec![GatewayListener {
                    name: "https".into(),
                    port: 8443,
                    protocol: ListenerProtocol::Https,
                    hostnames: vec![],
                    tls: Some(SecretRef {
                        namespace: "default".into(),
                        name: "cert".into(),
                    }),
                }],
            }),
        );
        w
    }

    #[test]
    fn cluster_names_map_to_their_service() {
        let objects = objects_of(
            &world(),
            ResourceType::Cluster,
            "outbound|80||web.shop.svc.cluster.local",
        );
        assert_eq!(objects, [ObjectRef::new(Kind::Service, "shop", "web")]);
        assert!(objects_of(&world(), ResourceType::Cluster, "portolan-otel-collector").is_empty());
    }

    #[test]
    fn gateway_listeners_map_to_the_gateway_and_its_secret() {
        let objects = objects_of(&world(), ResourceType::Listener, "gateway-8443");
        assert_eq!(
            objects,
            [
                ObjectRef::new(Kind::Gateway, "default", "edge"),
                ObjectRef::new(Kind::Secret, "default", "cert"),
            ]
        );
        assert!(objects_of(&world(), ResourceType::Listener, "gateway-9999").is_empty());
    }

    #[test]
    fn conditions_name_the_proxies_and_envoys_text() {
        let w = world();
        let report = NackReport {
            node: "edge-1".into(),
            group: "edge".into(),
            type_: "lds".into(),
            version: "v2".into(),
            message: "Error adding/updating listener(s) gateway-8443: bad cert".into(),
            resources: vec!["gateway-8443".into()],
            objects: vec!["Gateway default/edge".into()],
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

//! Conversion of validated API resources into model objects. Core kinds live here; each
//! Portolan CRD (and the TLS Secret) has its own file.
//!
//! Call [`portolan_api::validate::validate`] first: conversion trusts its input's shape and
//! skips (never panics on) anything validation would have rejected.

mod edge;
mod envoy_patch;
mod external;
mod gateway;
mod jwt;
mod policy;
mod route;
mod security;

use crate::types::*;
use portolan_api::Resource;
use portolan_api::k8s_openapi::api::core::v1 as core;
use portolan_api::k8s_openapi::api::discovery::v1 as discovery;
use portolan_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use portolan_api::resource::DEFAULT_NAMESPACE;
use portolan_api::validate::SERVICE_NAME_LABEL;
use std::sync::Arc;

/// Converts a validated resource into the object the index holds.
pub fn to_object(resource: &Resource) -> Object {
    match resource {
        Resource::Service(s) => Object::Service(Arc::new(service(s))),
        Resource::EndpointSlice(s) => Object::Endpoints(Arc::new(endpoint_slice(resource, s))),
        Resource::Endpoints(e) => Object::Endpoints(Arc::new(endpoints(resource, e))),
        Resource::TrafficRoute(r) => Object::Route(Arc::new(route::traffic_route(resource, r))),
        Resource::TrafficPolicy(p) => Object::Policy(Arc::new(policy::traffic_policy(resource, p))),
        Resource::Gateway(g) => Object::Gateway(Arc::new(gateway::gateway(resource, g))),
        Resource::ExternalService(e) => {
            Object::ExternalService(Arc::new(external::external_service(resource, e)))
        }
        Resource::Secret(s) => Object::Secret(Arc::new(gateway::tls_secret(resource, s))),
        Resource::PeerAuthentication(p) => {
            Object::PeerAuthentication(Arc::new(security::peer_authentication(resource, p)))
        }
        Resource::AccessPolicy(p) => {
            Object::AccessPolicy(Arc::new(security::access_policy(resource, p)))
        }
        Resource::ProxyScope(p) => Object::ProxyScope(Arc::new(security::proxy_scope(resource, p))),
        Resource::ExtAuthPolicy(p) => Object::ExtAuth(Arc::new(edge::ext_auth(resource, p))),
        Resource::RateLimitPolicy(p) => Object::RateLimit(Arc::new(edge::rate_limit(resource, p))),
        Resource::EnvoyPatchPolicy(p) => {
            Object::EnvoyPatch(Arc::new(envoy_patch::envoy_patch(resource, p)))
        }
        Resource::RequestAuthentication(r) => {
            Object::RequestAuthentication(Arc::new(jwt::request_authentication(resource, r)))
        }
        Resource::Namespace(_)
        | Resource::ServiceAccount(_)
        | Resource::GatewayClass(_)
        | Resource::ApiGateway(_)
        | Resource::HttpRoute(_)
        | Resource::ReferenceGrant(_)
        | Resource::GrpcRoute(_)
        | Resource::TlsRoute(_)
        | Resource::TcpRoute(_)
        | Resource::UdpRoute(_)
        | Resource::BackendTlsPolicy(_)
        | Resource::ListenerSet(_)
        | Resource::ConfigMap(_) => Object::GatewayApi(Arc::new(resource.clone())),
    }
}

fn namespace(ns: &Option<String>) -> String {
    ns.as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string()
}

fn protocol(p: Option<&str>) -> Protocol {
    match p {
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        _ => Protocol::Tcp,
    }
}

/// A duration validation accepted (`None` if absent).
fn duration(s: Option<&str>) -> Option<std::time::Duration> {
    s.and_then(|s| portolan_api::crd::common::parse_duration(s).ok())
}

/// A validated non-negative count.
fn count(n: Option<i64>) -> Option<u32> {
    n.and_then(|n| u32::try_from(n).ok())
}

fn port(p: i32) -> u16 {
    u16::try_from(p).unwrap_or_default()
}

fn service(svc: &core::Service) -> Service {
    let spec = svc.spec.clone().unwrap_or_default();
    let ports = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(|p| ServicePort {
            name: p.name.unwrap_or_default(),
            port: port(p.port),
            protocol: protocol(p.protocol.as_deref()),
            target_port: p.target_port.map(|t| match t {
                IntOrString::Int(n) => TargetPort::Number(port(n)),
                IntOrString::String(s) => TargetPort::Name(s),
            }),
            app_protocol: p.app_protocol,
        })
        .collect();
    Service {
        key: ServiceKey::new(
            namespace(&svc.metadata.namespace),
            svc.metadata.name.clone().unwrap_or_default(),
        ),
        ports,
        cluster_ip: spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None"),
        external_name: spec
            .external_name
            .filter(|_| spec.type_.as_deref() == Some("ExternalName")),
        labels: svc.metadata.labels.clone().unwrap_or_default(),
    }
}

/// The labels subsets select on: the object's own, less Kubernetes' bookkeeping labels.
fn endpoint_labels(
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> std::collections::BTreeMap<String, String> {
    labels
        .into_iter()
        .flatten()
        .filter(|(k, _)| {
            !k.starts_with("kubernetes.io/") && !k.starts_with("endpointslice.kubernetes.io/")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `v` in an allocation of exactly its length, for what is kept long. Not `shrink_to_fit`:
/// that reallocates, and mimalloc leaves a block that shrinks by less than half where it is
/// (10 endpoints kept the 1,792-byte block that room for 16 took: 7 MiB at 10,000 slices).
pub fn exact<T>(mut v: Vec<T>) -> Vec<T> {
    if v.capacity() == v.len() {
        return v;
    }
    let mut out = Vec::with_capacity(v.len());
    out.append(&mut v);
    out
}

fn endpoint_slice(resource: &Resource, slice: &discovery::EndpointSlice) -> EndpointGroup {
    let ns = namespace(&slice.metadata.namespace);
    let svc = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .cloned()
        .unwrap_or_default();
    let address_type = match slice.address_type.as_str() {
        "IPv6" => AddressType::Ipv6,
        "FQDN" => AddressType::Fqdn,
        _ => AddressType::Ipv4,
    };
    let ports: Vec<EndpointPort> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(EndpointPort {
                name: p.name.clone().unwrap_or_default(),
                port: port(p.port?),
                protocol: protocol(p.protocol.as_deref()),
            })
        })
        .collect();
    let endpoints: Vec<Endpoint> = slice
        .endpoints
        .iter()
        .flat_map(|ep| {
            let c = ep.conditions.clone().unwrap_or_default();
            // Kubernetes: a nil `ready` means ready; `serving` defaults to `ready`.
            let ready = c.ready.unwrap_or(true);
            let serving = c.serving.unwrap_or(ready);
            let terminating = c.terminating.unwrap_or(false);
            ep.addresses.iter().map(move |a| Endpoint {
                address: a.clone(),
                ready,
                serving,
                terminating,
                zone: ep.zone.clone(),
                node_name: ep.node_name.clone(),
                hostname: ep.hostname.clone(),
            })
        })
        .collect();
    // Kept as long as the slice is: no spare capacity from collecting a flattened iterator
    // (a slice of 10 endpoints would hold room for 16).
    let (ports, endpoints) = (exact(ports), exact(endpoints));
    EndpointGroup {
        source: resource.object_ref(),
        service: ServiceKey::new(ns, svc),
        address_type,
        subsets: vec![EndpointSubset { ports, endpoints }],
        labels: endpoint_labels(slice.metadata.labels.as_ref()),
    }
}

fn endpoints(resource: &Resource, eps: &core::Endpoints) -> EndpointGroup {
    let ns = namespace(&eps.metadata.namespace);
    let name = eps.metadata.name.clone().unwrap_or_default();
    let subsets = eps
        .subsets
        .iter()
        .flatten()
        .map(|s| {
            let ports = s
                .ports
                .iter()
                .flatten()
                .map(|p| EndpointPort {
                    name: p.name.clone().unwrap_or_default(),
                    port: port(p.port),
                    protocol: protocol(p.protocol.as_deref()),
                })
                .collect();
            let ready = s.addresses.iter().flatten().map(|a| (a, true));
            let not_ready = s.not_ready_addresses.iter().flatten().map(|a| (a, false));
            let endpoints = ready
                .chain(not_ready)
                .map(|(a, ready)| Endpoint {
                    address: a.ip.clone(),
                    ready,
                    serving: ready,
                    terminating: false,
                    zone: None,
                    node_name: a.node_name.clone(),
                    hostname: a.hostname.clone(),
                })
                .collect();
            EndpointSubset { ports, endpoints }
        })
        .collect();
    let address_type = if eps
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten())
        .any(|a| a.ip.contains(':'))
    {
        AddressType::Ipv6
    } else {
        AddressType::Ipv4
    };
    EndpointGroup {
        source: resource.object_ref(),
        service: ServiceKey::new(ns, name),
        address_type,
        subsets,
        labels: endpoint_labels(eps.metadata.labels.as_ref()),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    pub(super) fn object(doc: serde_json::Value) -> Object {
        let r = Resource::decode(doc).expect("decodes").expect("known kind");
        let errors = portolan_api::validate::validate(&r);
        assert!(errors.is_empty(), "{errors:?}");
        to_object(&r)
    }

    #[test]
    fn slice_conditions_default_like_kubernetes() {
        let Object::Endpoints(g) = object(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "r-1", "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": "r"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "zone": "z1"},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "serving": true, "terminating": true}}
            ],
            "ports": [{"name": "http", "port": 8080}]
        })) else {
            panic!("not endpoints")
        };
        assert_eq!(g.service, ServiceKey::new("shop", "r"));
        let eps = &g.subsets[0].endpoints;
        assert!(eps[0].ready && eps[0].serving && !eps[0].terminating);
        assert_eq!(eps[0].zone.as_deref(), Some("z1"));
        assert!(!eps[1].ready && eps[1].serving && eps[1].terminating);
        assert_eq!(g.subsets[0].ports[0].port, 8080);
        // Kept as long as the slice: no spare room.
        assert_eq!(eps.capacity(), eps.len());
        assert_eq!(g.subsets[0].ports.capacity(), 1);
    }

    #[test]
    fn exact_keeps_the_elements_without_spare_room() {
        let mut v = Vec::with_capacity(16);
        v.extend(0..10);
        let v = exact(v);
        assert_eq!((v.len(), v.capacity()), (10, 10));
        assert_eq!(v, (0..10).collect::<Vec<_>>());
        assert_eq!(exact(Vec::<u8>::new()).capacity(), 0);
    }

    #[test]
    fn endpoints_not_ready_addresses_are_not_ready() {
        let Object::Endpoints(g) = object(json!({
            "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "r"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "notReadyAddresses": [{"ip": "10.0.0.2"}],
                         "ports": [{"port": 80}]}]
        })) else {
            panic!("not endpoints")
        };
        let eps = &g.subsets[0].endpoints;
        assert_eq!((eps[0].ready, eps[1].ready), (true, false));
        assert_eq!(g.service, ServiceKey::new("default", "r"));
    }
}

#[cfg(test)]
mod crd_tests {
    use super::tests::object;
    use crate::routing::*;
    use crate::types::Object;
    use serde_json::json;

    #[test]
    fn traffic_route_defaults() {
        let Object::Route(r) = object(json!({
            "apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
            "metadata": {"name": "r", "namespace": "shop", "generation": 4},
            "spec": {"hosts": ["reviews"], "http": [{
                "route": [{"destination": {"host": "reviews"}}],
                "retries": {"attempts": 2},
                "fault": {"abort": {"httpStatus": 503}},
                "mirror": {"host": "reviews", "subset": "v3"}
            }, {"redirect": {"uri": "/new"}}],
            "tcp": [{"match": [{"port": 1}, {"port": 2}], "route": [{"destination": {"host": "db", "port": 5432}}]}]}
        })) else {
            panic!("not a route")
        };
        assert_eq!(r.generation, 4);
        assert_eq!(r.hosts, ["reviews"]);
        assert_eq!(r.parents, [Parent::Mesh]);
        let rule = &r.http[0];
        let HttpAction::Forward { backends, .. } = &rule.action else {
            panic!("not forward")
        };
        assert_eq!(backends[0].weight, 1);
        let retry = rule.retry.as_ref().expect("retry");
        assert_eq!(retry.retry_on, ["5xx", "connect-failure", "reset"]);
        assert_eq!(
            rule.fault
                .as_ref()
                .and_then(|f| f.abort.as_ref())
                .map(|a| a.percent),
            Some(100.0)
        );
        assert_eq!(rule.mirrors.first().map(|m| m.percent), Some(100.0));
        let HttpAction::Redirect(red) = &r.http[1].action else {
            panic!("not a redirect")
        };
        assert_eq!(red.code, 301);
        assert_eq!(
            r.tcp.iter().map(|t| t.port).collect::<Vec<_>>(),
            [Some(1), Some(2)]
        );
    }

    /// A real (example) certificate: validation checks the DER shape.
    const EXAMPLE_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBjzCCATWgAwIBAgIUNl9S14+zRZOqp3EY/C+ioU7MKewwCgYIKoZIzj0EAwIw\nHTEbMBkGA1UEAwwSRXhhbXBsZSBCaWxsaW5nIENBMB4XDTI2MTEyNTE2MTIyMFoX\nDTM2MTEyMjE2MTIyMFowHTEbMBkGA1UEAwwSRXhhbXBsZSBCaWxsaW5nIENBMFkw\nEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWldboCUqBgYoT199qi8gb6oKojIRu1Ea\nCDcT5szFJ0m9+DYAy164ysPP3d0sOAuWHmCVCinxz+IacSTd381BDKNTMFEwHQYD\nVR0OBBYEFJw5SjP4BXpLP8Lr23XzMeFdhTXdMB8GA1UdIwQYMBaAFJw5SjP4BXpL\nP8Lr23XzMeFdhTXdMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIh\nAPzqq8uwvNr5F2tPzABJgo7KrWqduIssWt9T9qK0YgR9AiBbaOZiOYZgT0MlParA\nCrWuSbi9jKXqxl/yaFVFutNyrA==\n-----END CERTIFICATE-----\n";

    #[test]
    fn gateway_refs_and_secrets_default_their_namespace() {
        let Object::Route(r) = object(json!({
            "apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
            "metadata": {"name": "r", "namespace": "shop"},
            "spec": {"hosts": ["*.example.com"], "gateways": ["edge", "infra/gw", "mesh"],
                     "http": [{"directResponse": {"status": 200}}]}
        })) else {
            panic!("not a route")
        };
        assert_eq!(
            r.parents,
            [
                Parent::Gateway {
                    namespace: "shop".into(),
                    name: "edge".into()
                },
                Parent::Gateway {
                    namespace: "infra".into(),
                    name: "gw".into()
                },
                Parent::Mesh
            ]
        );
        let Object::Gateway(g) = object(json!({
            "apiVersion": "portolan.dev/v1alpha1", "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": "shop"},
            "spec": {"selector": {"cluster": "ingress"}, "listeners": [
                {"name": "https", "port": 443, "protocol": "HTTPS", "tls": {"secretRef": {"name": "cert"}}}]}
        })) else {
            panic!("not a gateway")
        };
        let tls = g.listeners[0].tls.as_ref().expect("tls");
        assert_eq!(
            (tls.namespace.as_str(), tls.name.as_str()),
            ("shop", "cert")
        );
        let Object::Secret(s) = object(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cert"},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": EXAMPLE_CERT, "tls.key": "-----BEGIN PRIVATE KEY-----\ny\n"}
        })) else {
            panic!("not a secret")
        };
        assert!(s.cert_chain.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(s.private_key.contains("PRIVATE KEY"));
    }
}

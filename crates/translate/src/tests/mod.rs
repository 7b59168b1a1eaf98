//! Tests of the whole translation, with `mk_*` fixture builders for model objects.

mod golden;
mod roundtrip;
mod rules;

use crate::{Options, ProxyGroup, Resources, translate};
use portolan_api::{Kind, ObjectRef};
use portolan_model::{
    AddressType, Endpoint, EndpointGroup, EndpointPort, EndpointSubset, Protocol, Service,
    ServiceKey, ServicePort, World,
};
use std::sync::Arc;

fn mk_port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: name.to_string(),
        port,
        protocol: Protocol::Tcp,
        target_port: None,
        app_protocol: None,
    }
}

fn mk_app_port(name: &str, port: u16, app_protocol: &str) -> ServicePort {
    ServicePort {
        app_protocol: Some(app_protocol.to_string()),
        ..mk_port(name, port)
    }
}

fn mk_service(namespace: &str, name: &str, ports: Vec<ServicePort>) -> Service {
    Service {
        key: ServiceKey::new(namespace, name),
        ports,
        cluster_ip: Some("10.96.0.10".to_string()),
        external_name: None,
        labels: Default::default(),
    }
}

fn mk_ready(address: &str, zone: Option<&str>) -> Endpoint {
    Endpoint {
        address: address.to_string(),
        ready: true,
        serving: true,
        terminating: false,
        zone: zone.map(str::to_string),
        node_name: None,
        hostname: None,
    }
}

fn mk_not_ready(address: &str, zone: Option<&str>) -> Endpoint {
    Endpoint {
        ready: false,
        serving: false,
        ..mk_ready(address, zone)
    }
}

/// Serving while shutting down: not ready, still serving, terminating.
fn mk_terminating(address: &str, zone: Option<&str>) -> Endpoint {
    Endpoint {
        ready: false,
        serving: true,
        terminating: true,
        ..mk_ready(address, zone)
    }
}

fn mk_endpoint_port(name: &str, port: u16) -> EndpointPort {
    EndpointPort {
        name: name.to_string(),
        port,
        protocol: Protocol::Tcp,
    }
}

/// One EndpointSlice named `slice` of service `namespace/service`.
fn mk_slice(
    namespace: &str,
    service: &str,
    slice: &str,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointGroup {
    let address_type = if endpoints.iter().any(|e| e.address.contains(':')) {
        AddressType::Ipv6
    } else {
        AddressType::Ipv4
    };
    EndpointGroup {
        source: ObjectRef::new(Kind::EndpointSlice, namespace, slice),
        service: ServiceKey::new(namespace, service),
        address_type,
        subsets: vec![EndpointSubset { ports, endpoints }],
        labels: Default::default(),
    }
}

fn mk_world(services: Vec<Service>, groups: Vec<EndpointGroup>) -> World {
    let mut world = World {
        version: 1,
        ..Default::default()
    };
    for svc in services {
        world.services.insert(svc.key.clone(), Arc::new(svc));
    }
    for group in groups {
        let key = group.service.clone();
        world
            .endpoints
            .entry(key)
            .or_default()
            .push(Arc::new(group));
    }
    world
}

fn run(world: &World) -> Resources {
    translate(world, &ProxyGroup::default(), &Options::default())
}

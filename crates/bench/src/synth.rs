//! Synthetic worlds: N services spread over a few namespaces, E endpoints spread evenly over
//! them, two zones, one `http` port each (every 100th service also has a `grpc` port), and a
//! mesh TrafficRoute for every 10th service (a canary split plus a default rule).
//!
//! The same description becomes model objects (applied on an [`Index`]) or YAML manifests (for
//! `portolan serve`), so the in-process and the Envoy scenarios see the same world.

use portolan_api::{Kind, ObjectRef};
use portolan_model::routing::{
    Backend, Destination, HeaderMatch, HeaderOps, HttpAction, HttpMatch, HttpRoute, HttpRule,
    PathMatch, RetryPolicy, StringMatch,
};
use portolan_model::{
    AddressType, Endpoint, EndpointGroup, EndpointPort, EndpointSubset, Index, Object, Protocol,
    Service, ServiceKey, ServicePort, TargetPort,
};
use portolan_translate::names;
use std::fmt::Write as _;
use std::time::Duration;

/// How many namespaces the services are spread over.
const NAMESPACES: usize = 10;
/// Every `TWO_PORT_EVERY`-th service has a second (`grpc`) port.
const TWO_PORT_EVERY: usize = 100;
/// One TrafficRoute per `ROUTE_EVERY` services by default (10k services: the target's 1k routes).
const ROUTE_EVERY: usize = 10;
/// Kubernetes puts at most 100 endpoints in one EndpointSlice.
const SLICE_MAX: usize = 100;
const ZONES: [&str; 2] = ["zone-a", "zone-b"];

/// The size and address space of a synthetic world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorldSpec {
    pub services: usize,
    /// Endpoints in total, spread evenly (the first services get one more when it does not divide).
    pub endpoints: usize,
    /// Mesh TrafficRoutes (in-process worlds only: the YAML manifests have none), one for each of
    /// the first services spaced evenly; at most one per service.
    pub routes: usize,
    /// First octet of every endpoint address: 10 in process, 127 (loopback) for Envoy.
    pub first_octet: u8,
    /// Whether every Service has a ClusterIP (`10.96.X.Y`), as in a cluster: what a captured
    /// workload's outbound listener matches on (issue #20).
    pub cluster_ips: bool,
    /// Gateway API HTTPRoutes on one Gateway (in-process worlds only; see
    /// [`crate::synth_gateway_api`]).
    pub http_routes: usize,
}

/// One service port: name, service port, endpoint port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub name: &'static str,
    pub port: u16,
    pub target: u16,
}

const HTTP: PortSpec = PortSpec {
    name: "http",
    port: 80,
    target: 8080,
};
const GRPC: PortSpec = PortSpec {
    name: "grpc",
    port: 9090,
    target: 9090,
};

/// One synthetic service and its endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthService {
    pub key: ServiceKey,
    pub ports: Vec<PortSpec>,
    /// `(address, zone)` per endpoint.
    pub endpoints: Vec<(String, &'static str)>,
    pub cluster_ip: Option<String>,
}

/// The service a change is made to, and what it becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Index of the service in [`WorldSpec::services_list`].
    pub index: usize,
    pub key: ServiceKey,
    /// Its (single) cluster, which is also its ClusterLoadAssignment name.
    pub cluster: String,
}

// === impl WorldSpec ===

impl WorldSpec {
    pub fn new(services: usize, endpoints: usize) -> Self {
        Self {
            services,
            endpoints,
            routes: services / ROUTE_EVERY,
            first_octet: 10,
            cluster_ips: false,
            http_routes: 0,
        }
    }

    /// Every service, in a fixed order.
    pub fn services_list(&self) -> Vec<SynthService> {
        let mut next_ip = 0usize;
        (0..self.services)
            .map(|i| {
                let count = self.endpoints_of(i);
                let endpoints = (0..count)
                    .map(|j| (self.ip(next_ip + j), ZONES[j % ZONES.len()]))
                    .collect();
                next_ip += count;
                SynthService {
                    key: ServiceKey::new(format!("ns-{}", i % NAMESPACES), format!("svc-{i}")),
                    ports: ports_of(i),
                    endpoints,
                    cluster_ip: self
                        .cluster_ips
                        .then(|| format!("10.96.{}.{}", i / 250 % 256, i % 250 + 1)),
                }
            })
            .collect()
    }

    /// The clusters translation makes: one per port.
    pub fn cluster_count(&self) -> usize {
        (0..self.services).map(|i| ports_of(i).len()).sum()
    }

    /// An Index holding the whole world, routes included.
    pub fn index(&self) -> Index {
        let mut index = Index::new();
        for svc in self.services_list() {
            for object in svc.objects() {
                index.apply(object);
            }
        }
        for route in self.route_objects() {
            index.apply(route);
        }
        let api = crate::synth_gateway_api::objects(self.http_routes, self.services, NAMESPACES);
        // The documents are made here: a failure to decode them is a bug of this module.
        for object in api.unwrap_or_else(|e| panic!("{e}")) {
            index.apply(object);
        }
        index
    }

    /// The mesh TrafficRoutes: route `r` is for service `r * services / routes` and sends 10 %
    /// of its `/v2` requests with `x-canary: true` to the next service.
    pub fn route_objects(&self) -> Vec<Object> {
        let routes = self.routes.min(self.services);
        (0..routes)
            .map(|r| {
                let i = r * self.services / routes;
                Object::from(route(i, (i + 1) % self.services))
            })
            .collect()
    }

    /// A single-port service in the middle of the world, with at least one endpoint.
    pub fn target(&self) -> Option<Target> {
        let middle = self.services / 2;
        let index = (middle..self.services)
            .chain(0..middle)
            .find(|&i| ports_of(i).len() == 1 && self.endpoints_of(i) > 0)?;
        let key = ServiceKey::new(format!("ns-{}", index % NAMESPACES), format!("svc-{index}"));
        let cluster = names::cluster_name(&key, HTTP.port, "cluster.local");
        Some(Target {
            index,
            key,
            cluster,
        })
    }

    /// An address outside the world's range, for changed endpoints (`variant` picks one of many).
    pub fn spare_ip(&self, variant: usize) -> String {
        let (high, low) = (variant / 250 % 256, variant % 250 + 1);
        format!("{}.255.{high}.{low}", self.first_octet)
    }

    fn endpoints_of(&self, i: usize) -> usize {
        if self.services == 0 {
            return 0;
        }
        let base = self.endpoints / self.services;
        base + usize::from(i < self.endpoints % self.services)
    }

    /// The `n`th address: `{first}.{n / 65536}.{n / 256 % 256}.{n % 256 + ...}`, never `.0`.
    fn ip(&self, n: usize) -> String {
        let host = n % 254 + 1;
        let rest = n / 254;
        format!(
            "{}.{}.{}.{host}",
            self.first_octet,
            rest / 256 % 255,
            rest % 256
        )
    }
}

fn ports_of(i: usize) -> Vec<PortSpec> {
    if i % TWO_PORT_EVERY == TWO_PORT_EVERY - 1 {
        vec![HTTP, GRPC]
    } else {
        vec![HTTP]
    }
}

// === impl SynthService ===

impl SynthService {
    /// The Service and its EndpointSlices as model objects.
    pub fn objects(&self) -> Vec<Object> {
        let mut out = vec![Object::from(self.service())];
        out.extend(
            self.slices()
                .map(|(name, endpoints)| Object::from(self.group(name, endpoints))),
        );
        out
    }

    /// The EndpointSlice objects only (what a change to this service's endpoints re-applies).
    pub fn slice_objects(&self) -> Vec<Object> {
        self.slices()
            .map(|(name, endpoints)| Object::from(self.group(name, endpoints)))
            .collect()
    }

    /// The Service as a YAML manifest.
    pub fn service_yaml(&self) -> String {
        let mut out = format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n",
            self.key.name, self.key.namespace
        );
        if let Some(ip) = &self.cluster_ip {
            let _ = writeln!(out, "  clusterIP: {ip}");
        }
        out.push_str("  ports:\n");
        for p in &self.ports {
            let _ = writeln!(
                out,
                "  - name: {}\n    port: {}\n    targetPort: {}",
                p.name, p.port, p.target
            );
        }
        out
    }

    /// The EndpointSlices as YAML documents.
    pub fn slices_yaml(&self) -> String {
        let docs: Vec<String> = self
            .slices()
            .map(|(name, endpoints)| self.slice_yaml(&name, endpoints))
            .collect();
        docs.join("---\n")
    }

    fn slice_yaml(&self, name: &str, endpoints: &[(String, &'static str)]) -> String {
        let mut out = format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: {}\n  labels:\n    kubernetes.io/service-name: {}\naddressType: IPv4\nendpoints:\n",
            self.key.namespace, self.key.name
        );
        for (ip, zone) in endpoints {
            let _ = writeln!(
                out,
                "- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n  zone: {zone}"
            );
        }
        out.push_str("ports:\n");
        for p in &self.ports {
            let _ = writeln!(out, "- name: {}\n  port: {}", p.name, p.target);
        }
        out
    }

    /// `(slice name, endpoints)`, at most [`SLICE_MAX`] endpoints each, one (empty) at least.
    fn slices(&self) -> impl Iterator<Item = (String, &[(String, &'static str)])> {
        let chunks: Vec<_> = if self.endpoints.is_empty() {
            vec![&self.endpoints[..]]
        } else {
            self.endpoints.chunks(SLICE_MAX).collect()
        };
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, eps)| (format!("{}-{i}", self.key.name), eps))
    }

    fn service(&self) -> Service {
        Service {
            key: self.key.clone(),
            ports: self
                .ports
                .iter()
                .map(|p| ServicePort {
                    name: p.name.to_string(),
                    port: p.port,
                    protocol: Protocol::Tcp,
                    target_port: Some(TargetPort::Number(p.target)),
                    app_protocol: None,
                })
                .collect(),
            cluster_ip: self.cluster_ip.clone(),
            external_name: None,
            labels: Default::default(),
        }
    }

    fn group(&self, name: String, endpoints: &[(String, &'static str)]) -> EndpointGroup {
        EndpointGroup {
            source: ObjectRef::new(Kind::EndpointSlice, &self.key.namespace, &name),
            service: self.key.clone(),
            address_type: AddressType::Ipv4,
            subsets: vec![EndpointSubset {
                ports: self
                    .ports
                    .iter()
                    .map(|p| EndpointPort {
                        name: p.name.to_string(),
                        port: p.target,
                        protocol: Protocol::Tcp,
                    })
                    .collect(),
                endpoints: endpoints
                    .iter()
                    .map(|(ip, zone)| endpoint(ip, zone))
                    .collect(),
            }],
            labels: Default::default(),
        }
    }
}

fn short_host(i: usize) -> String {
    format!("svc-{i}.ns-{}", i % NAMESPACES)
}

fn destination(i: usize) -> Destination {
    Destination {
        host: short_host(i),
        port: Some(HTTP.port),
        subset: None,
    }
}

fn rule(name: &str, matches: Vec<HttpMatch>, backends: Vec<Backend>) -> HttpRule {
    HttpRule {
        name: Some(name.to_string()),
        matches,
        action: HttpAction::Forward {
            backends,
            rewrite: None,
        },
        timeout: Some(Duration::from_secs(5)),
        retry: Some(RetryPolicy {
            attempts: 2,
            per_try_timeout: None,
            retry_on: Vec::new(),
        }),
        fault: None,
        mirrors: Vec::new(),
        request_headers: HeaderOps::default(),
        response_headers: HeaderOps::default(),
        cors: None,
    }
}

/// The route of service `i`: a canary rule splitting 90/10 with service `canary`, then a default.
fn route(i: usize, canary: usize) -> HttpRoute {
    let namespace = format!("ns-{}", i % NAMESPACES);
    let canary_match = HttpMatch {
        path: Some(PathMatch::Prefix("/v2".to_string())),
        headers: vec![HeaderMatch {
            name: "x-canary".to_string(),
            value: StringMatch::Exact("true".to_string()),
            invert: false,
        }],
        ..HttpMatch::default()
    };
    let split = vec![
        Backend {
            destination: destination(i),
            weight: 90,
            headers: Default::default(),
        },
        Backend {
            destination: destination(canary),
            weight: 10,
            headers: Default::default(),
        },
    ];
    let only = vec![Backend {
        destination: destination(i),
        weight: 1,
        headers: Default::default(),
    }];
    HttpRoute {
        source: ObjectRef::new(Kind::TrafficRoute, namespace, format!("route-{i}")),
        generation: 1,
        hosts: vec![short_host(i)],
        parents: Vec::new(),
        http: vec![
            rule("canary", vec![canary_match], split),
            rule("default", Vec::new(), only),
        ],
        tcp: Vec::new(),
    }
}

fn endpoint(ip: &str, zone: &str) -> Endpoint {
    Endpoint {
        address: ip.to_string(),
        ready: true,
        serving: true,
        terminating: false,
        zone: Some(zone.to_string()),
        node_name: None,
        hostname: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn endpoints_are_spread_evenly_and_unique() {
        let spec = WorldSpec::new(7, 100);
        let services = spec.services_list();
        let counts: Vec<usize> = services.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(counts.iter().sum::<usize>(), 100);
        assert!(counts.iter().all(|&c| c == 14 || c == 15));
        let ips: BTreeSet<_> = services.iter().flat_map(|s| &s.endpoints).collect();
        assert_eq!(ips.len(), 100);
    }

    #[test]
    fn addresses_are_valid_ips_in_the_first_octet() {
        let spec = WorldSpec {
            first_octet: 127,
            ..WorldSpec::new(3, 70_000)
        };
        for svc in spec.services_list() {
            for (ip, _) in &svc.endpoints {
                let parsed: std::net::Ipv4Addr = ip.parse().expect("an IPv4 address");
                assert_eq!(parsed.octets()[0], 127);
                assert_ne!(parsed.octets()[3], 0);
            }
        }
    }

    #[test]
    fn every_hundredth_service_has_two_ports() {
        let spec = WorldSpec::new(200, 0);
        assert_eq!(spec.cluster_count(), 202);
        let target = spec.target();
        assert!(target.is_none(), "no service has endpoints");
        let spec = WorldSpec::new(200, 400);
        let target = spec.target().expect("a target");
        assert_eq!(target.index, 100);
        assert_eq!(
            target.cluster,
            "outbound|80||svc-100.ns-0.svc.cluster.local"
        );
    }

    #[test]
    fn every_tenth_service_gets_a_route_to_a_real_service() {
        let spec = WorldSpec::new(200, 400);
        let routes = spec.route_objects();
        assert_eq!(routes.len(), 20);
        let hosts: BTreeSet<String> = routes
            .iter()
            .filter_map(|o| match o {
                Object::Route(r) => Some(r.hosts.join(",")),
                _ => None,
            })
            .collect();
        assert_eq!(hosts.len(), 20, "one route per host");
        assert!(hosts.contains("svc-10.ns-0"));
        let world = spec.index().world();
        assert_eq!(world.routes.len(), 20);
    }

    #[test]
    fn big_services_get_several_slices() {
        let spec = WorldSpec::new(1, 250);
        let objects = spec.services_list()[0].objects();
        assert_eq!(objects.len(), 4, "one Service and three slices");
    }
}

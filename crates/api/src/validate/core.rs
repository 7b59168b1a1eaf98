//! Validation of the core Kubernetes kinds: Service, EndpointSlice, Endpoints; and the
//! checks every kind shares (names, ports, DNS names).

use super::Errors;
use crate::field::FieldPath;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::HashSet;
use std::net::IpAddr;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

pub(super) fn name(meta_name: Option<&str>, errors: &mut Errors) {
    let path = FieldPath::root().field("metadata").field("name");
    match meta_name {
        Some(n) if is_dns_label(n) => {}
        Some(n) => errors.push(
            path,
            format!("{n:?} is not a DNS label: lower-case letters, digits and '-', 1-63 characters, starting with a letter"),
        ),
        None => errors.push(path, "required"),
    }
}

pub(super) fn service(svc: &Service, errors: &mut Errors) {
    name(svc.metadata.name.as_deref(), errors);
    let spec_path = FieldPath::root().field("spec");
    let Some(spec) = &svc.spec else {
        errors.push(spec_path, "required");
        return;
    };
    let ports_path = spec_path.field("ports");
    let ports = spec.ports.as_deref().unwrap_or_default();
    let is_external_name = spec.type_.as_deref() == Some("ExternalName");
    if ports.is_empty() && !is_external_name {
        errors.push(ports_path.clone(), "at least one port is required");
    }
    let mut names = HashSet::new();
    let mut numbers = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let path = ports_path.index(i);
        port_number(port.port, path.field("port"), errors);
        protocol(port.protocol.as_deref(), path.field("protocol"), errors);
        match port.name.as_deref() {
            None | Some("") if ports.len() > 1 => errors.push(
                path.field("name"),
                "required when the Service has more than one port",
            ),
            Some(n) if !n.is_empty() && !names.insert(n) => {
                errors.push(path.field("name"), format!("duplicate port name {n:?}"))
            }
            _ => {}
        }
        let proto = port.protocol.as_deref().unwrap_or("TCP");
        if !numbers.insert((port.port, proto)) {
            errors.push(
                path.field("port"),
                format!("duplicate port {} with protocol {proto}", port.port),
            );
        }
        if let Some(target) = &port.target_port {
            target_port(target, path.field("targetPort"), errors);
        }
    }
    if is_external_name && spec.external_name.as_deref().unwrap_or_default().is_empty() {
        errors.push(
            spec_path.field("externalName"),
            "required when type is ExternalName",
        );
    }
}

pub(super) fn endpoint_slice(slice: &EndpointSlice, errors: &mut Errors) {
    let meta = FieldPath::root().field("metadata");
    if slice
        .metadata
        .name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        errors.push(meta.field("name"), "required");
    }
    let label = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL));
    match label {
        Some(svc) if is_dns_label(svc) => {}
        Some(svc) => errors.push(
            meta.field("labels").key(SERVICE_NAME_LABEL),
            format!("{svc:?} is not a Service name (a DNS label)"),
        ),
        None => errors.push(
            meta.field("labels").key(SERVICE_NAME_LABEL),
            "required: the name of the Service these endpoints belong to",
        ),
    }
    let address_type = slice.address_type.as_str();
    if !matches!(address_type, "IPv4" | "IPv6" | "FQDN") {
        errors.push(
            FieldPath::root().field("addressType"),
            format!("{address_type:?} is not one of IPv4, IPv6, FQDN"),
        );
    }
    for (i, ep) in slice.endpoints.iter().enumerate() {
        let path = FieldPath::root()
            .field("endpoints")
            .index(i)
            .field("addresses");
        if ep.addresses.is_empty() {
            errors.push(path.clone(), "at least one address is required");
        }
        for (j, addr) in ep.addresses.iter().enumerate() {
            address(address_type, addr, path.index(j), errors);
        }
    }
    let ports_path = FieldPath::root().field("ports");
    for (i, port) in slice.ports.iter().flatten().enumerate() {
        let path = ports_path.index(i);
        match port.port {
            Some(p) => port_number(p, path.field("port"), errors),
            None => errors.push(
                path.field("port"),
                "required: Portolan routes to a concrete port",
            ),
        }
        protocol(port.protocol.as_deref(), path.field("protocol"), errors);
    }
}

pub(super) fn endpoints(eps: &Endpoints, errors: &mut Errors) {
    name(eps.metadata.name.as_deref(), errors);
    for (i, subset) in eps.subsets.iter().flatten().enumerate() {
        let path = FieldPath::root().field("subsets").index(i);
        let lists = [
            ("addresses", subset.addresses.as_deref()),
            ("notReadyAddresses", subset.not_ready_addresses.as_deref()),
        ];
        for (field, list) in lists {
            for (j, a) in list.unwrap_or_default().iter().enumerate() {
                let p = path.field(field).index(j).field("ip");
                if a.ip.parse::<IpAddr>().is_err() {
                    errors.push(p, format!("{:?} is not an IP address", a.ip));
                }
            }
        }
        for (j, port) in subset.ports.iter().flatten().enumerate() {
            port_number(
                port.port,
                path.field("ports").index(j).field("port"),
                errors,
            );
            protocol(
                port.protocol.as_deref(),
                path.field("ports").index(j).field("protocol"),
                errors,
            );
        }
    }
}

fn address(address_type: &str, addr: &str, path: FieldPath, errors: &mut Errors) {
    let ok = match address_type {
        "IPv4" => addr.parse::<std::net::Ipv4Addr>().is_ok(),
        "IPv6" => addr.parse::<std::net::Ipv6Addr>().is_ok(),
        "FQDN" => is_dns_name(addr),
        _ => true, // the addressType error already says what is wrong
    };
    if !ok {
        errors.push(
            path,
            format!("{addr:?} is not a valid {address_type} address"),
        );
    }
}

pub(super) fn port_number(port: i32, path: FieldPath, errors: &mut Errors) {
    if !(1..=65535).contains(&port) {
        errors.push(path, format!("{port} is not a port: must be 1-65535"));
    }
}

fn protocol(protocol: Option<&str>, path: FieldPath, errors: &mut Errors) {
    if let Some(p) = protocol
        && !matches!(p, "TCP" | "UDP" | "SCTP")
    {
        errors.push(path, format!("{p:?} is not one of TCP, UDP, SCTP"));
    }
}

fn target_port(target: &IntOrString, path: FieldPath, errors: &mut Errors) {
    match target {
        IntOrString::Int(p) => port_number(*p, path, errors),
        IntOrString::String(s) if s.parse::<i32>().is_ok() => {
            errors.push(path, format!("{s:?} is a number in quotes: write it without quotes"))
        }
        IntOrString::String(s) if !is_port_name(s) => errors.push(
            path,
            format!("{s:?} is neither a port number nor a port name (lower-case letters, digits and '-', at most 15 characters)"),
        ),
        IntOrString::String(_) => {}
    }
}

/// RFC 1123 label: what Kubernetes accepts as a Service or namespace name.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels.
pub fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_port_name(s: &str) -> bool {
    s.len() <= 15
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && is_dns_label(s)
        && !s.contains("--")
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use crate::resource::Resource;
    use serde_json::{Value, json};

    fn errors_of(doc: Value) -> Vec<String> {
        let r = Resource::decode(doc).expect("decodes").expect("is read");
        validate(&r).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn service_table() {
        let cases: &[(Value, &[&str])] = &[
            (
                json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"ok"},
                       "spec":{"ports":[{"port":80}]}}),
                &[],
            ),
            (
                json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"Bad_Name"},
                       "spec":{"ports":[{"port":80}]}}),
                &[
                    "metadata.name: \"Bad_Name\" is not a DNS label: lower-case letters, digits and '-', 1-63 characters, starting with a letter",
                ],
            ),
            (
                json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},
                       "spec":{"ports":[{"port":0,"name":"x"},{"port":80,"protocol":"HTTP","name":"y"}]}}),
                &[
                    "spec.ports[0].port: 0 is not a port: must be 1-65535",
                    "spec.ports[1].protocol: \"HTTP\" is not one of TCP, UDP, SCTP",
                ],
            ),
            (
                json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},
                       "spec":{"ports":[{"port":80},{"port":81}]}}),
                &[
                    "spec.ports[0].name: required when the Service has more than one port",
                    "spec.ports[1].name: required when the Service has more than one port",
                ],
            ),
            (
                json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},
                       "spec":{"ports":[{"port":80,"targetPort":"8080"}]}}),
                &[
                    "spec.ports[0].targetPort: \"8080\" is a number in quotes: write it without quotes",
                ],
            ),
            (
                json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{}}),
                &["spec.ports: at least one port is required"],
            ),
        ];
        for (doc, want) in cases {
            assert_eq!(errors_of(doc.clone()), *want, "for {doc}");
        }
    }

    #[test]
    fn endpoint_slice_table() {
        let cases: &[(Value, &[&str])] = &[
            (
                json!({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
                       "metadata":{"name":"r-1","labels":{"kubernetes.io/service-name":"r"}},
                       "addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"]}],
                       "ports":[{"port":8080}]}),
                &[],
            ),
            (
                json!({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
                       "metadata":{"name":"r-1"},
                       "addressType":"IPv4","endpoints":[{"addresses":["10.0.0.300"]}],
                       "ports":[{"port":70000}]}),
                &[
                    "metadata.labels[kubernetes.io/service-name]: required: the name of the Service these endpoints belong to",
                    "endpoints[0].addresses[0]: \"10.0.0.300\" is not a valid IPv4 address",
                    "ports[0].port: 70000 is not a port: must be 1-65535",
                ],
            ),
        ];
        for (doc, want) in cases {
            assert_eq!(errors_of(doc.clone()), *want, "for {doc}");
        }
    }

    #[test]
    fn endpoints_table() {
        let doc = json!({"apiVersion":"v1","kind":"Endpoints","metadata":{"name":"r"},
            "subsets":[{"addresses":[{"ip":"nope"}],"ports":[{"port":0}]}]});
        assert_eq!(
            errors_of(doc),
            [
                "subsets[0].addresses[0].ip: \"nope\" is not an IP address",
                "subsets[0].ports[0].port: 0 is not a port: must be 1-65535",
            ]
        );
    }
}

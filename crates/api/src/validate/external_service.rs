//! Validation of `ExternalService`.

use super::*;
use crate::crd::external_service::*;
use std::net::IpAddr;

pub(super) fn external_service(es: &ExternalService, errors: &mut Errors) {
    object_name(es.metadata.name.as_deref(), errors);
    let spec = &es.spec;
    let path = spec_path();
    let hpath = path.field("hosts");
    if spec.hosts.is_empty() {
        errors.push(hpath.clone(), "at least one host is required");
    }
    for (i, h) in spec.hosts.iter().enumerate() {
        host_name(h, false, hpath.index(i), errors);
    }
    unique(&spec.hosts, Clone::clone, &hpath, "", "host", errors);
    let ppath = path.field("ports");
    if spec.ports.is_empty() {
        errors.push(ppath.clone(), "at least one port is required");
    }
    for (i, p) in spec.ports.iter().enumerate() {
        dns_label(&p.name, "port name", ppath.index(i).field("name"), errors);
        port(p.number, ppath.index(i).field("number"), errors);
    }
    unique(
        &spec.ports,
        |p| p.name.clone(),
        &ppath,
        "name",
        "port name",
        errors,
    );
    unique(
        &spec.ports,
        |p| p.number.to_string(),
        &ppath,
        "number",
        "port number",
        errors,
    );
    endpoints(spec, &path.field("endpoints"), errors);
}

fn endpoints(spec: &ExternalServiceSpec, path: &FieldPath, errors: &mut Errors) {
    let dns = spec.resolution == Some(Resolution::Dns);
    if !dns && spec.endpoints.is_empty() {
        errors.push(
            path.clone(),
            "at least one endpoint is required with resolution Static (or use resolution DNS)",
        );
    }
    for (i, ep) in spec.endpoints.iter().enumerate() {
        let p = path.index(i);
        if dns {
            if !is_dns_name(&ep.address) {
                errors.push(
                    p.field("address"),
                    format!("{:?} is not a DNS name (resolution DNS)", ep.address),
                );
            }
        } else if ep.address.parse::<IpAddr>().is_err() {
            errors.push(
                p.field("address"),
                format!("{:?} is not an IP address (resolution Static)", ep.address),
            );
        }
        for (name, number) in &ep.ports {
            let pp = p.field("ports").key(name);
            if !spec.ports.iter().any(|sp| &sp.name == name) {
                errors.push(
                    pp.clone(),
                    format!("{name:?} is not the name of a port in spec.ports"),
                );
            }
            port(*number, pp, errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::table;
    use serde_json::{Value, json};

    fn check(cases: &[(Value, &[&str])]) {
        table("portolan.dev/v1alpha1", "ExternalService", cases);
    }

    #[test]
    fn external_service_table() {
        check(&[
            (
                json!({"hosts": ["api.example.com"], "ports": [{"name": "http", "number": 80, "protocol": "HTTP"}],
                       "endpoints": [{"address": "127.0.0.1", "ports": {"http": 8080}}]}),
                &[],
            ),
            (
                json!({"hosts": ["api.example.com"], "ports": [{"name": "https", "number": 443, "protocol": "HTTPS"}],
                       "resolution": "DNS"}),
                &[],
            ),
            (
                json!({"hosts": ["*.example.com", "a.com", "a.com"],
                       "ports": [{"name": "http", "number": 80, "protocol": "HTTP"}, {"name": "http", "number": 80, "protocol": "TCP"}]}),
                &[
                    "spec.hosts[0]: \"*.example.com\" is not a host name: must be a lower-case DNS name (dot-separated labels of letters, digits and '-')",
                    "spec.hosts[2]: duplicate host \"a.com\"",
                    "spec.ports[1].name: duplicate port name \"http\"",
                    "spec.ports[1].number: duplicate port number \"80\"",
                    "spec.endpoints: at least one endpoint is required with resolution Static (or use resolution DNS)",
                ],
            ),
            (
                json!({"hosts": ["a.com"], "ports": [{"name": "http", "number": 80, "protocol": "HTTP"}],
                       "endpoints": [{"address": "a.com", "ports": {"web": 0}}]}),
                &[
                    "spec.endpoints[0].address: \"a.com\" is not an IP address (resolution Static)",
                    "spec.endpoints[0].ports[web]: \"web\" is not the name of a port in spec.ports",
                    "spec.endpoints[0].ports[web]: 0 is not a port: must be 1-65535",
                ],
            ),
        ]);
    }
}

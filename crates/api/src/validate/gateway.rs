//! Validation of `Gateway`.

use super::*;
use crate::crd::gateway::*;
use std::collections::BTreeMap;

pub(super) fn gateway(gw: &Gateway, errors: &mut Errors) {
    object_name(gw.metadata.name.as_deref(), errors);
    let spec = &gw.spec;
    let path = spec_path();
    if spec.selector.cluster.is_empty() && spec.selector.metadata.is_empty() {
        errors.push(
            path.field("selector"),
            "needs a cluster (the Envoy node cluster of the proxies that run this gateway), metadata labels, or both",
        );
    }
    let lpath = path.field("listeners");
    if spec.listeners.is_empty() {
        errors.push(lpath.clone(), "at least one listener is required");
    }
    for (i, l) in spec.listeners.iter().enumerate() {
        listener(l, lpath.index(i), errors);
    }
    unique(
        &spec.listeners,
        |l| l.name.clone(),
        &lpath,
        "name",
        "listener name",
        errors,
    );
    ports_and_hostnames(&spec.listeners, &lpath, errors);
}

fn listener(l: &Listener, path: FieldPath, errors: &mut Errors) {
    dns_label(&l.name, "listener name", path.field("name"), errors);
    port(l.port, path.field("port"), errors);
    for (i, h) in l.hostnames.iter().enumerate() {
        host_name(h, true, path.field("hostnames").index(i), errors);
    }
    match (&l.tls, l.protocol) {
        (None, ListenerProtocol::Https) => {
            errors.push(path.field("tls"), "required for protocol HTTPS")
        }
        (Some(_), ListenerProtocol::Http | ListenerProtocol::Tcp) => {
            errors.push(path.field("tls"), "only allowed for protocol HTTPS")
        }
        _ => {}
    }
    if let Some(tls) = &l.tls {
        let p = path.field("tls").field("secretRef");
        if !is_dns_name(&tls.secret_ref.name) {
            errors.push(
                p.field("name"),
                format!(
                    "{:?} is not a Secret name: a lower-case DNS name",
                    tls.secret_ref.name
                ),
            );
        }
        if let Some(ns) = &tls.secret_ref.namespace {
            dns_label(ns, "namespace", p.field("namespace"), errors);
        }
    }
}

/// Listeners sharing a port must agree on the protocol, and each (port, hostname) pair may
/// appear once (no hostnames counts as hostname `*`).
fn ports_and_hostnames(listeners: &[Listener], path: &FieldPath, errors: &mut Errors) {
    let mut protocols: BTreeMap<i32, (&str, ListenerProtocol)> = BTreeMap::new();
    let mut pairs: BTreeMap<(i32, &str), &str> = BTreeMap::new();
    for (i, l) in listeners.iter().enumerate() {
        let p = path.index(i);
        match protocols.get(&l.port) {
            Some((other, proto)) if *proto != l.protocol => errors.push(
                p.field("protocol"),
                format!(
                    "port {} is already used by listener {other:?} with protocol {}: listeners sharing a port must have the same protocol",
                    l.port,
                    protocol_name(*proto)
                ),
            ),
            Some(_) => {}
            None => {
                protocols.insert(l.port, (&l.name, l.protocol));
            }
        }
        let hostnames: Vec<&str> = if l.hostnames.is_empty() {
            vec!["*"]
        } else {
            l.hostnames.iter().map(String::as_str).collect()
        };
        for h in hostnames {
            if let Some(other) = pairs.insert((l.port, h), &l.name) {
                errors.push(
                    p.clone(),
                    format!(
                        "port {} and hostname {h:?} are already used by listener {other:?}",
                        l.port
                    ),
                );
            }
        }
    }
}

fn protocol_name(p: ListenerProtocol) -> &'static str {
    match p {
        ListenerProtocol::Http => "HTTP",
        ListenerProtocol::Https => "HTTPS",
        ListenerProtocol::Tcp => "TCP",
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::table;
    use serde_json::{Value, json};

    fn check(cases: &[(Value, &[&str])]) {
        table("portolan.dev/v1alpha1", "Gateway", cases);
    }

    #[test]
    fn gateway_table() {
        check(&[
            (
                json!({"selector": {"cluster": "ingress"}, "listeners": [
                    {"name": "http", "port": 8080, "protocol": "HTTP", "hostnames": ["*.example.com"]},
                    {"name": "http-api", "port": 8080, "protocol": "HTTP", "hostnames": ["api.example.org"]},
                    {"name": "https", "port": 8443, "protocol": "HTTPS", "tls": {"secretRef": {"name": "cert"}}}
                ]}),
                &[],
            ),
            (
                json!({"selector": {"cluster": ""}, "listeners": [
                    {"name": "http", "port": 8080, "protocol": "HTTP", "tls": {"secretRef": {"name": "c"}}},
                    {"name": "http", "port": 8080, "protocol": "TCP"},
                    {"name": "Web", "port": 0, "protocol": "HTTPS", "hostnames": ["a..b"]}
                ]}),
                &[
                    "spec.selector: needs a cluster (the Envoy node cluster of the proxies that run this gateway), metadata labels, or both",
                    "spec.listeners[0].tls: only allowed for protocol HTTPS",
                    "spec.listeners[2].name: \"Web\" is not a valid listener name: a DNS label (lower-case letters, digits and '-', 1-63 characters)",
                    "spec.listeners[2].port: 0 is not a port: must be 1-65535",
                    "spec.listeners[2].hostnames[0]: \"a..b\" is not a host name: must be a lower-case DNS name, optionally starting with \"*.\"",
                    "spec.listeners[2].tls: required for protocol HTTPS",
                    "spec.listeners[1].name: duplicate listener name \"http\"",
                    "spec.listeners[1].protocol: port 8080 is already used by listener \"http\" with protocol HTTP: listeners sharing a port must have the same protocol",
                    "spec.listeners[1]: port 8080 and hostname \"*\" are already used by listener \"http\"",
                ],
            ),
            (
                json!({"selector": {"cluster": "x"}, "listeners": []}),
                &["spec.listeners: at least one listener is required"],
            ),
        ]);
    }
}

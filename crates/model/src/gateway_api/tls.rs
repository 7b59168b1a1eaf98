//! What TLS needs: the certificates of HTTPS listeners (`certificateRefs` to
//! `kubernetes.io/tls` Secrets, in another namespace only with a ReferenceGrant there), and
//! TLSRoutes for passthrough listeners (weighted Service backends per SNI hostname).

use super::rules::{self, RouteRefs};
use crate::gateway::TlsSecret;
use crate::routing::Backend;
use portolan_api::gwapi::{Listener, ObjectReference, TlsRouteRule};
use portolan_api::{Kind, ObjectRef};
use std::sync::Arc;

/// A listener's `ResolvedRefs=False` reason and message.
pub(super) type RefError = (&'static str, String);

/// The certificates an HTTPS listener presents, or why its certificateRefs do not resolve
/// (`InvalidCertificateRef`: none given, not a core Secret, missing or not a valid
/// `kubernetes.io/tls` Secret; `RefNotPermitted`: another namespace without a grant, whether
/// or not the Secret exists).
pub(super) fn certificates(
    listener: &Listener,
    from: &str,
    gw_namespace: &str,
    refs: &RouteRefs<'_>,
) -> Result<Vec<Arc<TlsSecret>>, RefError> {
    let certificate_refs = listener
        .tls
        .as_ref()
        .map(|t| t.certificate_refs.as_slice())
        .unwrap_or_default();
    if certificate_refs.is_empty() {
        return Err((
            "InvalidCertificateRef",
            "an HTTPS listener needs tls.certificateRefs".to_string(),
        ));
    }
    certificate_refs
        .iter()
        .enumerate()
        .map(|(i, r)| certificate(r, from, gw_namespace, refs).map_err(|(why, m)| (why, at(i, m))))
        .collect()
}

fn at(i: usize, message: String) -> String {
    format!("tls.certificateRefs[{i}]: {message}")
}

fn certificate(
    r: &ObjectReference,
    from: &str,
    gw_namespace: &str,
    refs: &RouteRefs<'_>,
) -> Result<Arc<TlsSecret>, RefError> {
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Secret");
    if !group.is_empty() || kind != "Secret" {
        return Err((
            "InvalidCertificateRef",
            format!("{group}/{kind} is not supported: a core Secret is required"),
        ));
    }
    let namespace = r.namespace.as_deref().unwrap_or(gw_namespace);
    if !refs.permits(from, gw_namespace, "Secret", namespace, &r.name) {
        return Err((
            "RefNotPermitted",
            format!(
                "Secret {namespace}/{} is in another namespace and no ReferenceGrant there allows it",
                r.name
            ),
        ));
    }
    let key = ObjectRef::new(Kind::Secret, namespace, &r.name);
    refs.world.secrets.get(&key).cloned().ok_or_else(|| {
        (
            "InvalidCertificateRef",
            format!(
                "Secret {namespace}/{} does not exist or is not a valid kubernetes.io/tls Secret",
                r.name
            ),
        )
    })
}

/// A TLSRoute or TCPRoute, converted: its backends (every rule's, weighted), its precedence among routes
/// for the same hostname (oldest, then namespace/name) and why a backendRef did not resolve.
#[derive(Clone, Debug)]
pub(super) struct Converted {
    pub backends: Vec<Backend>,
    pub key: PassthroughKey,
    pub unresolved: Option<RefError>,
}

/// Sort key of a passthrough route: smaller wins a hostname.
pub(super) type PassthroughKey = (
    std::cmp::Reverse<Option<std::cmp::Reverse<String>>>,
    String,
    String,
);

/// Converts the rules of a TLSRoute or TCPRoute (`created`: its creationTimestamp).
pub(super) fn convert(
    source: &ObjectRef,
    created: Option<String>,
    rules: &[TlsRouteRule],
    refs: &RouteRefs<'_>,
) -> Converted {
    let mut unresolved = None;
    let mut backends = Vec::new();
    for (ri, rule) in rules.iter().enumerate() {
        for (i, b) in rule.backend_refs.iter().enumerate() {
            let weight = u32::try_from(b.weight.unwrap_or(1)).unwrap_or_default();
            let reference = ObjectReference {
                group: b.group.clone(),
                kind: b.kind.clone(),
                name: b.name.clone(),
                namespace: b.namespace.clone(),
                port: b.port,
            };
            let destination = match rules::backend(source, &reference, refs) {
                Ok(d) => d,
                Err((reason, message)) => {
                    unresolved.get_or_insert((
                        reason,
                        format!("spec.rules[{ri}].backendRefs[{i}]: {message}"),
                    ));
                    rules::invalid_destination()
                }
            };
            if weight > 0 {
                backends.push(Backend {
                    destination,
                    weight,
                    headers: Default::default(),
                });
            }
        }
    }
    Converted {
        backends,
        key: (
            std::cmp::Reverse(created.map(std::cmp::Reverse)),
            source.namespace.clone(),
            source.name.clone(),
        ),
        unresolved,
    }
}

/// Why a UDPRoute's backendRef names no UDP port of its Service (checked once the refs
/// resolved): `BackendNotFound` when the Service has no port of that number (or, without a
/// number, not exactly one UDP port), `UnsupportedProtocol` when the port is not UDP.
pub(super) fn udp_port_error(
    source: &ObjectRef,
    rules: &[TlsRouteRule],
    world: &crate::world::World,
) -> Option<RefError> {
    for (ri, rule) in rules.iter().enumerate() {
        for (i, b) in rule.backend_refs.iter().enumerate() {
            let namespace = b.namespace.as_deref().unwrap_or(&source.namespace);
            let key = crate::types::ServiceKey::new(namespace, &b.name);
            let Some(service) = world.services.get(&key) else {
                continue;
            };
            let at = |m: String| format!("spec.rules[{ri}].backendRefs[{i}]: {m}");
            let udp = |p: &&crate::types::ServicePort| p.protocol == crate::types::Protocol::Udp;
            let Some(number) = b.port.and_then(|p| u16::try_from(p).ok()) else {
                if service.ports.iter().filter(udp).count() != 1 {
                    return Some((
                        "BackendNotFound",
                        at(format!(
                            "Service {key} has not exactly one UDP port: name a port"
                        )),
                    ));
                }
                continue;
            };
            let same: Vec<_> = service.ports.iter().filter(|p| p.port == number).collect();
            if same.is_empty() {
                return Some((
                    "BackendNotFound",
                    at(format!("Service {key} has no port {number}")),
                ));
            }
            if !same.iter().any(udp) {
                return Some((
                    "UnsupportedProtocol",
                    at(format!("port {number} of Service {key} is not a UDP port")),
                ));
            }
        }
    }
    None
}

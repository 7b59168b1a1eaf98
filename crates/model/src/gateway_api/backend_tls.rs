//! BackendTLSPolicy: how the proxies of Portolan's Gateways originate TLS to the Service
//! ports a policy targets, and the status each policy gets.
//!
//! * Targets are core Services in the policy's namespace, optionally one port by name
//!   (`sectionName`). Attachment and conflicts are [`crate::policy_attach`]'s: two policies on
//!   the same Service (or the same Service port) conflict, the oldest wins, then the first by
//!   name; the loser is `Accepted=False` reason `Conflicted`. A port-specific policy wins over
//!   a whole-Service one for its port without conflict.
//! * Trust: `caCertificateRefs` (ConfigMaps in the policy's namespace, key `ca.crt`; the
//!   valid ones are joined into one bundle) or `wellKnownCACertificates: System` (the proxy's
//!   system trust store, [`SYSTEM_CA_BUNDLE`]). A reference of another kind is `ResolvedRefs=False`
//!   `InvalidKind`; a ConfigMap that does not exist or holds no `ca.crt` is
//!   `InvalidCACertificateRef`. When no reference is valid the policy is also
//!   `Accepted=False` `NoValidCACertificate`, and requests routed to its Service ports get
//!   HTTP 500 (their backend is treated as invalid), as the spec requires a 5xx.
//! * Verification: the SNI is `validation.hostname`; the certificate must carry
//!   `subjectAltNames` (DNS or URI, any one of them) when given, else `hostname` as a DNS SAN.
//! * Status: one `ancestors[]` entry (`controllerName: portolan.dev/gateway-controller`) per
//!   Portolan Gateway that has an HTTPRoute or GRPCRoute accepted on it with a backendRef to a
//!   targeted Service (to the port `sectionName` names, when it names one), carrying
//!   `Accepted` and `ResolvedRefs`. A policy no such route uses has
//!   no status (there is no ancestor to report against).

use super::status::{ApiCondition, ApiStatus, PolicyAncestorStatus, PolicyStatus};
use crate::policy_attach::{self, AncestorOutcome, PolicyMeta, Reach, Resolution};
use crate::types::ServiceKey;
use crate::world::World;
use portolan_api::crd::policy_target::{AncestorRef, PolicyTargetRef};
use portolan_api::gwapi::{BackendTlsPolicy, CA_CERT_KEY, CONTROLLER_NAME, GROUP};
use portolan_api::{Kind, ObjectRef, Resource};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Where stock Envoy images keep the system trust store (Debian/Ubuntu's bundle), used for
/// `wellKnownCACertificates: System`.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// TLS towards one Service port, as the policy in force there asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendTls {
    /// The BackendTLSPolicy it comes from.
    pub policy: ObjectRef,
    pub sni: String,
    pub trust: Trust,
    /// The certificate must carry one of these.
    pub subject_alt_names: Vec<San>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// A PEM bundle (the `ca.crt` of the referenced ConfigMaps).
    Bundle(String),
    /// The proxy's system trust store ([`SYSTEM_CA_BUNDLE`]).
    System,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Uri(String),
}

/// Per Service, the TLS of each of its ports a policy covers.
pub type BackendTlsMap = BTreeMap<ServiceKey, BTreeMap<u16, Arc<BackendTls>>>;

/// The policies of a World, resolved.
#[derive(Debug, Default)]
pub(super) struct Resolved {
    /// What the proxies originate, per Service port.
    pub tls: BackendTlsMap,
    /// Service ports whose policy in force has no valid CA: requests to them fail (500).
    pub refused: BTreeSet<(ServiceKey, u16)>,
    policies: Vec<Policy>,
    attach: Resolution,
}

/// One policy and what its references resolved to.
#[derive(Debug)]
struct Policy {
    source: ObjectRef,
    generation: i64,
    /// `None`: no valid CA (`NoValidCACertificate`).
    tls: Option<Arc<BackendTls>>,
    /// `ResolvedRefs=False`: (reason, message) of the first invalid reference.
    unresolved: Option<(&'static str, String)>,
    ignored_options: Vec<String>,
}

/// Resolves every BackendTLSPolicy of `world` (before routes are compiled: a route to a
/// refused port answers 500).
pub(super) fn resolve(world: &World) -> Resolved {
    let mut policies = Vec::new();
    let mut metas = Vec::new();
    for (source, resource) in &world.gateway_api {
        let Resource::BackendTlsPolicy(p) = &**resource else {
            continue;
        };
        metas.push(meta(source, resource, p));
        policies.push(policy(world, source, resource.generation(), p));
    }
    let mut attach = policy_attach::resolve(world, &metas);
    only_services(&mut attach);
    let mut out = Resolved {
        policies,
        attach,
        ..Resolved::default()
    };
    effective(world, &mut out);
    out
}

fn meta(source: &ObjectRef, resource: &Resource, p: &BackendTlsPolicy) -> PolicyMeta {
    PolicyMeta {
        source: source.clone(),
        generation: resource.generation(),
        created: p
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
        targets: p
            .spec
            .target_refs
            .iter()
            .map(|t| PolicyTargetRef {
                group: t.group.clone(),
                kind: t.kind.clone(),
                name: t.name.clone(),
                section_name: t.section_name.clone().filter(|s| !s.is_empty()),
            })
            .collect(),
    }
}

/// A target that is not a core Service (a Gateway, a route) is refused: the policy is about
/// connections to backends.
fn only_services(attach: &mut Resolution) {
    for outcomes in attach.statuses.values_mut() {
        for o in outcomes.iter_mut() {
            if matches!(o.reach, None | Some(Reach::Service { .. })) {
                continue;
            }
            if let Some(reach) = o.reach.take() {
                attach.winners.remove(&reach);
            }
            o.condition.status = false;
            o.condition.reason = "TargetNotFound".to_string();
            o.condition.message = format!(
                "{}: a BackendTLSPolicy targets core Services only",
                o.target
            );
        }
    }
}

/// The policy's trust, SNI and names, and what did not resolve.
fn policy(world: &World, source: &ObjectRef, generation: i64, p: &BackendTlsPolicy) -> Policy {
    let v = &p.spec.validation;
    let mut unresolved = None;
    let trust = if v.ca_certificate_refs.is_empty() {
        Some(Trust::System)
    } else {
        let mut bundle = String::new();
        for (i, r) in v.ca_certificate_refs.iter().enumerate() {
            match ca_bundle(world, &source.namespace, r) {
                Ok(pem) => {
                    bundle.push_str(pem.trim_end());
                    bundle.push('\n');
                }
                Err((reason, why)) => {
                    let at = format!("spec.validation.caCertificateRefs[{i}]");
                    unresolved.get_or_insert((reason, format!("{at}: {why}")));
                }
            }
        }
        (!bundle.is_empty()).then_some(Trust::Bundle(bundle))
    };
    let subject_alt_names = if v.subject_alt_names.is_empty() {
        vec![San::Dns(v.hostname.clone())]
    } else {
        v.subject_alt_names
            .iter()
            .filter_map(|s| match s.type_.as_str() {
                "Hostname" => s.hostname.clone().map(San::Dns),
                "URI" => s.uri.clone().map(San::Uri),
                _ => None,
            })
            .collect()
    };
    let tls = trust.map(|trust| {
        Arc::new(BackendTls {
            policy: source.clone(),
            sni: v.hostname.clone(),
            trust,
            subject_alt_names,
        })
    });
    Policy {
        source: source.clone(),
        generation,
        tls,
        unresolved,
        ignored_options: p.spec.options.keys().cloned().collect(),
    }
}

/// The `ca.crt` of a referenced ConfigMap, or the `ResolvedRefs` reason and why not.
fn ca_bundle<'w>(
    world: &'w World,
    namespace: &str,
    r: &portolan_api::gwapi::LocalObjectReference,
) -> Result<&'w str, (&'static str, String)> {
    if !r.group.is_empty() || r.kind != "ConfigMap" {
        let group = if r.group.is_empty() { "core" } else { &r.group };
        return Err((
            "InvalidKind",
            format!(
                "{}.{group} {:?} is not a supported CA reference (a core ConfigMap)",
                r.kind, r.name
            ),
        ));
    }
    let key = ObjectRef::new(Kind::ConfigMap, namespace, &r.name);
    let data = match world.gateway_api.get(&key).map(AsRef::as_ref) {
        Some(Resource::ConfigMap(c)) => c.data.as_ref(),
        _ => None,
    };
    data.and_then(|d| d.get(CA_CERT_KEY))
        .map(String::as_str)
        .ok_or_else(|| {
            (
                "InvalidCACertificateRef",
                format!(
                    "ConfigMap {namespace}/{} does not exist or has no valid {CA_CERT_KEY}",
                    r.name
                ),
            )
        })
}

/// The policy in force on each port of each targeted Service: the port's own, else the
/// Service's.
fn effective(world: &World, out: &mut Resolved) {
    let by_source: BTreeMap<&ObjectRef, &Policy> =
        out.policies.iter().map(|p| (&p.source, p)).collect();
    let services: BTreeSet<&ServiceKey> = out
        .attach
        .winners
        .keys()
        .filter_map(|r| match r {
            Reach::Service { service, .. } => Some(service),
            _ => None,
        })
        .collect();
    for key in services {
        let Some(svc) = world.services.get(key) else {
            continue;
        };
        for port in &svc.ports {
            let candidates = [
                Reach::Service {
                    service: key.clone(),
                    port: Some(port.name.clone()),
                },
                Reach::Service {
                    service: key.clone(),
                    port: None,
                },
            ];
            let Some(policy) = out
                .attach
                .effective(&candidates)
                .and_then(|p| by_source.get(p))
            else {
                continue;
            };
            match &policy.tls {
                Some(tls) => {
                    let ports = out.tls.entry(key.clone()).or_default();
                    ports.insert(port.port, tls.clone());
                }
                None => {
                    out.refused.insert((key.clone(), port.port));
                }
            }
        }
    }
}

/// The status of every policy some Portolan Gateway's route uses (see the module doc).
/// `statuses` holds the routes' statuses already.
pub(super) fn statuses(
    world: &World,
    resolved: &Resolved,
    statuses: &mut BTreeMap<ObjectRef, ApiStatus>,
) {
    if resolved.policies.is_empty() {
        return;
    }
    let used = gateways_by_service(world, statuses);
    for policy in &resolved.policies {
        let outcomes = resolved
            .attach
            .statuses
            .get(&policy.source)
            .map(Vec::as_slice)
            .unwrap_or_default();
        // Per Gateway, the outcomes of the targets through which it uses the policy.
        let mut per_gateway: BTreeMap<&ObjectRef, Vec<&AncestorOutcome>> = BTreeMap::new();
        for o in outcomes {
            let key = ServiceKey::new(&policy.source.namespace, &o.target.name);
            let section = o.target.section_name.as_deref();
            let port = section.and_then(|s| port_named(world, &key, s));
            let by_port = used.get(&key).into_iter().flatten();
            let reached = by_port.filter(|(p, _)| port.is_none() || **p == port);
            for gw in reached.flat_map(|(_, gws)| gws) {
                per_gateway.entry(gw).or_default().push(o);
            }
        }
        let ancestors: Vec<PolicyAncestorStatus> = per_gateway
            .into_iter()
            .map(|(gw, outcomes)| ancestor(policy, gw, &outcomes))
            .collect();
        if !ancestors.is_empty() {
            statuses.insert(
                policy.source.clone(),
                ApiStatus::Policy(PolicyStatus { ancestors }),
            );
        }
    }
}

/// The number of the port named `name` of a Service (`None`: no such Service or port, then
/// every port counts).
fn port_named(world: &World, key: &ServiceKey, name: &str) -> Option<u16> {
    let svc = world.services.get(key)?;
    svc.ports.iter().find(|p| p.name == name).map(|p| p.port)
}

/// Per Service and backendRef port: the Portolan Gateways on which an HTTPRoute or GRPCRoute
/// with such a backendRef is accepted.
type UsedBy = BTreeMap<ServiceKey, BTreeMap<Option<u16>, BTreeSet<ObjectRef>>>;

fn gateways_by_service(world: &World, statuses: &BTreeMap<ObjectRef, ApiStatus>) -> UsedBy {
    let mut out = UsedBy::new();
    for (source, resource) in &world.gateway_api {
        let refs: Vec<BackendKey<'_>> = match &**resource {
            Resource::HttpRoute(r) => r
                .spec
                .rules
                .iter()
                .flat_map(|rule| &rule.backend_refs)
                .map(|b| backend_key(b))
                .collect(),
            Resource::GrpcRoute(r) => r
                .spec
                .rules
                .iter()
                .flat_map(|rule| &rule.backend_refs)
                .map(|b| backend_key(b))
                .collect(),
            _ => continue,
        };
        let Some(ApiStatus::Route(route)) = statuses.get(source) else {
            continue;
        };
        let gateways: Vec<ObjectRef> = route
            .parents
            .iter()
            .filter(|p| {
                p.conditions
                    .iter()
                    .any(|c| c.type_ == "Accepted" && c.status == "True")
            })
            .map(|p| {
                let ns = p
                    .parent_ref
                    .namespace
                    .as_deref()
                    .unwrap_or(&source.namespace);
                ObjectRef::new(Kind::ApiGateway, ns, &p.parent_ref.name)
            })
            .collect();
        for (group, kind, name, namespace, port) in refs {
            if !group.is_empty() || kind != "Service" {
                continue;
            }
            let key = ServiceKey::new(namespace.unwrap_or(&source.namespace), name);
            let port = port.and_then(|p| u16::try_from(p).ok());
            let at = out.entry(key).or_default().entry(port).or_default();
            at.extend(gateways.iter().cloned());
        }
    }
    out
}

/// A backendRef's group, kind, name, namespace and port.
type BackendKey<'r> = (&'r str, &'r str, &'r str, Option<&'r str>, Option<i32>);

fn backend_key(b: &portolan_api::gwapi::HttpBackendRef) -> BackendKey<'_> {
    (
        b.group.as_deref().unwrap_or(""),
        b.kind.as_deref().unwrap_or("Service"),
        &b.name,
        b.namespace.as_deref(),
        b.port,
    )
}

/// The entry for one Gateway: `Accepted` from the targets it is reached through (accepted
/// when one of them is, and the trust is valid), and `ResolvedRefs`.
fn ancestor(
    policy: &Policy,
    gw: &ObjectRef,
    outcomes: &[&AncestorOutcome],
) -> PolicyAncestorStatus {
    let g = policy.generation;
    let attached = outcomes.iter().find(|o| o.condition.status);
    let accepted = match (attached, &policy.tls) {
        (Some(_), None) => ApiCondition::new(
            "Accepted",
            false,
            "NoValidCACertificate",
            "no caCertificateRef is valid: connections to the targeted Services fail (HTTP 500)",
            g,
        ),
        (Some(o), Some(_)) => {
            let mut message = o.condition.message.clone();
            if !policy.ignored_options.is_empty() {
                message.push_str(&format!(
                    "; options ignored (Portolan supports none): {}",
                    policy.ignored_options.join(", ")
                ));
            }
            ApiCondition::new("Accepted", true, "Accepted", message, g)
        }
        (None, _) => {
            let first = outcomes.first().map(|o| &o.condition);
            ApiCondition::new(
                "Accepted",
                false,
                first.map_or("TargetNotFound", |c| c.reason.as_str()),
                first.map(|c| c.message.clone()).unwrap_or_default(),
                g,
            )
        }
    };
    let resolved = match &policy.unresolved {
        None => ApiCondition::new(
            "ResolvedRefs",
            true,
            "ResolvedRefs",
            "every caCertificateRef resolved",
            g,
        ),
        Some((reason, message)) => {
            ApiCondition::new("ResolvedRefs", false, reason, message.clone(), g)
        }
    };
    PolicyAncestorStatus {
        ancestor_ref: AncestorRef {
            group: GROUP.to_string(),
            kind: "Gateway".to_string(),
            namespace: Some(gw.namespace.clone()),
            name: gw.name.clone(),
            section_name: None,
        },
        controller_name: CONTROLLER_NAME.to_string(),
        conditions: vec![accepted, resolved],
    }
}

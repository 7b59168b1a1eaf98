//! Frontend client certificate validation (Gateway `spec.tls.frontend`, GEP-91): which CA
//! bundle and mode each HTTPS listener verifies client certificates with, or why it cannot.
//!
//! A listener on a port with a `perPort` entry uses that entry; the others use `default`. The
//! CA references are core ConfigMaps with the PEM bundle under `ca.crt` (another namespace
//! only with a ReferenceGrant there, from `Gateway` to `ConfigMap`). A reference of another
//! kind is `InvalidCACertificateKind`, one not permitted `RefNotPermitted`, a ConfigMap that
//! does not exist or has no `ca.crt` `InvalidCACertificateRef`; the listener is served with
//! the references that resolve, and when none does it is `Accepted=False`
//! `NoValidCACertificate` and not served.

use super::ClientValidation;
use super::rules::RouteRefs;
use super::tls::RefError;
use portolan_api::gwapi::{CA_CERT_KEY, FrontendTlsValidation, Gateway, ObjectReference};
use portolan_api::{Kind, ObjectRef, Resource};
use std::sync::Arc;

/// The mode that lets a missing or unverified client certificate through.
const INSECURE_FALLBACK: &str = "AllowInsecureFallback";

/// What an HTTPS listener's frontend validation resolved to.
#[derive(Clone, Debug, Default)]
pub(super) struct Frontend {
    /// Whether validation is configured for the listener's port.
    pub(super) configured: bool,
    /// The CAs and mode in force (`None`: not configured, or no reference resolved).
    pub(super) validation: Option<Arc<ClientValidation>>,
    /// The first reference that did not resolve (`ResolvedRefs=False`).
    pub(super) error: Option<RefError>,
}

impl Frontend {
    /// Whether the listener can be served: validation is off, or some CA resolved.
    pub(super) fn usable(&self) -> bool {
        !self.configured || self.validation.is_some()
    }
}

/// The validation configured for HTTPS listeners on `port`, and the field path it is at.
fn configured(gw: &Gateway, port: i32) -> Option<(&FrontendTlsValidation, String)> {
    let frontend = gw.spec.tls.as_ref()?.frontend.as_ref()?;
    match frontend.per_port.iter().position(|p| p.port == port) {
        Some(i) => frontend.per_port[i]
            .tls
            .validation
            .as_ref()
            .map(|v| (v, format!("spec.tls.frontend.perPort[{i}].tls.validation"))),
        None => frontend
            .default
            .validation
            .as_ref()
            .map(|v| (v, "spec.tls.frontend.default.validation".to_string())),
    }
}

/// Resolves the frontend validation of the HTTPS listener on `port` of Gateway `source`.
pub(super) fn resolve(
    source: &ObjectRef,
    gw: &Gateway,
    port: i32,
    refs: &RouteRefs<'_>,
) -> Frontend {
    let Some((validation, path)) = configured(gw, port) else {
        return Frontend::default();
    };
    let mut error = None;
    let mut bundle = String::new();
    let mut sources = Vec::new();
    for (i, r) in validation.ca_certificate_refs.iter().enumerate() {
        match ca_bundle(r, &source.namespace, refs) {
            Ok((from, pem)) => {
                if !bundle.is_empty() && !bundle.ends_with('\n') {
                    bundle.push('\n');
                }
                bundle.push_str(pem);
                sources.push(from);
            }
            Err((reason, why)) => {
                error.get_or_insert((reason, format!("{path}.caCertificateRefs[{i}]: {why}")));
            }
        }
    }
    if validation.ca_certificate_refs.is_empty() {
        error = Some((
            "InvalidCACertificateRef",
            format!("{path}.caCertificateRefs: no CA certificate reference"),
        ));
    }
    let validation = (!sources.is_empty()).then(|| {
        Arc::new(ClientValidation {
            name: format!("{}/{}/{port}", source.namespace, source.name),
            ca_bundle: bundle,
            sources,
            insecure_fallback: validation.mode.as_deref() == Some(INSECURE_FALLBACK),
        })
    });
    Frontend {
        configured: true,
        validation,
        error,
    }
}

/// The `ca.crt` of a CA reference and the ConfigMap it is in, or why not.
fn ca_bundle<'w>(
    r: &ObjectReference,
    gw_namespace: &str,
    refs: &RouteRefs<'w>,
) -> Result<(ObjectRef, &'w str), RefError> {
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("ConfigMap");
    if !(group.is_empty() || group == "core") || kind != "ConfigMap" {
        let group = if group.is_empty() { "core" } else { group };
        return Err((
            "InvalidCACertificateKind",
            format!(
                "{kind}.{group} {:?} is not a supported CA reference (a core ConfigMap)",
                r.name
            ),
        ));
    }
    let namespace = r.namespace.as_deref().unwrap_or(gw_namespace);
    if !refs.permits("Gateway", gw_namespace, "ConfigMap", namespace, &r.name) {
        return Err((
            "RefNotPermitted",
            format!(
                "ConfigMap {namespace}/{} is in another namespace and no ReferenceGrant there allows it",
                r.name
            ),
        ));
    }
    let key = ObjectRef::new(Kind::ConfigMap, namespace, &r.name);
    let pem = match refs.world.gateway_api.get(&key).map(AsRef::as_ref) {
        Some(Resource::ConfigMap(c)) => c
            .data
            .as_ref()
            .and_then(|d| d.get(CA_CERT_KEY))
            .map(String::as_str),
        _ => None,
    };
    pem.filter(|p| !p.trim().is_empty())
        .map(|p| (key, p))
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

/// Whether any validation of the Gateway (default or per port) is in mode
/// `AllowInsecureFallback`: the Gateway then says so (`InsecureFrontendValidationMode`).
pub(super) fn insecure_fallback(gw: &Gateway) -> bool {
    let Some(frontend) = gw.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
        return false;
    };
    std::iter::once(&frontend.default)
        .chain(frontend.per_port.iter().map(|p| &p.tls))
        .filter_map(|t| t.validation.as_ref())
        .any(|v| v.mode.as_deref() == Some(INSECURE_FALLBACK))
}

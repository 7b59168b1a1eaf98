//! Decoding one manifest document (already parsed to JSON) into a typed [`Resource`].
//!
//! Decoding is strict about types and names every failure by field path; it is the first
//! half of validation, [`crate::validate`] is the second.

use crate::crd::{
    AccessPolicy, EnvoyPatchPolicy, ExtAuthPolicy, ExternalService, Gateway, PeerAuthentication,
    ProxyScope, RateLimitPolicy, RequestAuthentication, TrafficPolicy, TrafficRoute,
};
use crate::field::{FieldError, FieldPath};
use crate::gwapi;
use crate::object::{Kind, ObjectRef};
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// An object Portolan reads, decoded but not yet validated.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    Endpoints(Box<Endpoints>),
    TrafficRoute(Box<TrafficRoute>),
    TrafficPolicy(Box<TrafficPolicy>),
    Gateway(Box<Gateway>),
    ExternalService(Box<ExternalService>),
    PeerAuthentication(Box<PeerAuthentication>),
    AccessPolicy(Box<AccessPolicy>),
    ProxyScope(Box<ProxyScope>),
    ExtAuthPolicy(Box<ExtAuthPolicy>),
    RateLimitPolicy(Box<RateLimitPolicy>),
    EnvoyPatchPolicy(Box<EnvoyPatchPolicy>),
    RequestAuthentication(Box<RequestAuthentication>),
    /// A Secret of type `kubernetes.io/tls` (other Secrets are not read).
    Secret(Box<Secret>),
    Namespace(Box<Namespace>),
    GatewayClass(Box<gwapi::GatewayClass>),
    ApiGateway(Box<gwapi::Gateway>),
    HttpRoute(Box<gwapi::HttpRoute>),
    ReferenceGrant(Box<gwapi::ReferenceGrant>),
    GrpcRoute(Box<gwapi::GrpcRoute>),
    TlsRoute(Box<gwapi::TlsRoute>),
    TcpRoute(Box<gwapi::TcpRoute>),
    UdpRoute(Box<gwapi::UdpRoute>),
    BackendTlsPolicy(Box<gwapi::BackendTlsPolicy>),
    ListenerSet(Box<gwapi::ListenerSet>),
    /// A ConfigMap with a `ca.crt` key (other ConfigMaps are not read).
    ConfigMap(Box<ConfigMap>),
    /// A ServiceAccount: a mesh identity that exists.
    ServiceAccount(Box<ServiceAccount>),
}

/// The only Secret type Portolan reads.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// Why a document could not be decoded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("document is not a mapping")]
    NotAnObject,
    #[error("{0}: required field is missing or not a string")]
    MissingField(FieldPath),
    #[error("{object}: {error}")]
    Invalid {
        object: ObjectRef,
        error: FieldError,
    },
}

// === impl Resource ===

impl Resource {
    /// Decodes a document. `Ok(None)` for a well-formed object of a kind Portolan does not read
    /// (a Deployment next to its Service, say): such documents are skipped, not rejected.
    pub fn decode(value: Value) -> Result<Option<Resource>, DecodeError> {
        let Value::Object(map) = &value else {
            return Err(DecodeError::NotAnObject);
        };
        let api_version = str_field(map, "apiVersion")?;
        let kind_name = str_field(map, "kind")?;
        let Some(kind) = Kind::all()
            .iter()
            .copied()
            .find(|k| k.as_str() == kind_name && k.accepts(api_version))
        else {
            return Ok(None);
        };
        if kind == Kind::Secret && map.get("type").and_then(Value::as_str) != Some(TLS_SECRET_TYPE)
        {
            return Ok(None);
        }
        if kind == Kind::ConfigMap && !holds_ca(&value) {
            return Ok(None);
        }
        let object = object_ref(kind, &value)?;
        let resource = match kind {
            Kind::Service => Resource::Service(Box::new(typed(&object, value)?)),
            Kind::EndpointSlice => Resource::EndpointSlice(Box::new(typed(&object, value)?)),
            Kind::Endpoints => Resource::Endpoints(Box::new(typed(&object, value)?)),
            Kind::TrafficRoute => Resource::TrafficRoute(Box::new(typed(&object, value)?)),
            Kind::TrafficPolicy => Resource::TrafficPolicy(Box::new(typed(&object, value)?)),
            Kind::Gateway => Resource::Gateway(Box::new(typed(&object, value)?)),
            Kind::ExternalService => Resource::ExternalService(Box::new(typed(&object, value)?)),
            Kind::PeerAuthentication => {
                Resource::PeerAuthentication(Box::new(typed(&object, value)?))
            }
            Kind::AccessPolicy => Resource::AccessPolicy(Box::new(typed(&object, value)?)),
            Kind::ProxyScope => Resource::ProxyScope(Box::new(typed(&object, value)?)),
            Kind::ExtAuthPolicy => Resource::ExtAuthPolicy(Box::new(typed(&object, value)?)),
            Kind::RateLimitPolicy => Resource::RateLimitPolicy(Box::new(typed(&object, value)?)),
            Kind::EnvoyPatchPolicy => Resource::EnvoyPatchPolicy(Box::new(typed(&object, value)?)),
            Kind::RequestAuthentication => {
                Resource::RequestAuthentication(Box::new(typed(&object, value)?))
            }
            Kind::Secret => Resource::Secret(Box::new(typed(&object, value)?)),
            Kind::Namespace => Resource::Namespace(Box::new(typed(&object, value)?)),
            Kind::GatewayClass => Resource::GatewayClass(Box::new(typed(&object, value)?)),
            Kind::ApiGateway => Resource::ApiGateway(Box::new(typed(&object, value)?)),
            Kind::HttpRoute => Resource::HttpRoute(Box::new(typed(&object, value)?)),
            Kind::ReferenceGrant => Resource::ReferenceGrant(Box::new(typed(&object, value)?)),
            Kind::GrpcRoute => Resource::GrpcRoute(Box::new(typed(&object, value)?)),
            Kind::TlsRoute => Resource::TlsRoute(Box::new(typed(&object, value)?)),
            Kind::TcpRoute => Resource::TcpRoute(Box::new(typed(&object, value)?)),
            Kind::UdpRoute => Resource::UdpRoute(Box::new(typed(&object, value)?)),
            Kind::BackendTlsPolicy => Resource::BackendTlsPolicy(Box::new(typed(&object, value)?)),
            Kind::ListenerSet => Resource::ListenerSet(Box::new(typed(&object, value)?)),
            Kind::ConfigMap => Resource::ConfigMap(Box::new(typed(&object, value)?)),
            Kind::ServiceAccount => Resource::ServiceAccount(Box::new(typed(&object, value)?)),
        };
        Ok(Some(resource))
    }

    pub fn kind(&self) -> Kind {
        match self {
            Resource::Service(_) => Kind::Service,
            Resource::EndpointSlice(_) => Kind::EndpointSlice,
            Resource::Endpoints(_) => Kind::Endpoints,
            Resource::TrafficRoute(_) => Kind::TrafficRoute,
            Resource::TrafficPolicy(_) => Kind::TrafficPolicy,
            Resource::Gateway(_) => Kind::Gateway,
            Resource::ExternalService(_) => Kind::ExternalService,
            Resource::PeerAuthentication(_) => Kind::PeerAuthentication,
            Resource::AccessPolicy(_) => Kind::AccessPolicy,
            Resource::ProxyScope(_) => Kind::ProxyScope,
            Resource::ExtAuthPolicy(_) => Kind::ExtAuthPolicy,
            Resource::RateLimitPolicy(_) => Kind::RateLimitPolicy,
            Resource::EnvoyPatchPolicy(_) => Kind::EnvoyPatchPolicy,
            Resource::RequestAuthentication(_) => Kind::RequestAuthentication,
            Resource::Secret(_) => Kind::Secret,
            Resource::Namespace(_) => Kind::Namespace,
            Resource::GatewayClass(_) => Kind::GatewayClass,
            Resource::ApiGateway(_) => Kind::ApiGateway,
            Resource::HttpRoute(_) => Kind::HttpRoute,
            Resource::ReferenceGrant(_) => Kind::ReferenceGrant,
            Resource::GrpcRoute(_) => Kind::GrpcRoute,
            Resource::TlsRoute(_) => Kind::TlsRoute,
            Resource::TcpRoute(_) => Kind::TcpRoute,
            Resource::UdpRoute(_) => Kind::UdpRoute,
            Resource::BackendTlsPolicy(_) => Kind::BackendTlsPolicy,
            Resource::ListenerSet(_) => Kind::ListenerSet,
            Resource::ConfigMap(_) => Kind::ConfigMap,
            Resource::ServiceAccount(_) => Kind::ServiceAccount,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Resource::Service(s) => &s.metadata,
            Resource::EndpointSlice(s) => &s.metadata,
            Resource::Endpoints(s) => &s.metadata,
            Resource::TrafficRoute(r) => &r.metadata,
            Resource::TrafficPolicy(p) => &p.metadata,
            Resource::Gateway(g) => &g.metadata,
            Resource::ExternalService(e) => &e.metadata,
            Resource::PeerAuthentication(p) => &p.metadata,
            Resource::AccessPolicy(p) => &p.metadata,
            Resource::ProxyScope(p) => &p.metadata,
            Resource::ExtAuthPolicy(p) => &p.metadata,
            Resource::RateLimitPolicy(p) => &p.metadata,
            Resource::EnvoyPatchPolicy(p) => &p.metadata,
            Resource::RequestAuthentication(p) => &p.metadata,
            Resource::Secret(s) => &s.metadata,
            Resource::Namespace(n) => &n.metadata,
            Resource::GatewayClass(c) => &c.metadata,
            Resource::ApiGateway(g) => &g.metadata,
            Resource::HttpRoute(r) => &r.metadata,
            Resource::ReferenceGrant(g) => &g.metadata,
            Resource::GrpcRoute(r) => &r.metadata,
            Resource::TlsRoute(r) => &r.metadata,
            Resource::TcpRoute(r) => &r.metadata,
            Resource::UdpRoute(r) => &r.metadata,
            Resource::BackendTlsPolicy(p) => &p.metadata,
            Resource::ListenerSet(l) => &l.metadata,
            Resource::ConfigMap(c) => &c.metadata,
            Resource::ServiceAccount(a) => &a.metadata,
        }
    }

    /// `metadata.generation`, 0 when absent (files have none).
    pub fn generation(&self) -> i64 {
        self.metadata().generation.unwrap_or_default()
    }

    /// The object's identity; the namespace defaults to `default` as with `kubectl apply`.
    pub fn object_ref(&self) -> ObjectRef {
        let meta = self.metadata();
        let namespace = match self.kind().cluster_scoped() {
            true => "",
            false => meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
        };
        ObjectRef::new(
            self.kind(),
            namespace,
            meta.name.as_deref().unwrap_or_default(),
        )
    }
}

/// The namespace of an object whose manifest names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Whether a ConfigMap document holds a CA bundle (`data.ca.crt`): the only ConfigMaps read.
fn holds_ca(value: &Value) -> bool {
    value
        .get("data")
        .and_then(|d| d.get(gwapi::CA_CERT_KEY))
        .is_some()
}

fn str_field<'a>(
    map: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<&'a str, DecodeError> {
    map.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| DecodeError::MissingField(FieldPath::root().field(name)))
}

fn object_ref(kind: Kind, value: &Value) -> Result<ObjectRef, DecodeError> {
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            DecodeError::MissingField(FieldPath::root().field("metadata").field("name"))
        })?;
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE);
    let namespace = if kind.cluster_scoped() { "" } else { namespace };
    Ok(ObjectRef::new(kind, namespace, name))
}

fn typed<T: DeserializeOwned>(object: &ObjectRef, value: Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = FieldPath::parse(e.path().to_string().trim_start_matches('.'));
        DecodeError::Invalid {
            object: object.clone(),
            error: FieldError::new(path, e.into_inner().to_string()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_a_service() {
        let r = Resource::decode(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {"ports": [{"port": 9080, "name": "http"}]}
        }))
        .expect("decodes")
        .expect("is read");
        assert_eq!(r.object_ref().to_string(), "Service shop/reviews");
    }

    #[test]
    fn skips_unknown_kinds() {
        let r = Resource::decode(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}
        }));
        assert_eq!(r, Ok(None));
    }

    #[test]
    fn names_the_field_with_a_wrong_type() {
        let err = Resource::decode(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "reviews"},
            "spec": {"ports": [{"port": 80}, {"port": "eighty"}]}
        }))
        .expect_err("port is not a number");
        let DecodeError::Invalid { object, error } = err else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(object.to_string(), "Service default/reviews");
        assert_eq!(error.path.as_str(), "spec.ports[1].port");
    }

    #[test]
    fn decodes_crds_with_field_paths() {
        let r = Resource::decode(json!({
            "apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
            "metadata": {"name": "reviews", "namespace": "shop", "generation": 3},
            "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}
        }))
        .expect("decodes")
        .expect("is read");
        assert_eq!(r.object_ref().to_string(), "TrafficRoute shop/reviews");
        assert_eq!(r.generation(), 3);
        let err = Resource::decode(json!({
            "apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
            "metadata": {"name": "reviews"},
            "spec": {"hosts": ["reviews"], "http": [{}, {"route": [{"destination": {"host": "r"}, "weight": "ten"}]}]}
        }))
        .expect_err("weight is not a number");
        let DecodeError::Invalid { error, .. } = err else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(error.path.as_str(), "spec.http[1].route[0].weight");
        for kind in ["TrafficPolicy", "Gateway", "ExternalService"] {
            let err = Resource::decode(json!({
                "apiVersion": "portolan.dev/v1alpha1", "kind": kind,
                "metadata": {"name": "x"}, "spec": 5
            }))
            .expect_err("spec is not a mapping");
            assert!(
                err.to_string()
                    .contains(&format!("{kind} default/x: spec:")),
                "{err}"
            );
        }
    }

    #[test]
    fn reads_only_tls_secrets() {
        let opaque = Resource::decode(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "type": "Opaque", "data": {"password": "aGk="}
        }));
        assert_eq!(opaque, Ok(None));
        let untyped = Resource::decode(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}
        }));
        assert_eq!(untyped, Ok(None));
        let tls = Resource::decode(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cert"},
            "type": "kubernetes.io/tls", "data": {"tls.crt": "aGk=", "tls.key": "aGk="}
        }))
        .expect("decodes")
        .expect("is read");
        assert_eq!(tls.object_ref().to_string(), "Secret default/cert");
    }

    #[test]
    fn requires_a_name() {
        let err = Resource::decode(json!({"apiVersion": "v1", "kind": "Service", "metadata": {}}))
            .expect_err("no name");
        assert_eq!(
            err.to_string(),
            "metadata.name: required field is missing or not a string"
        );
    }
}

//! The kinds Portolan watches in a cluster: their API coordinates, the field selector each
//! list/watch uses, and whether Portolan writes their status.

use kube::core::{ApiResource, GroupVersionKind};
use portolan_api::Kind;
use portolan_api::resource::TLS_SECRET_TYPE;

/// Every kind the Kubernetes source watches, one watcher each (per watched namespace).
/// Legacy core/v1 Endpoints are not watched: EndpointSlices replace them.
pub const WATCHED: &[Kind] = &[
    Kind::Service,
    Kind::EndpointSlice,
    Kind::Secret,
    Kind::TrafficRoute,
    Kind::TrafficPolicy,
    Kind::Gateway,
    Kind::ExternalService,
    Kind::PeerAuthentication,
    Kind::AccessPolicy,
    Kind::ProxyScope,
    Kind::EnvoyPatchPolicy,
    Kind::RequestAuthentication,
];

/// The API resource (group, version, kind, plural) of a watched kind.
pub fn api_resource(kind: Kind) -> ApiResource {
    let (group, version) = match kind.api_version().split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", kind.api_version()),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind.as_str());
    ApiResource::from_gvk_with_plural(&gvk, plural(kind))
}

/// The resource name in URLs and RBAC rules.
pub fn plural(kind: Kind) -> &'static str {
    match kind {
        Kind::Service => "services",
        Kind::EndpointSlice => "endpointslices",
        Kind::Endpoints => "endpoints",
        Kind::Secret => "secrets",
        Kind::TrafficRoute => "trafficroutes",
        Kind::TrafficPolicy => "trafficpolicies",
        Kind::Gateway => "gateways",
        Kind::ExternalService => "externalservices",
        Kind::PeerAuthentication => "peerauthentications",
        Kind::AccessPolicy => "accesspolicies",
        Kind::ProxyScope => "proxyscopes",
        Kind::EnvoyPatchPolicy => "envoypatchpolicies",
        Kind::RequestAuthentication => "requestauthentications",
        Kind::Namespace => "namespaces",
        Kind::GatewayClass => "gatewayclasses",
        Kind::ApiGateway => "gateways",
        Kind::HttpRoute => "httproutes",
        Kind::ReferenceGrant => "referencegrants",
        Kind::GrpcRoute => "grpcroutes",
        Kind::TlsRoute => "tlsroutes",
    }
}

/// The field selector of a kind's list/watch: only `kubernetes.io/tls` Secrets are listed,
/// so no other Secret ever reaches Portolan's memory.
pub fn field_selector(kind: Kind) -> Option<String> {
    (kind == Kind::Secret).then(|| format!("type={TLS_SECRET_TYPE}"))
}

/// Whether Portolan writes this kind's `/status` (its own CRDs).
pub fn has_status(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::TrafficRoute
            | Kind::TrafficPolicy
            | Kind::Gateway
            | Kind::ExternalService
            | Kind::PeerAuthentication
            | Kind::AccessPolicy
            | Kind::ProxyScope
            | Kind::EnvoyPatchPolicy
            | Kind::RequestAuthentication
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_resources_match_the_manifests() {
        let svc = api_resource(Kind::Service);
        assert_eq!((svc.group.as_str(), svc.api_version.as_str()), ("", "v1"));
        let slice = api_resource(Kind::EndpointSlice);
        assert_eq!(slice.api_version, "discovery.k8s.io/v1");
        assert_eq!(slice.plural, "endpointslices");
        let tp = api_resource(Kind::TrafficPolicy);
        assert_eq!(tp.group, "portolan.dev");
        assert_eq!(tp.plural, "trafficpolicies");
        let ap = api_resource(Kind::AccessPolicy);
        assert_eq!(
            (ap.group.as_str(), ap.plural.as_str()),
            ("portolan.dev", "accesspolicies")
        );
        let ps = api_resource(Kind::ProxyScope);
        assert_eq!(
            (ps.group.as_str(), ps.plural.as_str()),
            ("portolan.dev", "proxyscopes")
        );
        assert!(WATCHED.contains(&Kind::ProxyScope) && has_status(Kind::ProxyScope));
        let epp = api_resource(Kind::EnvoyPatchPolicy);
        assert_eq!(
            (epp.group.as_str(), epp.plural.as_str()),
            ("portolan.dev", "envoypatchpolicies")
        );
        assert!(WATCHED.contains(&Kind::EnvoyPatchPolicy) && has_status(Kind::EnvoyPatchPolicy));
        let ra = api_resource(Kind::RequestAuthentication);
        assert_eq!(ra.plural, "requestauthentications");
        assert!(
            WATCHED.contains(&Kind::RequestAuthentication)
                && has_status(Kind::RequestAuthentication)
        );
    }

    #[test]
    fn only_tls_secrets_are_selected() {
        assert_eq!(
            field_selector(Kind::Secret).as_deref(),
            Some("type=kubernetes.io/tls")
        );
        assert_eq!(field_selector(Kind::Service), None);
    }
}

//! The kinds Portolan watches in a cluster: their API coordinates, the field selector each
//! list/watch uses, whether they are cluster-scoped or optional (Gateway API CRDs may not be
//! installed), and whether Portolan writes their status.

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
    Kind::ExtAuthPolicy,
    Kind::RateLimitPolicy,
    Kind::EnvoyPatchPolicy,
    Kind::RequestAuthentication,
    Kind::Namespace,
    Kind::GatewayClass,
    Kind::ApiGateway,
    Kind::HttpRoute,
    Kind::GrpcRoute,
    Kind::TlsRoute,
    Kind::TcpRoute,
    Kind::UdpRoute,
    Kind::ReferenceGrant,
    Kind::BackendTlsPolicy,
    Kind::ListenerSet,
    Kind::ConfigMap,
    Kind::ServiceAccount,
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
        Kind::ExtAuthPolicy => "extauthpolicies",
        Kind::RateLimitPolicy => "ratelimitpolicies",
        Kind::EnvoyPatchPolicy => "envoypatchpolicies",
        Kind::RequestAuthentication => "requestauthentications",
        Kind::Namespace => "namespaces",
        Kind::GatewayClass => "gatewayclasses",
        Kind::ApiGateway => "gateways",
        Kind::HttpRoute => "httproutes",
        Kind::ReferenceGrant => "referencegrants",
        Kind::GrpcRoute => "grpcroutes",
        Kind::TlsRoute => "tlsroutes",
        Kind::TcpRoute => "tcproutes",
        Kind::UdpRoute => "udproutes",
        Kind::BackendTlsPolicy => "backendtlspolicies",
        Kind::ConfigMap => "configmaps",
        Kind::ListenerSet => "listenersets",
        Kind::ServiceAccount => "serviceaccounts",
    }
}

/// The field selector of a kind's list/watch: only `kubernetes.io/tls` Secrets are listed,
/// so no other Secret ever reaches Portolan's memory. (ConfigMaps cannot be selected by their
/// keys: every one is listed, and decoding drops at once those without `ca.crt`.)
pub fn field_selector(kind: Kind) -> Option<String> {
    (kind == Kind::Secret).then(|| format!("type={TLS_SECRET_TYPE}"))
}

/// Kinds whose CRDs a cluster may lack (the Gateway API's): a list answered 404 counts as an
/// empty list, so a cluster without them still syncs; the watcher keeps retrying and picks
/// the objects up once the CRDs are installed.
pub fn optional(kind: Kind) -> bool {
    kind.is_gateway_api()
}

/// Cluster-scoped kinds get one watcher across the cluster, whatever namespaces are watched.
pub fn cluster_scoped(kind: Kind) -> bool {
    kind.cluster_scoped()
}

/// Gateway API kinds whose `/status` Portolan writes (from the World's `api_statuses`).
pub fn has_api_status(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::GatewayClass
            | Kind::ApiGateway
            | Kind::HttpRoute
            | Kind::GrpcRoute
            | Kind::TlsRoute
            | Kind::TcpRoute
            | Kind::UdpRoute
            | Kind::BackendTlsPolicy
            | Kind::ListenerSet
    )
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
            | Kind::ExtAuthPolicy
            | Kind::RateLimitPolicy
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
        for kind in [Kind::ExtAuthPolicy, Kind::RateLimitPolicy] {
            let r = api_resource(kind);
            assert_eq!(r.group, "portolan.dev");
            assert!(WATCHED.contains(&kind) && has_status(kind), "{kind}");
        }
        assert_eq!(plural(Kind::ExtAuthPolicy), "extauthpolicies");
        assert_eq!(plural(Kind::RateLimitPolicy), "ratelimitpolicies");
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
    fn gateway_api_kinds_are_watched_at_their_served_versions() {
        let coords = |k: Kind| {
            let r = api_resource(k);
            (r.api_version, r.kind, r.plural)
        };
        let gw = "gateway.networking.k8s.io";
        assert_eq!(
            coords(Kind::GatewayClass),
            (
                format!("{gw}/v1"),
                "GatewayClass".into(),
                "gatewayclasses".into()
            )
        );
        assert_eq!(
            coords(Kind::ApiGateway),
            (format!("{gw}/v1"), "Gateway".into(), "gateways".into())
        );
        assert_eq!(
            coords(Kind::HttpRoute),
            (format!("{gw}/v1"), "HTTPRoute".into(), "httproutes".into())
        );
        assert_eq!(
            coords(Kind::GrpcRoute),
            (format!("{gw}/v1"), "GRPCRoute".into(), "grpcroutes".into())
        );
        assert_eq!(
            coords(Kind::ReferenceGrant),
            (
                format!("{gw}/v1beta1"),
                "ReferenceGrant".into(),
                "referencegrants".into()
            )
        );
        for k in [
            Kind::Namespace,
            Kind::GatewayClass,
            Kind::ApiGateway,
            Kind::HttpRoute,
            Kind::GrpcRoute,
            Kind::TlsRoute,
            Kind::TcpRoute,
            Kind::UdpRoute,
            Kind::ReferenceGrant,
        ] {
            assert!(WATCHED.contains(&k), "{k} is watched");
        }
        assert_eq!(
            coords(Kind::BackendTlsPolicy),
            (
                format!("{gw}/v1"),
                "BackendTLSPolicy".into(),
                "backendtlspolicies".into()
            )
        );
        // UDPRoute: experimental channel only; a cluster without its CRD lists it as empty.
        assert_eq!(
            coords(Kind::UdpRoute),
            (
                format!("{gw}/v1alpha2"),
                "UDPRoute".into(),
                "udproutes".into()
            )
        );
        assert!(optional(Kind::UdpRoute) && has_api_status(Kind::UdpRoute));
        assert!(WATCHED.contains(&Kind::ConfigMap) && !optional(Kind::ConfigMap));
        assert!(has_api_status(Kind::BackendTlsPolicy) && optional(Kind::BackendTlsPolicy));
        assert!(cluster_scoped(Kind::GatewayClass) && cluster_scoped(Kind::Namespace));
        assert!(optional(Kind::HttpRoute) && !optional(Kind::Service));
        assert!(has_api_status(Kind::ApiGateway) && !has_api_status(Kind::ReferenceGrant));
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

//! Gateway -> [`Gateway`] (secretRef namespace defaults to the Gateway's), and
//! `kubernetes.io/tls` Secret -> [`TlsSecret`].

use super::port;
use crate::gateway::*;
use portolan_api::Resource;
use portolan_api::crd::gateway as api;
use portolan_api::k8s_openapi::api::core::v1::Secret;
use portolan_api::validate::{TLS_CERT_KEY, TLS_KEY_KEY, tls_data};

pub(super) fn gateway(resource: &Resource, gw: &api::Gateway) -> Gateway {
    let source = resource.object_ref();
    let listeners = gw
        .spec
        .listeners
        .iter()
        .map(|l| GatewayListener {
            name: l.name.clone(),
            port: port(l.port),
            protocol: match l.protocol {
                api::ListenerProtocol::Http => ListenerProtocol::Http,
                api::ListenerProtocol::Https => ListenerProtocol::Https,
                api::ListenerProtocol::Tcp => ListenerProtocol::Tcp,
            },
            hostnames: l.hostnames.iter().map(|h| h.to_ascii_lowercase()).collect(),
            tls: l.tls.as_ref().map(|t| SecretRef {
                namespace: t
                    .secret_ref
                    .namespace
                    .clone()
                    .unwrap_or_else(|| source.namespace.clone()),
                name: t.secret_ref.name.clone(),
            }),
        })
        .collect();
    Gateway {
        generation: resource.generation(),
        selector: GatewaySelector {
            cluster: Some(gw.spec.selector.cluster.clone()).filter(|c| !c.is_empty()),
            metadata: gw.spec.selector.metadata.clone(),
        },
        listeners,
        source,
    }
}

pub(super) fn tls_secret(resource: &Resource, secret: &Secret) -> TlsSecret {
    TlsSecret {
        source: resource.object_ref(),
        cert_chain: tls_data(secret, TLS_CERT_KEY).unwrap_or_default(),
        private_key: tls_data(secret, TLS_KEY_KEY).unwrap_or_default(),
    }
}

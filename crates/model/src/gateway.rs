//! The gateway model: listeners opened on selected proxies (ingress/egress gateways), and the
//! TLS certificates they serve.

use portolan_api::ObjectRef;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gateway {
    /// The object this came from (a Gateway).
    pub source: ObjectRef,
    pub generation: i64,
    pub selector: GatewaySelector,
    pub listeners: Vec<GatewayListener>,
}

/// Which proxies run the gateway: all conditions must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewaySelector {
    /// Envoy `node.cluster` (the proxy group).
    pub cluster: Option<String>,
    /// Envoy node metadata string fields.
    pub metadata: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListenerProtocol {
    Http,
    Https,
    Tcp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayListener {
    pub name: String,
    pub port: u16,
    pub protocol: ListenerProtocol,
    /// Hostnames routes may claim on this listener (`*.example.com` allowed); empty = any.
    pub hostnames: Vec<String>,
    /// For HTTPS: the `kubernetes.io/tls` Secret holding the certificate.
    pub tls: Option<SecretRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

/// A certificate and key from a `kubernetes.io/tls` Secret (PEM).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsSecret {
    pub source: ObjectRef,
    pub cert_chain: String,
    pub private_key: String,
}

impl std::fmt::Debug for TlsSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSecret")
            .field("source", &self.source)
            .field("cert_chain_len", &self.cert_chain.len())
            .field("private_key", &"<redacted>")
            .finish()
    }
}

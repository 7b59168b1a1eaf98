//! The external service model: hosts outside the mesh, reached by static addresses or DNS.

use portolan_api::ObjectRef;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalService {
    /// The object this came from (an ExternalService).
    pub source: ObjectRef,
    pub generation: i64,
    /// Host names (lower-cased) callers use, e.g. `api.example.com`.
    pub hosts: Vec<String>,
    pub ports: Vec<ExternalPort>,
    pub resolution: Resolution,
    /// For `Static`: the addresses. For `Dns`: names to resolve (empty: the hosts themselves).
    pub endpoints: Vec<ExternalEndpoint>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalPort {
    pub name: String,
    pub number: u16,
    pub protocol: ExternalProtocol,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExternalProtocol {
    Http,
    /// TLS spoken by the application; Portolan proxies it as TCP.
    Https,
    Tcp,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resolution {
    #[default]
    Static,
    Dns,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalEndpoint {
    /// An IP address (Static) or a DNS name (Dns).
    pub address: String,
    /// Per port name, the endpoint's port when it differs from the service port.
    pub ports: std::collections::BTreeMap<String, u16>,
}

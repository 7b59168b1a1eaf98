//! ExternalService -> [`ExternalService`] (resolution defaults to Static).

use super::port;
use crate::external::*;
use portolan_api::Resource;
use portolan_api::crd::external_service as api;

pub(super) fn external_service(resource: &Resource, es: &api::ExternalService) -> ExternalService {
    let spec = &es.spec;
    ExternalService {
        source: resource.object_ref(),
        generation: resource.generation(),
        hosts: spec.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        ports: spec
            .ports
            .iter()
            .map(|p| ExternalPort {
                name: p.name.clone(),
                number: port(p.number),
                protocol: match p.protocol {
                    api::ExternalProtocol::Http => ExternalProtocol::Http,
                    api::ExternalProtocol::Https => ExternalProtocol::Https,
                    api::ExternalProtocol::Tcp => ExternalProtocol::Tcp,
                },
            })
            .collect(),
        resolution: match spec.resolution {
            Some(api::Resolution::Dns) => Resolution::Dns,
            _ => Resolution::Static,
        },
        endpoints: spec
            .endpoints
            .iter()
            .map(|e| ExternalEndpoint {
                address: e.address.clone(),
                ports: e.ports.iter().map(|(k, v)| (k.clone(), port(*v))).collect(),
            })
            .collect(),
    }
}

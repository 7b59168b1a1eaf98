//! The names of the resources in a response, read without decoding the whole resource.
//!
//! Every resource type xDS v3 serves (Cluster, ClusterLoadAssignment, Listener,
//! RouteConfiguration, VirtualHost, Secret) holds its name in field 1, a string; decoding only
//! that field skips the rest of the message, which keeps a fleet of thousands of clients
//! cheap.

use crate::ClientError;
use envoy_types::pb::envoy::config::core::v3::address;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

/// Field 1 of any xDS resource.
#[derive(Clone, PartialEq, Message)]
struct Named {
    #[prost(string, tag = "1")]
    name: String,
}

/// The name of the resource in `any`.
pub fn name(any: &Any) -> Result<String, ClientError> {
    Named::decode(any.value.as_slice())
        .map(|n| n.name)
        .map_err(|source| ClientError::Decode {
            type_url: any.type_url.clone(),
            source,
        })
}

/// The names of `resources`, in order.
pub fn names(resources: &[Any]) -> Result<Vec<String>, ClientError> {
    resources.iter().map(name).collect()
}

/// The endpoint addresses of the ClusterLoadAssignments in `resources`.
pub fn endpoint_addresses(resources: &[Any]) -> Result<Vec<String>, ClientError> {
    let mut out = Vec::new();
    for any in resources {
        let cla = ClusterLoadAssignment::decode(any.value.as_slice()).map_err(|source| {
            ClientError::Decode {
                type_url: any.type_url.clone(),
                source,
            }
        })?;
        let sockets = cla
            .endpoints
            .iter()
            .flat_map(|locality| &locality.lb_endpoints)
            .filter_map(|lb| match lb.host_identifier.as_ref()? {
                lb_endpoint::HostIdentifier::Endpoint(e) => e.address.as_ref(),
                _ => None,
            })
            .filter_map(|a| match a.address.as_ref()? {
                address::Address::SocketAddress(s) => Some(s.address.clone()),
                _ => None,
            });
        out.extend(sockets);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
    use prost::Name;

    fn any<M: Message + Name>(m: &M) -> Any {
        Any {
            type_url: M::type_url(),
            value: m.encode_to_vec(),
        }
    }

    #[test]
    fn field_one_is_the_name_of_every_resource_type() {
        let resources = [
            any(&Cluster {
                name: "c".into(),
                connect_timeout: Some(Default::default()),
                ..Default::default()
            }),
            any(&ClusterLoadAssignment {
                cluster_name: "e".into(),
                ..Default::default()
            }),
            any(&Listener {
                name: "l".into(),
                stat_prefix: "s".into(),
                ..Default::default()
            }),
            any(&RouteConfiguration {
                name: "r".into(),
                ..Default::default()
            }),
            any(&VirtualHost {
                name: "v".into(),
                domains: vec!["*".into()],
                ..Default::default()
            }),
            any(&Secret {
                name: "s".into(),
                ..Default::default()
            }),
        ];
        assert_eq!(
            names(&resources).expect("decodes"),
            ["c", "e", "l", "r", "v", "s"]
        );
    }
}

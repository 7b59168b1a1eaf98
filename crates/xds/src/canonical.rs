//! Deterministic encoding of route configurations.
//!
//! `envoy-types` declares protobuf `map` fields as `std::collections::HashMap`, whose iteration
//! order differs between maps (each gets its own random hasher keys), and prost encodes a map
//! in iteration order. A route configuration with more than one `typed_per_filter_config` entry
//! would therefore encode to different bytes (and so a different version) each time the same
//! World is translated, and every such rebuild would push an unchanged route to every proxy.
//!
//! [`route_configuration`] encodes the `typed_per_filter_config` maps of the route
//! configuration, its virtual hosts and their routes in key order instead. A message whose maps
//! hold at most one entry is encoded by prost as it is (the bytes are the same); otherwise the
//! map entries come after the message's other fields, which protobuf parsers accept (field order
//! on the wire is free) and which decodes to an equal message.
//!
//! Not covered: `WeightedCluster.ClusterWeight.typed_per_filter_config` and `Metadata` maps,
//! which Portolan's translation does not fill with more than one entry.

use std::collections::{BTreeMap, HashMap};

use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use prost::encoding::{WireType, btree_map, encode_key, encode_varint, message, string};

/// `RouteConfiguration.virtual_hosts`.
const CONFIG_VIRTUAL_HOSTS: u32 = 2;
/// `RouteConfiguration.typed_per_filter_config`.
const CONFIG_PER_FILTER: u32 = 16;
/// `VirtualHost.routes`.
const VHOST_ROUTES: u32 = 3;
/// `VirtualHost.typed_per_filter_config`.
const VHOST_PER_FILTER: u32 = 15;
/// `Route.typed_per_filter_config`.
const ROUTE_PER_FILTER: u32 = 13;

/// Encodes `config` with every `typed_per_filter_config` map in key order.
pub fn route_configuration(config: &RouteConfiguration) -> Vec<u8> {
    if !config_needs_sorting(config) {
        return config.encode_to_vec();
    }
    let shell = RouteConfiguration {
        virtual_hosts: Vec::new(),
        typed_per_filter_config: HashMap::new(),
        ..config.clone()
    };
    let mut buf = shell.encode_to_vec();
    for vhost in &config.virtual_hosts {
        embed(CONFIG_VIRTUAL_HOSTS, &virtual_host(vhost), &mut buf);
    }
    sorted_map(CONFIG_PER_FILTER, &config.typed_per_filter_config, &mut buf);
    buf
}

fn config_needs_sorting(config: &RouteConfiguration) -> bool {
    config.typed_per_filter_config.len() > 1 || config.virtual_hosts.iter().any(vhost_needs_sorting)
}

fn vhost_needs_sorting(vhost: &VirtualHost) -> bool {
    vhost.typed_per_filter_config.len() > 1
        || vhost
            .routes
            .iter()
            .any(|r| r.typed_per_filter_config.len() > 1)
}

fn virtual_host(vhost: &VirtualHost) -> Vec<u8> {
    if !vhost_needs_sorting(vhost) {
        return vhost.encode_to_vec();
    }
    let shell = VirtualHost {
        routes: Vec::new(),
        typed_per_filter_config: HashMap::new(),
        ..vhost.clone()
    };
    let mut buf = shell.encode_to_vec();
    for route in &vhost.routes {
        embed(VHOST_ROUTES, &route_bytes(route), &mut buf);
    }
    sorted_map(VHOST_PER_FILTER, &vhost.typed_per_filter_config, &mut buf);
    buf
}

fn route_bytes(route: &Route) -> Vec<u8> {
    if route.typed_per_filter_config.len() <= 1 {
        return route.encode_to_vec();
    }
    let shell = Route {
        typed_per_filter_config: HashMap::new(),
        ..route.clone()
    };
    let mut buf = shell.encode_to_vec();
    sorted_map(ROUTE_PER_FILTER, &route.typed_per_filter_config, &mut buf);
    buf
}

/// Appends an already encoded embedded message as field `tag`.
fn embed(tag: u32, bytes: &[u8], buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.extend_from_slice(bytes);
}

/// Appends a `map<string, Any>` field `tag` in key order, each entry as prost encodes it.
fn sorted_map(tag: u32, map: &HashMap<String, Any>, buf: &mut Vec<u8>) {
    let sorted: BTreeMap<String, Any> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    btree_map::encode(
        string::encode,
        string::encoded_len,
        message::encode,
        message::encoded_len,
        tag,
        &sorted,
        buf,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(n: u8) -> Any {
        Any {
            type_url: format!("type.googleapis.com/test.T{n}"),
            value: vec![n; 3],
        }
    }

    /// A map filled in `order`: each HashMap has its own hasher keys.
    fn per_filter(order: &[u8]) -> HashMap<String, Any> {
        order
            .iter()
            .map(|&n| (format!("envoy.filters.http.f{n}"), any(n)))
            .collect()
    }

    fn config(order: &[u8]) -> RouteConfiguration {
        let route = Route {
            name: "r".into(),
            typed_per_filter_config: per_filter(order),
            ..Default::default()
        };
        RouteConfiguration {
            name: "rc".into(),
            virtual_hosts: vec![VirtualHost {
                name: "vh".into(),
                domains: vec!["*".into()],
                routes: vec![
                    route.clone(),
                    Route {
                        name: "plain".into(),
                        ..route
                    },
                ],
                typed_per_filter_config: per_filter(order),
                ..Default::default()
            }],
            typed_per_filter_config: per_filter(order),
            ..Default::default()
        }
    }

    #[test]
    fn equal_configs_encode_to_equal_bytes_whatever_the_map_order() {
        let first = route_configuration(&config(&[1, 2, 3, 4, 5, 6, 7, 8]));
        let prost_first = config(&[1, 2, 3, 4, 5, 6, 7, 8]).encode_to_vec();
        let mut prost_varied = false;
        for _ in 0..20 {
            let other = config(&[8, 7, 6, 5, 4, 3, 2, 1]);
            prost_varied |= other.encode_to_vec() != prost_first;
            assert_eq!(first, route_configuration(&other));
        }
        // The case is real: prost's own encoding of these equal messages does vary.
        assert!(prost_varied, "prost encoded every map in one order");
    }

    #[test]
    fn the_encoding_decodes_to_the_same_message() {
        let original = config(&[3, 1, 2]);
        let bytes = route_configuration(&original);
        let decoded = RouteConfiguration::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(decoded, original);
    }

    #[test]
    fn small_maps_keep_prost_bytes() {
        let original = config(&[1]);
        assert_eq!(route_configuration(&original), original.encode_to_vec());
    }
}

//! The hand-written encoding against prost's encoding of the same responses.

use super::*;
use crate::testing::{cla, cluster};
use prost::Message;

fn resource(ty: ResourceType, name: &str, len: usize) -> Arc<Resource> {
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    Arc::new(Resource::new(ty, name, bytes))
}

/// Our bytes are prost's bytes for the equivalent message, and `encoded_len` says how many.
fn assert_wire_equal<R, P>(response: R)
where
    R: Encode + Clone + Into<P> + std::fmt::Debug,
    P: Message,
{
    let mut ours = Vec::new();
    response.encode_raw(&mut ours).expect("encodes");
    let theirs = response.clone().into().encode_to_vec();
    assert_eq!(ours, theirs, "{response:?}");
    assert_eq!(response.encoded_len(), ours.len(), "{response:?}");
}

/// Sizes around every varint length boundary a frame can meet.
const SIZES: [usize; 9] = [0, 1, 126, 127, 128, 16_383, 16_384, 70_000, 2_097_152];

#[test]
fn sotw_responses_encode_as_prost_does() {
    let empty = SotwResponse {
        version_info: String::new(),
        resources: Vec::new().into(),
        ty: ResourceType::Cluster,
        nonce: String::new(),
    };
    assert_wire_equal::<_, DiscoveryResponse>(empty.clone());
    for ty in ResourceType::SERVED {
        let resources: Vec<_> = SIZES
            .iter()
            .enumerate()
            .map(|(i, len)| resource(ty, &format!("r{i}"), *len))
            .collect();
        assert_wire_equal::<_, DiscoveryResponse>(SotwResponse {
            version_info: "0123456789abcdef".into(),
            resources: resources.into(),
            ty,
            nonce: "42".into(),
        });
    }
    for len in SIZES {
        assert_wire_equal::<_, DiscoveryResponse>(SotwResponse {
            version_info: "v".repeat(len.min(300)),
            resources: vec![resource(ResourceType::Endpoint, "", len)].into(),
            nonce: "n".repeat(len.min(200)),
            ..empty.clone()
        });
    }
}

#[test]
fn delta_responses_encode_as_prost_does() {
    let empty = DeltaResponse {
        system_version_info: String::new(),
        resources: Vec::new(),
        absent: Vec::new(),
        ty: ResourceType::Cluster,
        removed_resources: Vec::new(),
        nonce: String::new(),
    };
    assert_wire_equal::<_, DeltaDiscoveryResponse>(empty.clone());
    for ty in ResourceType::SERVED {
        let resources = SIZES
            .iter()
            .enumerate()
            .map(|(i, len)| resource(ty, &format!("{ty}-{i}"), *len))
            .collect();
        assert_wire_equal::<_, DeltaDiscoveryResponse>(DeltaResponse {
            system_version_info: "0123456789abcdef".into(),
            resources,
            absent: vec!["mesh-outbound/nope".into(), String::new()],
            ty,
            // An empty name too: the first VHDS answer removes `ROUTE_CONFIG/`, any name goes.
            removed_resources: vec!["gone".into(), String::new(), "x".repeat(200)],
            nonce: "7".into(),
        });
    }
    for len in SIZES {
        assert_wire_equal::<_, DeltaDiscoveryResponse>(DeltaResponse {
            system_version_info: "s".repeat(len.min(300)),
            resources: vec![resource(
                ResourceType::VirtualHost,
                &"h".repeat(len.min(130)),
                len,
            )],
            removed_resources: vec!["r".repeat(len.min(20_000))],
            nonce: "n".repeat(len.min(129)),
            ty: ResourceType::VirtualHost,
            ..empty.clone()
        });
    }
}

#[test]
fn real_resources_round_trip_through_prost() {
    let cluster = Arc::new(Resource::encode(ResourceType::Cluster, "a", &cluster("a")));
    let response = SotwResponse {
        version_info: "1".into(),
        resources: vec![cluster.clone()].into(),
        ty: ResourceType::Cluster,
        nonce: "1".into(),
    };
    let mut bytes = Vec::new();
    response.encode_raw(&mut bytes).expect("encodes");
    let decoded = DiscoveryResponse::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(decoded, DiscoveryResponse::from(response));
    assert_eq!(decoded.resources[0].value, cluster.value().as_ref());
    assert!(decoded.control_plane.is_none());

    let assignment = Arc::new(Resource::encode(ResourceType::Endpoint, "a", &cla("a", 1)));
    let response = DeltaResponse {
        system_version_info: "2".into(),
        resources: vec![assignment],
        absent: Vec::new(),
        ty: ResourceType::Endpoint,
        removed_resources: vec!["b".into()],
        nonce: "3".into(),
    };
    let mut bytes = Vec::new();
    response.encode_raw(&mut bytes).expect("encodes");
    let decoded = DeltaDiscoveryResponse::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(decoded, DeltaDiscoveryResponse::from(response));
    assert!(decoded.control_plane.is_none());
}

#[test]
fn virtual_hosts_carry_their_name_as_alias_and_absent_ones_no_body() {
    let response = DeltaDiscoveryResponse::from(DeltaResponse {
        system_version_info: "1".into(),
        resources: vec![resource(ResourceType::VirtualHost, "mesh-outbound/a", 3)],
        absent: vec!["mesh-outbound/b".into()],
        ty: ResourceType::VirtualHost,
        removed_resources: Vec::new(),
        nonce: "1".into(),
    });
    assert_eq!(response.resources[0].aliases, ["mesh-outbound/a"]);
    assert!(response.resources[0].resource.is_some());
    assert_eq!(response.resources[1].name, "mesh-outbound/b");
    assert_eq!(response.resources[1].aliases, ["mesh-outbound/b"]);
    assert!(response.resources[1].resource.is_none());
    assert!(response.resources[1].version.is_empty());
}

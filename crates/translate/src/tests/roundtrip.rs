//! Every produced resource survives protobuf encode -> decode and renders as JSON.

use super::*;
use crate::json::{any_to_json, message_to_json};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::util::pack_any;
use prost::Message;

fn mk_busy_world() -> World {
    mk_world(
        vec![
            mk_service(
                "ns",
                "web",
                vec![mk_port("http", 80), mk_app_port("grpc", 9000, "grpc")],
            ),
            mk_service("default", "web", vec![mk_port("", 8080)]),
        ],
        vec![mk_slice(
            "ns",
            "web",
            "web-1",
            vec![
                mk_endpoint_port("http", 8080),
                mk_endpoint_port("grpc", 9000),
            ],
            vec![mk_ready("10.0.0.1", Some("z")), mk_ready("fd00::1", None)],
        )],
    )
}

fn roundtrip<M: Message + prost::Name + Default + Clone + PartialEq + std::fmt::Debug>(msgs: &[M]) {
    for msg in msgs {
        let decoded = M::decode(msg.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(&decoded, msg);
        let json = message_to_json(msg).expect("renders");
        assert!(json.is_object(), "{json}");
        let any = any_to_json(&pack_any(msg.clone())).expect("renders as Any");
        assert_eq!(any["@type"], M::type_url());
    }
}

#[test]
fn every_resource_round_trips_and_renders() {
    let r = run(&mk_busy_world());
    assert_eq!(r.clusters.len(), 3);
    roundtrip(&r.clusters);
    roundtrip(&r.load_assignments);
    roundtrip(&r.listeners);
    roundtrip(&r.routes);
}

#[test]
fn any_json_expands_the_message_with_its_type() {
    let cluster = Cluster {
        name: "c".to_string(),
        ..Default::default()
    };
    let json = any_to_json(&pack_any(cluster)).expect("renders");
    assert_eq!(
        json,
        serde_json::json!({"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "c"})
    );
}

#[test]
fn unknown_any_type_is_an_error() {
    let any = envoy_types::pb::google::protobuf::Any {
        type_url: "type.googleapis.com/no.such.Message".to_string(),
        value: vec![],
    };
    assert!(any_to_json(&any).is_err());
}

#[test]
fn resources_json_has_the_four_lists() {
    let json = crate::json::resources_to_json(&run(&mk_busy_world())).expect("renders");
    for key in ["clusters", "endpoints", "listeners", "routes"] {
        assert!(json[key].is_array(), "{key}");
    }
    assert_eq!(json["endpoints"].as_array().map(Vec::len), Some(3));
}

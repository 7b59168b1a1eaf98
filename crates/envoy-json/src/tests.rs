//! The descriptor against envoy-types, and rendering.

use super::*;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use prost::{Message, Name};
use serde_json::json;

/// The envoy-types versions `Cargo.lock` holds.
fn locked_envoy_types() -> Vec<String> {
    let lock = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock");
    let text = std::fs::read_to_string(lock).unwrap_or_else(|e| panic!("{lock}: {e}"));
    text.split("[[package]]")
        .filter(|pkg| pkg.contains("\nname = \"envoy-types\"\n"))
        .filter_map(|pkg| {
            let line = pkg.lines().find(|l| l.starts_with("version = "))?;
            Some(
                line.trim_start_matches("version = ")
                    .trim_matches('"')
                    .to_string(),
            )
        })
        .collect()
}

/// The checked-in descriptor set is the one envoy-types generated the messages this workspace
/// compiles from: a crates.io version never changes, so equal versions mean equal messages.
#[test]
fn descriptor_is_the_locked_envoy_types_one() {
    assert_eq!(
        locked_envoy_types(),
        vec![ENVOY_TYPES_VERSION.trim().to_string()],
        "Cargo.lock's envoy-types and crates/envoy-json/descriptor differ: run \
         scripts/update-envoy-descriptor.sh"
    );
}

fn hcm_listener(hcm_bytes: Vec<u8>) -> Listener {
    Listener {
        name: "l".into(),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "hcm".into(),
                config_type: Some(filter::ConfigType::TypedConfig(Any {
                    type_url: HttpConnectionManager::type_url(),
                    value: hcm_bytes,
                })),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `bytes` with one more field, number 4242 (varint 7), that no Envoy message has.
fn with_unknown_field(mut bytes: Vec<u8>) -> Vec<u8> {
    prost::encoding::encode_key(4242, prost::encoding::WireType::Varint, &mut bytes);
    prost::encoding::encode_varint(7, &mut bytes);
    bytes
}

#[test]
fn nested_anys_render_with_their_type_and_proto_names() {
    let hcm = HttpConnectionManager {
        stat_prefix: "mesh".into(),
        ..Default::default()
    };
    let json = message_to_json(&hcm_listener(hcm.encode_to_vec())).expect("renders");
    assert_eq!(
        json["filter_chains"][0]["filters"][0]["typed_config"],
        json!({"@type": HttpConnectionManager::type_url(), "stat_prefix": "mesh"})
    );
    let any = Any {
        type_url: Cluster::type_url(),
        value: Cluster {
            name: "c".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    };
    assert_eq!(
        any_to_json(&any).expect("renders"),
        json!({"@type": Cluster::type_url(), "name": "c"})
    );
}

#[test]
fn a_field_the_descriptor_does_not_know_is_refused() {
    let cluster = Cluster {
        name: "c".into(),
        ..Default::default()
    };
    let error = bytes_to_json(
        &Cluster::full_name(),
        &with_unknown_field(cluster.encode_to_vec()),
    )
    .expect_err("an unknown field is refused");
    assert!(
        matches!(&error, JsonError::UnknownField { number: 4242, .. }),
        "{error}"
    );

    // Inside an Any, the path says where.
    let hcm = with_unknown_field(HttpConnectionManager::default().encode_to_vec());
    let error = message_to_json(&hcm_listener(hcm)).expect_err("refused inside the Any too");
    let JsonError::UnknownField {
        type_name, path, ..
    } = &error
    else {
        panic!("{error}");
    };
    assert_eq!(type_name, &HttpConnectionManager::full_name());
    assert_eq!(
        path,
        &format!(
            "filter_chains.filters.typed_config.({})",
            HttpConnectionManager::full_name()
        )
    );
}

use super::*;
use envoy_types::pb::envoy::service::discovery::v3::ResourceLocator;

fn full_request(names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: "v7".into(),
        node: Some(Node {
            id: "sidecar~10.0.0.1~web-1.default~default.svc.cluster.local".into(),
            cluster: "web".into(),
            ..Default::default()
        }),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        resource_locators: vec![ResourceLocator {
            name: "ignored".into(),
            ..Default::default()
        }],
        type_url: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment".into(),
        response_nonce: "12".into(),
        error_detail: Some(RpcStatus {
            code: 3,
            message: "bad cluster".into(),
            details: Vec::new(),
        }),
    }
}

fn names_of(names: &RequestNames) -> Vec<String> {
    names.iter().map(Cow::into_owned).collect()
}

/// Every field prost decodes, the same; the names as sent, in order.
fn assert_same(decoded: &SotwRequest, expected: &DiscoveryRequest) {
    assert_eq!(decoded.version_info, expected.version_info);
    assert_eq!(decoded.node, expected.node);
    assert_eq!(names_of(&decoded.resource_names), expected.resource_names);
    assert_eq!(decoded.resource_names.len(), expected.resource_names.len());
    assert_eq!(decoded.type_url, expected.type_url);
    assert_eq!(decoded.response_nonce, expected.response_nonce);
    assert_eq!(decoded.error_detail, expected.error_detail);
}

#[test]
fn decodes_what_prost_decodes_with_the_names_as_sent() {
    let long = "x".repeat(300);
    for names in [
        vec![],
        vec!["a"],
        vec![
            "outbound|80||b.ns.svc.cluster.local",
            "*",
            "",
            long.as_str(),
        ],
        vec!["é-ünïcode", "z", "a"],
    ] {
        let expected = full_request(&names);
        let bytes = Bytes::from(expected.encode_to_vec());
        let decoded = SotwRequest::decode(bytes).expect("decodes");
        assert_same(&decoded, &expected);
        assert_eq!(decoded, SotwRequest::from(expected.clone()));
    }
}

#[test]
fn names_between_other_fields_are_gathered_in_order() {
    // prost writes fields in tag order; another encoder may interleave them.
    let mut wire = Vec::new();
    let first = DiscoveryRequest {
        resource_names: vec!["a".into(), "b".into()],
        ..Default::default()
    };
    let middle = DiscoveryRequest {
        type_url: "t".into(),
        ..Default::default()
    };
    let last = DiscoveryRequest {
        resource_names: vec!["c".into()],
        response_nonce: "n".into(),
        ..Default::default()
    };
    for part in [&first, &middle, &last] {
        wire.extend(part.encode_to_vec());
    }
    let decoded = SotwRequest::decode(Bytes::from(wire)).expect("decodes");
    assert_eq!(names_of(&decoded.resource_names), ["a", "b", "c"]);
    assert_eq!(decoded.resource_names.len(), 3);
    assert_eq!(decoded.type_url, "t");
    assert_eq!(decoded.response_nonce, "n");
}

#[test]
fn repeated_fields_merge_as_prost_does() {
    let a = DiscoveryRequest {
        version_info: "old".into(),
        node: Some(Node {
            id: "n".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let b = DiscoveryRequest {
        version_info: "new".into(),
        node: Some(Node {
            cluster: "c".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut wire = a.encode_to_vec();
    wire.extend(b.encode_to_vec());
    let expected = DiscoveryRequest::decode(&wire[..]).expect("prost decodes");
    let decoded = SotwRequest::decode(Bytes::from(wire)).expect("decodes");
    assert_same(&decoded, &expected);
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let expected = full_request(&["a", "b"]);
    let mut wire = expected.encode_to_vec();
    // Field 15 as varint, fixed64, length-delimited and fixed32.
    wire.extend([15 << 3, 0x96, 0x01]);
    wire.extend([(15 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8]);
    wire.extend([(15 << 3) | 2, 2, b'h', b'i']);
    wire.extend([(15 << 3) | 5, 1, 2, 3, 4]);
    let decoded = SotwRequest::decode(Bytes::from(wire)).expect("decodes");
    assert_same(&decoded, &expected);
}

#[test]
fn what_prost_refuses_is_refused() {
    let good = full_request(&["a", "b"]).encode_to_vec();
    let mut bad_utf8_name = DiscoveryRequest::default().encode_to_vec();
    bad_utf8_name.extend([NAME_KEY, 2, 0xc3, 0x28]);
    let mut bad_utf8_nonce = Vec::new();
    bad_utf8_nonce.extend([(5 << 3) | 2, 1, 0xff]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() - 1].to_vec()),
        ("name past the end", vec![NAME_KEY, 5, b'a']),
        ("invalid UTF-8 name", bad_utf8_name),
        ("invalid UTF-8 nonce", bad_utf8_nonce),
        ("field zero", vec![0, 1]),
        ("group wire type", vec![(15 << 3) | 3]),
        ("cut varint", vec![15 << 3, 0x80]),
        ("bad node", vec![(2 << 3) | 2, 2, 0x0a, 5]),
        ("nonce as a varint", vec![5 << 3, 1]),
    ];
    for (case, wire) in cases {
        assert!(
            DiscoveryRequest::decode(&wire[..]).is_err(),
            "{case}: prost refuses it"
        );
        assert!(
            SotwRequest::decode(Bytes::from(wire)).is_err(),
            "{case}: refused"
        );
    }
}

#[test]
fn names_compare_by_their_bytes() {
    let names = RequestNames::from_names(["a", "bc", "*"]);
    assert!(names.equals(["a", "bc", "*"].into_iter()));
    assert!(!names.equals(["a", "bc"].into_iter()));
    assert!(!names.equals(["a", "bd", "*"].into_iter()));
    assert!(!names.equals(["a", "*", "bc"].into_iter()));
    assert!(names.contains("*"));
    assert!(!names.contains("b"));
    let none = RequestNames::default();
    assert!(none.is_empty());
    assert!(none.equals(std::iter::empty::<&str>()));
    assert!(!none.contains("*"));
}

#[test]
fn the_names_are_a_slice_of_the_message_not_a_copy() {
    let names: Vec<String> = (0..1_000)
        .map(|i| format!("outbound|80||svc-{i}.ns"))
        .collect();
    let request = DiscoveryRequest {
        resource_names: names.clone(),
        type_url: "t".into(),
        ..Default::default()
    };
    let bytes = Bytes::from(request.encode_to_vec());
    let range = bytes.as_ptr_range();
    let decoded = SotwRequest::decode(bytes.clone()).expect("decodes");
    let raw = decoded.resource_names.raw.as_ptr_range();
    assert!(range.start <= raw.start && raw.end <= range.end);
    assert_eq!(names_of(&decoded.resource_names), names);
}

#[test]
fn a_name_key_written_long_is_read_as_a_name() {
    // Field 3's key (26) as a two-byte varint, between names written the usual way.
    let mut wire = vec![NAME_KEY, 1, b'a'];
    wire.extend([0x9a, 0x00, 1, b'b']);
    wire.extend([NAME_KEY, 1, b'c']);
    let expected = DiscoveryRequest::decode(&wire[..]).expect("prost decodes");
    assert_eq!(expected.resource_names, ["a", "b", "c"]);
    let decoded = SotwRequest::decode(Bytes::from(wire)).expect("decodes");
    assert_same(&decoded, &expected);
}

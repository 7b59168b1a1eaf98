//! Golden files: the JSON of whole translations. The snapshots are the spec; read them.

use super::*;
use crate::json::resources_to_json;

fn golden(world: &World) -> serde_json::Value {
    resources_to_json(&run(world)).expect("renders")
}

/// `shop/cart` (http 80, admin 9090) with ready, not-ready and terminating endpoints in two
/// zones, and `shop/catalog` (grpc) with no ready endpoint at all.
fn mk_two_services() -> World {
    let cart = mk_service(
        "shop",
        "cart",
        vec![mk_port("http", 80), mk_port("admin", 9090)],
    );
    let catalog = mk_service("shop", "catalog", vec![mk_app_port("grpc", 50051, "grpc")]);
    let cart_ports = || {
        vec![
            mk_endpoint_port("http", 8080),
            mk_endpoint_port("admin", 9090),
        ]
    };
    let cart_a = mk_slice(
        "shop",
        "cart",
        "cart-a",
        cart_ports(),
        vec![
            mk_ready("10.0.1.1", Some("zone-a")),
            mk_not_ready("10.0.1.2", Some("zone-a")),
            mk_terminating("10.0.1.3", Some("zone-a")),
        ],
    );
    let cart_b = mk_slice(
        "shop",
        "cart",
        "cart-b",
        cart_ports(),
        vec![
            mk_ready("10.0.2.1", Some("zone-b")),
            // Also in cart-a: listed once.
            mk_ready("10.0.1.1", Some("zone-a")),
            mk_ready("10.0.2.9", None),
        ],
    );
    let catalog_v4 = mk_slice(
        "shop",
        "catalog",
        "catalog-v4",
        vec![mk_endpoint_port("grpc", 50051)],
        vec![
            mk_terminating("10.0.3.1", Some("zone-a")),
            mk_not_ready("10.0.3.2", Some("zone-b")),
        ],
    );
    let catalog_v6 = mk_slice(
        "shop",
        "catalog",
        "catalog-v6",
        vec![mk_endpoint_port("grpc", 50051)],
        vec![mk_terminating("fd00::3:1", Some("zone-b"))],
    );
    mk_world(
        vec![cart, catalog],
        vec![cart_a, cart_b, catalog_v4, catalog_v6],
    )
}

/// `web` in `default` and `alpha`; `api` in `gamma` and `beta` (no `default`).
fn mk_same_name_in_two_namespaces() -> World {
    mk_world(
        vec![
            mk_service("alpha", "web", vec![mk_port("http", 80)]),
            mk_service("default", "web", vec![mk_port("http", 80)]),
            mk_service("gamma", "api", vec![mk_port("http", 8080)]),
            mk_service("beta", "api", vec![mk_port("http", 8080)]),
        ],
        vec![mk_slice(
            "default",
            "web",
            "web-1",
            vec![mk_endpoint_port("http", 8080)],
            vec![mk_ready("10.1.0.1", None)],
        )],
    )
}

#[test]
fn two_services() {
    insta::assert_json_snapshot!("two_services", golden(&mk_two_services()));
}

#[test]
fn same_name_in_two_namespaces() {
    insta::assert_json_snapshot!(
        "same_name_in_two_namespaces",
        golden(&mk_same_name_in_two_namespaces())
    );
}

#[test]
fn empty_world() {
    insta::assert_json_snapshot!("empty_world", golden(&World::default()));
}

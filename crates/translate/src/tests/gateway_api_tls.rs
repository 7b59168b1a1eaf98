//! Gateway API TLS ports: an HTTPS listener's filter chain terminates TLS by SNI with its own
//! route configuration, a passthrough chain is a TCP proxy by SNI, and chains with the same
//! SNI match are never sent twice.

use super::*;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use portolan_model::gateway_api::{ApiChain, ApiGateway, ApiPort, ApiVirtualHost, ChainKind};
use prost::Message;

fn mk_secret(name: &str) -> Arc<TlsSecret> {
    Arc::new(TlsSecret {
        source: ObjectRef::new(Kind::Secret, "infra", name),
        cert_chain: format!("-----BEGIN CERTIFICATE-----\n{name}\n"),
        private_key: "-----BEGIN PRIVATE KEY-----\nk\n".to_string(),
    })
}

fn terminate(name: &str, server_names: &[&str], secret: &str) -> ApiChain {
    ApiChain {
        name: name.to_string(),
        server_names: server_names.iter().map(|s| s.to_string()).collect(),
        kind: ChainKind::Terminate {
            certificates: vec![mk_secret(secret)],
            virtual_hosts: vec![ApiVirtualHost {
                hostname: "*".to_string(),
                rules: Vec::new(),
            }],
            client_validation: None,
        },
    }
}

fn world() -> World {
    let mut world = World::default();
    world.services.insert(
        ServiceKey::new("infra", "tls-backend"),
        Arc::new(mk_service(
            "infra",
            "tls-backend",
            vec![mk_port("https", 443)],
        )),
    );
    let passthrough = ApiChain {
        name: "tls/abc.example.com".to_string(),
        server_names: vec!["abc.example.com".to_string()],
        kind: ChainKind::Passthrough {
            backends: vec![mk_backend("tls-backend.infra", Some(443), None, 1)],
        },
    };
    let gateway = ApiGateway {
        source: ObjectRef::new(Kind::ApiGateway, "infra", "edge"),
        generation: 1,
        group: "gateway:infra/edge".to_string(),
        address: "127.0.1.7".to_string(),
        ports: vec![ApiPort {
            tcp: false,
            udp: false,
            port: 8443,
            tls: true,
            virtual_hosts: Vec::new(),
            chains: vec![
                terminate("https", &[], "any-cert"),
                terminate("https-shop", &["*.example.com"], "shop-cert"),
                passthrough,
                // The same match as the first: dropped, Envoy would refuse the listener.
                terminate("again", &[], "other-cert"),
            ],
            owners: Vec::new(),
        }],
    };
    world
        .api_gateways
        .insert(gateway.source.clone(), Arc::new(gateway));
    world
}

fn chain<'l>(listener: &'l Listener, name: &str) -> &'l FilterChain {
    listener
        .filter_chains
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no chain {name}"))
}

fn certificate_of(chain: &FilterChain) -> String {
    let socket = chain.transport_socket.as_ref().expect("TLS");
    let Some(envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
        any,
    )) = &socket.config_type
    else {
        panic!("no typed config");
    };
    let tls = DownstreamTlsContext::decode(any.value.as_slice()).expect("decodes");
    let common = tls.common_tls_context.expect("common");
    assert_eq!(common.alpn_protocols, ["h2", "http/1.1"]);
    assert!(
        common.tls_certificates.is_empty(),
        "no key inline in a listener"
    );
    let sds = &common.tls_certificate_sds_secret_configs[0];
    assert!(sds.sds_config.is_some(), "fetched over ADS");
    sds.name.clone()
}

#[test]
fn tls_ports_get_one_chain_per_sni_match() {
    let r = run_group(&world(), "gateway:infra/edge");
    assert_eq!(r.listeners.len(), 1);
    let l = &r.listeners[0];
    assert_eq!(l.name, "gateway-8443");
    assert_eq!(
        l.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    let names: Vec<&str> = l.filter_chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["https", "https-shop", "tls/abc.example.com"]);

    // HTTPS: TLS with the listener's own certificate, then its own route configuration.
    let any = chain(l, "https");
    assert!(any.filter_chain_match.is_none(), "takes every other SNI");
    assert_eq!(certificate_of(any), "gateway-cert|infra/any-cert");
    let shop = chain(l, "https-shop");
    let m = shop.filter_chain_match.as_ref().expect("match");
    assert_eq!(m.server_names, ["*.example.com"]);
    assert_eq!(certificate_of(shop), "gateway-cert|infra/shop-cert");
    let mut routes: Vec<&str> = r.routes.iter().map(|c| c.name.as_str()).collect();
    routes.sort();
    assert_eq!(routes, ["gateway-8443/https", "gateway-8443/https-shop"]);

    // Passthrough: no TLS context, a TCP proxy to the backend's cluster.
    let pass = chain(l, "tls/abc.example.com");
    assert!(pass.transport_socket.is_none());
    assert_eq!(pass.filters[0].name, "envoy.filters.network.tcp_proxy");
    let m = pass.filter_chain_match.as_ref().expect("match");
    assert_eq!(m.server_names, ["abc.example.com"]);

    // The keys travel as the group's SDS secrets, one per Secret.
    let secrets: Vec<&str> = r.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        secrets,
        [
            "gateway-cert|infra/any-cert",
            "gateway-cert|infra/shop-cert"
        ]
    );
    let text = format!("{:?}", r.listeners);
    assert!(!text.contains("PRIVATE KEY"), "a key in a listener");
}

#[test]
fn other_groups_get_no_gateway_secrets() {
    let r = run_group(&world(), "some-other-group");
    assert!(r.secrets.is_empty(), "{:?}", r.secrets);
}

/// A Gateway with a plain HTTP port whose HTTPRoute rule has a path regex.
fn regex_world() -> World {
    let mut world = world();
    let route = ObjectRef::new(Kind::HttpRoute, "shop", "www");
    let rule = mk_rule(
        vec![portolan_model::routing::HttpMatch {
            path: Some(portolan_model::routing::PathMatch::Regex("/a{40}".into())),
            ..Default::default()
        }],
        mk_forward(vec![mk_backend("tls-backend.infra", Some(443), None, 1)]),
    );
    let key = ObjectRef::new(Kind::ApiGateway, "infra", "edge");
    let mut gateway = (**world.api_gateways.get(&key).expect("edge")).clone();
    gateway.ports.push(ApiPort {
        port: 8080,
        tls: false,
        tcp: false,
        udp: false,
        virtual_hosts: vec![ApiVirtualHost {
            hostname: "www.example.com".to_string(),
            rules: vec![portolan_model::gateway_api::ApiRule {
                route,
                index: 2,
                rule,
            }],
        }],
        chains: Vec::new(),
        owners: Vec::new(),
    });
    world.api_gateways.insert(key, Arc::new(gateway));
    world
}

#[test]
fn gateway_api_resources_record_the_gateway_and_routes_behind_them() {
    use crate::provenance::ResourceKind;
    let p = run_group(&regex_world(), "gateway:infra/edge").provenance;
    let names = |kind, name| -> Vec<String> {
        let mut out: Vec<String> = p
            .of(kind, name)
            .flat_map(|e| {
                e.objects()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out.dedup();
        out
    };
    assert_eq!(
        names(ResourceKind::Listener, "gateway-8080"),
        ["Gateway infra/edge", "HTTPRoute shop/www"]
    );
    assert_eq!(
        names(ResourceKind::Listener, "gateway-8443"),
        [
            "Gateway infra/edge",
            "Secret infra/any-cert",
            "Secret infra/shop-cert"
        ]
    );
    assert_eq!(
        names(ResourceKind::Route, "gateway-8443/https-shop"),
        ["Gateway infra/edge"]
    );
    // Envoy quotes the regex it refuses: the rule's part points at its HTTPRoute and Gateway.
    let entry = p
        .of(ResourceKind::Route, "gateway-8080")
        .next()
        .expect("route configuration entry");
    let text = "regex '/a{40}' RE2 program size of 125 > max program size of 100";
    let mut hit: Vec<String> = entry
        .parts_in(text)
        .flat_map(|part| {
            part.origins
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    hit.sort();
    assert_eq!(hit, ["Gateway infra/edge", "HTTPRoute shop/www"]);
}

/// The world above with a BackendTLSPolicy's TLS on `tls-backend` port 443.
fn backend_tls_world(sni: &str) -> World {
    use portolan_model::gateway_api::backend_tls::{BackendTls, San, Trust};
    let mut world = world();
    let tls = BackendTls {
        policy: ObjectRef::new(Kind::BackendTlsPolicy, "infra", "tls"),
        sni: sni.to_string(),
        trust: Trust::Bundle("-----BEGIN CERTIFICATE-----\nca\n".to_string()),
        subject_alt_names: vec![
            San::Dns("abc.example.com".to_string()),
            San::Uri("spiffe://td/ns/infra/sa/tls".to_string()),
        ],
    };
    world.backend_tls.insert(
        ServiceKey::new("infra", "tls-backend"),
        [(443, Arc::new(tls))].into_iter().collect(),
    );
    world
}

/// The UpstreamTlsContext of the one cluster of `tls-backend` port 443, if any.
fn upstream_tls<C: std::borrow::Borrow<envoy_types::pb::envoy::config::cluster::v3::Cluster>>(
    clusters: &[C],
) -> Option<envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext> {
    use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
    let cluster = clusters
        .iter()
        .map(std::borrow::Borrow::borrow)
        .find(
            |c: &&envoy_types::pb::envoy::config::cluster::v3::Cluster| {
                c.name.contains("tls-backend")
            },
        )
        .expect("the backend's cluster");
    let ConfigType::TypedConfig(any) = cluster.transport_socket.as_ref()?.config_type.as_ref()?;
    Some(prost::Message::decode(any.value.as_slice()).expect("decodes"))
}

#[test]
fn backend_tls_applies_to_the_gateway_proxies_clusters_only() {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
    let world = backend_tls_world("abc.example.com");
    let r = run_group(&world, "gateway:infra/edge");
    let tls = upstream_tls(&r.clusters).expect("TLS towards the backend");
    assert_eq!(tls.sni, "abc.example.com");
    let common = tls.common_tls_context.expect("common");
    assert!(common.alpn_protocols.is_empty(), "HTTP/1.1 port: no ALPN");
    let Some(ValidationContextType::ValidationContext(v)) = common.validation_context_type else {
        panic!("a validation context");
    };
    assert!(format!("{:?}", v.trusted_ca).contains("BEGIN CERTIFICATE"));
    let sans: Vec<(i32, String)> = v
        .match_typed_subject_alt_names
        .iter()
        .map(|m| (m.san_type, format!("{:?}", m.matcher)))
        .collect();
    assert_eq!(sans.len(), 2, "{sans:?}");
    assert!(sans[0].1.contains("abc.example.com") && sans[1].1.contains("spiffe://td"));
    // The cluster is behind the policy too (a NACK of it names the policy).
    let behind: Vec<String> = r
        .provenance
        .of(
            crate::provenance::ResourceKind::Cluster,
            &r.clusters
                .iter()
                .find(|c| c.name.contains("tls-backend"))
                .expect("cluster")
                .name,
        )
        .flat_map(|e| {
            e.objects()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        behind.iter().any(|o| o == "BackendTLSPolicy infra/tls"),
        "{behind:?}"
    );

    // Other groups (sidecars, other gateways) keep plaintext.
    assert!(upstream_tls(&run(&world).clusters).is_none());

    // A warm translator sees a changed policy.
    let mut translator = crate::Translator::new();
    let group = group_of("gateway:infra/edge");
    let first = translator.translate(&world, &group, &crate::Options::default());
    assert_eq!(
        upstream_tls(&first.clusters).map(|t| t.sni).as_deref(),
        Some("abc.example.com")
    );
    let changed = backend_tls_world("other.example.com");
    let second = translator.translate(&changed, &group, &crate::Options::default());
    assert_eq!(
        upstream_tls(&second.clusters).map(|t| t.sni).as_deref(),
        Some("other.example.com")
    );
}

#[test]
fn backend_tls_towards_an_http2_port_offers_alpn_h2() {
    let mut world = backend_tls_world("abc.example.com");
    world.services.insert(
        ServiceKey::new("infra", "tls-backend"),
        Arc::new(mk_service(
            "infra",
            "tls-backend",
            vec![mk_port("grpc", 443)],
        )),
    );
    let r = run_group(&world, "gateway:infra/edge");
    let tls = upstream_tls(&r.clusters).expect("TLS towards the backend");
    assert_eq!(
        tls.common_tls_context.expect("common").alpn_protocols,
        ["h2"]
    );
}

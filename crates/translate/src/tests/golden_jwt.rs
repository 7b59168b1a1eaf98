//! JWT goldens: the jwt_authn filter a RequestAuthentication on a Service becomes on its
//! workloads' inbound listener (before the RBAC filters, whose claim and request-principal
//! rules read the token's payload), the remote JWKS cluster, and a stable encoding.

use super::*;
use crate::json::message_to_json;
use portolan_api::crd::policy_target::PolicyTargetRef;
use portolan_model::jwt::{Jwks, JwtProvider, JwtRequirement, RequestAuthentication};
use portolan_model::policy_attach::PolicyMeta;
use portolan_model::security::{
    AccessAction, AccessPolicy, AccessRule, ClaimCondition, RequestPrincipal, SERVICE_ACCOUNT_LABEL,
};
use prost::Message;
use std::time::Duration;

const GROUP: &str = "web;l.app=web;ns=shop;sa=web;app=8080;in=15006";

fn provider(name: &str, jwks: Jwks) -> JwtProvider {
    JwtProvider {
        name: name.into(),
        issuer: format!("https://{name}.example"),
        audiences: vec!["shop".into()],
        jwks,
        from_headers: vec![],
        from_params: vec![],
        from_cookies: vec![],
        claim_to_headers: vec![("sub".into(), "x-jwt-sub".into())],
        forward_token: false,
    }
}

fn world(with_rules: bool) -> World {
    let mut web = mk_service("shop", "web", vec![mk_target_port("http", 80, 8080)]);
    web.labels = [(SERVICE_ACCOUNT_LABEL.to_string(), "web".to_string())].into();
    let slice = mk_slice(
        "shop",
        "web",
        "web",
        vec![mk_endpoint_port("http", 15006)],
        vec![mk_ready("10.0.0.1", None)],
    );
    let mut world = mk_world(vec![web], vec![slice]);
    let policy = RequestAuthentication {
        meta: PolicyMeta {
            source: ObjectRef::new(Kind::RequestAuthentication, "shop", "web-jwt"),
            generation: 1,
            created: None,
            targets: vec![PolicyTargetRef {
                group: String::new(),
                kind: "Service".into(),
                name: "web".into(),
                section_name: None,
            }],
        },
        providers: vec![
            provider(
                "idp",
                Jwks::Remote {
                    uri: "https://idp.example/jwks.json".into(),
                    host: "idp.example".into(),
                    port: 443,
                    tls: true,
                    cache_duration: Duration::from_secs(300),
                    timeout: Duration::from_secs(1),
                },
            ),
            provider("local", Jwks::Local(r#"{"keys":[{"kty":"EC"}]}"#.into())),
        ],
        requirement: JwtRequirement {
            optional: true,
            providers: vec![],
        },
    };
    world
        .request_authentications
        .insert(policy.meta.source.clone(), Arc::new(policy));
    let rules = vec![
        AccessRule {
            claims: vec![ClaimCondition {
                path: vec!["realm".into(), "role".into()],
                values: vec!["admin".into()],
            }],
            ..Default::default()
        },
        AccessRule {
            request_principals: vec![RequestPrincipal::IssuerSubject {
                issuer: "https://idp.example".into(),
                subject: "bob".into(),
            }],
            ..Default::default()
        },
    ];
    let ap = AccessPolicy {
        source: ObjectRef::new(Kind::AccessPolicy, "shop", "by-jwt"),
        generation: 1,
        selector: None,
        action: AccessAction::Allow,
        rules: if with_rules { rules } else { vec![] },
    };
    world
        .access_policies
        .insert(ap.source.clone(), Arc::new(ap));
    portolan_model::jwt::finish(&mut world);
    world
}

#[test]
fn inbound_jwt_filter_rbac_on_claims_and_jwks_cluster() {
    let world = world(true);
    let resources = run_group(&world, GROUP);
    let inbound = resources
        .listeners
        .iter()
        .find(|l| l.name == "inbound")
        .expect("inbound listener");
    insta::assert_json_snapshot!(
        "inbound_jwt_and_claim_rbac",
        message_to_json(inbound).expect("renders")
    );
    let route = resources
        .routes
        .iter()
        .find(|r| r.name == "inbound")
        .expect("inbound route configuration");
    insta::assert_json_snapshot!(
        "inbound_jwt_and_claim_rbac_route",
        message_to_json(route).expect("renders")
    );
    let jwks = resources
        .clusters
        .iter()
        .find(|c| c.name == "jwks-tls|idp.example|443")
        .expect("the remote JWKS cluster");
    insta::assert_json_snapshot!("jwks_tls_cluster", message_to_json(jwks).expect("renders"));
}

#[test]
fn the_filter_encodes_the_same_bytes_every_time() {
    let world = world(true);
    let encode = || {
        let resources = run_group(&world, GROUP);
        let inbound = resources.listeners.iter().find(|l| l.name == "inbound");
        inbound.map(Message::encode_to_vec).unwrap_or_default()
    };
    let first = encode();
    for _ in 0..8 {
        assert_eq!(encode(), first);
    }
}

#[test]
fn a_workload_no_service_of_names_gets_no_filter() {
    let world = world(false);
    let resources = run_group(
        &world,
        "other;l.app=other;ns=shop;sa=other;app=8080;in=15006",
    );
    let json = serde_json::to_string(
        &resources
            .listeners
            .iter()
            .map(|l| message_to_json(l).expect("renders"))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default();
    assert!(!json.contains("jwt_authn"), "{json}");
    assert!(
        resources
            .clusters
            .iter()
            .all(|c| !c.name.starts_with("jwks"))
    );
}

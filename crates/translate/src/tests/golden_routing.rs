//! Golden files of routing and policy translation. The snapshots are the spec; read them.

use super::*;
use crate::json::{message_to_json, resources_to_json};
use portolan_model::policy::{
    ConnectionPool, HashKey, HealthCheck, HealthCheckKind, LbAlgorithm, LoadBalancer,
    OutlierDetection, UpstreamTls,
};
use portolan_model::routing::{
    Cors, Fault, FaultAbort, FaultDelay, HeaderMatch, Mirror, PathMatch, QueryParamMatch, Redirect,
    RetryPolicy, Rewrite, StringMatch, TcpRule,
};
use std::time::Duration;

fn golden(world: &World) -> serde_json::Value {
    resources_to_json(&run(world)).expect("renders")
}

/// The JSON of the mesh virtual host `name`.
fn mesh_vhost(world: &World, name: &str) -> serde_json::Value {
    let r = run(world);
    let vh = r.routes[0]
        .virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no virtual host {name}"));
    message_to_json(vh).expect("renders")
}

fn mk_versions_policy() -> DestinationPolicy {
    DestinationPolicy {
        subsets: vec![
            mk_subset("v1", &[("version", "v1")]),
            mk_subset("v2", &[("version", "v2")]),
        ],
        load_balancer: Some(LoadBalancer {
            algorithm: LbAlgorithm::LeastRequest,
            ..Default::default()
        }),
        ..mk_policy("default", "reviews", "reviews")
    }
}

/// 90% to subset v1 and 10% to v2 of `reviews`, with a TrafficPolicy defining the subsets.
#[test]
fn canary() {
    let route = mk_route(
        "default",
        "reviews",
        &["reviews"],
        vec![mk_rule(
            vec![],
            mk_forward(vec![
                mk_backend("reviews", Some(9080), Some("v1"), 90),
                mk_backend("reviews", None, Some("v2"), 10),
            ]),
        )],
    );
    let world = with(
        mk_reviews_world(),
        Extra {
            routes: vec![route],
            policies: vec![mk_versions_policy()],
            ..Default::default()
        },
    );
    insta::assert_json_snapshot!("canary", golden(&world));
}

/// `end-user: jason` goes to v2, everyone else to v1.
#[test]
fn ab_by_header() {
    let jason = HttpMatch {
        headers: vec![HeaderMatch {
            name: "end-user".to_string(),
            value: StringMatch::Exact("jason".to_string()),
            invert: false,
        }],
        ..Default::default()
    };
    let mut to_v2 = mk_rule(
        vec![jason],
        mk_forward(vec![mk_backend("reviews", None, Some("v2"), 1)]),
    );
    to_v2.name = Some("jason-to-v2".to_string());
    let route = mk_route(
        "default",
        "reviews",
        &["reviews.default.svc.cluster.local"],
        vec![
            to_v2,
            mk_rule(
                vec![],
                mk_forward(vec![mk_backend("reviews", None, Some("v1"), 1)]),
            ),
        ],
    );
    let world = with(
        mk_reviews_world(),
        Extra {
            routes: vec![route],
            policies: vec![mk_versions_policy()],
            ..Default::default()
        },
    );
    insta::assert_json_snapshot!("ab_by_header", mesh_vhost(&world, "reviews.default:9080"));
}

#[test]
fn retries_and_timeout() {
    let mut rule = mk_rule(
        vec![],
        mk_forward(vec![mk_backend("reviews", None, None, 1)]),
    );
    rule.timeout = Some(Duration::from_secs(2));
    rule.retry = Some(RetryPolicy {
        attempts: 3,
        per_try_timeout: Some(Duration::from_millis(500)),
        retry_on: vec!["gateway-error".to_string(), "reset".to_string()],
    });
    let mut default_retry = mk_rule(
        vec![HttpMatch {
            path: Some(PathMatch::Prefix("/slow".to_string())),
            ..Default::default()
        }],
        mk_forward(vec![mk_backend("reviews", None, None, 1)]),
    );
    default_retry.retry = Some(RetryPolicy {
        attempts: 1,
        per_try_timeout: None,
        retry_on: vec![],
    });
    let route = mk_route(
        "default",
        "reviews",
        &["reviews"],
        vec![default_retry, rule],
    );
    let world = with(
        mk_reviews_world(),
        Extra {
            routes: vec![route],
            ..Default::default()
        },
    );
    insta::assert_json_snapshot!(
        "retries_and_timeout",
        mesh_vhost(&world, "reviews.default:9080")
    );
}

/// Fault, mirror, rewrites, redirect, direct response, header edits, CORS, and every kind of
/// match condition.
#[test]
fn rule_features() {
    let api = HttpMatch {
        path: Some(PathMatch::Prefix("/api/".to_string())),
        headers: vec![
            HeaderMatch {
                name: "x-debug".to_string(),
                value: StringMatch::Present,
                invert: true,
            },
            HeaderMatch {
                name: "x-tenant".to_string(),
                value: StringMatch::Prefix("team-".to_string()),
                invert: false,
            },
        ],
        query_params: vec![
            QueryParamMatch {
                name: "v".to_string(),
                value: StringMatch::Regex("[0-9]+".to_string()),
            },
            QueryParamMatch {
                name: "trace".to_string(),
                value: StringMatch::Present,
            },
        ],
        method: Some("GET".to_string()),
    };
    let exact_v1 = HttpMatch {
        path: Some(PathMatch::Exact("/v1".to_string())),
        ..Default::default()
    };
    let mut forward = mk_rule(
        vec![api, exact_v1],
        HttpAction::Forward {
            backends: vec![mk_backend("reviews", None, None, 1)],
            rewrite: Some(Rewrite {
                uri: Some("/v2/".to_string()),
                authority: Some("reviews.internal".to_string()),
                full_path: false,
            }),
        },
    );
    forward.name = Some("api".to_string());
    forward.fault = Some(Fault {
        delay: Some(FaultDelay {
            delay: Duration::from_secs(1),
            percent: 50.0,
        }),
        abort: Some(FaultAbort {
            status: 503,
            percent: 0.5,
        }),
    });
    forward.mirrors = vec![Mirror {
        destination: mk_dest("reviews", None, Some("v3")),
        percent: 100.0,
    }];
    forward.request_headers = HeaderOps {
        set: [("x-a".to_string(), "1".to_string())].into(),
        add: [("x-b".to_string(), "2".to_string())].into(),
        remove: vec!["x-c".to_string()],
    };
    forward.response_headers = HeaderOps {
        set: [("x-served-by".to_string(), "portolan".to_string())].into(),
        add: Default::default(),
        remove: vec!["server".to_string()],
    };
    forward.cors = Some(Cors {
        allow_origins: vec![
            StringMatch::Exact("https://a.example.com".to_string()),
            StringMatch::Prefix("https://".to_string()),
            StringMatch::Regex(".*\\.example\\.org".to_string()),
        ],
        allow_methods: vec!["GET".to_string(), "POST".to_string()],
        allow_headers: vec!["x-user".to_string()],
        expose_headers: vec!["x-trace".to_string()],
        max_age: Some(Duration::from_secs(86_400)),
        allow_credentials: Some(true),
    });
    let redirect = mk_rule(
        vec![HttpMatch {
            path: Some(PathMatch::Exact("/old".to_string())),
            ..Default::default()
        }],
        HttpAction::Redirect(Redirect {
            uri: Some("/new".to_string()),
            prefix: false,
            authority: Some("example.com".to_string()),
            scheme: Some("https".to_string()),
            port: Some(443),
            code: 308,
        }),
    );
    let mut regex_rewrite = mk_rule(
        vec![HttpMatch {
            path: Some(PathMatch::Regex("/items/[0-9]+".to_string())),
            ..Default::default()
        }],
        HttpAction::Forward {
            backends: vec![mk_backend("reviews", None, None, 1)],
            rewrite: Some(Rewrite {
                uri: Some("/item".to_string()),
                authority: None,
                full_path: false,
            }),
        },
    );
    regex_rewrite.name = Some("items".to_string());
    let direct = mk_rule(
        vec![],
        HttpAction::DirectResponse {
            status: 200,
            body: Some("hello".to_string()),
        },
    );
    let route = mk_route(
        "default",
        "reviews",
        &["reviews"],
        vec![forward, redirect, regex_rewrite, direct],
    );
    let world = with(
        mk_reviews_world(),
        Extra {
            routes: vec![route],
            policies: vec![DestinationPolicy {
                subsets: vec![mk_subset("v3", &[("version", "v3")])],
                ..mk_policy("default", "reviews", "reviews")
            }],
            ..Default::default()
        },
    );
    insta::assert_json_snapshot!("rule_features", mesh_vhost(&world, "reviews.default:9080"));
}

/// A TrafficPolicy with every setting, on `reviews` (port 9080 only), and a subset.
#[test]
fn policy_with_every_setting() {
    let policy = DestinationPolicy {
        port: Some(9080),
        subsets: vec![mk_subset("v1", &[("version", "v1")])],
        load_balancer: Some(LoadBalancer {
            algorithm: LbAlgorithm::RingHash,
            hash_key: Some(HashKey::Cookie {
                name: "session".to_string(),
                ttl: Some(Duration::from_secs(3600)),
                path: Some("/".to_string()),
            }),
            locality_aware: true,
        }),
        connection_pool: Some(ConnectionPool {
            max_connections: Some(100),
            max_pending_requests: Some(10),
            max_requests: Some(1000),
            max_retries: Some(3),
            connect_timeout: Some(Duration::from_millis(250)),
        }),
        outlier_detection: Some(OutlierDetection {
            consecutive_5xx_errors: Some(5),
            consecutive_gateway_errors: Some(3),
            interval: Some(Duration::from_secs(10)),
            base_ejection_time: Some(Duration::from_secs(30)),
            max_ejection_percent: Some(50),
        }),
        health_check: Some(HealthCheck {
            kind: HealthCheckKind::Http {
                path: "/healthz".to_string(),
                host: Some("reviews.health".to_string()),
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
        }),
        tls: Some(UpstreamTls {
            sni: Some("reviews.default.svc".to_string()),
            ca_certificates: Some(
                "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n".to_string(),
            ),
            subject_alt_names: vec!["reviews.default.svc".to_string()],
            insecure_skip_verify: false,
        }),
        ..mk_policy("default", "reviews-all", "reviews")
    };
    let world = with(
        mk_reviews_world(),
        Extra {
            policies: vec![policy],
            ..Default::default()
        },
    );
    insta::assert_json_snapshot!("policy_with_every_setting", golden(&world));
}

/// `api.internal` (Static, HTTP 80 and TCP 5432 on other endpoint ports) and
/// `api.example.com` + `www.example.com` (DNS, HTTPS 443 with TLS origination and a TCP health
/// check), and a route shifting `api.internal` traffic to `api.example.com`.
#[test]
fn external_services() {
    let internal = mk_external(
        "default",
        "api-internal",
        &["api.internal"],
        vec![
            mk_external_port("http", 80, ExternalProtocol::Http),
            mk_external_port("db", 5432, ExternalProtocol::Tcp),
        ],
        Resolution::Static,
        vec![
            ExternalEndpoint {
                address: "192.0.2.10".to_string(),
                ports: [("http".to_string(), 8080)].into(),
            },
            ExternalEndpoint {
                address: "192.0.2.11".to_string(),
                ports: Default::default(),
            },
        ],
    );
    let public = mk_external(
        "default",
        "example",
        &["api.example.com", "www.example.com"],
        vec![mk_external_port("https", 443, ExternalProtocol::Https)],
        Resolution::Dns,
        vec![],
    );
    let tls = DestinationPolicy {
        health_check: Some(HealthCheck {
            kind: HealthCheckKind::Tcp,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            unhealthy_threshold: 3,
            healthy_threshold: 2,
        }),
        tls: Some(UpstreamTls {
            sni: Some("api.example.com".to_string()),
            ca_certificates: Some(
                "-----BEGIN CERTIFICATE-----\nPUBLIC-CA\n-----END CERTIFICATE-----\n".to_string(),
            ),
            subject_alt_names: vec!["api.example.com".to_string()],
            insecure_skip_verify: false,
        }),
        ..mk_policy("default", "api-example-tls", "api.example.com")
    };
    let insecure = DestinationPolicy {
        tls: Some(UpstreamTls {
            sni: Some("www.example.com".to_string()),
            ca_certificates: None,
            subject_alt_names: vec![],
            insecure_skip_verify: true,
        }),
        ..mk_policy("default", "www-example-tls", "www.example.com")
    };
    let shift = mk_route(
        "default",
        "api-internal",
        &["api.internal"],
        vec![mk_rule(
            vec![],
            mk_forward(vec![
                mk_backend("api.internal", None, None, 75),
                mk_backend("api.example.com", None, None, 25),
            ]),
        )],
    );
    let world = with(
        World::default(),
        Extra {
            routes: vec![shift],
            policies: vec![tls, insecure],
            externals: vec![internal, public],
            ..Default::default()
        },
    );
    insta::assert_json_snapshot!("external_services", golden(&world));
}

/// An `ingress` gateway with HTTP 8080 (`*.example.com`), two HTTPS listeners on 8443 with
/// their own certificates, one HTTPS listener whose Secret is missing (9443), and TCP 9000.
pub(super) fn mk_gateway_world() -> World {
    let gateway = mk_gateway(
        "edge",
        "ingress",
        "ingress",
        vec![
            mk_listener(
                "http",
                8080,
                ListenerProtocol::Http,
                &["*.example.com"],
                None,
            ),
            mk_listener(
                "https-shop",
                8443,
                ListenerProtocol::Https,
                &["shop.example.com"],
                Some(("edge", "shop-cert")),
            ),
            mk_listener(
                "https-api",
                8443,
                ListenerProtocol::Https,
                &["api.example.com", "*.api.example.com"],
                Some(("edge", "api-cert")),
            ),
            mk_listener(
                "https-missing",
                9443,
                ListenerProtocol::Https,
                &[],
                Some(("edge", "nope")),
            ),
            mk_listener("db", 9000, ListenerProtocol::Tcp, &[], None),
        ],
    );
    let mut shop = mk_route(
        "edge",
        "shop",
        &["shop.example.com", "shop.other.org"],
        vec![mk_rule(
            vec![],
            mk_forward(vec![mk_backend("reviews.default", None, None, 1)]),
        )],
    );
    shop.parents = vec![mk_gateway_parent("edge", "ingress")];
    let mut api = mk_route(
        "edge",
        "api",
        &["api.example.com"],
        vec![mk_rule(
            vec![],
            HttpAction::DirectResponse {
                status: 200,
                body: Some("api".to_string()),
            },
        )],
    );
    api.parents = vec![mk_gateway_parent("edge", "ingress"), Parent::Mesh];
    let mut db = mk_route("edge", "db", &["db"], vec![]);
    db.parents = vec![mk_gateway_parent("edge", "ingress")];
    db.tcp = vec![TcpRule {
        port: Some(9000),
        backends: vec![
            mk_backend("reviews.default", Some(9080), None, 80),
            mk_backend("missing.default", Some(5432), None, 20),
        ],
    }];
    with(
        mk_reviews_world(),
        Extra {
            routes: vec![shop, api, db],
            gateways: vec![gateway],
            secrets: vec![
                mk_secret("edge", "shop-cert"),
                mk_secret("edge", "api-cert"),
            ],
            ..Default::default()
        },
    )
}

#[test]
fn gateway_http_https_tcp() {
    let r = run_group(&mk_gateway_world(), "ingress");
    let json = resources_to_json(&r).expect("renders");
    let text = json.to_string();
    assert!(
        !text.contains("PRIVATE KEY"),
        "a key left the snapshot: {text}"
    );
    insta::assert_json_snapshot!(
        "gateway_http_https_tcp",
        serde_json::json!({
            "listeners": json["listeners"],
            "routes": json["routes"],
            "secrets": json["secrets"],
        })
    );
    // The keys themselves travel only as the group's SDS secrets.
    let names: Vec<&str> = r.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["gateway-cert|edge/api-cert", "gateway-cert|edge/shop-cert"]
    );
}

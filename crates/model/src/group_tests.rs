use super::*;
use proptest::prelude::*;

fn key(text: &str) -> GroupKey {
    text.parse().unwrap_or_else(|e| panic!("{e}"))
}

fn problem(text: &str) -> KeyProblem {
    text.parse::<GroupKey>().expect_err(text).problem
}

#[test]
fn every_dimension_prints_in_the_canonical_order() {
    let key = GroupKey {
        zone: Some("zone-a".into()),
        labels: [("version", "v1"), ("app", "a;b=c")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        discovery: DiscoveryMode::OnDemand,
        scope: Some(ScopeHosts::canonical(
            ["shared/*, ./*", "shared/*"],
            Some("shop"),
        )),
        client: ClientKind::Grpc,
        egress: EgressPolicy::RegistryOnly,
        node_namespace: Some("shop".into()),
        workload: Some(WorkloadKey {
            app_port: Some(8080),
            inbound_port: Some(15006),
            protocol: Some("tcp".into()),
            ..WorkloadKey::new("shop", "a;b")
        }),
        ..GroupKey::new("web")
    };
    let text = "web;zone=zone-a;l.app=a%3Bb%3Dc;l.version=v1;mode=on-demand;\
                scope=shared/*,shop/*;client=grpc;egress=registry-only;node-ns=shop;ns=shop;\
                sa=a%3Bb;app=8080;\
                in=15006;proto=tcp";
    assert_eq!(key.to_string(), text);
    assert_eq!(GroupKey::from_str(text), Ok(key));
}

#[test]
fn egress_is_allow_any_or_registry_only_once() {
    assert_eq!(key("web;egress=allow-any").egress, EgressPolicy::AllowAny);
    assert_eq!(
        key("web;egress=registry-only").to_string(),
        "web;egress=registry-only"
    );
    assert!(GroupKey::from_str("web;egress=deny").is_err());
    assert!(GroupKey::from_str("web;egress=allow-any;egress=allow-any").is_err());
}

#[test]
fn a_cluster_alone_is_the_key() {
    assert_eq!(GroupKey::new("web").to_string(), "web");
    assert_eq!(GroupKey::new("").to_string(), "default");
    assert_eq!(GroupKey::default(), GroupKey::new(""));
    assert_eq!(key("edge"), GroupKey::new("edge"));
    assert_eq!(key("web;mode=full").discovery, DiscoveryMode::Full);
    assert!(key("web;mode=on-demand").is_on_demand());
}

#[test]
fn parts_in_another_order_read_as_the_canonical_key() {
    let k = key("web;node-ns=shop;sa=web;ns=shop;l.b=2;zone=z;l.a=1");
    assert_eq!(
        k.to_string(),
        "web;zone=z;l.a=1;l.b=2;node-ns=shop;ns=shop;sa=web"
    );
    let scoped = key("web;scope=b/*, a/*,b/*");
    assert_eq!(scoped.to_string(), "web;scope=a/*,b/*");
}

#[test]
fn bad_keys_are_refused_naming_the_part() {
    assert_eq!(problem(";zone=a"), KeyProblem::EmptyCluster);
    assert_eq!(problem("web;junk"), KeyProblem::NotNameValue("junk".into()));
    assert_eq!(
        problem("web;color=red"),
        KeyProblem::Unknown("color".into())
    );
    assert_eq!(
        problem("web;zone=a;zone=b"),
        KeyProblem::Repeated("zone".into())
    );
    assert_eq!(
        problem("web;l.a=1;l.a=2"),
        KeyProblem::Repeated("l.a".into())
    );
    assert_eq!(problem("web;ns=a"), KeyProblem::IncompleteWorkload);
    assert_eq!(problem("web;app=80"), KeyProblem::IncompleteWorkload);
    assert!(matches!(
        problem("web;mode=lazy"),
        KeyProblem::BadValue { .. }
    ));
    assert!(matches!(
        problem("web;client=envoy"),
        KeyProblem::BadValue { .. }
    ));
    assert!(matches!(
        problem("web;ns=a;sa=b;app=x"),
        KeyProblem::BadValue { .. }
    ));
    assert_eq!(
        problem("web;zone=100%"),
        KeyProblem::BadEscape("100%".into())
    );
    assert_eq!(problem("web;zone=a=b"), KeyProblem::BadEscape("a=b".into()));
    assert_eq!(
        "web;zone=%41"
            .parse::<GroupKey>()
            .expect_err("bad")
            .to_string(),
        "group key \"web;zone=%41\": \"%41\": '%' must start %25, %3B or %3D, and '=' be written %3D"
    );
}

#[test]
fn a_value_cannot_forge_another_part() {
    let sneaky = GroupKey::new("web;mode=on-demand;ns=admin;sa=root");
    let text = sneaky.to_string();
    assert_eq!(text, "web%3Bmode%3Don-demand%3Bns%3Dadmin%3Bsa%3Droot");
    let read = key(&text);
    assert!(!read.is_on_demand());
    assert_eq!(read.workload, None);
}

#[test]
fn escape_and_unescape_are_inverse() {
    for text in ["", "%", "%3B", "%%3B", ";=%", "a%25b", "é;%"] {
        assert_eq!(unescape(&escape(text)).as_deref(), Ok(text), "{text}");
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z;=%.,/ *-]{0,8}"]
}

fn scope_hosts() -> impl Strategy<Value = ScopeHosts> {
    (
        prop::collection::vec(text(), 0..4),
        prop::option::of("[a-z]{1,4}"),
    )
        .prop_map(|(entries, ns)| {
            ScopeHosts::canonical(entries.iter().map(String::as_str), ns.as_deref())
        })
}

fn workload() -> impl Strategy<Value = WorkloadKey> {
    (
        text(),
        text(),
        any::<Option<u16>>(),
        any::<Option<u16>>(),
        any::<Option<u16>>(),
        prop::option::of(text()),
    )
        .prop_map(
            |(namespace, service_account, app, inbound, outbound, protocol)| WorkloadKey {
                namespace,
                service_account,
                app_port: app,
                inbound_port: inbound,
                outbound_port: outbound,
                protocol,
            },
        )
}

fn group_key() -> impl Strategy<Value = GroupKey> {
    (
        text().prop_filter("a cluster is never empty", |c| !c.is_empty()),
        prop::option::of(text()),
        prop::collection::btree_map(text(), text(), 0..3),
        prop_oneof![
            Just(DiscoveryMode::Unset),
            Just(DiscoveryMode::OnDemand),
            Just(DiscoveryMode::Full)
        ],
        prop::option::of(scope_hosts()),
        prop_oneof![Just(ClientKind::Envoy), Just(ClientKind::Grpc)],
        prop_oneof![
            Just(EgressPolicy::Unset),
            Just(EgressPolicy::AllowAny),
            Just(EgressPolicy::RegistryOnly)
        ],
        prop::option::of(text()),
        prop::option::of(workload()),
    )
        .prop_map(
            |(
                cluster,
                zone,
                labels,
                discovery,
                scope,
                client,
                egress,
                node_namespace,
                workload,
            )| {
                GroupKey {
                    cluster,
                    zone,
                    labels,
                    discovery,
                    scope,
                    client,
                    egress,
                    node_namespace,
                    workload,
                }
            },
        )
}

proptest! {
    /// The string form round-trips, and is canonical: reading it back prints it unchanged.
    #[test]
    fn the_string_form_round_trips(k in group_key()) {
        let text = k.to_string();
        let read: GroupKey = text.parse().map_err(|e: GroupKeyError| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&read, &k);
        prop_assert_eq!(read.to_string(), text);
    }

    #[test]
    fn escaped_texts_unescape(s in any::<String>()) {
        prop_assert_eq!(unescape(&escape(&s)), Ok(s));
    }
}

//! Unit tests of the Delta state machine: requests in, responses out.

use super::*;
use crate::testing::*;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;
use envoy_types::pb::google::rpc::Status;

use ResourceType::{Cluster, Endpoint, Listener, Route};

fn subscribe(ty: ResourceType, names: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: Some(Node {
            id: "sidecar-1".into(),
            cluster: "web".into(),
            ..Default::default()
        }),
        type_url: ty.type_url().to_string(),
        resource_names_subscribe: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    }
}

fn unsubscribe(ty: ResourceType, names: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: ty.type_url().to_string(),
        resource_names_unsubscribe: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    }
}

fn ack(response: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: response.type_url.clone(),
        response_nonce: response.nonce.clone(),
        ..Default::default()
    }
}

fn nack(response: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        error_detail: Some(Status {
            code: 3,
            message: "rejected".into(),
            details: vec![],
        }),
        ..ack(response)
    }
}

/// The one response of a step, as the prost message it encodes (see `crate::response`).
fn only(out: Output<DeltaResponse>) -> DeltaDiscoveryResponse {
    assert_eq!(out.responses.len(), 1, "expected one response: {out:?}");
    out.responses
        .into_iter()
        .next()
        .expect("one response")
        .into()
}

/// Every response of a step, as prost messages.
fn all(out: Output<DeltaResponse>) -> Vec<DeltaDiscoveryResponse> {
    out.responses.into_iter().map(Into::into).collect()
}

fn names(response: &DeltaDiscoveryResponse) -> Vec<&str> {
    response.resources.iter().map(|r| r.name.as_str()).collect()
}

fn versions(response: &DeltaDiscoveryResponse) -> HashMap<String, String> {
    response
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect()
}

fn types_of(out: &Output<DeltaResponse>) -> Vec<ResourceType> {
    out.responses.iter().map(|r| r.ty).collect()
}

fn two_clusters() -> Arc<Snapshot> {
    Arc::new(snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]))
}

/// An ADS stream subscribed to every type, every response ACKed.
fn synced(snapshot: Arc<Snapshot>) -> DeltaStream {
    let mut stream = DeltaStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(snapshot);
    for (ty, names) in [
        (Cluster, vec![]),
        (Endpoint, vec!["a", "b"]),
        (Listener, vec![]),
        (Route, vec!["l"]),
    ] {
        let response = only(stream.on_request(subscribe(ty, &names)));
        assert_eq!(stream.on_request(ack(&response)).acks, vec![ty]);
    }
    stream
}

#[test]
fn wildcard_first_request_gets_everything_once_a_snapshot_exists() {
    let mut stream = DeltaStream::new(StreamTypes::Aggregated);
    assert!(
        stream
            .on_request(subscribe(Cluster, &[]))
            .responses
            .is_empty()
    );
    let snapshot = two_clusters();
    let response = only(stream.on_snapshot(snapshot.clone()));
    assert_eq!(names(&response), vec!["a", "b"]);
    assert_eq!(response.system_version_info, snapshot.version(Cluster));
    assert_eq!(
        response.resources[0].version,
        snapshot.resources(Cluster)["a"].version()
    );
    assert!(response.removed_resources.is_empty());
    assert_eq!(stream.on_request(ack(&response)).acks, vec![Cluster]);
    assert!(stream.on_snapshot(two_clusters()).responses.is_empty());
}

#[test]
fn star_subscribes_to_everything() {
    let mut stream = DeltaStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(two_clusters());
    let response = only(stream.on_request(subscribe(Endpoint, &["*"])));
    assert_eq!(names(&response), vec!["a", "b"]);
}

#[test]
fn by_name_subscribe_and_unsubscribe() {
    let mut stream = DeltaStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(two_clusters());
    let first = only(stream.on_request(subscribe(Endpoint, &["a"])));
    assert_eq!(names(&first), vec!["a"]);
    stream.on_request(ack(&first));

    let second = only(stream.on_request(subscribe(Endpoint, &["b"])));
    assert_eq!(names(&second), vec!["b"], "only the new name");
    stream.on_request(ack(&second));

    assert!(
        stream
            .on_request(unsubscribe(Endpoint, &["a"]))
            .responses
            .is_empty()
    );
    let changed = Arc::new(snapshot_with(&[("a", 9), ("b", 2)], &[("l", "a")]));
    assert!(
        stream.on_snapshot(changed).responses.is_empty(),
        "a is unsubscribed"
    );

    // Subscribing again sends a again: the client forgot it.
    let again = only(stream.on_request(subscribe(Endpoint, &["a"])));
    assert_eq!(names(&again), vec!["a"]);
}

#[test]
fn missing_names_are_reported_removed_then_sent_when_they_appear() {
    let mut stream = DeltaStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(two_clusters());
    let response = only(stream.on_request(subscribe(Route, &["nope"])));
    assert!(response.resources.is_empty());
    assert_eq!(response.removed_resources, vec!["nope"]);
    stream.on_request(ack(&response));

    let appeared = Arc::new(snapshot_with(&[("a", 1)], &[("nope", "a")]));
    let response = only(stream.on_snapshot(appeared));
    assert_eq!(names(&response), vec!["nope"]);
    assert!(response.removed_resources.is_empty());
}

#[test]
fn one_cla_change_is_one_resource() {
    let mut stream = synced(two_clusters());
    let changed = Arc::new(snapshot_with(&[("a", 9), ("b", 2)], &[("l", "a")]));
    let out = stream.on_snapshot(changed);
    assert_eq!(types_of(&out), vec![Endpoint]);
    assert_eq!(names(&only(out)), vec!["a"]);
}

#[test]
fn reconnect_with_initial_versions_gets_only_the_diff() {
    let before = two_clusters();
    let mut first = DeltaStream::new(StreamTypes::Aggregated);
    first.on_snapshot(before.clone());
    let held = versions(&only(first.on_request(subscribe(Cluster, &[]))));
    let held_cla = versions(&only(first.on_request(subscribe(Endpoint, &["a", "b"]))));

    // While disconnected: a's endpoints change, b goes away, c appears.
    let mut builder = Snapshot::builder();
    builder
        .add(Cluster, "a", &cluster("a"))
        .add(Endpoint, "a", &cla("a", 9))
        .add(Cluster, "c", &cluster("c"))
        .add(Endpoint, "c", &cla("c", 3));
    let after = Arc::new(builder.build().expect("consistent"));

    let mut second = DeltaStream::new(StreamTypes::Aggregated);
    second.on_snapshot(after);
    let mut request = subscribe(Cluster, &[]);
    request.initial_resource_versions = held;
    let cds = only(second.on_request(request));
    assert_eq!(names(&cds), vec!["c"], "a is unchanged");
    assert_eq!(cds.removed_resources, vec!["b"]);

    let mut request = subscribe(Endpoint, &["a", "b"]);
    request.initial_resource_versions = held_cla;
    let eds = only(second.on_request(request));
    assert_eq!(names(&eds), vec!["a"]);
    assert_eq!(eds.removed_resources, vec!["b"]);
}

/// Clusters `a` (with `alt_stat_name` = `a_tag`) and `c` (tagged `c_tag`), with endpoints.
fn tagged(a_tag: &str, c_tag: &str) -> Arc<Snapshot> {
    let mut builder = Snapshot::builder();
    for (name, tag) in [("a", a_tag), ("c", c_tag)] {
        let mut c = cluster(name);
        c.alt_stat_name = tag.to_string();
        builder
            .add(Cluster, name, &c)
            .add(Endpoint, name, &cla(name, 1));
    }
    Arc::new(builder.build().expect("consistent"))
}

#[test]
fn nack_restores_and_is_not_resent_until_the_resource_changes() {
    let mut stream = DeltaStream::new(StreamTypes::Single(Cluster));
    stream.on_snapshot(tagged("good", "one"));
    let first = only(stream.on_request(subscribe(Cluster, &[])));
    assert_eq!(stream.on_request(ack(&first)).acks, vec![Cluster]);

    let second = only(stream.on_snapshot(tagged("bad", "two")));
    assert_eq!(names(&second), vec!["a", "c"]);
    let out = stream.on_request(nack(&second));
    assert_eq!(out.nacks.len(), 1);
    assert_eq!(out.nacks[0].0, Cluster);
    assert_eq!(out.nacks[0].1.message, "rejected");
    assert_eq!(out.nacks[0].1.version, second.system_version_info);
    assert!(out.responses.is_empty());
    let status = &stream.status()[0];
    assert_eq!(
        status.acked_version.as_deref(),
        Some(first.system_version_info.as_str())
    );
    let recorded = status.last_nack.as_ref().expect("nack recorded");
    assert_eq!(recorded.message, "rejected");
    assert_eq!(recorded.version, second.system_version_info);

    assert!(
        stream
            .on_snapshot(tagged("bad", "two"))
            .responses
            .is_empty(),
        "no resend"
    );

    // c changes: only c goes out; a is still the rejected content.
    let third = only(stream.on_snapshot(tagged("bad", "three")));
    assert_eq!(names(&third), vec!["c"]);
    stream.on_request(ack(&third));

    // a changes again: it goes out.
    let fourth = only(stream.on_snapshot(tagged("better", "three")));
    assert_eq!(names(&fourth), vec!["a"]);

    // Back to what the client kept after the NACK: nothing to send.
    stream.on_request(nack(&fourth));
    assert!(
        stream
            .on_snapshot(tagged("good", "three"))
            .responses
            .is_empty()
    );
}

#[test]
fn unknown_nonce_is_ignored() {
    let mut stream = DeltaStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(two_clusters());
    let response = only(stream.on_request(subscribe(Cluster, &[])));
    let mut stale = nack(&response);
    stale.response_nonce = "999".into();
    let out = stream.on_request(stale);
    assert!(out.nacks.is_empty() && out.responses.is_empty());
    let unknown = Ignored::Nonce {
        ty: Cluster,
        nonce: "999".into(),
    };
    assert_eq!(out.ignored, Some(unknown));
    assert_eq!(stream.status()[0].last_nack, None);
    assert_eq!(stream.on_request(ack(&response)).acks, vec![Cluster]);
    // A second answer to the same nonce is unknown now.
    assert!(stream.on_request(ack(&response)).acks.is_empty());
}

#[test]
fn ads_pushes_in_order_and_defers_cluster_removal() {
    let before = Arc::new(snapshot_with(&[("a", 1), ("b", 2)], &[("l", "b")]));
    let mut stream = synced(before);
    // b goes away and the route moves to a; a new cluster c and listener m appear.
    let after = Arc::new(snapshot_with(
        &[("a", 5), ("c", 3)],
        &[("l", "a"), ("m", "c")],
    ));
    let out = stream.on_snapshot(after);
    assert_eq!(types_of(&out), vec![Cluster, Endpoint, Listener, Route]);
    let [cds, eds, lds, rds] = <[_; 4]>::try_from(all(out)).expect("four responses");
    assert_eq!(names(&cds), vec!["c"]);
    assert!(cds.removed_resources.is_empty(), "b held back");
    assert!(eds.removed_resources.is_empty(), "b's endpoints held back");

    assert!(stream.on_request(ack(&cds)).responses.is_empty());
    assert!(stream.on_request(ack(&lds)).responses.is_empty());
    let out = stream.on_request(ack(&rds));
    assert_eq!(types_of(&out), vec![Cluster, Endpoint]);
    assert_eq!(out.responses[0].removed_resources, vec!["b"]);
    assert_eq!(out.responses[1].removed_resources, vec!["b"]);
}

#[test]
fn delta_serves_secrets_by_name_and_pushes_a_rotated_one() {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
    let snapshot = |key: &str| {
        let mut b = Snapshot::builder();
        b.add_secret(&Secret {
            name: "cert".into(),
            r#type: Some(secret::Type::TlsCertificate(
                envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::TlsCertificate {
                    private_key: Some(envoy_types::pb::envoy::config::core::v3::DataSource {
                        specifier: Some(
                            envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString(
                                key.to_string(),
                            ),
                        ),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )),
        });
        Arc::new(b.build().expect("consistent"))
    };
    let mut stream = DeltaStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(snapshot("k1"));
    let out = stream.on_request(DeltaDiscoveryRequest {
        type_url: ResourceType::Secret.type_url().into(),
        resource_names_subscribe: vec!["cert".into()],
        ..Default::default()
    });
    let first = only(out);
    assert_eq!(first.resources.len(), 1);
    assert_eq!(first.resources[0].name, "cert");
    let version = first.resources[0].version.clone();
    let nonce = first.nonce.clone();
    stream.on_request(DeltaDiscoveryRequest {
        type_url: ResourceType::Secret.type_url().into(),
        response_nonce: nonce,
        ..Default::default()
    });
    let rotated = only(stream.on_snapshot(snapshot("k2")));
    assert_eq!(rotated.resources[0].name, "cert");
    assert_ne!(rotated.resources[0].version, version);
}

/// A snapshot of one cluster served in the wildcard, one by name only, the `mesh-outbound`
/// route configuration taking its virtual hosts over VHDS, and those virtual hosts.
fn on_demand_snapshot(vhosts: &[&str]) -> Arc<Snapshot> {
    use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, Vhds, VirtualHost};
    let mut b = Snapshot::builder();
    b.add_route(&RouteConfiguration {
        name: "mesh-outbound".into(),
        vhds: Some(Vhds::default()),
        ..Default::default()
    })
    .add_cluster(&cluster("always"))
    .add_load_assignment(&cla("always", 1))
    .add_cluster(&cluster("lazy"))
    .add_load_assignment(&cla("lazy", 2))
    .named_only(Cluster, ["lazy".to_string()]);
    for name in vhosts {
        b.add_virtual_host(&VirtualHost {
            name: name.to_string(),
            domains: vec![name.rsplit('/').next().unwrap_or_default().to_string()],
            ..Default::default()
        });
    }
    Arc::new(b.build().expect("consistent"))
}

#[test]
fn wildcard_leaves_out_named_only_clusters_until_asked_for_by_name() {
    let mut stream = DeltaStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(on_demand_snapshot(&[]));
    let first = only(stream.on_request(subscribe(Cluster, &[])));
    assert_eq!(names(&first), ["always"]);
    stream.on_request(ack(&first));
    // On-demand CDS adds a named subscription to the same type.
    let lazy = only(stream.on_request(subscribe(Cluster, &["lazy"])));
    assert_eq!(names(&lazy), ["lazy"]);
    stream.on_request(ack(&lazy));
    // Unknown names are reported removed (Envoy's on-demand CDS fails the request at once).
    let missing = only(stream.on_request(subscribe(Cluster, &["nope"])));
    assert!(missing.resources.is_empty());
    assert_eq!(missing.removed_resources, ["nope"]);
    stream.on_request(ack(&missing));
    // Unsubscribed, then asked for again: sent again.
    assert!(
        stream
            .on_request(unsubscribe(Cluster, &["lazy"]))
            .responses
            .is_empty()
    );
    let again = only(stream.on_request(subscribe(Cluster, &["lazy"])));
    assert_eq!(names(&again), ["lazy"]);
}

#[test]
fn virtual_hosts_carry_their_alias_and_unknown_ones_get_an_empty_aliased_answer() {
    use ResourceType::VirtualHost;
    let mut stream = DeltaStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(on_demand_snapshot(&["mesh-outbound/a"]));
    // Envoy's first VHDS request names nothing: that is not a wildcard.
    let first = only(stream.on_request(subscribe(VirtualHost, &[])));
    assert!(first.resources.is_empty(), "{first:?}");
    stream.on_request(ack(&first));
    let known = only(stream.on_request(subscribe(VirtualHost, &["mesh-outbound/a"])));
    assert_eq!(names(&known), ["mesh-outbound/a"]);
    assert_eq!(known.resources[0].aliases, ["mesh-outbound/a"]);
    assert!(known.resources[0].resource.is_some());
    stream.on_request(ack(&known));

    let unknown = only(stream.on_request(subscribe(VirtualHost, &["mesh-outbound/b"])));
    assert!(unknown.removed_resources.is_empty());
    assert_eq!(unknown.resources.len(), 1);
    assert_eq!(unknown.resources[0].aliases, ["mesh-outbound/b"]);
    assert!(unknown.resources[0].resource.is_none());
    stream.on_request(ack(&unknown));

    // The host appears later: the subscription still stands, so it is pushed.
    let out = stream.on_snapshot(on_demand_snapshot(&["mesh-outbound/a", "mesh-outbound/b"]));
    let later = only(out);
    assert_eq!(names(&later), ["mesh-outbound/b"]);
    assert!(later.resources[0].resource.is_some());
    stream.on_request(ack(&later));

    // And it is removed by name when it goes away.
    let gone = only(stream.on_snapshot(on_demand_snapshot(&["mesh-outbound/a"])));
    assert_eq!(gone.removed_resources, ["mesh-outbound/b"]);
}

#[test]
fn first_vhds_request_is_answered_empty_in_the_route_configuration_namespace() {
    use ResourceType::VirtualHost;
    let mut stream = DeltaStream::new(StreamTypes::Aggregated);
    // Asked before there is a snapshot: answered once there is one.
    assert!(
        stream
            .on_request(subscribe(VirtualHost, &[]))
            .responses
            .is_empty()
    );
    let snapshot = on_demand_snapshot(&["mesh-outbound/a"]);
    let first = only(stream.on_snapshot(snapshot.clone()));
    assert_eq!(first.type_url, VirtualHost.type_url());
    assert!(!first.nonce.is_empty());
    assert_eq!(first.system_version_info, snapshot.version(VirtualHost));
    // Not a wildcard: no virtual host. Envoy routes VHDS updates by namespace (the route
    // configuration name): only a name in it completes Envoy's VHDS init.
    assert!(first.resources.is_empty(), "{first:?}");
    assert_eq!(first.removed_resources, ["mesh-outbound/"]);
    assert_eq!(stream.on_request(ack(&first)).acks, vec![VirtualHost]);
    // Only the first answer names it.
    let known = only(stream.on_request(subscribe(VirtualHost, &["mesh-outbound/a"])));
    assert_eq!(names(&known), ["mesh-outbound/a"]);
    assert!(known.removed_resources.is_empty());
}

#[test]
fn first_vhds_answer_names_nothing_without_a_vhds_route_configuration() {
    use ResourceType::VirtualHost;
    let mut stream = DeltaStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(two_clusters());
    let first = only(stream.on_request(subscribe(VirtualHost, &[])));
    assert!(first.resources.is_empty());
    assert!(first.removed_resources.is_empty());
}

#[test]
fn a_type_whose_content_did_not_change_is_not_planned_again() {
    let mut stream = synced(two_clusters());
    let changed = Arc::new(snapshot_with(&[("a", 9), ("b", 2)], &[("l", "a")]));
    let out = stream.on_snapshot(changed.clone());
    assert_eq!(types_of(&out), vec![Endpoint]);
    for ty in [Cluster, Listener, Route] {
        assert!(stream.types[&ty].quiet.at(changed.version(ty)), "{ty}");
    }
    // A subscription change is planned again: the new name does not exist.
    let answer = only(stream.on_request(subscribe(Endpoint, &["c"])));
    assert_eq!(answer.removed_resources, ["c"]);
}

/// Random snapshots, subscriptions, ACKs and NACKs (also of old and unknown nonces): the
/// "nothing changed" memo never hides a push (`TypeState::plan` checks it in debug builds), and
/// every step leaves the stream answering consistently.
#[test]
fn the_quiet_memo_never_hides_a_push() {
    let pool = snapshot_pool();
    let names = ["a", "b", "c", "l", "m", "*"];
    for seed in 1..=20u64 {
        let mut steps = Steps::new(seed);
        let mut stream = DeltaStream::new(StreamTypes::Aggregated);
        let mut sent: Vec<DeltaDiscoveryResponse> = Vec::new();
        for _ in 0..300 {
            let ty = [Cluster, Endpoint, Listener, Route][steps.below(4)];
            let name = names[steps.below(names.len())];
            let out = match steps.below(6) {
                0 => stream.on_snapshot(pool[steps.below(pool.len())].clone()),
                1 => stream.on_request(subscribe(ty, &[name])),
                2 => stream.on_request(unsubscribe(ty, &[name])),
                3 | 4 if !sent.is_empty() => {
                    let response = sent.remove(steps.below(sent.len()));
                    if steps.below(3) == 0 {
                        stream.on_request(nack(&response))
                    } else {
                        stream.on_request(ack(&response))
                    }
                }
                _ => stream.on_request(DeltaDiscoveryRequest {
                    type_url: ty.type_url().into(),
                    response_nonce: "999999".into(),
                    ..Default::default()
                }),
            };
            sent.extend(all(out));
        }
    }
}

/// `snapshots` published one after the other, and a stream synced on the first.
fn synced_on_first(snapshots: Vec<Snapshot>) -> (DeltaStream, Vec<Arc<Snapshot>>) {
    let chain = published(snapshots);
    (synced(chain[0].clone()), chain)
}

#[test]
fn a_stream_one_snapshot_behind_plans_from_the_change_set() {
    let (mut stream, chain) = synced_on_first(vec![
        snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9), ("b", 2)], &[("l", "a")]),
    ]);
    let before = stream.plan_counts();
    let response = only(stream.on_snapshot(chain[1].clone()));
    assert_eq!(response.type_url, Endpoint.type_url());
    assert_eq!(names(&response), vec!["a"]);
    assert_eq!(response.system_version_info, chain[1].version(Endpoint));
    let after = stream.plan_counts();
    assert_eq!(after.full, before.full, "no full diff");
    assert!(after.from_changes > before.from_changes);
    assert!(stream.on_request(ack(&response)).responses.is_empty());
    assert_eq!(stream.plan_counts(), after, "the ACK plans nothing");
}

#[test]
fn a_stream_two_snapshots_behind_diffs_in_full() {
    let (mut stream, chain) = synced_on_first(vec![
        snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9), ("b", 7)], &[("l", "a")]),
    ]);
    let before = stream.plan_counts();
    let response = only(stream.on_snapshot(chain[2].clone()));
    assert_eq!(names(&response), vec!["a", "b"]);
    let after = stream.plan_counts();
    assert_eq!(after.from_changes, before.from_changes);
    assert!(after.full > before.full);
}

#[test]
fn a_subscription_change_is_planned_in_full_and_the_next_snapshot_from_its_changes() {
    let (mut stream, chain) = synced_on_first(vec![
        snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9), ("b", 8)], &[("l", "a")]),
    ]);
    let before = stream.plan_counts();
    // An unsubscription is not answered, but planned in full.
    assert!(
        stream
            .on_request(unsubscribe(Endpoint, &["b"]))
            .responses
            .is_empty()
    );
    assert_eq!(stream.plan_counts().full, before.full + 1);
    let counts = stream.plan_counts();
    let response = only(stream.on_snapshot(chain[1].clone()));
    assert_eq!(names(&response), vec!["a"], "b is no longer subscribed");
    assert_eq!(stream.plan_counts().full, counts.full);
}

#[test]
fn removals_come_from_the_change_set() {
    let (mut stream, chain) = synced_on_first(vec![
        snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 1)], &[("l", "a")]),
    ]);
    let before = stream.plan_counts();
    let out = all(stream.on_snapshot(chain[1].clone()));
    let removed: Vec<_> = out
        .iter()
        .map(|r| (r.type_url.as_str(), r.removed_resources.clone()))
        .collect();
    assert_eq!(
        removed,
        vec![
            (Cluster.type_url(), vec!["b".to_string()]),
            (Endpoint.type_url(), vec!["b".to_string()]),
        ]
    );
    assert!(out.iter().all(|r| r.resources.is_empty()));
    assert_eq!(stream.plan_counts().full, before.full);
}

#[test]
fn a_nack_is_followed_by_a_full_diff() {
    let (mut stream, chain) = synced_on_first(vec![
        snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9), ("b", 4)], &[("l", "a")]),
    ]);
    let rejected = only(stream.on_snapshot(chain[1].clone()));
    let before = stream.plan_counts();
    assert_eq!(stream.on_request(nack(&rejected)).nacks.len(), 1);
    assert_eq!(stream.plan_counts().full, before.full + 1);
    let response = only(stream.on_snapshot(chain[2].clone()));
    assert_eq!(
        names(&response),
        vec!["b"],
        "a's rejected version is not resent"
    );
    assert_eq!(stream.plan_counts().full, before.full + 1);
}

/// Random published and unpublished snapshots (sometimes skipping one), subscriptions,
/// unsubscriptions, ACKs and NACKs, fed to two streams: one gets the published snapshots
/// (with change sets), its twin the same snapshots unpublished (always a full diff). They
/// answer the same.
#[test]
fn change_set_plans_answer_as_full_diffs_do() {
    let pool = snapshot_pool();
    let names = ["a", "b", "c", "l", "m", "*"];
    let mut from_changes = 0;
    for seed in 1..=20u64 {
        let mut steps = Steps::new(seed);
        let cache = crate::Cache::new();
        let mut stream = DeltaStream::new(StreamTypes::Aggregated);
        let mut twin = DeltaStream::new(StreamTypes::Aggregated);
        let mut sent: Vec<DeltaDiscoveryResponse> = Vec::new();
        for _ in 0..300 {
            let ty = [Cluster, Endpoint, Listener, Route][steps.below(4)];
            let name = names[steps.below(names.len())];
            let (out, twin_out) = match steps.below(6) {
                0 => {
                    if steps.below(4) == 0 {
                        let skipped = pool[steps.below(pool.len())].as_ref().clone();
                        cache.set("g", skipped);
                    }
                    let snapshot = pool[steps.below(pool.len())].clone();
                    cache.set("g", snapshot.as_ref().clone());
                    let published = cache.get("g").expect("set");
                    (stream.on_snapshot(published), twin.on_snapshot(snapshot))
                }
                1 => {
                    let request = subscribe(ty, &[name]);
                    (stream.on_request(request.clone()), twin.on_request(request))
                }
                2 => {
                    let request = unsubscribe(ty, &[name]);
                    (stream.on_request(request.clone()), twin.on_request(request))
                }
                3 | 4 if !sent.is_empty() => {
                    let response = sent.remove(steps.below(sent.len()));
                    let request = if steps.below(3) == 0 {
                        nack(&response)
                    } else {
                        ack(&response)
                    };
                    (stream.on_request(request.clone()), twin.on_request(request))
                }
                _ => {
                    let request = DeltaDiscoveryRequest {
                        type_url: ty.type_url().into(),
                        response_nonce: "999999".into(),
                        ..Default::default()
                    };
                    (stream.on_request(request.clone()), twin.on_request(request))
                }
            };
            let out = all(out);
            assert_eq!(out, all(twin_out), "seed {seed}");
            sent.extend(out);
        }
        assert_eq!(twin.plan_counts().from_changes, 0);
        from_changes += stream.plan_counts().from_changes;
    }
    assert!(
        from_changes > 100,
        "the change sets were used {from_changes} times"
    );
}

#[test]
fn a_nack_naming_one_cluster_resends_the_others_at_once() {
    let mut stream = DeltaStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(Arc::new(snapshot_with(&[("api", 1), ("api-v2", 2)], &[])));
    let first = only(stream.on_request(subscribe(Cluster, &[])));
    assert_eq!(names(&first), ["api", "api-v2"]);
    // A first sync of every resource keeps no list of its own until it is answered.
    let pending = stream.types[&Cluster].pending.back().map(|p| &p.sent);
    assert!(matches!(pending, Some(Sent::All(_))), "{pending:?}");
    let mut refusal = nack(&first);
    if let Some(status) = refusal.error_detail.as_mut() {
        status.message = "cluster 'api-v2': bad".into();
    }
    let out = stream.on_request(refusal);
    assert_eq!(out.nacks.len(), 1);
    let resent = only(out);
    assert_eq!(
        names(&resent),
        ["api"],
        "the cluster not named goes out again"
    );
    assert!(stream.on_request(ack(&resent)).responses.is_empty());
}

#[test]
fn streams_holding_every_resource_share_the_snapshots_maps() {
    let (mut stream, chain) = synced_on_first(vec![
        snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9)], &[("l", "a")]),
    ]);
    let other = synced(chain[0].clone());
    for ty in [Cluster, Endpoint, Listener, Route] {
        for s in [&stream, &other] {
            assert!(
                s.types[&ty]
                    .client
                    .is_shared_with(chain[0].all_versions(ty)),
                "{ty}"
            );
        }
    }
    for s in [&stream, &other] {
        assert!(Arc::ptr_eq(
            &s.types[&Endpoint].names,
            chain[0].all_names(Endpoint)
        ));
    }

    // An endpoint change planned from the change set: the next snapshot's map, not a copy.
    let before = stream.plan_counts();
    let response = only(stream.on_snapshot(chain[1].clone()));
    assert_eq!(names(&response), vec!["a"]);
    assert!(stream.plan_counts().from_changes > before.from_changes);
    assert!(
        stream.types[&Endpoint]
            .client
            .is_shared_with(chain[1].all_versions(Endpoint))
    );
    // Rejected: the stream's own map again, holding the version the client kept.
    stream.on_request(nack(&response));
    let client = &stream.types[&Endpoint].client;
    assert!(!client.is_shared_with(chain[1].all_versions(Endpoint)));
    assert_eq!(&*client["a"], chain[0].resources(Endpoint)["a"].version());

    // Removals from a change set: shared again with the snapshot that has them removed.
    let mut stream = synced(chain[1].clone());
    let out = all(stream.on_snapshot(chain[2].clone()));
    assert!(
        out.iter()
            .any(|r| r.removed_resources == vec!["b".to_string()])
    );
    for ty in [Cluster, Endpoint] {
        assert!(
            stream.types[&ty]
                .client
                .is_shared_with(chain[2].all_versions(ty)),
            "{ty}"
        );
    }

    // Subscribed to some names only: its own set and map.
    let mut some = DeltaStream::new(StreamTypes::Aggregated);
    some.on_snapshot(chain[0].clone());
    only(some.on_request(subscribe(Endpoint, &["b"])));
    let state = &some.types[&Endpoint];
    assert!(!state.client.is_shared_with(chain[0].all_versions(Endpoint)));
    assert!(!Arc::ptr_eq(&state.names, chain[0].all_names(Endpoint)));
    // Subscribing to the rest shares the snapshot's set.
    only(some.on_request(subscribe(Endpoint, &["a"])));
    assert!(Arc::ptr_eq(
        &some.types[&Endpoint].names,
        chain[0].all_names(Endpoint)
    ));
    assert!(
        some.types[&Endpoint]
            .client
            .is_shared_with(chain[0].all_versions(Endpoint))
    );
}

//! Unit tests of the SotW state machine: requests in, responses out.

use super::*;
use crate::stream::mentions;
use crate::testing::*;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status;

use ResourceType::{Cluster, Endpoint, Listener, Route};

fn request(ty: ResourceType, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.to_string(),
        node: Some(Node {
            id: "sidecar-1".into(),
            cluster: "web".into(),
            ..Default::default()
        }),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        type_url: ty.type_url().to_string(),
        response_nonce: nonce.to_string(),
        ..Default::default()
    }
}

fn ack(ty: ResourceType, names: &[&str], response: &DiscoveryResponse) -> DiscoveryRequest {
    request(ty, names, &response.version_info, &response.nonce)
}

fn nack(ty: ResourceType, names: &[&str], response: &DiscoveryResponse) -> DiscoveryRequest {
    DiscoveryRequest {
        error_detail: Some(Status {
            code: 3,
            message: "bad cluster".into(),
            details: vec![],
        }),
        ..request(ty, names, "", &response.nonce)
    }
}

/// The one response of a step, as the prost message it encodes (see `crate::response`).
fn only(out: Output<SotwResponse>) -> DiscoveryResponse {
    assert_eq!(out.responses.len(), 1, "expected one response: {out:?}");
    out.responses
        .into_iter()
        .next()
        .expect("one response")
        .into()
}

/// Every response of a step, as prost messages.
fn all(out: Output<SotwResponse>) -> Vec<DiscoveryResponse> {
    out.responses.into_iter().map(Into::into).collect()
}

fn types_of(out: &Output<SotwResponse>) -> Vec<ResourceType> {
    out.responses.iter().map(|r| r.ty).collect()
}

fn two_clusters() -> Arc<Snapshot> {
    Arc::new(snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]))
}

/// An ADS stream subscribed to all four types, every response ACKed.
fn synced(snapshot: Arc<Snapshot>) -> (SotwStream, BTreeMap<ResourceType, DiscoveryResponse>) {
    let mut stream = SotwStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(snapshot);
    let mut last = BTreeMap::new();
    for (ty, names) in [
        (Cluster, vec![]),
        (Endpoint, vec!["a", "b"]),
        (Listener, vec![]),
        (Route, vec!["l"]),
    ] {
        let response = only(stream.on_request(request(ty, &names, "", "")));
        let out = stream.on_request(ack(ty, &names, &response));
        assert_eq!(out.acks, vec![ty]);
        assert!(out.responses.is_empty());
        last.insert(ty, response);
    }
    (stream, last)
}

#[test]
fn nothing_is_served_before_the_first_snapshot() {
    let mut stream = SotwStream::new(StreamTypes::Aggregated);
    let out = stream.on_request(request(Cluster, &[], "", ""));
    assert!(out.responses.is_empty());

    let snapshot = two_clusters();
    let response = only(stream.on_snapshot(snapshot.clone()));
    assert_eq!(response.type_url, Cluster.type_url());
    assert_eq!(response.version_info, snapshot.version(Cluster));
    assert_eq!(response_names(&response), vec!["a", "b"]);
    assert!(!response.nonce.is_empty());
}

#[test]
fn first_request_is_answered_from_the_snapshot() {
    let mut stream = SotwStream::new(StreamTypes::Aggregated);
    assert!(stream.on_snapshot(two_clusters()).responses.is_empty());
    let response = only(stream.on_request(request(Listener, &[], "", "")));
    assert_eq!(response_names(&response), vec!["l"]);
}

#[test]
fn ack_records_the_version_and_sends_nothing() {
    let mut stream = SotwStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(two_clusters());
    let response = only(stream.on_request(request(Cluster, &[], "", "")));
    let out = stream.on_request(ack(Cluster, &[], &response));
    assert_eq!(out.acks, vec![Cluster]);
    assert!(out.responses.is_empty());
    let status = stream.status();
    assert_eq!(
        status[0].acked_version.as_deref(),
        Some(response.version_info.as_str())
    );
    assert_eq!(status[0].sent_version, status[0].acked_version);
}

#[test]
fn nack_is_recorded_and_not_resent_until_a_new_version() {
    let mut stream = SotwStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(two_clusters());
    let first = only(stream.on_request(request(Cluster, &[], "", "")));
    stream.on_request(ack(Cluster, &[], &first));

    let bad = Arc::new(snapshot_with(
        &[("a", 1), ("b", 2), ("c", 3)],
        &[("l", "a")],
    ));
    let second = only(stream.on_snapshot(bad));
    let out = stream.on_request(nack(Cluster, &[], &second));
    assert_eq!(out.nacks.len(), 1);
    assert_eq!(out.nacks[0].0, Cluster);
    assert_eq!(out.nacks[0].1.message, "bad cluster");
    assert_eq!(out.nacks[0].1.version, second.version_info);
    assert!(
        out.responses.is_empty(),
        "a NACK is not answered with the same version"
    );

    let status = &stream.status()[0];
    assert_eq!(
        status.acked_version.as_deref(),
        Some(first.version_info.as_str())
    );
    let recorded = status.last_nack.as_ref().expect("nack recorded");
    assert_eq!(recorded.version, second.version_info);
    assert_eq!(recorded.message, "bad cluster");

    // The same content again (a new snapshot object) is not resent.
    let again = Arc::new(snapshot_with(
        &[("a", 1), ("b", 2), ("c", 3)],
        &[("l", "a")],
    ));
    assert!(stream.on_snapshot(again).responses.is_empty());

    // A new version is.
    let fixed = Arc::new(snapshot_with(
        &[("a", 1), ("b", 2), ("d", 3)],
        &[("l", "a")],
    ));
    let third = only(stream.on_snapshot(fixed));
    assert_eq!(response_names(&third), vec!["a", "b", "d"]);
}

#[test]
fn stale_nonce_is_ignored() {
    let mut stream = SotwStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(two_clusters());
    let first = only(stream.on_request(request(Cluster, &[], "", "")));
    let second = only(stream.on_snapshot(Arc::new(snapshot_of(&["a"], &[]))));
    assert_ne!(first.nonce, second.nonce);

    let out = stream.on_request(ack(Cluster, &[], &first));
    assert!(out.acks.is_empty() && out.responses.is_empty());
    let stale = Ignored::Nonce {
        ty: Cluster,
        nonce: first.nonce.clone(),
    };
    assert_eq!(out.ignored, Some(stale));
    let out = stream.on_request(nack(Cluster, &[], &first));
    assert!(out.nacks.is_empty() && out.responses.is_empty());
    assert_eq!(stream.status()[0].acked_version, None);
    assert_eq!(stream.status()[0].last_nack, None);

    let out = stream.on_request(ack(Cluster, &[], &second));
    assert_eq!(out.acks, vec![Cluster]);
}

#[test]
fn wildcard_cds_and_lds_carry_everything() {
    let (mut stream, _) = synced(two_clusters());
    let next = Arc::new(snapshot_with(
        &[("a", 1), ("b", 2), ("c", 3)],
        &[("l", "a"), ("m", "a")],
    ));
    let out = stream.on_snapshot(next);
    let by_type: BTreeMap<_, _> = all(out)
        .iter()
        .map(|r| (ResourceType::from_type_url(&r.type_url), response_names(r)))
        .collect();
    assert_eq!(by_type[&Some(Cluster)], vec!["a", "b", "c"]);
    assert_eq!(by_type[&Some(Listener)], vec!["l", "m"]);
    // Not subscribed: c's endpoints and m's routes are not pushed.
    assert!(!by_type.contains_key(&Some(Endpoint)));
    assert!(!by_type.contains_key(&Some(Route)));
}

#[test]
fn eds_is_by_name_and_missing_names_are_answered() {
    let mut stream = SotwStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(two_clusters());
    let response = only(stream.on_request(request(Endpoint, &["b"], "", "")));
    assert_eq!(response_names(&response), vec!["b"]);

    let mut other = SotwStream::new(StreamTypes::Aggregated);
    other.on_snapshot(two_clusters());
    let response = only(other.on_request(request(Endpoint, &["nope"], "", "")));
    assert!(response.resources.is_empty(), "answered, with nothing");
    other.on_request(ack(Endpoint, &["nope"], &response));

    let appeared = Arc::new(snapshot_with(&[("a", 1), ("nope", 2)], &[]));
    let pushed = only(other.on_snapshot(appeared));
    assert_eq!(response_names(&pushed), vec!["nope"]);
}

#[test]
fn a_star_among_the_names_subscribes_to_every_resource() {
    let mut stream = SotwStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(two_clusters());
    let first = only(stream.on_request(request(Endpoint, &["a"], "", "")));
    assert_eq!(response_names(&first), vec!["a"]);
    // The same request with "*" added: every assignment, though "a" is held already.
    let every = only(stream.on_request(ack(Endpoint, &["*", "a"], &first)));
    assert_eq!(response_names(&every), vec!["b"]);
    let three = Arc::new(snapshot_with(&[("a", 1), ("b", 2), ("c", 3)], &[]));
    let pushed = only(stream.on_snapshot(three));
    assert_eq!(response_names(&pushed), vec!["c"], "a new name, pushed");
}

#[test]
fn subscribe_and_unsubscribe_are_answered() {
    let mut stream = SotwStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(two_clusters());
    let first = only(stream.on_request(request(Endpoint, &["a"], "", "")));
    assert!(
        stream
            .on_request(ack(Endpoint, &["a"], &first))
            .responses
            .is_empty()
    );

    let added = only(stream.on_request(ack(Endpoint, &["a", "b"], &first)));
    assert_eq!(
        response_names(&added),
        vec!["b"],
        "only what the client lacks"
    );
    assert_ne!(added.version_info, first.version_info);
    assert!(
        stream
            .on_request(ack(Endpoint, &["a", "b"], &added))
            .responses
            .is_empty()
    );

    let removed = only(stream.on_request(ack(Endpoint, &["b"], &added)));
    assert!(removed.resources.is_empty());
    assert_ne!(removed.version_info, added.version_info);

    // a is no longer subscribed: its change is not pushed.
    let changed = Arc::new(snapshot_with(&[("a", 9), ("b", 2)], &[("l", "a")]));
    assert!(stream.on_snapshot(changed).responses.is_empty());
}

#[test]
fn one_cla_change_pushes_only_that_cla() {
    let (mut stream, _) = synced(two_clusters());
    let mut only_b = SotwStream::new(StreamTypes::Aggregated);
    only_b.on_snapshot(two_clusters());
    let response = only(only_b.on_request(request(Endpoint, &["b"], "", "")));
    only_b.on_request(ack(Endpoint, &["b"], &response));

    let changed = Arc::new(snapshot_with(&[("a", 9), ("b", 2)], &[("l", "a")]));
    let out = stream.on_snapshot(changed.clone());
    assert_eq!(types_of(&out), vec![Endpoint]);
    assert_eq!(response_names(&only(out)), vec!["a"]);
    assert!(only_b.on_snapshot(changed).responses.is_empty());
}

#[test]
fn ads_pushes_in_make_before_break_order() {
    let (mut stream, _) = synced(two_clusters());
    let next = Arc::new(snapshot_with(
        &[("a", 5), ("b", 6), ("c", 7)],
        &[("l", "c"), ("m", "c")],
    ));
    let out = stream.on_snapshot(next);
    assert_eq!(types_of(&out), vec![Cluster, Endpoint, Listener, Route]);

    let next = Arc::new(snapshot_with(
        &[("a", 8), ("b", 6), ("c", 7)],
        &[("l", "b")],
    ));
    let out = stream.on_snapshot(next);
    assert_eq!(types_of(&out), vec![Endpoint, Listener, Route]);
}

#[test]
fn cluster_removal_waits_for_routes_to_be_answered() {
    let before = Arc::new(snapshot_with(&[("a", 1), ("b", 2)], &[("l", "b")]));
    let (mut stream, _) = synced(before);

    // b goes away and the route moves to a.
    let after = Arc::new(snapshot_with(&[("a", 1)], &[("l", "a")]));
    let out = stream.on_snapshot(after.clone());
    // The clusters the client holds (a, b) are kept: nothing to send for CDS yet.
    assert_eq!(types_of(&out), vec![Route]);
    let rds = only(out);
    assert!(
        stream.on_snapshot(after.clone()).responses.is_empty(),
        "still waiting"
    );

    let out = stream.on_request(ack(Route, &["l"], &rds));
    let last = only(out);
    assert_eq!(last.type_url, Cluster.type_url());
    assert_eq!(response_names(&last), vec!["a"]);
    assert_eq!(last.version_info, after.version(Cluster));
}

#[test]
fn cluster_removal_with_additions_keeps_removed_clusters_until_routes_are_answered() {
    let before = Arc::new(snapshot_with(&[("a", 1), ("b", 2)], &[("l", "b")]));
    let (mut stream, _) = synced(before);
    let after = Arc::new(snapshot_with(&[("a", 1), ("c", 3)], &[("l", "c")]));
    let out = stream.on_snapshot(after.clone());
    assert_eq!(types_of(&out), vec![Cluster, Route]);
    let [cds, rds] = <[_; 2]>::try_from(all(out)).expect("two responses");
    assert_eq!(response_names(&cds), vec!["a", "b", "c"], "b kept, c added");
    assert!(
        stream
            .on_request(ack(Cluster, &[], &cds))
            .responses
            .is_empty()
    );
    // A NACK of the routes also releases the removal.
    let last = only(stream.on_request(nack(Route, &["l"], &rds)));
    assert_eq!(response_names(&last), vec!["a", "c"]);
}

#[test]
fn cluster_removal_without_routing_change_is_immediate() {
    let before = Arc::new(snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]));
    let (mut stream, _) = synced(before);
    let after = Arc::new(snapshot_with(&[("a", 1)], &[("l", "a")]));
    let response = only(stream.on_snapshot(after));
    assert_eq!(response_names(&response), vec!["a"]);
}

#[test]
fn per_type_stream_serves_only_its_type() {
    let mut stream = SotwStream::new(StreamTypes::Single(Cluster));
    stream.on_snapshot(two_clusters());
    let out = stream.on_request(request(Listener, &[], "", ""));
    assert!(out.responses.is_empty());
    let not_served = Ignored::Type(Listener.type_url().to_string());
    assert_eq!(out.ignored, Some(not_served));
    let response = only(stream.on_request(request(Cluster, &[], "", "")));
    assert_eq!(response_names(&response), vec!["a", "b"]);
    // No deferred removal outside ADS.
    stream.on_request(ack(Cluster, &[], &response));
    let response = only(stream.on_snapshot(Arc::new(snapshot_of(&["a"], &[]))));
    assert_eq!(response_names(&response), vec!["a"]);
}

#[test]
fn a_new_stream_gets_the_full_state() {
    let (_, _) = synced(two_clusters());
    let mut again = SotwStream::new(StreamTypes::Aggregated);
    again.on_snapshot(two_clusters());
    // Envoy reconnecting sends its last accepted version with an empty nonce.
    let cds = only(again.on_request(request(Cluster, &[], "old", "")));
    assert_eq!(response_names(&cds), vec!["a", "b"]);
    let eds = only(again.on_request(request(Endpoint, &["a", "b"], "old", "")));
    assert_eq!(response_names(&eds), vec!["a", "b"]);
}

/// The stream and its status row key names by the snapshot's own `Arc<str>`s, and a type whose
/// content did not change is not planned again, while a real change still goes out after that.
#[test]
fn names_are_shared_and_unchanged_content_is_not_replanned() {
    let snapshot = two_clusters();
    let (mut stream, last) = synced(snapshot.clone());
    let status = stream.status();
    let eds = status
        .iter()
        .find(|t| t.resource_type() == Some(Endpoint))
        .and_then(|t| t.names.clone())
        .expect("by-name EDS status");
    let resources = snapshot.resources(Endpoint);
    for name in eds.iter() {
        assert!(
            Arc::ptr_eq(name, resources[&**name].shared_name()),
            "{name}"
        );
    }
    assert!(Arc::ptr_eq(&eds, &stream.types[&Endpoint].names));

    // The same content in a new snapshot: nothing to send, and the memo records it.
    let same = Arc::new(snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]));
    assert!(stream.on_snapshot(same.clone()).responses.is_empty());
    assert!(stream.types[&Endpoint].quiet.at(same.version(Endpoint)));
    // An ACK repeating the names keeps the memo and answers nothing.
    let again = ack(Endpoint, &["a", "b"], &last[&Endpoint]);
    assert!(stream.on_request(again).responses.is_empty());
    // A changed assignment is still pushed, and only it.
    let changed = Arc::new(snapshot_with(&[("a", 1), ("b", 3)], &[("l", "a")]));
    let out = stream.on_snapshot(changed);
    assert_eq!(types_of(&out), vec![Endpoint]);
    assert_eq!(response_names(&only(out)), vec!["b"]);
    assert_eq!(stream.types[&Endpoint].quiet, Quiet::default());
}

/// A snapshot with `two_clusters`' resources plus SDS secrets `cert` (holding `key`) and
/// `bundle`.
fn with_secrets(key: &str) -> Arc<Snapshot> {
    use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        Secret, TlsCertificate, secret,
    };
    let inline = |s: &str| DataSource {
        specifier: Some(Specifier::InlineString(s.to_string())),
        ..Default::default()
    };
    let mut b = Snapshot::builder();
    b.add_cluster(&cluster("a"))
        .add_load_assignment(&cla("a", 1))
        .add_listener(&listener("l", "l"))
        .add_route(&route_config("l", "a"));
    for name in ["cert", "bundle"] {
        b.add_secret(&Secret {
            name: name.to_string(),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                private_key: Some(inline(&format!("{name}-{key}"))),
                ..Default::default()
            })),
        });
    }
    Arc::new(b.build().expect("consistent"))
}

#[test]
fn secrets_are_served_by_name_and_a_rotation_pushes_only_the_changed_secret() {
    let secret = ResourceType::Secret;
    let mut stream = SotwStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(with_secrets("k1"));
    let first = only(stream.on_request(request(secret, &["cert"], "", "")));
    assert_eq!(first.type_url, secret.type_url());
    assert_eq!(
        response_names(&first),
        ["cert"],
        "only the secret asked for"
    );
    assert!(
        stream
            .on_request(ack(secret, &["cert"], &first))
            .responses
            .is_empty()
    );
    // A new key for the same name: one response with the new version.
    let out = stream.on_snapshot(with_secrets("k2"));
    assert_eq!(types_of(&out), [secret]);
    let rotated = only(out);
    assert_eq!(response_names(&rotated), ["cert"]);
    assert_ne!(rotated.version_info, first.version_info);
    // Unchanged: nothing.
    assert!(stream.on_snapshot(with_secrets("k2")).responses.is_empty());
}

/// Random snapshots, subscriptions, ACKs, NACKs and stale answers: the "nothing changed" memo
/// never hides a push (`TypeState::plan` checks it in debug builds).
#[test]
fn the_quiet_memo_never_hides_a_push() {
    let pool = snapshot_pool();
    let name_sets: [&[&str]; 5] = [&[], &["a"], &["a", "b"], &["b", "c", "l"], &["m"]];
    for seed in 1..=20u64 {
        let mut steps = Steps::new(seed);
        let mut stream = SotwStream::new(StreamTypes::Aggregated);
        let mut sent: Vec<DiscoveryResponse> = Vec::new();
        let mut subscribed: BTreeMap<ResourceType, &[&str]> = BTreeMap::new();
        for _ in 0..300 {
            let ty = [Cluster, Endpoint, Listener, Route][steps.below(4)];
            let out = match steps.below(5) {
                0 => stream.on_snapshot(pool[steps.below(pool.len())].clone()),
                1 => {
                    let names = name_sets[steps.below(name_sets.len())];
                    subscribed.insert(ty, names);
                    stream.on_request(request(ty, names, "", ""))
                }
                2 | 3 if !sent.is_empty() => {
                    let response = sent.remove(steps.below(sent.len()));
                    let ty = ResourceType::from_type_url(&response.type_url).expect("served");
                    let names = subscribed.get(&ty).copied().unwrap_or_default();
                    if steps.below(3) == 0 {
                        stream.on_request(nack(ty, names, &response))
                    } else {
                        stream.on_request(ack(ty, names, &response))
                    }
                }
                _ => stream.on_request(request(ty, &[], "", "999999")),
            };
            sent.extend(all(out));
        }
    }
}

/// The change-set path (see `stream::Synced`): `before` then `after`, each published after the
/// one before it, and a stream synced on the first.
fn published_pair(
    before: Snapshot,
    after: Snapshot,
) -> (
    SotwStream,
    BTreeMap<ResourceType, DiscoveryResponse>,
    Arc<Snapshot>,
) {
    let chain = published([before, after]);
    let (stream, last) = synced(chain[0].clone());
    (stream, last, chain[1].clone())
}

#[test]
fn a_stream_one_snapshot_behind_plans_from_the_change_set() {
    let (mut stream, last, next) = published_pair(
        snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9), ("b", 2)], &[("l", "a")]),
    );
    let before = stream.plan_counts();
    let response = only(stream.on_snapshot(next.clone()));
    assert_eq!(response.type_url, Endpoint.type_url());
    assert_eq!(response_names(&response), vec!["a"]);
    // The version is what a full diff gives: the aggregate of what the subscription gets.
    let mut full = SotwStream::new(StreamTypes::Aggregated);
    full.on_snapshot(Arc::new(snapshot_with(
        &[("a", 9), ("b", 2)],
        &[("l", "a")],
    )));
    let fresh = only(full.on_request(request(Endpoint, &["a", "b"], "", "")));
    assert_eq!(response.version_info, fresh.version_info);
    assert_ne!(response.version_info, last[&Endpoint].version_info);
    let after = stream.plan_counts();
    assert_eq!(after.full, before.full, "no full diff");
    assert!(after.from_changes > before.from_changes);
    // The ACK plans nothing at all.
    let out = stream.on_request(ack(Endpoint, &["a", "b"], &response));
    assert!(out.responses.is_empty());
    assert_eq!(stream.plan_counts(), after);
}

#[test]
fn a_stream_two_snapshots_behind_diffs_in_full() {
    let chain = published([
        snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9), ("b", 7)], &[("l", "a")]),
    ]);
    let (mut stream, _) = synced(chain[0].clone());
    let before = stream.plan_counts();
    let response = only(stream.on_snapshot(chain[2].clone()));
    assert_eq!(response_names(&response), vec!["a", "b"]);
    let after = stream.plan_counts();
    assert_eq!(after.from_changes, before.from_changes);
    assert!(after.full > before.full);
}

#[test]
fn a_subscription_change_is_planned_in_full_and_the_next_snapshot_from_its_changes() {
    let (mut stream, _, next) = published_pair(
        snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9), ("b", 8)], &[("l", "a")]),
    );
    let before = stream.plan_counts();
    // EDS drops b: answered (a full diff, the subscription changed), nothing new to send.
    let answer = only(stream.on_request(request(Endpoint, &["a"], "", "")));
    assert!(answer.resources.is_empty());
    assert_eq!(stream.plan_counts().full, before.full + 1);
    let out = stream.on_request(ack(Endpoint, &["a"], &answer));
    assert!(out.responses.is_empty());
    let synced_counts = stream.plan_counts();
    // The state matches the snapshot again: b's change is not sent, a's is, from the change set.
    let response = only(stream.on_snapshot(next));
    assert_eq!(response_names(&response), vec!["a"]);
    assert_eq!(stream.plan_counts().full, synced_counts.full);
}

#[test]
fn removals_follow_the_change_sets_as_a_full_diff_would() {
    let chain = published([
        snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]),
        // b is gone: CDS (full state) drops it, EDS (by name) sends nothing.
        snapshot_with(&[("a", 1)], &[("l", "a")]),
        // a changes: EDS sends it, and the client no longer counts as holding b.
        snapshot_with(&[("a", 3)], &[("l", "a")]),
        // b is back with the content the client had: it is new again.
        snapshot_with(&[("a", 3), ("b", 2)], &[("l", "a")]),
    ]);
    let (mut stream, _) = synced(chain[0].clone());
    let out = all(stream.on_snapshot(chain[1].clone()));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].type_url, Cluster.type_url());
    assert_eq!(response_names(&out[0]), vec!["a"]);
    stream.on_request(ack(Cluster, &[], &out[0]));
    let response = only(stream.on_snapshot(chain[2].clone()));
    assert_eq!(response_names(&response), vec!["a"]);
    stream.on_request(ack(Endpoint, &["a", "b"], &response));
    let out = all(stream.on_snapshot(chain[3].clone()));
    let names: Vec<_> = out
        .iter()
        .map(|r| (r.type_url.as_str(), response_names(r)))
        .collect();
    assert_eq!(
        names,
        vec![
            (Cluster.type_url(), vec!["a".to_string(), "b".to_string()]),
            (Endpoint.type_url(), vec!["b".to_string()]),
        ]
    );
    assert!(stream.plan_counts().from_changes >= 3);
}

#[test]
fn a_nack_is_followed_by_a_full_diff() {
    let chain = published([
        snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9), ("b", 4)], &[("l", "a")]),
    ]);
    let (mut stream, _) = synced(chain[0].clone());
    let rejected = only(stream.on_snapshot(chain[1].clone()));
    let before = stream.plan_counts();
    // The NACK's own push diffs in full (the client holds what it had before)...
    assert_eq!(
        stream
            .on_request(nack(Endpoint, &["a", "b"], &rejected))
            .nacks
            .len(),
        1
    );
    assert_eq!(stream.plan_counts().full, before.full + 1);
    // ...after which the state matches the snapshot again.
    let response = only(stream.on_snapshot(chain[2].clone()));
    assert_eq!(
        response_names(&response),
        vec!["b"],
        "a's rejected version is not resent"
    );
    assert_eq!(stream.plan_counts().full, before.full + 1);
}

/// Random published and unpublished snapshots (sometimes skipping one), subscriptions, ACKs,
/// NACKs and stale answers, fed to two streams: one gets the published snapshots (with change
/// sets), its twin the same snapshots unpublished (always a full diff). They answer the same.
#[test]
fn change_set_plans_answer_as_full_diffs_do() {
    let pool = snapshot_pool();
    let name_sets: [&[&str]; 5] = [&[], &["a"], &["a", "b"], &["b", "c", "l"], &["m"]];
    let mut from_changes = 0;
    for seed in 1..=20u64 {
        let mut steps = Steps::new(seed);
        let cache = crate::Cache::new();
        let mut stream = SotwStream::new(StreamTypes::Aggregated);
        let mut twin = SotwStream::new(StreamTypes::Aggregated);
        let mut sent: Vec<DiscoveryResponse> = Vec::new();
        let mut subscribed: BTreeMap<ResourceType, &[&str]> = BTreeMap::new();
        for _ in 0..300 {
            let ty = [Cluster, Endpoint, Listener, Route][steps.below(4)];
            let (out, twin_out) = match steps.below(5) {
                0 => {
                    if steps.below(4) == 0 {
                        // Published but never seen: the next one is two snapshots ahead.
                        let skipped = pool[steps.below(pool.len())].as_ref().clone();
                        cache.set("g", skipped);
                    }
                    let snapshot = pool[steps.below(pool.len())].clone();
                    cache.set("g", snapshot.as_ref().clone());
                    let published = cache.get("g").expect("set");
                    (stream.on_snapshot(published), twin.on_snapshot(snapshot))
                }
                1 => {
                    let names = name_sets[steps.below(name_sets.len())];
                    subscribed.insert(ty, names);
                    let request = request(ty, names, "", "");
                    (stream.on_request(request.clone()), twin.on_request(request))
                }
                2 | 3 if !sent.is_empty() => {
                    let response = sent.remove(steps.below(sent.len()));
                    let ty = ResourceType::from_type_url(&response.type_url).expect("served");
                    let names = subscribed.get(&ty).copied().unwrap_or_default();
                    let request = if steps.below(3) == 0 {
                        nack(ty, names, &response)
                    } else {
                        ack(ty, names, &response)
                    };
                    (stream.on_request(request.clone()), twin.on_request(request))
                }
                _ => {
                    let request = request(ty, &[], "", "999999");
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

fn nack_saying(
    ty: ResourceType,
    names: &[&str],
    response: &DiscoveryResponse,
    message: &str,
) -> DiscoveryRequest {
    let mut request = nack(ty, names, response);
    if let Some(status) = request.error_detail.as_mut() {
        status.message = message.to_string();
    }
    request
}

#[test]
fn a_nack_naming_one_route_config_resends_the_others_at_once() {
    let mut stream = SotwStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(Arc::new(snapshot_with(
        &[("a", 1)],
        &[("gateway-80", "a"), ("gateway-8081", "a")],
    )));
    let names = ["gateway-80", "gateway-8081"];
    let first = only(stream.on_request(request(Route, &names, "", "")));
    assert_eq!(response_names(&first), names);
    // Envoy refuses the whole response for one bad RouteConfiguration; `gateway-80` is not
    // named (only as part of the longer name), so it goes out again, alone, right away.
    let message = "Proto constraint validation failed (RouteConfiguration 'gateway-8081': bad)";
    let out = stream.on_request(nack_saying(Route, &names, &first, message));
    assert_eq!(out.nacks.len(), 1);
    let resent = only(out);
    assert_eq!(response_names(&resent), ["gateway-80"]);
    assert!(
        stream
            .on_request(ack(Route, &names, &resent))
            .responses
            .is_empty()
    );
    // The rejected one is not sent again until it changes.
    let changed = Arc::new(snapshot_with(
        &[("a", 1)],
        &[("gateway-80", "a"), ("gateway-8081", "b")],
    ));
    let pushed = only(stream.on_snapshot(changed));
    assert_eq!(response_names(&pushed), ["gateway-8081"]);
}

#[test]
fn a_nack_naming_none_of_the_response_rejects_all_of_it() {
    let mut stream = SotwStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(two_clusters());
    let first = only(stream.on_request(request(Endpoint, &["a", "b"], "", "")));
    let out = stream.on_request(nack_saying(Endpoint, &["a", "b"], &first, "abba: no"));
    assert_eq!(out.nacks.len(), 1);
    assert!(out.responses.is_empty(), "nothing resent: {out:?}");
}

#[test]
fn a_name_is_mentioned_only_as_a_whole_word() {
    assert!(mentions("route 'gateway-80': bad", "gateway-80"));
    assert!(mentions("outbound|80||a.b failed", "outbound|80||a.b"));
    assert!(!mentions("route 'gateway-8081': bad", "gateway-80"));
    assert!(!mentions("xgateway-80", "gateway-80"));
    assert!(!mentions("anything", ""));
}

#[test]
fn a_nack_quoting_a_value_blames_the_resource_that_holds_it() {
    let mut stream = SotwStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(Arc::new(snapshot_with(
        &[("a", 1), ("bbbb", 2)],
        &[("r1", "a"), ("r2", "bbbb")],
    )));
    let names = ["r1", "r2"];
    let first = only(stream.on_request(request(Route, &names, "", "")));
    // A first sync of every name keeps no list of its own for the NACK.
    let previous = stream.types[&Route].last.as_ref().map(|l| &l.previous);
    assert!(
        matches!(previous, Some(Previous::Nothing(_))),
        "{previous:?}"
    );
    // Envoy's text names no route configuration, only the value it refused (as for a regex).
    let message = "cluster 'bbbb' is refused here";
    let resent = only(stream.on_request(nack_saying(Route, &names, &first, message)));
    assert_eq!(response_names(&resent), ["r1"]);
}

#[test]
fn status_rows_written_over_old_ones_equal_a_fresh_status() {
    let mut stream = SotwStream::new(StreamTypes::Aggregated);
    let mut rows = Vec::new();
    let mut check = |stream: &SotwStream| {
        stream.write_status(&mut rows);
        assert_eq!(rows, stream.status());
    };
    check(&stream);
    stream.on_snapshot(two_clusters());
    let first = only(stream.on_request(request(Endpoint, &["a", "b"], "", "")));
    check(&stream);
    stream.on_request(nack_saying(Endpoint, &["a", "b"], &first, "a: no"));
    check(&stream);
    let clusters = only(stream.on_request(request(Cluster, &[], "", "")));
    stream.on_request(ack(Cluster, &[], &clusters));
    check(&stream);
}

#[test]
fn a_first_sync_of_every_resource_sends_the_snapshots_own_list() {
    let snapshot = Arc::new(snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]));
    for (ty, names) in [(Cluster, vec![]), (Endpoint, vec!["a", "b"])] {
        let mut streams = [1, 2].map(|_| SotwStream::new(StreamTypes::Aggregated));
        for stream in &mut streams {
            stream.on_snapshot(snapshot.clone());
            let mut out = stream.on_request(request(ty, &names, "", ""));
            let response = out.responses.pop().expect("a response");
            assert!(
                Arc::ptr_eq(&response.resources, snapshot.all_listed(ty)),
                "{ty}: the snapshot's list, not a list of its own"
            );
        }
    }
    // A subscription to some names only gets a list of its own.
    let mut stream = SotwStream::new(StreamTypes::Aggregated);
    stream.on_snapshot(snapshot.clone());
    let mut out = stream.on_request(request(Endpoint, &["b"], "", ""));
    let response = out.responses.pop().expect("a response");
    assert!(!Arc::ptr_eq(
        &response.resources,
        snapshot.all_listed(Endpoint)
    ));
    assert_eq!(response.resources.len(), 1);
}

#[test]
fn streams_holding_every_resource_share_the_snapshots_maps() {
    let chain = published([
        snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9), ("b", 2), ("c", 3)], &[("l", "a")]),
    ]);
    let (mut one, _) = synced(chain[0].clone());
    let (two, _) = synced(chain[0].clone());
    for ty in [Cluster, Endpoint, Listener, Route] {
        for stream in [&one, &two] {
            assert!(
                stream.types[&ty]
                    .known
                    .is_shared_with(chain[0].all_held(ty)),
                "{ty}"
            );
        }
    }
    for stream in [&one, &two] {
        assert!(Arc::ptr_eq(
            &stream.types[&Endpoint].names,
            chain[0].all_names(Endpoint)
        ));
    }

    // An endpoint change planned from the change set: the next snapshot's map, not a copy.
    let before = one.plan_counts();
    let response = only(one.on_snapshot(chain[1].clone()));
    assert_eq!(response_names(&response), vec!["a"]);
    assert!(one.plan_counts().from_changes > before.from_changes);
    let eds = &one.types[&Endpoint].known;
    assert!(eds.is_shared_with(chain[1].all_held(Endpoint)));
    assert_eq!(
        eds["a"].version(),
        chain[1].resources(Endpoint)["a"].version()
    );

    // Rejected, the client keeps what it had: the stream's own map again, with that.
    let out = one.on_request(nack(Endpoint, &["a", "b"], &response));
    assert_eq!(out.nacks.len(), 1);
    let eds = &one.types[&Endpoint].known;
    assert!(!eds.is_shared_with(chain[1].all_held(Endpoint)));
    assert!(!eds.is_shared_with(chain[0].all_held(Endpoint)));
    assert_eq!(
        eds["a"].version(),
        chain[0].resources(Endpoint)["a"].version()
    );

    // A new cluster: CDS holds the new snapshot's map; EDS, not subscribed to it yet, is not
    // pushed; once subscribed to every name, both are shared again.
    let (mut stream, _) = synced(chain[1].clone());
    let out = stream.on_snapshot(chain[2].clone());
    assert_eq!(types_of(&out), vec![Cluster]);
    let cds = only(out);
    assert!(
        stream.types[&Cluster]
            .known
            .is_shared_with(chain[2].all_held(Cluster))
    );
    stream.on_request(ack(Cluster, &[], &cds));
    let eds = only(stream.on_request(request(Endpoint, &["a", "b", "c"], "", "")));
    assert_eq!(response_names(&eds), vec!["c"]);
    assert!(
        stream.types[&Endpoint]
            .known
            .is_shared_with(chain[2].all_held(Endpoint))
    );
    assert!(Arc::ptr_eq(
        &stream.types[&Endpoint].names,
        chain[2].all_names(Endpoint)
    ));

    // Subscribed to some names only, a stream keeps its own set and map.
    let mut some = SotwStream::new(StreamTypes::Aggregated);
    some.on_snapshot(chain[2].clone());
    only(some.on_request(request(Endpoint, &["b"], "", "")));
    let state = &some.types[&Endpoint];
    assert!(!state.known.is_shared_with(chain[2].all_held(Endpoint)));
    assert_eq!(
        state.known.keys().map(|k| &**k).collect::<Vec<_>>(),
        vec!["b"]
    );
    assert!(!Arc::ptr_eq(&state.names, chain[2].all_names(Endpoint)));
}

#[test]
fn an_ack_naming_every_name_in_order_moves_the_stream_onto_the_snapshots_set() {
    let chain = published([
        snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]),
        snapshot_with(&[("a", 9), ("b", 2)], &[("l", "a")]),
    ]);
    let (mut stream, _) = synced(chain[0].clone());
    let response = only(stream.on_snapshot(chain[1].clone()));
    assert!(!Arc::ptr_eq(
        &stream.types[&Endpoint].names,
        chain[1].all_names(Endpoint)
    ));
    // The ACK repeats the names: equal to the new snapshot's encoding, so the stream takes
    // that set (and later ACKs are one comparison of bytes).
    let out = stream.on_request(ack(Endpoint, &["a", "b"], &response));
    assert!(out.responses.is_empty(), "{out:?}");
    assert!(Arc::ptr_eq(
        &stream.types[&Endpoint].names,
        chain[1].all_names(Endpoint)
    ));
    assert_eq!(
        chain[1].all_names_encoded(Endpoint),
        &RequestNames::from_names(["a", "b"])
    );
    // The same names in another order are the same subscription: nothing to answer.
    let out = stream.on_request(request(Endpoint, &["b", "a"], "", ""));
    assert!(out.responses.is_empty(), "{out:?}");
    // Other names are a new subscription, even on the fast path's set.
    let out = stream.on_request(request(Endpoint, &["a"], "", ""));
    assert_eq!(out.responses.len(), 1, "{out:?}");
    assert!(!Arc::ptr_eq(
        &stream.types[&Endpoint].names,
        chain[1].all_names(Endpoint)
    ));
}

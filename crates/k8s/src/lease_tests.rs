//! Leader election over a scripted API server: acquire, renew, lose, take over.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::testing::{failure, mock_client, next, respond};
use serde_json::{Value, json};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/portolan/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/portolan/leases/portolan-leader";

fn config() -> LeaseConfig {
    LeaseConfig::new("portolan", "portolan-leader", "pod-a")
}

fn lease(holder: &str, version: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "portolan-leader", "namespace": "portolan", "resourceVersion": version},
        "spec": {
            "holderIdentity": holder, "leaseDurationSeconds": 15,
            "acquireTime": "2026-01-01T00:00:00.000000Z",
            "renewTime": "2026-01-01T00:00:00.000000Z",
            "leaseTransitions": transitions
        }
    })
}

#[tokio::test]
async fn acquires_a_lease_nobody_holds() {
    let (client, mut api) = mock_client();
    let mut lock = LeaseLock::new(client, config());
    let round = tokio::spawn(async move { lock.try_acquire_or_renew().await });
    let (get, r) = next(&mut api).await;
    assert_eq!((get.method.as_str(), get.path.as_str()), ("GET", LEASE));
    respond(r, 404, &failure(404, "NotFound"));
    let (create, r) = next(&mut api).await;
    assert_eq!(
        (create.method.as_str(), create.path.as_str()),
        ("POST", LEASES)
    );
    assert_eq!(create.body["spec"]["holderIdentity"], "pod-a");
    assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
    respond(r, 201, &create.body);
    assert!(round.await.unwrap().expect("no error"));
}

#[tokio::test]
async fn renews_its_own_lease_with_its_resource_version() {
    let (client, mut api) = mock_client();
    let mut lock = LeaseLock::new(client, config());
    let round = tokio::spawn(async move { lock.try_acquire_or_renew().await });
    let (_, r) = next(&mut api).await;
    respond(r, 200, &lease("pod-a", "10", 2));
    let (put, r) = next(&mut api).await;
    assert_eq!((put.method.as_str(), put.path.as_str()), ("PUT", LEASE));
    assert_eq!(put.body["metadata"]["resourceVersion"], "10");
    assert_eq!(put.body["spec"]["holderIdentity"], "pod-a");
    assert_eq!(
        put.body["spec"]["leaseTransitions"], 2,
        "a renew is no transition"
    );
    assert_ne!(
        put.body["spec"]["renewTime"], "2026-01-01T00:00:00.000000Z",
        "renewTime moves"
    );
    respond(r, 200, &put.body);
    assert!(round.await.unwrap().expect("no error"));
}

#[tokio::test(start_paused = true)]
async fn takes_over_a_lease_whose_holder_stopped_renewing() {
    let (client, mut api) = mock_client();
    let mut lock = LeaseLock::new(client, config());
    // Held by pod-b: not taken at first sight.
    let round = tokio::spawn(async move { (lock.try_acquire_or_renew().await, lock) });
    let (_, r) = next(&mut api).await;
    respond(r, 200, &lease("pod-b", "5", 3));
    let (held, mut lock) = round.await.unwrap();
    assert!(!held.expect("no error"));
    // A lease duration later, pod-b has not renewed (same record): take it over.
    tokio::time::advance(Duration::from_secs(16)).await;
    let round = tokio::spawn(async move { lock.try_acquire_or_renew().await });
    let (_, r) = next(&mut api).await;
    respond(r, 200, &lease("pod-b", "5", 3));
    let (put, r) = next(&mut api).await;
    assert_eq!(put.method, "PUT");
    assert_eq!(put.body["metadata"]["resourceVersion"], "5");
    assert_eq!(put.body["spec"]["holderIdentity"], "pod-a");
    assert_eq!(put.body["spec"]["leaseTransitions"], 4);
    respond(r, 200, &put.body);
    assert!(round.await.unwrap().expect("no error"));
}

#[tokio::test(start_paused = true)]
async fn leaves_a_lease_alone_while_its_holder_renews() {
    let (client, mut api) = mock_client();
    let mut lock = LeaseLock::new(client, config());
    for version in ["5", "6", "7"] {
        let round = tokio::spawn(async move { (lock.try_acquire_or_renew().await, lock) });
        let (get, r) = next(&mut api).await;
        assert_eq!(get.method, "GET", "only reads while another holds it");
        respond(r, 200, &lease("pod-b", version, 3));
        let (held, back) = round.await.unwrap();
        assert!(!held.expect("no error"));
        lock = back;
        tokio::time::advance(Duration::from_secs(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_renew_loses_the_lead_and_shutdown_releases_the_lease() {
    let (client, mut api) = mock_client();
    let lock = LeaseLock::new(client, config());
    let (leading_tx, mut leading) = watch::channel(false);
    let (shutdown_tx, shutdown) = watch::channel(false);
    let election = tokio::spawn(lock.run(leading_tx, shutdown));
    // Acquire.
    let (_, r) = next(&mut api).await;
    respond(r, 404, &failure(404, "NotFound"));
    let (_, r) = next(&mut api).await;
    respond(r, 201, &lease("pod-a", "1", 0));
    leading.wait_for(|l| *l).await.unwrap();
    // Renew: another writer got there first (conflict): the lead is lost at once.
    let (_, r) = next(&mut api).await;
    respond(r, 200, &lease("pod-a", "1", 0));
    let (put, r) = next(&mut api).await;
    assert_eq!(put.method, "PUT");
    respond(r, 409, &failure(409, "Conflict"));
    leading.wait_for(|l| !*l).await.unwrap();
    // The next round renews again (still the holder) and leads again.
    let (_, r) = next(&mut api).await;
    respond(r, 200, &lease("pod-a", "2", 0));
    let (_, r) = next(&mut api).await;
    respond(r, 200, &lease("pod-a", "3", 0));
    leading.wait_for(|l| *l).await.unwrap();
    // Shutdown while leading: the Lease is handed back.
    shutdown_tx.send_replace(true);
    let (_, r) = next(&mut api).await;
    respond(r, 200, &lease("pod-a", "3", 0));
    let (put, r) = next(&mut api).await;
    assert_eq!(put.method, "PUT");
    assert!(put.body["spec"].get("holderIdentity").is_none());
    respond(r, 200, &put.body);
    election.await.unwrap();
    assert!(!*leading.borrow());
}

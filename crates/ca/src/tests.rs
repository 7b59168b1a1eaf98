//! The CA end to end: chain, SANs, validity, persistence, and the rotation schedule.

use crate::*;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

const TD: &str = "cluster.local";

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn der(pem: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    pem.contents
}

fn web() -> SpiffeId {
    SpiffeId::new(TD, "shop", "web")
}

#[test]
fn a_workload_certificate_chains_to_the_root_and_names_only_its_spiffe_id() {
    let ca = Authority::generate(TD, t(0)).expect("root");
    let cert = ca
        .issue(&web(), t(100), Duration::from_secs(3600))
        .expect("issued");
    let (root_der, leaf_der) = (der(ca.root_pem()), der(&cert.cert_pem));
    let (_, root) = X509Certificate::from_der(&root_der).expect("root parses");
    let (_, leaf) = X509Certificate::from_der(&leaf_der).expect("leaf parses");
    assert!(root.is_ca());
    assert!(!leaf.is_ca());
    assert_eq!(leaf.issuer(), root.subject());
    leaf.verify_signature(Some(root.public_key()))
        .expect("signed by the root");
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .expect("SAN extension parses")
        .expect("SAN extension present")
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::URI(u) => format!("URI:{u}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(sans, ["URI:spiffe://cluster.local/ns/shop/sa/web"]);
    let eku = leaf
        .extended_key_usage()
        .expect("EKU parses")
        .expect("EKU present")
        .value;
    assert!(eku.client_auth && eku.server_auth);
    // The key in the PEM is the certificate's key.
    let key = rcgen::KeyPair::from_pem(&cert.key_pem).expect("key parses");
    assert_eq!(
        leaf.public_key().raw,
        rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
    );
}

#[test]
fn validity_is_backdated_a_minute_and_ends_after_the_lifetime() {
    let ca = Authority::generate(TD, t(0)).expect("root");
    let cert = ca
        .issue(&web(), t(1000), Duration::from_secs(30))
        .expect("issued");
    let leaf_der = der(&cert.cert_pem);
    let (_, leaf) = X509Certificate::from_der(&leaf_der).expect("parses");
    let secs = |s: SystemTime| {
        s.duration_since(UNIX_EPOCH)
            .expect("after the epoch")
            .as_secs() as i64
    };
    assert_eq!(leaf.validity().not_before.timestamp(), secs(t(940)));
    assert_eq!(leaf.validity().not_after.timestamp(), secs(t(1030)));
    assert_eq!(cert.expires_at, t(1030));
}

#[test]
fn certificates_rotate_at_half_life() {
    assert_eq!(rotation_time(t(0), t(86_400)), t(43_200));
    assert_eq!(rotation_time(t(10), t(14)), t(12));
    assert_eq!(rotation_time(t(10), t(10)), t(10));
    // A clock that went backwards: due at once, never before issuance.
    assert_eq!(rotation_time(t(10), t(5)), t(10));
}

#[test]
fn the_store_keeps_a_certificate_until_it_is_due_then_issues_a_new_one() {
    let ca = Authority::generate(TD, t(0)).expect("root");
    let store = WorkloadCerts::new(TrustState::new(ca, t(0)), Duration::from_secs(100));
    assert_eq!(store.next_rotation(), None);
    let first = store.current(&web(), t(0)).expect("issued");
    assert_eq!(store.next_rotation(), Some(t(50)));
    let same = store.current(&web(), t(49)).expect("held");
    assert!(std::sync::Arc::ptr_eq(&first, &same));
    let next = store.current(&web(), t(50)).expect("reissued");
    assert_ne!(next.cert_pem, first.cert_pem);
    assert_ne!(
        next.key_pem, first.key_pem,
        "a new key with every certificate"
    );
    assert_eq!(store.next_rotation(), Some(t(100)));
    // Different identities never share a key.
    let other = store
        .current(&SpiffeId::new(TD, "shop", "batch"), t(60))
        .expect("issued");
    assert_ne!(other.key_pem, next.key_pem);
    assert_eq!(store.next_rotation(), Some(t(100)));
    store.retain(&BTreeSet::from([SpiffeId::new(TD, "shop", "batch")]));
    assert_eq!(store.next_rotation(), Some(t(110)));
}

#[test]
fn serials_differ_between_certificates() {
    let ca = Authority::generate(TD, t(0)).expect("root");
    let serial = |c: &WorkloadCert| {
        let d = der(&c.cert_pem);
        let (_, x) = X509Certificate::from_der(&d).expect("parses");
        x.raw_serial().to_vec()
    };
    let a = ca.issue(&web(), t(0), Duration::from_secs(60)).expect("a");
    let b = ca.issue(&web(), t(0), Duration::from_secs(60)).expect("b");
    assert_ne!(serial(&a), serial(&b));
}

#[test]
fn a_generated_root_is_persisted_and_loaded_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ca");
    let first = Authority::load_or_generate(&path, TD, t(0)).expect("generated");
    let again = Authority::load_or_generate(&path, TD, t(5)).expect("loaded");
    assert_eq!(first.root_pem(), again.root_pem());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(path.join("ca.key"))
            .expect("key written")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // The loaded root signs certificates that chain to the persisted certificate.
    let cert = again
        .issue(&web(), t(10), Duration::from_secs(60))
        .expect("issued");
    let (root_der, leaf_der) = (der(first.root_pem()), der(&cert.cert_pem));
    let (_, root) = X509Certificate::from_der(&root_der).expect("root");
    let (_, leaf) = X509Certificate::from_der(&leaf_der).expect("leaf");
    leaf.verify_signature(Some(root.public_key()))
        .expect("signed by the persisted root");
}

#[test]
fn a_root_whose_key_does_not_match_or_that_is_no_ca_is_refused() {
    let a = Authority::generate(TD, t(0)).expect("a");
    let b = Authority::generate(TD, t(0)).expect("b");
    let dir = tempfile::tempdir().expect("tempdir");
    let pa = dir.path().join("a");
    let _ = Authority::load_or_generate(&pa, TD, t(0)).expect("a persisted");
    let key_a = std::fs::read_to_string(pa.join("ca.key")).expect("key");
    let err = Authority::from_pem(b.root_pem(), &key_a, TD).expect_err("mismatch");
    assert!(err.to_string().contains("does not match"), "{err}");
    let leaf = a
        .issue(&web(), t(0), Duration::from_secs(60))
        .expect("leaf");
    let err = Authority::from_pem(&leaf.cert_pem, &leaf.key_pem, TD).expect_err("not a CA");
    assert!(err.to_string().contains("CA:FALSE"), "{err}");
    let err = Authority::from_pem("garbage", &key_a, TD).expect_err("not PEM");
    assert!(err.to_string().contains("CA certificate"), "{err}");
}

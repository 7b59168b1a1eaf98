//! The rotation phase machine: bundle and signer in each phase, when phases move on, and the
//! state kept as data and in a directory.

use crate::rotation::{CA_CERT, CA_KEY, NEXT_CERT, NEXT_KEY, PREVIOUS_CERT, ROTATION};
use crate::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TD: &str = "cluster.local";
const TIMING: RotationTiming = RotationTiming {
    propagation: Duration::from_secs(10),
    grace: Duration::from_secs(100),
};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn root() -> Authority {
    Authority::generate(TD, t(0)).expect("root")
}

fn web() -> SpiffeId {
    SpiffeId::new(TD, "shop", "web")
}

fn data(state: &TrustState) -> BTreeMap<String, String> {
    state
        .to_data()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

#[test]
fn a_rotation_publishes_then_signs_then_drops_the_old_root() {
    let (old, new) = (root(), root());
    let (old_fp, new_fp) = (old.fingerprint(), new.fingerprint());
    let store = WorkloadCerts::new(TrustState::new(old, t(0)), Duration::from_secs(100));
    let first = store.current(&web(), t(0)).expect("issued");
    assert_eq!(first.root, old_fp);
    assert_eq!(store.trust().phase(), Phase::Steady);
    assert_eq!(store.trust().fingerprints(), std::slice::from_ref(&old_fp));

    // (a) Publishing: both roots trusted, the old one still signs; held certificates stay.
    store
        .update_trust(|s| s.begin(new, t(20)))
        .expect("rotation begins");
    let trust = store.trust();
    assert_eq!(trust.phase(), Phase::Publishing);
    assert_eq!(trust.fingerprints(), [old_fp.clone(), new_fp.clone()]);
    assert_eq!(trust.signer().fingerprint(), old_fp);
    assert_eq!(trust.bundle_pem().matches("BEGIN CERTIFICATE").count(), 2);
    assert!(std::sync::Arc::ptr_eq(
        &first,
        &store.current(&web(), t(21)).expect("held")
    ));
    let err = store
        .update_trust(|s| s.begin(root(), t(21)))
        .expect_err("one rotation at a time");
    assert!(err.to_string().contains("publishing"), "{err}");
    assert_eq!(trust.due_at(&TIMING), Some(t(30)));
    assert!(!store.update_trust(|s| s.advance(t(29), &TIMING, false)));

    // (b) Signing: the new root signs; the held certificate is reissued by it at once.
    assert!(store.update_trust(|s| s.advance(t(30), &TIMING, false)));
    let trust = store.trust();
    assert_eq!(trust.phase(), Phase::Signing);
    assert_eq!(trust.fingerprints(), [old_fp.clone(), new_fp.clone()]);
    assert_eq!(trust.signer().fingerprint(), new_fp);
    assert_eq!(store.signed_by_other_roots(), 1);
    assert!(store.next_rotation().is_some_and(|at| at <= t(30)));
    let reissued = store.current(&web(), t(31)).expect("reissued");
    assert_eq!(reissued.root, new_fp);
    assert_eq!(store.signed_by_other_roots(), 0);

    // (c) The old root stays for the grace, and while an old certificate is held.
    assert_eq!(trust.due_at(&TIMING), Some(t(130)));
    assert!(!store.update_trust(|s| s.advance(t(129), &TIMING, false)));
    assert!(!store.update_trust(|s| s.advance(t(200), &TIMING, true)));
    assert!(store.update_trust(|s| s.advance(t(200), &TIMING, false)));
    let trust = store.trust();
    assert_eq!(trust.phase(), Phase::Steady);
    assert_eq!(trust.fingerprints(), std::slice::from_ref(&new_fp));
    assert_eq!(trust.due_at(&TIMING), None);
    assert!(!store.update_trust(|s| s.advance(t(10_000), &TIMING, false)));
    // The next rotation may begin.
    store
        .update_trust(|s| s.begin(root(), t(201)))
        .expect("a second rotation");
}

#[test]
fn the_signing_root_is_no_next_root() {
    let ca = root();
    let same = Authority::from_pem(ca.root_pem(), &ca.key_pem(), TD).expect("same root");
    let mut state = TrustState::new(ca, t(0));
    let err = state.begin(same, t(1)).expect_err("refused");
    assert!(err.to_string().contains("signs already"), "{err}");
    assert_eq!(state.phase(), Phase::Steady);
}

#[test]
fn every_phase_survives_its_data_with_its_start_time() {
    let mut state = TrustState::new(root(), t(0));
    let steady = TrustState::from_data(&data(&state), TD, t(5)).expect("steady");
    assert!(steady.same_roots(&state));
    state.begin(root(), t(20)).expect("begins");
    let publishing = TrustState::from_data(&data(&state), TD, t(25)).expect("publishing");
    assert!(publishing.same_roots(&state));
    assert_eq!(publishing.since(), t(20));
    assert!(state.advance(t(40), &TIMING, false));
    let d = data(&state);
    assert!(d.contains_key(PREVIOUS_CERT) && !d.contains_key(NEXT_CERT));
    assert_eq!(
        d[ROTATION],
        format!("signing 1800000040 {}", state.signer().fingerprint())
    );
    let signing = TrustState::from_data(&d, TD, t(45)).expect("signing");
    assert!(signing.same_roots(&state));
    assert_eq!(signing.since(), t(40));
}

#[test]
fn an_added_next_root_starts_publishing_when_it_is_read() {
    let state = TrustState::new(root(), t(0));
    let next = root();
    let mut d = data(&state);
    d.insert(NEXT_CERT.into(), next.root_pem().to_string());
    d.insert(NEXT_KEY.into(), next.key_pem());
    let read = TrustState::from_data(&d, TD, t(50)).expect("publishing");
    assert_eq!(read.phase(), Phase::Publishing);
    assert_eq!(read.since(), t(50));
    assert_eq!(read.signer().fingerprint(), state.signer().fingerprint());
    // A stale record of an earlier phase does not date it.
    d.insert(ROTATION.into(), "signing 1800000001".into());
    let read = TrustState::from_data(&d, TD, t(60)).expect("publishing");
    assert_eq!(read.since(), t(60));
    // Nor does the record of publishing another next root (replaced by hand).
    d.insert(
        ROTATION.into(),
        format!("publishing 1800000002 {}", state.signer().fingerprint()),
    );
    let read = TrustState::from_data(&d, TD, t(70)).expect("publishing");
    assert_eq!(read.since(), t(70));
    d.insert(
        ROTATION.into(),
        format!("publishing 1800000002 {}", next.fingerprint()),
    );
    let read = TrustState::from_data(&d, TD, t(80)).expect("publishing");
    assert_eq!(read.since(), t(2), "its own record dates it");
}

#[test]
fn incomplete_or_conflicting_data_is_refused_naming_the_entry() {
    let mut state = TrustState::new(root(), t(0));
    let next = root();
    let mut d = data(&state);
    d.insert(NEXT_CERT.into(), next.root_pem().to_string());
    let err = TrustState::from_data(&d, TD, t(1)).expect_err("no next key");
    assert!(err.to_string().contains("next.key"), "{err}");
    let mut d = data(&state);
    d.remove(CA_KEY);
    let err = TrustState::from_data(&d, TD, t(1)).expect_err("no key");
    assert!(err.to_string().contains("ca.key"), "{err}");
    // A next root while the previous one is still trusted.
    state.begin(root(), t(1)).expect("begins");
    state.advance(t(20), &TIMING, false);
    let mut d = data(&state);
    d.insert(NEXT_CERT.into(), next.root_pem().to_string());
    d.insert(NEXT_KEY.into(), next.key_pem());
    let err = TrustState::from_data(&d, TD, t(21)).expect_err("conflict");
    assert!(err.to_string().contains("still signing"), "{err}");
    // A move to signing written half-way (next already signs) reads as signing.
    let mut d = data(&state);
    d.insert(NEXT_CERT.into(), d[CA_CERT].clone());
    d.insert(NEXT_KEY.into(), d[CA_KEY].clone());
    let read = TrustState::from_data(&d, TD, t(22)).expect("signing");
    assert_eq!(read.phase(), Phase::Signing);
}

#[test]
fn a_directory_keeps_the_state_and_removes_what_it_no_longer_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ca");
    let mut state = persist::load_dir_or_generate(&path, TD, t(0)).expect("generated");
    let again = persist::load_dir_or_generate(&path, TD, t(1)).expect("loaded");
    assert!(again.same_roots(&state));
    state.begin(root(), t(2)).expect("begins");
    persist::save_dir(&path, &state).expect("saved");
    let mode = |name: &str| {
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(path.join(name))
                .expect("written")
                .permissions(),
        ) & 0o777
    };
    assert_eq!((mode(CA_KEY), mode(NEXT_KEY)), (0o600, 0o600));
    let read = persist::load_dir(&path, TD, t(3))
        .expect("reads")
        .expect("a state");
    assert!(read.same_roots(&state));
    assert_eq!(read.since(), t(2));
    state.advance(t(100), &TIMING, false);
    state.advance(t(1000), &TIMING, false);
    assert_eq!(state.phase(), Phase::Steady);
    persist::save_dir(&path, &state).expect("saved");
    let names: BTreeSet<String> = std::fs::read_dir(&path)
        .expect("lists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, BTreeSet::from([CA_CERT.into(), CA_KEY.into()]));
    let read = persist::load_dir(&path, TD, t(1001))
        .expect("reads")
        .expect("a state");
    assert!(read.same_roots(&state));
    assert!(
        persist::load_dir(&dir.path().join("none"), TD, t(0))
            .expect("reads")
            .is_none()
    );
}

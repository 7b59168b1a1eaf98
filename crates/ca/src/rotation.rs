//! Trust-bundle rotation: which roots proxies trust, which one signs, and when a rotation
//! moves on.
//!
//! A [`TrustState`] is in one of three [`Phase`]s:
//!
//! * [`Phase::Steady`]: one root; it signs and it is the whole trust bundle.
//! * [`Phase::Publishing`]: a new root was given ([`TrustState::begin`]); the bundle holds the
//!   old and the new root, the old one still signs. Proxies learn to trust the new root before
//!   any certificate is signed by it. Lasts [`RotationTiming::propagation`].
//! * [`Phase::Signing`]: the new root signs (every held workload certificate is reissued by
//!   it); the bundle still holds both, so a peer that has not received its new certificate yet
//!   is still trusted. Lasts at least [`RotationTiming::grace`] (the longest a workload
//!   certificate lives), and until no held certificate is signed by the old root; then the old
//!   root is dropped and the state is steady again.
//!
//! The state is kept as named PEM blobs ([`TrustState::to_data`] / [`TrustState::from_data`]):
//! the same names are the files of `--ca-dir` and the keys of the Kubernetes Secret, so an
//! operator starts a rotation by adding `next.crt` and `next.key`.

use crate::authority::{Authority, fingerprint};
use crate::error::CaError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The signing root's certificate.
pub const CA_CERT: &str = "ca.crt";
/// The signing root's key.
pub const CA_KEY: &str = "ca.key";
/// The next root's certificate (published, not yet signing).
pub const NEXT_CERT: &str = "next.crt";
/// The next root's key.
pub const NEXT_KEY: &str = "next.key";
/// The previous root's certificate (still trusted, no longer signing).
pub const PREVIOUS_CERT: &str = "previous.crt";
/// The phase, when it began and the fingerprint of the new root it is about:
/// `publishing 1800000000 3f5a...`.
pub const ROTATION: &str = "rotation";

/// Every name of the state's data.
pub const DATA_NAMES: [&str; 6] = [
    CA_CERT,
    CA_KEY,
    NEXT_CERT,
    NEXT_KEY,
    PREVIOUS_CERT,
    ROTATION,
];

/// Where a rotation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// One root, signing and trusted.
    Steady,
    /// Old and new root trusted, the old one signs.
    Publishing,
    /// Old and new root trusted, the new one signs.
    Signing,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Steady => "steady",
            Phase::Publishing => "publishing",
            Phase::Signing => "signing",
        }
    }

    /// The value of the `portolan_ca_rotation_phase` gauge.
    pub fn number(self) -> i64 {
        match self {
            Phase::Steady => 0,
            Phase::Publishing => 1,
            Phase::Signing => 2,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Phase::Steady, Phase::Publishing, Phase::Signing]
            .into_iter()
            .find(|p| p.name() == s)
    }
}

/// How long the phases of a rotation last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationTiming {
    /// How long the new root is published before it signs: enough for every connected proxy
    /// to receive the new trust bundle.
    pub propagation: Duration,
    /// How long the old root stays trusted after the new one signs: the longest a workload
    /// certificate lives (a certificate signed by the old root may be held until then).
    pub grace: Duration,
}

/// The roots of a trust domain and the phase of their rotation.
#[derive(Clone)]
pub struct TrustState {
    signer: Arc<Authority>,
    /// [`Phase::Publishing`]: the root that signs next.
    next: Option<Arc<Authority>>,
    /// [`Phase::Signing`]: the root that signed before (certificate PEM).
    previous: Option<String>,
    since: SystemTime,
}

impl std::fmt::Debug for TrustState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustState")
            .field("phase", &self.phase())
            .field("bundle", &self.fingerprints())
            .field("signer", &self.signer.fingerprint())
            .finish_non_exhaustive()
    }
}

// === impl TrustState ===

impl TrustState {
    /// A steady state: `signer` alone, since `now`.
    pub fn new(signer: Authority, now: SystemTime) -> Self {
        Self {
            signer: Arc::new(signer),
            next: None,
            previous: None,
            since: now,
        }
    }

    pub fn phase(&self) -> Phase {
        match (&self.next, &self.previous) {
            (Some(_), _) => Phase::Publishing,
            (None, Some(_)) => Phase::Signing,
            (None, None) => Phase::Steady,
        }
    }

    /// When the current phase began.
    pub fn since(&self) -> SystemTime {
        self.since
    }

    /// The root that signs workload certificates now.
    pub fn signer(&self) -> &Authority {
        &self.signer
    }

    /// The trusted roots (PEM), oldest first.
    pub fn bundle(&self) -> Vec<&str> {
        let mut roots = Vec::with_capacity(2);
        roots.extend(self.previous.as_deref());
        roots.push(self.signer.root_pem());
        roots.extend(self.next.as_deref().map(Authority::root_pem));
        roots
    }

    /// The trust bundle as one PEM text (what Envoy's `trusted_ca` takes).
    pub fn bundle_pem(&self) -> String {
        let mut out = String::new();
        for pem in self.bundle() {
            out.push_str(pem.trim_end());
            out.push('\n');
        }
        out
    }

    /// Fingerprints of the trusted roots, oldest first.
    pub fn fingerprints(&self) -> Vec<String> {
        self.bundle().into_iter().map(fingerprint).collect()
    }

    /// The fingerprint of the newest root: the next one while publishing, else the signer.
    fn newest_fingerprint(&self) -> String {
        self.next.as_deref().unwrap_or(&self.signer).fingerprint()
    }

    /// Starts a rotation to `next` at `now` (phase [`Phase::Publishing`]). Refused while a
    /// rotation is under way, and for the root that already signs.
    pub fn begin(&mut self, next: Authority, now: SystemTime) -> Result<(), CaError> {
        if self.phase() != Phase::Steady {
            return Err(CaError::Rotating(self.phase().name()));
        }
        if next.fingerprint() == self.signer.fingerprint() {
            return Err(CaError::InvalidRoot {
                what: "next root".to_string(),
                message: "is the root that signs already".to_string(),
            });
        }
        self.next = Some(Arc::new(next));
        self.since = now;
        Ok(())
    }

    /// When the current phase may end (`None` when steady): publishing ends after the
    /// propagation time, signing after the grace (and once no old certificate is held).
    pub fn due_at(&self, timing: &RotationTiming) -> Option<SystemTime> {
        match self.phase() {
            Phase::Steady => None,
            Phase::Publishing => Some(self.since + timing.propagation),
            Phase::Signing => Some(self.since + timing.grace),
        }
    }

    /// Moves to the next phase when due at `now`; `old_certs_held`: some workload certificate
    /// still held is signed by a root other than the signer (the old root is then kept).
    /// Returns whether the phase changed.
    pub fn advance(
        &mut self,
        now: SystemTime,
        timing: &RotationTiming,
        old_certs_held: bool,
    ) -> bool {
        let due = self.due_at(timing).is_some_and(|at| now >= at);
        if !due {
            return false;
        }
        match self.phase() {
            Phase::Steady => false,
            Phase::Publishing => {
                let Some(next) = self.next.take() else {
                    return false;
                };
                let old = std::mem::replace(&mut self.signer, next);
                self.previous = Some(old.root_pem().to_string());
                self.since = now;
                true
            }
            Phase::Signing if old_certs_held => false,
            Phase::Signing => {
                self.previous = None;
                self.since = now;
                true
            }
        }
    }

    /// Whether `other` has the same roots in the same phase (a reload that changes nothing).
    pub fn same_roots(&self, other: &TrustState) -> bool {
        self.phase() == other.phase()
            && self.fingerprints() == other.fingerprints()
            && self.signer.fingerprint() == other.signer.fingerprint()
    }

    /// The state as named PEM blobs (see the module docs; keys are secret).
    pub fn to_data(&self) -> BTreeMap<&'static str, String> {
        let mut data = BTreeMap::from([
            (CA_CERT, self.signer.root_pem().to_string()),
            (CA_KEY, self.signer.key_pem()),
        ]);
        if let Some(next) = &self.next {
            data.insert(NEXT_CERT, next.root_pem().to_string());
            data.insert(NEXT_KEY, next.key_pem());
        }
        if let Some(previous) = &self.previous {
            data.insert(PREVIOUS_CERT, previous.clone());
        }
        if self.phase() != Phase::Steady {
            let secs = self
                .since
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs();
            let newest = self.newest_fingerprint();
            data.insert(ROTATION, format!("{} {secs} {newest}", self.phase().name()));
        }
        data
    }

    /// The state from named PEM blobs. `next.crt` and `next.key` without a rotation record
    /// are an operator's request to rotate: publishing begins at `now`. The phase's start is
    /// taken from `rotation` when it names the same phase, else it is `now`.
    pub fn from_data(
        data: &BTreeMap<String, String>,
        trust_domain: &str,
        now: SystemTime,
    ) -> Result<Self, CaError> {
        let get = |name: &str| data.get(name).filter(|v| !v.trim().is_empty());
        let missing = |name: &str| CaError::InvalidRoot {
            what: name.to_string(),
            message: "missing".to_string(),
        };
        let cert = get(CA_CERT).ok_or_else(|| missing(CA_CERT))?;
        let key = get(CA_KEY).ok_or_else(|| missing(CA_KEY))?;
        let signer = Authority::from_pem(cert, key, trust_domain)?;
        let next = match (get(NEXT_CERT), get(NEXT_KEY)) {
            (Some(cert), Some(key)) => Some(Authority::from_pem(cert, key, trust_domain)?),
            (None, None) => None,
            (Some(_), None) => return Err(missing(NEXT_KEY)),
            (None, Some(_)) => return Err(missing(NEXT_CERT)),
        };
        // A next root that signs already: a move to signing written half-way.
        let next = next.filter(|n| n.fingerprint() != signer.fingerprint());
        let previous = get(PREVIOUS_CERT).cloned();
        if next.is_some() && previous.is_some() {
            return Err(CaError::InvalidRoot {
                what: NEXT_CERT.to_string(),
                message: format!(
                    "a rotation is still signing with the new root ({PREVIOUS_CERT} is trusted); add the next root once it is steady"
                ),
            });
        }
        let mut state = Self {
            signer: Arc::new(signer),
            next: next.map(Arc::new),
            previous,
            since: now,
        };
        let (phase, newest) = (state.phase(), state.newest_fingerprint());
        if let Some(since) = get(ROTATION).and_then(|r| recorded_since(r, phase, &newest)) {
            state.since = since;
        }
        Ok(state)
    }
}

/// The start time in a rotation record (`PHASE SECONDS FINGERPRINT`) when it names `phase`
/// of the root `newest` (a next root replaced by hand starts its publishing anew).
fn recorded_since(record: &str, phase: Phase, newest: &str) -> Option<SystemTime> {
    let mut words = record.split_whitespace();
    let (name, secs, root) = (words.next()?, words.next()?, words.next()?);
    let secs: u64 = secs.parse().ok()?;
    (Phase::parse(name)? == phase && root == newest).then(|| UNIX_EPOCH + Duration::from_secs(secs))
}

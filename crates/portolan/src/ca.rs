//! The mesh CA at run time: where its trust state is kept (memory, `--ca-dir`, or a Kubernetes
//! Secret), the rotation driver that moves a CA rotation through its phases
//! ([`portolan_ca::rotation`]) and pushes every change of the trust bundle or the signing root
//! to the proxies, and what `/debug/ca`, `POST /debug/ca/rotate` and the
//! `portolan_ca_*` metrics show.
//!
//! Every tick the driver re-reads the kept state (an operator adds `next.crt`/`next.key` to
//! start a rotation; another replica moved the phase on), then, when this replica decides
//! (always, except a Kubernetes replica that is not the leader), moves the phase on once due
//! and writes the state back. Any change rebuilds every connected group, so the new bundle and
//! the reissued workload certificates go out as new SDS versions.

use anyhow::Context;
use axum::http::StatusCode;
use portolan_ca::{Authority, CaError, RotationTiming, TrustState, WorkloadCerts};
use portolan_pipeline::Pipeline;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, watch};

/// How often the kept state is re-read (and a due phase checked).
const TICK: Duration = Duration::from_secs(1);

/// Publishing waits past `--ca-propagation` for connected proxies to ACK the new bundle, at
/// most this many propagation times in all (a proxy that NACKs its secrets does not hold the
/// rotation back for ever).
const ACK_WAIT_FACTOR: u32 = 10;

/// Where the trust state is kept.
pub enum Backing {
    /// Only in memory (a generated CA, or `--ca-cert`/`--ca-key` files Portolan does not
    /// write): a rotation lasts until the next restart.
    Memory,
    /// `--ca-dir`: one file per data name.
    Dir(PathBuf),
    /// `--ca-secret` (Kubernetes): the Secret's data, shared by every replica.
    Secret(Box<portolan_k8s::CaSecret>),
}

impl Backing {
    fn describe(&self) -> String {
        match self {
            Backing::Memory => "memory".to_string(),
            Backing::Dir(dir) => format!("directory {}", dir.display()),
            Backing::Secret(secret) => format!("secret {}", secret.name()),
        }
    }

    /// The kept state, when there is one that differs from nothing (memory: none).
    async fn load(&self, trust_domain: &str) -> anyhow::Result<Option<TrustState>> {
        let now = SystemTime::now();
        match self {
            Backing::Memory => Ok(None),
            Backing::Dir(dir) => Ok(portolan_ca::persist::load_dir(dir, trust_domain, now)?),
            Backing::Secret(secret) => match secret.get().await? {
                Some(data) => Ok(Some(TrustState::from_data(&data, trust_domain, now)?)),
                None => Ok(None),
            },
        }
    }

    async fn save(&self, state: &TrustState) -> anyhow::Result<()> {
        match self {
            Backing::Memory => Ok(()),
            Backing::Dir(dir) => Ok(portolan_ca::persist::save_dir(dir, state)?),
            Backing::Secret(secret) => Ok(secret.put(&data_of(state)).await?),
        }
    }
}

/// The state's data with owned names (what a Secret holds).
pub fn data_of(state: &TrustState) -> std::collections::BTreeMap<String, String> {
    state
        .to_data()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// The `portolan_ca_*` gauges.
#[derive(Clone, Default)]
struct CaMetrics {
    phase: Gauge,
    roots: Gauge,
    old_root_certs: Gauge,
}

/// The mesh CA's rotation driver and its debug view.
pub struct CaControl {
    certs: Arc<WorkloadCerts>,
    backing: Backing,
    timing: RotationTiming,
    trust_domain: String,
    /// Whether this replica moves phases on and writes the state (the Kubernetes leader).
    deciding: watch::Receiver<bool>,
    /// Serve `POST /debug/ca/rotate`.
    rotate_enabled: bool,
    wake: Notify,
    metrics: CaMetrics,
    /// The connected proxies and their snapshots: publishing ends only once every mesh proxy
    /// ACKed its group's current secrets (with the new bundle).
    cache: Option<Arc<portolan_xds::Cache>>,
}

/// Why a rotation request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("POST /debug/ca/rotate is off; start serve with --enable-ca-rotation")]
    Disabled,
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("writing the new state ({backing}): {message}")]
    Save { backing: String, message: String },
}

impl RotateError {
    pub fn status(&self) -> StatusCode {
        match self {
            RotateError::Disabled => StatusCode::FORBIDDEN,
            RotateError::Ca(CaError::Rotating(_)) => StatusCode::CONFLICT,
            RotateError::Ca(_) | RotateError::Save { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

// === impl CaControl ===

impl CaControl {
    pub fn new(
        certs: Arc<WorkloadCerts>,
        backing: Backing,
        timing: RotationTiming,
        trust_domain: &str,
        deciding: watch::Receiver<bool>,
        rotate_enabled: bool,
    ) -> Self {
        Self {
            certs,
            backing,
            timing,
            trust_domain: trust_domain.to_string(),
            deciding,
            rotate_enabled,
            wake: Notify::new(),
            metrics: CaMetrics::default(),
            cache: None,
        }
    }

    /// Publishing also waits for the mesh proxies connected to `cache` to ACK the new bundle.
    pub fn with_cache(mut self, cache: Arc<portolan_xds::Cache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Node ids of connected mesh proxies that have not ACKed their group's current secrets
    /// (they may not hold the current trust bundle yet).
    fn pending_proxies(&self) -> Vec<String> {
        let Some(cache) = &self.cache else {
            return Vec::new();
        };
        let ty = portolan_xds::ResourceType::Secret;
        let snapshot_version = |group: &str| {
            let snap = cache.get(group)?;
            snap.resources(ty)
                .contains_key(portolan_translate::mesh::TRUST_BUNDLE_SECRET)
                .then(|| snap.version(ty).to_string())
        };
        pending_proxies(&cache.proxies(), snapshot_version)
    }

    /// Whether publishing must go on for proxies that have not ACKed the new bundle.
    fn held_by_proxies(&self, state: &TrustState, now: SystemTime) -> bool {
        if state.phase() != portolan_ca::Phase::Publishing {
            return false;
        }
        let limit = state.since() + self.timing.propagation * ACK_WAIT_FACTOR;
        let pending = self.pending_proxies();
        if pending.is_empty() {
            return false;
        }
        if now >= limit {
            tracing::warn!(
                ?pending,
                "CA rotation: proxies did not ACK the new trust bundle in time; signing with the new root anyway"
            );
            return false;
        }
        true
    }

    /// Registers the `portolan_ca_*` gauges.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ca_rotation_phase",
            "Phase of the mesh CA rotation: 0 steady, 1 publishing the new root (old root signs), 2 signing with the new root (old root still trusted)",
            self.metrics.phase.clone(),
        );
        registry.register(
            "ca_trust_bundle_roots",
            "Roots in the trust bundle sent to mesh proxies",
            self.metrics.roots.clone(),
        );
        registry.register(
            "ca_workload_certs_old_root",
            "Held workload certificates signed by a root that no longer signs",
            self.metrics.old_root_certs.clone(),
        );
        self.set_metrics();
    }

    /// Runs forever: re-reads the kept state, moves a due phase on, rebuilds on a change.
    pub async fn run(self: Arc<Self>, pipeline: Arc<Pipeline>) {
        let mut failing = false;
        // The trust state the proxies were last built with.
        let mut built = self.certs.trust();
        loop {
            match self.step().await {
                Ok(()) => failing = false,
                Err(e) => {
                    if !failing {
                        tracing::error!(backing = %self.backing.describe(), error = %format!("{e:#}"), "mesh CA state not usable; the last good one stays");
                    }
                    failing = true;
                }
            }
            let now = self.certs.trust();
            if !now.same_roots(&built) {
                pipeline.clone().rebuild_all().await;
                built = now;
            }
            self.set_metrics();
            tokio::select! {
                _ = tokio::time::sleep(self.wait()) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// One round: adopt the kept state when it differs, move a due phase on.
    async fn step(&self) -> anyhow::Result<()> {
        if let Some(kept) = self.backing.load(&self.trust_domain).await? {
            let current = self.certs.trust();
            if !kept.same_roots(&current) {
                tracing::info!(phase = kept.phase().name(), bundle = ?kept.fingerprints(), signer = %kept.signer().fingerprint(), "mesh CA state read");
                self.certs.update_trust(|s| *s = kept);
            }
        }
        if *self.deciding.borrow() {
            let mut state = self.certs.trust();
            let now = SystemTime::now();
            let old_held = self.certs.signed_by_other_roots() > 0;
            let due = state.due_at(&self.timing).is_some_and(|at| now >= at);
            if due && self.held_by_proxies(&state, now) {
                return Ok(());
            }
            if state.advance(now, &self.timing, old_held) {
                self.backing
                    .save(&state)
                    .await
                    .context("writing the next CA rotation phase")?;
                tracing::info!(phase = state.phase().name(), bundle = ?state.fingerprints(), signer = %state.signer().fingerprint(), "mesh CA rotation moved on");
                self.certs.update_trust(|s| *s = state);
            }
        }
        Ok(())
    }

    /// Until the next round: a tick, sooner when a phase is due.
    fn wait(&self) -> Duration {
        self.certs
            .trust()
            .due_at(&self.timing)
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .map_or(TICK, |d| d.min(TICK))
    }

    fn set_metrics(&self) {
        let trust = self.certs.trust();
        self.metrics.phase.set(trust.phase().number());
        self.metrics.roots.set(trust.bundle().len() as i64);
        self.metrics
            .old_root_certs
            .set(self.certs.signed_by_other_roots() as i64);
    }

    /// Starts a rotation to a newly generated root: written to the kept state first (the
    /// leader, or this replica, moves it on from there).
    pub async fn rotate(&self) -> Result<TrustState, RotateError> {
        if !self.rotate_enabled {
            return Err(RotateError::Disabled);
        }
        let now = SystemTime::now();
        let mut state = self.certs.trust();
        state.begin(Authority::generate(&self.trust_domain, now)?, now)?;
        self.backing
            .save(&state)
            .await
            .map_err(|e| RotateError::Save {
                backing: self.backing.describe(),
                message: format!("{e:#}"),
            })?;
        tracing::info!(bundle = ?state.fingerprints(), "mesh CA rotation started: publishing the new root");
        self.certs.update_trust(|s| *s = state.clone());
        self.wake.notify_one();
        Ok(state)
    }

    /// What `/debug/ca` shows.
    pub fn debug(&self) -> Value {
        let trust = self.certs.trust();
        let certs: Vec<Value> = self
            .certs
            .held()
            .iter()
            .map(|c| {
                json!({
                    "identity": c.id.uri(),
                    "root": c.root,
                    "issuedAt": epoch(c.issued_at),
                    "expiresAt": epoch(c.expires_at),
                })
            })
            .collect();
        json!({
            "trustDomain": self.trust_domain,
            "backing": self.backing.describe(),
            "phase": trust.phase().name(),
            "since": epoch(trust.since()),
            "nextPhaseAt": trust.due_at(&self.timing).map(epoch),
            "signer": trust.signer().fingerprint(),
            "bundle": trust.fingerprints(),
            "propagationSeconds": self.timing.propagation.as_secs_f64(),
            "graceSeconds": self.timing.grace.as_secs_f64(),
            "deciding": *self.deciding.borrow(),
            "rotateEnabled": self.rotate_enabled,
            "workloadCertificates": certs,
            "oldRootCertificates": self.certs.signed_by_other_roots(),
            "proxiesWithoutCurrentSecrets": self.pending_proxies(),
        })
    }
}

/// `portolan ca status|rotate`: the server's answer, pretty JSON on stdout.
pub fn command(args: &crate::cli::CaArgs) -> anyhow::Result<std::process::ExitCode> {
    let server = args.server.trim_end_matches('/');
    let (method, url) = match args.action {
        crate::cli::CaAction::Status => (reqwest::Method::GET, format!("{server}/debug/ca")),
        crate::cli::CaAction::Rotate => {
            (reqwest::Method::POST, format!("{server}/debug/ca/rotate"))
        }
    };
    let body: Value = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(async {
            let response = reqwest::Client::new()
                .request(method.clone(), &url)
                .send()
                .await?;
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                let message = body["error"].as_str().unwrap_or_default().to_string();
                anyhow::bail!("{status}: {message}");
            }
            Ok(body)
        })
        .with_context(|| format!("{method} {url}"))?;
    crate::output::println(&serde_json::to_string_pretty(&body)?)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Node ids of `proxies` subscribed to secrets whose ACKed version is not their group's
/// current one (`current`: the version of a group's secrets when they include the trust
/// bundle, else `None`: not a mesh group).
fn pending_proxies(
    proxies: &[portolan_xds::status::ProxyStatus],
    current: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let url = portolan_xds::ResourceType::Secret.type_url();
    let mut pending: Vec<String> = proxies
        .iter()
        .filter(|p| {
            let Some(secrets) = p.types.iter().find(|t| t.type_url == url) else {
                return false;
            };
            current(&p.group).is_some_and(|v| secrets.acked_version.as_deref() != Some(&v))
        })
        .map(|p| p.node_id.clone())
        .collect();
    pending.sort();
    pending.dedup();
    pending
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use portolan_ca::Phase;
    use std::path::Path;

    const TD: &str = "cluster.local";

    fn control(dir: &Path, timing: RotationTiming, rotate_enabled: bool) -> CaControl {
        let now = SystemTime::now();
        let state = portolan_ca::persist::load_dir_or_generate(dir, TD, now).expect("a CA");
        let certs = Arc::new(WorkloadCerts::new(state, Duration::from_secs(3600)));
        let deciding = watch::channel(true).1;
        CaControl::new(
            certs,
            Backing::Dir(dir.to_path_buf()),
            timing,
            TD,
            deciding,
            rotate_enabled,
        )
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("lists")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// File mode: an operator adds `next.crt`/`next.key` to `--ca-dir`; the driver reads it,
    /// moves through the phases (no waiting here) and writes each step back.
    #[tokio::test]
    async fn next_files_added_to_the_ca_dir_start_a_rotation_the_driver_completes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let timing = RotationTiming {
            propagation: Duration::ZERO,
            grace: Duration::ZERO,
        };
        let ca = control(dir.path(), timing, false);
        ca.step().await.expect("steady");
        assert_eq!(ca.certs.trust().phase(), Phase::Steady);
        let old = ca.certs.trust().signer().fingerprint();
        let id = portolan_ca::SpiffeId::new(TD, "shop", "web");
        let first = ca.certs.current(&id, SystemTime::now()).expect("issued");
        assert_eq!(first.root, old);
        let next = Authority::generate(TD, SystemTime::now()).expect("root");
        std::fs::write(dir.path().join("next.crt"), next.root_pem()).expect("written");
        std::fs::write(dir.path().join("next.key"), next.key_pem()).expect("written");

        // Read (publishing) and, the propagation being zero, moved on to signing at once.
        ca.step().await.expect("moves on");
        let trust = ca.certs.trust();
        assert_eq!(trust.phase(), Phase::Signing);
        assert_eq!(trust.fingerprints(), [old.clone(), next.fingerprint()]);
        assert_eq!(
            files(dir.path()),
            ["ca.crt", "ca.key", "previous.crt", "rotation"]
        );
        // The certificate signed by the old root holds it back until it is reissued.
        assert_eq!(ca.certs.signed_by_other_roots(), 1);
        ca.step().await.expect("still signing");
        assert_eq!(ca.certs.trust().phase(), Phase::Signing);
        let reissued = ca.certs.current(&id, SystemTime::now()).expect("reissued");
        assert_eq!(reissued.root, next.fingerprint());
        ca.step().await.expect("drops the old root");
        let trust = ca.certs.trust();
        assert_eq!(trust.phase(), Phase::Steady);
        assert_eq!(trust.fingerprints(), [next.fingerprint()]);
        assert_eq!(files(dir.path()), ["ca.crt", "ca.key"]);
        assert_eq!(
            ca.debug()["bundle"],
            serde_json::json!([next.fingerprint()])
        );
    }

    fn proxy(node: &str, group: &str, acked: Option<&str>) -> portolan_xds::status::ProxyStatus {
        portolan_xds::status::ProxyStatus {
            node_id: node.to_string(),
            group: group.to_string(),
            stream: "ads".to_string(),
            delta: false,
            client: "envoy".to_string(),
            connected_at: SystemTime::now(),
            types: vec![portolan_xds::status::TypeStatus {
                type_url: portolan_xds::ResourceType::Secret.type_url().to_string(),
                sent_version: Some("v2".to_string()),
                acked_version: acked.map(str::to_string),
                last_nack: None,
                names: None,
            }],
            responses_sent: 1,
            warnings: Vec::new(),
        }
    }

    /// Publishing waits for mesh proxies that have not ACKed their group's current secrets;
    /// proxies of other groups, and streams without secrets, do not count.
    #[test]
    fn publishing_waits_for_mesh_proxies_to_ack_their_current_secrets() {
        let mut gateway = proxy("gw-1", "gateway", None);
        gateway.types.clear();
        let proxies = [
            proxy("web-1", "web", Some("v2")),
            proxy("web-2", "web", Some("v1")),
            proxy("api-1", "api", None),
            proxy("edge-1", "edge", Some("old")),
            gateway,
        ];
        let current = |group: &str| match group {
            "web" | "api" | "gateway" => Some("v2".to_string()),
            _ => None,
        };
        assert_eq!(pending_proxies(&proxies, current), ["api-1", "web-2"]);
        assert!(pending_proxies(&proxies[..1], current).is_empty());
    }

    /// `POST /debug/ca/rotate`: off without the flag; on, it publishes a generated root and
    /// writes it to the directory; a second request while it runs is a conflict.
    #[tokio::test]
    async fn the_rotate_endpoint_needs_its_flag_and_runs_one_rotation_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let timing = RotationTiming {
            propagation: Duration::from_secs(3600),
            grace: Duration::from_secs(3600),
        };
        let off = control(dir.path(), timing, false);
        let err = off.rotate().await.expect_err("disabled");
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        let on = control(dir.path(), timing, true);
        let state = on.rotate().await.expect("started");
        assert_eq!(state.phase(), Phase::Publishing);
        assert_eq!(state.fingerprints().len(), 2);
        assert_eq!(
            files(dir.path()),
            ["ca.crt", "ca.key", "next.crt", "next.key", "rotation"]
        );
        let err = on.rotate().await.expect_err("one at a time");
        assert_eq!(err.status(), StatusCode::CONFLICT);
        // Not yet due: the step keeps publishing.
        on.step().await.expect("step");
        assert_eq!(on.certs.trust().phase(), Phase::Publishing);
        assert_eq!(on.debug()["phase"], "publishing");
    }
}

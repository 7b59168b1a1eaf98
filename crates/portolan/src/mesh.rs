//! `serve`'s mesh identity setup: the certificate authority (from `--ca-cert/--ca-key`,
//! `--ca-dir`, a Kubernetes Secret with `--ca-secret`, or generated in memory), the workload
//! certificate store, the CA rotation driver ([`crate::ca`]), and where proxies' identities
//! come from (`--identity`).

use crate::ca::{Backing, CaControl};
use crate::cli::{IdentityArg, MeshArgs};
use anyhow::Context;
use portolan_ca::{Authority, RotationTiming, TrustState, WorkloadCerts};
use portolan_pipeline::IdentityMode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// What the mesh needs at run time.
pub struct Mesh {
    pub certs: Option<Arc<WorkloadCerts>>,
    pub identity: IdentityMode,
    /// The rotation driver (with the CA).
    pub ca: Option<Arc<CaControl>>,
}

/// The cluster a `--ca-secret` lives in: Portolan's namespace, and whether this replica
/// leads (creates the Secret, moves rotations on).
pub struct ClusterCa {
    pub client: kube::Client,
    pub namespace: String,
    pub leading: watch::Receiver<bool>,
}

/// Loads or generates the CA and picks the identity mode.
pub async fn setup(
    args: &MeshArgs,
    trust_domain: &str,
    cluster: Option<ClusterCa>,
    cache: &Arc<portolan_xds::Cache>,
) -> anyhow::Result<Mesh> {
    let identity = match args.identity {
        IdentityArg::Off => {
            return Ok(Mesh {
                certs: None,
                identity: IdentityMode::Off,
                ca: None,
            });
        }
        IdentityArg::XdsCertificate => IdentityMode::Certificate {
            trust_domain: trust_domain.to_string(),
        },
        IdentityArg::InsecureNodeMetadata => {
            tracing::warn!(
                "--identity insecure-node-metadata: proxies claim their identity in node metadata, and any client can get any identity's private key; use for development only"
            );
            IdentityMode::InsecureNodeMetadata {
                trust_domain: trust_domain.to_string(),
            }
        }
    };
    let (state, backing, deciding) = load(args, trust_domain, cluster).await?;
    tracing::info!(phase = state.phase().name(), bundle = ?state.fingerprints(), signer = %state.signer().fingerprint(), "mesh CA loaded");
    let certs = Arc::new(WorkloadCerts::new(state, args.workload_cert_lifetime));
    let timing = RotationTiming {
        propagation: args.ca_propagation,
        grace: args
            .ca_rotation_grace
            .unwrap_or(args.workload_cert_lifetime),
    };
    let ca = CaControl::new(
        certs.clone(),
        backing,
        timing,
        trust_domain,
        deciding,
        args.enable_ca_rotation,
    )
    .with_cache(cache.clone());
    Ok(Mesh {
        certs: Some(certs),
        identity,
        ca: Some(Arc::new(ca)),
    })
}

/// The trust state, where it is kept, and whether this replica decides on rotations.
async fn load(
    args: &MeshArgs,
    trust_domain: &str,
    cluster: Option<ClusterCa>,
) -> anyhow::Result<(TrustState, Backing, watch::Receiver<bool>)> {
    let now = SystemTime::now();
    let always = || watch::channel(true).1;
    if let (Some(name), Some(cluster)) = (&args.ca_secret, cluster) {
        let secret = portolan_k8s::CaSecret::new(cluster.client, &cluster.namespace, name);
        let state = from_secret(&secret, trust_domain, cluster.leading.clone()).await?;
        return Ok((state, Backing::Secret(Box::new(secret)), cluster.leading));
    }
    anyhow::ensure!(
        args.ca_secret.is_none(),
        "--ca-secret needs --kubernetes (the Secret is read from the cluster)"
    );
    match (&args.ca_cert, &args.ca_key, &args.ca_dir) {
        (Some(cert), Some(key), _) => {
            let authority = Authority::from_files(cert, key, trust_domain)
                .with_context(|| format!("loading the mesh CA from {}", cert.display()))?;
            Ok((TrustState::new(authority, now), Backing::Memory, always()))
        }
        (_, _, Some(dir)) => {
            let state = portolan_ca::persist::load_dir_or_generate(dir, trust_domain, now)
                .with_context(|| format!("loading or creating the mesh CA in {}", dir.display()))?;
            Ok((state, Backing::Dir(dir.clone()), always()))
        }
        _ => {
            tracing::info!(
                "mesh CA generated in memory (not persisted; give --ca-dir or --ca-secret to keep it across restarts)"
            );
            let authority =
                Authority::generate(trust_domain, now).context("generating the mesh CA")?;
            Ok((TrustState::new(authority, now), Backing::Memory, always()))
        }
    }
}

/// The CA in the Secret; the leader creates it when absent, the other replicas wait for it.
/// API errors are retried every second (start-up waits); a Secret whose data is not a CA is an
/// error naming the Secret and the entry.
async fn from_secret(
    secret: &portolan_k8s::CaSecret,
    trust_domain: &str,
    mut leading: watch::Receiver<bool>,
) -> anyhow::Result<TrustState> {
    let mut waiting_logged = false;
    loop {
        let now = SystemTime::now();
        let read = match secret.get().await {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(secret = %secret.name(), error = %e, "reading the mesh CA Secret; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Some(data) = read {
            let state = TrustState::from_data(&data, trust_domain, now)
                .with_context(|| format!("the mesh CA in Secret {}", secret.name()))?;
            return Ok(state);
        }
        if *leading.borrow() {
            let state = TrustState::new(
                Authority::generate(trust_domain, now).context("generating the mesh CA")?,
                now,
            );
            match secret.create(&crate::ca::data_of(&state)).await {
                Ok(true) => {
                    tracing::info!(secret = %secret.name(), "mesh CA generated and stored in its Secret");
                    return Ok(state);
                }
                // Created by another replica meanwhile: read it.
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(secret = %secret.name(), error = %e, "creating the mesh CA Secret; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            continue;
        }
        if !waiting_logged {
            tracing::info!(secret = %secret.name(), "waiting for the leader to create the mesh CA Secret");
            waiting_logged = true;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), leading.changed()).await;
    }
}

//! `serve`'s mesh identity setup: the certificate authority (from `--ca-cert/--ca-key`,
//! `--ca-dir`, or generated in memory), the workload certificate store, and where proxies'
//! identities come from (`--identity`).

use crate::cli::{IdentityArg, MeshArgs};
use anyhow::Context;
use portolan_ca::{Authority, WorkloadCerts};
use portolan_pipeline::IdentityMode;
use std::sync::Arc;
use std::time::SystemTime;

/// What the mesh needs at run time.
pub struct Mesh {
    pub certs: Option<Arc<WorkloadCerts>>,
    pub identity: IdentityMode,
}

/// Loads or generates the CA and picks the identity mode.
pub fn setup(args: &MeshArgs, trust_domain: &str) -> anyhow::Result<Mesh> {
    let identity = match args.identity {
        IdentityArg::Off => {
            return Ok(Mesh {
                certs: None,
                identity: IdentityMode::Off,
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
    let now = SystemTime::now();
    let authority = match (&args.ca_cert, &args.ca_key, &args.ca_dir) {
        (Some(cert), Some(key), _) => Authority::from_files(cert, key, trust_domain)
            .with_context(|| format!("loading the mesh CA from {}", cert.display()))?,
        (_, _, Some(dir)) => Authority::load_or_generate(dir, trust_domain, now)
            .with_context(|| format!("loading or creating the mesh CA in {}", dir.display()))?,
        _ => {
            tracing::info!(
                "mesh CA generated in memory (not persisted; give --ca-dir to keep it across restarts)"
            );
            Authority::generate(trust_domain, now).context("generating the mesh CA")?
        }
    };
    let certs = WorkloadCerts::new(authority, args.workload_cert_lifetime);
    Ok(Mesh {
        certs: Some(Arc::new(certs)),
        identity,
    })
}

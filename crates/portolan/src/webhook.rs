//! Starts the admission webhook of `portolan serve` (docs/kubernetes.md) when a certificate
//! mode is given: `--webhook-cert/--webhook-key` (files, re-read when they change) or
//! `--webhook-self-signed` (a CA and certificate in a Secret, the CA kept in the
//! ValidatingWebhookConfiguration). The dry run reads the serving index and cache; it never
//! writes them.

use crate::cli::{ServeArgs, WebhookArgs};
use anyhow::Context;
use portolan_model::Index;
use portolan_webhook::{Admission, Certificates, DryRun, SelfSigned, SelfSignedConfig};
use portolan_xds::{Cache, TlsFiles, TlsReloader};
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Binds the webhook address and spawns the server; does nothing without a certificate mode.
pub async fn start(
    args: &ServeArgs,
    index: &Arc<Mutex<Index>>,
    cache: &Arc<Cache>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let webhook = &args.webhook;
    let Some(certificates) = certificates(
        webhook,
        args.kubernetes.pod_namespace.as_deref(),
        &args.translate.cluster_domain,
    )
    .await?
    else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(webhook.webhook_address)
        .await
        .with_context(|| format!("binding the webhook address {}", webhook.webhook_address))?;
    tracing::info!(webhook = %listener.local_addr()?, "admission webhook serving on /validate");
    let dry_run = DryRun::new(index.clone(), Some(cache.clone()), args.translate.options());
    tokio::spawn(async move {
        let admission = Admission::new(dry_run);
        if let Err(e) = portolan_webhook::serve(listener, certificates, admission, shutdown).await {
            tracing::warn!(error = %e, "admission webhook stopped with an error");
        }
    });
    Ok(())
}

/// The certificate mode the flags ask for, loaded; `None`: no webhook.
async fn certificates(
    args: &WebhookArgs,
    pod_namespace: Option<&str>,
    cluster_domain: &str,
) -> anyhow::Result<Option<Certificates>> {
    if let (Some(cert), Some(key)) = (&args.webhook_cert, &args.webhook_key) {
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
        };
        let alpn = vec![portolan_webhook::server::ALPN_HTTP1.to_vec()];
        let tls = TlsReloader::with_alpn(files, alpn).context("loading the webhook certificate")?;
        tokio::spawn(tls.clone().watch(args.webhook_cert_reload));
        return Ok(Some(Certificates::Files(tls)));
    }
    if !args.webhook_self_signed {
        return Ok(None);
    }
    // clap requires these with --webhook-self-signed; checked again for the env-only case.
    let missing = |flag: &str| anyhow::anyhow!("--webhook-self-signed needs {flag}");
    let config = SelfSignedConfig {
        namespace: pod_namespace
            .map(str::to_string)
            .ok_or_else(|| missing("--pod-namespace (env POD_NAMESPACE)"))?,
        service: args
            .webhook_service
            .clone()
            .ok_or_else(|| missing("--webhook-service"))?,
        secret: args.webhook_secret.clone(),
        configuration: args
            .webhook_configuration
            .clone()
            .ok_or_else(|| missing("--webhook-configuration"))?,
        cluster_domain: cluster_domain.to_string(),
    };
    let managed = SelfSigned::connect(config)
        .await
        .context("setting up the self-managed webhook certificate")?;
    tokio::spawn(managed.clone().run(args.webhook_resync));
    Ok(Some(Certificates::SelfSigned(managed)))
}

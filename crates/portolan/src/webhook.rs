//! Starts the admission webhook of `portolan serve` (docs/kubernetes.md) when a certificate
//! mode is given: `--webhook-cert/--webhook-key` (files, re-read when they change) or
//! `--webhook-self-signed` (a CA and certificate in a Secret, the CA kept in the
//! ValidatingWebhookConfiguration). The dry run reads the serving index and cache; it never
//! writes them. With `--inject` the same server also serves the sidecar injector (`/inject`),
//! whose sidecar bootstraps are rendered by `portolan bootstrap`'s own code ([`render_bootstrap`]).

use crate::cli::{Cli, Command, InjectArgs, ServeArgs, WebhookArgs};
use anyhow::Context;
use clap::Parser;
use portolan_model::Index;
use portolan_webhook::{
    Admission, Certificates, DryRun, InjectConfig, Injector, SelfSigned, SelfSignedConfig,
    TokenIdentity,
};
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
    if args.inject.inject && webhook.webhook_cert.is_none() && !webhook.webhook_self_signed {
        anyhow::bail!(
            "--inject serves on the webhook server: it needs --webhook-cert/--webhook-key or --webhook-self-signed"
        );
    }
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
    let injector = args.inject.inject.then(|| injector(args)).transpose()?;
    tracing::info!(
        webhook = %listener.local_addr()?,
        inject = injector.is_some(),
        "admission webhook serving on /validate (and /inject with --inject)"
    );
    let dry_run = DryRun::new(index.clone(), Some(cache.clone()), args.translate.options());
    tokio::spawn(async move {
        let admission = Admission::new(dry_run);
        let served = match injector {
            Some(injector) => {
                portolan_webhook::server::serve_with_injector(
                    listener,
                    certificates,
                    admission,
                    Arc::new(injector),
                    shutdown,
                )
                .await
            }
            None => portolan_webhook::serve(listener, certificates, admission, shutdown).await,
        };
        if let Err(e) = served {
            tracing::warn!(error = %e, "admission webhook stopped with an error");
        }
    });
    Ok(())
}

/// The sidecar injector the `--inject-*` flags describe.
fn injector(args: &ServeArgs) -> anyhow::Result<Injector> {
    let inject: &InjectArgs = &args.inject;
    let xds_address = match (&inject.inject_xds_address, &args.kubernetes.pod_namespace) {
        (Some(address), _) => address.clone(),
        (None, Some(ns)) => format!("portolan.{ns}.svc:18000"),
        (None, None) => anyhow::bail!(
            "--inject needs --inject-xds-address (or --pod-namespace for the default portolan.NS.svc:18000)"
        ),
    };
    let config = InjectConfig {
        proxy_image: inject.inject_proxy_image.clone(),
        init_image: inject.inject_init_image.clone(),
        proxy_uid: inject.inject_proxy_uid,
        outbound_port: args.translate.mesh_port,
        inbound_port: args.translate.inbound_port,
        admin_port: inject.inject_admin_port,
        xds_address,
        proxy_resources: inject.inject_proxy_resources.clone(),
        init_resources: inject.inject_init_resources.clone(),
        drain_seconds: inject.inject_drain_seconds,
        log_level: inject.inject_log_level.clone(),
        refuse_uninjectable: inject.inject_refuse_uninjectable,
        rewrite_probes: inject.inject_rewrite_probes,
        probe_port: inject.inject_probe_port,
        identity: token_identity(args)?,
    };
    // The settings are checked once here: a bootstrap they cannot make is a startup error.
    render_bootstrap(&[
        "--node-id=check".into(),
        "--cluster=check".into(),
        format!("--xds-address={}", config.xds_address),
    ])
    .map_err(|e| anyhow::anyhow!("--inject-xds-address: {e}"))?;
    Ok(Injector::new(config, Arc::new(render_bootstrap)))
}

/// With `--inject-xds-ca`: the CA and token audience of injected sidecars.
fn token_identity(args: &ServeArgs) -> anyhow::Result<Option<TokenIdentity>> {
    let Some(file) = &args.inject.inject_xds_ca else {
        return Ok(None);
    };
    let ca_pem = std::fs::read_to_string(file)
        .with_context(|| format!("--inject-xds-ca {}", file.display()))?;
    if !ca_pem.contains("-----BEGIN CERTIFICATE-----") {
        anyhow::bail!(
            "--inject-xds-ca {}: no PEM certificate in it",
            file.display()
        );
    }
    Ok(Some(TokenIdentity {
        ca_pem,
        audience: args.security.tokens.xds_token_audience.clone(),
    }))
}

/// With `--xds-token-review` and `--inject-xds-ca`: provisioned Gateway proxies prove their
/// Gateway's service account with a token, as injected sidecars do.
pub fn gateway_tokens(
    args: &ServeArgs,
) -> anyhow::Result<Option<portolan_k8s::provision::GatewayTokens>> {
    if !args.security.tokens.xds_token_review {
        return Ok(None);
    }
    Ok(
        token_identity(args)?.map(|t| portolan_k8s::provision::GatewayTokens {
            ca_pem: t.ca_pem,
            audience: t.audience,
        }),
    )
}

/// `portolan bootstrap FLAGS`, as JSON text: the flags parsed by the same CLI and rendered by
/// the same function, so an injected sidecar's bootstrap is what the command prints.
pub fn render_bootstrap(flags: &[String]) -> Result<String, String> {
    let argv = ["portolan", "bootstrap"]
        .into_iter()
        .map(str::to_string)
        .chain(flags.iter().cloned());
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let Command::Bootstrap(args) = cli.command else {
        return Err("not a bootstrap command".into());
    };
    let bootstrap = crate::bootstrap::render(&args).map_err(|e| format!("{e:#}"))?;
    serde_json::to_string(&bootstrap).map_err(|e| e.to_string())
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
        mutating_configuration: args.webhook_mutating_configuration.clone(),
        cluster_domain: cluster_domain.to_string(),
    };
    let managed = SelfSigned::connect(config)
        .await
        .context("setting up the self-managed webhook certificate")?;
    tokio::spawn(managed.clone().run(args.webhook_resync));
    Ok(Some(Certificates::SelfSigned(managed)))
}

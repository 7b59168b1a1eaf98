//! `portolan serve`: wires the config source (a directory, or a cluster: see
//! [`crate::kubernetes`]) through the pipeline's index writer into the index, the build
//! pipeline, the xDS server and the HTTP server together, and shuts them down gracefully on SIGTERM or Ctrl-C (streams
//! close spread over `--drain-spread`). The xDS port's TLS, authorization and limits come from
//! [`crate::cli::SecurityArgs`] (docs/security.md), mesh identities and the CA from
//! [`crate::cli::MeshArgs`] ([`crate::mesh`]). Before anything else it turns transparent huge
//! pages off for the process ([`crate::memory`]).

use crate::cli::{AuthzArg, SecurityArgs, ServeArgs};
use crate::http::{self, AppState};
use anyhow::Context;
use portolan_admin::AdminService;
use portolan_files::FileSource;
use portolan_model::Index;
use portolan_model::source::SourceHealth;
use portolan_pipeline::patch::Patches;
use portolan_pipeline::programmed::Provenances;
use portolan_pipeline::{IndexWriter, Pipeline, PipelineMetrics, SourceStatus};
use portolan_xds::{Authz, Cache, Limits, TlsFiles, TlsReloader, XdsMetrics, XdsServer};
use prometheus_client::registry::Registry;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::memory::limit_huge_pages();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut registry = Registry::with_prefix("portolan");
    let xds_metrics = XdsMetrics::new(&mut registry);
    let pipeline_metrics = PipelineMetrics::new(&mut registry, &xds_metrics);

    // In a cluster each Gateway has pods of its own: its listeners bind 0.0.0.0 there.
    let pool = match args.config_dir {
        Some(_) => args.gateway_address_pool,
        None => portolan_model::gateway_api::AddressPool::cluster(),
    };
    let index = Arc::new(Mutex::new(Index::with_gateway_pool(pool)));
    let cache = Cache::new();
    let security = &args.security;
    cache.set_max_groups(security.max_groups);
    let tls = load_tls(security)?;
    let (writer, changed_rx) = IndexWriter::new(index.clone());
    let (ready_tx, ready_rx) = watch::channel(false);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let provenances = Provenances::new();
    let patches = Patches::new(args.translate.enable_envoy_patch_policy);
    if patches.enabled() {
        tracing::warn!(
            "EnvoyPatchPolicy is enabled: patches to generated Envoy resources are applied (the last resort; see docs/policies.md)"
        );
    }
    let source = match &args.config_dir {
        Some(dir) => start_files(dir, args.settle, &writer)?,
        None => Source::Kubernetes(
            crate::kubernetes::start(
                &args.kubernetes,
                &writer,
                index.clone(),
                cache.clone(),
                crate::kubernetes::BuildState {
                    provenances: provenances.clone(),
                    patches: patches.clone(),
                    gateway_tokens: crate::webhook::gateway_tokens(&args)?,
                },
                shutdown_rx.clone(),
                &mut registry,
            )
            .await?,
        ),
    };
    let status = source.status().clone();
    report_source_health(&mut registry, status.health.clone());
    let synced_rx = SourceStatus::all_synced(std::slice::from_ref(&status));

    let cluster = source.cluster().map(|c| crate::mesh::ClusterCa {
        client: c.client.clone(),
        namespace: c.namespace.clone(),
        leading: c.leading.clone(),
    });
    let mesh =
        crate::mesh::setup(&args.mesh, &args.translate.trust_domain, cluster, &cache).await?;
    if let Some(ca) = &mesh.ca {
        ca.register(&mut registry);
    }
    let mut options = args.translate.options();
    if mesh.certs.is_some() {
        options.mesh.max_connection_duration = Some(args.mesh.workload_cert_lifetime);
    }
    let translate_options = options.clone();
    let pipeline = Pipeline::with_state(
        index.clone(),
        cache.clone(),
        options,
        pipeline_metrics,
        mesh.certs.clone(),
        provenances.clone(),
        patches.clone(),
    );
    let history = portolan_pipeline::history::History::new(args.history);
    pipeline.set_history(history.clone());
    let rollback = Some(crate::history::Rollback {
        pipeline: pipeline.clone(),
        file_mode: args.config_dir.is_some(),
        enabled: args.enable_rollback,
    });
    tokio::spawn(evict_idle_groups(
        cache.clone(),
        pipeline.clone(),
        security.group_idle,
    ));
    tokio::spawn(pipeline.clone().rotate_certificates());
    if let Some(ca) = mesh.ca.clone() {
        tokio::spawn(ca.run(pipeline.clone()));
    }
    tokio::spawn(pipeline.clone().run(
        changed_rx,
        synced_rx,
        ready_tx,
        args.debounce,
        args.debounce_max,
    ));

    let xds_listener = bind_with_backlog(args.xds_address, args.xds_backlog)
        .with_context(|| format!("binding the xDS address {}", args.xds_address))?;
    let http_listener = tokio::net::TcpListener::bind(args.http_address)
        .await
        .with_context(|| format!("binding the HTTP address {}", args.http_address))?;
    tracing::info!(
        xds = %xds_listener.local_addr()?,
        http = %http_listener.local_addr()?,
        source = %source,
        xds_tls = tls.is_some(),
        xds_mtls = tls.as_ref().is_some_and(|t| t.mutual()),
        "portolan serving"
    );

    let limits = limits(security);
    let drain_window = limits.drain_spread + Duration::from_secs(10);
    let authz = match security.xds_authz {
        AuthzArg::ClusterInSan => Authz::ClusterInSan,
        AuthzArg::Off => Authz::Off,
    };
    let tokens = crate::tokens::setup(&security.tokens, &args.translate.trust_domain).await?;
    let token_exchange = tokens.is_some();
    let mut xds_server = XdsServer::with_limits(cache.clone(), xds_metrics, limits, authz)
        .with_grouping(std::sync::Arc::new(portolan_pipeline::ProxyGrouping::new(
            mesh.identity,
        )));
    if let Some(tokens) = tokens {
        xds_server = xds_server.with_tokens(tokens);
    }
    // The admin API (proxy-status, config-dump) shares the xDS port.
    let router = xds_server
        .router()
        .add_service(AdminService::new(cache.clone()).into_server());
    let xds = tokio::spawn(portolan_xds::serve_tls(
        xds_listener,
        tls,
        xds_server,
        router,
        shutdown_signal(shutdown_rx.clone()),
    ));
    crate::webhook::start(&args, &index, &cache, shutdown_signal(shutdown_rx.clone())).await?;
    let dry_run =
        portolan_webhook::DryRun::new(index.clone(), Some(cache.clone()), args.translate.options());
    let state = AppState {
        dry_run,
        source: status,
        watchers: source.watchers(),
        ready: ready_rx,
        index,
        cache,
        provenances,
        patches,
        registry: Arc::new(registry),
        token_exchange,
        history,
        translate: translate_options,
        rollback,
        ca: mesh.ca.clone(),
        pipeline,
    };
    let http = tokio::spawn(http::serve(
        http_listener,
        state,
        shutdown_signal(shutdown_rx),
    ));

    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown_tx.send_replace(true);
    source.stop().await;
    let drain = async {
        if let Ok(Err(e)) = xds.await {
            tracing::warn!(error = %e, "xDS server stopped with an error");
        }
        if let Ok(Err(e)) = http.await {
            tracing::warn!(error = %e, "HTTP server stopped with an error");
        }
    };
    if tokio::time::timeout(drain_window, drain).await.is_err() {
        tracing::warn!(?drain_window, "streams still open; closing them");
    }
    Ok(())
}

/// Binds a listener with this listen backlog (tokio's `bind` uses 128, which a connection
/// storm of a few thousand proxies overflows; the kernel caps it at `net.core.somaxconn`).
fn bind_with_backlog(
    address: std::net::SocketAddr,
    backlog: u32,
) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match address {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

fn limits(security: &SecurityArgs) -> Limits {
    Limits {
        max_streams: security.max_streams,
        max_streams_per_connection: security.max_streams_per_connection,
        max_request_bytes: security.max_request_bytes,
        request_rate: security.request_rate,
        request_burst: security.request_burst,
        drain_spread: security.drain_spread,
    }
}

/// Loads the xDS TLS files (if configured) and starts watching them for changes.
fn load_tls(security: &SecurityArgs) -> anyhow::Result<Option<Arc<TlsReloader>>> {
    let (Some(cert), Some(key)) = (&security.xds_tls_cert, &security.xds_tls_key) else {
        return Ok(None);
    };
    let files = TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: security.xds_client_ca.clone(),
    };
    let tls = TlsReloader::new(files).context("loading the xDS TLS files")?;
    tokio::spawn(tls.clone().watch(security.xds_tls_reload));
    Ok(Some(tls))
}

/// Evicts proxy groups nobody has watched for `idle`, checking every `idle / 2`, and what the
/// pipeline built for them.
async fn evict_idle_groups(cache: Arc<Cache>, pipeline: Arc<Pipeline>, idle: Duration) {
    let mut tick = tokio::time::interval((idle / 2).max(Duration::from_secs(1)));
    loop {
        tick.tick().await;
        let evicted = cache.evict_idle(idle);
        for group in &evicted {
            tracing::info!(%group, ?idle, "evicted a proxy group no proxy has watched");
        }
        if !evicted.is_empty() {
            pipeline.clone().forget_evicted().await;
        }
    }
}

/// The config source `serve` reads: a directory or a cluster.
enum Source {
    Files {
        dir: std::path::PathBuf,
        status: SourceStatus,
        task: tokio::task::JoinHandle<()>,
    },
    Kubernetes(crate::kubernetes::Running),
}

// === impl Source ===

impl Source {
    fn status(&self) -> &SourceStatus {
        match self {
            Source::Files { status, .. } => status,
            Source::Kubernetes(k) => &k.status,
        }
    }

    fn cluster(&self) -> Option<&crate::kubernetes::Cluster> {
        match self {
            Source::Files { .. } => None,
            Source::Kubernetes(k) => Some(&k.cluster),
        }
    }

    fn watchers(&self) -> Option<watch::Receiver<portolan_k8s::SourceState>> {
        match self {
            Source::Files { .. } => None,
            Source::Kubernetes(k) => Some(k.watchers.clone()),
        }
    }

    async fn stop(self) {
        match self {
            Source::Files { task, .. } => task.abort(),
            Source::Kubernetes(k) => k.stop().await,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Files { dir, .. } => write!(f, "directory {}", dir.display()),
            Source::Kubernetes(_) => f.write_str("kubernetes"),
        }
    }
}

/// Starts reading a directory of manifests into the index.
fn start_files(
    dir: &std::path::Path,
    settle: Duration,
    writer: &IndexWriter,
) -> anyhow::Result<Source> {
    anyhow::ensure!(
        dir.is_dir(),
        "--config-dir {}: not a readable directory",
        dir.display()
    );
    let (status, task) = writer.spawn(
        portolan_files::REPORTER,
        FileSource::new(dir).with_settle(settle),
    );
    Ok(Source::Files {
        dir: dir.to_path_buf(),
        status,
        task,
    })
}

/// Exports the config source's health as `portolan_config_source_up` (1 up, 0 down: it
/// cannot be read and the last good config is served).
fn report_source_health(registry: &mut Registry, mut health: watch::Receiver<SourceHealth>) {
    let up = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    registry.register(
        "config_source_up",
        "Whether the config source could be read at the last attempt (0: serving the last good config)",
        up.clone(),
    );
    up.set(1);
    tokio::spawn(async move {
        while health.changed().await.is_ok() {
            up.set(i64::from(health.borrow_and_update().up));
        }
    });
}

async fn shutdown_signal(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

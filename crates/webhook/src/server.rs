//! The HTTPS server: `POST /validate` (AdmissionReview in, AdmissionReview out), with
//! `--inject` `POST /inject` (see [`crate::inject`]), and `GET /healthz`, HTTP/1.1 over rustls
//! (ring), one TLS acceptor per connection taken from the current [`Certificates`], so a rotated certificate is used by new connections at once.
//!
//! Bodies are capped at [`MAX_REVIEW_BYTES`] (413 beyond); a body that is not an
//! AdmissionReview is answered 400 with the reason. Decisions run on the blocking pool, at most
//! [`MAX_CONCURRENT_DECISIONS`] at once (others wait their turn), so dry runs never stall the
//! async workers that serve xDS nor take every core from the build pipeline.

use crate::admission::Admission;
use crate::inject::Injector;
use crate::review::Request;
use crate::self_signed::SelfSigned;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use portolan_xds::TlsReloader;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Largest AdmissionReview body accepted. An UPDATE carries the object and the old object,
/// each at most what etcd stores (1.5 MiB by default), plus the envelope.
pub const MAX_REVIEW_BYTES: usize = 4 * 1024 * 1024;

/// Dry runs that may translate at the same time.
pub const MAX_CONCURRENT_DECISIONS: usize = 2;

/// ALPN protocol the webhook speaks.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Longest a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the serving certificate comes from.
#[derive(Clone, Debug)]
pub enum Certificates {
    /// PEM files, re-read when they change (cert-manager, any mounted `kubernetes.io/tls`).
    Files(Arc<TlsReloader>),
    /// The self-managed certificate, from its Secret.
    SelfSigned(Arc<SelfSigned>),
}

// === impl Certificates ===

impl Certificates {
    fn acceptor(&self) -> TlsAcceptor {
        match self {
            Certificates::Files(r) => r.acceptor(),
            Certificates::SelfSigned(s) => TlsAcceptor::from(s.server_config()),
        }
    }
}

/// The routes, without TLS (the server wraps them).
pub fn router(admission: Admission) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(Arc::new(Decider {
            admission,
            permits: Semaphore::new(MAX_CONCURRENT_DECISIONS),
        }))
}

/// The admission logic and the permits that bound how many decisions run at once.
struct Decider {
    admission: Admission,
    permits: Semaphore,
}

/// Serves HTTPS on `listener` until `shutdown` resolves (open connections finish on their own).
pub async fn serve(
    listener: TcpListener,
    certificates: Certificates,
    admission: Admission,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, certificates, router(admission), shutdown).await
}

/// [`serve`] with the sidecar injector's `/inject` too (`portolan serve --inject`).
pub async fn serve_with_injector(
    listener: TcpListener,
    certificates: Certificates,
    admission: Admission,
    injector: Arc<Injector>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(admission).merge(crate::inject::routes(injector));
    serve_router(listener, certificates, router, shutdown).await
}

/// Serves `router` over HTTPS on `listener` until `shutdown` resolves.
async fn serve_router(
    listener: TcpListener,
    certificates: Certificates,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let acceptor = certificates.acceptor();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "webhook TLS handshake timed out");
                    return;
                }
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "webhook connection ended with an error");
            }
        });
    }
}

async fn validate(State(decider): State<Arc<Decider>>, body: Bytes) -> Response {
    let request = match Request::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(error = %e, "malformed AdmissionReview");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    let uid = request.uid.clone();
    let Ok(_permit) = decider.permits.acquire().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    };
    let decided = tokio::task::spawn_blocking({
        let decider = decider.clone();
        move || {
            let verdict = decider.admission.decide(&request);
            (request, verdict)
        }
    })
    .await;
    let Ok((request, verdict)) = decided else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "admission check failed\n",
        )
            .into_response();
    };
    match &verdict.denial {
        Some(d) => tracing::info!(
            uid,
            operation = request.operation,
            kind = request.kind.kind,
            namespace = request.namespace,
            name = request.name,
            message = d.message,
            "admission denied"
        ),
        None => tracing::debug!(
            uid,
            operation = request.operation,
            kind = request.kind.kind,
            namespace = request.namespace,
            name = request.name,
            warnings = verdict.warnings.len(),
            "admission allowed"
        ),
    }
    let body = verdict.to_review(&uid).to_string();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

//! Portolan's Kubernetes source: watches Services, EndpointSlices, `kubernetes.io/tls`
//! Secrets, Portolan's CRDs, the Gateway API kinds and Namespaces, and feeds the same model as
//! the files source; writes the `Accepted` / `ResolvedRefs` / `Programmed` conditions back to
//! the CRs' `/status`, and Gateway API status (GatewayClass, Gateway, route `parents`), from
//! the replica that holds a coordination.k8s.io Lease. Knows nothing of xDS.
//!
//! * [`decode`]: a cluster object to a model object, through the one validation module.
//! * [`feed`]: watcher events to index changes (pure; tested without an API server).
//! * [`source`]: the watchers themselves (kube-runtime, backoff), and [`KubernetesSource`],
//!   the [`portolan_model::source::Source`] that runs them and reports sync and health.
//! * [`status`] / [`writer`]: which status each object should carry, and writing it;
//!   [`api_status`]: the same for Gateway API objects of Portolan's class.
//! * [`lease`]: leader election.
//! * [`provision`]: a Deployment of stock Envoy and a Service for each Gateway of Portolan's
//!   class, owned by the Gateway.
//! * [`tokenreview`]: service account tokens verified with the TokenReview API.
//! * [`ca_secret`]: the mesh CA kept in a Secret shared by the replicas.

#![forbid(unsafe_code)]

pub mod api_status;
pub mod ca_secret;
pub mod decode;
pub mod error;
pub mod feed;
pub mod kinds;
pub mod lease;
pub mod provision;
pub mod source;
pub mod status;
pub mod tokenreview;
pub mod view;
pub mod writer;

pub use ca_secret::CaSecret;
pub use error::K8sError;
pub use feed::KindFeed;
pub use lease::{LeaseConfig, LeaseLock};
pub use source::{KubernetesSource, SourceState, Watchers};
pub use tokenreview::{ReviewError, ServiceAccountRef, TokenReviewer, expiry as token_expiry};
pub use view::ClusterView;
pub use writer::{Inputs, StatusWriter};

/// A client from the in-cluster config, else KUBECONFIG / `~/.kube/config`.
pub async fn client() -> Result<kube::Client, K8sError> {
    let config = kube::Config::infer().await?;
    kube::Client::try_from(config).map_err(K8sError::Client)
}

#[cfg(test)]
mod testing;

#[cfg(test)]
mod gateway_api_tests;

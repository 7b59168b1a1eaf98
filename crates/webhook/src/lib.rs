//! Portolan's validating admission webhook: `kubectl apply` of an object Portolan would reject
//! fails at once, with the same field-path message `portolan validate` prints.
//!
//! * [`review`]: the `admission.k8s.io/v1` AdmissionReview wire format.
//! * [`admission`]: the decision: decoding and validation from `portolan-api` (the one module
//!   every source uses), then [`dry_run`]: the object in a copy of the serving World, translated
//!   for the proxy groups it can change and checked by [`checks`] as the xDS cache and Envoy
//!   would check it. Nothing is published.
//! * [`gateway_api`]: Gateway API objects, allowed with warnings (Portolan's errors, the
//!   conditions it will write, the blast radius), never refused.
//! * [`inject`]: the sidecar injector, a mutating webhook on `/inject` (`serve --inject`).
//! * [`server`]: HTTPS (rustls, ring) on `/validate`, `/inject` and `/healthz`.
//! * [`self_signed`]: the self-managed certificate: a CA and serving certificate in a Secret
//!   shared by the replicas, and the CA kept in the ValidatingWebhookConfiguration's
//!   `caBundle`. The other mode, certificate files (cert-manager), reuses
//!   [`portolan_xds::TlsReloader`].

#![forbid(unsafe_code)]

pub mod admission;
pub mod blast;
pub mod checks;
pub mod dry_run;
pub mod error;
pub mod gateway_api;
pub mod inject;
pub mod review;
pub mod self_signed;
pub mod server;

pub use admission::Admission;
pub use dry_run::DryRun;
pub use error::WebhookError;
pub use inject::{InjectConfig, Injector, TokenIdentity};
pub use review::{Request, Verdict};
pub use self_signed::{SelfSigned, SelfSignedConfig};
pub use server::{Certificates, serve};

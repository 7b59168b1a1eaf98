//! Portolan's API surface: the Kubernetes objects Portolan reads (core/v1 Service, Endpoints
//! and `kubernetes.io/tls` Secrets, discovery.k8s.io/v1 EndpointSlice, and Portolan's own CRDs
//! TrafficRoute, TrafficPolicy, Gateway and ExternalService), how a document is decoded into
//! one of them, the single validation module every source uses, and the CRD manifests.
//!
//! Errors always name the object and the field path (`spec.ports[1].port`), so a user can find
//! the line to fix. This crate does no I/O.

#![forbid(unsafe_code)]

pub mod crd;
pub mod crds;
pub mod field;
pub mod gwapi;
pub mod object;
pub mod resource;
pub mod validate;

pub use field::{FieldError, FieldPath};
pub use k8s_openapi;
pub use object::{Kind, ObjectRef};
pub use resource::{DecodeError, Resource};

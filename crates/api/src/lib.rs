//! Portolan's API surface: the Kubernetes objects Portolan reads (core/v1 Service and Endpoints,
//! discovery.k8s.io/v1 EndpointSlice, and later Portolan's own CRDs), how a document is decoded
//! into one of them, and the single validation module every source uses.
//!
//! Errors always name the object and the field path (`spec.ports[1].port`), so a user can find
//! the line to fix. This crate does no I/O.

#![forbid(unsafe_code)]

pub mod field;
pub mod object;
pub mod resource;
pub mod validate;

pub use field::{FieldError, FieldPath};
pub use k8s_openapi;
pub use object::{Kind, ObjectRef};
pub use resource::{DecodeError, Resource};

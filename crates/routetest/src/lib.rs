//! Route tests as data. A `RouteTest` document ([`spec`]) names a proxy group and requests with
//! what each must meet. [`envoy`] checks them against stock Envoy running the group's rendered
//! configuration with stand-in upstreams that say who they are; [`table`] evaluates the same
//! requests on the rendered route tables without Envoy; [`verdict`] holds either outcome
//! against the expectations; [`report`] prints the verdicts.
//!
//! The crate takes rendered resources as Envoy JSON (what `portolan render` prints): it knows
//! nothing of manifests or translation, so the binary renders and this crate tests.

#![forbid(unsafe_code)]

pub mod envoy;
pub mod error;
pub mod rbac;
pub mod report;
pub mod run;
pub mod spec;
mod standin;
pub mod table;
pub mod verdict;

pub use error::RouteTestError;

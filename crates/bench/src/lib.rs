//! Portolan's benchmarks (issue #3): synthetic worlds, the build path (translate, encode,
//! snapshot), the xDS bytes one proxy receives for one endpoint change, and the time a stock
//! Envoy takes to apply a file edit.
//!
//! Every scenario measures its figures side by side in one run and reports medians and ratios;
//! nothing here asserts on time. The `portolan-bench` binary drives the scenarios and prints
//! them (and, with `--markdown`, writes them as tables).

#![forbid(unsafe_code)]

pub mod build;
pub mod error;
pub mod measure;
pub mod proxy;
pub mod report;
pub mod scenario;
pub mod synth;
pub mod synth_gateway_api;

pub use error::BenchError;
pub use synth::WorldSpec;

//! Portolan's server library: the pieces of `portolan serve` that other crates (the bench
//! harness) reuse. The binary (`main.rs`) holds the CLI and the wiring.

#![forbid(unsafe_code)]

pub mod fuzzing;
pub mod pipeline;
pub mod programmed;

//! End-to-end tests: a real `portolan serve`, stock Envoy, real upstreams and real traffic
//! (the harness is the `portolan-e2e` crate in `tests/e2e/src`).
//!
//! One test binary, one module per area, so the whole stack is linked once. Each test starts
//! its own processes on its own ports, so tests run side by side (`--test-threads`, see
//! `scripts/test.sh`) holding [`portolan_e2e::serial::shared`]; the two that load the machine
//! or measure Portolan's memory hold [`portolan_e2e::serial::alone`] and run with no other.

#![forbid(unsafe_code)]

mod ca_rotation;
mod capture;
mod edge_policies;
mod envoy_patch;
mod examples;
mod faults;
mod gateway;
mod gateway_api;
mod gateway_api_kubernetes;
mod gateway_api_mesh;
mod grpc;
mod history;
mod identity;
mod inject;
mod jwt;
mod kubernetes;
mod kubernetes_examples;
mod memory;
mod mesh;
mod mesh_security;
mod nack;
mod observability;
mod on_demand;
mod policies;
mod probes;
mod route_tests;
mod routing;
mod scoping;
mod security;
mod selection;
mod telemetry;
mod webhook;

use std::path::Path;

/// The `portolan` binary Cargo built for these tests.
fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_portolan"))
}

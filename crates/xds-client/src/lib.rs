//! Simulated xDS clients, one implementation for the benchmarks, the end-to-end tests and the
//! xDS server's own tests. It knows the xDS protocol and Envoy's habits, nothing of Portolan.
//!
//! * [`request`]: the requests a client sends (first request, ACK, NACK; SotW and Delta).
//! * [`SotwSubscriber`], [`DeltaSubscriber`]: what an Envoy subscribes to and answers, as pure
//!   state machines (response in, requests out), so a benchmark can drive a server's stream
//!   state machine in process with them.
//! * [`SotwStream`], [`DeltaStream`]: one ADS (or per-type) stream over real gRPC, raw.
//! * [`SotwClient`], [`DeltaClient`]: a subscriber on a stream ([`Client`]), ACKing as it reads.
//! * [`Fleet`]: thousands of SotW clients sharing a few HTTP/2 connections.

#![forbid(unsafe_code)]

mod client;
mod delta;
mod error;
mod fleet;
pub mod names;
pub mod node;
pub mod request;
mod sotw;
mod stream;
pub mod type_url;

pub use client::{Client, DeltaClient, SotwClient, Subscriber};
pub use delta::DeltaSubscriber;
pub use error::ClientError;
pub use fleet::{Fleet, FleetError, FleetSpec, Received};
pub use sotw::{Follow, SotwSubscriber};
pub use stream::{AdsStream, DeltaStream, SotwStream, channel};

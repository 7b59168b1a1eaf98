//! The scenarios of issue #3, each a function from a size to a report of measured figures.

pub mod endpoint_change;
pub mod envoy_ack;
pub mod translate;

pub use endpoint_change::{EndpointChange, endpoint_change};
pub use envoy_ack::{EnvoyAck, EnvoyAckConfig, envoy_ack};
pub use translate::{TranslateBench, translate};

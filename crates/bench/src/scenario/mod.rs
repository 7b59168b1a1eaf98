//! The scenarios: issue #3's (translate, endpoint-change, envoy-ack) and issue #8's (S3–S9:
//! fan-out, memory per proxy, bytes per change, reconnect storm, Envoy ingest, churn, worker
//! threads), issue #24's S10 connect storm, and issue #11's proxy modes (on-demand discovery; full push vs scoped; memory and
//! bytes per proxy in all three with real Envoys and Delta clients), each a
//! function from a size to a report of measured figures.

pub mod churn;
pub mod delta_bytes;
pub mod delta_client;
pub mod dist;
pub mod endpoint_change;
pub mod envoy_ack;
pub mod envoy_ingest;
pub mod fan_out;
pub mod mode_memory;
pub mod on_demand;
pub mod proxy_modes;
pub mod reconnect;
pub mod served;
pub mod storm;
pub mod translate;

pub use churn::{Churn, ChurnConfig, churn};
pub use delta_bytes::{delta_bytes, delta_bytes_md};
pub use endpoint_change::{EndpointChange, endpoint_change};
pub use envoy_ack::{EnvoyAck, EnvoyAckConfig, envoy_ack};
pub use envoy_ingest::{Ingest, envoy_ingest, envoy_ingest_md};
pub use fan_out::{FanOut, FanOutConfig, fan_out, fan_out_md, workers_md};
pub use mode_memory::{ModeMemory, ModeMemoryConfig, mode_memory};
pub use on_demand::{OnDemandBench, on_demand, on_demand_md};
pub use proxy_modes::{ProxyModes, ServedModes, proxy_modes, proxy_modes_served};
pub use reconnect::{Reconnect, reconnect};
pub use storm::{Storm, StormConfig, storm, storm_md};
pub use translate::{TranslateBench, translate};

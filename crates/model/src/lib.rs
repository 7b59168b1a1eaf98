//! Portolan's model: the source-independent picture of the mesh.
//!
//! Sources (the files source, the Kubernetes watchers) convert what they read into
//! [`Object`]s and apply or delete them on the [`Index`]; the index hands out immutable,
//! versioned [`World`] snapshots that translation reads. Invalid input never reaches the
//! index: sources report it as a [`ConfigError`] and the last good object stays in force.
//! [`source`] is the contract every source implements (changes, health, synced).

#![forbid(unsafe_code)]

pub mod changes;
pub mod convert;
pub mod edge;
pub mod envoy_patch;
pub mod error;
pub mod external;
pub mod gateway;
pub mod gateway_api;
pub mod group;
pub mod index;
pub mod jwt;
pub mod policy;
pub mod policy_attach;
pub mod policy_status;
pub mod proxy_scope;
pub mod resolve;
pub mod routing;
pub mod security;
pub mod source;
pub mod status;
pub mod types;
pub mod world;

pub use error::ConfigError;
pub use group::GroupKey;
pub use index::Index;
pub use status::{Condition, ConditionType};
pub use types::*;
pub use world::World;

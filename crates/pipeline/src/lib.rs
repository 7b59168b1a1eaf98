//! Portolan's build pipeline: everything between the config sources and the xDS cache. The
//! binary (`portolan serve`, `render`), the admission webhook's dry run, the bench and the fuzz
//! target all use it, so what is checked, measured and fuzzed is what is served.
//!
//! * [`sources`]: the index writer, the sink every config source writes its changes, health
//!   and first full read to (the contract is [`portolan_model::source`]).
//! * [`pipeline`]: [`Pipeline`], from World to cache: debounced rebuilds of the proxy groups
//!   with a connected proxy, a group built when its first proxy connects (none before),
//!   rollouts; [`PipelineMetrics`].
//! * [`grouping`]: the node-to-group rules ([`ProxyGrouping`], the xDS server's hook) and
//!   [`identity`]: which workload identity a proxy proved.
//! * [`groups`]: proxy groups from group keys, with their `ProxyScope` resolved.
//! * [`incremental`]: [`IncrementalBuilder`], translation memoized per Service, kept encoded.
//! * [`mod@snapshot`]: the one assembly of translated resources into a consistent snapshot
//!   (`portolan_xds::Snapshot`).
//! * `certs`: mesh groups' workload certificates and their rotation.
//! * [`history`]: the last N World versions built, their changed objects and group versions.
//! * [`patch`]: `EnvoyPatchPolicy`, JSON patches to generated resources, checked before served.
//! * [`programmed`]: NACKs in force attributed to the objects behind them (`Programmed=False`).
//! * [`fuzzing`]: a manifest file's bytes through the whole build path, for fuzzers and tests.

#![forbid(unsafe_code)]

mod certs;
pub mod error;
pub mod fuzzing;
pub mod grouping;
pub mod groups;
pub mod history;
pub mod identity;
pub mod incremental;
pub mod metrics;
pub mod patch;
pub mod pipeline;
pub mod programmed;
pub mod snapshot;
pub mod sources;

pub use error::{BuildError, PreviewError};
pub use grouping::ProxyGrouping;
pub use identity::{IdentityMode, WorkloadIdentity};
pub use incremental::IncrementalBuilder;
pub use metrics::PipelineMetrics;
pub use pipeline::{DEFAULT_GROUP, Pipeline, Served};
pub use snapshot::{snapshot, translate_checked};
pub use sources::{IndexWriter, SourceStatus, SourceWriter};

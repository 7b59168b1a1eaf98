//! Portolan's xDS server: a per-group resource cache, the per-stream SotW and Delta state
//! machines, and the tonic services (ADS and per-type CDS/EDS/LDS/RDS; SDS over ADS) that run them, and CSDS
//! (client status) over them.
//!
//! Data flows one way: the wiring builds a [`Snapshot`] per proxy group and [`Cache::set`]s it;
//! each stream task watches its group and feeds its state machine; the state machines decide what
//! to send, as responses that share the snapshot's encoded resources, and the gRPC layer frames
//! each straight from those bytes. Streams read shared state, never write it (apart from their
//! row in the proxy status table).

#![forbid(unsafe_code)]

pub mod authz;
pub mod cache;
pub mod canonical;
pub mod convergence;
pub mod csds;
pub mod debounce;
pub mod delta;
pub mod grouping;
pub mod grpc;
pub mod incoming;
pub mod limits;
pub mod metrics;
mod request_body;
pub mod resource;
pub mod response;
mod response_body;
pub mod server;
pub mod snapshot;
pub mod sotw;
pub mod sotw_request;
pub mod status;
pub mod stream;
mod task;
pub mod testing;
pub mod tls;
pub mod token;

pub use authz::{Authz, PeerIdentity};
pub use cache::{Cache, GroupLimit};
pub use csds::Csds;
pub use debounce::{Debouncer, debounce};
pub use delta::DeltaStream;
pub use grouping::{ByCluster, Grouped, NodeGrouping};
pub use incoming::ConnInfo;
pub use limits::{Limits, TokenBucket};
pub use metrics::XdsMetrics;
pub use resource::{Resource, ResourceType};
pub use response::{DeltaResponse, SotwResponse};
pub use server::{XdsError, XdsServer, serve, serve_tls, serve_with};
pub use snapshot::{Snapshot, SnapshotBuilder, SnapshotError};
pub use sotw::SotwStream;
pub use sotw_request::{RequestNames, SotwRequest};
pub use status::{Nack, ProxyStatus, SubscribedNames, SyncState, TypeStatus};
pub use stream::{Ignored, NodeInfo, Output, StreamTypes};
pub use tls::{TlsError, TlsFiles, TlsReloader};
pub use token::{
    Authenticated, RefusalReason, TokenAuth, TokenIdentity, TokenRefusal, TokenVerifier,
};

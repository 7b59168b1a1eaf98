//! The mesh outbound listener: an HTTP connection manager that takes its routes over RDS.

use crate::Options;
use crate::address::socket_address;
use crate::filters;
use crate::names;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};

/// The `mesh-outbound` listener, emitted even when there are no services; on `port` when
/// the workload names one, else on the configured port.
pub(crate) fn mesh_outbound(options: &Options, port: Option<u16>) -> Listener {
    let filter = filters::http_connection_manager(
        names::MESH_STAT_PREFIX,
        names::MESH_ROUTE,
        &options.telemetry,
    );
    Listener {
        name: names::MESH_LISTENER.to_string(),
        address: Some(socket_address(
            &options.mesh_listener_address,
            port.unwrap_or(options.mesh_listener_port),
        )),
        filter_chains: vec![FilterChain {
            filters: vec![filter],
            ..Default::default()
        }],
        ..Default::default()
    }
}

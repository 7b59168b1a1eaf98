//! S5 bytes per endpoint change, SotW vs Delta, at several mesh sizes (issue #8): scenario 2's
//! measurement (Portolan's own SotW and Delta stream state machines driven like Envoy, each
//! response's encoded size) repeated per size, to show the cost of one endpoint change does
//! not grow with the mesh.

use crate::scenario::{EndpointChange, endpoint_change};
use crate::{BenchError, WorldSpec};
use std::fmt::Write as _;

/// Runs S5: one endpoint change at each size.
pub fn delta_bytes(sizes: &[WorldSpec]) -> Result<Vec<EndpointChange>, BenchError> {
    sizes
        .iter()
        .map(|spec| endpoint_change(*spec, 1, "default"))
        .collect()
}

/// S5 as markdown.
pub fn delta_bytes_md(runs: &[EndpointChange]) -> String {
    let mut out = String::from("### S5 bytes per endpoint change, SotW vs Delta\n\n");
    let _ = writeln!(
        out,
        "| Services | Endpoints | Clusters | SotW bytes (responses, resources) | Delta bytes (responses, resources) | Delta / SotW | Every CLA together (a full EDS resend) |\n|---:|---:|---:|---:|---:|---:|---:|"
    );
    for e in runs {
        let (s, d) = (e.sotw_change, e.delta_change);
        let r = if s.bytes == 0 {
            0.0
        } else {
            d.bytes as f64 / s.bytes as f64
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} B ({}, {}) | {} B ({}, {}) | {r:.2} | {} B |",
            e.spec.services,
            e.spec.endpoints,
            e.spec.cluster_count(),
            s.bytes,
            s.responses,
            s.resources,
            d.bytes,
            d.responses,
            d.resources,
            e.all_cla_bytes
        );
    }
    out.push('\n');
    out
}

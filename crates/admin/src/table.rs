//! `portolan proxy-status` output: one row per connected stream, like `istioctl proxy-status`,
//! with the state of each xDS type, then the text of every NACK that is still in force.

use std::fmt::Write as _;

use portolan_xds::{ResourceType, SyncState};

use crate::proto::{ProxyStatusResponse, ProxyStream};

/// Column headers before the type columns.
const HEADERS: [&str; 4] = ["NAME", "GROUP", "CLIENT", "STREAM"];

/// One line of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub group: String,
    pub client: String,
    pub stream: String,
    /// CDS, EDS, LDS, RDS.
    pub states: [String; 4],
}

/// The state of one type on one stream: `SYNCED`, `STALE`, `NACKED`, `NOT SENT`, or `-` when
/// the stream (a per-type one) does not serve the type.
pub fn cell(stream: &ProxyStream, ty: ResourceType) -> String {
    if stream.stream != "ads" && stream.stream != ty.short_name() {
        return "-".to_string();
    }
    state(stream, ty).label().to_string()
}

/// The state of one type on one stream.
pub fn state(stream: &ProxyStream, ty: ResourceType) -> SyncState {
    let Some(status) = stream.types.iter().find(|t| t.type_url == ty.type_url()) else {
        return SyncState::NotSent;
    };
    SyncState::of(
        status.sent_version.as_deref(),
        status.acked_version.as_deref(),
        status.last_nack.as_ref().map(|n| n.version.as_str()),
        status.current_version.as_deref(),
    )
}

/// The rows, sorted by node id then stream.
pub fn rows(response: &ProxyStatusResponse) -> Vec<Row> {
    let mut rows: Vec<Row> = response.streams.iter().map(row).collect();
    rows.sort_by(|a, b| (&a.name, &a.stream).cmp(&(&b.name, &b.stream)));
    rows
}

fn row(stream: &ProxyStream) -> Row {
    Row {
        name: stream.node_id.clone(),
        group: stream.group.clone(),
        client: if stream.client.is_empty() {
            "-".to_string()
        } else {
            stream.client.clone()
        },
        stream: if stream.delta {
            format!("{} (delta)", stream.stream)
        } else {
            stream.stream.clone()
        },
        states: ResourceType::ALL.map(|ty| cell(stream, ty)),
    }
}

/// The table, columns padded to their widest cell, then one line per NACK in force.
pub fn render(response: &ProxyStatusResponse) -> String {
    let mut lines: Vec<Vec<String>> = vec![
        HEADERS
            .iter()
            .map(|h| h.to_string())
            .chain(ResourceType::ALL.map(|ty| ty.short_name().to_uppercase()))
            .collect(),
    ];
    for row in rows(response) {
        let mut cells = vec![row.name, row.group, row.client, row.stream];
        cells.extend(row.states);
        lines.push(cells);
    }
    let mut out = align(&lines);
    for note in nacks(response) {
        let _ = writeln!(out, "{note}");
    }
    out
}

fn align(lines: &[Vec<String>]) -> String {
    let columns = lines.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        let mut text = String::new();
        for (cell, width) in line.iter().zip(&widths) {
            let _ = write!(text, "{cell:<width$}   ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// `NACK node type version: message` for every NACKED cell.
fn nacks(response: &ProxyStatusResponse) -> Vec<String> {
    let mut notes = Vec::new();
    for stream in &response.streams {
        for ty in ResourceType::ALL {
            if state(stream, ty) != SyncState::Nacked {
                continue;
            }
            let nack = stream
                .types
                .iter()
                .find(|t| t.type_url == ty.type_url())
                .and_then(|t| t.last_nack.as_ref());
            if let Some(nack) = nack {
                notes.push(format!(
                    "NACK {} {} version {} (at {}): {}",
                    stream.node_id,
                    ty.short_name().to_uppercase(),
                    nack.version,
                    nack.at,
                    nack.message
                ));
            }
        }
    }
    notes.sort();
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Nack, TypeStatus};

    fn status(ty: ResourceType, sent: &str, acked: &str, current: &str) -> TypeStatus {
        let some = |v: &str| (!v.is_empty()).then(|| v.to_string());
        TypeStatus {
            type_url: ty.type_url().to_string(),
            sent_version: some(sent),
            acked_version: some(acked),
            last_nack: None,
            current_version: some(current),
        }
    }

    fn stream(node: &str, kind: &str, types: Vec<TypeStatus>) -> ProxyStream {
        ProxyStream {
            node_id: node.to_string(),
            group: "mesh".to_string(),
            client: "envoy 1.40.0".to_string(),
            stream: kind.to_string(),
            delta: false,
            connected_at: 0,
            types,
            group_versions: Default::default(),
        }
    }

    fn nacked(mut status: TypeStatus, version: &str, message: &str) -> TypeStatus {
        status.last_nack = Some(Nack {
            version: version.to_string(),
            message: message.to_string(),
            at: 1_700_000_000,
        });
        status
    }

    #[test]
    fn synced_stale_nacked_and_not_sent() {
        let s = stream(
            "sidecar-1",
            "ads",
            vec![
                status(ResourceType::Cluster, "c1", "c1", "c1"),
                // Sent but not ACKed yet.
                status(ResourceType::Endpoint, "e2", "e1", "e2"),
                nacked(
                    status(ResourceType::Listener, "l2", "l1", "l2"),
                    "l2",
                    "bad",
                ),
            ],
        );
        assert_eq!(
            row(&s).states,
            ["SYNCED", "STALE", "NACKED", "NOT SENT"].map(String::from)
        );
    }

    #[test]
    fn acked_but_behind_the_cache_is_stale() {
        let s = stream(
            "n",
            "ads",
            vec![status(ResourceType::Cluster, "c1", "c1", "c2")],
        );
        assert_eq!(state(&s, ResourceType::Cluster), SyncState::Stale);
    }

    #[test]
    fn an_old_nack_does_not_hide_a_later_ack() {
        let s = stream(
            "n",
            "ads",
            vec![nacked(
                status(ResourceType::Route, "r3", "r3", "r3"),
                "r2",
                "old",
            )],
        );
        assert_eq!(state(&s, ResourceType::Route), SyncState::Synced);
        assert!(nacks(&ProxyStatusResponse { streams: vec![s] }).is_empty());
    }

    #[test]
    fn per_type_streams_show_only_their_type() {
        let s = stream(
            "n",
            "eds",
            vec![status(ResourceType::Endpoint, "e", "e", "e")],
        );
        assert_eq!(row(&s).states, ["-", "SYNCED", "-", "-"].map(String::from));
    }

    #[test]
    fn table_is_sorted_aligned_and_lists_nacks() {
        let response = ProxyStatusResponse {
            streams: vec![
                stream(
                    "zeta",
                    "ads",
                    vec![nacked(
                        status(ResourceType::Listener, "l2", "l1", "l2"),
                        "l2",
                        "invalid listener",
                    )],
                ),
                stream(
                    "alpha",
                    "ads",
                    ResourceType::ALL
                        .map(|ty| status(ty, "v", "v", "v"))
                        .to_vec(),
                ),
            ],
        };
        let text = render(&response);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NAME    GROUP   CLIENT         STREAM   CDS        EDS        LDS      RDS"
        );
        assert_eq!(
            lines[1],
            "alpha   mesh    envoy 1.40.0   ads      SYNCED     SYNCED     SYNCED   SYNCED"
        );
        assert_eq!(
            lines[2],
            "zeta    mesh    envoy 1.40.0   ads      NOT SENT   NOT SENT   NACKED   NOT SENT"
        );
        assert_eq!(
            lines[3],
            "NACK zeta LDS version l2 (at 1700000000): invalid listener"
        );
        assert_eq!(lines.len(), 4);
    }
}

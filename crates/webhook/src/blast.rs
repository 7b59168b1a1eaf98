//! The blast radius of a change: which proxy groups it reaches (their translated snapshot
//! differs), how many proxies are connected to each (from the xDS cache's stream registry: the
//! webhook runs in the `serve` process; without a cache the count is unknown), the push it
//! causes (resources added, changed and removed per type, and the bytes sent), and the
//! clusters, route configurations and virtual hosts it REMOVES.
//!
//! [`warnings`] words a report as AdmissionReview warnings within the Kubernetes limits: the
//! API server may truncate a warning over 256 characters and ignores warnings beyond 4096
//! characters in all, so each warning is cut at [`MAX_WARNING`] characters and groups beyond
//! [`MAX_GROUPS`] are summarised in one line.

use portolan_model::World;
use portolan_translate::{Options, ProxyGroup, Resources};
use prost::Message;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Kubernetes may truncate a warning longer than this (characters).
pub const MAX_WARNING: usize = 256;
/// Groups named one warning each; the rest are summarised.
pub const MAX_GROUPS: usize = 8;

/// What a change does to the proxy groups it reaches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The groups whose snapshot differs, by name.
    pub groups: Vec<GroupBlast>,
}

/// One reached group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GroupBlast {
    pub group: String,
    /// Distinct connected proxies (node ids); `None`: unknown (no xDS server here).
    pub connected: Option<usize>,
    /// Per resource type (`clusters`, `endpoints`, `listeners`, `routes`, `secrets`).
    pub push: BTreeMap<String, TypeChange>,
    /// Bytes of the added and changed resources (protobuf encoding).
    pub bytes: usize,
    /// Clusters removed.
    pub removed_clusters: Vec<String>,
    /// Route configurations removed.
    pub removed_routes: Vec<String>,
    /// Virtual hosts removed, as `route configuration/virtual host`.
    pub removed_virtual_hosts: Vec<String>,
}

/// Counts of one resource type's changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TypeChange {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
}

/// Names and encodings of a group's resources, per type.
type Encoded = BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>;

/// The report of `candidate` against `current` for `groups`; a group whose translation fails
/// in the current World counts as having nothing (the check of the candidate is the dry run's).
/// `connected` counts the proxies of a group name (`None`: unknown).
pub fn report(
    current: &World,
    candidate: &World,
    groups: &[ProxyGroup],
    options: &Options,
    connected: &dyn Fn(&str) -> Option<usize>,
) -> Report {
    let mut reached = Vec::new();
    for group in groups {
        let before = translate(current, group, options).unwrap_or_default();
        let Some(after) = translate(candidate, group, options) else {
            continue;
        };
        if let Some(mut blast) = compare(&before, &after) {
            blast.group = group.name.clone();
            blast.connected = connected(&group.name);
            reached.push(blast);
        }
    }
    Report { groups: reached }
}

fn translate(world: &World, group: &ProxyGroup, options: &Options) -> Option<Resources> {
    portolan_pipeline::translate_checked(world, group, options)
        .ok()
        .map(|(r, _)| r)
}

fn encode(r: &Resources) -> Encoded {
    let mut e = Encoded::new();
    let mut put = |kind: &'static str, name: &str, bytes: Vec<u8>| {
        e.entry(kind).or_default().insert(name.to_string(), bytes);
    };
    r.clusters
        .iter()
        .for_each(|c| put("clusters", &c.name, c.encode_to_vec()));
    r.load_assignments
        .iter()
        .for_each(|c| put("endpoints", &c.cluster_name, c.encode_to_vec()));
    r.listeners
        .iter()
        .for_each(|c| put("listeners", &c.name, c.encode_to_vec()));
    r.routes
        .iter()
        .for_each(|c| put("routes", &c.name, c.encode_to_vec()));
    r.secrets
        .iter()
        .for_each(|c| put("secrets", &c.name, c.encode_to_vec()));
    e
}

/// The group's change from `before` to `after`; `None` when nothing differs.
pub fn compare(before: &Resources, after: &Resources) -> Option<GroupBlast> {
    let (old, new) = (encode(before), encode(after));
    let mut blast = GroupBlast::default();
    let empty = BTreeMap::new();
    let kinds: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    for kind in kinds {
        let (o, n) = (
            old.get(kind).unwrap_or(&empty),
            new.get(kind).unwrap_or(&empty),
        );
        let mut change = TypeChange::default();
        for (name, bytes) in n {
            match o.get(name) {
                None => change.added += 1,
                Some(b) if b != bytes => change.changed += 1,
                Some(_) => continue,
            }
            blast.bytes += bytes.len();
        }
        let removed: Vec<String> = o.keys().filter(|k| !n.contains_key(*k)).cloned().collect();
        change.removed = removed.len();
        match kind {
            "clusters" => blast.removed_clusters = removed,
            "routes" => blast.removed_routes = removed,
            _ => {}
        }
        if change != TypeChange::default() {
            blast.push.insert(kind.to_string(), change);
        }
    }
    blast.removed_virtual_hosts = removed_virtual_hosts(before, after);
    (!blast.push.is_empty()).then_some(blast)
}

/// Virtual hosts of route configurations in `before` that `after` no longer has.
fn removed_virtual_hosts(before: &Resources, after: &Resources) -> Vec<String> {
    let kept: BTreeSet<(&str, &str)> = after
        .routes
        .iter()
        .flat_map(|r| {
            r.virtual_hosts
                .iter()
                .map(|v| (r.name.as_str(), v.name.as_str()))
        })
        .collect();
    before
        .routes
        .iter()
        .flat_map(|r| {
            r.virtual_hosts
                .iter()
                .map(move |v| (r.name.as_str(), v.name.as_str()))
        })
        .filter(|k| !kept.contains(k))
        .map(|(r, v)| format!("{r}/{v}"))
        .collect()
}

// === impl Report ===

impl Report {
    /// Whether the change removes any cluster, route configuration or virtual host.
    pub fn removes(&self) -> bool {
        self.groups.iter().any(|g| {
            !(g.removed_clusters.is_empty()
                && g.removed_routes.is_empty()
                && g.removed_virtual_hosts.is_empty())
        })
    }
}

/// The report as AdmissionReview warnings: one per reached group (at most [`MAX_GROUPS`], each
/// at most [`MAX_WARNING`] characters), or one saying no group is reached.
pub fn warnings(report: &Report) -> Vec<String> {
    if report.groups.is_empty() {
        return vec![
            "blast radius: reaches no proxy group (no translated snapshot changes)".into(),
        ];
    }
    let mut out: Vec<String> = report
        .groups
        .iter()
        .take(MAX_GROUPS)
        .map(|g| cap(&line(g)))
        .collect();
    let rest = &report.groups[report.groups.len().min(MAX_GROUPS)..];
    if !rest.is_empty() {
        let proxies: usize = rest.iter().filter_map(|g| g.connected).sum();
        let removing = rest.iter().filter(|g| removes(g)).count();
        out.push(cap(&format!(
            "blast radius: and {} more groups ({proxies} proxies connected, {removing} with removals)",
            rest.len()
        )));
    }
    out
}

fn removes(g: &GroupBlast) -> bool {
    !(g.removed_clusters.is_empty()
        && g.removed_routes.is_empty()
        && g.removed_virtual_hosts.is_empty())
}

/// One group's line: `blast radius: group G (connected: N): push clusters +1 ~0 -0, ... (B bytes); REMOVES ...`.
pub fn line(g: &GroupBlast) -> String {
    let connected = g
        .connected
        .map_or_else(|| "unknown".to_string(), |n| n.to_string());
    let push: Vec<String> = g
        .push
        .iter()
        .map(|(k, c)| format!("{k} +{} ~{} -{}", c.added, c.changed, c.removed))
        .collect();
    let mut s = format!(
        "blast radius: group {} (connected: {connected}): push {} ({} bytes)",
        g.group,
        push.join(", "),
        g.bytes
    );
    let mut removed = Vec::new();
    for (what, names) in [
        ("clusters", &g.removed_clusters),
        ("routes", &g.removed_routes),
        ("virtual hosts", &g.removed_virtual_hosts),
    ] {
        if !names.is_empty() {
            removed.push(format!("{what} {}", names.join(" ")));
        }
    }
    if !removed.is_empty() {
        s.push_str("; REMOVES ");
        s.push_str(&removed.join("; "));
    }
    s
}

/// `s` cut to [`MAX_WARNING`] characters, ending in `...` when cut.
fn cap(s: &str) -> String {
    if s.chars().count() <= MAX_WARNING {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(MAX_WARNING - 3).collect();
    cut.push_str("...");
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};

    fn resources(clusters: &[&str], vhosts: &[&str]) -> Resources {
        Resources {
            clusters: clusters
                .iter()
                .map(|n| Cluster {
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect(),
            routes: vec![RouteConfiguration {
                name: "http-80".into(),
                virtual_hosts: vhosts
                    .iter()
                    .map(|n| VirtualHost {
                        name: n.to_string(),
                        domains: vec![n.to_string()],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_change_reaching_no_group_says_so() {
        let r = resources(&["a"], &["x"]);
        assert_eq!(compare(&r, &r), None);
        let w = warnings(&Report::default());
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("reaches no proxy group"), "{w:?}");
        assert!(!Report::default().removes());
    }

    #[test]
    fn removals_are_listed() {
        let before = resources(&["a", "b"], &["x", "y"]);
        let after = resources(&["a", "c"], &["x"]);
        let mut g = compare(&before, &after).expect("differs");
        g.group = "web".into();
        assert_eq!(g.removed_clusters, ["b"]);
        assert_eq!(g.removed_virtual_hosts, ["http-80/y"]);
        assert_eq!(
            g.push["clusters"],
            TypeChange {
                added: 1,
                changed: 0,
                removed: 1
            }
        );
        assert_eq!(g.push["routes"].changed, 1);
        assert!(g.bytes > 0);
        let report = Report { groups: vec![g] };
        assert!(report.removes());
        let w = warnings(&report);
        assert!(w[0].contains("group web (connected: unknown)"), "{w:?}");
        assert!(
            w[0].contains("REMOVES clusters b; virtual hosts http-80/y"),
            "{w:?}"
        );
    }

    #[test]
    fn warnings_are_capped() {
        let names: Vec<String> = (0..100)
            .map(|i| format!("cluster-with-a-long-name-{i}"))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let g = compare(&resources(&refs, &[]), &resources(&[], &[])).expect("differs");
        let report = Report {
            groups: (0..20)
                .map(|i| GroupBlast {
                    group: format!("g{i}"),
                    connected: Some(1),
                    ..g.clone()
                })
                .collect(),
        };
        let w = warnings(&report);
        assert_eq!(w.len(), MAX_GROUPS + 1);
        assert!(w.iter().all(|s| s.chars().count() <= MAX_WARNING));
        assert!(w.iter().map(|s| s.len()).sum::<usize>() <= 4096);
        assert!(
            w[MAX_GROUPS].contains("and 12 more groups (12 proxies connected, 12 with removals)")
        );
    }
}

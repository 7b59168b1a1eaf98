//! Per-proxy scoping: which Services and ExternalService hosts a scoped proxy group sees.
//!
//! A scope is a list of `namespace/host` entries, written like Istio's `Sidecar`
//! `egress.hosts` (node metadata `portolan.dev/scope`, comma-separated):
//!
//! * namespace: a name, `*` (every namespace), `.` (the proxy's own namespace: the
//!   `portolan.dev/namespace` node metadata, else its mesh identity's namespace) or `~`
//!   (nothing: `~/*` alone scopes a proxy that makes no outbound calls);
//! * host: `*`, `*.suffix` (any host ending in `.suffix`) or an exact host: a Service's
//!   `name.namespace.svc.DOMAIN` or an ExternalService host.
//!
//! A scoped group that no Gateway selects gets clusters, assignments and outbound virtual hosts
//! only for what its scope admits, plus the clusters (never the virtual hosts) of what the
//! TrafficRoutes of admitted hosts send to or mirror to, so no route names a cluster the
//! proxy lacks. Gateway groups ignore their scope: their routes name what they reach.

use crate::context::Context;
use crate::external::ExternalPlan;
use crate::lookup::{self, TargetId};
use crate::{ProxyGroup, route};
use portolan_model::routing::HttpAction;
use std::collections::BTreeSet;
use std::fmt;

/// The node metadata field a proxy writes its scope in.
pub const SCOPE_METADATA: &str = "portolan.dev/scope";
/// The node metadata field naming the proxy's own namespace (what `.` means).
pub const NAMESPACE_METADATA: &str = "portolan.dev/namespace";

/// A parsed scope (the hosts a proxy group may reach, like a Sidecar's `egress.hosts`): the
/// entries that parsed, and the first entry that did not.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EgressScope {
    pub hosts: Vec<ScopeHost>,
    /// The first bad entry; a group with one is not served (see [`ProxyGroup::scope_error`]).
    pub error: Option<ScopeError>,
}

/// One `namespace/host` entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeHost {
    pub namespace: NamespaceMatch,
    pub host: HostMatch,
}

/// The namespace part of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NamespaceMatch {
    /// `.`: the proxy's own namespace.
    Own,
    /// `*`.
    Any,
    /// `~`: no namespace.
    Nothing,
    Named(String),
}

/// The host part of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostMatch {
    /// `*`.
    Any,
    /// `*.suffix`, kept as `.suffix`.
    Suffix(String),
    Exact(String),
}

/// A scope entry that does not parse, with the field path of the entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ScopeError {
    /// E.g. `node.metadata["portolan.dev/scope"][1]`.
    pub field: String,
    pub reason: String,
}

/// What a scoped group's translation keeps.
#[derive(Debug, Default)]
pub(crate) struct Visible {
    /// Targets the scope admits: they get virtual hosts and clusters.
    admitted: BTreeSet<TargetId>,
    /// Targets the admitted hosts' routes send to: clusters only.
    dependencies: BTreeSet<TargetId>,
}

// === impl EgressScope ===

impl EgressScope {
    /// Parses comma-separated entries; blanks between commas are skipped.
    pub fn parse(text: &str) -> Self {
        let mut scope = EgressScope {
            hosts: Vec::new(),
            error: None,
        };
        let entries = text.split(',').map(str::trim).filter(|e| !e.is_empty());
        for (i, entry) in entries.enumerate() {
            match ScopeHost::parse(entry) {
                Ok(host) => scope.hosts.push(host),
                Err(reason) => {
                    scope.error.get_or_insert_with(|| ScopeError {
                        field: format!("node.metadata[\"{SCOPE_METADATA}\"][{i}]"),
                        reason,
                    });
                }
            }
        }
        scope
    }

    /// Whether an entry admits `host` of `namespace`, `own` being the proxy's namespace.
    pub fn admits(&self, own: Option<&str>, namespace: &str, host: &str) -> bool {
        self.hosts.iter().any(|h| h.admits(own, namespace, host))
    }
}

impl fmt::Display for EgressScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, host) in self.hosts.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{host}")?;
        }
        Ok(())
    }
}

// === impl ScopeHost ===

impl ScopeHost {
    fn parse(entry: &str) -> Result<Self, String> {
        let Some((namespace, host)) = entry.split_once('/') else {
            return Err(format!(
                "{entry:?} is not `namespace/host` (write `*/{entry}` for any namespace)"
            ));
        };
        let namespace = match namespace {
            "." => NamespaceMatch::Own,
            "*" => NamespaceMatch::Any,
            "~" => NamespaceMatch::Nothing,
            ns if is_dns_label(ns) => NamespaceMatch::Named(ns.to_string()),
            ns => {
                return Err(format!(
                    "namespace {ns:?} is not `.`, `*`, `~` or a DNS label"
                ));
            }
        };
        let host = match host {
            "*" => HostMatch::Any,
            h if h.starts_with("*.") && is_hostname(&h[2..]) => HostMatch::Suffix(h[1..].into()),
            h if is_hostname(h) => HostMatch::Exact(h.to_ascii_lowercase()),
            h => {
                return Err(format!(
                    "host {h:?} is not `*`, `*.suffix` or a host name (no port, no path)"
                ));
            }
        };
        Ok(Self { namespace, host })
    }

    fn admits(&self, own: Option<&str>, namespace: &str, host: &str) -> bool {
        let namespace_ok = match &self.namespace {
            NamespaceMatch::Own => own == Some(namespace),
            NamespaceMatch::Any => true,
            NamespaceMatch::Nothing => false,
            NamespaceMatch::Named(ns) => ns == namespace,
        };
        namespace_ok
            && match &self.host {
                HostMatch::Any => true,
                HostMatch::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(&**suffix),
                HostMatch::Exact(exact) => exact.eq_ignore_ascii_case(host),
            }
    }
}

impl fmt::Display for ScopeHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            NamespaceMatch::Own => f.write_str(".")?,
            NamespaceMatch::Any => f.write_str("*")?,
            NamespaceMatch::Nothing => f.write_str("~")?,
            NamespaceMatch::Named(ns) => f.write_str(ns)?,
        }
        f.write_str("/")?;
        match &self.host {
            HostMatch::Any => f.write_str("*"),
            HostMatch::Suffix(s) => write!(f, "*{s}"),
            HostMatch::Exact(h) => f.write_str(h),
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

// === impl Visible ===

impl Visible {
    /// What a group sees: `None` when it is unscoped or a Gateway selects it.
    pub(crate) fn of(ctx: &Context<'_>, group: &ProxyGroup) -> Option<Self> {
        let scope = group.scope.as_ref()?;
        if !crate::gateway::selecting(ctx.world, group).is_empty() {
            return None;
        }
        let own = group.own_namespace();
        let mut visible = Visible::default();
        for plan in &ctx.plans {
            let key = &plan.service.key;
            if scope.admits(own, &key.namespace, &plan.fqdn) {
                visible.admitted.insert(TargetId::Service(key.clone()));
            }
        }
        for plan in crate::external::plan_all(ctx.world) {
            let source = &plan.service.source;
            if scope.admits(own, &source.namespace, plan.host) {
                let target = TargetId::External(source.clone(), plan.host.to_string());
                visible.admitted.insert(target);
            }
        }
        visible.add_route_dependencies(ctx);
        Some(visible)
    }

    /// The destinations (and mirrors) of the mesh routes of admitted targets.
    fn add_route_dependencies(&mut self, ctx: &Context<'_>) {
        for (target, http_route) in route::mesh_routes(ctx.world) {
            if !self.admitted.contains(&target) {
                continue;
            }
            let namespace = &http_route.source.namespace;
            for rule in &http_route.http {
                let backends = match &rule.action {
                    HttpAction::Forward { backends, .. } => backends.as_slice(),
                    _ => &[],
                };
                let hosts = backends
                    .iter()
                    .map(|b| &b.destination)
                    .chain(rule.mirrors.iter().map(|m| &m.destination));
                for dest in hosts {
                    if let Some(id) = lookup::target_id(ctx.world, namespace, &dest.host) {
                        self.dependencies.insert(id);
                    }
                }
            }
        }
    }

    /// Whether the target gets a virtual host.
    pub(crate) fn admits(&self, target: &TargetId) -> bool {
        self.admitted.contains(target)
    }

    /// Whether the target gets its clusters (admitted, or a route's destination).
    pub(crate) fn reaches(&self, target: &TargetId) -> bool {
        self.admitted.contains(target) || self.dependencies.contains(target)
    }
}

/// The target of an external plan.
pub(crate) fn external_target(plan: &ExternalPlan<'_>) -> TargetId {
    TargetId::External(plan.service.source.clone(), plan.host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_like_sidecar_egress_hosts() {
        let scope = EgressScope::parse(
            " ./* , shared/*,*/api.payments.svc.cluster.local,*/*.example.com,,",
        );
        assert_eq!(scope.error, None);
        assert_eq!(
            scope.to_string(),
            "./*,shared/*,*/api.payments.svc.cluster.local,*/*.example.com"
        );
        assert!(scope.admits(Some("web"), "web", "a.web.svc.cluster.local"));
        assert!(!scope.admits(None, "web", "a.web.svc.cluster.local"));
        assert!(scope.admits(None, "shared", "x.shared.svc.cluster.local"));
        assert!(scope.admits(None, "payments", "api.payments.svc.cluster.local"));
        assert!(!scope.admits(None, "payments", "db.payments.svc.cluster.local"));
        assert!(scope.admits(None, "ext", "www.example.com"));
        assert!(!scope.admits(None, "ext", "example.com"));
        let nothing = EgressScope::parse("~/*");
        assert_eq!(nothing.error, None);
        assert_eq!(nothing.to_string(), "~/*");
        assert!(!nothing.admits(Some("web"), "web", "a.web.svc.cluster.local"));
    }

    #[test]
    fn a_bad_entry_names_its_index_and_the_others_still_parse() {
        let scope = EgressScope::parse("./*,payments,Web/*,*/a:80");
        assert_eq!(scope.hosts.len(), 1);
        let error = scope.error.expect("bad entries");
        assert_eq!(error.field, "node.metadata[\"portolan.dev/scope\"][1]");
        assert!(error.reason.contains("namespace/host"), "{error}");
        let scope = EgressScope::parse("Web/*");
        let error = scope.error.expect("bad namespace").to_string();
        assert!(
            error.starts_with("node.metadata[\"portolan.dev/scope\"][0]: namespace \"Web\""),
            "{error}"
        );
        let error = EgressScope::parse("*/a:80")
            .error
            .expect("bad host")
            .to_string();
        assert!(error.contains("host \"a:80\""), "{error}");
    }
}

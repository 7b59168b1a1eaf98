//! [`GroupKey`]: the proxy group key, one typed value per dimension that sets a group apart.
//!
//! A proxy group is the set of proxies that get identical configuration. The xDS wiring forms
//! a node's key (`portolan_pipeline::grouping`), translation reads it (`ProxyGroup` is built
//! from it) and the pipeline resolves the `ProxyScope` that applies to it. Its string form is
//! for the edges only: the xDS cache's group name, CSDS, metrics, logs and the CLI. It is
//! canonical (the same key always prints the same) and written, then read, here alone:
//!
//! ```text
//! CLUSTER[;zone=ZONE][;l.KEY=VALUE]...[;mode=on-demand|full][;scope=HOSTS][;client=grpc]
//!     [;egress=allow-any|registry-only][;node-ns=NS][;ns=NS;sa=SA[;app=PORT][;in=PORT]
//!     [;out=PORT][;proto=P]]
//! ```
//!
//! Labels are sorted by key; `HOSTS` is the comma-joined [`ScopeHosts`]; every text is
//! percent-encoded where it holds `%` (`%25`), `;` (`%3B`) or `=` (`%3D`), so no value a node
//! sends can forge another part. [`GroupKey::from_str`] reads the parts in any order and
//! refuses anything else (an unknown part, a repeated one, a bad escape or value) with a
//! [`GroupKeyError`] naming the part.

use std::collections::BTreeMap;
use std::fmt::{self, Display, Write as _};
use std::str::FromStr;

/// The cluster of proxies whose node names none.
pub const DEFAULT_CLUSTER: &str = "default";

/// The key of a proxy group: every dimension that gives proxies a configuration of their own.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    /// Envoy `node.cluster` ([`DEFAULT_CLUSTER`] when the node names none).
    pub cluster: String,
    /// Envoy `node.locality.zone`.
    pub zone: Option<String>,
    /// String fields of the node's `labels` metadata.
    pub labels: BTreeMap<String, String>,
    /// The discovery mode the node chose, if it chose one.
    pub discovery: DiscoveryMode,
    /// What the proxies may reach, as the node's metadata says; `None`: it says nothing.
    pub scope: Option<ScopeHosts>,
    /// Envoy or a proxyless gRPC client.
    pub client: ClientKind,
    /// What the node's sidecar does with captured connections to unknown destinations, when
    /// its metadata chooses (else the server's setting).
    pub egress: EgressPolicy,
    /// The namespace the node's metadata names (with the labels, it picks the `ProxyScope`).
    pub node_namespace: Option<String>,
    /// The proven workload identity and the workload's settings.
    pub workload: Option<WorkloadKey>,
}

/// How a node asked to discover its configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DiscoveryMode {
    /// The node did not choose (a `ProxyScope` may; else everything up front).
    #[default]
    Unset,
    /// Virtual hosts and clusters on first use (VHDS and on-demand CDS; Delta ADS only).
    OnDemand,
    /// Everything up front.
    Full,
}

/// What a sidecar does with captured connections to destinations Portolan does not know, as
/// its node chose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EgressPolicy {
    /// The node did not choose: the server's `--outbound-traffic-policy`.
    #[default]
    Unset,
    /// Pass them through.
    AllowAny,
    /// Refuse them.
    RegistryOnly,
}

/// The kind of xDS client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientKind {
    /// Envoy (or anything that is not a proxyless gRPC client).
    #[default]
    Envoy,
    /// A gRPC library with the xDS resolver.
    Grpc,
}

/// A scope's host entries, canonical: trimmed, non-empty, sorted, deduplicated, none holding a
/// comma (the separator of its string form).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeHosts(Vec<String>);

/// A proven workload identity (namespace and service account) and the workload's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    pub namespace: String,
    pub service_account: String,
    /// The port the application listens on.
    pub app_port: Option<u16>,
    /// The port the sidecar takes inbound traffic on.
    pub inbound_port: Option<u16>,
    /// The port the sidecar takes outbound traffic on.
    pub outbound_port: Option<u16>,
    /// The application's protocol, as the node names it (`tcp`: not HTTP).
    pub protocol: Option<String>,
}

/// Why a string is not a group key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("group key {key:?}: {problem}")]
pub struct GroupKeyError {
    /// The text that was read.
    pub key: String,
    /// What is wrong with it.
    pub problem: KeyProblem,
}

/// What is wrong with a group key, naming the part.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    #[error("the cluster (before the first ';') is empty")]
    EmptyCluster,
    #[error("part {0:?} is not NAME=VALUE")]
    NotNameValue(String),
    #[error("part {0:?} is not a group key part")]
    Unknown(String),
    #[error("part {0:?} appears twice")]
    Repeated(String),
    #[error("part {part:?}: {value:?} is not {expected}")]
    BadValue {
        part: String,
        value: String,
        expected: &'static str,
    },
    #[error("{0:?}: '%' must start %25, %3B or %3D, and '=' be written %3D")]
    BadEscape(String),
    #[error("the workload parts need both ns and sa")]
    IncompleteWorkload,
}

// === impl GroupKey ===

impl GroupKey {
    /// The key of the proxies with this `node.cluster` and nothing else (empty: `default`).
    pub fn new(node_cluster: &str) -> Self {
        let cluster = if node_cluster.is_empty() {
            DEFAULT_CLUSTER
        } else {
            node_cluster
        };
        Self {
            cluster: cluster.to_string(),
            ..Self::empty()
        }
    }

    fn empty() -> Self {
        Self {
            cluster: String::new(),
            zone: None,
            labels: BTreeMap::new(),
            discovery: DiscoveryMode::Unset,
            scope: None,
            client: ClientKind::Envoy,
            egress: EgressPolicy::Unset,
            node_namespace: None,
            workload: None,
        }
    }

    /// Whether its proxies asked for on-demand discovery (which only Delta ADS serves).
    pub fn is_on_demand(&self) -> bool {
        self.discovery == DiscoveryMode::OnDemand
    }

    fn parse(text: &str) -> Result<Self, KeyProblem> {
        let mut parts = text.split(';');
        let cluster = unescape(parts.next().unwrap_or_default())?;
        if cluster.is_empty() {
            return Err(KeyProblem::EmptyCluster);
        }
        let mut key = Self {
            cluster,
            ..Self::empty()
        };
        let mut workload = WorkloadParts::default();
        for part in parts {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| KeyProblem::NotNameValue(part.to_string()))?;
            key.set(name, value, &mut workload)?;
        }
        key.workload = workload.build()?;
        Ok(key)
    }

    /// Sets the dimension part `name` names from its (escaped) `value`.
    fn set(
        &mut self,
        name: &str,
        value: &str,
        workload: &mut WorkloadParts,
    ) -> Result<(), KeyProblem> {
        let repeated = || KeyProblem::Repeated(name.to_string());
        let value_text = unescape(value)?;
        match name {
            "zone" => set_once(&mut self.zone, value_text).ok_or_else(repeated),
            "mode" => {
                if self.discovery != DiscoveryMode::Unset {
                    return Err(repeated());
                }
                self.discovery = match value_text.as_str() {
                    "on-demand" => DiscoveryMode::OnDemand,
                    "full" => DiscoveryMode::Full,
                    _ => return Err(bad_value(name, value_text, "on-demand or full")),
                };
                Ok(())
            }
            "scope" => {
                let hosts = ScopeHosts::canonical(value_text.split(','), None);
                set_once(&mut self.scope, hosts).ok_or_else(repeated)
            }
            "client" => {
                if self.client != ClientKind::Envoy {
                    return Err(repeated());
                }
                if value_text != "grpc" {
                    return Err(bad_value(name, value_text, "grpc"));
                }
                self.client = ClientKind::Grpc;
                Ok(())
            }
            "egress" => {
                if self.egress != EgressPolicy::Unset {
                    return Err(repeated());
                }
                self.egress = match value_text.as_str() {
                    "allow-any" => EgressPolicy::AllowAny,
                    "registry-only" => EgressPolicy::RegistryOnly,
                    _ => return Err(bad_value(name, value_text, "allow-any or registry-only")),
                };
                Ok(())
            }
            "node-ns" => set_once(&mut self.node_namespace, value_text).ok_or_else(repeated),
            _ => match name.strip_prefix("l.") {
                Some(label) => {
                    let label = unescape(label)?;
                    if self.labels.contains_key(&label) {
                        return Err(repeated());
                    }
                    self.labels.insert(label, value_text);
                    Ok(())
                }
                None => workload.set(name, value_text),
            },
        }
    }
}

impl Default for GroupKey {
    /// The `default` cluster's key.
    fn default() -> Self {
        Self::new("")
    }
}

impl FromStr for GroupKey {
    type Err = GroupKeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text).map_err(|problem| GroupKeyError {
            key: text.to_string(),
            problem,
        })
    }
}

impl Display for GroupKey {
    /// The canonical string form (see the module docs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(&self.cluster))?;
        if let Some(zone) = &self.zone {
            write!(f, ";zone={}", escape(zone))?;
        }
        for (k, v) in &self.labels {
            write!(f, ";l.{}={}", escape(k), escape(v))?;
        }
        match self.discovery {
            DiscoveryMode::Unset => {}
            DiscoveryMode::OnDemand => f.write_str(";mode=on-demand")?,
            DiscoveryMode::Full => f.write_str(";mode=full")?,
        }
        if let Some(scope) = &self.scope {
            write!(f, ";scope={}", escape(&scope.to_string()))?;
        }
        if self.client == ClientKind::Grpc {
            f.write_str(";client=grpc")?;
        }
        match self.egress {
            EgressPolicy::Unset => {}
            EgressPolicy::AllowAny => f.write_str(";egress=allow-any")?,
            EgressPolicy::RegistryOnly => f.write_str(";egress=registry-only")?,
        }
        if let Some(namespace) = &self.node_namespace {
            write!(f, ";node-ns={}", escape(namespace))?;
        }
        if let Some(workload) = &self.workload {
            workload.fmt(f)?;
        }
        Ok(())
    }
}

/// Sets `slot` unless it is set already; `None` when it was.
fn set_once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

fn bad_value(part: &str, value: String, expected: &'static str) -> KeyProblem {
    KeyProblem::BadValue {
        part: part.to_string(),
        value,
        expected,
    }
}

// === impl ScopeHosts ===

impl ScopeHosts {
    /// The canonical form of scope entries (each may hold several, comma-separated): trimmed,
    /// empty ones dropped, `./HOST` as `NS/HOST` when the proxy's own namespace is known,
    /// sorted, deduplicated.
    pub fn canonical<'a>(
        entries: impl IntoIterator<Item = &'a str>,
        own_namespace: Option<&str>,
    ) -> Self {
        let mut out: Vec<String> = entries
            .into_iter()
            .flat_map(|e| e.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| match (e.strip_prefix("./"), own_namespace) {
                (Some(host), Some(ns)) => format!("{ns}/{host}"),
                _ => e.to_string(),
            })
            .collect();
        out.sort();
        out.dedup();
        Self(out)
    }

    /// The entries, sorted.
    pub fn entries(&self) -> &[String] {
        &self.0
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Display for ScopeHosts {
    /// The entries, comma-joined.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, entry) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            f.write_str(entry)?;
        }
        Ok(())
    }
}

// === impl WorkloadKey ===

impl WorkloadKey {
    /// A workload identity without settings.
    pub fn new(namespace: &str, service_account: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
            ..Self::default()
        }
    }

    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            ";ns={};sa={}",
            escape(&self.namespace),
            escape(&self.service_account)
        )?;
        for (name, port) in [
            ("app", self.app_port),
            ("in", self.inbound_port),
            ("out", self.outbound_port),
        ] {
            if let Some(port) = port {
                write!(f, ";{name}={port}")?;
            }
        }
        if let Some(protocol) = &self.protocol {
            write!(f, ";proto={}", escape(protocol))?;
        }
        Ok(())
    }
}

/// The workload parts of a key as they are read, in any order.
#[derive(Default)]
struct WorkloadParts {
    namespace: Option<String>,
    service_account: Option<String>,
    app_port: Option<u16>,
    inbound_port: Option<u16>,
    outbound_port: Option<u16>,
    protocol: Option<String>,
    any: bool,
}

impl WorkloadParts {
    fn set(&mut self, name: &str, value: String) -> Result<(), KeyProblem> {
        let set = match name {
            "ns" => set_once(&mut self.namespace, value),
            "sa" => set_once(&mut self.service_account, value),
            "app" => set_once(&mut self.app_port, port(name, value)?),
            "in" => set_once(&mut self.inbound_port, port(name, value)?),
            "out" => set_once(&mut self.outbound_port, port(name, value)?),
            "proto" => set_once(&mut self.protocol, value),
            _ => return Err(KeyProblem::Unknown(name.to_string())),
        };
        self.any = true;
        set.ok_or_else(|| KeyProblem::Repeated(name.to_string()))
    }

    /// The workload, if any part named one; an error when the identity is incomplete.
    fn build(self) -> Result<Option<WorkloadKey>, KeyProblem> {
        if !self.any {
            return Ok(None);
        }
        let (Some(namespace), Some(service_account)) = (self.namespace, self.service_account)
        else {
            return Err(KeyProblem::IncompleteWorkload);
        };
        Ok(Some(WorkloadKey {
            namespace,
            service_account,
            app_port: self.app_port,
            inbound_port: self.inbound_port,
            outbound_port: self.outbound_port,
            protocol: self.protocol,
        }))
    }
}

fn port(name: &str, value: String) -> Result<u16, KeyProblem> {
    value
        .parse()
        .map_err(|_| bad_value(name, value, "a port number"))
}

/// Percent-encodes `%`, `;` and `=`: the one encoding of key texts.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            ';' => out.push_str("%3B"),
            '=' => out.push_str("%3D"),
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape`]: any other use of `%`, and an unencoded `=`, is an error.
fn unescape(text: &str) -> Result<String, KeyProblem> {
    let bad = || KeyProblem::BadEscape(text.to_string());
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['%', '=']) {
        out.push_str(&rest[..at]);
        let decoded = match rest.get(at..at + 3) {
            Some("%25") => '%',
            Some("%3B") => ';',
            Some("%3D") => '=',
            _ => return Err(bad()),
        };
        out.push(decoded);
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;

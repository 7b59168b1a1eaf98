//! The State-of-the-World xDS state machine for one stream: requests in, responses out.
//!
//! Pure: no tokio, no I/O. The stream task feeds it each [`DiscoveryRequest`] and each new
//! [`Snapshot`] of the stream's group and sends whatever it returns, in order.
//!
//! Per type the stream subscribes to, it tracks the last nonce sent (requests answering an older
//! nonce are stale and ignored), what the client holds, and the ACKed version and last NACK.
//!
//! * Nothing is sent before the group's first snapshot.
//! * Clusters and listeners ([`ResourceType::is_wildcard`]) are full state: every response carries
//!   every subscribed resource (all of them for a wildcard subscription), and is sent only when that
//!   set's version changes. Endpoints and routes are by name: a response carries only the
//!   subscribed resources the client does not hold at their current version (Envoy keeps those
//!   left out), so one changed ClusterLoadAssignment is one resource to the streams that asked
//!   for it and nothing to the others. Names that do not exist yet are still answered (with what
//!   exists, possibly nothing) and pushed when they appear.
//! * A request whose names changed is answered even when nothing else changed.
//! * A NACK is recorded and logged; the client keeps its last accepted config, so what it holds is
//!   restored, and the rejected content is not sent again until it changes (full-state types: until
//!   the type's version changes).
//! * Pushes go in the order clusters, endpoints, listeners, routes (make-before-break).
//! * Deferred cluster removal (ADS only): when a push removes clusters and also changes listeners or
//!   routes, the cluster response of that push still carries the removed clusters (it only adds).
//!   Once every listener and route response of that push is ACKed or NACKed, a final cluster
//!   response without the removed clusters follows. While such a removal waits, later pushes keep
//!   the removed clusters too. A removal with no listener or route change goes out at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tracing::{debug, warn};

use crate::resource::{Resource, ResourceType, aggregate_version};
use crate::snapshot::Snapshot;
use crate::status::{Nack, TypeStatus};
use crate::stream::{NodeInfo, Nonces, Output, RemovalGate, Scope};

/// The SotW state of one stream.
#[derive(Debug)]
pub struct SotwStream {
    scope: Scope,
    node: Option<NodeInfo>,
    snapshot: Option<Arc<Snapshot>>,
    nonces: Nonces,
    types: BTreeMap<ResourceType, TypeState>,
    gate: RemovalGate,
}

/// One subscribed type.
#[derive(Debug)]
struct TypeState {
    ty: ResourceType,
    wildcard: bool,
    names: BTreeSet<String>,
    /// What we believe the client holds.
    known: BTreeMap<String, Arc<Resource>>,
    last: Option<Sent>,
    needs_answer: bool,
    acked_version: Option<String>,
    last_nack: Option<Nack>,
    /// By-name types: resource versions the client rejected.
    nacked: BTreeMap<String, String>,
    /// Full-state types: the aggregate version the client rejected.
    nacked_version: Option<String>,
}

/// The last response sent for a type.
#[derive(Debug)]
struct Sent {
    nonce: String,
    version: String,
    /// What `known` held before this response, to restore on NACK.
    previous: Vec<(String, Option<Arc<Resource>>)>,
    answered: bool,
}

/// A response about to be sent.
#[derive(Debug)]
struct Plan {
    version: String,
    resources: Vec<Arc<Resource>>,
    target: BTreeMap<String, Arc<Resource>>,
}

/// How a request relates to the last response of its type.
enum Answer {
    /// A first request or a subscription change.
    None,
    Stale,
    Ack(String),
    Nack {
        nonce: String,
        nack: Nack,
    },
}

// === impl SotwStream ===

impl SotwStream {
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            node: None,
            snapshot: None,
            nonces: Nonces::default(),
            types: BTreeMap::new(),
            gate: RemovalGate::default(),
        }
    }

    /// The node from the first request that carried one.
    pub fn node(&self) -> Option<&NodeInfo> {
        self.node.as_ref()
    }

    /// Handles one request from the client.
    pub fn on_request(&mut self, request: DiscoveryRequest) -> Output<DiscoveryResponse> {
        let mut out = Output::default();
        if self.node.is_none() && request.node.is_some() {
            self.node = Some(NodeInfo::from_node(request.node.as_ref()));
        }
        let Some(ty) =
            ResourceType::from_type_url(&request.type_url).filter(|ty| self.scope.allows(*ty))
        else {
            debug!(type_url = %request.type_url, "ignoring request for a type this stream does not serve");
            return out;
        };
        let node_id = self.node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
        let state = self.types.entry(ty).or_insert_with(|| TypeState::new(ty));
        match state.answer(&request) {
            Answer::Stale => {
                debug!(node = %node_id, kind = %ty, nonce = %request.response_nonce, "ignoring stale request");
                return out;
            }
            Answer::Ack(nonce) => {
                out.acks.push(ty);
                self.gate.settle(&nonce);
            }
            Answer::Nack { nonce, nack } => {
                warn!(node = %node_id, kind = %ty, version = %nack.version, message = %nack.message, "xDS NACK");
                out.nacks.push(ty);
                self.gate.settle(&nonce);
            }
            Answer::None => {}
        }
        state.subscribe(&request.resource_names);
        out.responses = self.push();
        out
    }

    /// Takes a new snapshot of the stream's group and pushes what changed.
    pub fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output<DiscoveryResponse> {
        self.snapshot = Some(snapshot);
        Output {
            responses: self.push(),
            ..Output::default()
        }
    }

    /// Per subscribed type: sent, ACKed, last NACK.
    pub fn status(&self) -> Vec<TypeStatus> {
        self.types.values().map(TypeState::status).collect()
    }

    /// Plans every subscribed type, then commits in push order.
    fn push(&mut self) -> Vec<DiscoveryResponse> {
        let Some(snapshot) = self.snapshot.clone() else {
            return Vec::new();
        };
        let mut plans = Vec::new();
        for ty in [
            ResourceType::Endpoint,
            ResourceType::Listener,
            ResourceType::Route,
            ResourceType::Secret,
        ] {
            if let Some(plan) = self.types.get(&ty).and_then(|s| s.plan(&snapshot, &[])) {
                plans.push((ty, plan));
            }
        }
        let routing_changes = plans
            .iter()
            .any(|(ty, _)| matches!(ty, ResourceType::Listener | ResourceType::Route));
        let mut retained = Vec::new();
        if let Some(clusters) = self.types.get(&ResourceType::Cluster) {
            if self.scope == Scope::Aggregated && (routing_changes || self.gate.is_waiting()) {
                retained = clusters.removed_by(&snapshot);
            }
            if let Some(plan) = clusters.plan(&snapshot, &retained) {
                plans.insert(0, (ResourceType::Cluster, plan));
            }
        }
        let mut responses = Vec::new();
        for (ty, plan) in plans {
            let nonce = self.nonces.next();
            let Some(state) = self.types.get_mut(&ty) else {
                continue;
            };
            if let Some(old) = &state.last {
                self.gate.supersede(&old.nonce, &nonce);
            }
            if !retained.is_empty() && matches!(ty, ResourceType::Listener | ResourceType::Route) {
                self.gate.wait_for(nonce.clone());
            }
            responses.push(state.commit(plan, nonce));
        }
        responses
    }
}

// === impl TypeState ===

impl TypeState {
    fn new(ty: ResourceType) -> Self {
        Self {
            ty,
            wildcard: false,
            names: BTreeSet::new(),
            known: BTreeMap::new(),
            last: None,
            needs_answer: true,
            acked_version: None,
            last_nack: None,
            nacked: BTreeMap::new(),
            nacked_version: None,
        }
    }

    /// Classifies the request's nonce and records an ACK or NACK.
    fn answer(&mut self, request: &DiscoveryRequest) -> Answer {
        if request.response_nonce.is_empty() {
            return Answer::None;
        }
        let Some(last) = self.last.as_mut() else {
            // Nothing was sent on this stream: a nonce from an earlier stream, a new subscription.
            return Answer::None;
        };
        if last.nonce != request.response_nonce {
            return Answer::Stale;
        }
        if last.answered {
            return Answer::None;
        }
        last.answered = true;
        let nonce = last.nonce.clone();
        match &request.error_detail {
            None => {
                self.acked_version = Some(last.version.clone());
                // Accepted: the copy kept for restoring on a NACK is no longer needed.
                last.previous = Vec::new();
                Answer::Ack(nonce)
            }
            Some(error) => {
                let nack = Nack {
                    version: last.version.clone(),
                    message: error.message.clone(),
                    at: SystemTime::now(),
                };
                self.reject();
                self.last_nack = Some(nack.clone());
                Answer::Nack { nonce, nack }
            }
        }
    }

    /// The client kept what it had: restore it, and remember what it rejected.
    fn reject(&mut self) {
        let Some(last) = self.last.as_mut() else {
            return;
        };
        if self.ty.is_wildcard() {
            self.nacked_version = Some(last.version.clone());
        }
        for (name, previous) in last.previous.drain(..) {
            if let Some(rejected) = self.known.get(&name) {
                self.nacked
                    .insert(name.clone(), rejected.version().to_string());
            }
            match previous {
                Some(resource) => self.known.insert(name, resource),
                None => self.known.remove(&name),
            };
        }
    }

    /// Updates the subscribed names; a change needs an answer.
    fn subscribe(&mut self, requested: &[String]) {
        let wildcard =
            requested.iter().any(|n| n == "*") || (requested.is_empty() && self.ty.is_wildcard());
        let names: BTreeSet<String> = requested.iter().filter(|n| *n != "*").cloned().collect();
        if wildcard != self.wildcard || names != self.names {
            self.needs_answer = true;
        }
        self.wildcard = wildcard;
        self.names = names;
        if !self.wildcard {
            let names = &self.names;
            self.known.retain(|name, _| names.contains(name));
        }
    }

    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// Resources the client holds that the snapshot no longer has.
    fn removed_by(&self, snapshot: &Snapshot) -> Vec<Arc<Resource>> {
        let current = snapshot.resources(self.ty);
        self.known
            .values()
            .filter(|r| !current.contains_key(r.name()) && self.wants(r.name()))
            .cloned()
            .collect()
    }

    /// What to send for the snapshot, if anything. `extra` resources are kept in the response
    /// (deferred removal).
    fn plan(&self, snapshot: &Snapshot, extra: &[Arc<Resource>]) -> Option<Plan> {
        let mut target: BTreeMap<String, Arc<Resource>> = snapshot
            .resources(self.ty)
            .iter()
            .filter(|(name, _)| self.wants(name))
            .map(|(name, r)| (name.clone(), r.clone()))
            .collect();
        for resource in extra {
            target
                .entry(resource.name().to_string())
                .or_insert_with(|| resource.clone());
        }
        let version = aggregate_version(target.iter().map(|(n, r)| (n.as_str(), r.version())));
        let resources = if self.ty.is_wildcard() {
            let unchanged = self.last.as_ref().is_some_and(|l| l.version == version)
                || self.nacked_version.as_deref() == Some(version.as_str());
            if unchanged && !self.needs_answer {
                return None;
            }
            target.values().cloned().collect()
        } else {
            let changed: Vec<_> = target
                .values()
                .filter(|r| self.is_new(r))
                .cloned()
                .collect();
            if changed.is_empty() && !self.needs_answer {
                return None;
            }
            changed
        };
        Some(Plan {
            version,
            resources,
            target,
        })
    }

    /// By-name types: the client does not hold this content and did not reject it.
    fn is_new(&self, resource: &Resource) -> bool {
        let held = self.known.get(resource.name()).map(|r| r.version());
        let rejected = self.nacked.get(resource.name()).map(String::as_str);
        held != Some(resource.version()) && rejected != Some(resource.version())
    }

    /// Records the plan as sent and builds the response.
    fn commit(&mut self, plan: Plan, nonce: String) -> DiscoveryResponse {
        let mut previous = Vec::new();
        if self.ty.is_wildcard() {
            let old = std::mem::replace(&mut self.known, plan.target);
            for name in self.known.keys().filter(|n| !old.contains_key(*n)) {
                previous.push((name.clone(), None));
            }
            previous.extend(old.into_iter().map(|(name, r)| (name, Some(r))));
        } else {
            let gone: Vec<String> = self
                .known
                .keys()
                .filter(|n| !plan.target.contains_key(*n))
                .cloned()
                .collect();
            for name in gone {
                let old = self.known.remove(&name);
                previous.push((name, old));
            }
            for resource in &plan.resources {
                let old = self
                    .known
                    .insert(resource.name().to_string(), resource.clone());
                previous.push((resource.name().to_string(), old));
            }
        }
        self.needs_answer = false;
        self.last = Some(Sent {
            nonce: nonce.clone(),
            version: plan.version.clone(),
            previous,
            answered: false,
        });
        DiscoveryResponse {
            version_info: plan.version,
            resources: plan.resources.iter().map(|r| r.any().clone()).collect(),
            type_url: self.ty.type_url().to_string(),
            nonce,
            ..Default::default()
        }
    }

    fn status(&self) -> TypeStatus {
        TypeStatus {
            type_url: self.ty.type_url().to_string(),
            sent_version: self.last.as_ref().map(|l| l.version.clone()),
            acked_version: self.acked_version.clone(),
            last_nack: self.last_nack.clone(),
            names: (!self.wildcard).then(|| self.names.iter().cloned().collect()),
        }
    }
}

#[cfg(test)]
#[path = "sotw_tests.rs"]
mod tests;

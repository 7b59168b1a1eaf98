//! The State-of-the-World xDS state machine for one stream: requests in, responses out.
//!
//! Pure: no tokio, no I/O, no logging, no knowledge of the node. The stream task feeds it each
//! [`DiscoveryRequest`] and each new [`Snapshot`] of the stream's group and sends whatever it
//! returns, in order: [`SotwResponse`]s holding the snapshot's resources, not copies of them.
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
//! * Names are shared, not copied: the subscribed names and what the client holds are keyed by
//!   the snapshot's own `Arc<str>` names, and a type whose snapshot content did not change since
//!   it last had nothing to send is not planned again (see `stream::Quiet`).
//! * Pushes go in the order clusters, endpoints, listeners, routes (make-before-break).
//! * Deferred cluster removal (ADS only): when a push removes clusters and also changes listeners or
//!   routes, the cluster response of that push still carries the removed clusters (it only adds).
//!   Once every listener and route response of that push is ACKed or NACKed, a final cluster
//!   response without the removed clusters follows. While such a removal waits, later pushes keep
//!   the removed clusters too. A removal with no listener or route change goes out at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

use crate::resource::{Resource, ResourceType, aggregate_version};
use crate::response::SotwResponse;
use crate::snapshot::Snapshot;
use crate::status::{Nack, SubscribedNames, TypeStatus};
use crate::stream::{Ignored, Nonces, Output, Quiet, RemovalGate, StreamTypes};

/// The SotW state of one stream.
#[derive(Debug)]
pub struct SotwStream {
    served: StreamTypes,
    snapshot: Option<Arc<Snapshot>>,
    nonces: Nonces,
    types: BTreeMap<ResourceType, TypeState>,
    gate: RemovalGate,
}

/// A resource name shared with the snapshot (or made once per subscription when the snapshot
/// does not have it).
type Name = Arc<str>;

/// One subscribed type.
#[derive(Debug)]
struct TypeState {
    ty: ResourceType,
    wildcard: bool,
    /// Shared with the stream's status row.
    names: SubscribedNames,
    /// What we believe the client holds.
    known: BTreeMap<Name, Arc<Resource>>,
    last: Option<Sent>,
    needs_answer: bool,
    acked_version: Option<String>,
    last_nack: Option<Nack>,
    /// By-name types: resource versions the client rejected.
    nacked: BTreeMap<Name, String>,
    /// Full-state types: the aggregate version the client rejected.
    nacked_version: Option<String>,
    /// The "nothing changed" memo of `plan`.
    quiet: Quiet,
}

/// The last response sent for a type.
#[derive(Debug)]
struct Sent {
    nonce: String,
    version: String,
    /// What `known` held before this response, to restore on NACK.
    previous: Vec<(Name, Option<Arc<Resource>>)>,
    answered: bool,
}

/// A response about to be sent.
#[derive(Debug)]
struct Plan {
    version: String,
    resources: Vec<Arc<Resource>>,
    target: BTreeMap<Name, Arc<Resource>>,
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
    pub fn new(served: StreamTypes) -> Self {
        Self {
            served,
            snapshot: None,
            nonces: Nonces::default(),
            types: BTreeMap::new(),
            gate: RemovalGate::default(),
        }
    }

    /// Handles one request from the client.
    pub fn on_request(&mut self, request: DiscoveryRequest) -> Output<SotwResponse> {
        let mut out = Output::default();
        let Some(ty) =
            ResourceType::from_type_url(&request.type_url).filter(|ty| self.served.allows(*ty))
        else {
            out.ignored = Some(Ignored::Type(request.type_url));
            return out;
        };
        let state = self.types.entry(ty).or_insert_with(|| TypeState::new(ty));
        match state.answer(&request) {
            Answer::Stale => {
                out.ignored = Some(Ignored::Nonce {
                    ty,
                    nonce: request.response_nonce,
                });
                return out;
            }
            Answer::Ack(nonce) => {
                out.acks.push(ty);
                self.gate.settle(&nonce);
            }
            Answer::Nack { nonce, nack } => {
                out.nacks.push((ty, nack));
                self.gate.settle(&nonce);
            }
            Answer::None => {}
        }
        state.subscribe(&request.resource_names, self.snapshot.as_deref());
        out.responses = self.push();
        out
    }

    /// Takes a new snapshot of the stream's group and pushes what changed.
    pub fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output<SotwResponse> {
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
    fn push(&mut self) -> Vec<SotwResponse> {
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
            if let Some(plan) = self.types.get_mut(&ty).and_then(|s| s.plan(&snapshot, &[])) {
                plans.push((ty, plan));
            }
        }
        let routing_changes = plans
            .iter()
            .any(|(ty, _)| matches!(ty, ResourceType::Listener | ResourceType::Route));
        let mut retained = Vec::new();
        if let Some(clusters) = self.types.get_mut(&ResourceType::Cluster) {
            if self.served == StreamTypes::Aggregated && (routing_changes || self.gate.is_waiting())
            {
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
            names: SubscribedNames::default(),
            known: BTreeMap::new(),
            last: None,
            needs_answer: true,
            acked_version: None,
            last_nack: None,
            nacked: BTreeMap::new(),
            nacked_version: None,
            quiet: Quiet::default(),
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
        self.quiet.forget();
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

    /// Updates the subscribed names; a change needs an answer. New names are taken from
    /// `snapshot` when it has them, so streams share one copy.
    fn subscribe(&mut self, requested: &[String], snapshot: Option<&Snapshot>) {
        let wildcard =
            requested.iter().any(|n| n == "*") || (requested.is_empty() && self.ty.is_wildcard());
        // The common case, a request naming the same names in the same (sorted) order, builds
        // no set.
        let in_order = requested.len() == self.names.len()
            && requested
                .iter()
                .zip(self.names.iter())
                .all(|(a, b)| a.as_str() == &**b);
        let changed = (!in_order)
            .then(|| {
                let wanted: BTreeSet<&str> = requested
                    .iter()
                    .map(String::as_str)
                    .filter(|n| *n != "*")
                    .collect();
                let same = wanted.len() == self.names.len()
                    && wanted
                        .iter()
                        .zip(self.names.iter())
                        .all(|(a, b)| *a == &**b);
                (!same).then_some(wanted)
            })
            .flatten();
        if wildcard != self.wildcard || changed.is_some() {
            self.needs_answer = true;
            self.quiet.forget();
        }
        self.wildcard = wildcard;
        if let Some(wanted) = changed {
            let existing = snapshot.map(|s| s.resources(self.ty));
            let names = wanted
                .into_iter()
                .map(|name| match existing.and_then(|e| e.get(name)) {
                    Some(resource) => resource.shared_name().clone(),
                    None => Name::from(name),
                })
                .collect();
            self.names = Arc::new(names);
        }
        if !self.wildcard {
            let (names, held) = (&self.names, self.known.len());
            self.known.retain(|name, _| names.contains(name));
            if self.known.len() != held {
                self.quiet.forget();
            }
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
    fn plan(&mut self, snapshot: &Snapshot, extra: &[Arc<Resource>]) -> Option<Plan> {
        let current = snapshot.version(self.ty);
        if extra.is_empty() && self.quiet.at(current) {
            debug_assert!(self.plan_for(snapshot, extra).is_none(), "memo hid a push");
            return None;
        }
        let plan = self.plan_for(snapshot, extra);
        if plan.is_none() && extra.is_empty() {
            self.quiet.note(current);
        }
        plan
    }

    /// [`TypeState::plan`] without the memo.
    fn plan_for(&self, snapshot: &Snapshot, extra: &[Arc<Resource>]) -> Option<Plan> {
        let all = snapshot.resources(self.ty);
        // Nothing to send is the common case: find it out before building anything.
        let every = self.wildcard && extra.is_empty();
        let quiet = if self.ty.is_wildcard() {
            every && self.holds(snapshot.version(self.ty))
        } else {
            extra.is_empty() && !self.any_new(all)
        };
        if quiet && !self.needs_answer {
            return None;
        }
        let mut target: BTreeMap<Name, Arc<Resource>> = if self.wildcard {
            all.values()
                .map(|r| (r.shared_name().clone(), r.clone()))
                .collect()
        } else {
            self.names
                .iter()
                .filter_map(|name| all.get(&**name))
                .map(|r| (r.shared_name().clone(), r.clone()))
                .collect()
        };
        for resource in extra {
            target
                .entry(resource.shared_name().clone())
                .or_insert_with(|| resource.clone());
        }
        let version = if every {
            // Every resource of the type: the snapshot's own aggregate of the same pairs.
            snapshot.version(self.ty).to_string()
        } else {
            aggregate_version(target.iter().map(|(n, r)| (&**n, r.version())))
        };
        let resources = if self.ty.is_wildcard() {
            if self.holds(&version) && !self.needs_answer {
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

    /// By-name types: whether any wanted resource of `all` is new to the client.
    fn any_new(&self, all: &BTreeMap<String, Arc<Resource>>) -> bool {
        if self.wildcard {
            all.values().any(|r| self.is_new(r))
        } else {
            self.names
                .iter()
                .filter_map(|name| all.get(&**name))
                .any(|r| self.is_new(r))
        }
    }

    /// Full-state types: `version` is what was sent last, or what the client rejected.
    fn holds(&self, version: &str) -> bool {
        self.last.as_ref().is_some_and(|l| l.version == version)
            || self.nacked_version.as_deref() == Some(version)
    }

    /// By-name types: the client does not hold this content and did not reject it.
    fn is_new(&self, resource: &Resource) -> bool {
        let held = self.known.get(resource.name()).map(|r| r.version());
        let rejected = self.nacked.get(resource.name()).map(String::as_str);
        held != Some(resource.version()) && rejected != Some(resource.version())
    }

    /// Records the plan as sent and builds the response (sharing the plan's resources).
    fn commit(&mut self, plan: Plan, nonce: String) -> SotwResponse {
        let mut previous = Vec::new();
        if self.ty.is_wildcard() {
            let old = std::mem::replace(&mut self.known, plan.target);
            for name in self.known.keys().filter(|n| !old.contains_key(*n)) {
                previous.push((name.clone(), None));
            }
            previous.extend(old.into_iter().map(|(name, r)| (name, Some(r))));
        } else {
            let gone: Vec<Name> = self
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
                let name = resource.shared_name().clone();
                let old = self.known.insert(name.clone(), resource.clone());
                previous.push((name, old));
            }
        }
        self.needs_answer = false;
        self.quiet.forget();
        self.last = Some(Sent {
            nonce: nonce.clone(),
            version: plan.version.clone(),
            previous,
            answered: false,
        });
        SotwResponse {
            version_info: plan.version,
            resources: plan.resources,
            ty: self.ty,
            nonce,
        }
    }

    fn status(&self) -> TypeStatus {
        TypeStatus {
            type_url: self.ty.type_url().to_string(),
            sent_version: self.last.as_ref().map(|l| l.version.clone()),
            acked_version: self.acked_version.clone(),
            last_nack: self.last_nack.clone(),
            names: (!self.wildcard).then(|| self.names.clone()),
        }
    }
}

#[cfg(test)]
#[path = "sotw_tests.rs"]
mod tests;

//! The State-of-the-World xDS state machine for one stream: requests in, responses out.
//!
//! Pure: no tokio, no I/O, no logging, no knowledge of the node. The stream task feeds it each
//! [`SotwRequest`] and each new [`Snapshot`] of the stream's group and sends whatever it
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
//!   the type's version changes). By-name types: when the NACK's message names some of the
//!   response's resources (as whole words), only those count as rejected, and the others go out
//!   again at once without them: Envoy refuses a whole response for one bad RouteConfiguration,
//!   and a valid one beside it must not wait for an unrelated change. A message that names none
//!   of them rejects them all.
//! * Names are shared, not copied: the subscribed names and what the client holds are keyed by
//!   the snapshot's own `Arc<str>` names, and a type whose snapshot content did not change since
//!   it last had nothing to send is not planned again (see `stream::Quiet`). A subscription to
//!   every name of a type is the snapshot's one set of them, and what the client holds, when it
//!   is every resource of the type, is the snapshot's one map of them (`stream::Held`): a proxy
//!   in step with its group costs its stream no per-name state, however large the mesh.
//! * Requests arrive with their names still encoded ([`SotwRequest`]): a request naming the
//!   subscribed names in their order (every EDS ACK of an Envoy in step names all of its
//!   clusters) is recognized by comparing bytes, with no string made per name; only a
//!   subscription change makes the new names into strings.
//! * A type whose state matches the group's previous snapshot exactly (`stream::Synced`: nothing
//!   subscribed or rejected since, nothing held back) plans the push of the next snapshot from
//!   that snapshot's change set ([`Snapshot::changes_since`]) in O(changed resources): the
//!   changed resources it subscribes to that the client does not hold, and the new version kept
//!   as a running sum (`VersionSum`). A full-state type whose subscribed resources changed is
//!   built in full (its response carries them all). Anything else (a stream more than one
//!   snapshot behind, a subscription change, a NACK, a held-back removal) diffs in full, as
//!   before; both ways give the same responses (debug builds check each change-set plan
//!   against the full diff).
//! * Pushes go in the order clusters, endpoints, listeners, routes (make-before-break).
//! * Deferred cluster removal (ADS only): when a push removes clusters and also changes listeners or
//!   routes, the cluster response of that push still carries the removed clusters (it only adds).
//!   Once every listener and route response of that push is ACKed or NACKed, a final cluster
//!   response without the removed clusters follows. While such a removal waits, later pushes keep
//!   the removed clusters too. A removal with no listener or route change goes out at once.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use crate::resource::{Resource, ResourceType, VersionSum};
use crate::response::SotwResponse;
use crate::snapshot::{Change, Snapshot};
use crate::sotw_request::{RequestNames, SotwRequest};
use crate::status::{Nack, StatusRows, SubscribedNames, TypeStatus, write_rows};
use crate::stream::{
    Held, Ignored, Nonces, Output, PlanCounts, Quiet, RemovalGate, StreamTypes, Synced, blames,
};

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
    /// What we believe the client holds (shared with the snapshot when it holds every
    /// resource of the type).
    known: Held<Arc<Resource>>,
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
    /// The snapshot the state matches, for planning from the next one's change set.
    synced: Synced,
    /// By-name types: the running version of what the subscription gets from the matched
    /// snapshot.
    sum: VersionSum,
    /// By-name types: names the client holds that the matched snapshot no longer serves it
    /// (dropped from `known` with the next response, as a full diff would).
    stale: BTreeSet<Name>,
    counts: PlanCounts,
}

/// The last response sent for a type.
#[derive(Debug)]
struct Sent {
    nonce: String,
    version: String,
    /// What `known` held before this response, to restore on NACK.
    previous: Previous,
    answered: bool,
}

/// What the client held before a response, of the names it changed.
#[derive(Debug)]
enum Previous {
    /// Each name, and what the client held of it.
    Each(Vec<(Name, Option<Arc<Resource>>)>),
    /// A first sync: the client held none of the names of this map (the snapshot's own, so
    /// the stream keeps no list of its own until the ACK: 24 KB per type at 1,000 Services).
    Nothing(Arc<BTreeMap<Name, Arc<Resource>>>),
}

// === impl Previous ===

impl Previous {
    fn names(&self) -> Box<dyn Iterator<Item = &Name> + '_> {
        match self {
            Previous::Each(each) => Box::new(each.iter().map(|(name, _)| name)),
            Previous::Nothing(map) => Box::new(map.keys()),
        }
    }

    fn into_vec(self) -> Vec<(Name, Option<Arc<Resource>>)> {
        match self {
            Previous::Each(each) => each,
            Previous::Nothing(map) => map.keys().map(|name| (name.clone(), None)).collect(),
        }
    }
}

/// A response about to be sent.
#[derive(Debug)]
struct Plan {
    version: String,
    resources: Arc<[Arc<Resource>]>,
    target: Target,
}

/// What the client holds once a plan is sent.
#[derive(Debug)]
enum Target {
    /// Exactly these (a full diff; the snapshot's own map when they are all its resources).
    All(Arc<BTreeMap<Name, Arc<Resource>>>),
    /// What it held, with the plan's resources, without the stale names (a change-set plan of
    /// a by-name type). `whole`: it held every resource of the snapshot the change set starts
    /// from and the plan carries every change, so it will hold every resource of this one.
    Changes { whole: bool },
}

/// A full diff: the plan, and the running version of what the subscription gets (by-name
/// types).
struct Diffed {
    plan: Option<Plan>,
    sum: VersionSum,
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

    /// Handles one request from the client (a prost `DiscoveryRequest` converts, its names
    /// encoded).
    pub fn on_request(&mut self, request: impl Into<SotwRequest>) -> Output<SotwResponse> {
        let request = request.into();
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

    /// How the stream's pushes were planned, over all its types.
    pub fn plan_counts(&self) -> PlanCounts {
        self.types
            .values()
            .fold(PlanCounts::default(), |total, state| PlanCounts {
                from_changes: total.from_changes + state.counts.from_changes,
                full: total.full + state.counts.full,
            })
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
            responses.push(state.commit(plan, nonce, &snapshot));
        }
        responses
    }
}

impl StatusRows for SotwStream {
    fn write_status(&self, rows: &mut Vec<TypeStatus>) {
        write_rows(rows, self.types.values(), TypeState::write_status);
    }
}

// === impl TypeState ===

impl TypeState {
    fn new(ty: ResourceType) -> Self {
        Self {
            ty,
            wildcard: false,
            names: SubscribedNames::default(),
            known: Held::default(),
            last: None,
            needs_answer: true,
            acked_version: None,
            last_nack: None,
            nacked: BTreeMap::new(),
            nacked_version: None,
            quiet: Quiet::default(),
            synced: Synced::default(),
            sum: VersionSum::default(),
            stale: BTreeSet::new(),
            counts: PlanCounts::default(),
        }
    }

    /// Classifies the request's nonce and records an ACK or NACK.
    fn answer(&mut self, request: &SotwRequest) -> Answer {
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
                last.previous = Previous::Each(Vec::new());
                Answer::Ack(nonce)
            }
            Some(error) => {
                let nack = Nack {
                    version: last.version.clone(),
                    message: error.message.clone(),
                    at: SystemTime::now(),
                };
                self.reject(&error.message);
                self.last_nack = Some(nack.clone());
                Answer::Nack { nonce, nack }
            }
        }
    }

    /// The client kept what it had: restore it, and remember what it rejected (by-name types:
    /// what `message` names, or everything sent when it names none of it).
    fn reject(&mut self, message: &str) {
        let Some(last) = self.last.as_mut() else {
            return;
        };
        self.quiet.forget();
        self.synced.forget();
        if self.ty.is_wildcard() {
            self.nacked_version = Some(last.version.clone());
        }
        let named = !self.ty.is_wildcard()
            && last.previous.names().any(|name| {
                self.known
                    .get(name)
                    .is_some_and(|resource| blames(message, resource))
            });
        let previous = std::mem::replace(&mut last.previous, Previous::Each(Vec::new()));
        for (name, previous) in previous.into_vec() {
            if let Some(rejected) = self.known.get(&name)
                && (!named || blames(message, rejected))
            {
                self.nacked
                    .insert(name.clone(), rejected.version().to_string());
            }
            match previous {
                Some(resource) => self.known.to_mut().insert(name, resource),
                None => self.known.to_mut().remove(&name),
            };
        }
    }

    /// Updates the subscribed names; a change needs an answer. New names are taken from
    /// `snapshot` when it has them, so streams share one copy.
    fn subscribe(&mut self, requested: &RequestNames, snapshot: Option<&Snapshot>) {
        // The common case, a request naming the same names in the same (sorted) order (every
        // ACK of a proxy in step), compares their bytes and makes no string.
        let in_order = self.same_names(requested, snapshot);
        // The subscription never holds "*", so names equal to it do not either.
        let wildcard = (!in_order && requested.contains("*"))
            || (requested.is_empty() && self.ty.is_wildcard());
        // A new subscription to every name of the snapshot in its order (Envoy's EDS request
        // once it holds the clusters): the snapshot's set, found with one comparison of bytes.
        let every = (!in_order)
            .then_some(snapshot)
            .flatten()
            .filter(|s| {
                let all = s.all_names(self.ty);
                // On the snapshot's set, `same_names` compared these bytes already.
                !Arc::ptr_eq(&self.names, all)
                    && requested.len() == all.len()
                    && requested == s.all_names_encoded(self.ty)
            })
            .map(|s| s.all_names(self.ty).clone());
        let changed = (!in_order && every.is_none())
            .then(|| {
                let wanted: BTreeSet<Cow<'_, str>> =
                    requested.iter().filter(|n| *n != "*").collect();
                let same = wanted.len() == self.names.len()
                    && wanted
                        .iter()
                        .zip(self.names.iter())
                        .all(|(a, b)| **a == **b);
                (!same).then_some(wanted)
            })
            .flatten();
        let resubscribed = wildcard != self.wildcard || changed.is_some() || every.is_some();
        if resubscribed {
            self.needs_answer = true;
            self.quiet.forget();
            self.synced.forget();
        }
        self.wildcard = wildcard;
        if let Some(all) = every {
            self.names = all;
        } else if let Some(wanted) = changed {
            // Every name of the type (Envoy's EDS subscription: all of its clusters): the one
            // set the snapshot keeps for every stream that asks so.
            let all = snapshot.map(|s| s.all_names(self.ty)).filter(|all| {
                all.len() == wanted.len() && all.iter().zip(&wanted).all(|(a, b)| **a == **b)
            });
            self.names = match all {
                Some(all) => all.clone(),
                None => {
                    let existing = snapshot.map(|s| s.resources(self.ty));
                    let names = wanted
                        .into_iter()
                        .map(|name| match existing.and_then(|e| e.get(&*name)) {
                            Some(resource) => resource.shared_name().clone(),
                            None => Name::from(&*name),
                        })
                        .collect();
                    Arc::new(names)
                }
            };
        }
        if self.wildcard {
            return;
        }
        let names = &self.names;
        if !resubscribed {
            // Only a new subscription leaves the client holding names outside it: the common
            // request (an ACK repeating the names) walks nothing it holds.
            debug_assert!(self.known.keys().all(|name| names.contains(name)));
            return;
        }
        if self.known.keys().any(|name| !names.contains(name)) {
            self.known.to_mut().retain(|name, _| names.contains(name));
            self.quiet.forget();
        }
    }

    /// Whether `requested` names exactly the subscription, in its order. A subscription to
    /// every name of the snapshot (a full-push Envoy's EDS) is one comparison of bytes with
    /// the snapshot's encoding of them; a request naming those under another subscription
    /// moves the stream onto the snapshot's set.
    fn same_names(&mut self, requested: &RequestNames, snapshot: Option<&Snapshot>) -> bool {
        let Some(snapshot) = snapshot else {
            return requested.equals(self.names.iter().map(|n| &**n));
        };
        let all = snapshot.all_names(self.ty);
        if Arc::ptr_eq(&self.names, all) {
            // The encoding is canonical: other bytes are other names or another order (or a
            // non-minimal encoding, which the slower path below the caller still accepts).
            return requested == snapshot.all_names_encoded(self.ty);
        }
        let same = requested.equals(self.names.iter().map(|n| &**n));
        if same && requested.len() == all.len() && requested == snapshot.all_names_encoded(self.ty)
        {
            self.names = all.clone();
        }
        same
    }

    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// Resources the client holds that the snapshot no longer has.
    fn removed_by(&self, snapshot: &Snapshot) -> Vec<Arc<Resource>> {
        let removed = if !self.ty.is_wildcard() {
            None
        } else if self.synced.is(snapshot) {
            // The client holds what the snapshot serves it.
            Some(Vec::new())
        } else {
            // It holds what the previous snapshot served it: only what this one removed is gone.
            self.synced.changes(snapshot, self.ty).map(|changes| {
                changes
                    .iter()
                    .filter(|c| c.after().is_none() && self.wants(c.name()))
                    .filter_map(|c| self.known.get(c.name()).cloned())
                    .collect()
            })
        };
        let Some(removed) = removed else {
            return self.removed_in_full(snapshot);
        };
        debug_assert_eq!(
            names_of(&removed),
            names_of(&self.removed_in_full(snapshot)),
            "change set removed differently"
        );
        removed
    }

    /// [`TypeState::removed_by`], walking everything the client holds.
    fn removed_in_full(&self, snapshot: &Snapshot) -> Vec<Arc<Resource>> {
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
        if !extra.is_empty() {
            // The client will hold more than the snapshot serves it.
            self.synced.forget();
            self.counts.full += 1;
            return self.plan_for(snapshot, extra).plan;
        }
        if self.synced.is(snapshot) {
            debug_assert!(
                self.plan_for(snapshot, extra).plan.is_none(),
                "synced hid a push"
            );
            return None;
        }
        let current = snapshot.version(self.ty);
        if self.quiet.at(current) {
            debug_assert!(
                self.plan_for(snapshot, extra).plan.is_none(),
                "memo hid a push"
            );
            self.synced.advance(snapshot);
            return None;
        }
        let planned = self
            .synced
            .changes(snapshot, self.ty)
            .and_then(|changes| self.plan_changes(snapshot, changes));
        let plan = match planned {
            Some(plan) => {
                self.counts.from_changes += 1;
                debug_assert_eq!(
                    summary(&plan),
                    summary(&self.plan_for(snapshot, extra).plan),
                    "change set planned differently"
                );
                self.synced.mark(snapshot);
                plan
            }
            None => self.plan_in_full(snapshot),
        };
        if plan.is_none() {
            self.quiet.note(current);
        }
        plan
    }

    /// [`TypeState::plan`] by a full diff (no extra resources), noting what the next snapshot's
    /// change set will start from.
    fn plan_in_full(&mut self, snapshot: &Snapshot) -> Option<Plan> {
        self.counts.full += 1;
        let Diffed { plan, sum } = self.plan_for(snapshot, &[]);
        self.sum = sum;
        self.stale.clear();
        if plan.is_none() && !self.ty.is_wildcard() {
            let all = snapshot.resources(self.ty);
            self.stale = self
                .known
                .keys()
                .filter(|n| !(self.wants(n) && all.contains_key(&***n)))
                .cloned()
                .collect();
        }
        // A full-state type the client rejected holds what it had before, not what was planned.
        if self.ty.is_wildcard() && self.nacked_version.is_some() {
            self.synced.forget();
        } else {
            self.synced.mark(snapshot);
        }
        plan
    }

    /// [`TypeState::plan`] from the change set of the snapshot after the matched one; `None`
    /// when the change set cannot say (a full-state type whose subscribed resources changed:
    /// its response carries them all, so it is built in full).
    fn plan_changes(&mut self, snapshot: &Snapshot, changes: &[Change]) -> Option<Option<Plan>> {
        if self.ty.is_wildcard() {
            return match changes.iter().any(|c| self.wants(c.name())) {
                true => None,
                false => Some(None),
            };
        }
        // Holding every resource the change set starts from, and sending every change, the
        // client will hold every resource of `snapshot`: share its map rather than copy ours.
        let mut whole = self.known.is_full_before(snapshot, self.ty, changes);
        let mut resources = Vec::new();
        for change in changes {
            if !self.wants(change.name()) {
                whole = false;
                continue;
            }
            if let Some(old) = change.before() {
                self.sum.remove_resource(old);
            }
            match change.after() {
                Some(new) => {
                    self.sum.add_resource(new);
                    self.stale.remove(change.name());
                    if self.is_new(new) {
                        resources.push(new.clone());
                    } else {
                        whole = false;
                    }
                }
                None if self.known.contains_key(change.name()) => {
                    self.stale.insert(change.shared_name().clone());
                }
                None => {}
            }
        }
        Some((!resources.is_empty()).then(|| Plan {
            version: self.sum.version(),
            resources: resources.into(),
            target: Target::Changes { whole },
        }))
    }

    /// [`TypeState::plan`] by a full diff, without the memos.
    fn plan_for(&self, snapshot: &Snapshot, extra: &[Arc<Resource>]) -> Diffed {
        let all = snapshot.resources(self.ty);
        // Nothing to send is the common case: find it out before building anything.
        let every = self.wildcard && extra.is_empty();
        let (quiet, sum) = if self.ty.is_wildcard() {
            let quiet = every && self.holds(snapshot.version(self.ty));
            (quiet, VersionSum::default())
        } else {
            let (any_new, sum) = self.scan(snapshot);
            (extra.is_empty() && !any_new, sum)
        };
        if quiet && !self.needs_answer {
            return Diffed { plan: None, sum };
        }
        // A subscription to every name (the snapshot's set itself) gets every resource too.
        let all_names = !self.wildcard
            && extra.is_empty()
            && Arc::ptr_eq(&self.names, snapshot.all_names(self.ty));
        let target = if every || all_names {
            // Every resource of the type: the snapshot's own map, shared.
            snapshot.all_held(self.ty).clone()
        } else {
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
            Arc::new(target)
        };
        let version = if every || all_names {
            // Every resource of the type: the snapshot's own aggregate of the same pairs.
            snapshot.version(self.ty).to_string()
        } else {
            let mut sum = VersionSum::default();
            for resource in target.values() {
                sum.add_resource(resource);
            }
            sum.version()
        };
        // Every resource of the type goes out (a full-state type's answer to a wildcard, or a
        // first sync of every name with nothing held or rejected): the snapshot's own list,
        // shared, instead of a list of its own.
        let first_of_all = (every || all_names) && self.known.is_empty() && self.nacked.is_empty();
        let resources: Arc<[Arc<Resource>]> = if self.ty.is_wildcard() {
            if self.holds(&version) && !self.needs_answer {
                return Diffed { plan: None, sum };
            }
            match every {
                true => snapshot.all_listed(self.ty).clone(),
                false => target.values().cloned().collect(),
            }
        } else if first_of_all && !target.is_empty() {
            snapshot.all_listed(self.ty).clone()
        } else {
            let changed: Vec<_> = target
                .values()
                .filter(|r| self.is_new(r))
                .cloned()
                .collect();
            if changed.is_empty() && !self.needs_answer {
                return Diffed { plan: None, sum };
            }
            changed.into()
        };
        let plan = Plan {
            version,
            resources,
            target: Target::All(target),
        };
        Diffed {
            plan: Some(plan),
            sum,
        }
    }

    /// By-name types: whether any wanted resource of the snapshot is new to the client, and the
    /// running version of the wanted resources.
    fn scan(&self, snapshot: &Snapshot) -> (bool, VersionSum) {
        if self.wildcard || Arc::ptr_eq(&self.names, snapshot.all_names(self.ty)) {
            // Every resource of the type (a wildcard, or a subscription to the snapshot's own
            // set of names): its aggregate, and nothing new if the client holds them all.
            let all = snapshot.resources(self.ty);
            let holds_all = self.known.is_full(snapshot.version(self.ty));
            return (
                !holds_all && all.values().any(|r| self.is_new(r)),
                snapshot.version_sum(self.ty),
            );
        }
        let mut sum = VersionSum::default();
        let mut any_new = false;
        for resource in self.wanted(snapshot) {
            sum.add_resource(resource);
            any_new = any_new || self.is_new(resource);
        }
        (any_new, sum)
    }

    /// The snapshot's resources of the subscribed names.
    fn wanted<'s>(&'s self, snapshot: &'s Snapshot) -> impl Iterator<Item = &'s Arc<Resource>> {
        let all = snapshot.resources(self.ty);
        self.names.iter().filter_map(|name| all.get(&**name))
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
    fn commit(&mut self, plan: Plan, nonce: String, snapshot: &Snapshot) -> SotwResponse {
        let Plan {
            version,
            resources,
            target,
        } = plan;
        let stale = std::mem::take(&mut self.stale);
        let previous = match target {
            Target::All(target)
                if !self.ty.is_wildcard()
                    && self.nacked.is_empty()
                    && Arc::ptr_eq(&target, snapshot.all_held(self.ty)) =>
            {
                // Every resource: what was not sent, the client holds at that version already
                // (it rejected nothing), so it will hold the snapshot's map itself.
                let previous = if self.known.is_empty() && resources.len() == target.len() {
                    Previous::Nothing(target.clone())
                } else {
                    let gone = self.known.keys().filter(|n| !target.contains_key(*n));
                    Previous::Each(self.held_before(gone.cloned().collect(), &resources))
                };
                self.known.share(&target, snapshot.version(self.ty));
                previous
            }
            Target::All(target) => {
                let previous = if self.ty.is_wildcard() && self.known.is_empty() {
                    let previous = Previous::Nothing(target.clone());
                    self.known = Held::own_shared(target);
                    previous
                } else if self.ty.is_wildcard() {
                    Previous::Each(self.hold_exactly(target))
                } else {
                    let gone = self.known.keys().filter(|n| !target.contains_key(*n));
                    let gone: Vec<Name> = gone.cloned().collect();
                    Previous::Each(self.hold_also(gone, &resources))
                };
                let (all, all_version) = (snapshot.all_held(self.ty), snapshot.version(self.ty));
                self.known
                    .share_if_same(all, all_version, |a, b| a.version() == b.version());
                previous
            }
            Target::Changes { whole: true } => {
                let previous =
                    Previous::Each(self.held_before(stale.into_iter().collect(), &resources));
                self.known
                    .share(snapshot.all_held(self.ty), snapshot.version(self.ty));
                previous
            }
            Target::Changes { whole: false } => {
                Previous::Each(self.hold_also(stale.into_iter().collect(), &resources))
            }
        };
        self.needs_answer = false;
        self.quiet.forget();
        self.last = Some(Sent {
            nonce: nonce.clone(),
            version: version.clone(),
            previous,
            answered: false,
        });
        SotwResponse {
            version_info: version,
            resources,
            ty: self.ty,
            nonce,
        }
    }

    /// What the client holds of `gone` and of the names of `sent` (restored on a NACK), for a
    /// commit that will hold the snapshot's map instead of changing its own.
    fn held_before(
        &self,
        gone: Vec<Name>,
        sent: &[Arc<Resource>],
    ) -> Vec<(Name, Option<Arc<Resource>>)> {
        let sent = sent.iter().map(|r| r.shared_name().clone());
        let names = gone.into_iter().chain(sent);
        names
            .map(|name| {
                let old = self.known.get(&name).cloned();
                (name, old)
            })
            .collect()
    }

    /// Full-state types: the client now holds `target`. Returns what it held before.
    fn hold_exactly(
        &mut self,
        target: Arc<BTreeMap<Name, Arc<Resource>>>,
    ) -> Vec<(Name, Option<Arc<Resource>>)> {
        let old = std::mem::replace(&mut self.known, Held::own_shared(target));
        let mut previous: Vec<_> = self
            .known
            .keys()
            .filter(|n| !old.contains_key(*n))
            .map(|name| (name.clone(), None))
            .collect();
        previous.extend(old.iter().map(|(name, r)| (name.clone(), Some(r.clone()))));
        previous
    }

    /// By-name types: the client no longer holds `gone` and now holds `sent`. Returns what it
    /// held before of each.
    fn hold_also(
        &mut self,
        gone: Vec<Name>,
        sent: &[Arc<Resource>],
    ) -> Vec<(Name, Option<Arc<Resource>>)> {
        let mut previous = Vec::new();
        if gone.is_empty() && sent.is_empty() {
            return previous;
        }
        let known = self.known.to_mut();
        for name in gone {
            let old = known.remove(&name);
            previous.push((name, old));
        }
        for resource in sent {
            let name = resource.shared_name().clone();
            let old = known.insert(name.clone(), resource.clone());
            previous.push((name, old));
        }
        previous
    }

    /// This type's status row (sent, ACKed, last NACK), written over `row`.
    fn write_status(&self, row: &mut TypeStatus) {
        row.set(
            self.ty.type_url(),
            self.last.as_ref().map(|l| &l.version),
            self.acked_version.as_ref(),
            self.last_nack.as_ref(),
            (!self.wildcard).then_some(&self.names),
        );
    }
}

/// Names of resources, for comparing plans in debug builds.
fn names_of(resources: &[Arc<Resource>]) -> Vec<&str> {
    resources.iter().map(|r| r.name()).collect()
}

/// What a plan sends, for comparing plans in debug builds.
fn summary(plan: &Option<Plan>) -> Option<(&str, Vec<&str>)> {
    plan.as_ref()
        .map(|p| (p.version.as_str(), names_of(&p.resources)))
}

#[cfg(test)]
#[path = "sotw_tests.rs"]
mod tests;

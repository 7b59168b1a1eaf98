//! The Delta (incremental) xDS state machine for one stream: requests in, responses out.
//!
//! Pure: no tokio, no I/O, no logging, no knowledge of the node. Per type it tracks the subscription
//! (wildcard and/or names) and the version of every resource the client holds; a response
//! ([`DeltaResponse`], holding the snapshot's resources, not copies) carries exactly the
//! resources whose version differs and `removed_resources` for names the client holds that no
//! longer exist.
//!
//! * Wildcard: a first request that subscribes to nothing, or a subscription to `*`; never for
//!   virtual hosts (VHDS is by name only).
//! * `initial_resource_versions` of the first request seed what the client holds, so a
//!   reconnecting client gets only what changed, and removals for what is gone.
//! * Subscribing to names that do not exist is answered with those names in `removed_resources`,
//!   so Envoy does not wait for its initial fetch timeout; they are sent when they appear.
//!   Virtual hosts (VHDS) that do not exist are answered with a resource that has the name as
//!   alias and no body (the Delta "does not exist" answer Envoy resolves on-demand lookups
//!   with); virtual hosts carry the name they were asked for as alias.
//! * Envoy's first VHDS request names nothing (it is not a wildcard: no virtual host is sent),
//!   but Envoy routes VHDS updates to its watch by namespace, the route configuration name
//!   (`ROUTE_CONFIG/HOST`): a response naming nothing in that namespace never reaches the watch,
//!   and the listener waits out its 15 s initial fetch timeout. So the first VHDS answer lists
//!   `ROUTE_CONFIG/` (an empty host, never a real virtual host) in `removed_resources` for
//!   each VHDS route configuration of the snapshot; Envoy drops removals of names it lacks.
//! * A wildcard subscription gets every resource but those the snapshot serves by name only
//!   (on-demand CDS: clusters an on-demand proxy asks for by name on first use).
//!   Unsubscribing forgets what the client holds for those names (outside a wildcard).
//! * Every response has its own nonce and stays pending until ACKed or NACKed (a few are kept;
//!   answers to unknown nonces are ignored). On NACK the client kept its old versions: those are
//!   restored, the rejected versions are remembered and not sent again until they change; other
//!   resources keep flowing. Subscription changes are applied even when the nonce is unknown.
//! * Pushes go in the order clusters, endpoints, listeners, routes. On ADS, cluster removals that
//!   come with listener or route changes are held back until those responses are answered, then
//!   sent as `removed_resources` (make-before-break, as in [`crate::sotw`]).
//! * A type whose snapshot content (its aggregate version) did not change since it last had
//!   nothing to send is not planned again, as in [`crate::sotw`]: anything else the plan reads
//!   (subscription, what the client holds, what it rejected) clears that memo (`stream::Quiet`).
//! * A type whose state matches the group's previous snapshot exactly (`stream::Synced`: no
//!   subscription change, NACK or ACK of a rejected resource since, nothing held back or owed)
//!   plans the push of the next snapshot from that snapshot's change set
//!   ([`Snapshot::changes_since`]), in O(changed resources): the changed resources it wants that
//!   the client does not hold, and the removed names it holds. Otherwise (a stream more than one
//!   snapshot behind, among others) it diffs in full; both give the same responses (debug
//!   builds check each change-set plan against the full diff).
//! * A subscription to every name of a type is the snapshot's one set of them, and the versions
//!   the client holds, when they are those of every resource of the type, are the snapshot's one
//!   map of them (`stream::Held`), kept across change-set pushes that carry every change.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;

use crate::resource::{Resource, ResourceType};
use crate::response::DeltaResponse;
use crate::snapshot::{self, AllVersions, Snapshot};
use crate::status::{Nack, StatusRows, SubscribedNames, TypeStatus, write_rows};
use crate::stream::{
    Held, Ignored, Nonces, Output, PlanCounts, Quiet, RemovalGate, StreamTypes, Synced, mentions,
};

/// How many unanswered responses per type are remembered.
const MAX_PENDING: usize = 16;

/// The Delta state of one stream.
#[derive(Debug)]
pub struct DeltaStream {
    served: StreamTypes,
    snapshot: Option<Arc<Snapshot>>,
    nonces: Nonces,
    types: BTreeMap<ResourceType, TypeState>,
    gate: RemovalGate,
}

#[derive(Debug)]
struct TypeState {
    ty: ResourceType,
    wildcard: bool,
    /// Names subscribed to: the snapshot's one set of every name of the type when it is that
    /// (Envoy's EDS subscription), shared by the streams that subscribe so.
    names: SubscribedNames,
    /// Name -> version the client holds, sharing the snapshot's strings (a full proxy of a
    /// 10,000-Service mesh holds 20,000 of them), and the snapshot's whole map when it holds
    /// every resource of the type.
    client: Held<Arc<str>>,
    /// Newly subscribed names to report as absent if they do not exist.
    unanswered: BTreeSet<String>,
    /// VHDS only: the first answer (naming the VHDS route configurations) is still owed.
    first_answer: bool,
    needs_answer: bool,
    pending: VecDeque<Pending>,
    /// Name -> version the client rejected.
    nacked: BTreeMap<Arc<str>, Arc<str>>,
    sent_version: Option<String>,
    acked_version: Option<String>,
    last_nack: Option<Nack>,
    /// The "nothing changed" memo of `plan`.
    quiet: Quiet,
    /// The snapshot the state matches, for planning from the next one's change set.
    synced: Synced,
    counts: PlanCounts,
}

/// A sent, unanswered response.
#[derive(Debug)]
struct Pending {
    nonce: String,
    version: String,
    sent: Sent,
}

/// What a pending response changed for the client.
#[derive(Debug)]
enum Sent {
    /// Each change.
    Changes(Vec<Change>),
    /// A first sync of every resource: each name of the snapshot's shared map, held before
    /// at no version, sent at its version there. No list of the stream's own (at 1,000
    /// Services, 48 KB per type and stream until the ACK).
    All(AllVersions),
}

/// (name, version held before, version sent; `None` for a removal).
type Change = (Arc<str>, Option<Arc<str>>, Option<Arc<str>>);

// === impl Sent ===

impl Sent {
    /// The changes, one by one.
    fn iter(&self) -> Box<dyn Iterator<Item = Change> + '_> {
        match self {
            Sent::Changes(changes) => Box::new(changes.iter().cloned()),
            Sent::All(all) => Box::new(
                all.iter()
                    .map(|(name, version)| (name.clone(), None, Some(version.clone()))),
            ),
        }
    }
}

#[derive(Debug)]
struct Plan {
    upserts: Vec<Arc<Resource>>,
    removed: Vec<String>,
    /// Virtual hosts asked for that do not exist: answered as a resource with the name as
    /// alias and no body, so Envoy answers 404 at once (VHDS).
    absent: Vec<String>,
    /// Planned from a change set: the client holds only subscribed names already.
    from_changes: bool,
    /// Planned from a change set, for a client that holds every resource of the snapshot it
    /// starts from, and carrying every change: the client will hold every resource.
    whole: bool,
}

// === impl DeltaStream ===

impl DeltaStream {
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
    pub fn on_request(&mut self, request: DeltaDiscoveryRequest) -> Output<DeltaResponse> {
        let mut out = Output::default();
        let Some(ty) =
            ResourceType::from_type_url(&request.type_url).filter(|ty| self.served.allows(*ty))
        else {
            out.ignored = Some(Ignored::Type(request.type_url));
            return out;
        };
        let state = match self.types.entry(ty) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(TypeState::first(ty, &request))
            }
        };
        if !request.response_nonce.is_empty() {
            match state.take_pending(&request.response_nonce) {
                None => {
                    out.ignored = Some(Ignored::Nonce {
                        ty,
                        nonce: request.response_nonce.clone(),
                    });
                }
                Some(pending) => match &request.error_detail {
                    None => {
                        state.ack(pending);
                        out.acks.push(ty);
                    }
                    Some(error) => {
                        let nack = state.nack(pending, &error.message);
                        out.nacks.push((ty, nack));
                    }
                },
            }
            self.gate.settle(&request.response_nonce);
        }
        state.subscribe(&request.resource_names_subscribe);
        state.unsubscribe(
            &request.resource_names_unsubscribe,
            self.snapshot.as_deref(),
        );
        let resubscribed = !request.resource_names_subscribe.is_empty()
            || !request.resource_names_unsubscribe.is_empty();
        if let Some(snapshot) = self.snapshot.as_deref().filter(|_| resubscribed) {
            state.share_names(snapshot);
        }
        out.responses = self.push();
        out
    }

    /// Takes a new snapshot of the stream's group and pushes what changed.
    pub fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output<DeltaResponse> {
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

    fn push(&mut self) -> Vec<DeltaResponse> {
        let Some(snapshot) = self.snapshot.clone() else {
            return Vec::new();
        };
        let none = BTreeSet::new();
        let routing: Vec<_> = [ResourceType::Listener, ResourceType::Route]
            .into_iter()
            .filter_map(|ty| self.plan(ty, &snapshot, &none).map(|p| (ty, p)))
            .collect();
        // Clusters (and their endpoints) removed together with routing changes wait.
        let hold_back = self.served == StreamTypes::Aggregated
            && (!routing.is_empty() || self.gate.is_waiting());
        let held = match self.types.get(&ResourceType::Cluster) {
            Some(clusters) if hold_back => clusters.removals(&snapshot),
            _ => BTreeSet::new(),
        };
        let mut plans = Vec::new();
        for ty in [ResourceType::Cluster, ResourceType::Endpoint] {
            if let Some(p) = self.plan(ty, &snapshot, &held) {
                plans.push((ty, p));
            }
        }
        plans.extend(routing);
        for ty in [ResourceType::Secret, ResourceType::VirtualHost] {
            plans.extend(self.plan(ty, &snapshot, &none).map(|p| (ty, p)));
        }
        let mut responses = Vec::new();
        for (ty, plan) in plans {
            let nonce = self.nonces.next();
            if !held.is_empty() && matches!(ty, ResourceType::Listener | ResourceType::Route) {
                self.gate.wait_for(nonce.clone());
            }
            if let Some(state) = self.types.get_mut(&ty) {
                responses.push(state.commit(plan, nonce, &snapshot));
            }
        }
        responses
    }

    /// What to send for `ty` if the stream subscribes to it; `held` names are not removed yet.
    fn plan(
        &mut self,
        ty: ResourceType,
        snapshot: &Snapshot,
        held: &BTreeSet<String>,
    ) -> Option<Plan> {
        self.types.get_mut(&ty)?.plan(snapshot, held)
    }
}

impl StatusRows for DeltaStream {
    fn write_status(&self, rows: &mut Vec<TypeStatus>) {
        write_rows(rows, self.types.values(), TypeState::write_status);
    }
}

// === impl TypeState ===

impl TypeState {
    /// State for the first request of a type.
    fn first(ty: ResourceType, request: &DeltaDiscoveryRequest) -> Self {
        let initial: &HashMap<String, String> = &request.initial_resource_versions;
        Self {
            ty,
            // VHDS starts with no names and is never a wildcard: virtual hosts are asked for
            // one by one (a wildcard would send every host to an on-demand proxy).
            wildcard: request.resource_names_subscribe.is_empty() && ty.allows_wildcard(),
            names: SubscribedNames::default(),
            client: Held::own(
                initial
                    .iter()
                    .map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str())))
                    .collect(),
            ),
            unanswered: BTreeSet::new(),
            first_answer: ty == ResourceType::VirtualHost,
            needs_answer: true,
            pending: VecDeque::new(),
            nacked: BTreeMap::new(),
            sent_version: None,
            acked_version: None,
            last_nack: None,
            quiet: Quiet::default(),
            synced: Synced::default(),
            counts: PlanCounts::default(),
        }
    }

    fn subscribe(&mut self, names: &[String]) {
        if !names.is_empty() {
            self.quiet.forget();
            self.synced.forget();
        }
        for name in names {
            if name == "*" {
                self.wildcard = self.ty.allows_wildcard();
            } else if !self.names.contains(name.as_str()) {
                Arc::make_mut(&mut self.names).insert(Arc::from(name.as_str()));
                self.unanswered.insert(name.clone());
            }
            self.needs_answer = true;
        }
    }

    fn unsubscribe(&mut self, names: &[String], snapshot: Option<&Snapshot>) {
        // An unsubscription only shrinks a plan; forgetting the memo is merely cautious.
        if !names.is_empty() {
            self.quiet.forget();
            self.synced.forget();
        }
        for name in names {
            if name == "*" {
                self.wildcard = false;
                continue;
            }
            if self.names.contains(name.as_str()) {
                Arc::make_mut(&mut self.names).remove(name.as_str());
            }
            self.unanswered.remove(name);
            let in_wildcard = snapshot.is_none_or(|s| s.in_wildcard(self.ty, name));
            if (!self.wildcard || !in_wildcard) && self.client.contains_key(name.as_str()) {
                self.client.to_mut().remove(name.as_str());
            }
        }
    }

    /// After a subscription change: subscribed to every name of the type, the stream keeps the
    /// snapshot's one set of them instead of its own (O(names)).
    fn share_names(&mut self, snapshot: &Snapshot) {
        let all = snapshot.all_names(self.ty);
        if Arc::ptr_eq(all, &self.names) || all.len() != self.names.len() {
            return;
        }
        if all.iter().zip(self.names.iter()).all(|(a, b)| a == b) {
            self.names = all.clone();
        }
    }

    /// Subscribed by name, or by wildcard unless the snapshot serves it by name only.
    fn wants(&self, snapshot: &Snapshot, name: &str) -> bool {
        (self.wildcard && snapshot.in_wildcard(self.ty, name)) || self.names.contains(name)
    }

    fn take_pending(&mut self, nonce: &str) -> Option<Pending> {
        let index = self.pending.iter().position(|p| p.nonce == nonce)?;
        self.pending.remove(index)
    }

    fn ack(&mut self, pending: Pending) {
        if !self.nacked.is_empty() {
            self.forget_rejections(&pending.sent);
        }
        self.acked_version = Some(pending.version);
    }

    /// Rejected versions the client now accepted.
    fn forget_rejections(&mut self, sent: &Sent) {
        for (name, _, sent) in sent.iter() {
            if sent.is_some() && self.nacked.remove(&*name).is_some() {
                // What the client rejected before is new to it again.
                self.quiet.forget();
                self.synced.forget();
            }
        }
    }

    /// The client kept what it had: restore it and remember the rejected versions.
    fn nack(&mut self, pending: Pending, message: &str) -> Nack {
        self.quiet.forget();
        self.synced.forget();
        // As SotW does: when the message names some of the response's resources, only those
        // are rejected and the others go out again; otherwise all of them are.
        let named = pending
            .sent
            .iter()
            .any(|(name, _, sent)| sent.is_some() && mentions(message, &name));
        for (name, before, sent) in pending.sent.iter() {
            let Some(sent) = sent else {
                continue; // removals are taken as done
            };
            if self.client.get(&name) == Some(&sent) {
                match before {
                    Some(version) => self.client.to_mut().insert(name.clone(), version),
                    None => self.client.to_mut().remove(&name),
                };
            }
            if !named || mentions(message, &name) {
                self.nacked.insert(name, sent);
            }
        }
        let nack = Nack {
            version: pending.version,
            message: message.to_string(),
            at: SystemTime::now(),
        };
        self.last_nack = Some(nack.clone());
        nack
    }

    /// Names the client holds that the snapshot no longer has.
    fn removals(&self, snapshot: &Snapshot) -> BTreeSet<String> {
        let removals = if self.synced.is(snapshot) {
            // The client holds only what the snapshot has.
            Some(BTreeSet::new())
        } else {
            // It held only what the previous snapshot had: only what this one removed is gone.
            self.synced.changes(snapshot, self.ty).map(|changes| {
                changes
                    .iter()
                    .filter(|c| c.after().is_none() && self.holds_wanted(snapshot, c.name()))
                    .map(|c| c.name().to_string())
                    .collect()
            })
        };
        let Some(removals) = removals else {
            return self.removals_in_full(snapshot);
        };
        debug_assert_eq!(
            removals,
            self.removals_in_full(snapshot),
            "change set removed differently"
        );
        removals
    }

    /// [`TypeState::removals`], walking everything the client holds.
    fn removals_in_full(&self, snapshot: &Snapshot) -> BTreeSet<String> {
        let current = snapshot.resources(self.ty);
        self.client
            .keys()
            .filter(|n| !current.contains_key(&***n) && self.wants(snapshot, n))
            .map(|n| n.to_string())
            .collect()
    }

    /// Whether every name the client holds is subscribed (what a commit makes so when the
    /// subscription is not a wildcard).
    fn holds_only_wanted(&self) -> bool {
        self.wildcard || self.client.keys().all(|name| self.names.contains(&**name))
    }

    /// Whether the client holds `name` and wants it.
    fn holds_wanted(&self, snapshot: &Snapshot, name: &str) -> bool {
        self.client.contains_key(name) && self.wants(snapshot, name)
    }

    /// What to send for the snapshot; `held` names are not removed yet.
    fn plan(&mut self, snapshot: &Snapshot, held: &BTreeSet<String>) -> Option<Plan> {
        // Holding names back only takes removals out of a plan: what planned to nothing
        // without them plans to nothing with them.
        if self.synced.is(snapshot) {
            debug_assert!(self.plan_for(snapshot, held).is_none(), "synced hid a push");
            return None;
        }
        let current = snapshot.version(self.ty);
        if self.quiet.at(current) {
            debug_assert!(self.plan_for(snapshot, held).is_none(), "memo hid a push");
            self.synced.advance(snapshot);
            return None;
        }
        let changes = self.synced.changes(snapshot, self.ty);
        let from_changes = changes.is_some() && held.is_empty();
        let plan = match changes.filter(|_| held.is_empty()) {
            Some(changes) => {
                self.counts.from_changes += 1;
                let plan = self.plan_changes(snapshot, changes);
                debug_assert_eq!(
                    summary(&plan),
                    summary(&self.plan_for(snapshot, held)),
                    "change set planned differently"
                );
                plan
            }
            None => {
                self.counts.full += 1;
                self.plan_for(snapshot, held)
            }
        };
        // After this plan (and its commit) the client holds what the snapshot has for it,
        // unless names were held back, or with nothing to send (so no commit): newly subscribed
        // names are still owed an answer, or the client holds names it no longer subscribes to
        // (the next commit drops them; a change-set plan starts from a state without any).
        let owes = plan.is_none()
            && (!self.unanswered.is_empty()
                || self.first_answer
                || (!from_changes && !self.holds_only_wanted()));
        if held.is_empty() && !owes {
            self.synced.mark(snapshot);
        } else {
            self.synced.forget();
        }
        if plan.is_none() && held.is_empty() {
            self.quiet.note(current);
        }
        plan
    }

    /// [`TypeState::plan`] from the change set of the snapshot after the matched one.
    fn plan_changes(&self, snapshot: &Snapshot, changes: &[snapshot::Change]) -> Option<Plan> {
        let mut upserts = Vec::new();
        let mut removed = Vec::new();
        // Holding every resource the change set starts from, and sending every change, the
        // client will hold every resource of `snapshot`: share its map rather than copy ours.
        let mut whole = self.client.is_full_before(snapshot, self.ty, changes);
        for change in changes {
            match change.after() {
                Some(new) if self.wants(snapshot, change.name()) && self.is_new(new) => {
                    upserts.push(new.clone());
                }
                Some(_) => whole = false,
                None if self.holds_wanted(snapshot, change.name()) => {
                    removed.push(change.name().to_string());
                }
                None => whole = false,
            }
        }
        if upserts.is_empty() && removed.is_empty() {
            return None;
        }
        Some(Plan {
            upserts,
            removed,
            absent: Vec::new(),
            from_changes: true,
            whole,
        })
    }

    /// [`TypeState::plan`] without the memo.
    fn plan_for(&self, snapshot: &Snapshot, held: &BTreeSet<String>) -> Option<Plan> {
        let current = snapshot.resources(self.ty);
        let upserts: Vec<Arc<Resource>> = current
            .iter()
            .filter(|(name, r)| self.wants(snapshot, name) && self.is_new(r))
            .map(|(_, r)| r.clone())
            .collect();
        let mut removed: BTreeSet<String> = self
            .removals_in_full(snapshot)
            .into_iter()
            .filter(|n| !held.contains(n))
            .collect();
        let unknown = self
            .unanswered
            .iter()
            .filter(|n| !current.contains_key(*n) && !self.client.contains_key(n.as_str()))
            .cloned();
        let mut absent = Vec::new();
        if self.ty == ResourceType::VirtualHost {
            absent.extend(unknown);
            if self.first_answer {
                removed.extend(self.vhds_namespaces(snapshot));
            }
        } else {
            removed.extend(unknown);
        }
        if upserts.is_empty() && removed.is_empty() && absent.is_empty() && !self.needs_answer {
            return None;
        }
        Some(Plan {
            upserts,
            removed: removed.into_iter().collect(),
            absent,
            from_changes: false,
            whole: false,
        })
    }

    /// For the first VHDS answer: `ROUTE_CONFIG/` (an empty host, so never a real virtual host)
    /// per VHDS route configuration; Envoy delivers it to the watch of that route configuration.
    fn vhds_namespaces(&self, snapshot: &Snapshot) -> Vec<String> {
        let current = snapshot.resources(self.ty);
        snapshot
            .vhds_route_configs()
            .iter()
            .map(|route_config| format!("{route_config}/"))
            .filter(|n| !current.contains_key(n) && !self.client.contains_key(n.as_str()))
            .collect()
    }

    fn is_new(&self, resource: &Resource) -> bool {
        let held = self.client.get(resource.name()).map(|v| &**v);
        let rejected = self.nacked.get(resource.name()).map(|v| &**v);
        held != Some(resource.version()) && rejected != Some(resource.version())
    }

    /// Records the plan as sent and builds the response (sharing the plan's resources).
    fn commit(&mut self, plan: Plan, nonce: String, snapshot: &Snapshot) -> DeltaResponse {
        let version = snapshot.version(self.ty);
        // A first sync of every resource (the client held nothing, rejected nothing, and gets
        // as many resources as the type has: all of them) holds the snapshot's map at once,
        // without building a map or a list of changes of its own first.
        let all = snapshot.all_versions(self.ty);
        let takes_all = !plan.from_changes
            && self.client.is_empty()
            && self.nacked.is_empty()
            && plan.removed.is_empty()
            && plan.upserts.len() == all.len();
        let changes = if takes_all {
            Vec::new()
        } else {
            self.changes(&plan)
        };
        if plan.whole || takes_all {
            self.client.share(all, version);
        } else {
            if !changes.is_empty() {
                let client = self.client.to_mut();
                for (name, _, sent) in &changes {
                    match sent {
                        Some(version) => client.insert(name.clone(), version.clone()),
                        None => client.remove(name),
                    };
                }
            }
            let names = &self.names;
            if self.wildcard || plan.from_changes {
                debug_assert!(self.wildcard || self.holds_only_wanted());
            } else if self.client.keys().any(|name| !names.contains(&**name)) {
                self.client
                    .to_mut()
                    .retain(|name, _| names.contains(&**name));
            }
            if !plan.from_changes {
                self.client.share_if_same(all, version, |a, b| a == b);
            }
        }
        self.unanswered.clear();
        self.first_answer = false;
        self.needs_answer = false;
        self.quiet.forget();
        self.sent_version = Some(version.to_string());
        let sent = match takes_all {
            true => Sent::All(all.clone()),
            false => Sent::Changes(changes),
        };
        self.pending.push_back(Pending {
            nonce: nonce.clone(),
            version: version.to_string(),
            sent,
        });
        while self.pending.len() > MAX_PENDING {
            self.pending.pop_front();
        }
        DeltaResponse {
            system_version_info: version.to_string(),
            resources: plan.upserts,
            absent: plan.absent,
            ty: self.ty,
            removed_resources: plan.removed,
            nonce,
        }
    }

    /// What `plan` changes for the client: (name, version held before, version sent).
    fn changes(&self, plan: &Plan) -> Vec<Change> {
        let mut changes = Vec::with_capacity(plan.upserts.len() + plan.removed.len());
        for resource in &plan.upserts {
            let (name, sent) = (resource.shared_name(), resource.shared_version());
            let before = self.client.get(name).cloned();
            changes.push((name.clone(), before, Some(sent.clone())));
        }
        for name in &plan.removed {
            let name: Arc<str> = Arc::from(name.as_str());
            let before = self.client.get(&name).cloned();
            changes.push((name, before, None));
        }
        changes
    }

    /// This type's status row (sent, ACKed, last NACK), written over `row`.
    fn write_status(&self, row: &mut TypeStatus) {
        row.set(
            self.ty.type_url(),
            self.sent_version.as_ref(),
            self.acked_version.as_ref(),
            self.last_nack.as_ref(),
            None,
        );
    }
}

/// What a plan sends, for comparing plans in debug builds.
fn summary(plan: &Option<Plan>) -> Option<(Vec<&str>, &[String], &[String])> {
    plan.as_ref().map(|p| {
        let upserts = p.upserts.iter().map(|r| r.name()).collect();
        (upserts, p.removed.as_slice(), p.absent.as_slice())
    })
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;

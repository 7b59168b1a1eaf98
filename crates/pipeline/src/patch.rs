//! `EnvoyPatchPolicy`, the validated escape hatch: JSON patches (RFC 6902) and merges
//! (RFC 7386) applied to a proxy group's generated Envoy resources, after translation and
//! before the snapshot is assembled and cached.
//!
//! * Which policies apply to a group ([`policies_for`]): a `targetRef` Gateway's groups (a
//!   Portolan Gateway's selector, or a Gateway API Gateway's `gateway:NS/NAME` cluster), or
//!   the groups whose `node.cluster` and labels a `proxies` selector names. They are applied
//!   in namespace/name order, each patch in order, each policy all or nothing.
//! * Each patched resource is read as proto3 JSON (`portolan_envoy_json`), patched, and read
//!   back into Envoy's typed message: unknown fields, wrong types and unknown `@type`s are
//!   refused, as is a patch that renames its resource. Then the snapshot's consistency check
//!   runs ([`patch_checked`]); a policy whose patches make it fail is refused.
//! * A refused policy is reported with its object and field path
//!   (`spec.patches[0].operations[1].path`), and the last version of it that applied to the
//!   group (if any) is applied instead ([`Candidate::fallback`]): the last good config stays
//!   while the rest of the group's configuration keeps updating.
//! * The patched resources' provenance names the policy, so a NACK of a patched resource is
//!   attributed to it (see [`crate::programmed`]).
//!
//! [`Patches`] is the pipeline's state: whether the feature is on (off by default: policies
//! are then `Accepted=False Disabled`), the last good version per group and policy, and each
//! group's outcomes, from which [`Patches::conditions`] gives each policy's status.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use portolan_api::ObjectRef;
use portolan_api::crd::envoy_patch_policy::PatchedType;
use portolan_envoy_json::JsonError;
use portolan_model::envoy_patch::{EnvoyPatch, PatchBody, PatchTarget};
use portolan_model::gateway_api::ApiStatus;
use portolan_model::{Condition, ConditionType, World};
use portolan_translate::provenance::{Entry, ResourceKind, origins};
use portolan_translate::{Provenance, ProxyGroup, Resources, SharedResources};
use portolan_xds::snapshot::Encoded;
use prost::{Message, Name};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

/// Why a policy was refused for a group: the object, the field path, what went wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{policy}: {path}: {message}")]
pub struct PatchError {
    pub policy: ObjectRef,
    /// `spec.patches[0].operations[1].path`.
    pub path: String,
    pub message: String,
}

/// One policy to apply to a group: its current version, and the last version that applied
/// to this group, if another one.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub current: Arc<EnvoyPatch>,
    pub fallback: Option<Arc<EnvoyPatch>>,
}

/// What one policy did to one group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    /// `EnvoyPatchPolicy NS/NAME`.
    #[serde(serialize_with = "display")]
    pub policy: ObjectRef,
    /// The current generation.
    pub generation: i64,
    /// Why the current generation was refused (none: it applied).
    #[serde(serialize_with = "error_text")]
    pub error: Option<PatchError>,
    /// The generation whose patches are served (the current, the last good, or none).
    pub served: Option<i64>,
    /// What the served version's patches touched, per patch: `Listener gateway-8080`.
    pub touched: Vec<Vec<String>>,
    #[serde(skip)]
    applied: Option<Arc<EnvoyPatch>>,
}

fn display<S: serde::Serializer>(o: &ObjectRef, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(o)
}

fn error_text<S: serde::Serializer>(e: &Option<PatchError>, s: S) -> Result<S::Ok, S::Error> {
    match e {
        Some(e) => s.collect_str(&format!("{}: {}", e.path, e.message)),
        None => s.serialize_none(),
    }
}

// === selection ===

/// The policies that apply to `group`, in namespace/name order.
pub fn policies_for<'w>(world: &'w World, group: &ProxyGroup) -> Vec<&'w Arc<EnvoyPatch>> {
    if world.envoy_patches.is_empty() {
        return Vec::new();
    }
    let gateways = portolan_translate::gateways_selecting(world, group);
    world
        .envoy_patches
        .values()
        .filter(|p| selects(world, &p.target, group, &gateways))
        .collect()
}

fn selects(world: &World, target: &PatchTarget, group: &ProxyGroup, gws: &[ObjectRef]) -> bool {
    match target {
        PatchTarget::Gateway(g) => gws.contains(g),
        PatchTarget::ApiGateway(g) => world
            .api_gateways
            .get(g)
            .is_some_and(|a| a.group == group.cluster),
        PatchTarget::Proxies { cluster, labels } => {
            cluster.as_deref().is_none_or(|c| c == group.cluster)
                && labels.iter().all(|(k, v)| group.labels.get(k) == Some(v))
        }
    }
}

// === resources a patch edits ===

/// A group's resources as patches read and write them: by xDS type and name.
pub trait Patchable {
    /// The resource's proto3 JSON, if the group has it.
    fn json(&self, ty: PatchedType, name: &str) -> Option<Result<Value, JsonError>>;
    /// Replaces the resource with the message `bytes` encode.
    fn store(
        &mut self,
        ty: PatchedType,
        name: &str,
        bytes: &[u8],
    ) -> Result<(), prost::DecodeError>;
}

/// The full protobuf name of a patched type's message.
fn type_name(ty: PatchedType) -> String {
    match ty {
        PatchedType::Listener => Listener::full_name(),
        PatchedType::RouteConfiguration => RouteConfiguration::full_name(),
        PatchedType::Cluster => Cluster::full_name(),
        PatchedType::ClusterLoadAssignment => ClusterLoadAssignment::full_name(),
    }
}

/// The JSON field holding a resource's name.
fn name_field(ty: PatchedType) -> &'static str {
    match ty {
        PatchedType::ClusterLoadAssignment => "cluster_name",
        _ => "name",
    }
}

fn resource_kind(ty: PatchedType) -> ResourceKind {
    match ty {
        PatchedType::Listener => ResourceKind::Listener,
        PatchedType::RouteConfiguration => ResourceKind::Route,
        PatchedType::Cluster => ResourceKind::Cluster,
        PatchedType::ClusterLoadAssignment => ResourceKind::Endpoint,
    }
}

fn message_json<M: Message + Name>(m: &M) -> Result<Value, JsonError> {
    portolan_envoy_json::message_to_json(m)
}

fn encoded_json(e: &Encoded, ty: PatchedType) -> Result<Value, JsonError> {
    portolan_envoy_json::bytes_to_json(&type_name(ty), e.resource().value())
}

fn replace_encoded(items: &mut [Encoded], name: &str, new: Encoded) {
    if let Some(slot) = items.iter_mut().find(|e| e.resource().name() == name) {
        *slot = new;
    }
}

impl Patchable for SharedResources<Encoded, Encoded, Encoded> {
    fn json(&self, ty: PatchedType, name: &str) -> Option<Result<Value, JsonError>> {
        let named = |items: &[Encoded]| {
            items
                .iter()
                .find(|e| e.resource().name() == name)
                .map(|e| encoded_json(e, ty))
        };
        match ty {
            PatchedType::Listener => self
                .listeners
                .iter()
                .find(|l| l.name == name)
                .map(message_json),
            PatchedType::RouteConfiguration => named(&self.routes),
            PatchedType::Cluster => named(&self.clusters),
            PatchedType::ClusterLoadAssignment => named(&self.load_assignments),
        }
    }

    fn store(
        &mut self,
        ty: PatchedType,
        name: &str,
        bytes: &[u8],
    ) -> Result<(), prost::DecodeError> {
        match ty {
            PatchedType::Listener => {
                let new = Listener::decode(bytes)?;
                if let Some(l) = self.listeners.iter_mut().find(|l| l.name == name) {
                    *l = new;
                }
            }
            PatchedType::RouteConfiguration => {
                let new = Encoded::route(&RouteConfiguration::decode(bytes)?);
                replace_encoded(&mut self.routes, name, new);
            }
            PatchedType::Cluster => {
                let new = Encoded::cluster(&Cluster::decode(bytes)?);
                replace_encoded(&mut self.clusters, name, new);
            }
            PatchedType::ClusterLoadAssignment => {
                let new = Encoded::load_assignment(&ClusterLoadAssignment::decode(bytes)?);
                replace_encoded(&mut self.load_assignments, name, new);
            }
        }
        Ok(())
    }
}

fn store_message<M: Message + Default>(
    items: &mut [M],
    is: impl Fn(&M) -> bool,
    bytes: &[u8],
) -> Result<(), prost::DecodeError> {
    let new = M::decode(bytes)?;
    if let Some(slot) = items.iter_mut().find(|m| is(m)) {
        *slot = new;
    }
    Ok(())
}

impl Patchable for Resources {
    fn json(&self, ty: PatchedType, name: &str) -> Option<Result<Value, JsonError>> {
        match ty {
            PatchedType::Listener => self
                .listeners
                .iter()
                .find(|l| l.name == name)
                .map(message_json),
            PatchedType::RouteConfiguration => self
                .routes
                .iter()
                .find(|r| r.name == name)
                .map(message_json),
            PatchedType::Cluster => self
                .clusters
                .iter()
                .find(|c| c.name == name)
                .map(message_json),
            PatchedType::ClusterLoadAssignment => self
                .load_assignments
                .iter()
                .find(|c| c.cluster_name == name)
                .map(message_json),
        }
    }

    fn store(
        &mut self,
        ty: PatchedType,
        name: &str,
        bytes: &[u8],
    ) -> Result<(), prost::DecodeError> {
        match ty {
            PatchedType::Listener => store_message(&mut self.listeners, |l| l.name == name, bytes),
            PatchedType::RouteConfiguration => {
                store_message(&mut self.routes, |r| r.name == name, bytes)
            }
            PatchedType::Cluster => store_message(&mut self.clusters, |c| c.name == name, bytes),
            PatchedType::ClusterLoadAssignment => store_message(
                &mut self.load_assignments,
                |c| c.cluster_name == name,
                bytes,
            ),
        }
    }
}

// === applying ===

/// Applies every patch of `policy` to `target`, all or nothing; what each patch touched.
pub fn apply_policy(
    policy: &EnvoyPatch,
    target: &mut impl Patchable,
) -> Result<Vec<Vec<String>>, PatchError> {
    let fail = |path: String, message: String| PatchError {
        policy: policy.source.clone(),
        path,
        message,
    };
    let mut overlay: BTreeMap<(PatchedType, String), (Value, Vec<u8>)> = BTreeMap::new();
    let mut touched = Vec::new();
    for (i, patch) in policy.patches.iter().enumerate() {
        let at = format!("spec.patches[{i}]");
        let key = (patch.type_, patch.name.clone());
        let mut doc = match overlay.get(&key) {
            Some((doc, _)) => doc.clone(),
            None => match target.json(patch.type_, &patch.name) {
                Some(Ok(doc)) => doc,
                Some(Err(e)) => {
                    return Err(fail(
                        at,
                        format!("reading {} {:?}: {e}", patch.type_, patch.name),
                    ));
                }
                None => {
                    return Err(fail(
                        format!("{at}.name"),
                        format!(
                            "this proxy group has no {} named {:?} to patch",
                            patch.type_, patch.name
                        ),
                    ));
                }
            },
        };
        match &patch.body {
            PatchBody::Operations(ops) => apply_operations(ops, &mut doc)
                .map_err(|(path, message)| fail(format!("{at}.operations{path}"), message))?,
            PatchBody::Merge(merge) => json_patch::merge(&mut doc, merge),
        }
        let field = name_field(patch.type_);
        if doc.get(field).and_then(Value::as_str) != Some(patch.name.as_str()) {
            return Err(fail(
                at,
                format!(
                    "the patch renames the {} ({field} must stay {:?})",
                    patch.type_, patch.name
                ),
            ));
        }
        let bytes =
            portolan_envoy_json::json_to_bytes(&type_name(patch.type_), &doc).map_err(|e| {
                fail(
                    at.clone(),
                    format!(
                        "the patched {} {:?} is not a valid Envoy message: {e}",
                        patch.type_, patch.name
                    ),
                )
            })?;
        overlay.insert(key, (doc, bytes));
        touched.push(vec![format!("{} {}", patch.type_, patch.name)]);
    }
    for ((ty, name), (_, bytes)) in &overlay {
        target.store(*ty, name, bytes).map_err(|e| {
            fail(
                "spec.patches".into(),
                format!("storing the patched {ty} {name:?}: {e}"),
            )
        })?;
    }
    Ok(touched)
}

/// Applies RFC 6902 operations; on failure `([j].path, why)`.
fn apply_operations(
    ops: &[portolan_api::crd::envoy_patch_policy::PatchOperation],
    doc: &mut Value,
) -> Result<(), (String, String)> {
    let mut parsed = Vec::with_capacity(ops.len());
    for (j, op) in ops.iter().enumerate() {
        let json = serde_json::to_value(op).map_err(|e| (format!("[{j}]"), e.to_string()))?;
        let op: json_patch::PatchOperation =
            serde_json::from_value(json).map_err(|e| (format!("[{j}].path"), e.to_string()))?;
        parsed.push(op);
    }
    json_patch::patch(doc, &parsed).map_err(|e| {
        use json_patch::PatchErrorKind as K;
        let j = e.operation;
        let ptr = e.path.as_str();
        match e.kind {
            K::TestFailed => (
                format!("[{j}].path"),
                format!("{ptr:?}: test failed: the resource holds another value there"),
            ),
            K::InvalidFromPointer => (
                format!("[{j}].from"),
                "no such place in the resource to move or copy from".to_string(),
            ),
            K::InvalidPointer => (
                format!("[{j}].path"),
                format!(
                    "{ptr:?}: no such place in the resource (a field or index on the way is missing; add creates only the last step)"
                ),
            ),
            other => (format!("[{j}].path"), format!("{ptr:?}: {other}")),
        }
    })
}

/// Applies each candidate in order: its current version, else its fallback.
pub fn apply_all(candidates: &[Candidate], target: &mut impl Patchable) -> Vec<Outcome> {
    candidates
        .iter()
        .map(|c| {
            let mut outcome = Outcome {
                policy: c.current.source.clone(),
                generation: c.current.generation,
                error: None,
                served: None,
                touched: Vec::new(),
                applied: None,
            };
            match apply_policy(&c.current, target) {
                Ok(touched) => outcome.serve(&c.current, touched),
                Err(e) => {
                    outcome.error = Some(e);
                    if let Some(fallback) = &c.fallback
                        && let Ok(touched) = apply_policy(fallback, target)
                    {
                        outcome.serve(fallback, touched);
                    }
                }
            }
            outcome
        })
        .collect()
}

impl Outcome {
    fn serve(&mut self, policy: &Arc<EnvoyPatch>, touched: Vec<Vec<String>>) {
        self.served = Some(policy.generation);
        self.touched = touched;
        self.applied = Some(policy.clone());
    }

    /// Whether the current version applied.
    pub fn is_current(&self) -> bool {
        self.error.is_none() && self.served.is_some()
    }
}

/// Patches `resources` with `candidates` and builds them with `build` (the snapshot assembly
/// and its consistency check). When the patched build fails, each applied policy is tried
/// again in order on the unpatched resources with those before it, and a policy the build
/// then fails with is refused (its error names the check's failure); the rest are served.
pub fn patch_checked<T, S, E>(
    candidates: &[Candidate],
    resources: T,
    build: impl Fn(T) -> Result<S, E>,
) -> (Result<S, E>, Vec<Outcome>)
where
    T: Patchable + Clone,
    E: std::fmt::Display,
{
    if candidates.is_empty() {
        return (build(resources), Vec::new());
    }
    let base = resources.clone();
    let mut patched = resources;
    let mut outcomes = apply_all(candidates, &mut patched);
    let first = build(patched);
    if first.is_ok() || outcomes.iter().all(|o| o.applied.is_none()) {
        return (first, outcomes);
    }
    // Not the patches' fault when the unpatched resources fail the check too.
    if let Err(e) = build(base.clone()) {
        return (Err(e), outcomes);
    }
    let mut accepted: Vec<Arc<EnvoyPatch>> = Vec::new();
    for outcome in outcomes.iter_mut() {
        let Some(policy) = outcome.applied.clone() else {
            continue;
        };
        let mut trial = base.clone();
        let applied = accepted
            .iter()
            .chain([&policy])
            .all(|p| apply_policy(p, &mut trial).is_ok());
        match build(trial) {
            Ok(_) if applied => accepted.push(policy),
            result => {
                let why = match result {
                    Err(e) => e.to_string(),
                    Ok(_) => "it no longer applies".to_string(),
                };
                outcome.error = Some(PatchError {
                    policy: outcome.policy.clone(),
                    path: "spec.patches".into(),
                    message: format!("the patched configuration is not served: {why}"),
                });
                outcome.served = None;
                outcome.touched.clear();
                outcome.applied = None;
            }
        }
    }
    let mut last = base;
    for p in &accepted {
        let _ = apply_policy(p, &mut last);
    }
    (build(last), outcomes)
}

/// Records the policies behind the resources `outcomes` patched.
pub fn record_provenance(outcomes: &[Outcome], provenance: &mut Provenance) {
    for o in outcomes {
        let Some(applied) = &o.applied else { continue };
        for patch in &applied.patches {
            provenance.push(Entry::new(
                resource_kind(patch.type_),
                patch.name.clone(),
                origins([o.policy.clone()]),
            ));
        }
    }
}

// === the pipeline's state ===

/// Whether patches are served, the last good version of each policy per group, and each
/// group's outcomes.
#[derive(Debug, Default)]
pub struct Patches {
    enabled: bool,
    last_good: Mutex<HashMap<(String, ObjectRef), Arc<EnvoyPatch>>>,
    outcomes: RwLock<BTreeMap<String, Vec<Outcome>>>,
}

impl Patches {
    /// The state of a server that serves patches (`enabled`) or not.
    pub fn new(enabled: bool) -> Arc<Self> {
        Arc::new(Self {
            enabled,
            ..Self::default()
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The candidates of `group` in `world` (none when disabled).
    pub fn candidates(&self, world: &World, group: &ProxyGroup) -> Vec<Candidate> {
        if !self.enabled {
            return Vec::new();
        }
        let last_good = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        policies_for(world, group)
            .into_iter()
            .map(|p| Candidate {
                current: p.clone(),
                fallback: last_good
                    .get(&(group.name.clone(), p.source.clone()))
                    .filter(|good| ***good != **p)
                    .cloned(),
            })
            .collect()
    }

    /// Records a group's outcomes; when its snapshot was `served`, the versions that applied
    /// become its last good ones.
    pub fn record(&self, group: &str, outcomes: Vec<Outcome>, served: bool) {
        if served {
            let mut last_good = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
            last_good.retain(|(g, p), _| g != group || outcomes.iter().any(|o| &o.policy == p));
            for o in &outcomes {
                if o.is_current()
                    && let Some(applied) = &o.applied
                {
                    last_good.insert((group.to_string(), o.policy.clone()), applied.clone());
                }
            }
        }
        let mut all = self.outcomes.write().unwrap_or_else(|p| p.into_inner());
        if outcomes.is_empty() {
            all.remove(group);
        } else {
            all.insert(group.to_string(), outcomes);
        }
    }

    /// Forgets the groups `keep` refuses.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut all = self.outcomes.write().unwrap_or_else(|p| p.into_inner());
        all.retain(|g, _| keep(g));
        let mut last_good = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        last_good.retain(|(g, _), _| keep(g));
    }

    /// Every group's outcomes.
    pub fn outcomes(&self) -> BTreeMap<String, Vec<Outcome>> {
        self.outcomes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `status.ancestors` of every policy in `world`: its targetRef Gateway, with the policy's
    /// `Accepted` from [`Patches::conditions`] (see `portolan_model::policy_status`).
    pub fn api_statuses(&self, world: &World) -> BTreeMap<ObjectRef, ApiStatus> {
        let conditions = self.conditions(world);
        world
            .envoy_patches
            .values()
            .filter_map(|p| {
                let accepted = conditions
                    .get(&p.source)?
                    .iter()
                    .find(|c| c.type_ == ConditionType::Accepted)?;
                let status = portolan_model::policy_status::patch_status(world, p, accepted);
                Some((p.source.clone(), ApiStatus::Policy(status)))
            })
            .collect()
    }

    /// `Accepted` and `Programmed` of every policy in `world`, from the outcomes of the groups
    /// it applies to (see the module docs).
    pub fn conditions(&self, world: &World) -> BTreeMap<ObjectRef, Vec<Condition>> {
        let all = self.outcomes();
        world
            .envoy_patches
            .values()
            .map(|p| {
                let mine: Vec<(&str, &Outcome)> = all
                    .iter()
                    .flat_map(|(g, os)| os.iter().map(move |o| (g.as_str(), o)))
                    .filter(|(_, o)| o.policy == p.source)
                    .collect();
                (p.source.clone(), self.policy_conditions(p, &mine))
            })
            .collect()
    }

    fn policy_conditions(&self, p: &EnvoyPatch, mine: &[(&str, &Outcome)]) -> Vec<Condition> {
        let g = p.generation;
        if !self.enabled {
            let why = "EnvoyPatchPolicy is disabled on this server: start `portolan serve` with \
                       --enable-envoy-patch-policy (chart: envoyPatchPolicy.enabled=true); nothing is patched";
            return vec![
                Condition::new(ConditionType::Accepted, false, "Disabled", why, g),
                Condition::new(ConditionType::Programmed, false, "Disabled", why, g),
            ];
        }
        let current: Vec<&(&str, &Outcome)> =
            mine.iter().filter(|(_, o)| o.generation == g).collect();
        let errors: Vec<String> = current
            .iter()
            .filter_map(|(group, o)| {
                o.error
                    .as_ref()
                    .map(|e| format!("proxy group {group}: {}: {}", e.path, e.message))
            })
            .collect();
        let accepted = match errors.is_empty() {
            true => Condition::new(ConditionType::Accepted, true, "Accepted", "", g),
            false => Condition::new(
                ConditionType::Accepted,
                false,
                "Invalid",
                errors.join("; "),
                g,
            ),
        };
        let applied: Vec<String> = current
            .iter()
            .filter(|(_, o)| o.is_current())
            .map(|(group, o)| format!("proxy group {group}: {}", touched_text(&o.touched)))
            .collect();
        let programmed = if !applied.is_empty() {
            Condition::new(
                ConditionType::Programmed,
                true,
                "Programmed",
                applied.join("; "),
                g,
            )
        } else if !errors.is_empty() {
            let served: Vec<String> = current
                .iter()
                .filter_map(|(group, o)| {
                    o.served
                        .map(|s| format!("proxy group {group} keeps generation {s}"))
                })
                .collect();
            let message = match served.is_empty() {
                true => "refused; nothing of it is served".to_string(),
                false => format!("refused; {}", served.join("; ")),
            };
            Condition::new(ConditionType::Programmed, false, "Invalid", message, g)
        } else {
            Condition::new(
                ConditionType::Programmed,
                false,
                "Pending",
                "no connected proxy group is selected",
                g,
            )
        };
        vec![accepted, programmed]
    }
}

/// `spec.patches[0]: Listener gateway-8080, spec.patches[1]: ...`.
fn touched_text(touched: &[Vec<String>]) -> String {
    touched
        .iter()
        .enumerate()
        .map(|(i, t)| format!("spec.patches[{i}]: {}", t.join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "patch_tests.rs"]
mod tests;

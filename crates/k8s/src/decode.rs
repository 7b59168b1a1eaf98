//! From a watched cluster object to what the index holds: the same decoding, validation and
//! conversion as a file (`Resource::decode`, `validate::validate`, `convert::to_object`), so a
//! cluster object gets exactly the field-path errors a manifest would.
//!
//! `status` and `metadata.managedFields` are dropped before decoding: what Portolan writes to
//! `/status` can never change the model, so a status write never makes a new World.

use crate::kinds;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition as MetaCondition;
use kube::core::DynamicObject;
use portolan_api::{DecodeError, FieldError, FieldPath, Kind, ObjectRef, Resource};
use portolan_model::{Object, convert};
use serde_json::Value;
use std::sync::Arc;

/// What one cluster object amounts to.
#[allow(clippy::large_enum_variant)] // short-lived: one per event, consumed at once
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Valid: the object to apply.
    Valid(Object),
    /// Invalid: the last good version stays; these errors are reported.
    Invalid(Vec<FieldError>),
    /// Not an object Portolan reads (a Secret of another type): treated as absent.
    Skipped,
}

/// One decoded cluster object and what the status writer needs to know of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub object: ObjectRef,
    pub outcome: Outcome,
    pub seen: Seen,
    /// The object as a user would re-apply it (see [`manifest`]); `None` for kinds whose
    /// documents are not kept.
    pub manifest: Option<Arc<str>>,
}

/// What the cluster holds of an object beyond its model: its generation and resource version,
/// and the status currently written on it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Seen {
    pub generation: i64,
    pub resource_version: Option<String>,
    pub observed_generation: Option<i64>,
    pub conditions: Vec<MetaCondition>,
    /// The whole `status` as the cluster holds it (Gateway API kinds: the writer keeps other
    /// controllers' route `parents` entries and compares what it would write with it).
    pub status: Option<Value>,
    /// `metadata.uid` (the owner reference of what is provisioned for a Gateway).
    pub uid: Option<String>,
    /// A route's `spec.parentRefs` as written (the status of an invalid version names them).
    pub parent_refs: Vec<Value>,
}

/// The identity of a watched object (the namespace defaults as for manifests; cluster-scoped
/// kinds have none).
pub fn object_ref(kind: Kind, obj: &DynamicObject) -> ObjectRef {
    if kind.cluster_scoped() {
        return ObjectRef::new(kind, "", obj.metadata.name.as_deref().unwrap_or_default());
    }
    let namespace = obj
        .metadata
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(portolan_api::resource::DEFAULT_NAMESPACE);
    ObjectRef::new(
        kind,
        namespace,
        obj.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// Decodes, validates and converts one watched object of `kind`.
pub fn decode(kind: Kind, obj: &DynamicObject) -> Decoded {
    let object = object_ref(kind, obj);
    let seen = seen(obj);
    let (outcome, manifest) = match document(kind, obj) {
        Ok(value) => (outcome(value.clone()), manifest(kind, value)),
        Err(e) => (Outcome::Invalid(vec![e]), None),
    };
    Decoded {
        object,
        outcome,
        seen,
        manifest,
    }
}

/// What `portolan rollback` prints in Kubernetes mode: the document without the metadata the
/// API server sets (`resourceVersion`, `uid`, `generation`, timestamps, `kubectl`'s
/// last-applied annotation), so `kubectl apply` takes it as written. Secrets are never kept
/// (their keys stay out of the history), nor EndpointSlices and Endpoints (Kubernetes
/// manages them), Namespaces (watched for their labels only) or ServiceAccounts (for their
/// names only).
pub fn manifest(kind: Kind, mut document: Value) -> Option<Arc<str>> {
    if matches!(
        kind,
        Kind::Secret
            | Kind::EndpointSlice
            | Kind::Endpoints
            | Kind::Namespace
            | Kind::ServiceAccount
    ) {
        return None;
    }
    if let Some(Value::Object(meta)) = document.get_mut("metadata") {
        for key in [
            "resourceVersion",
            "uid",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(key);
        }
        if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
            if annotations.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    Some(Arc::from(document.to_string()))
}

/// The object as a manifest document: `apiVersion`/`kind` filled in (list items and watch
/// events may leave them out), status and managed fields dropped.
fn document(kind: Kind, obj: &DynamicObject) -> Result<Value, FieldError> {
    let mut value = serde_json::to_value(obj)
        .map_err(|e| FieldError::new(FieldPath::root(), format!("cannot encode object: {e}")))?;
    let Value::Object(map) = &mut value else {
        return Err(FieldError::new(
            FieldPath::root(),
            "object is not a mapping",
        ));
    };
    let resource = kinds::api_resource(kind);
    map.insert("apiVersion".into(), Value::from(resource.api_version));
    map.insert("kind".into(), Value::from(resource.kind));
    map.remove("status");
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        meta.remove("managedFields");
    }
    Ok(value)
}

fn outcome(value: Value) -> Outcome {
    let resource = match Resource::decode(value) {
        Ok(Some(r)) => r,
        Ok(None) => return Outcome::Skipped,
        Err(DecodeError::Invalid { error, .. }) => return Outcome::Invalid(vec![error]),
        Err(DecodeError::MissingField(path)) => {
            let e = FieldError::new(path, "required field is missing or not a string");
            return Outcome::Invalid(vec![e]);
        }
        Err(e @ DecodeError::NotAnObject) => {
            return Outcome::Invalid(vec![FieldError::new(FieldPath::root(), e.to_string())]);
        }
    };
    let errors = portolan_api::validate::validate(&resource);
    if errors.is_empty() {
        Outcome::Valid(convert::to_object(&resource))
    } else {
        Outcome::Invalid(errors)
    }
}

/// Generation, resource version and the written status (conditions that do not parse are
/// ignored: the status writer then rewrites them).
fn seen(obj: &DynamicObject) -> Seen {
    let status = obj.data.get("status");
    let conditions = status
        .and_then(|s| s.get("conditions"))
        .and_then(|c| serde_json::from_value::<Vec<MetaCondition>>(c.clone()).ok())
        .unwrap_or_default();
    Seen {
        generation: obj.metadata.generation.unwrap_or_default(),
        resource_version: obj.metadata.resource_version.clone(),
        observed_generation: status
            .and_then(|s| s.get("observedGeneration"))
            .and_then(Value::as_i64),
        conditions,
        status: status.cloned(),
        uid: obj.metadata.uid.clone(),
        parent_refs: obj
            .data
            .get("spec")
            .and_then(|s| s.get("parentRefs"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    }
}

//! Deciding one AdmissionRequest: the same decoding and validation every source runs
//! ([`portolan_api::Resource::decode`], [`portolan_api::validate::validate`]), then the
//! translation dry run ([`crate::dry_run`]).
//!
//! Only CREATE and UPDATE of `portolan.dev` kinds are checked; CONNECT and every other kind are
//! allowed (the webhook must never block what it does not own). A DELETE is always allowed,
//! with the blast radius of the deletion as warnings. Gateway API objects are never refused,
//! only warned about ([`crate::gateway_api`]). Messages name the
//! object and the field path exactly as `portolan validate` prints them:
//! `TrafficRoute default/reviews: spec.http[0].route[0].weight: ...`.

use crate::dry_run::DryRun;
use crate::review::{Request, Verdict};
use portolan_api::{DecodeError, Resource};
use portolan_model::convert;
use serde_json::Value;

/// The API group whose objects are checked.
pub const GROUP: &str = "portolan.dev";

/// Decides admission requests.
#[derive(Clone)]
pub struct Admission {
    dry_run: DryRun,
}

// === impl Admission ===

impl Admission {
    pub fn new(dry_run: DryRun) -> Self {
        Self { dry_run }
    }

    /// The verdict for one request. CPU-bound (translation): call it off the async workers.
    pub fn decide(&self, request: &Request) -> Verdict {
        if request.kind.group == portolan_api::gwapi::GROUP {
            return crate::gateway_api::review(&self.dry_run, request);
        }
        if request.kind.group == GROUP && request.operation == "DELETE" {
            return self.deletion(request);
        }
        if request.kind.group != GROUP || !matches!(request.operation.as_str(), "CREATE" | "UPDATE")
        {
            return Verdict::allow(Vec::new());
        }
        let Some(object) = request.object.clone() else {
            return Verdict::bad_request(format!(
                "request.object is missing for {} of {} {}",
                request.operation,
                request.kind.kind,
                identity(request)
            ));
        };
        let resource = match Resource::decode(with_identity(object, request)) {
            Ok(Some(r)) => r,
            // A portolan.dev kind or version this Portolan does not read.
            Ok(None) => return Verdict::allow(Vec::new()),
            Err(DecodeError::Invalid { object, error }) => {
                return Verdict::invalid(format!("{object}: {error}"), Vec::new());
            }
            Err(DecodeError::MissingField(path)) => {
                return Verdict::invalid(
                    format!(
                        "{} {}: {path}: required field is missing or not a string",
                        request.kind.kind,
                        identity(request)
                    ),
                    Vec::new(),
                );
            }
            Err(e @ DecodeError::NotAnObject) => {
                return Verdict::bad_request(format!("request.object: {e}"));
            }
        };
        let object_ref = resource.object_ref();
        let errors = portolan_api::validate::validate(&resource);
        if !errors.is_empty() {
            let message: Vec<String> = errors
                .iter()
                .map(|e| format!("{object_ref}: {e}"))
                .collect();
            return Verdict::invalid(message.join("; "), Vec::new());
        }
        let outcome = self.dry_run.run(convert::to_object(&resource));
        match outcome.failure {
            Some(failure) => Verdict::invalid(
                format!("{object_ref}: rejected by the translation dry run: {failure}"),
                outcome.warnings,
            ),
            None => Verdict::allow(outcome.warnings),
        }
    }
}

// === impl Admission (deletions) ===

impl Admission {
    /// A DELETE: allowed, warning with the blast radius of removing the stored object
    /// (`oldObject`); without a readable `oldObject`, allowed with no warning.
    fn deletion(&self, request: &Request) -> Verdict {
        let Some(old) = request.old_object.clone() else {
            return Verdict::allow(Vec::new());
        };
        match Resource::decode(with_identity(old, request)) {
            Ok(Some(resource)) => {
                let outcome = self.dry_run.run_delete(convert::to_object(&resource));
                Verdict::allow(outcome.warnings)
            }
            _ => Verdict::allow(Vec::new()),
        }
    }
}

/// `namespace/name` as the request names the object.
fn identity(request: &Request) -> String {
    let ns = if request.namespace.is_empty() {
        portolan_api::resource::DEFAULT_NAMESPACE
    } else {
        &request.namespace
    };
    format!("{ns}/{}", request.name)
}

/// The object with the request's namespace (and name, or `generateName` prefix) filled in
/// when the object leaves them out, as the API server does before storing it.
pub(crate) fn with_identity(mut object: Value, request: &Request) -> Value {
    let Some(meta) = object
        .as_object_mut()
        .map(|o| {
            o.entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()))
        })
        .and_then(Value::as_object_mut)
    else {
        return object;
    };
    let blank = |v: Option<&Value>| v.and_then(Value::as_str).is_none_or(str::is_empty);
    if blank(meta.get("namespace")) && !request.namespace.is_empty() {
        meta.insert("namespace".into(), request.namespace.clone().into());
    }
    if blank(meta.get("name")) {
        let name = if request.name.is_empty() {
            meta.get("generateName")
                .and_then(Value::as_str)
                .map(|p| format!("{p}generated"))
        } else {
            Some(request.name.clone())
        };
        if let Some(name) = name {
            meta.insert("name".into(), name.into());
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use portolan_model::Index;
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    fn admission() -> Admission {
        let index = Arc::new(Mutex::new(Index::new()));
        Admission::new(DryRun::new(
            index,
            None,
            portolan_translate::Options::default(),
        ))
    }

    fn request(operation: &str, namespace: &str, name: &str, object: Value) -> Request {
        Request {
            uid: "u".into(),
            kind: crate::review::GroupVersionKind {
                group: GROUP.into(),
                version: "v1alpha1".into(),
                kind: "TrafficRoute".into(),
            },
            name: name.into(),
            namespace: namespace.into(),
            operation: operation.into(),
            object: Some(object),
            old_object: None,
            dry_run: None,
        }
    }

    fn bad_route(metadata: Value) -> Value {
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
               "metadata": metadata, "spec": {"hosts": []}})
    }

    fn message(v: &Verdict) -> &str {
        v.denial
            .as_ref()
            .map(|d| d.message.as_str())
            .unwrap_or_default()
    }

    #[test]
    fn the_request_namespace_and_name_fill_in_what_the_object_leaves_out() {
        let a = admission();
        let v = a.decide(&request("CREATE", "shop", "reviews", bad_route(json!({}))));
        assert!(
            message(&v).starts_with("TrafficRoute shop/reviews: spec.hosts"),
            "{v:?}"
        );
        let v = a.decide(&request(
            "CREATE",
            "shop",
            "",
            bad_route(json!({"generateName": "reviews-"})),
        ));
        assert!(
            message(&v).starts_with("TrafficRoute shop/reviews-generated: "),
            "{v:?}"
        );
    }

    #[test]
    fn only_create_and_update_of_portolan_objects_are_checked() {
        let a = admission();
        for op in ["DELETE", "CONNECT"] {
            let v = a.decide(&request(op, "shop", "r", bad_route(json!({}))));
            assert!(v.allowed, "{op}");
        }
        let mut other = request("CREATE", "shop", "r", bad_route(json!({})));
        other.kind.group = "gateway.networking.k8s.io".into();
        assert!(a.decide(&other).allowed);
        let mut missing = request("UPDATE", "shop", "r", Value::Null);
        missing.object = None;
        let v = a.decide(&missing);
        assert_eq!(v.denial.as_ref().map(|d| d.code), Some(400), "{v:?}");
    }

    /// A DELETE is allowed and warns with what the deletion removes (here the subset
    /// clusters of a TrafficPolicy), read from `oldObject`.
    #[test]
    fn a_deletion_is_allowed_with_its_blast_radius() {
        let index = Arc::new(Mutex::new(Index::new()));
        let policy = json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficPolicy",
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {"host": "reviews", "subsets": [{"name": "v2", "labels": {"version": "v2"}}]}});
        let service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {"ports": [{"name": "http", "port": 9080}]}});
        for doc in [service, policy.clone()] {
            let resource = Resource::decode(doc)
                .ok()
                .flatten()
                .expect("a valid object");
            index
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .apply(convert::to_object(&resource));
        }
        let a = Admission::new(DryRun::new(index, None, Default::default()));
        let mut delete = request("DELETE", "shop", "reviews", Value::Null);
        delete.kind.kind = "TrafficPolicy".into();
        delete.object = None;
        delete.old_object = Some(policy);
        let v = a.decide(&delete);
        assert!(v.allowed, "{v:?}");
        let warnings = v.warnings.join("\n");
        assert!(warnings.contains("REMOVES clusters"), "{warnings}");
        assert!(warnings.contains("|v2|reviews.shop"), "{warnings}");
    }

    #[test]
    fn a_proxy_scope_is_validated_with_its_field_path() {
        let a = admission();
        let scope = |hosts: Value| {
            json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "ProxyScope",
                   "metadata": {}, "spec": {"hosts": hosts}})
        };
        let mut bad = request("CREATE", "shop", "cart", scope(json!(["./*", "payments"])));
        bad.kind.kind = "ProxyScope".into();
        let v = a.decide(&bad);
        assert!(
            message(&v).starts_with("ProxyScope shop/cart: spec.hosts[1]: \"payments\" is not"),
            "{v:?}"
        );
        let mut good = request("CREATE", "shop", "cart", scope(json!(["./*", "shared/*"])));
        good.kind.kind = "ProxyScope".into();
        assert!(a.decide(&good).allowed, "{:?}", a.decide(&good));
    }
}

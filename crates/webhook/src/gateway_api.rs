//! Admission of Gateway API objects (`gateway.networking.k8s.io`): never refused, only warned.
//!
//! Gateway API objects are shared between implementations (a route may attach to Gateways of
//! several controllers, and the CRDs carry their own validation), so Portolan's webhook does
//! not deny them. It tells the user, as AdmissionReview warnings, what Portolan will do with
//! the object: field-path errors Portolan's own decoding finds (the object will get
//! `Accepted=False` and not be served), a translation dry-run failure (the last good
//! configuration stays served), conditions Portolan will write as `False` (an unresolved
//! `backendRef`, a listener that refuses the route, ...), and the blast radius of the change,
//! including deletions. Objects of other GatewayClasses reach no Portolan proxy group.

use crate::admission::with_identity;
use crate::dry_run::DryRun;
use crate::review::{Request, Verdict};
use portolan_api::{DecodeError, Resource};
use portolan_model::convert;

/// The verdict on one Gateway API request: always allowed, with warnings.
pub fn review(dry_run: &DryRun, request: &Request) -> Verdict {
    let warnings = match request.operation.as_str() {
        "CREATE" | "UPDATE" => applied(dry_run, request),
        "DELETE" => deleted(dry_run, request),
        _ => Vec::new(),
    };
    Verdict::allow(warnings)
}

/// A CREATE or UPDATE: what Portolan will make of the object.
fn applied(dry_run: &DryRun, request: &Request) -> Vec<String> {
    let Some(object) = request.object.clone() else {
        return Vec::new();
    };
    let resource = match Resource::decode(with_identity(object, request)) {
        Ok(Some(r)) => r,
        // A kind or version Portolan does not read.
        Ok(None) => return Vec::new(),
        Err(DecodeError::Invalid { object, error }) => return vec![not_served(&object, &error)],
        Err(e) => {
            let object = format!(
                "{} {}/{}",
                request.kind.kind, request.namespace, request.name
            );
            return vec![not_served(&object, &e)];
        }
    };
    let object_ref = resource.object_ref();
    let errors = portolan_api::validate::validate(&resource);
    if !errors.is_empty() {
        return errors.iter().map(|e| not_served(&object_ref, e)).collect();
    }
    let outcome = dry_run.run(convert::to_object(&resource));
    let mut warnings = Vec::new();
    if let Some(failure) = outcome.failure {
        warnings.push(format!(
            "{object_ref}: the translation dry run fails, Portolan keeps serving the last good configuration: {failure}"
        ));
    }
    warnings.extend(outcome.warnings);
    warnings
}

/// A DELETE: the blast radius of removing the stored object.
fn deleted(dry_run: &DryRun, request: &Request) -> Vec<String> {
    let Some(old) = request.old_object.clone() else {
        return Vec::new();
    };
    match Resource::decode(with_identity(old, request)) {
        Ok(Some(resource)) => dry_run.run_delete(convert::to_object(&resource)).warnings,
        _ => Vec::new(),
    }
}

fn not_served(object: &dyn std::fmt::Display, error: &dyn std::fmt::Display) -> String {
    format!("{object}: {error} (Portolan will set Accepted=False and not serve it)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::GroupVersionKind;
    use portolan_model::Index;
    use serde_json::{Value, json};
    use std::sync::{Arc, Mutex};

    fn dry_run(docs: Vec<Value>) -> DryRun {
        let index = Arc::new(Mutex::new(Index::new()));
        for doc in docs {
            let resource = Resource::decode(doc)
                .ok()
                .flatten()
                .expect("a valid object");
            index
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .apply(convert::to_object(&resource));
        }
        DryRun::new(index, None, Default::default())
    }

    fn request(operation: &str, kind: &str, object: Value) -> Request {
        let (object, old_object) = if operation == "DELETE" {
            (None, Some(object))
        } else {
            (Some(object), None)
        };
        Request {
            uid: "u".into(),
            kind: GroupVersionKind {
                group: portolan_api::gwapi::GROUP.into(),
                version: "v1".into(),
                kind: kind.into(),
            },
            name: "web".into(),
            namespace: "shop".into(),
            operation: operation.into(),
            object,
            old_object,
            dry_run: None,
        }
    }

    fn world() -> Vec<Value> {
        vec![
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                "metadata": {"name": "portolan"},
                "spec": {"controllerName": "portolan.dev/gateway-controller"}}),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "edge", "namespace": "shop"},
                "spec": {"gatewayClassName": "portolan",
                         "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}}),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"ports": [{"name": "http", "port": 80}]}}),
        ]
    }

    fn route(backend: &str) -> Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"parentRefs": [{"name": "edge"}],
                     "rules": [{"backendRefs": [{"name": backend, "port": 80}]}]}})
    }

    /// A route to a missing Service is allowed with the condition Portolan will write, and
    /// the blast radius of the route's Gateway.
    #[test]
    fn a_route_is_allowed_with_its_conditions_and_blast_radius() {
        let d = dry_run(world());
        let v = review(&d, &request("CREATE", "HTTPRoute", route("nowhere")));
        assert!(v.allowed);
        let w = v.warnings.join("\n");
        assert!(w.contains("HTTPRoute shop/web"), "{w}");
        assert!(w.contains("ResolvedRefs"), "{w}");
        assert!(w.contains("blast radius: "), "{w}");
        let v = review(&d, &request("CREATE", "HTTPRoute", route("web")));
        assert!(v.allowed);
        assert!(
            v.warnings.iter().all(|w| w.starts_with("blast radius: ")),
            "{v:?}"
        );
    }

    /// An object Portolan's decoding refuses is still allowed, with the field path.
    #[test]
    fn a_bad_route_is_allowed_with_the_field_path() {
        let d = dry_run(world());
        let mut bad = route("web");
        bad["spec"]["rules"][0]["backendRefs"][0]["weight"] = json!(-1);
        let v = review(&d, &request("UPDATE", "HTTPRoute", bad));
        assert!(v.allowed);
        let w = v.warnings.join("\n");
        assert!(w.contains("spec.rules[0].backendRefs[0].weight"), "{w}");
        assert!(w.contains("Accepted=False"), "{w}");
    }

    /// Deleting a served route warns that its virtual host or route goes away.
    #[test]
    fn a_deletion_warns_with_its_blast_radius() {
        let mut docs = world();
        docs.push(route("web"));
        let d = dry_run(docs);
        let v = review(&d, &request("DELETE", "HTTPRoute", route("web")));
        assert!(v.allowed);
        let w = v.warnings.join("\n");
        assert!(
            w.contains("blast radius: group gateway:shop/edge (dry run)"),
            "{w}"
        );
        assert!(w.contains("REMOVES"), "{w}");
    }
}

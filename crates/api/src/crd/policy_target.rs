//! Policy attachment (Gateway API GEP-713): how a policy names what it applies to
//! (`spec.targetRefs`) and the status it reports back, one entry per ancestor.
//!
//! A target is local: it lives in the policy's namespace. The kinds a policy may target:
//!
//! | group | kind | sectionName |
//! |---|---|---|
//! | `gateway.networking.k8s.io` | `Gateway` | a listener name |
//! | `portolan.dev` | `Gateway` | a listener name |
//! | `gateway.networking.k8s.io` | `HTTPRoute`, `GRPCRoute` | a rule name |
//! | `portolan.dev` | `TrafficRoute` | an `http[]` rule name |
//! | `""` (core) | `Service` | a port name (the Service's inbound side) |

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The group of Gateway API kinds in a target reference.
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

/// A local (same-namespace) reference to the object a policy applies to
/// (Gateway API `LocalPolicyTargetReferenceWithSectionName`).
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetRef {
    /// `gateway.networking.k8s.io`, `portolan.dev`, or `""` for a core Service.
    #[serde(default)]
    #[schemars(length(max = 253))]
    pub group: String,
    /// `Gateway`, `HTTPRoute`, `GRPCRoute`, `TrafficRoute` or `Service`.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// The target's name, in the policy's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// One part of the target: a Gateway listener, a named route rule, a Service port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub section_name: Option<String>,
}

/// The status of a policy: one entry per ancestor (the Gateway a target is served on, or
/// the target itself) that Portolan's controller considered; at most 16.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

/// The policy's conditions with respect to one ancestor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    pub ancestor_ref: AncestorRef,
    /// `portolan.dev/gateway-controller` (the controllerName of Portolan's GatewayClass).
    pub controller_name: String,
    /// `Accepted` (reasons `Accepted`, `Invalid`, `TargetNotFound`, `Conflicted`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A reference to an ancestor (Gateway API `ParentReference` shape).
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct AncestorRef {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

// === impl PolicyTargetRef ===

impl PolicyTargetRef {
    /// The ancestor reference of this target, in `namespace` (the policy's).
    pub fn ancestor_ref(&self, namespace: &str) -> AncestorRef {
        AncestorRef {
            group: self.group.clone(),
            kind: self.kind.clone(),
            namespace: Some(namespace.to_string()),
            name: self.name.clone(),
            section_name: self.section_name.clone(),
        }
    }
}

impl std::fmt::Display for PolicyTargetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{}.{} {}", self.kind, group, self.name)?;
        if let Some(section) = &self.section_name {
            write!(f, " section {section}")?;
        }
        Ok(())
    }
}

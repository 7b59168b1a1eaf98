//! Status conditions of routing objects, as Kubernetes and Gateway API users know them:
//! `Accepted`, `ResolvedRefs`, `Programmed`, each with `observedGeneration`.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum ConditionType {
    /// The object is valid and in use (False: rejected, or lost a conflict).
    Accepted,
    /// Every service, subset, gateway and secret it names exists.
    ResolvedRefs,
    /// Connected proxies took the configuration (False names the proxies that NACKed).
    Programmed,
}

impl fmt::Display for ConditionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: ConditionType,
    pub status: bool,
    /// CamelCase reason, e.g. `Accepted`, `Invalid`, `Conflicted`, `BackendNotFound`.
    pub reason: String,
    /// Human-readable detail naming the field path and the missing object.
    pub message: String,
    pub observed_generation: i64,
}

impl Condition {
    pub fn new(
        type_: ConditionType,
        status: bool,
        reason: &str,
        message: impl Into<String>,
        observed_generation: i64,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.to_string(),
            message: message.into(),
            observed_generation,
        }
    }
}

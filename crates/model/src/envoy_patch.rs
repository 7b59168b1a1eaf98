//! Envoy patch policies (`EnvoyPatchPolicy`): JSON patches or merges to the Envoy resources
//! generated for selected proxy groups. The model keeps what the object says; the pipeline
//! applies it (`portolan_pipeline::patch`), and only when the server enables it.

use portolan_api::ObjectRef;
use portolan_api::crd::envoy_patch_policy::{PatchOperation, PatchedType};
use std::collections::BTreeMap;

/// One EnvoyPatchPolicy.
#[derive(Clone, Debug, PartialEq)]
pub struct EnvoyPatch {
    pub source: ObjectRef,
    pub generation: i64,
    pub target: PatchTarget,
    pub patches: Vec<ResourcePatch>,
}

/// Which proxy groups the patches apply to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatchTarget {
    /// The groups a Portolan Gateway selects.
    Gateway(ObjectRef),
    /// The group of a Gateway API Gateway.
    ApiGateway(ObjectRef),
    /// Groups by `node.cluster` and node labels (all given must match).
    Proxies {
        cluster: Option<String>,
        labels: BTreeMap<String, String>,
    },
}

/// One patch of one generated resource.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourcePatch {
    pub type_: PatchedType,
    pub name: String,
    pub body: PatchBody,
}

/// RFC 6902 operations or an RFC 7386 merge patch.
#[derive(Clone, Debug, PartialEq)]
pub enum PatchBody {
    Operations(Vec<PatchOperation>),
    Merge(serde_json::Value),
}

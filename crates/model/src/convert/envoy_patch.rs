//! EnvoyPatchPolicy -> [`crate::envoy_patch`].

use crate::envoy_patch::{EnvoyPatch, PatchBody, PatchTarget, ResourcePatch};
use portolan_api::crd::envoy_patch_policy::{self as epp, GATEWAY_API_GROUP};
use portolan_api::{Kind, ObjectRef, Resource};

pub(super) fn envoy_patch(resource: &Resource, p: &epp::EnvoyPatchPolicy) -> EnvoyPatch {
    let source = resource.object_ref();
    let target = match (&p.spec.target_ref, &p.spec.proxies) {
        (Some(t), _) => {
            let kind = match t.group.as_str() {
                GATEWAY_API_GROUP => Kind::ApiGateway,
                _ => Kind::Gateway,
            };
            let gateway = ObjectRef::new(kind, &source.namespace, &t.name);
            match kind {
                Kind::ApiGateway => PatchTarget::ApiGateway(gateway),
                _ => PatchTarget::Gateway(gateway),
            }
        }
        (None, proxies) => PatchTarget::Proxies {
            cluster: proxies.as_ref().and_then(|s| s.cluster.clone()),
            labels: proxies
                .as_ref()
                .and_then(|s| s.labels.clone())
                .unwrap_or_default(),
        },
    };
    let patches = p
        .spec
        .patches
        .iter()
        .map(|patch| ResourcePatch {
            type_: patch.type_,
            name: patch.name.clone(),
            body: match (&patch.operations, &patch.merge) {
                (Some(ops), _) => PatchBody::Operations(ops.clone()),
                (None, merge) => PatchBody::Merge(merge.clone().unwrap_or_default()),
            },
        })
        .collect();
    EnvoyPatch {
        source,
        generation: resource.generation(),
        target,
        patches,
    }
}

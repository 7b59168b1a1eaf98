//! Validation of policy `targetRefs` (shared by every policy kind): a supported group and
//! kind, a DNS name, a DNS-label `sectionName`, no duplicates.

use super::*;
use crate::crd::common::GROUP;
use crate::crd::policy_target::{GATEWAY_API_GROUP, PolicyTargetRef};

/// The (group, kind) pairs a policy may target.
pub const TARGET_KINDS: &[(&str, &str)] = &[
    (GATEWAY_API_GROUP, "Gateway"),
    (GATEWAY_API_GROUP, "HTTPRoute"),
    (GATEWAY_API_GROUP, "GRPCRoute"),
    (GROUP, "Gateway"),
    (GROUP, "TrafficRoute"),
    ("", "Service"),
];

/// Checks `spec.targetRefs` (at `path`): at least one, each well formed, no two equal.
/// Policy kinds call this from their own validation.
pub fn target_refs(refs: &[PolicyTargetRef], path: FieldPath) -> Vec<FieldError> {
    let mut errors = Errors::default();
    collect(refs, path, &mut errors);
    errors.0
}

fn collect(refs: &[PolicyTargetRef], path: FieldPath, errors: &mut Errors) {
    if refs.is_empty() {
        errors.push(path.clone(), "at least one target is required");
    }
    for (i, target) in refs.iter().enumerate() {
        let at = path.index(i);
        target_ref(target, &at, errors);
        if refs[..i].contains(target) {
            errors.push(at, format!("{target} is listed twice"));
        }
    }
}

fn target_ref(target: &PolicyTargetRef, path: &FieldPath, errors: &mut Errors) {
    let pair = (target.group.as_str(), target.kind.as_str());
    if !TARGET_KINDS.contains(&pair) {
        let allowed: Vec<String> = TARGET_KINDS
            .iter()
            .map(|(g, k)| format!("{k}.{}", if g.is_empty() { "core" } else { g }))
            .collect();
        errors.push(
            path.field("kind"),
            format!(
                "{:?} in group {:?} cannot be targeted; allowed: {}",
                target.kind,
                target.group,
                allowed.join(", ")
            ),
        );
    }
    if !is_dns_name(&target.name) {
        errors.push(
            path.field("name"),
            format!("{:?} is not a DNS name", target.name),
        );
    }
    if let Some(section) = &target.section_name
        && !is_dns_label(section)
    {
        errors.push(
            path.field("sectionName"),
            format!("{section:?} is not a DNS label (a listener, rule or port name)"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(group: &str, kind: &str, name: &str, section: Option<&str>) -> PolicyTargetRef {
        PolicyTargetRef {
            group: group.into(),
            kind: kind.into(),
            name: name.into(),
            section_name: section.map(Into::into),
        }
    }

    fn check(refs: &[PolicyTargetRef]) -> Vec<String> {
        target_refs(refs, spec_path().field("targetRefs"))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn target_refs_table() {
        assert!(check(&[t(GATEWAY_API_GROUP, "Gateway", "gw", Some("http"))]).is_empty());
        assert!(check(&[t("", "Service", "web", None)]).is_empty());
        assert_eq!(
            check(&[]),
            ["spec.targetRefs: at least one target is required"]
        );
        let bad = check(&[t("apps", "Deployment", "Web", Some("A_B"))]);
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad[0].starts_with("spec.targetRefs[0].kind: \"Deployment\" in group \"apps\""));
        assert!(bad[1].starts_with("spec.targetRefs[0].name: "));
        assert!(bad[2].starts_with("spec.targetRefs[0].sectionName: "));
        let dup = t(GROUP, "TrafficRoute", "r", None);
        assert_eq!(
            check(&[dup.clone(), dup]),
            ["spec.targetRefs[1]: TrafficRoute.portolan.dev r is listed twice"]
        );
    }
}

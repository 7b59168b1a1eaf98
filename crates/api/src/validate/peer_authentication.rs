//! Validation of `PeerAuthentication`.

use super::*;
use crate::crd::common::WorkloadSelector;
use crate::crd::peer_authentication::*;

pub(super) fn peer_authentication(pa: &PeerAuthentication, errors: &mut Errors) {
    object_name(pa.metadata.name.as_deref(), errors);
    if let Some(selector) = &pa.spec.selector {
        workload_selector(selector, spec_path().field("selector"), errors);
    }
}

/// A selector's labels: Kubernetes label keys (optional DNS prefix, name of at most 63
/// characters) and values; at least one label.
pub(super) fn workload_selector(selector: &WorkloadSelector, path: FieldPath, errors: &mut Errors) {
    let path = path.field("matchLabels");
    if selector.match_labels.is_empty() {
        errors.push(
            path.clone(),
            "at least one label is required (leave the selector out to select the whole namespace)",
        );
    }
    for (k, v) in &selector.match_labels {
        if !is_label_key(k) {
            errors.push(
                path.key(k),
                format!("{k:?} is not a label key: [PREFIX/]NAME, NAME 1-63 letters, digits, '-', '_', '.'"),
            );
        }
        if !is_label_value(v) {
            errors.push(
                path.key(k),
                format!("{v:?} is not a label value: at most 63 letters, digits, '-', '_', '.', starting and ending alphanumeric"),
            );
        }
    }
}

fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(is_dns_name) && !name.is_empty() && is_label_value(name)
}

fn is_label_value(v: &str) -> bool {
    let alnum = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && alnum(v.chars().next())
        && alnum(v.chars().last())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::table;
    use serde_json::json;

    #[test]
    fn peer_authentication_table() {
        table(
            "portolan.dev/v1alpha1",
            "PeerAuthentication",
            &[
                (json!({"mtls": {"mode": "STRICT"}}), &[]),
                (
                    json!({"selector": {"matchLabels": {"app": "web"}}, "mtls": {"mode": "DISABLE"}}),
                    &[],
                ),
                (
                    json!({"selector": {"matchLabels": {}}, "mtls": {"mode": "PERMISSIVE"}}),
                    &[
                        "spec.selector.matchLabels: at least one label is required (leave the selector out to select the whole namespace)",
                    ],
                ),
                (
                    json!({"selector": {"matchLabels": {"bad key!": "-x"}}, "mtls": {"mode": "STRICT"}}),
                    &[
                        "spec.selector.matchLabels[bad key!]: \"bad key!\" is not a label key: [PREFIX/]NAME, NAME 1-63 letters, digits, '-', '_', '.'",
                        "spec.selector.matchLabels[bad key!]: \"-x\" is not a label value: at most 63 letters, digits, '-', '_', '.', starting and ending alphanumeric",
                    ],
                ),
            ],
        );
    }
}

//! Pieces shared by the CRD kinds: string matches, destinations, status, durations, and the
//! helpers that write CEL rules into schemas.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// API group of every Portolan CRD.
pub const GROUP: &str = "portolan.dev";
/// API version of every Portolan CRD.
pub const VERSION: &str = "v1alpha1";

/// The regex durations must match in the schema (Go duration subset: `500ms`, `1m30s`, `1.5s`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// Status of every Portolan object: the conditions Portolan computed and the generation they
/// describe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// `metadata.generation` the conditions were computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` and `ResolvedRefs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A string condition: exactly one of `exact`, `prefix`, `regex` (RE2, whole value).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.exact), has(self.prefix), has(self.regex)].filter(x, x).size() == 1",
    "message": "exactly one of exact, prefix, regex is required"
}]))]
pub struct StringMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A Service (or ExternalService host), a port, and optionally a subset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// `reviews`, `reviews.shop`, `reviews.shop.svc.cluster.local`, or an ExternalService host.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// Required unless the destination has one port or is the host being routed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// A subset defined by the TrafficPolicy for the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub subset: Option<String>,
}

/// Parses a duration: a concatenation of numbers (fractions allowed) with a unit of `ms`,
/// `s`, `m` or `h`: `500ms`, `2s`, `1.5s`, `1m30s`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{s:?} is not a duration: write a number and a unit of ms, s, m or h, like 500ms, 1.5s or 1m30s"
        )
    };
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
            return Err(bad());
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let seconds = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * seconds;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = |s: &str| parse_duration(s).expect(s);
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("2s"), Duration::from_secs(2));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        for bad in ["", "5", "1d", "s", ".5s", "1.s", "-1s", "1 s", "1.2.3s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn pattern_agrees_with_parser() {
        let re = regex::Regex::new(DURATION_PATTERN).expect("compiles");
        for s in ["500ms", "1.5s", "1m30s", "", "5", ".5s", "1d"] {
            assert_eq!(re.is_match(s), parse_duration(s).is_ok(), "{s:?}");
        }
    }
}

/// Which workloads (mesh proxies, by the labels in their node metadata) an object applies to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    /// Every label must be present with this value.
    #[serde(default)]
    pub match_labels: std::collections::BTreeMap<String, String>,
}

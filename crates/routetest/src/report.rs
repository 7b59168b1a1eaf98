//! Printing verdicts: a readable report (a `-`/`+` diff under each failed expectation) or
//! JSON for CI tools.

use crate::run::SuiteResult;
use crate::verdict::Mode;
use std::fmt::Write;

/// Totals over suites: (passed, failed).
pub fn totals(results: &[SuiteResult]) -> (usize, usize) {
    let cases = results.iter().flat_map(|r| &r.cases);
    let passed = cases.clone().filter(|c| c.pass).count();
    (passed, cases.count() - passed)
}

/// The human report.
pub fn text(results: &[SuiteResult]) -> String {
    let mut out = String::new();
    for r in results {
        let how = match r.mode {
            Mode::Envoy => "stock Envoy",
            Mode::Evaluator => "route-table evaluator (no Envoy)",
        };
        let _ = writeln!(
            out,
            "RouteTest {} ({}), group {}: {how}",
            r.name, r.location, r.group
        );
        for s in &r.skipped {
            let _ = writeln!(out, "  note: listener not tested: {s}");
        }
        for u in &r.unmodelled {
            let _ = writeln!(
                out,
                "  note: not modelled without Envoy (requests through it may be answered differently by Envoy): {u}"
            );
        }
        for c in &r.cases {
            let _ = writeln!(
                out,
                "  {}  {}",
                if c.pass { "PASS" } else { "FAIL" },
                c.name
            );
            for ch in c.checks.iter().filter(|ch| !ch.ok) {
                let _ = writeln!(out, "        {}:", ch.what);
                let _ = writeln!(out, "        - expected {}", ch.expected);
                let _ = writeln!(out, "        + got      {}", ch.got);
            }
        }
    }
    let (passed, failed) = totals(results);
    let _ = writeln!(out, "{passed} passed, {failed} failed");
    out
}

/// The JSON report: `{"passed", "failed", "suites": [...]}`.
pub fn json(results: &[SuiteResult]) -> serde_json::Value {
    let (passed, failed) = totals(results);
    serde_json::json!({"passed": passed, "failed": failed, "suites": results})
}

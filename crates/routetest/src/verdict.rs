//! What a request came to ([`Outcome`], from Envoy or from the evaluator) held against what a
//! case expects: one [`Check`] per expectation written, each with the expected and the actual
//! value as text, so a failure reads as a diff.

use crate::spec::{Backend, Expect, parse_duration};
use crate::table::{self, Action, Evaluation, HttpRequest, Rendered};
use serde::Serialize;
use std::collections::BTreeMap;

/// What happened to one request (the same shape for both ways of finding out).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub status: Option<u16>,
    /// The matched route: `(name, vhost name, index)`.
    pub route: Option<(String, String, usize)>,
    /// The clusters the matched route sends to, with weights (from the route table).
    pub backends: Vec<(String, u32)>,
    /// The cluster whose stand-in answered (Envoy runs only).
    pub answered_by: Option<String>,
    pub location: Option<String>,
    pub body: Option<String>,
    /// Headers the backend received; `None` when no request went upstream.
    pub request_headers: Option<BTreeMap<String, String>>,
    pub response_headers: BTreeMap<String, String>,
    pub upstream_path: Option<String>,
    pub upstream_host: Option<String>,
    pub timeout_ms: Option<u64>,
    pub retries: Option<(u32, Option<u64>, Option<String>)>,
    /// Whether RBAC (AccessPolicy) denied the request.
    pub denied: bool,
    /// Why there is no answer (no listener, route action not modelled...).
    pub note: Option<String>,
}

/// One expectation held against the outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    pub what: String,
    pub expected: String,
    pub got: String,
    pub ok: bool,
}

/// How the verdicts were reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Requests sent through stock Envoy.
    Envoy,
    /// The route tables evaluated without Envoy.
    Evaluator,
}

/// The body of Envoy's answer when RBAC denies a request.
pub const RBAC_DENIED: &str = "RBAC: access denied";

// === the evaluator's outcome ===

/// The outcome the evaluator predicts for a request.
pub fn predicted(rendered: &Rendered, req: &HttpRequest, mesh_port: u16) -> Outcome {
    match rendered.evaluate(req, mesh_port) {
        Ok(eval) => from_evaluation(&eval, req),
        Err(e) => Outcome {
            note: Some(e.to_string()),
            ..Outcome::default()
        },
    }
}

/// Turns an evaluation into the outcome a client and a stand-in upstream would see.
pub fn from_evaluation(eval: &Evaluation, req: &HttpRequest) -> Outcome {
    let mut out = Outcome::default();
    if eval.denied {
        out.denied = true;
        out.status = Some(403);
        out.body = Some(RBAC_DENIED.to_string());
        return out;
    }
    let Some(route) = &eval.route else {
        out.status = Some(404);
        return out;
    };
    let vhost = eval.virtual_host.clone().unwrap_or_default().0;
    out.route = Some((route.name.clone(), vhost, route.index));
    let p = &route.policy;
    out.timeout_ms = Some(p.timeout_ms);
    out.retries = Some((p.retries, p.per_try_timeout_ms, p.retry_on.clone()));
    let mut response = BTreeMap::new();
    match &route.action {
        Action::Forward(set) => {
            out.backends = set.clone();
            out.status = Some(200);
            let mut headers = req.headers.clone();
            table::apply_headers(&mut headers, &p.request_add, &p.request_remove);
            out.request_headers = Some(headers);
            out.upstream_path = Some(table::rewritten_path(
                p.matched_prefix.as_deref(),
                p.prefix_rewrite.as_deref(),
                &req.path,
            ));
            out.upstream_host = Some(p.host_rewrite.clone().unwrap_or_else(|| req.host.clone()));
        }
        Action::Redirect { status, location } => {
            out.status = Some(*status);
            out.location = Some(location.clone());
        }
        Action::Direct { status, body } => {
            out.status = Some(*status);
            out.body = Some(body.clone());
        }
        Action::Abort(status) => out.status = Some(*status),
        Action::Unknown(why) => out.note = Some(why.clone()),
    }
    table::apply_headers(&mut response, &p.response_add, &p.response_remove);
    out.response_headers = response;
    out
}

// === checks ===

/// Holds an outcome against the expectation; `domain` is the cluster domain of Service names.
pub fn check(expect: &Expect, out: &Outcome, domain: &str) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut push = |what: &str, expected: String, got: String, ok: bool| {
        checks.push(Check {
            what: what.to_string(),
            expected,
            got,
            ok,
        })
    };
    if let Some(note) = &out.note {
        push("request", "an answer".into(), note.clone(), false);
    }
    if let Some(s) = expect.status {
        let got = out.status.map_or("no answer".into(), |g| g.to_string());
        push("status", s.to_string(), got, out.status == Some(s));
    }
    if let Some(allowed) = expect.allowed {
        let text = |a: bool| if a { "allowed" } else { "denied (403)" }.to_string();
        let got = !out.denied;
        push(
            "access",
            text(allowed),
            text(got),
            out.status.is_some() && got == allowed,
        );
    }
    if let Some(r) = &expect.route {
        let got = out.route.as_ref().map(|r| r.0.clone());
        let got_text = got.clone().map_or("no route".into(), |n| quote(&n));
        push("route", quote(r), got_text, got.as_deref() == Some(r));
    }
    let backends_check = |what: &str, expected: Vec<Backend>| {
        let exp = expected
            .iter()
            .map(describe_backend)
            .collect::<Vec<_>>()
            .join(", ");
        let got = describe_set(&out.backends, domain);
        let mut ok = same_set(&expected, &out.backends, domain);
        let mut got_text = got;
        if let Some(a) = &out.answered_by {
            let in_set = expected.iter().any(|b| backend_matches(b, a, domain));
            ok &= in_set;
            got_text = format!("{got_text} (answered by {})", short_cluster(a, domain));
        }
        (what.to_string(), exp, got_text, ok)
    };
    let mut extra = Vec::new();
    if let Some(b) = &expect.backend {
        let mut one = b.clone();
        one.weight = None;
        extra.push(backends_check("backend", vec![one]));
    }
    if let Some(list) = &expect.backends {
        extra.push(backends_check("backends", list.clone()));
    }
    for (what, e, g, ok) in extra {
        push(&what, e, g, ok);
    }
    if let Some(l) = &expect.redirect {
        let got = out.location.clone();
        let got_text = got.clone().map_or("no redirect".into(), |g| quote(&g));
        push("redirect", quote(l), got_text, got.as_deref() == Some(l));
    }
    if let Some(b) = &expect.body {
        let got = out.body.clone().unwrap_or_default();
        push("body", quote(b), quote(&got), &got == b);
    }
    header_checks(
        &mut push,
        "request header",
        &expect.request_headers,
        &expect.request_headers_absent,
        out.request_headers.as_ref(),
    );
    header_checks(
        &mut push,
        "response header",
        &expect.response_headers,
        &expect.response_headers_absent,
        Some(&out.response_headers),
    );
    for (what, exp, got) in [
        ("upstream path", &expect.upstream_path, &out.upstream_path),
        ("upstream host", &expect.upstream_host, &out.upstream_host),
    ] {
        if let Some(e) = exp {
            let g = got
                .clone()
                .map_or("no upstream request".into(), |g| quote(&g));
            push(what, quote(e), g, got.as_ref() == Some(e));
        }
    }
    if let Some(t) = &expect.timeout {
        let want = if t == "none" {
            Some(0)
        } else {
            parse_duration(t)
        };
        let got = out.timeout_ms;
        push(
            "timeout",
            t.clone(),
            got.map_or("no route".into(), ms_text),
            got == want,
        );
    }
    if let Some(r) = &expect.retries {
        let want = (
            r.attempts,
            r.per_try_timeout.as_deref().and_then(parse_duration),
            r.retry_on.clone(),
        );
        let got = out.retries.clone();
        let ok = got.as_ref().is_some_and(|g| {
            g.0 == want.0
                && (r.per_try_timeout.is_none() || g.1 == want.1)
                && (r.retry_on.is_none() || g.2 == want.2)
        });
        push("retries", retries_text(&Some(want)), retries_text(&got), ok);
    }
    checks
}

type Push<'a> = dyn FnMut(&str, String, String, bool) + 'a;

fn header_checks(
    push: &mut Push<'_>,
    what: &str,
    want: &BTreeMap<String, String>,
    absent: &[String],
    got: Option<&BTreeMap<String, String>>,
) {
    for (k, v) in want {
        let g = got.and_then(|h| h.get(&k.to_ascii_lowercase()));
        let text = match (got, g) {
            (None, _) => "no upstream request".to_string(),
            (Some(_), None) => "absent".to_string(),
            (Some(_), Some(g)) => quote(g),
        };
        push(&format!("{what} {k}"), quote(v), text, g == Some(v));
    }
    for k in absent {
        let g = got.and_then(|h| h.get(&k.to_ascii_lowercase()));
        let text = g.map_or("absent".to_string(), |g| quote(g));
        push(
            &format!("{what} {k}"),
            "absent".into(),
            text,
            got.is_some() && g.is_none(),
        );
    }
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

fn ms_text(ms: u64) -> String {
    match ms {
        0 => "none".into(),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

fn retries_text(r: &Option<(u32, Option<u64>, Option<String>)>) -> String {
    match r {
        None => "no route".into(),
        Some((0, _, _)) => "none".into(),
        Some((n, per_try, on)) => {
            let mut s = format!("{n} attempts");
            if let Some(t) = per_try {
                s.push_str(&format!(", per try {}", ms_text(*t)));
            }
            if let Some(on) = on {
                s.push_str(&format!(", on {on}"));
            }
            s
        }
    }
}

// === backends ===

/// `outbound|9080|v1|reviews.default.svc.cluster.local` -> (host, port, subset).
pub fn parse_cluster(name: &str) -> Option<(&str, u16, &str)> {
    let mut parts = name.split('|');
    let (dir, port, subset, host) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (dir == "outbound").then_some(())?;
    Some((host, port.parse().ok()?, subset))
}

/// A cluster as users name backends: `reviews.default:9080 v1`.
pub fn short_cluster(name: &str, domain: &str) -> String {
    match parse_cluster(name) {
        Some((host, port, subset)) => {
            let host = host.strip_suffix(&format!(".svc.{domain}")).unwrap_or(host);
            if subset.is_empty() {
                format!("{host}:{port}")
            } else {
                format!("{host}:{port} subset {subset}")
            }
        }
        None => name.to_string(),
    }
}

fn describe_set(set: &[(String, u32)], domain: &str) -> String {
    if set.is_empty() {
        return "no backend".into();
    }
    set.iter()
        .map(|(c, w)| {
            if set.len() == 1 {
                short_cluster(c, domain)
            } else {
                format!("{} weight {w}", short_cluster(c, domain))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_backend(b: &Backend) -> String {
    let mut s = match (&b.cluster, &b.service) {
        (Some(c), _) => c.clone(),
        (None, Some(svc)) => match &b.namespace {
            Some(ns) if !svc.contains('.') => format!("{svc}.{ns}"),
            _ => svc.clone(),
        },
        (None, None) => "?".into(),
    };
    if let Some(p) = b.port {
        s.push_str(&format!(":{p}"));
    }
    if let Some(sub) = &b.subset {
        s.push_str(&format!(" subset {sub}"));
    }
    if let Some(w) = b.weight {
        s.push_str(&format!(" weight {w}"));
    }
    s
}

/// Whether a cluster is the expected backend (weight aside).
pub fn backend_matches(b: &Backend, cluster: &str, domain: &str) -> bool {
    if let Some(c) = &b.cluster {
        return c == cluster;
    }
    let Some((host, port, subset)) = parse_cluster(cluster) else {
        return false;
    };
    let Some(svc) = &b.service else {
        return false;
    };
    let ns = b.namespace.as_deref().unwrap_or("default");
    let host_ok = host == svc
        || host == format!("{svc}.svc.{domain}")
        || (!svc.contains('.') && host == format!("{svc}.{ns}.svc.{domain}"));
    host_ok && b.port.is_none_or(|p| p == port) && b.subset.as_deref().unwrap_or("") == subset
}

/// Whether the route's weighted set is exactly the expected backends (weights when given).
fn same_set(expected: &[Backend], got: &[(String, u32)], domain: &str) -> bool {
    expected.len() == got.len()
        && expected.iter().all(|b| {
            got.iter().any(|(c, w)| {
                backend_matches(b, c, domain) && b.weight.is_none_or(|want| want == *w)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_match_by_short_and_full_names() {
        let c = "outbound|9080|v1|reviews.default.svc.cluster.local";
        let b = |svc: &str, subset: Option<&str>| Backend {
            service: Some(svc.into()),
            subset: subset.map(str::to_string),
            ..Backend::default()
        };
        assert!(backend_matches(
            &b("reviews", Some("v1")),
            c,
            "cluster.local"
        ));
        assert!(backend_matches(
            &b("reviews.default", Some("v1")),
            c,
            "cluster.local"
        ));
        assert!(!backend_matches(&b("reviews", None), c, "cluster.local"));
        assert!(!backend_matches(
            &b("ratings", Some("v1")),
            c,
            "cluster.local"
        ));
        let ext = "outbound|80||api.example.com";
        assert!(backend_matches(
            &b("api.example.com", None),
            ext,
            "cluster.local"
        ));
        assert_eq!(
            short_cluster(c, "cluster.local"),
            "reviews.default:9080 subset v1"
        );
    }
}

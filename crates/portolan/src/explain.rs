//! `portolan explain`: what a proxy group does with one request, read from the rendered
//! configuration by the route-table evaluator: the listener and route configuration, the
//! virtual host and the domain that matched, the route (index, name, match), the policies in
//! force (timeout, retries, rewrites, header changes), and the clusters with their weights
//! and endpoints.

use crate::cli::ExplainArgs;
use crate::render::Loaded;
use anyhow::Context;
use portolan_routetest::table::{Action, Evaluation, HeaderAdd, HttpRequest, Policy, Rendered};
use std::fmt::Write;
use std::process::ExitCode;

pub fn run(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let mut req = parse_request(&args.request, &args.headers, args.port)?;
    req.peer = args
        .source
        .as_deref()
        .map(|s| peer(s, &args.translate.trust_domain))
        .transpose()?;
    let loaded = Loaded::read(&args.config_dir)?;
    let json = loaded.render(&args.group, &args.translate.options())?;
    let tables = Rendered::from_json(&json);
    let eval = tables
        .evaluate(&req, args.translate.mesh_port)
        .context("--request")?;
    crate::output::print(&describe(&tables, &req, &eval))?;
    Ok(ExitCode::SUCCESS)
}

/// `NS/SA` or a SPIFFE ID as a SPIFFE ID.
fn peer(source: &str, trust_domain: &str) -> anyhow::Result<String> {
    if source.starts_with("spiffe://") {
        return Ok(source.to_string());
    }
    let (ns, sa) = source.split_once('/').with_context(|| {
        format!("--source {source:?}: not NAMESPACE/SERVICE_ACCOUNT nor spiffe://...")
    })?;
    Ok(format!("spiffe://{trust_domain}/ns/{ns}/sa/{sa}"))
}

/// `GET http://host:port/path?q` (method optional) and `NAME:VALUE` headers.
pub fn parse_request(
    line: &str,
    headers: &[String],
    port: Option<u16>,
) -> anyhow::Result<HttpRequest> {
    let line = line.trim();
    let (method, url) = match line.split_once(char::is_whitespace) {
        Some((m, u)) => (m.to_ascii_uppercase(), u.trim()),
        None => ("GET".to_string(), line),
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .with_context(|| format!("--request: {url:?} is not an http:// URL"))?;
    let (host, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    anyhow::ensure!(!host.is_empty(), "--request: the URL has no host");
    let mut req = HttpRequest {
        host: host.to_string(),
        method,
        path,
        port,
        ..HttpRequest::default()
    };
    for h in headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("-H {h:?}: not NAME:VALUE"))?;
        req.headers
            .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    Ok(req)
}

/// The explanation as text.
pub fn describe(tables: &Rendered, req: &HttpRequest, eval: &Evaluation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "request        {} http://{}{}",
        req.method, req.host, req.path
    );
    let _ = writeln!(
        out,
        "listener       {} (port {}), route configuration {}",
        eval.listener, eval.listener_port, eval.route_config
    );
    let caller = req.peer.as_deref().unwrap_or("no identity");
    if eval.denied {
        let _ = writeln!(
            out,
            "access         denied by AccessPolicy (RBAC) for {caller}: Envoy answers 403"
        );
        return out;
    }
    if req.peer.is_some() {
        let _ = writeln!(out, "access         allowed for {caller}");
    }
    let Some((vhost, domain)) = &eval.virtual_host else {
        let _ = writeln!(
            out,
            "virtual host   none matches {:?}: Envoy answers 404",
            req.host
        );
        return out;
    };
    let _ = writeln!(out, "virtual host   {vhost} (domain {domain:?})");
    let Some(route) = &eval.route else {
        let _ = writeln!(out, "route          none matches: Envoy answers 404");
        return out;
    };
    let name = if route.name.is_empty() {
        "(unnamed)"
    } else {
        &route.name
    };
    let _ = writeln!(
        out,
        "route          #{} {name}: {}",
        route.index, route.matcher
    );
    match &route.action {
        Action::Forward(set) => {
            write_policy(&mut out, &route.policy);
            let _ = writeln!(out, "clusters");
            for (c, w) in set {
                write_cluster(&mut out, tables, c, *w, set.len());
            }
        }
        Action::Redirect { status, location } => {
            let _ = writeln!(out, "action         redirect {status} to {location}");
        }
        Action::Direct { status, body } => {
            let _ = writeln!(
                out,
                "action         direct response {status}, body {body:?}"
            );
        }
        Action::Abort(status) => {
            let _ = writeln!(
                out,
                "action         fault abort: every request gets {status}"
            );
        }
        Action::Unknown(why) => {
            let _ = writeln!(out, "action         not modelled: {why}");
        }
    }
    if matches!(route.action, Action::Forward(_)) {
        return out;
    }
    write_headers(
        &mut out,
        "response",
        &route.policy.response_add,
        &route.policy.response_remove,
    );
    out
}

fn write_policy(out: &mut String, p: &Policy) {
    let timeout = match (p.timeout_ms, p.timeout_set) {
        (0, _) => "none".to_string(),
        (ms, true) => format!("{ms}ms"),
        (ms, false) => format!("{ms}ms (Envoy's default)"),
    };
    let _ = writeln!(out, "timeout        {timeout}");
    let retries = if p.retries == 0 {
        "none".to_string()
    } else {
        let mut s = format!("{} attempts", p.retries);
        if let Some(t) = p.per_try_timeout_ms {
            let _ = write!(s, ", per try {t}ms");
        }
        if let Some(on) = &p.retry_on {
            let _ = write!(s, ", on {on}");
        }
        s
    };
    let _ = writeln!(out, "retries        {retries}");
    if let Some(r) = &p.prefix_rewrite {
        let _ = writeln!(
            out,
            "rewrite        path prefix {:?} -> {r:?}",
            p.matched_prefix.as_deref().unwrap_or("")
        );
    }
    if let Some(h) = &p.host_rewrite {
        let _ = writeln!(out, "rewrite        host -> {h:?}");
    }
    write_headers(out, "request", &p.request_add, &p.request_remove);
    write_headers(out, "response", &p.response_add, &p.response_remove);
}

fn write_headers(out: &mut String, what: &str, add: &[HeaderAdd], remove: &[String]) {
    for h in add {
        let how = match h.overwrite {
            Some(true) => "set",
            Some(false) => "append",
            None => "add if absent",
        };
        let _ = writeln!(out, "{what:<15}{how} {}: {:?}", h.name, h.value);
    }
    for name in remove {
        let _ = writeln!(out, "{what:<15}remove {name}");
    }
}

fn write_cluster(out: &mut String, tables: &Rendered, cluster: &str, weight: u32, n: usize) {
    let weight = if n > 1 {
        format!(" weight {weight}")
    } else {
        String::new()
    };
    if !tables.has_cluster(cluster) {
        let _ = writeln!(
            out,
            "  {cluster}{weight}: no such cluster (Envoy answers 503)"
        );
        return;
    }
    let endpoints = tables.endpoints_of(cluster).unwrap_or_default();
    let _ = writeln!(out, "  {cluster}{weight}");
    if endpoints.is_empty() {
        let _ = writeln!(out, "    no endpoints (Envoy answers 503)");
    }
    for (addr, health, zone) in endpoints {
        let eligible = matches!(health.as_str(), "HEALTHY" | "UNKNOWN");
        let zone = if zone.is_empty() {
            String::new()
        } else {
            format!(", zone {zone}")
        };
        let mark = if eligible { "eligible" } else { "not eligible" };
        let _ = writeln!(out, "    {addr} ({health}{zone}): {mark}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        let r = parse_request(
            "post http://reviews:9080/a?b=1",
            &["X-User: jason".into()],
            None,
        )
        .expect("parses");
        assert_eq!(
            (r.method.as_str(), r.host.as_str(), r.path.as_str()),
            ("POST", "reviews:9080", "/a?b=1")
        );
        assert_eq!(r.headers["x-user"], "jason");
        let r = parse_request("http://reviews", &[], Some(8080)).expect("parses");
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.port),
            ("GET", "/", Some(8080))
        );
        assert!(parse_request("GET reviews/", &[], None).is_err());
        assert!(parse_request("GET http://r/", &["nocolon".into()], None).is_err());
    }
}

//! Semantic checks of the Gateway API kinds (GatewayClass, Gateway, HTTPRoute, GRPCRoute,
//! TLSRoute, ReferenceGrant, BackendTLSPolicy, and the CA ConfigMaps policies name) with field
//! paths. What the upstream CRD schemas and CEL rules already
//! enforce in a cluster is checked here only where file mode would otherwise take it silently
//! (ports, regexes, durations, header names, host names, weights, redirect codes).

use super::{Errors, header_name, host_name, object_name, port, regex, spec_path};
use crate::field::FieldPath;
use crate::gwapi::{
    BackendTlsPolicy, CA_CERT_KEY, FRONTEND_MODES, FrontendTlsConfig, FrontendTlsValidation,
    Gateway, GatewayClass, GrpcRoute, HttpBackendRef, HttpRoute, HttpRouteFilter, HttpRouteMatch,
    HttpRouteRule, Listener, ListenerSet, ParentReference, ReferenceGrant, SubjectAltName,
    TcpRoute, TlsRoute, UdpRoute, parse_duration,
};
use k8s_openapi::api::core::v1::ConfigMap;

pub(super) fn gateway_class(class: &GatewayClass, errors: &mut Errors) {
    object_name(class.metadata.name.as_deref(), errors);
    if class.spec.controller_name.is_empty() {
        errors.push(spec_path().field("controllerName"), "required");
    }
}

pub(super) fn gateway(gw: &Gateway, errors: &mut Errors) {
    object_name(gw.metadata.name.as_deref(), errors);
    let spec = spec_path();
    if gw.spec.gateway_class_name.is_empty() {
        errors.push(spec.field("gatewayClassName"), "required");
    }
    listeners(&gw.spec.listeners, errors);
    if let Some(f) = gw.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) {
        frontend(f, spec.field("tls").field("frontend"), errors);
    }
}

/// Listener names unique, ports and hostnames well-formed (a Gateway's or a ListenerSet's).
fn listeners(listeners: &[Listener], errors: &mut Errors) {
    let mut names = std::collections::BTreeSet::new();
    for (i, l) in listeners.iter().enumerate() {
        let path = spec_path().field("listeners").index(i);
        if !names.insert(l.name.as_str()) {
            errors.push(
                path.field("name"),
                format!(
                    "{:?} is used by an earlier listener: listener names must be unique",
                    l.name
                ),
            );
        }
        port(l.port, path.field("port"), errors);
        if let Some(h) = &l.hostname {
            host_name(h, true, path.field("hostname"), errors);
        }
    }
}

/// A ListenerSet: a parent Gateway, at least one listener, its listeners as a Gateway's.
pub(super) fn listener_set(set: &ListenerSet, errors: &mut Errors) {
    object_name(set.metadata.name.as_deref(), errors);
    let spec = spec_path();
    if set.spec.parent_ref.name.is_empty() {
        errors.push(spec.field("parentRef").field("name"), "required");
    }
    if set.spec.listeners.is_empty() {
        errors.push(spec.field("listeners"), "at least one listener is required");
    }
    listeners(&set.spec.listeners, errors);
}

/// `spec.tls.frontend`: known modes, at least one CA reference, distinct valid ports.
fn frontend(f: &FrontendTlsConfig, path: FieldPath, errors: &mut Errors) {
    let validation = |v: &FrontendTlsValidation, path: FieldPath, errors: &mut Errors| {
        if v.ca_certificate_refs.is_empty() {
            errors.push(
                path.field("caCertificateRefs"),
                "at least one CA certificate reference is required",
            );
        }
        if let Some(mode) = v.mode.as_deref().filter(|m| !FRONTEND_MODES.contains(m)) {
            errors.push(
                path.field("mode"),
                format!(
                    "{mode:?} is not a mode: one of {}",
                    FRONTEND_MODES.join(", ")
                ),
            );
        }
    };
    if let Some(v) = &f.default.validation {
        validation(v, path.field("default").field("validation"), errors);
    }
    let mut ports = std::collections::BTreeSet::new();
    for (i, p) in f.per_port.iter().enumerate() {
        let at = path.field("perPort").index(i);
        port(p.port, at.field("port"), errors);
        if !ports.insert(p.port) {
            errors.push(
                at.field("port"),
                format!("port {} has an earlier entry: ports must be unique", p.port),
            );
        }
        if let Some(v) = &p.tls.validation {
            validation(v, at.field("tls").field("validation"), errors);
        }
    }
}

pub(super) fn http_route(route: &HttpRoute, errors: &mut Errors) {
    object_name(route.metadata.name.as_deref(), errors);
    route_common(&route.spec.hostnames, &route.spec.parent_refs, errors);
    for (i, rule) in route.spec.rules.iter().enumerate() {
        http_rule(rule, spec_path().field("rules").index(i), errors);
    }
}

/// Hostnames and parentRefs, the same in every route kind.
fn route_common(hostnames: &[String], parents: &[ParentReference], errors: &mut Errors) {
    let spec = spec_path();
    for (i, h) in hostnames.iter().enumerate() {
        host_name(h, true, spec.field("hostnames").index(i), errors);
    }
    for (i, p) in parents.iter().enumerate() {
        if let Some(n) = p.port {
            port(n, spec.field("parentRefs").index(i).field("port"), errors);
        }
    }
}

pub(super) fn grpc_route(route: &GrpcRoute, errors: &mut Errors) {
    object_name(route.metadata.name.as_deref(), errors);
    route_common(&route.spec.hostnames, &route.spec.parent_refs, errors);
    for (i, rule) in route.spec.rules.iter().enumerate() {
        let path = spec_path().field("rules").index(i);
        for (j, m) in rule.matches.iter().enumerate() {
            let at = path.field("matches").index(j);
            if let Some(method) = &m.method {
                grpc_method(method, at.field("method"), errors);
            }
            for (k, h) in m.headers.iter().enumerate() {
                let at = at.field("headers").index(k);
                header_name(&h.name, at.field("name"), errors);
                if h.type_.as_deref() == Some("RegularExpression") {
                    regex(&h.value, at.field("value"), errors);
                }
            }
        }
        for (j, f) in rule.filters.iter().enumerate() {
            filter(f, path.field("filters").index(j), errors);
        }
        backend_refs(&rule.backend_refs, &path, errors);
    }
}

fn grpc_method(m: &crate::gwapi::GrpcMethodMatch, path: FieldPath, errors: &mut Errors) {
    if m.service.is_none() && m.method.is_none() {
        errors.push(path, "one of service and method is required");
        return;
    }
    match m.type_.as_deref().unwrap_or("Exact") {
        "Exact" => {
            for (field, v) in [("service", &m.service), ("method", &m.method)] {
                if let Some(v) = v
                    && (v.is_empty() || v.contains('/'))
                {
                    errors.push(
                        path.field(field),
                        format!("{v:?} must be a name without '/'"),
                    );
                }
            }
        }
        "RegularExpression" => {
            for (field, v) in [("service", &m.service), ("method", &m.method)] {
                if let Some(v) = v {
                    regex(v, path.field(field), errors);
                }
            }
        }
        other => errors.push(
            path.field("type"),
            format!("{other:?} is not a method match type: Exact or RegularExpression"),
        ),
    }
}

pub(super) fn tls_route(route: &TlsRoute, errors: &mut Errors) {
    object_name(route.metadata.name.as_deref(), errors);
    route_common(&route.spec.hostnames, &route.spec.parent_refs, errors);
    for (i, rule) in route.spec.rules.iter().enumerate() {
        backend_refs(
            &rule.backend_refs,
            &spec_path().field("rules").index(i),
            errors,
        );
    }
}

pub(super) fn tcp_route(route: &TcpRoute, errors: &mut Errors) {
    object_name(route.metadata.name.as_deref(), errors);
    route_common(&[], &route.spec.parent_refs, errors);
    for (i, rule) in route.spec.rules.iter().enumerate() {
        backend_refs(
            &rule.backend_refs,
            &spec_path().field("rules").index(i),
            errors,
        );
    }
}

/// A UDPRoute: the same shape as a TCPRoute (parentRefs, rules of weighted backendRefs).
pub(super) fn udp_route(route: &UdpRoute, errors: &mut Errors) {
    object_name(route.metadata.name.as_deref(), errors);
    route_common(&[], &route.spec.parent_refs, errors);
    for (i, rule) in route.spec.rules.iter().enumerate() {
        backend_refs(
            &rule.backend_refs,
            &spec_path().field("rules").index(i),
            errors,
        );
    }
}

fn backend_refs(refs: &[HttpBackendRef], path: &FieldPath, errors: &mut Errors) {
    for (i, b) in refs.iter().enumerate() {
        let at = path.field("backendRefs").index(i);
        if let Some(w) = b.weight
            && !(0..=1_000_000).contains(&w)
        {
            errors.push(
                at.field("weight"),
                format!("{w} is out of range: must be 0-1000000"),
            );
        }
        if let Some(p) = b.port {
            port(p, at.field("port"), errors);
        }
    }
}

fn http_rule(rule: &HttpRouteRule, path: FieldPath, errors: &mut Errors) {
    for (i, m) in rule.matches.iter().enumerate() {
        http_match(m, path.field("matches").index(i), errors);
    }
    for (i, f) in rule.filters.iter().enumerate() {
        filter(f, path.field("filters").index(i), errors);
    }
    backend_refs(&rule.backend_refs, &path, errors);
    for (i, b) in rule.backend_refs.iter().enumerate() {
        let at = path.field("backendRefs").index(i);
        for (j, f) in b.filters.iter().enumerate() {
            filter(f, at.field("filters").index(j), errors);
        }
    }
    if let Some(t) = &rule.timeouts {
        let at = path.field("timeouts");
        for (name, value) in [
            ("request", &t.request),
            ("backendRequest", &t.backend_request),
        ] {
            if let Some(v) = value
                && parse_duration(v).is_none()
            {
                errors.push(
                    at.field(name),
                    format!(
                        "{v:?} is not a duration: digits and units h, m, s, ms (e.g. 10s, 1m30s)"
                    ),
                );
            }
        }
    }
}

fn http_match(m: &HttpRouteMatch, path: FieldPath, errors: &mut Errors) {
    if let Some(p) = &m.path {
        let value = p.value.as_deref().unwrap_or("/");
        let at = path.field("path").field("value");
        match p.type_.as_deref().unwrap_or("PathPrefix") {
            "RegularExpression" => regex(value, at, errors),
            "Exact" | "PathPrefix" if !value.starts_with('/') => {
                errors.push(at, format!("{value:?} must start with '/'"))
            }
            "Exact" | "PathPrefix" => {}
            other => errors.push(
                path.field("path").field("type"),
                format!(
                    "{other:?} is not a path match type: Exact, PathPrefix or RegularExpression"
                ),
            ),
        }
    }
    for (field, list) in [("headers", &m.headers), ("queryParams", &m.query_params)] {
        for (i, h) in list.iter().enumerate() {
            let at = path.field(field).index(i);
            if field == "headers" {
                header_name(&h.name, at.field("name"), errors);
            }
            if h.type_.as_deref() == Some("RegularExpression") {
                regex(&h.value, at.field("value"), errors);
            }
        }
    }
}

fn filter(f: &HttpRouteFilter, path: FieldPath, errors: &mut Errors) {
    for (field, m) in [
        ("requestHeaderModifier", &f.request_header_modifier),
        ("responseHeaderModifier", &f.response_header_modifier),
    ] {
        let Some(m) = m else { continue };
        let at = path.field(field);
        for (list, headers) in [("set", &m.set), ("add", &m.add)] {
            for (i, h) in headers.iter().enumerate() {
                header_name(&h.name, at.field(list).index(i).field("name"), errors);
            }
        }
        for (i, h) in m.remove.iter().enumerate() {
            header_name(h, at.field("remove").index(i), errors);
        }
    }
    if let Some(r) = &f.request_redirect
        && let Some(code) = r.status_code
        && !matches!(code, 301 | 302 | 303 | 307 | 308)
    {
        errors.push(
            path.field("requestRedirect").field("statusCode"),
            format!("{code} is not a redirect status: 301, 302, 303, 307 or 308"),
        );
    }
    if let Some(m) = &f.request_mirror {
        mirror(m, path.field("requestMirror"), errors);
    }
    if let Some(c) = &f.cors {
        cors(c, path.field("cors"), errors);
    }
}

/// `percent` 0-100, or a `fraction` with 0 <= numerator <= denominator, denominator > 0.
fn mirror(m: &crate::gwapi::RequestMirror, path: FieldPath, errors: &mut Errors) {
    if m.percent.is_some() && m.fraction.is_some() {
        errors.push(path.clone(), "only one of percent and fraction may be set");
    }
    if let Some(p) = m.percent
        && !(0..=100).contains(&p)
    {
        errors.push(
            path.field("percent"),
            format!("{p} is out of range: must be 0-100"),
        );
    }
    if let Some(f) = &m.fraction {
        let d = f.denominator.unwrap_or(100);
        if d <= 0 {
            errors.push(
                path.field("fraction").field("denominator"),
                format!("{d} must be greater than 0"),
            );
        }
        if f.numerator < 0 || f.numerator > d {
            errors.push(
                path.field("fraction").field("numerator"),
                format!(
                    "{} is out of range: must be 0-{d} (the denominator)",
                    f.numerator
                ),
            );
        }
    }
}

/// Origins `scheme://host[:port]` (a host may start with `*.`) or `*`; `*` alone in
/// allowMethods and allowHeaders; maxAge positive; header names valid.
fn cors(c: &crate::gwapi::CorsFilter, path: FieldPath, errors: &mut Errors) {
    for (i, o) in c.allow_origins.iter().enumerate() {
        if o != "*" && !origin_ok(o) {
            errors.push(
                path.field("allowOrigins").index(i),
                format!("{o:?} is not an origin: scheme://host[:port] (host may start with '*.'), or '*'"),
            );
        }
    }
    for (field, list) in [
        ("allowMethods", &c.allow_methods),
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        if list.len() > 1 && list.iter().any(|v| v == "*") {
            errors.push(
                path.field(field),
                "'*' must be the only entry when it is given",
            );
        }
        if field != "allowMethods" {
            for (i, h) in list.iter().enumerate().filter(|(_, h)| *h != "*") {
                header_name(h, path.field(field).index(i), errors);
            }
        }
    }
    if let Some(age) = c.max_age
        && age < 1
    {
        errors.push(
            path.field("maxAge"),
            format!("{age} must be at least 1 (seconds)"),
        );
    }
}

fn origin_ok(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    let host = match rest.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => rest,
    };
    let host = host.strip_prefix("*.").unwrap_or(host);
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

pub(super) fn reference_grant(grant: &ReferenceGrant, errors: &mut Errors) {
    object_name(grant.metadata.name.as_deref(), errors);
    if grant.spec.from.is_empty() {
        errors.push(spec_path().field("from"), "at least one entry is required");
    }
    if grant.spec.to.is_empty() {
        errors.push(spec_path().field("to"), "at least one entry is required");
    }
}

/// The values `validation.wellKnownCACertificates` may take.
pub const WELL_KNOWN_SYSTEM: &str = "System";

pub(super) fn backend_tls_policy(policy: &BackendTlsPolicy, errors: &mut Errors) {
    object_name(policy.metadata.name.as_deref(), errors);
    let spec = spec_path();
    let targets = &policy.spec.target_refs;
    if targets.is_empty() {
        errors.push(spec.field("targetRefs"), "required: at least one Service");
    }
    for (i, t) in targets.iter().enumerate() {
        let at = spec.field("targetRefs").index(i);
        if t.name.is_empty() {
            errors.push(at.field("name"), "required");
        }
        if targets[..i].contains(t) {
            errors.push(
                at,
                "repeats an earlier targetRef: targetRefs must be distinct",
            );
        }
    }
    let v = &policy.spec.validation;
    let at = spec.field("validation");
    if v.hostname.is_empty() {
        errors.push(at.field("hostname"), "required: the SNI and name to verify");
    } else {
        host_name(&v.hostname, false, at.field("hostname"), errors);
    }
    let well_known = v
        .well_known_ca_certificates
        .as_deref()
        .filter(|w| !w.is_empty());
    match (v.ca_certificate_refs.is_empty(), well_known) {
        (true, None) => errors.push(
            at.clone(),
            "one of caCertificateRefs and wellKnownCACertificates is required",
        ),
        (false, Some(_)) => errors.push(
            at.field("wellKnownCACertificates"),
            "must not be set together with caCertificateRefs",
        ),
        _ => {}
    }
    if let Some(w) = well_known.filter(|w| *w != WELL_KNOWN_SYSTEM) {
        errors.push(
            at.field("wellKnownCACertificates"),
            format!("{w:?} is not a well-known CA set: {WELL_KNOWN_SYSTEM}"),
        );
    }
    for (i, r) in v.ca_certificate_refs.iter().enumerate() {
        if r.name.is_empty() {
            errors.push(
                at.field("caCertificateRefs").index(i).field("name"),
                "required",
            );
        }
    }
    for (i, san) in v.subject_alt_names.iter().enumerate() {
        subject_alt_name(san, at.field("subjectAltNames").index(i), errors);
    }
}

fn subject_alt_name(san: &SubjectAltName, at: FieldPath, errors: &mut Errors) {
    let hostname = san.hostname.as_deref().filter(|h| !h.is_empty());
    let uri = san.uri.as_deref().filter(|u| !u.is_empty());
    match san.type_.as_str() {
        "Hostname" => {
            match hostname {
                Some(h) => host_name(h, true, at.field("hostname"), errors),
                None => errors.push(at.field("hostname"), "required when type is Hostname"),
            }
            if uri.is_some() {
                errors.push(at.field("uri"), "must not be set when type is Hostname");
            }
        }
        "URI" => {
            match uri {
                Some(u) if url::Url::parse(u).is_ok() => {}
                Some(u) => errors.push(
                    at.field("uri"),
                    format!("{u:?} is not an absolute URI (scheme:rest, e.g. spiffe://td/ns/a)"),
                ),
                None => errors.push(at.field("uri"), "required when type is URI"),
            }
            if hostname.is_some() {
                errors.push(at.field("hostname"), "must not be set when type is URI");
            }
        }
        other => errors.push(
            at.field("type"),
            format!("{other:?} is not a subject alternative name type: Hostname or URI"),
        ),
    }
}

/// A ConfigMap read for its CA bundle: `data.ca.crt` holds at least one PEM certificate.
pub(super) fn ca_config_map(map: &ConfigMap, errors: &mut Errors) {
    object_name(map.metadata.name.as_deref(), errors);
    let path = FieldPath::root().field("data").field(CA_CERT_KEY);
    let text = map
        .data
        .as_ref()
        .and_then(|d| d.get(CA_CERT_KEY))
        .map(String::as_str)
        .unwrap_or_default();
    match super::pem::certificates(text) {
        Ok(0) => errors.push(
            path,
            "holds no PEM certificate (-----BEGIN CERTIFICATE----- ...)",
        ),
        Ok(_) => {}
        Err(why) => errors.push(path, format!("not a PEM CA bundle: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use crate::Resource;
    use serde_json::json;

    fn errors(doc: serde_json::Value) -> Vec<String> {
        let r = Resource::decode(doc).expect("decodes").expect("is read");
        crate::validate::validate(&r)
            .into_iter()
            .map(|e| format!("{}: {}", e.path.as_str(), e.message))
            .collect()
    }

    #[test]
    fn http_route_errors_name_the_field() {
        let e = errors(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r"},
            "spec": {"rules": [{
                "matches": [{"path": {"type": "RegularExpression", "value": "("}},
                            {"headers": [{"name": "bad header", "value": "x"}]}],
                "filters": [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 418}}],
                "backendRefs": [{"name": "a", "port": 70000}],
                "timeouts": {"request": "10 seconds"}
            }]}
        }));
        let paths: Vec<&str> = e
            .iter()
            .map(|s| s.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            paths,
            [
                "spec.rules[0].matches[0].path.value",
                "spec.rules[0].matches[1].headers[0].name",
                "spec.rules[0].filters[0].requestRedirect.statusCode",
                "spec.rules[0].backendRefs[0].port",
                "spec.rules[0].timeouts.request",
            ],
            "{e:?}"
        );
    }

    #[test]
    fn grpc_and_tls_route_errors_name_the_field() {
        let paths = |doc| {
            errors(doc)
                .iter()
                .map(|s| s.split(':').next().unwrap_or("").to_string())
                .collect::<Vec<_>>()
        };
        let grpc = paths(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
            "metadata": {"name": "g"},
            "spec": {"hostnames": ["bad host"], "rules": [{
                "matches": [{"method": {}},
                            {"method": {"type": "RegularExpression", "service": "("}},
                            {"method": {"service": "a/b"}, "headers": [{"name": "bad name", "value": "x"}]}],
                "backendRefs": [{"name": "a", "port": 8080, "weight": -1}]
            }]}
        }));
        assert_eq!(
            grpc,
            [
                "spec.hostnames[0]",
                "spec.rules[0].matches[0].method",
                "spec.rules[0].matches[1].method.service",
                "spec.rules[0].matches[2].method.service",
                "spec.rules[0].matches[2].headers[0].name",
                "spec.rules[0].backendRefs[0].weight",
            ]
        );
        let tls = paths(json!({
            "apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TLSRoute",
            "metadata": {"name": "t"},
            "spec": {"parentRefs": [{"name": "gw", "port": 0}],
                     "rules": [{"backendRefs": [{"name": "a", "port": 70000}]}]}
        }));
        assert_eq!(
            tls,
            [
                "spec.parentRefs[0].port",
                "spec.rules[0].backendRefs[0].port"
            ]
        );
    }

    #[test]
    fn gateway_listener_names_are_unique() {
        let e = errors(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "g", "namespace": "ns"},
            "spec": {"gatewayClassName": "portolan", "listeners": [
                {"name": "http", "port": 80, "protocol": "HTTP"},
                {"name": "http", "port": 81, "protocol": "HTTP", "hostname": "Bad_Host"}]}
        }));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("spec.listeners[1].name"), "{e:?}");
        assert!(e[1].starts_with("spec.listeners[1].hostname"), "{e:?}");
    }

    #[test]
    fn gateway_api_versions_and_scope() {
        let r = Resource::decode(json!({
            "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "GatewayClass",
            "metadata": {"name": "c", "namespace": "ignored"},
            "spec": {"controllerName": "portolan.dev/gateway-controller"}
        }))
        .expect("decodes")
        .expect("is read");
        assert_eq!(r.object_ref().to_string(), "GatewayClass /c");
        let other = Resource::decode(json!({
            "apiVersion": "gateway.networking.k8s.io/v9", "kind": "Gateway", "metadata": {"name": "x"}
        }));
        assert!(matches!(other, Ok(None)), "unknown versions are skipped");
    }

    #[test]
    fn backend_tls_policy_errors_name_the_field() {
        let e = errors(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "BackendTLSPolicy",
            "metadata": {"name": "p"},
            "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "s"},
                                    {"group": "", "kind": "Service", "name": "s"}],
                     "validation": {
                         "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "ca"}],
                         "wellKnownCACertificates": "System",
                         "hostname": "*.example.com",
                         "subjectAltNames": [{"type": "URI", "uri": "no scheme"},
                                             {"type": "Hostname"},
                                             {"type": "IP", "hostname": "a"}]}}
        }));
        let paths: Vec<&str> = e
            .iter()
            .map(|s| s.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            paths,
            [
                "spec.targetRefs[1]",
                "spec.validation.hostname",
                "spec.validation.wellKnownCACertificates",
                "spec.validation.subjectAltNames[0].uri",
                "spec.validation.subjectAltNames[1].hostname",
                "spec.validation.subjectAltNames[2].type",
            ],
            "{e:?}"
        );
        let e = errors(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "ca"}, "data": {"ca.crt": "not a certificate"}
        }));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("data.ca.crt: "), "{e:?}");
    }
}

#[cfg(test)]
mod filter_tests {
    use super::super::test_support::table;
    use serde_json::{Value, json};

    fn check(cases: &[(Value, &[&str])]) {
        table("gateway.networking.k8s.io/v1", "HTTPRoute", cases);
    }

    fn rule_with(filter: Value) -> Value {
        json!({"rules": [{"filters": [filter], "backendRefs": [{"name": "a", "port": 80,
            "filters": [{"type": "RequestHeaderModifier",
                         "requestHeaderModifier": {"set": [{"name": "bad name", "value": "v"}]}}]}]}]})
    }

    #[test]
    fn mirror_cors_and_backend_filters_say_where() {
        let mirror = |m: Value| {
            let mut backend = json!({"backendRef": {"name": "m", "port": 80}});
            if let (Some(b), Some(extra)) = (backend.as_object_mut(), m.as_object()) {
                b.extend(extra.clone());
            }
            json!({"rules": [{"filters": [{"type": "RequestMirror", "requestMirror": backend}]}]})
        };
        check(&[
            (mirror(json!({"percent": 35})), &[]),
            (
                mirror(json!({"fraction": {"numerator": 25, "denominator": 50}})),
                &[],
            ),
            (
                mirror(json!({"percent": 120, "fraction": {"numerator": 3, "denominator": 0}})),
                &[
                    "spec.rules[0].filters[0].requestMirror: only one of percent and fraction may be set",
                    "spec.rules[0].filters[0].requestMirror.percent: 120 is out of range: must be 0-100",
                    "spec.rules[0].filters[0].requestMirror.fraction.denominator: 0 must be greater than 0",
                    "spec.rules[0].filters[0].requestMirror.fraction.numerator: 3 is out of range: must be 0-0 (the denominator)",
                ],
            ),
            (
                json!({"rules": [{"filters": [{"type": "CORS", "cors": {
                    "allowOrigins": ["https://www.foo.com", "https://*.bar.com:8443", "*"],
                    "allowMethods": ["GET", "OPTIONS"], "allowHeaders": ["x-a"], "maxAge": 3600}}]}]}),
                &[],
            ),
            (
                json!({"rules": [{"filters": [{"type": "CORS", "cors": {
                    "allowOrigins": ["www.foo.com"], "allowMethods": ["*", "GET"],
                    "exposeHeaders": ["bad header"], "maxAge": 0}}]}]}),
                &[
                    "spec.rules[0].filters[0].cors.allowOrigins[0]: \"www.foo.com\" is not an origin: scheme://host[:port] (host may start with '*.'), or '*'",
                    "spec.rules[0].filters[0].cors.allowMethods: '*' must be the only entry when it is given",
                    "spec.rules[0].filters[0].cors.exposeHeaders[0]: \"bad header\" is not a header name: letters, digits and !#$%&'*+-.^_`|~",
                    "spec.rules[0].filters[0].cors.maxAge: 0 must be at least 1 (seconds)",
                ],
            ),
            (
                rule_with(json!({"type": "ExtensionRef",
                    "extensionRef": {"group": "example.io", "kind": "Magic", "name": "m"}})),
                &[
                    "spec.rules[0].backendRefs[0].filters[0].requestHeaderModifier.set[0].name: \"bad name\" is not a header name: letters, digits and !#$%&'*+-.^_`|~",
                ],
            ),
        ]);
    }
}

//! `portolan bootstrap`: a stock Envoy bootstrap that gets everything else from Portolan.
//!
//! The bootstrap holds only the node identity, the admin listener, Envoy's internal listener
//! extension and one static cluster (`portolan-xds`, HTTP/2) pointing at Portolan; CDS and
//! LDS come over ADS. With `--xds-ca`
//! the cluster speaks TLS (and presents a client certificate with `--xds-client-cert`); the
//! files are referenced by path, so Envoy reloads them itself when they change. Mesh workloads
//! name their application and inbound ports in the node metadata (`--app-port`,
//! `--inbound-port`, `--app-protocol`). `--on-demand` asks for on-demand discovery in the node
//! metadata and uses Delta ADS (see docs/on-demand.md).
//!
//! With `--xds-token-file` the proxy proves its identity with a service account token instead
//! of a client certificate: ADS goes over Envoy's Google gRPC client with `sts_service` call
//! credentials (see [`token_grpc_service`] and docs/security.md).
//!
//! With `--app-probe` it adds a static listener answering the kubelet's rewritten probes (see
//! [`probes`]).
//!
//! With `--grpc` it prints a gRPC xDS bootstrap instead (the file `GRPC_XDS_BOOTSTRAP` names):
//! the xDS server with insecure or TLS channel credentials, and the node, marked as a gRPC
//! client (`portolan.dev/client: grpc`).

use crate::cli::{BootstrapArgs, OutputFormat};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::Path;
use std::process::ExitCode;

pub mod probes;

/// Name of the static cluster that reaches Portolan.
pub const XDS_CLUSTER: &str = "portolan-xds";

pub fn run(args: &BootstrapArgs) -> anyhow::Result<ExitCode> {
    if args.grpc {
        crate::output::println(&serde_json::to_string_pretty(&render_grpc(args)?)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let bootstrap = render(args)?;
    let text = match args.output {
        OutputFormat::Json => serde_json::to_string_pretty(&bootstrap)?,
        OutputFormat::Yaml => serde_saphyr::to_string(&bootstrap)?,
    };
    crate::output::println(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Splits `HOST:PORT` (IPv6 as `[::1]:18000`).
fn host_port(flag: &str, s: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("--{flag} {s:?}: expected HOST:PORT"))?;
    let port = port
        .parse()
        .with_context(|| format!("--{flag} {s:?}: {port:?} is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("--{flag} {s:?}: the host is empty");
    }
    Ok((host.to_string(), port))
}

/// The mesh workload's node metadata: where its application and inbound listener are, and
/// (for `serve --identity insecure-node-metadata` only) the identity it claims.
fn workload_metadata(args: &BootstrapArgs, metadata: &mut serde_json::Map<String, Value>) {
    let fields = [
        ("appPort", args.app_port.map(|p| p.to_string())),
        ("inboundPort", args.inbound_port.map(|p| p.to_string())),
        ("outboundPort", args.outbound_port.map(|p| p.to_string())),
        ("appProtocol", args.app_protocol.clone()),
        ("namespace", args.namespace.clone()),
        ("serviceAccount", args.service_account.clone()),
        ("portolan.dev/scope", args.scope.clone()),
        ("portolan.dev/namespace", args.scope_namespace.clone()),
        (
            portolan_pipeline::grouping::EGRESS_METADATA,
            args.outbound_traffic_policy.map(|p| p.as_str().to_string()),
        ),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            metadata.insert(key.to_string(), Value::String(v));
        }
    }
}

/// Portolan's xDS address: `HOST:PORT`, or `unix:PATH` for a Unix socket (a node-local
/// relay, or a pod's network namespace that reaches the control plane through one). The host
/// (empty for a socket) and Envoy's address.
fn xds_endpoint(address: &str) -> anyhow::Result<(String, Value)> {
    if let Some(path) = address.strip_prefix("unix:") {
        if path.is_empty() {
            bail!("--xds-address {address:?}: the socket path is empty");
        }
        return Ok((String::new(), json!({"pipe": {"path": path}})));
    }
    let (host, port) = host_port("xds-address", address)?;
    let endpoint = socket_address(&host, port);
    Ok((host, endpoint))
}

fn socket_address(host: &str, port: u16) -> Value {
    json!({"socket_address": {"address": host, "port_value": port}})
}

/// The bootstrap as a JSON value (Envoy reads YAML or JSON with the same field names).
pub fn render(args: &BootstrapArgs) -> anyhow::Result<Value> {
    let (xds_host, xds_endpoint) = xds_endpoint(&args.xds_address)?;
    let (admin_host, admin_port) = host_port("admin-address", &args.admin_address)?;
    let cluster = node_cluster(args)?;
    if args.node_id.is_empty() || cluster.is_empty() {
        bail!("--node-id and --cluster must not be empty");
    }
    // An IP literal or a socket path needs no DNS; a name is resolved (and re-resolved) by
    // Envoy.
    let discovery = if xds_host.is_empty() || xds_host.parse::<std::net::IpAddr>().is_ok() {
        "STATIC"
    } else {
        "STRICT_DNS"
    };
    // VHDS (on-demand) is Delta only.
    let api_type = if args.delta || args.on_demand {
        "DELTA_GRPC"
    } else {
        "GRPC"
    };
    let ads_source = json!({"ads": {}, "resource_api_version": "V3"});
    let node = node(args);
    let mut bootstrap = json!({
        "node": node,
        "admin": {"address": socket_address(&admin_host, admin_port)},
        // Internal listeners: a mesh workload's inbound TCP ports choose each caller's
        // cluster through one (see portolan_translate::inbound_tcp).
        "bootstrap_extensions": [{
            "name": "envoy.bootstrap.internal_listener",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"
            }
        }],
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
                "set_node_on_first_message_only": true
            },
            "cds_config": ads_source,
            "lds_config": ads_source
        },
        "static_resources": {
            "clusters": [{
                "name": XDS_CLUSTER,
                "type": discovery,
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}}
                    }
                },
                "load_assignment": {
                    "cluster_name": XDS_CLUSTER,
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": xds_endpoint}}]}]
                }
            }]
        }
    });
    if let Some(tls) = transport_socket(args, &xds_host)? {
        bootstrap["static_resources"]["clusters"][0]["transport_socket"] = tls;
    }
    if let Some(google) = token_grpc_service(args, &xds_host)? {
        bootstrap["dynamic_resources"]["ads_config"]["grpc_services"] = json!([google]);
    }
    probes::add(
        &mut bootstrap,
        &args.app_probes,
        &args.app_probe_headers,
        args.probe_port,
    )?;
    Ok(bootstrap)
}

/// The OAuth token type of a Kubernetes service account token (a JWT).
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// With `--xds-token-file`, ADS over Envoy's Google gRPC client: TLS channel credentials
/// (trusting `--xds-ca`) and `sts_service` call credentials that read the token file at every
/// (re)connection, exchange it at Portolan's token endpoint, and send the result as
/// `authorization: Bearer` (gRPC sends call credentials only over a secure channel).
fn token_grpc_service(args: &BootstrapArgs, xds_host: &str) -> anyhow::Result<Option<Value>> {
    let (Some(token), Some(ca)) = (&args.xds_token_file, &args.xds_ca) else {
        return Ok(None);
    };
    let exchange = match &args.xds_token_exchange {
        Some(url) => url.clone(),
        None if xds_host.contains(':') => format!("http://[{xds_host}]:18080/sts/v1/token"),
        None => format!("http://{xds_host}:18080/sts/v1/token"),
    };
    if !exchange.starts_with("http://") {
        bail!(
            "--xds-token-exchange {exchange:?}: must be an http:// URL (Envoy's gRPC token exchange client cannot verify https)"
        );
    }
    let mut google = json!({
        "target_uri": args.xds_address,
        "stat_prefix": "portolan_xds",
        "channel_credentials": {"ssl_credentials": {"root_certs": {"filename": path_str("xds-ca", ca)?}}},
        "call_credentials": [{"sts_service": {
            "token_exchange_service_uri": exchange,
            "subject_token_path": path_str("xds-token-file", token)?,
            "subject_token_type": JWT_TOKEN_TYPE,
            "audience": "portolan"
        }}]
    });
    if let Some(sni) = &args.xds_sni {
        google["channel_args"] =
            json!({"args": {"grpc.ssl_target_name_override": {"string_value": sni}}});
    }
    Ok(Some(json!({"google_grpc": google})))
}

/// The node's cluster: `--cluster`, or for `--gateway NS/NAME` that Gateway's proxy group.
fn node_cluster(args: &BootstrapArgs) -> anyhow::Result<String> {
    let Some(gateway) = &args.gateway else {
        return Ok(args.cluster.clone());
    };
    match gateway.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(portolan_model::gateway_api::group_of(ns, name))
        }
        _ => bail!("--gateway {gateway:?}: expected NAMESPACE/NAME"),
    }
}

/// The node of the bootstrap: id, cluster, zone and metadata (labels, workload ports).
fn node(args: &BootstrapArgs) -> Value {
    let cluster = node_cluster(args).unwrap_or_default();
    let mut node = json!({"id": args.node_id, "cluster": cluster});
    if let Some(zone) = &args.zone {
        node["locality"] = json!({"zone": zone});
    }
    let mut metadata = serde_json::Map::new();
    if !args.labels.is_empty() {
        let labels: serde_json::Map<String, Value> = args
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        metadata.insert("labels".to_string(), Value::Object(labels));
    }
    workload_metadata(args, &mut metadata);
    if args.on_demand {
        metadata.insert(
            portolan_pipeline::grouping::DISCOVERY_METADATA.to_string(),
            Value::String("on-demand".to_string()),
        );
    }
    if args.grpc {
        metadata.insert("portolan.dev/client".to_string(), json!("grpc"));
    }
    if !metadata.is_empty() {
        node["metadata"] = Value::Object(metadata);
    }
    node
}

/// The gRPC xDS bootstrap (gRFC A27, A65): one xDS server (xDS v3), TLS channel credentials
/// when `--xds-ca` is given (with the client certificate when one is), else insecure; with
/// `--xds-token-file`, JWT call credentials reading that file (gRFC A97: the client sends the
/// token itself as a bearer token, no exchange; gRPC applies them only with
/// `GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true` in the client's environment).
pub fn render_grpc(args: &BootstrapArgs) -> anyhow::Result<Value> {
    host_port("xds-address", &args.xds_address)?;
    if args.xds_token_exchange.is_some() {
        bail!(
            "--xds-token-exchange is for Envoy bootstraps: a proxyless gRPC client sends its token file itself (--xds-token-file)"
        );
    }
    let cluster = node_cluster(args)?;
    if args.node_id.is_empty() || cluster.is_empty() {
        bail!("--node-id and --cluster must not be empty");
    }
    let creds = match &args.xds_ca {
        None => json!({"type": "insecure"}),
        Some(ca) => {
            let mut config = json!({"ca_certificate_file": path_str("xds-ca", ca)?});
            if let (Some(cert), Some(key)) = (&args.xds_client_cert, &args.xds_client_key) {
                config["certificate_file"] = json!(path_str("xds-client-cert", cert)?);
                config["private_key_file"] = json!(path_str("xds-client-key", key)?);
            }
            json!({"type": "tls", "config": config})
        }
    };
    let mut server = json!({
        "server_uri": args.xds_address,
        "channel_creds": [creds],
        "server_features": ["xds_v3"]
    });
    if let Some(token) = &args.xds_token_file {
        server["call_creds"] = json!([{
            "type": "jwt_token_file",
            "config": {"jwt_token_file": path_str("xds-token-file", token)?}
        }]);
    }
    Ok(json!({
        "xds_servers": [server],
        "node": node(args)
    }))
}

fn path_str<'a>(flag: &str, path: &'a Path) -> anyhow::Result<&'a str> {
    path.to_str()
        .with_context(|| format!("--{flag} {}: not a UTF-8 path", path.display()))
}

/// The `UpstreamTlsContext` of the xDS cluster, when `--xds-ca` is given: verify Portolan's
/// certificate against the CA for the SNI name (not sent when it is an IP address), offer ALPN h2, and present the client
/// certificate if one is given. Files are referenced by `filename`.
fn transport_socket(args: &BootstrapArgs, xds_host: &str) -> anyhow::Result<Option<Value>> {
    let Some(ca) = &args.xds_ca else {
        return Ok(None);
    };
    let sni = args.xds_sni.as_deref().unwrap_or(xds_host);
    let mut common = json!({
        "alpn_protocols": ["h2"],
        "validation_context": {
            "trusted_ca": {"filename": path_str("xds-ca", ca)?},
            "match_typed_subject_alt_names": [
                {"san_type": san_type(sni), "matcher": {"exact": sni}}
            ]
        }
    });
    if let (Some(cert), Some(key)) = (&args.xds_client_cert, &args.xds_client_key) {
        common["tls_certificates"] = json!([{
            "certificate_chain": {"filename": path_str("xds-client-cert", cert)?},
            "private_key": {"filename": path_str("xds-client-key", key)?}
        }]);
    }
    let mut context = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": common
    });
    // SNI carries host names only (RFC 6066): an IP address is verified against IP SANs but
    // not sent.
    if san_type(sni) == "DNS" {
        context["sni"] = json!(sni);
    }
    Ok(Some(json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": context
    })))
}

/// An IP literal is matched against IP SANs, anything else against DNS SANs.
fn san_type(name: &str) -> &'static str {
    if name.parse::<std::net::IpAddr>().is_ok() {
        "IP_ADDRESS"
    } else {
        "DNS"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(xds: &str) -> BootstrapArgs {
        BootstrapArgs {
            node_id: "sidecar-1".into(),
            cluster: "web".into(),
            gateway: None,
            xds_address: xds.into(),
            admin_address: "127.0.0.1:0".into(),
            delta: false,
            on_demand: false,
            xds_ca: None,
            xds_client_cert: None,
            xds_client_key: None,
            xds_sni: None,
            xds_token_file: None,
            xds_token_exchange: None,
            output: OutputFormat::Yaml,
            zone: None,
            labels: vec![],
            app_port: None,
            inbound_port: None,
            outbound_port: None,
            app_protocol: None,
            app_probes: vec![],
            app_probe_headers: vec![],
            probe_port: 15021,
            outbound_traffic_policy: None,
            namespace: None,
            service_account: None,
            scope: None,
            scope_namespace: None,
            grpc: false,
        }
    }

    #[test]
    fn grpc_bootstrap_names_the_server_and_marks_the_node() {
        let mut a = args("127.0.0.1:18000");
        a.grpc = true;
        let b = render_grpc(&a).expect("renders");
        assert_eq!(b["xds_servers"][0]["server_uri"], "127.0.0.1:18000");
        assert_eq!(b["xds_servers"][0]["channel_creds"][0]["type"], "insecure");
        assert_eq!(b["xds_servers"][0]["server_features"][0], "xds_v3");
        assert_eq!(b["node"]["cluster"], "web");
        assert_eq!(b["node"]["metadata"]["portolan.dev/client"], "grpc");
        a.xds_ca = Some("/ca.pem".into());
        let b = render_grpc(&a).expect("renders");
        let creds = &b["xds_servers"][0]["channel_creds"][0];
        assert_eq!(creds["type"], "tls");
        assert_eq!(creds["config"]["ca_certificate_file"], "/ca.pem");
        assert!(b["xds_servers"][0].get("call_creds").is_none());
        // A token file: JWT call credentials reading it (gRFC A97), no exchange.
        a.xds_token_file = Some("/var/run/secrets/portolan/token".into());
        let b = render_grpc(&a).expect("renders");
        let call = &b["xds_servers"][0]["call_creds"][0];
        assert_eq!(call["type"], "jwt_token_file");
        assert_eq!(
            call["config"]["jwt_token_file"],
            "/var/run/secrets/portolan/token"
        );
        a.xds_token_exchange = Some("http://10.0.0.1:18080/sts/v1/token".into());
        let err = render_grpc(&a).expect_err("no exchange for gRPC");
        assert!(err.to_string().contains("--xds-token-exchange"), "{err}");
        a.xds_token_exchange = None;
        a.xds_address = "nowhere".into();
        assert!(render_grpc(&a).is_err());
    }

    #[test]
    fn a_unix_socket_xds_address_is_a_pipe() {
        let b = render(&args("unix:/run/portolan/xds.sock")).expect("renders");
        let cluster = &b["static_resources"]["clusters"][0];
        assert_eq!(cluster["type"], "STATIC");
        let endpoint = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"];
        assert_eq!(
            endpoint["address"]["pipe"]["path"],
            "/run/portolan/xds.sock"
        );
        assert!(render(&args("unix:")).is_err());
    }

    #[test]
    fn the_outbound_traffic_policy_goes_into_the_metadata() {
        let mut a = args("127.0.0.1:18000");
        a.outbound_traffic_policy = Some(crate::cli::OutboundPolicyArg::RegistryOnly);
        let b = render(&a).expect("renders");
        assert_eq!(
            b["node"]["metadata"]["portolan.dev/outbound-traffic-policy"],
            "registry-only"
        );
    }

    #[test]
    fn workload_ports_and_claimed_identity_go_into_the_metadata() {
        let mut a = args("127.0.0.1:18000");
        a.app_port = Some(8080);
        a.inbound_port = Some(15006);
        a.app_protocol = Some("tcp".into());
        a.namespace = Some("shop".into());
        a.service_account = Some("web".into());
        let b = render(&a).expect("renders");
        let m = &b["node"]["metadata"];
        assert_eq!(m["appPort"], "8080");
        assert_eq!(m["inboundPort"], "15006");
        assert_eq!(m["appProtocol"], "tcp");
        assert_eq!(m["namespace"], "shop");
        assert_eq!(m["serviceAccount"], "web");
        assert!(m.get("labels").is_none());
    }

    #[test]
    fn on_demand_asks_for_it_in_the_metadata_over_delta_ads() {
        let mut a = args("127.0.0.1:18000");
        a.on_demand = true;
        let b = render(&a).expect("renders");
        assert_eq!(b["node"]["metadata"]["portolan.dev/discovery"], "on-demand");
        assert_eq!(
            b["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
    }

    #[test]
    fn the_scope_goes_into_the_metadata() {
        let mut a = args("127.0.0.1:18000");
        a.scope = Some("./*,shared/*".into());
        a.scope_namespace = Some("shop".into());
        let b = render(&a).expect("renders");
        assert_eq!(b["node"]["metadata"]["portolan.dev/scope"], "./*,shared/*");
        assert_eq!(b["node"]["metadata"]["portolan.dev/namespace"], "shop");
    }

    #[test]
    fn zone_and_labels_go_into_the_node() {
        let mut a = args("127.0.0.1:18000");
        a.zone = Some("zone-a".into());
        a.labels = vec![("tier".into(), "edge".into())];
        let b = render(&a).expect("renders");
        assert_eq!(b["node"]["locality"]["zone"], "zone-a");
        assert_eq!(b["node"]["metadata"]["labels"]["tier"], "edge");
        assert!(
            render(&args("127.0.0.1:18000")).expect("renders")["node"]
                .get("metadata")
                .is_none()
        );
    }

    #[test]
    fn a_gateway_proxy_joins_its_gateways_group() {
        let mut a = args("127.0.0.1:18000");
        a.gateway = Some("shop/edge".into());
        let b = render(&a).expect("renders");
        assert_eq!(b["node"]["cluster"], "gateway:shop/edge");
        a.gateway = Some("edge".into());
        let e = render(&a).expect_err("needs a namespace");
        assert!(e.to_string().contains("NAMESPACE/NAME"), "{e}");
    }

    #[test]
    fn points_at_portolan_over_http2_ads() {
        let b = render(&args("127.0.0.1:18000")).expect("renders");
        assert_eq!(b["node"]["cluster"], "web");
        assert_eq!(b["dynamic_resources"]["ads_config"]["api_type"], "GRPC");
        let cluster = &b["static_resources"]["clusters"][0];
        assert_eq!(cluster["type"], "STATIC");
        assert_eq!(
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            18000
        );
    }

    #[test]
    fn xds_ca_adds_an_upstream_tls_context_with_files_by_path() {
        let mut a = args("portolan.portolan-system.svc:18000");
        a.xds_ca = Some("/etc/portolan/ca.crt".into());
        let b = render(&a).expect("renders");
        let tls = &b["static_resources"]["clusters"][0]["transport_socket"];
        assert_eq!(tls["name"], "envoy.transport_sockets.tls");
        let ctx = &tls["typed_config"];
        assert_eq!(ctx["sni"], "portolan.portolan-system.svc");
        let common = &ctx["common_tls_context"];
        assert_eq!(common["alpn_protocols"][0], "h2");
        assert_eq!(
            common["validation_context"]["trusted_ca"]["filename"],
            "/etc/portolan/ca.crt"
        );
        assert_eq!(
            common["validation_context"]["match_typed_subject_alt_names"][0]["matcher"]["exact"],
            "portolan.portolan-system.svc"
        );
        assert!(common.get("tls_certificates").is_none(), "no client cert");
        assert!(
            render(&args("127.0.0.1:18000")).expect("renders")["static_resources"]["clusters"][0]
                .get("transport_socket")
                .is_none()
        );
    }

    #[test]
    fn client_certificate_and_sni() {
        let mut a = args("127.0.0.1:18000");
        a.xds_ca = Some("/ca.crt".into());
        a.xds_client_cert = Some("/tls.crt".into());
        a.xds_client_key = Some("/tls.key".into());
        a.xds_sni = Some("portolan.example".into());
        let b = render(&a).expect("renders");
        let ctx = &b["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
        assert_eq!(ctx["sni"], "portolan.example");
        let cert = &ctx["common_tls_context"]["tls_certificates"][0];
        assert_eq!(cert["certificate_chain"]["filename"], "/tls.crt");
        assert_eq!(cert["private_key"]["filename"], "/tls.key");
        // Without --xds-sni an IP address is checked against IP SANs.
        a.xds_sni = None;
        let b = render(&a).expect("renders");
        let san = &b["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]["common_tls_context"]
            ["validation_context"]["match_typed_subject_alt_names"][0];
        assert_eq!(san["san_type"], "IP_ADDRESS");
        // ...and not sent as SNI (SNI is for host names).
        let ctx = &b["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
        assert!(ctx.get("sni").is_none(), "{ctx}");
    }

    #[test]
    fn a_token_file_uses_google_grpc_with_token_exchange_over_tls() {
        let mut a = args("portolan.mesh:18000");
        a.xds_ca = Some("/ca.crt".into());
        a.xds_token_file = Some("/var/run/secrets/portolan/token".into());
        let b = render(&a).expect("renders");
        let google = &b["dynamic_resources"]["ads_config"]["grpc_services"][0]["google_grpc"];
        assert_eq!(google["target_uri"], "portolan.mesh:18000");
        assert_eq!(
            google["channel_credentials"]["ssl_credentials"]["root_certs"]["filename"],
            "/ca.crt"
        );
        let sts = &google["call_credentials"][0]["sts_service"];
        assert_eq!(
            sts["token_exchange_service_uri"],
            "http://portolan.mesh:18080/sts/v1/token"
        );
        assert_eq!(sts["subject_token_path"], "/var/run/secrets/portolan/token");
        assert_eq!(sts["subject_token_type"], JWT_TOKEN_TYPE);
        assert!(google.get("channel_args").is_none());

        a.xds_sni = Some("portolan.test".into());
        a.xds_token_exchange = Some("http://10.0.0.1:9999/sts/v1/token".into());
        let b = render(&a).expect("renders");
        let google = &b["dynamic_resources"]["ads_config"]["grpc_services"][0]["google_grpc"];
        assert_eq!(
            google["channel_args"]["args"]["grpc.ssl_target_name_override"]["string_value"],
            "portolan.test"
        );
        assert_eq!(
            google["call_credentials"][0]["sts_service"]["token_exchange_service_uri"],
            "http://10.0.0.1:9999/sts/v1/token"
        );
        a.xds_token_exchange = Some("https://x/".into());
        let err = render(&a).expect_err("https refused").to_string();
        assert!(err.contains("--xds-token-exchange"), "{err}");
        let err = render_grpc(&a).expect_err("not for gRPC").to_string();
        assert!(err.contains("--xds-token-file"), "{err}");
    }

    #[test]
    fn dns_names_use_strict_dns() {
        let b = render(&args("portolan.portolan-system.svc:18000")).expect("renders");
        assert_eq!(b["static_resources"]["clusters"][0]["type"], "STRICT_DNS");
    }

    #[test]
    fn bad_addresses_name_the_flag() {
        let err = render(&args("localhost")).expect_err("no port");
        assert!(err.to_string().contains("--xds-address"), "{err}");
        let err = render(&args("localhost:http")).expect_err("bad port");
        assert!(err.to_string().contains("not a port number"), "{err}");
    }

    #[test]
    fn yaml_output_is_valid_yaml() {
        let b = render(&args("[::1]:18000")).expect("renders");
        let text = serde_saphyr::to_string(&b).expect("yaml");
        let back: Value = serde_saphyr::from_str(&text).expect("parses back");
        assert_eq!(back, b);
    }
}

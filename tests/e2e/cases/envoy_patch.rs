//! End to end, EnvoyPatchPolicy (the escape hatch): `examples/policies/envoy-patch.yaml` (a
//! Gateway, its route to Service `www`, and the policy) with a real upstream behind `www`,
//! through stock Envoy.
//!
//! * Enabled (`--enable-envoy-patch-policy`): the listener's `per_connection_buffer_limit_bytes`
//!   and the HTTP connection manager's `server_name`, and the cluster's buffer limit, none of
//!   which Portolan models, are in Envoy's `/config_dump`, and responses carry
//!   `server: portolan-tuned`; the policy is Accepted and Programmed and names what each patch
//!   touched.
//! * A bad version (a value of the wrong type, an unknown field, a path that does not exist)
//!   is refused with its field path in the policy's status, the previous patches stay in
//!   Envoy, requests keep flowing, and other changes (a new route) are still served.
//! * A version Envoy rejects (NACK) is attributed to the policy: `Programmed=False Nacked`.
//! * Disabled (the default): nothing is patched and the policy says `Disabled`.
//! * On a Gateway API Gateway: two Gateways of Portolan's class with the same listener (so the
//!   same listener name), each with its own Envoy; a policy targeting one patches only that
//!   Gateway's Envoy (both `/config_dump`s and answers checked); its status names that
//!   Gateway as its one ancestor.

use crate::bin;
use portolan_e2e::{Envoy, Mesh, Upstream, endpoints_yaml, eventually, example};
use serde_json::Value;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);
const POLICY: &str = "EnvoyPatchPolicy default/tuned-settings";

/// The example (Service `www`, Gateway `tuned`, its route and the policy), its listener on
/// `port`.
fn example_on(port: u16) -> String {
    example("policies/envoy-patch.yaml")
        .replace("port: 8080", &format!("port: {port}"))
        .replace("gateway-8080", &format!("gateway-{port}"))
}

/// The upstream behind Service `www`.
fn slices(www: &Upstream) -> String {
    endpoints_yaml("default", "www", &[www])
}

/// A second route through the Gateway.
fn route(name: &str, host: &str) -> String {
    format!(
        "apiVersion: portolan.dev/v1alpha1\nkind: TrafficRoute\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  hosts: [{host}]\n  gateways: [tuned]\n  http:\n  - route:\n    - destination:\n        host: www\n        port: 80\n"
    )
}

/// Envoy's active dynamic listener `name` (admin `/config_dump`, proto JSON).
async fn listener(m: &Mesh, name: &str) -> anyhow::Result<Option<Value>> {
    listener_of(&m.envoy, name).await
}

/// [`listener`] of any Envoy.
async fn listener_of(envoy: &Envoy, name: &str) -> anyhow::Result<Option<Value>> {
    let text = envoy
        .admin("/config_dump?resource=dynamic_listeners")
        .await?;
    let dump: Value = serde_json::from_str(&text)?;
    Ok(dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| &c["active_state"]["listener"])
        .find(|l| l["name"] == name)
        .cloned())
}

/// The HTTP connection manager's `server_name` of a listener's first chain.
fn server_name(listener: &Value) -> Option<&str> {
    listener["filter_chains"][0]["filters"][0]["typed_config"]["server_name"].as_str()
}

/// The policy's conditions on `/debug/config-errors`, by type.
async fn conditions(m: &Mesh) -> anyhow::Result<Vec<Value>> {
    let v = m.portolan.get_json("/debug/config-errors").await?;
    Ok(v["statuses"][POLICY]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn condition<'a>(conditions: &'a [Value], type_: &str) -> Option<&'a Value> {
    conditions.iter().find(|c| c["type"] == type_)
}

/// Waits until the policy's `type_` condition satisfies `ok`.
async fn wait_condition(
    m: &Mesh,
    type_: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let res = eventually(what, DEADLINE, || async {
        let all = conditions(m).await.map_err(|e| e.to_string())?;
        match condition(&all, type_) {
            Some(c) if ok(c) => Ok(c.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    res.map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))
}

/// Requests through the gateway still reach www, with the patched server name.
async fn still_served(m: &Mesh, port: u16) -> anyhow::Result<()> {
    let r = portolan_e2e::http::get(port, "www.example.com", "/").await?;
    assert_eq!((r.status, r.upstream()), (200, Some("www")), "{r:?}");
    assert_eq!(r.header("server"), Some("portolan-tuned"));
    let l = listener(m, &format!("gateway-{port}"))
        .await?
        .expect("listener");
    assert_eq!(l["per_connection_buffer_limit_bytes"], 32768, "{l}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_reaches_envoy_and_a_bad_one_is_refused_while_traffic_flows() -> anyhow::Result<()>
{
    let _shared = portolan_e2e::serial::shared().await;
    let www = Upstream::start("www").await?;
    let port = portolan_e2e::ports::free_port();
    let files = [
        ("example.yaml", example_on(port)),
        ("www.yaml", slices(&www)),
    ];
    let m = Mesh::start_with(bin(), "tuned", &files, &["--enable-envoy-patch-policy"]).await?;

    // The patched settings are in Envoy, and in its answers.
    let r = m
        .wait_get(
            port,
            "www.example.com",
            "/",
            "www with the patched server name",
            |r| r.status == 200 && r.header("server") == Some("portolan-tuned"),
        )
        .await?;
    assert_eq!(r.upstream(), Some("www"));
    let l = listener(&m, &format!("gateway-{port}"))
        .await?
        .expect("listener");
    assert_eq!(l["per_connection_buffer_limit_bytes"], 32768, "{l}");
    assert_eq!(server_name(&l), Some("portolan-tuned"));
    let cluster = m
        .envoy
        .cluster_config("outbound|80||www.default.svc.cluster.local")
        .await?
        .expect("the www cluster");
    assert_eq!(
        cluster["per_connection_buffer_limit_bytes"], 65536,
        "{cluster}"
    );
    let accepted = wait_condition(&m, "Accepted", "Accepted=True", |c| c["status"] == true).await?;
    assert_eq!(accepted["reason"], "Accepted");
    let programmed =
        wait_condition(&m, "Programmed", "Programmed=True", |c| c["status"] == true).await?;
    let message = programmed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("spec.patches[0]: Listener gateway-{port}"))
            && message
                .contains("spec.patches[1]: Cluster outbound|80||www.default.svc.cluster.local"),
        "{message}"
    );

    // Bad versions: each refused with its field path; the last good patches stay in force.
    let good = example_on(port);
    let bad = [
        (
            good.replace("value: 32768", "value: lots"),
            "spec.patches[0]: the patched Listener",
            "at per_connection_buffer_limit_bytes",
        ),
        (
            good.replace(
                "path: /per_connection_buffer_limit_bytes",
                "path: /per_connection_buffer_limit",
            ),
            "spec.patches[0]: the patched Listener",
            "unrecognized field name 'per_connection_buffer_limit'",
        ),
        (
            good.replace(
                "path: /filter_chains/0/filters/0/typed_config/server_name",
                "path: /filter_chains/7/filters/0/typed_config/server_name",
            ),
            "spec.patches[0].operations[1].path",
            "/filter_chains/7",
        ),
    ];
    for (i, (text, path, detail)) in bad.iter().enumerate() {
        m.config.write("example.yaml", text)?;
        let refused = wait_condition(&m, "Accepted", &format!("bad version {i} refused"), |c| {
            // Path and detail: the previous bad version is refused with the same path.
            c["status"] == false
                && c["message"]
                    .as_str()
                    .is_some_and(|t| t.contains(path) && t.contains(detail))
        })
        .await?;
        let message = refused["message"].as_str().unwrap_or_default();
        assert_eq!(refused["reason"], "Invalid");
        assert!(
            message.contains("proxy group tuned: ") && message.contains(detail),
            "{message}"
        );
        still_served(&m, port).await?;
    }
    // A patch Envoy itself rejects (an empty stat_prefix decodes, but Envoy's validation
    // refuses it): the NACK is attributed to the policy, and Envoy keeps the last good config.
    let nacked = good.replace(
        "      value: portolan-tuned\n",
        "      value: portolan-tuned\n    - op: add\n      path: /filter_chains/0/filters/0/typed_config/stat_prefix\n      value: \"\"\n",
    );
    assert_ne!(nacked, good);
    m.config.write("example.yaml", &nacked)?;
    let programmed = wait_condition(&m, "Programmed", "Programmed=False Nacked", |c| {
        c["status"] == false && c["reason"] == "Nacked"
    })
    .await?;
    assert!(
        programmed["message"]
            .as_str()
            .is_some_and(|t| t.contains("tuned-1")),
        "{programmed}"
    );
    let nacks = m.portolan.get_json("/debug/config-errors").await?["nacks"].clone();
    assert!(
        nacks.as_array().into_iter().flatten().any(|n| n["objects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|o| o == POLICY)),
        "{nacks}"
    );
    still_served(&m, port).await?;
    m.config.write("example.yaml", &bad[2].0)?;

    // While the bad version is refused, another change is still served.
    m.config
        .write("api.yaml", &route("api", "api.example.com"))?;
    let r = m
        .wait_get(port, "api.example.com", "/", "the new route", |r| {
            r.status == 200
        })
        .await?;
    assert_eq!(
        r.header("server"),
        Some("portolan-tuned"),
        "the good patch stays"
    );
    still_served(&m, port).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_by_default_nothing_is_patched_and_the_policy_says_so() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let www = Upstream::start("www").await?;
    let port = portolan_e2e::ports::free_port();
    let files = [
        ("example.yaml", example_on(port)),
        ("www.yaml", slices(&www)),
    ];
    let m = Mesh::start(bin(), "tuned", &files).await?;
    let r = m
        .wait_get(port, "www.example.com", "/", "www", |r| r.status == 200)
        .await?;
    assert_eq!(r.upstream(), Some("www"));
    assert_ne!(r.header("server"), Some("portolan-tuned"));
    let l = listener(&m, &format!("gateway-{port}"))
        .await?
        .expect("listener");
    assert!(l.get("per_connection_buffer_limit_bytes").is_none(), "{l}");
    assert_eq!(server_name(&l), None);
    let accepted = wait_condition(&m, "Accepted", "Accepted=False Disabled", |c| {
        c["status"] == false && c["reason"] == "Disabled"
    })
    .await?;
    assert!(
        accepted["message"]
            .as_str()
            .is_some_and(|t| t.contains("--enable-envoy-patch-policy")),
        "{accepted}"
    );
    Ok(())
}

/// Gateway API Gateways `gw-a` and `gw-b` of Portolan's class, each with listener `http` on
/// `port` (each on its own address), an HTTPRoute on both to `www`, and an EnvoyPatchPolicy
/// on `gw-a` only.
fn two_api_gateways(port: u16) -> String {
    let gateway = |name: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  gatewayClassName: portolan\n  listeners:\n  - name: http\n    port: {port}\n    protocol: HTTP\n---\n"
        )
    };
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: portolan
spec:
  controllerName: portolan.dev/gateway-controller
---
{a}{b}apiVersion: v1
kind: Service
metadata:
  name: www
  namespace: default
spec:
  ports:
  - name: http
    port: 80
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: www
  namespace: default
spec:
  parentRefs:
  - name: gw-a
  - name: gw-b
  hostnames: [www.example.com]
  rules:
  - backendRefs:
    - name: www
      port: 80
---
apiVersion: portolan.dev/v1alpha1
kind: EnvoyPatchPolicy
metadata:
  name: only-a
  namespace: default
spec:
  targetRef:
    group: gateway.networking.k8s.io
    kind: Gateway
    name: gw-a
  patches:
  - type: Listener
    name: gateway-{port}
    operations:
    - op: add
      path: /per_connection_buffer_limit_bytes
      value: 32768
    - op: add
      path: /filter_chains/0/filters/0/typed_config/server_name
      value: portolan-a
"#,
        a = gateway("gw-a"),
        b = gateway("gw-b"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_on_a_gateway_api_gateway_reaches_only_its_envoy() -> anyhow::Result<()> {
    use portolan_e2e::Portolan;
    use portolan_e2e::envoy::Protocol;
    use portolan_e2e::portolan::{ConfigDir, Ports};
    let _shared = portolan_e2e::serial::shared().await;
    let www = Upstream::start("www").await?;
    let port = portolan_e2e::ports::free_port();
    let config = ConfigDir::new()?;
    config.write("gateways.yaml", &two_api_gateways(port))?;
    config.write("www.yaml", &slices(&www))?;
    let portolan = Portolan::start_with(
        bin(),
        &config,
        Ports::free(),
        &["--enable-envoy-patch-policy"],
    )
    .await?;
    let address = |gateway: &'static str| {
        let portolan = &portolan;
        eventually("the Gateway's address", DEADLINE, move || async move {
            let all = portolan
                .get_json("/debug/status")
                .await
                .map_err(|e| e.to_string())?;
            all[format!("Gateway default/{gateway}")]["addresses"][0]["value"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{all}"))
        })
    };
    let (addr_a, addr_b) = (address("gw-a").await?, address("gw-b").await?);
    assert_ne!(addr_a, addr_b, "each Gateway has its own address");
    let ports = portolan.ports();
    let start = |node: &'static str, gateway: &'static str| async move {
        let args = ["--gateway", gateway];
        Envoy::start_with(bin(), ports, node, "unused", Protocol::Sotw, &args).await
    };
    let envoy_a = start("gw-a-1", "default/gw-a").await?;
    let envoy_b = start("gw-b-1", "default/gw-b").await?;
    let get = |addr: String| async move {
        let req = portolan_e2e::client()
            .get(format!("http://{addr}:{port}/"))
            .header("host", "www.example.com");
        portolan_e2e::http::send(req).await
    };
    // gw-a's Envoy answers with the patched server name; gw-b's does not.
    let r = eventually(
        "gw-a's answer with the patched server name",
        DEADLINE,
        || {
            let addr = addr_a.clone();
            async move {
                match get(addr).await {
                    Ok(r) if r.status == 200 && r.header("server") == Some("portolan-a") => Ok(r),
                    Ok(r) => Err(format!("{} {:?}", r.status, r.headers)),
                    Err(e) => Err(e.to_string()),
                }
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", portolan.log_tail()))?;
    assert_eq!(r.upstream(), Some("www"));
    let r = eventually("gw-b's answer", DEADLINE, || {
        let addr = addr_b.clone();
        async move {
            match get(addr).await {
                Ok(r) if r.status == 200 => Ok(r),
                Ok(r) => Err(format!("{} {:?}", r.status, r.headers)),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await?;
    assert_eq!(r.upstream(), Some("www"));
    assert_ne!(r.header("server"), Some("portolan-a"), "{r:?}");

    // Both Envoys hold a listener of that name; only gw-a's is patched.
    let name = format!("gateway-{port}");
    let a = listener_of(&envoy_a, &name)
        .await?
        .expect("gw-a's listener");
    assert_eq!(a["per_connection_buffer_limit_bytes"], 32768, "{a}");
    assert_eq!(server_name(&a), Some("portolan-a"));
    let b = listener_of(&envoy_b, &name)
        .await?
        .expect("gw-b's listener");
    assert!(b.get("per_connection_buffer_limit_bytes").is_none(), "{b}");
    assert_eq!(server_name(&b), None, "{b}");

    // The policy says what it touched, in gw-a's group only.
    let message = eventually("Programmed=True naming gw-a's group", DEADLINE, || async {
        let v = portolan
            .get_json("/debug/config-errors")
            .await
            .map_err(|e| e.to_string())?;
        let all = v["statuses"]["EnvoyPatchPolicy default/only-a"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        match condition(&all, "Programmed") {
            Some(c) if c["status"] == true => {
                Ok(c["message"].as_str().unwrap_or_default().to_string())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    // Its status has one ancestor: the Gateway it targets, with the policy's Accepted.
    let status = portolan.get_json("/debug/status").await?;
    let ancestors = &status["EnvoyPatchPolicy default/only-a"]["ancestors"];
    assert_eq!(
        (
            &ancestors[0]["ancestorRef"],
            &ancestors[0]["controllerName"],
            &ancestors[0]["conditions"][0]["status"]
        ),
        (
            &serde_json::json!({"group": "gateway.networking.k8s.io", "kind": "Gateway",
                "namespace": "default", "name": "gw-a"}),
            &serde_json::json!("portolan.dev/gateway-controller"),
            &serde_json::json!("True")
        ),
        "{status}"
    );
    assert_eq!(ancestors.as_array().map(Vec::len), Some(1), "{ancestors}");
    assert!(
        message.contains("proxy group gateway:default/gw-a")
            && message.contains(&format!("Listener gateway-{port}"))
            && !message.contains("gw-b"),
        "{message}"
    );
    Ok(())
}

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

use crate::bin;
use portolan_e2e::{Mesh, Upstream, endpoints_yaml, eventually, example};
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
    let text = m
        .envoy
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

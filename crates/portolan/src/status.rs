//! `portolan status [KIND/NAMESPACE/NAME]`: the Gateway API status a running `portolan serve`
//! owns, read from its `GET /debug/status`, printed as JSON (one object, or all of them).

use crate::cli::StatusArgs;
use anyhow::{Context, bail};
use serde_json::Value;
use std::process::ExitCode;

pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let url = format!("{}/debug/status", args.server.trim_end_matches('/'));
    let all: Value = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(async {
            let response = reqwest::get(&url).await?.error_for_status()?;
            response.json::<Value>().await
        })
        .with_context(|| format!("GET {url}"))?;
    let shown = match &args.object {
        None => all,
        Some(object) => {
            let key = status_key(object)?;
            match all.get(&key) {
                Some(v) => v.clone(),
                None => {
                    eprintln!(
                        "no status for {key} (Portolan owns status only for objects of its GatewayClasses)"
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    };
    println!("{}", serde_json::to_string_pretty(&shown)?);
    Ok(ExitCode::SUCCESS)
}

/// `KIND/NS/NAME` as `/debug/status` keys it: `KIND NS/NAME` (`KIND NAME` when cluster-scoped:
/// `KIND/NAME` or `KIND//NAME`).
fn status_key(object: &str) -> anyhow::Result<String> {
    let parts: Vec<&str> = object.split('/').collect();
    match parts.as_slice() {
        [kind, name] | [kind, "", name] if !kind.is_empty() && !name.is_empty() => {
            Ok(format!("{kind} {name}"))
        }
        [kind, ns, name] if !kind.is_empty() && !name.is_empty() => {
            Ok(format!("{kind} {ns}/{name}"))
        }
        _ => bail!(
            "{object:?}: expected KIND/NAMESPACE/NAME (or KIND/NAME for a cluster-scoped kind)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_arguments_become_status_keys() {
        assert_eq!(
            status_key("HTTPRoute/default/web").expect("key"),
            "HTTPRoute default/web"
        );
        assert_eq!(
            status_key("GatewayClass/portolan").expect("key"),
            "GatewayClass portolan"
        );
        assert_eq!(
            status_key("GatewayClass//portolan").expect("key"),
            "GatewayClass portolan"
        );
        assert!(status_key("HTTPRoute").is_err());
    }
}

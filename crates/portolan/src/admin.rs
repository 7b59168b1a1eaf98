//! `portolan proxy-status` and `portolan config-dump`: clients of the admin gRPC API of a running
//! `portolan serve` (see `portolan_admin`), in plaintext or, with `--xds-ca` (and
//! `--xds-client-cert/--xds-client-key`, `--xds-sni`), over TLS like `bootstrap`.

use crate::cli::{ConfigDumpArgs, ProxyStatusArgs};
use anyhow::Context;
use portolan_admin::client::Client;
use std::process::ExitCode;

fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

/// Prints the proxy status table.
pub fn proxy_status(args: &ProxyStatusArgs) -> anyhow::Result<ExitCode> {
    let response = block_on(async {
        let mut client =
            Client::connect_with(&args.admin.server, args.admin.tls().as_ref()).await?;
        Ok(client.proxy_status().await?)
    })?;
    if response.streams.is_empty() {
        eprintln!("no proxies connected to {}", args.admin.server);
    }
    crate::output::print(&portolan_admin::table::render(&response))?;
    Ok(ExitCode::SUCCESS)
}

/// Prints one proxy's config dump as JSON.
pub fn config_dump(args: &ConfigDumpArgs) -> anyhow::Result<ExitCode> {
    let response = block_on(async {
        let mut client =
            Client::connect_with(&args.admin.server, args.admin.tls().as_ref()).await?;
        Ok(client.config_dump(&args.node).await?)
    })?;
    let json = portolan_admin::dump::to_json(&response);
    crate::output::println(&serde_json::to_string_pretty(&json)?)?;
    Ok(ExitCode::SUCCESS)
}

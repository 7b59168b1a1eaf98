//! Every subcommand that prints stops quietly when its reader goes away
//! (`portolan bootstrap ... | head -1`): no panic, nothing on stderr, and the exit status it
//! would have had. Each runs with its stdout on a pipe whose reading end is already closed, so
//! its first write fails (EPIPE) whatever the size of its output.

use portolan_e2e::manifests::example;
use portolan_e2e::portolan::{ConfigDir, Portolan, Ports};
use portolan_xds_client::{Follow, SotwClient, SotwSubscriber, channel, node};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portolan"))
}

fn examples(dir: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(dir)
        .display()
        .to_string()
}

/// Runs `portolan ARGS` with stdout on a pipe nobody reads.
fn run_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    Command::new(bin())
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("portolan runs")
}

fn assert_quiet(args: &[&str], success: bool) {
    let out = run_into_closed_pipe(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "portolan {args:?} panicked:\n{stderr}"
    );
    assert!(stderr.is_empty(), "portolan {args:?} said:\n{stderr}");
    assert_eq!(
        out.status.success(),
        success,
        "portolan {args:?}: {}",
        out.status
    );
}

#[test]
fn offline_subcommands_exit_quietly_when_the_reader_goes_away() {
    let bookinfo = examples("bookinfo");
    assert_quiet(&["bootstrap", "--node-id", "n1", "--cluster", "web"], true);
    assert_quiet(
        &["bootstrap", "--grpc", "--node-id", "n1", "--cluster", "web"],
        true,
    );
    assert_quiet(
        &["render", "--config-dir", &bookinfo, "--cluster", "default"],
        true,
    );
    assert_quiet(&["crds"], true);
    assert_quiet(&["validate", &bookinfo], true);
    assert_quiet(&["--help"], true);
}

/// `validate` still fails on invalid input when nobody reads what it says.
#[test]
fn validate_keeps_its_exit_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 0}]}\n",
    )
    .expect("write");
    assert_quiet(&["validate", &bad.display().to_string()], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_clients_exit_quietly_when_the_reader_goes_away() -> anyhow::Result<()> {
    let config = ConfigDir::new()?;
    config.write("bookinfo.yaml", &example("bookinfo/bookinfo.yaml"))?;
    let ports = Ports::free();
    let portolan = Portolan::start(&bin(), &config, ports).await?;
    let subscriber = SotwSubscriber::new(node::envoy("n1", "web"), Follow::Clusters);
    let channel = channel(([127, 0, 0, 1], ports.xds), None).await?;
    let mut proxy = SotwClient::connect(channel, subscriber).await?;
    proxy.sync(Duration::from_secs(30)).await?;
    let server = format!("127.0.0.1:{}", ports.xds);
    let checks = tokio::task::spawn_blocking(move || {
        assert_quiet(&["proxy-status", "--server", &server], true);
        assert_quiet(&["config-dump", "--node", "n1", "--server", &server], true);
    });
    checks.await?;
    portolan.kill().await
}

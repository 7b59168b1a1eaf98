//! Copies envoy-types' FileDescriptorSet (`src/generated/types.bin`, not exported by the crate)
//! into OUT_DIR so `json.rs` can build a prost-reflect descriptor pool from it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let dir = match envoy_types_dir() {
        Ok(dir) => dir,
        Err(e) => panic!("locating the envoy-types package: {e}"),
    };
    let src = dir.join("src").join("generated").join("types.bin");
    println!("cargo:rerun-if-changed={}", src.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("envoy-types.bin");
    if let Err(e) = std::fs::copy(&src, &out) {
        panic!("copying {} to {}: {e}", src.display(), out.display());
    }
}

/// The directory of envoy-types' Cargo.toml, from `cargo metadata`.
fn envoy_types_dir() -> Result<PathBuf, String> {
    let metadata = cargo_metadata(true).or_else(|_| cargo_metadata(false))?;
    let json: serde_json::Value =
        serde_json::from_slice(&metadata).map_err(|e| format!("cargo metadata output: {e}"))?;
    let packages = json["packages"]
        .as_array()
        .ok_or("no packages in cargo metadata")?;
    let manifest = packages
        .iter()
        .find(|p| p["name"] == "envoy-types")
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or("envoy-types is not in cargo metadata")?;
    PathBuf::from(manifest)
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| format!("manifest path {manifest} has no parent"))
}

fn cargo_metadata(offline: bool) -> Result<Vec<u8>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.args(["metadata", "--format-version", "1", "--locked"]);
    if offline {
        cmd.arg("--offline");
        // Without a platform filter, --offline fails on dependencies of other platforms that
        // were never downloaded.
        if let Ok(target) = std::env::var("TARGET") {
            cmd.args(["--filter-platform", &target]);
        }
    }
    if let Ok(manifest_dir) = std::env::var("CARGO_MANIFEST_DIR") {
        cmd.current_dir(manifest_dir);
    }
    let output = cmd
        .output()
        .map_err(|e| format!("running cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(output.stdout)
}

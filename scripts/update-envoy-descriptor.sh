#!/usr/bin/env bash
# Copies envoy-types' FileDescriptorSet (its src/generated/types.bin, which the crate ships but
# does not export) into crates/envoy-json/descriptor/, with the envoy-types version it came
# from. Run it after envoy-types changes in Cargo.lock: until then the envoy-json test
# `descriptor_is_the_locked_envoy_types_one` fails. Needs cargo and python3; nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

read -r version manifest < <(
  cargo metadata --format-version 1 --locked \
    --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" |
    python3 -c 'import json, sys
pkgs = [p for p in json.load(sys.stdin)["packages"] if p["name"] == "envoy-types"]
if len(pkgs) != 1:
    sys.exit("expected one envoy-types package, found %d" % len(pkgs))
print(pkgs[0]["version"], pkgs[0]["manifest_path"])'
)
src="$(dirname "$manifest")/src/generated/types.bin"
out=crates/envoy-json/descriptor
cp "$src" "$out/envoy-types.binpb"
printf '%s\n' "$version" >"$out/envoy-types.version"
echo "envoy-types $version: $(wc -c <"$out/envoy-types.binpb") bytes into $out" >&2

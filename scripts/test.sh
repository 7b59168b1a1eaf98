#!/usr/bin/env bash
# The test command: sets up everything on a fresh machine, then runs every check CI runs.
#   format, lints, the chart/example/image checks (scripts/chart-check.sh: helm lint,
#   helm template | kubernetes-validate, CRD schemas), unit + golden + gRPC loopback +
#   end-to-end (stock Envoy) tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-tools.sh
export ENVOY_BIN="$PWD/.venv/bin/envoy"

echo "== cargo fmt" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test" >&2
# Four tests at a time per test binary: the end-to-end tests (one binary, `--test e2e`) mostly
# wait on Envoy, so four keep two cores busy without starving the Envoys; the two that load
# the machine or measure Portolan's memory run alone (`portolan_e2e::serial`).
cargo test --workspace --locked -- --test-threads=4
echo "== chart, examples, Dockerfile" >&2
# target/debug/portolan: the binary the tests above were built with.
PORTOLAN_BIN="$PWD/target/debug/portolan" scripts/chart-check.sh

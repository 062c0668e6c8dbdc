#!/usr/bin/env bash
# `make run`: the platform on its embedded defaults, on a local Ray.
#   1. a model bundle: $VITRINE_BUNDLE_PATH, else artifacts/bundles/default (trained on the
#      built-in synthetic catalog the first time, about a minute);
#   2. a local Ray head, then every application of deploy/serve/vitrine.yaml (embedded Qdrant
#      Edge store in artifacts/store);
#   3. the bundle's catalog indexed, then it waits; Ctrl-C stops Ray.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}" HF_HUB_OFFLINE=1
export RAY_TMPDIR="${RAY_TMPDIR:-/tmp/vitrine-ray}"
# Serve's direct ingress and gRPC transport: every hop a few hundred microseconds cheaper
# (docs/BENCHMARKS.md, "Serving"); deploy/serve/vitrine.yaml explains the wiring.
export RAY_SERVE_THROUGHPUT_OPTIMIZED="${RAY_SERVE_THROUGHPUT_OPTIMIZED:-1}"
export VITRINE_CACHE_DIR="${VITRINE_CACHE_DIR:-$PWD/artifacts/cache}"
export VITRINE_STORAGE_PATH="${VITRINE_STORAGE_PATH:-$PWD/artifacts/runs}"
export VITRINE_BUNDLE_PATH="${VITRINE_BUNDLE_PATH:-$PWD/artifacts/bundles/default}"
export VITRINE_STORE_LOCATION="${VITRINE_STORE_LOCATION:-edge:$PWD/artifacts/store}"
VITRINE=.venv/bin/vitrine
mkdir -p "$RAY_TMPDIR"

$VITRINE config >/dev/null  # fails here, naming the variable, if a setting is bad

if [[ ! -f "$VITRINE_BUNDLE_PATH/manifest.json" ]]; then
  echo "==> no model bundle at $VITRINE_BUNDLE_PATH: training one on the synthetic catalog"
  $VITRINE train --config training/configs/smoke.yaml --output "$VITRINE_BUNDLE_PATH"
fi
CATALOG="${VITRINE_CATALOG:-$(ls -d "$VITRINE_CACHE_DIR"/data/synthetic-*/products.jsonl 2>/dev/null | head -1)}"

cleanup() {
  trap - EXIT INT TERM
  echo "==> stopping Ray"
  .venv/bin/ray stop >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

echo "==> starting Ray (RAY_TMPDIR=$RAY_TMPDIR)"
.venv/bin/ray start --head --num-cpus 2 --include-dashboard=false --disable-usage-stats \
  --temp-dir "$RAY_TMPDIR" >/dev/null
echo "==> deploying deploy/serve/vitrine.yaml"
$VITRINE serve up
if [[ -n "$CATALOG" ]]; then
  echo "==> indexing $CATALOG"
  $VITRINE index "$CATALOG"
fi
cat <<MSG
==> Vitrine is up.
    gRPC search:  127.0.0.1:${VITRINE_GRPC_PORT:-9000}  (vitrine.search.v1.SearchService; reflection on)
    HTTP search:  curl -s localhost:8000/v1/search -d '{"text": "red checked shirt", "top_k": 3}'
    health:       curl -s localhost:8000/healthz
    services:     .venv/bin/vitrine serve status
    Ctrl-C stops everything.
MSG
# `wait` returns on a signal, so the trap runs at once (a foreground sleep would delay it).
sleep infinity &
wait $!

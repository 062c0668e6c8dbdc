#!/usr/bin/env bash
# `make run`: the platform on its embedded defaults, on a local Ray.
#   1. a model bundle: $VITRINE_BUNDLE_PATH, else artifacts/bundles/default (trained on the
#      built-in synthetic catalog the first time, about a minute);
#   2. a local Ray head, then every application of deploy/serve/vitrine.yaml (embedded Qdrant
#      Edge store in artifacts/store);
#   3. the local Kafka-protocol broker (unless VITRINE_KAFKA_BOOTSTRAP_SERVERS names one) and one
#      ingestion worker;
#   4. the catalog published as catalog events, and a wait until the worker committed them all
#      (searchable); then it waits. Ctrl-C stops the worker, the broker and Ray.
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
LOGS="$PWD/artifacts/logs"
mkdir -p "$RAY_TMPDIR" "$LOGS"
LOCAL_BROKER=0
if [[ -z "${VITRINE_KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
  LOCAL_BROKER=1
  export VITRINE_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${VITRINE_BROKER_PORT:-9092}"
fi

$VITRINE config >/dev/null  # fails here, naming the variable, if a setting is bad

if [[ ! -f "$VITRINE_BUNDLE_PATH/manifest.json" ]]; then
  echo "==> no model bundle at $VITRINE_BUNDLE_PATH: training one on the synthetic catalog"
  $VITRINE train --config training/configs/smoke.yaml --output "$VITRINE_BUNDLE_PATH"
fi
CATALOG="${VITRINE_CATALOG:-$(ls -d "$VITRINE_CACHE_DIR"/data/synthetic-*/products.jsonl 2>/dev/null | head -1)}"

PIDS=()
cleanup() {
  trap - EXIT INT TERM
  # The worker first (it finishes the batch in hand), then the broker, then Ray.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null && wait "${PIDS[i]}" 2>/dev/null || true
  done
  echo "==> stopping Ray"
  .venv/bin/ray stop >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

if ((LOCAL_BROKER)); then
  echo "==> starting the local Kafka-protocol broker on $VITRINE_KAFKA_BOOTSTRAP_SERVERS (log: $LOGS/broker.log)"
  $VITRINE broker --port "${VITRINE_KAFKA_BOOTSTRAP_SERVERS##*:}" >"$LOGS/broker.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 150); do
    grep -q "Kafka-protocol broker" "$LOGS/broker.log" && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$LOGS/broker.log"; exit 1; }
    sleep 0.2
  done
fi

echo "==> starting Ray (RAY_TMPDIR=$RAY_TMPDIR)"
.venv/bin/ray start --head --num-cpus 2 --include-dashboard=false --disable-usage-stats \
  --temp-dir "$RAY_TMPDIR" >/dev/null
echo "==> deploying deploy/serve/vitrine.yaml"
$VITRINE serve up
echo "==> starting an ingestion worker (log: $LOGS/ingest.log, metrics :${VITRINE_METRICS_PORT:-9102}/metrics)"
$VITRINE ingest >"$LOGS/ingest.log" 2>&1 &
PIDS+=($!)
if [[ -n "$CATALOG" ]]; then
  echo "==> publishing $CATALOG to $VITRINE_KAFKA_BOOTSTRAP_SERVERS; waiting until it is indexed"
  $VITRINE publish "$CATALOG" --wait
fi
cat <<MSG
==> Vitrine is up.
    gRPC search:  127.0.0.1:${VITRINE_GRPC_PORT:-9000}  (vitrine.search.v1.SearchService; reflection on)
    HTTP search:  curl -s localhost:8000/v1/search -d '{"text": "red checked shirt", "top_k": 3}'
    health:       curl -s localhost:8000/healthz
    services:     .venv/bin/vitrine serve status
    add products: .venv/bin/vitrine publish PATH  (products.jsonl, FashionIQ or image folder, synthetic:N)
    ingestion:    curl -s localhost:${VITRINE_METRICS_PORT:-9102}/metrics | grep vitrine_ingest
    logs:         $LOGS
    Ctrl-C stops everything.
MSG
# `wait` returns on a signal, so the trap runs at once (a foreground sleep would delay it).
sleep infinity &
PIDS+=($!)
wait $!

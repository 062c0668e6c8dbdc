#!/usr/bin/env bash
# `make run [CATALOG=PATH]`: the platform on its embedded defaults, on a Ray head of its own.
#   1. a model bundle: $VITRINE_BUNDLE_PATH, else artifacts/bundles/default, trained the first
#      time on the built-in synthetic catalog (training/configs/demo.yaml, about a minute); with
#      CATALOG=PATH (a products.jsonl or its folder) artifacts/bundles/catalog-NAME, trained the
#      first time on that catalog (training/configs/catalog.yaml, or TRAIN_CONFIG=FILE);
#   2. the local Kafka-protocol broker (unless VITRINE_INGESTION_KAFKA_BOOTSTRAP_SERVERS names
#      one);
#   3. a Ray head (`ray start --block`, so stopping it stops only this cluster), then every
#      application of deploy/serve/vitrine.yaml (embedded Qdrant Edge store in artifacts/store);
#   4. one ingestion worker; the catalog (the bundle's synthetic catalog, or CATALOG) published as
#      catalog events, and a wait until the worker committed them all: searchable.
# Then it prints where to search and waits. Ctrl-C, SIGTERM or the death of its parent (make, a
# terminal) stops the worker, Ray and the broker; every port it binds is checked first.
set -euo pipefail
cd "$(dirname "$0")/.."
# TRAIN_CONFIG=FILE: the training config of CATALOG's bundle (default training/configs/catalog.yaml;
# e.g. catalog-combined.yaml, two image backbones, docs/QUALITY.md). Checked before anything starts.
if [[ -n "${TRAIN_CONFIG:-}" ]]; then
  if [[ -z "${CATALOG:-}" ]]; then
    echo "make run: TRAIN_CONFIG chooses how a CATALOG's bundle is trained; give CATALOG=PATH too" >&2
    exit 2
  fi
  if [[ ! -f "$TRAIN_CONFIG" ]]; then
    echo "make run: TRAIN_CONFIG: no training config at $TRAIN_CONFIG" >&2
    exit 2
  fi
fi
# This script and each process it starts get SIGTERM from the kernel when their parent dies,
# whatever killed it (prctl PR_SET_PDEATHSIG, kept across exec; operations/supervise.py): a
# `make run` killed with SIGKILL once left the broker on its port, owned by PID 1 (issue 17).
if [[ "${VITRINE_RUN_PID:-}" != "$$" ]]; then
  export VITRINE_RUN_PID=$$
  exec .venv/bin/python -m operations.supervise exec -- bash "$PWD/scripts/run.sh" "$@"
fi
SUPERVISE=(.venv/bin/python -m operations.supervise)
START=$SECONDS
# Closed by default (issue 17): Ray's token authentication, the token in Ray's own place (made
# here, mode 0600, when missing), where every `vitrine` command finds it; every Ray port on
# loopback: Ray turns --node-ip-address 127.0.0.1 into the machine's address unless it is told
# the node will have no peers (ray._private.services.get_node_ip_address).
export RAY_AUTH_MODE=token RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 HF_HUB_OFFLINE=1
new_secret() { [[ -s "$1" ]] || (umask 077 && mkdir -p "$(dirname "$1")" && .venv/bin/python -c \
  'import secrets; print(secrets.token_urlsafe(32), end="")' >"$1") && chmod 600 "$1"; }
new_secret "${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
# The internal services' token (shared/serving/auth.py), sent by the gateway, the worker
# and the CLI; Serve's gRPC messages capped at INTERNAL_MAX_MESSAGE_BYTES (shared/serving/endpoints.py).
[[ -n "${VITRINE_INTERNAL_TOKEN:-}" ]] || export VITRINE_INTERNAL_TOKEN_FILE="${VITRINE_INTERNAL_TOKEN_FILE:-$PWD/artifacts/secrets/internal_token}"
[[ -z "${VITRINE_INTERNAL_TOKEN_FILE:-}" ]] || new_secret "$VITRINE_INTERNAL_TOKEN_FILE"
export RAY_SERVE_GRPC_MAX_MESSAGE_SIZE="${RAY_SERVE_GRPC_MAX_MESSAGE_SIZE:-$((64 * 2 ** 20))}"
export RAY_TMPDIR="${RAY_TMPDIR:-/tmp/vitrine-ray}"
# Serve's direct ingress and gRPC transport: every hop a few hundred microseconds cheaper
# (docs/BENCHMARKS.md, "Serving"); deploy/serve/vitrine.yaml explains the wiring.
export RAY_SERVE_THROUGHPUT_OPTIMIZED="${RAY_SERVE_THROUGHPUT_OPTIMIZED:-1}"
# ...which also buffers 1000 log records per replica; ours log little (no access log): write
# each record at once, so `logs/serve/replica_*.log` is current.
export RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE="${RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE:-1}"
# A stopping replica drains for 5 s, not Serve's 30 (operations/local_ray.py says why).
export RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S="${RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S:-5}"
export VITRINE_TRAIN_CACHE_DIR="${VITRINE_TRAIN_CACHE_DIR:-$PWD/artifacts/cache}"
export VITRINE_TRAIN_STORAGE_PATH="${VITRINE_TRAIN_STORAGE_PATH:-$PWD/artifacts/runs}"
export VITRINE_VECTOR_STORE_STORE_LOCATION="${VITRINE_VECTOR_STORE_STORE_LOCATION:-edge:$PWD/artifacts/store}"
RAY_PORT="${VITRINE_RAY_PORT:-6379}"
# Every Serve replica's metrics (shared/observability/metrics.py), served by Ray's metrics agent
# on loopback and reported every 2 s (Ray's default is 10 s): `vitrine status` reads them.
RAY_METRICS_PORT="${VITRINE_RAY_METRICS_PORT:-9103}"
export RAY_metrics_report_interval_ms="${RAY_metrics_report_interval_ms:-2000}"
# Training starts a Ray of its own; every later command uses the head started below.
unset RAY_ADDRESS
SERVE_GRPC_PORT="${VITRINE_SERVE_GRPC_PORT:-9100}"
export VITRINE_INGESTION_IMAGE_ENCODER_ADDRESS="${VITRINE_INGESTION_IMAGE_ENCODER_ADDRESS:-127.0.0.1:$SERVE_GRPC_PORT}"
export VITRINE_INGESTION_VECTOR_STORE_ADDRESS="${VITRINE_INGESTION_VECTOR_STORE_ADDRESS:-127.0.0.1:$SERVE_GRPC_PORT}"
VITRINE=("${SUPERVISE[@]}" exec -- .venv/bin/vitrine)
LOGS="${VITRINE_LOG_DIR:-$PWD/artifacts/logs}"
mkdir -p "$RAY_TMPDIR" "$LOGS"
LOCAL_BROKER=0
if [[ -z "${VITRINE_INGESTION_KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
  LOCAL_BROKER=1
  export VITRINE_INGESTION_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${VITRINE_BROKER_PORT:-9092}"
fi
die() { echo "make run: $*" >&2; exit 2; }
PIDS=()
FG=
cleanup() {
  trap - EXIT INT TERM
  # In reverse order of start: the command in hand, the worker (it finishes the batch in hand),
  # Ray, the broker.
  [[ -n "$FG" || ${#PIDS[@]} -gt 0 ]] || return 0
  echo "==> stopping"
  [[ -n "$FG" ]] && stop "$FG"
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    stop "${PIDS[i]}"
  done
  rm -f "$RAY_TMPDIR/ray_current_cluster"  # the address of the head that just stopped
}
# SIGTERM to PID, SIGKILL if it still runs after 90 s (the worker's supervisor gives the worker
# 60 s to finish its batch), then reaps it.
stop() {
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 450); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
# Runs a command to its end in the background: `wait` returns on a signal, so the trap runs at
# once and stops the command (a foreground command would hold the trap until it finished).
run_to_end() {
  "$@" &
  FG=$!
  wait "$FG"
  FG=
}

"${VITRINE[@]}" config >/dev/null  # fails here, naming the variable, if a setting is bad
# Every port this run binds, before anything starts: one line per port taken, naming its holder.
PORTS=("Ray=$RAY_PORT" "Serve gRPC=$SERVE_GRPC_PORT" "Serve HTTP=${VITRINE_SERVE_HTTP_PORT:-8100}"
  "gateway gRPC=${VITRINE_GATEWAY_GRPC_PORT:-9000}" "gateway HTTP=${VITRINE_GATEWAY_HTTP_PORT:-8000}"
  "ingestion metrics=${VITRINE_INGESTION_METRICS_PORT:-9102}" "Ray metrics=$RAY_METRICS_PORT")
((LOCAL_BROKER)) && PORTS+=("broker=${VITRINE_INGESTION_KAFKA_BOOTSTRAP_SERVERS##*:}")
if ! busy="$("${SUPERVISE[@]}" ports "${PORTS[@]}" 2>&1)"; then
  sed 's/^/make run: /' <<<"$busy" >&2
  exit 2
fi

# The catalog and the bundle trained for it: VITRINE_BUNDLE_PATH, the one bundle every model
# application loads (shared/settings.py, BundleSettings).
CATALOG="${CATALOG:-}"
if [[ -n "$CATALOG" ]]; then
  [[ -d "$CATALOG" ]] && CATALOG="$CATALOG/products.jsonl"
  [[ -f "$CATALOG" ]] || die "CATALOG: no products.jsonl at ${CATALOG%/products.jsonl}"
  CATALOG="$(realpath "$CATALOG")"
  NAME="$(basename "$(dirname "$CATALOG")")"
  CONFIG="${TRAIN_CONFIG:-training/configs/catalog.yaml}"
  KIND="$(basename "$CONFIG" .yaml)"  # another config, another bundle: catalog-NAME-KIND
  [[ "$KIND" == catalog ]] && KIND="" || KIND="-$KIND"
  export VITRINE_BUNDLE_PATH="${VITRINE_BUNDLE_PATH:-$PWD/artifacts/bundles/catalog-$NAME$KIND}"
  TRAIN=(--config "$CONFIG" --catalog "$CATALOG")
else
  export VITRINE_BUNDLE_PATH="${VITRINE_BUNDLE_PATH:-$PWD/artifacts/bundles/default}"
  TRAIN=(--config training/configs/demo.yaml)
fi
if [[ ! -f "$VITRINE_BUNDLE_PATH/manifest.json" ]]; then
  echo "==> no model bundle at $VITRINE_BUNDLE_PATH: training one (${TRAIN[*]})"
  run_to_end "${VITRINE[@]}" train "${TRAIN[@]}" --output "$VITRINE_BUNDLE_PATH"
fi
if [[ -z "$CATALOG" ]]; then
  # The synthetic catalog the bundle was trained on, where the training wrote it.
  CATALOG="$(.venv/bin/python -c 'import json, sys
data = json.load(open(sys.argv[1]))["training"]["data"]
print(data["path"] + "/products.jsonl" if data["kind"] == "synthetic" else "")' \
    "$VITRINE_BUNDLE_PATH/manifest.json")"
  [[ -z "$CATALOG" || -f "$CATALOG" ]] || CATALOG="synthetic:120"
fi

# Waits up to SECONDS for the last process started to write TEXT to LOG; shows the log and stops
# if that process exits first.
wait_for_log() {
  local text=$1 log=$2 seconds=$3
  for _ in $(seq $((seconds * 5))); do
    grep -q "$text" "$log" && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.2
  done
}

if ((LOCAL_BROKER)); then
  echo "==> starting the local Kafka-protocol broker on $VITRINE_INGESTION_KAFKA_BOOTSTRAP_SERVERS (log: $LOGS/broker.log)"
  "${VITRINE[@]}" broker --port "${VITRINE_INGESTION_KAFKA_BOOTSTRAP_SERVERS##*:}" >"$LOGS/broker.log" 2>&1 &
  PIDS+=($!)
  wait_for_log "Kafka-protocol broker" "$LOGS/broker.log" 30
fi

echo "==> starting Ray on 127.0.0.1:$RAY_PORT (RAY_TMPDIR=$RAY_TMPDIR, log: $LOGS/ray.log)"
# shellcheck disable=SC2086 # VITRINE_RAY_ARGS is a list of extra `ray start` flags
# No drain on stop: this one node is the whole cluster, there is nowhere to move work to, and
# Ray would otherwise wait 30 s before stopping its processes.
RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="${RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S:-0}" \
  "${SUPERVISE[@]}" exec -- .venv/bin/ray start --head --block --port "$RAY_PORT" --num-cpus 2 --include-dashboard=false \
  --metrics-export-port "$RAY_METRICS_PORT" \
  --node-ip-address 127.0.0.1 --disable-usage-stats --temp-dir "$RAY_TMPDIR" ${VITRINE_RAY_ARGS:-} >"$LOGS/ray.log" 2>&1 &
PIDS+=($!)
export RAY_ADDRESS="127.0.0.1:$RAY_PORT"
wait_for_log "Ray runtime started" "$LOGS/ray.log" 60
echo "==> deploying deploy/serve/vitrine.yaml"
run_to_end "${VITRINE[@]}" serve up --proxy-grpc-port "$SERVE_GRPC_PORT" \
  --proxy-http-port "${VITRINE_SERVE_HTTP_PORT:-8100}" --proxy-http-host 127.0.0.1
echo "==> starting an ingestion worker, restarted when it exits (log: $LOGS/ingest.log, metrics :${VITRINE_INGESTION_METRICS_PORT:-9102}/metrics)"
: >"$LOGS/ingest.log"
# A worker that dies is restarted with backoff (1 s, doubling to 30 s), each restart said here
# and in its log; after VITRINE_WORKER_RESTARTS exits in a row within 30 s of their start, the
# supervisor gives up and says so (in Kubernetes the Deployment restarts it).
"${SUPERVISE[@]}" restart --name "ingestion worker" --log "$LOGS/ingest.log" \
  --max-quick-failures "${VITRINE_WORKER_RESTARTS:-5}" -- .venv/bin/vitrine ingest &
WORKER=$!
PIDS+=($!)
if [[ -n "$CATALOG" ]]; then
  echo "==> publishing $CATALOG to $VITRINE_INGESTION_KAFKA_BOOTSTRAP_SERVERS; waiting until it is indexed"
  "${VITRINE[@]}" publish "$CATALOG" --wait &
  FG=$!
  # Until it is indexed, or until the worker's supervisor gives up (nothing would be indexed).
  status=0
  wait -n -p DONE "$FG" "$WORKER" || status=$?
  [[ "$DONE" == "$FG" ]] || die "no ingestion worker (its supervisor gave up, above): not indexed"
  FG=
  ((status == 0)) || exit "$status"
fi
HTTP="http://127.0.0.1:${VITRINE_GATEWAY_HTTP_PORT:-8000}"
cat <<MSG
==> searchable after $((SECONDS - START)) s: $CATALOG
    web page:     $HTTP/
    gRPC search:  127.0.0.1:${VITRINE_GATEWAY_GRPC_PORT:-9000}  (vitrine.search.v1.SearchService; reflection on)
    CLI search:   .venv/bin/vitrine search "red checked shirt" --top-k 5
    HTTP search:  curl -s $HTTP/v1/search -d '{"text": "red checked shirt", "top_k": 3}'
    status:       .venv/bin/vitrine status  (live query rate, p50/p99, batch sizes, lag)
    metrics:      http://127.0.0.1:$RAY_METRICS_PORT/metrics (Serve replicas), http://127.0.0.1:${VITRINE_INGESTION_METRICS_PORT:-9102}/metrics (worker)
    traces:       ${VITRINE_TRACING_EXPORTER:-off (VITRINE_TRACING_EXPORTER=otlp or file:DIR before make run)}; docs/OBSERVABILITY.md
    add products: .venv/bin/vitrine publish PATH  (products.jsonl, FashionIQ or image folder, synthetic:N)
    logs:         $LOGS
    Ctrl-C stops everything.
MSG
# `wait` returns on a signal, so the trap runs at once (a foreground sleep would delay it).
sleep infinity &
PIDS+=($!)
wait $!

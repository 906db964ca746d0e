#!/usr/bin/env bash
# Dynamic batching in `m3search serve`: sequential QPS against 8 and 32 concurrent
# clients, every query distinct, with batching on (the defaults) and off
# (--max-batch-tokens 1: one query per forward pass, as before batching).
#
#   bash Benchmarks/serve_batching.sh [MODEL_DIR] [PRECISION]
#   MODEL_DIR defaults to Fixtures/generated/bge-m3-full-random (python Fixtures/full_size_check.py
#   --flag-only generates it), PRECISION to int8. DURATION=30 CLIENTS=1,8,32 override the load;
#   BIN=path/to/m3search another binary, WORK=dir keeps the index between runs,
#   SKIP_UNBATCHED=1 leaves out the no-batching server.
#
# Indexes the first 12 corpus files (once), starts the release binary on a free port for each
# setting, checks 64 queries alone against 8 concurrent clients (identical answers), then runs
# Benchmarks/serve_load.py, which prints p50/p95/QPS and appends to Benchmarks/results/serve.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-Fixtures/generated/bge-m3-full-random}
PRECISION=${2:-int8}
DURATION=${DURATION:-30}
CLIENTS=${CLIENTS:-1,8,32}
PY=${PY:-/work/venv/bin/python}
WORK=${WORK:-$(mktemp -d)}
BIN=${BIN:-.build/release/m3search}   # BIN=/path/to/m3search measures another build
[ -x "$BIN" ] || swift build -c release --product m3search
mkdir -p "$WORK/docs"
INDEX="$WORK/bench.m3index"
if [ ! -f "$INDEX" ]; then
  ls Fixtures/corpus | grep -v LICENSE | head -12 | while read -r f; do cp "Fixtures/corpus/$f" "$WORK/docs/"; done
  "$BIN" index "$WORK/docs" --index "$INDEX" --model "$MODEL" --precision "$PRECISION"
fi

source Benchmarks/serve_common.sh

run() {  # $1: label, rest: extra serve flags
  local label=$1; shift
  start_server "$PRECISION" "$@" || return 1
  local pid=$SERVER_PID url=$SERVER_URL
  echo "== $label ($url)"
  "$PY" Benchmarks/serve_load.py --url "$url" --clients "$CLIENTS" --duration "$DURATION" --verify 64 \
    --label "$label; model $(basename "$MODEL"), $PRECISION, 12-file index, $(nproc) cores"
  curl -s "$url/metrics" | grep -E '^m3search_search_batch_size_(sum|count)' || true
  kill -TERM "$pid"; wait "$pid" || true
}

run "batching (defaults)"
[ "${SKIP_UNBATCHED:-0}" = 1 ] || run "no batching (--max-batch-tokens 1)" --max-batch-tokens 1

#!/usr/bin/env bash
# Server CPU per answered query: `m3search serve` under CLIENTS closed-loop clients (serve_load.py,
# every query distinct) for DURATION seconds, the server's utime + stime (/proc/PID/stat) over
# that time divided by the queries its batcher encoded. On a machine shared with other work the
# wall-clock QPS of serve_batching.sh moves by 1.5× between runs of one build; CPU per query moves
# far less, so two builds compare by it.
#
#   BIN=path/to/m3search WORK=dir bash Benchmarks/serve_cpu.sh [MODEL_DIR] [PRECISION]
#   CLIENTS=8 DURATION=15; WORK must hold bench.m3index (serve_batching.sh builds it there).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-Fixtures/generated/bge-m3-full-random}
PRECISION=${2:-int8}
CLIENTS=${CLIENTS:-8}
DURATION=${DURATION:-15}
PY=${PY:-/work/venv/bin/python}
BIN=${BIN:-.build/release/m3search}
WORK=${WORK:?WORK must name the folder holding bench.m3index}
INDEX="$WORK/bench.m3index"
source Benchmarks/serve_common.sh
start_server "$PRECISION"
trap 'kill -TERM "$SERVER_PID" 2>/dev/null || true' EXIT
# Warm-up (not counted).
"$PY" Benchmarks/serve_load.py --url "$SERVER_URL" --clients "$CLIENTS" --duration 3 --warmup 1 --out /dev/null > /dev/null
queries() { curl -s "$SERVER_URL/metrics" | awk '/^m3search_search_batch_size_sum/ {print $2}'; }
ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
c0=$(ticks); q0=$(queries); t0=$(date +%s.%N)
"$PY" Benchmarks/serve_load.py --url "$SERVER_URL" --clients "$CLIENTS" --duration "$DURATION" --warmup 0 --out /dev/null
c1=$(ticks); q1=$(queries); t1=$(date +%s.%N)
python3 -c "
n = $q1 - $q0; cpu = ($c1 - $c0) / $(getconf CLK_TCK); wall = $t1 - $t0
print(f'server CPU {1000 * cpu / n:.1f} ms per query ({n:.0f} queries, {cpu / wall:.2f} cores busy)')"

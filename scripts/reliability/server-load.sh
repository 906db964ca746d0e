#!/usr/bin/env bash
# Issue 6, item 8: `m3search serve` under load. 100 concurrent clients on loopback for
# 60 s (wrk), searches mixed with writes; samples the server's RSS every 5 s; then checks
# the limits (oversized body, slow client), the default bind address, SIGTERM and the
# index's integrity. Prints a summary and appends it to scripts/reliability/results/server-load.jsonl.
#
#   bash scripts/reliability/server-load.sh [--model DIR] [--corpus DIR] [--duration 60] [--clients 100] [--precision f32]
#
# Needs wrk and curl (apt-get install wrk curl). Default model: the tiny fixture model,
# which measures the server rather than the encoder.
set -euo pipefail
cd "$(dirname "$0")/../.."
model=Fixtures/models/tiny-safetensors
corpus=Fixtures/corpus
duration=60 clients=100 precision=f32
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2;; --corpus) corpus=$2; shift 2;; --duration) duration=$2; shift 2;;
    --clients) clients=$2; shift 2;; --precision) precision=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
swift build -c release --product m3search >/dev/null
bin=.build/release/m3search
work=$(mktemp -d)
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$work"' EXIT
index=$work/load.m3index
$bin index "$corpus" --index "$index" --model "$model" --precision "$precision" >/dev/null
port=$((20000 + RANDOM % 20000))
# Writes admitted at once: enough for 100 clients, so that a 503 would mean a fault.
$bin serve --index "$index" --model "$model" --precision "$precision" --port "$port" \
  --max-pending-writes 128 --log-level warning 2>"$work/server.log" >"$work/server.out" &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
bound=$(ss -ltnp 2>/dev/null | awk -v p=":$port" '$4 ~ p"$" {print $4}' | head -1)
rss() { awk '/VmRSS/ {print $2}' /proc/$pid/status; }
( while kill -0 $pid 2>/dev/null; do rss; sleep 5; done ) >"$work/rss" &
sampler=$!
wrk -t2 -c"$clients" -d"${duration}s" --timeout 10s -s scripts/reliability/mixed.lua \
  "http://127.0.0.1:$port" | tee "$work/wrk.out"
kill $sampler 2>/dev/null || true
health=$(curl -s "http://127.0.0.1:$port/health")
# Limits: a 9 MiB body gets 413; a client that sends half a request and stalls is cut off.
big=$(head -c $((9 << 20)) /dev/zero | tr '\0' 'a' | curl -s -o /dev/null -w '%{http_code}' \
  -H 'Content-Type: application/json' --data-binary @- "http://127.0.0.1:$port/search")
# A client that sends half a request and stalls is cut off by the read timeout (30 s).
read -r slow slow_secs < <(python3 - "$port" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b'POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"query"')
start = time.time(); s.settimeout(150)
try:
    data = s.recv(200)
    first = data.split(b"\r\n")[0].decode().replace(" ", "_") or "closed"
except socket.timeout:
    first = "still_open"
print(first, round(time.time() - start, 1))
PY
)
kill -TERM $pid
wait $pid && exit_status=0 || exit_status=$?
check=$($bin check --index "$index" --model "$model" 2>&1 | tail -1)
rss_first=$(head -1 "$work/rss"); rss_max=$(sort -n "$work/rss" | tail -1); rss_last=$(tail -1 "$work/rss")
echo "bound=$bound health=$health"
echo "rss_kb first=$rss_first max=$rss_max last=$rss_last samples=$(wc -l <"$work/rss")"
echo "oversized_body_status=$big slow_client='$slow' after ${slow_secs}s"
echo "sigterm_exit=$exit_status check=$check"
mkdir -p scripts/reliability/results
python3 - "$work/wrk.out" "$bound" "$rss_first" "$rss_max" "$rss_last" "$big" "$slow" "$slow_secs" "$exit_status" "$check" "$clients" "$duration" "$model" "$precision" "$work/rss" >>scripts/reliability/results/server-load.jsonl <<'PY'
import json, re, sys, datetime
out = open(sys.argv[1]).read()
nums = {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", out)}
keys = ["requests", "ok", "notfound", "unavailable503", "client4xx", "server5xx", "connect", "read", "write", "timeout", "p50", "p95", "p99", "max"]
rec = {k: nums.get(k) for k in keys}
rec.update(date=datetime.datetime.utcnow().isoformat() + "Z", bound=sys.argv[2], rss_kb_first=int(sys.argv[3]), rss_kb_max=int(sys.argv[4]),
           rss_kb_last=int(sys.argv[5]), oversized_body_status=sys.argv[6], slow_client_response=sys.argv[7], slow_client_seconds=float(sys.argv[8]),
           sigterm_exit=int(sys.argv[9]), check=sys.argv[10], clients=int(sys.argv[11]), duration_s=int(sys.argv[12]), model=sys.argv[13], precision=sys.argv[14],
           rss_kb_series=[int(x) for x in open(sys.argv[15]).read().split()])
m = re.search(r"Requests/sec:\s*([0-9.]+)", out)
rec["requests_per_s"] = float(m.group(1)) if m else None
print(json.dumps(rec))
PY

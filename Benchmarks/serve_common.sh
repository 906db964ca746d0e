# Sourced by serve_batching.sh and serve_peers.sh: starts `m3search serve` on a free port.
#   start_server PRECISION [extra serve flags…]  sets SERVER_PID and SERVER_URL, or returns 1
# Needs BIN, INDEX, MODEL and WORK set.
start_server() {
  local precision=$1; shift
  "$BIN" serve --index "$INDEX" --model "$MODEL" --precision "$precision" --port 0 --log-level warning "$@" \
    > "$WORK/serve.out" 2> "$WORK/serve.err" &
  SERVER_PID=$!
  for _ in $(seq 1500); do grep -q listening "$WORK/serve.out" 2>/dev/null && break; sleep 0.2; done  # loading: minutes under load
  SERVER_URL=$(sed -n 's/^m3search: listening on //p' "$WORK/serve.out")
  [ -n "$SERVER_URL" ] || { echo "the server did not start in 5 minutes" >&2; kill -TERM "$SERVER_PID"; return 1; }
}

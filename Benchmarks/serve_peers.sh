#!/usr/bin/env bash
# m3search serve (float32 and int8, dynamic batching on) against infinity-emb (an embedding
# server that batches dynamically, PyTorch CPU, float32) in one run, the same clients and
# the same distinct queries (Benchmarks/serve_load.py), one server at a time.
#
#   bash Benchmarks/serve_peers.sh [MODEL_DIR]
#   MODEL_DIR defaults to Fixtures/generated/bge-m3-full-random. DURATION=30 CLIENTS=1,8,32
#   override the load; BIN=path/to/m3search another binary; WORK=dir keeps the index;
#   INFINITY=/work/venv-infinity/bin/infinity_emb (python3 -m venv /work/venv-infinity &&
#   /work/venv-infinity/bin/pip install "infinity-emb[server,torch]" sentencepiece protobuf).
#
# Not the same work: m3search answers a hybrid search (dense + sparse + ColBERT heads, then
# the three searches and fusion over a 12-file index); infinity only returns the dense
# embedding. infinity gets the model folder with a tokenizer.json beside the weights (made
# from sentencepiece.bpe.model by transformers' converter), pooling CLS as BGE-M3 does.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$(cd "${1:-Fixtures/generated/bge-m3-full-random}" && pwd)
DURATION=${DURATION:-30}
CLIENTS=${CLIENTS:-1,8,32}
PY=${PY:-/work/venv/bin/python}
INFINITY=${INFINITY:-/work/venv-infinity/bin/infinity_emb}
WORK=${WORK:-$(mktemp -d)}
BIN=${BIN:-.build/release/m3search}
[ -x "$BIN" ] || swift build -c release --product m3search
mkdir -p "$WORK/docs"
INDEX="$WORK/bench.m3index"
if [ ! -f "$INDEX" ]; then
  ls Fixtures/corpus | grep -v LICENSE | head -12 | while read -r f; do cp "Fixtures/corpus/$f" "$WORK/docs/"; done
  "$BIN" index "$WORK/docs" --index "$INDEX" --model "$MODEL" --precision int8
fi
LABEL_TAIL="model $(basename "$MODEL"), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

source Benchmarks/serve_common.sh

m3search() {  # $1: precision
  start_server "$1" || return 1
  local pid=$SERVER_PID url=$SERVER_URL
  echo "== m3search $1 ($url)"
  "$PY" Benchmarks/serve_load.py --url "$url" --clients "$CLIENTS" --duration "$DURATION" \
    --label "peers: m3search serve $1, batching (defaults), hybrid search, 12-file index; $LABEL_TAIL"
  kill -TERM "$pid"; wait "$pid" || true
}

infinity() {
  local folder="$WORK/infinity-model"
  if [ ! -d "$folder" ]; then
    mkdir -p "$folder"
    for f in config.json pytorch_model.bin model.safetensors sentencepiece.bpe.model tokenizer_config.json special_tokens_map.json; do
      [ -e "$MODEL/$f" ] && ln -s "$MODEL/$f" "$folder/$f"
    done
    # The fast tokenizer infinity (sentence-transformers) loads; pooling: BGE-M3's CLS.
    "$(dirname "$INFINITY")/python" -c "
import sys; from transformers import XLMRobertaTokenizerFast
XLMRobertaTokenizerFast.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[1] + '/fast')" "$folder"
    cp "$folder/fast/tokenizer.json" "$folder/"
  fi
  local port=7997
  HF_HUB_OFFLINE=1 INFINITY_ANONYMOUS_USAGE_STATS=0 DO_NOT_TRACK=1 "$INFINITY" v2 --model-id "$folder" \
    --served-model-name m3 --device cpu --engine torch --dtype float32 --pooling-method cls --batch-size 32 \
    --port "$port" --log-level warning > "$WORK/infinity.out" 2>&1 &
  local pid=$!
  for _ in $(seq 900); do curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1 && break; sleep 0.2; done
  echo "== infinity-emb $("$(dirname "$INFINITY")/python" -c 'import infinity_emb; print(infinity_emb.__version__)') (http://127.0.0.1:$port)"
  "$PY" Benchmarks/serve_load.py --url "http://127.0.0.1:$port" --target embeddings --model m3 \
    --clients "$CLIENTS" --duration "$DURATION" \
    --label "peers: infinity-emb torch float32 CPU, batch-size 32, dense embedding only; $LABEL_TAIL"
  kill -TERM "$pid"; wait "$pid" || true
}

uptime
m3search f32
m3search int8
infinity
uptime

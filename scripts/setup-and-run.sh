#!/usr/bin/env bash
# Fresh machine → working m3search: install system libraries, build the release binary,
# then encode and score sample texts. Uses $M3SEARCH_MODEL (a BAAI/bge-m3 folder) when
# set, else the small random-weight model committed under Fixtures/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
bash scripts/install-deps.sh
swift build -c release --product m3search
bin=.build/release/m3search
model="${M3SEARCH_MODEL:-Fixtures/models/tiny-safetensors}"
echo "== model: $model"
echo "== encode (dense size, sparse terms, ColBERT vectors per text)"
printf '%s\n' '{"text": "BGE-M3 gives dense, sparse and ColBERT views of a text."}' \
              '{"text": "Swift ist eine Programmiersprache."}' \
              '{"text": "多语言检索"}' |
  "$bin" encode --model "$model" --max-length 512 |
  python3 -c 'import sys, json
for line in sys.stdin:
    o = json.loads(line)
    print(len(o["input_ids"]), "tokens:", len(o["dense"]), "dense,", len(o["sparse"]), "sparse,", len(o["colbert"]), "ColBERT")'
echo "== score"
printf '%s\n' '{"query": "what does BGE-M3 produce?", "passage": "BGE-M3 gives dense, sparse and ColBERT views of a text."}' |
  "$bin" score --model "$model"

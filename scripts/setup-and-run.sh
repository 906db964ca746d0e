#!/usr/bin/env bash
# Fresh machine → working m3search: install system libraries, build the release binary,
# index the committed corpus and answer a query, then encode and score a pair.
# Uses $M3SEARCH_MODEL (a BAAI/bge-m3 folder) when set, else the small random-weight
# model committed under Fixtures/ (meaningless rankings, but every stage runs).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
bash scripts/install-deps.sh
swift build -c release --product m3search
bin=.build/release/m3search
model="${M3SEARCH_MODEL:-Fixtures/models/tiny-safetensors}"
index="${M3SEARCH_INDEX:-Indexes/demo.m3index}"
echo "== model: $model"
echo "== index Fixtures/corpus → $index"
"$bin" index Fixtures/corpus --index "$index" --model "$model"
echo "== query"
"$bin" query "how does the with statement manage resources" --index "$index" --model "$model" --k 5 --explain
echo "== encode + score"
printf '%s\n' '{"query": "what does BGE-M3 produce?", "passage": "BGE-M3 gives dense, sparse and ColBERT views of a text."}' |
  "$bin" score --model "$model"

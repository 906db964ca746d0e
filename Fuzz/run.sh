#!/usr/bin/env bash
# Builds the libFuzzer targets and runs each for SECONDS (default 600) from the committed
# seed corpus (Fuzz/corpus/<target>), growing a working corpus under Fuzz/work/ (ignored).
#   usage: [FUZZ_SKIP_BUILD=1] Fuzz/run.sh [seconds] [target...]      targets: safetensors pickle html index config tokenizer zip xml pdf
# Crashes are written to Fuzz/work/<target>/artifacts/. To shrink the committed corpora
# afterwards: Fuzz/run.sh merge
set -euo pipefail
cd "$(dirname "$0")"
# Let libFuzzer, not Swift's backtracer, handle crashes, so it saves the input.
export SWIFT_BACKTRACE=enable=no
[ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
# FUZZ_SKIP_BUILD=1 reuses the binaries, so several run.sh can start at once (each build
# would otherwise wait for the others' lock on .build).
[ "${FUZZ_SKIP_BUILD:-}" = 1 ] || swift build -c release --sanitize=fuzzer -Xswiftc -enable-testing >/dev/null
declare -A binary=([zip]=FuzzZip [xml]=FuzzXML [pdf]=FuzzPDF [safetensors]=FuzzSafeTensors [pickle]=FuzzPickle [html]=FuzzHTML [index]=FuzzIndex [config]=FuzzConfig [tokenizer]=FuzzTokenizer)
declare -A maxlen=([zip]=16384 [xml]=8192 [pdf]=16384 [safetensors]=8192 [pickle]=4096 [html]=8192 [index]=65536 [config]=4096 [tokenizer]=16384)

if [ "${1:-}" = merge ]; then
  # Add to the committed corpus a smallest set of grown inputs covering the features it
  # lacks (set cover), so it stays small. The index corpus is not merged: its inputs are whole
  # index files (~36 KB each); the committed seed regrows it in seconds.
  shift
  targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(safetensors pickle html config tokenizer zip xml pdf)
  for t in "${targets[@]}"; do
    [ -d "work/$t/corpus" ] || continue
    # The committed inputs stay (hand-made hostile seeds document attacks even when they
    # add no coverage); of the grown ones, only a set cover of what they add is kept.
    rm -rf "work/$t/min" && mkdir -p "work/$t/min" && cp -rp "corpus/$t/." "work/$t/min/"
    ".build/release/${binary[$t]}" -set_cover_merge=1 -max_len="${maxlen[$t]}" "work/$t/min" "work/$t/corpus" 2>&1 | tail -n 2
    rm -rf "corpus/$t" && mv "work/$t/min" "corpus/$t"
  done
  exit 0
fi

seconds="${1:-600}"; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(safetensors pickle html index config tokenizer zip xml pdf)
for t in "${targets[@]}"; do
  mkdir -p "work/$t/corpus" "work/$t/artifacts"
  echo "== $t: ${seconds}s"
  ".build/release/${binary[$t]}" "work/$t/corpus" "corpus/$t" -max_total_time="$seconds" -max_len="${maxlen[$t]}" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="work/$t/artifacts/" 2>&1 | tee "work/$t/log.txt" | tail -n 25
done

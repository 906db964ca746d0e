#!/usr/bin/env python3
"""Full-size parity check: the real BGE-M3 shape (hidden 1024, 24 layers, 16 heads,
intermediate 4096, 568 M encoder parameters) with random weights.

    python Fixtures/full_size_check.py --m3search .build/release/m3search
    python Fixtures/full_size_check.py --flag-only        # only time FlagEmbedding

1. Generates Fixtures/generated/bge-m3-full-random/ (pytorch_model.bin, float32,
   ~2.3 GB; Fixtures/generated/ is git-ignored) unless it is already there
   (--regenerate forces it). Takes ~1-2 minutes and ~5.3 GB of memory.
2. Writes Fixtures/generated/full-size-texts.jsonl (20 texts: 18 of texts.py, including
   the ~1500-token one, and one of about 4,000 tokens) and full-size-pairs.jsonl.
3. Runs check_parity.py on them at max length 8192 with FlagEmbedding one text at a
   time (--batch-size 1: FlagEmbedding's default of 256 would pad all 20 texts to
   4,000 tokens, ~20x the work and ~20 GB of attention scores) and writes
   Fixtures/full-size-parity.json.
"""
import argparse, json, os, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from texts import TEXT_BY_NAME, long_text  # noqa: E402

MODEL_DIR = os.path.join(HERE, "generated", "bge-m3-full-random")
GENERATE = ["--full", "--seed", "3", "--qk-scale", "2", "--attn-scale", "1", "--mix-layers", "2",
            "--late-attn-scale", "0.2", "--ffn-scale", "1", "--weights-format", "bin",
            "--weights-dtype", "float32", "--heads-dtype", "float32"]
TEXT_NAMES = ["english_short", "english_paragraph", "german", "french", "russian", "greek",
              "arabic_rtl", "hebrew_rtl", "hindi", "thai", "chinese", "japanese", "korean",
              "emoji", "combining_marks", "literal_special_tokens", "trailing_whitespace",
              "empty", "long_1500"]
LONG_4000 = long_text(196, seed=3)  # 3,996 tokens
PAIRS = [("What is the capital of Russia?", TEXT_BY_NAME["russian"]),
         ("北京 首都", TEXT_BY_NAME["chinese"]),
         ("pizza 🍕", TEXT_BY_NAME["emoji"]),
         ("ירושלים", TEXT_BY_NAME["hebrew_rtl"]),
         ("capital city", TEXT_BY_NAME["long_1500"]),
         ("Apollo Moon landing", LONG_4000),
         ("富士山の標高", LONG_4000),
         ("", TEXT_BY_NAME["english_short"]),
         ("anything", TEXT_BY_NAME["empty"]),
         ("hybrid search", TEXT_BY_NAME["english_paragraph"])]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--m3search", default=os.environ.get("M3SEARCH"),
                    help="the m3search binary (default: $M3SEARCH)")
    ap.add_argument("--flag-only", action="store_true",
                    help="run only the FlagEmbedding half (timing)")
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--out", help="default: Fixtures/full-size-parity.json, or with --flag-only "
                                  "Fixtures/generated/full-size-flag-only.json")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args(argv)
    if not args.flag_only and not args.m3search:
        ap.error("give --m3search PATH (or set M3SEARCH), or --flag-only")

    if not args.out:
        args.out = os.path.join(HERE, "generated", "full-size-flag-only.json") if args.flag_only \
            else os.path.join(HERE, "full-size-parity.json")
    py = sys.executable
    timings = {}
    if args.regenerate or not os.path.exists(os.path.join(MODEL_DIR, "pytorch_model.bin")):
        t0 = time.time()
        subprocess.run([py, os.path.join(HERE, "generate_models.py"), *GENERATE,
                        "--out", MODEL_DIR], check=True)
        timings["generate_seconds"] = round(time.time() - t0, 1)

    gen = os.path.join(HERE, "generated")
    texts_path = os.path.join(gen, "full-size-texts.jsonl")
    pairs_path = os.path.join(gen, "full-size-pairs.jsonl")
    with open(texts_path, "w", encoding="utf-8") as f:
        for name in TEXT_NAMES:
            f.write(json.dumps({"name": name, "text": TEXT_BY_NAME[name]}, ensure_ascii=False) + "\n")
        f.write(json.dumps({"name": "long_4000", "text": LONG_4000}, ensure_ascii=False) + "\n")
    with open(pairs_path, "w", encoding="utf-8") as f:
        for q, p in PAIRS:
            f.write(json.dumps({"query": q, "passage": p}, ensure_ascii=False) + "\n")

    cmd = [py, os.path.join(HERE, "check_parity.py"), MODEL_DIR, "--max-length", "8192",
           "--texts", texts_path, "--pairs", pairs_path, "--batch-size", "1",
           "--tolerance", str(args.tolerance), "--out", args.out]
    cmd += ["--flag-only"] if args.flag_only else ["--m3search", args.m3search]
    t0 = time.time()
    rc = subprocess.run(cmd).returncode
    timings["check_parity_seconds"] = round(time.time() - t0, 1)
    if os.path.exists(args.out):
        result = json.load(open(args.out, encoding="utf-8"))
        result["full_size_check"] = timings | {"generate_args": GENERATE}
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1, ensure_ascii=False)
            f.write("\n")
    print(json.dumps(timings))
    return rc


if __name__ == "__main__":
    sys.exit(main())

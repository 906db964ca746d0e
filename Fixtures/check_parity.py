#!/usr/bin/env python3
"""Parity check of an m3search binary against FlagEmbedding, from the outside.

    python Fixtures/check_parity.py MODEL_DIR --m3search PATH_TO_BINARY \
        [--max-length 8192 --max-length 128] [--texts FILE.jsonl] [--pairs FILE.jsonl] \
        [--out RESULT.json] [--tolerance 1e-4]

For each max length it encodes the texts (texts.py's set, or a JSONL file of {"text": ...})
with FlagEmbedding (BGEM3FlagModel(folder, use_fp16=False, devices="cpu"), on a copy of
MODEL_DIR with tokenizer.json added) and with

    PATH_TO_BINARY encode --model MODEL_DIR --max-length N
        stdin: {"text": ...} per line
        stdout: {"input_ids": [...], "dense": [...], "sparse": {"<id>": w},
                 "colbert": [[...]]} per line, in input order

and scores query/passage pairs with FlagEmbedding's per-text functions (both sides
encoded at max length 8192) and with

    PATH_TO_BINARY score --model MODEL_DIR --weights 0.4,0.3,0.3
        stdin: {"query": ..., "passage": ...} per line
        stdout: {"dense", "sparse", "colbert", "sparse+dense", "colbert+sparse+dense"}

It reports whether input_ids are identical, the max |difference| of every output and
score, whether the sparse key sets are equal and the smallest dense cosine between the
two sides, and exits 1 when anything is over the tolerance (2 when the binary fails).
A sparse key present on one side only counts as a failure when its weight exceeds the
tolerance (a weight within float noise of 0 may fall either side of relu); --strict-keys
makes any key-set difference fail.

--flag-only runs just the FlagEmbedding half and writes its outputs (--dump FILE) -- the
way to time it or to test this script without a binary.
"""
import argparse, json, math, os, shlex, subprocess, sys, tempfile, time

os.environ.setdefault("TQDM_DISABLE", "1")  # FlagEmbedding's progress bars

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import flag_m3  # noqa: E402
from texts import TEXTS, SCORE_PAIRS, TEXT_BY_NAME  # noqa: E402

GENERIC_QUERIES = ["capital city", "search engine ranking", "北京", "Москва", "emoji 🍕",
                   "history of the river", "machine learning", ""]
SCORE_KEYS = ("dense", "sparse", "colbert", "sparse+dense", "colbert+sparse+dense")


# ------------------------------------------------------------------ input

def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_texts(args):
    if not args.texts:
        return [n for n, _ in TEXTS], [t for _, t in TEXTS]
    rows = read_jsonl(args.texts)
    return [r.get("name", f"text{i}") for i, r in enumerate(rows)], [r["text"] for r in rows]


def load_pairs(args, names, texts):
    if args.pairs:
        return [(r["query"], r["passage"]) for r in read_jsonl(args.pairs)]
    if not args.texts:
        return [(q, TEXT_BY_NAME[p]) for q, p in SCORE_PAIRS]
    return [(GENERIC_QUERIES[i % len(GENERIC_QUERIES)], t) for i, t in enumerate(texts)]


# ------------------------------------------------------------------ the binary

class BinaryError(Exception):
    pass


def run_binary(cmd, requests, timeout):
    """Run cmd with stdin from a file and stdout to a file (no pipe deadlocks whatever
    the output size); return one parsed JSON object per request."""
    with tempfile.TemporaryDirectory(prefix="m3-parity-") as tmp:
        inp, outp, errp = (os.path.join(tmp, n) for n in ("in.jsonl", "out.jsonl", "err.txt"))
        with open(inp, "w", encoding="utf-8") as f:
            for r in requests:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        t0 = time.time()
        with open(inp, "rb") as fi, open(outp, "wb") as fo, open(errp, "wb") as fe:
            try:
                proc = subprocess.run(cmd, stdin=fi, stdout=fo, stderr=fe, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise BinaryError(f"{' '.join(cmd)} timed out after {timeout} s")
            except OSError as e:
                raise BinaryError(f"cannot run {cmd[0]}: {e}")
        seconds = time.time() - t0
        err = open(errp, encoding="utf-8", errors="replace").read()
        if proc.returncode != 0:
            raise BinaryError(f"{' '.join(cmd)} exited {proc.returncode}\n{err[-4000:]}")
        with open(outp, encoding="utf-8") as f:
            lines = [line for line in f.read().split("\n") if line.strip()]
        if len(lines) != len(requests):
            raise BinaryError(f"{' '.join(cmd)}: {len(lines)} output lines for "
                              f"{len(requests)} inputs\n{err[-4000:]}")
        try:
            return [json.loads(line) for line in lines], seconds
        except json.JSONDecodeError as e:
            raise BinaryError(f"{' '.join(cmd)}: output is not JSON Lines: {e}")


# ------------------------------------------------------------------ comparison

def _arr(x):
    return np.asarray(x, dtype=np.float64)


def compare_item(ref, got, tol, strict_keys):
    """Differences for one text. ref: FlagEmbedding record, got: the binary's."""
    r = {"input_ids_equal": list(ref["input_ids"]) == [int(t) for t in got.get("input_ids", [])]}
    if not r["input_ids_equal"]:
        a, b = list(ref["input_ids"]), list(got.get("input_ids", []))
        first = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
        r["input_ids_first_difference"] = {"index": first, "flag": a[first:first + 8],
                                           "m3search": b[first:first + 8],
                                           "flag_len": len(a), "m3search_len": len(b)}
    # dense
    rd, gd = _arr(ref["dense"]), _arr(got.get("dense", []))
    if rd.shape != gd.shape:
        r["dense_shape"] = {"flag": list(rd.shape), "m3search": list(gd.shape)}
        r["dense_max_abs"], r["dense_cos"] = math.inf, -1.0
    else:
        r["dense_max_abs"] = float(np.max(np.abs(rd - gd))) if rd.size else 0.0
        den = np.linalg.norm(rd) * np.linalg.norm(gd)
        r["dense_cos"] = float(rd @ gd / den) if den > 0 else (1.0 if not rd.any() and not gd.any() else 0.0)
    # sparse
    rs = {str(k): float(v) for k, v in ref["sparse"].items()}
    gs = {str(k): float(v) for k, v in got.get("sparse", {}).items()}
    keys = set(rs) | set(gs)
    r["sparse_keys_equal"] = set(rs) == set(gs)
    only = sorted(set(rs) ^ set(gs))
    if only:
        r["sparse_keys_only_one_side"] = {k: {"flag": rs.get(k), "m3search": gs.get(k)} for k in only[:20]}
    r["sparse_max_abs"] = max((abs(rs.get(k, 0.0) - gs.get(k, 0.0)) for k in keys), default=0.0)
    r["sparse_key_fail"] = bool(only) and (strict_keys or any(
        abs(rs.get(k, 0.0) - gs.get(k, 0.0)) > tol for k in only))
    # colbert
    rc, gc = _arr(ref["colbert"]), _arr(got.get("colbert", []))
    if rc.size == 0 and gc.size == 0:
        r["colbert_max_abs"] = 0.0
    elif rc.shape != gc.shape:
        r["colbert_shape"] = {"flag": list(rc.shape), "m3search": list(gc.shape)}
        r["colbert_max_abs"] = math.inf
    else:
        r["colbert_max_abs"] = float(np.max(np.abs(rc - gc)))
    r["ok"] = (r["input_ids_equal"] and r["dense_max_abs"] <= tol and r["sparse_max_abs"] <= tol
               and not r["sparse_key_fail"] and r["colbert_max_abs"] <= tol)
    return r


def summarize_encode(per_text):
    return {
        "texts": len(per_text),
        "input_ids_identical": all(p["input_ids_equal"] for p in per_text),
        "dense_max_abs": max(p["dense_max_abs"] for p in per_text),
        "dense_cos_min": min(p["dense_cos"] for p in per_text),
        "sparse_max_abs": max(p["sparse_max_abs"] for p in per_text),
        "sparse_key_sets_equal": all(p["sparse_keys_equal"] for p in per_text),
        "colbert_max_abs": max(p["colbert_max_abs"] for p in per_text),
        "failing_texts": [p["name"] for p in per_text if not p["ok"]],
    }


def compare_scores(ref, got, tol):
    rows, worst = [], {k: 0.0 for k in SCORE_KEYS}
    for (q, p), a, b in zip(ref["pairs"], ref["scores"], got):
        row = {"query": q, "passage": p[:60]}
        for k in SCORE_KEYS:
            d = abs(a[k] - float(b[k])) if k in b and b[k] is not None else math.inf
            row[k] = d
            worst[k] = max(worst[k], d)
        row["ok"] = all(row[k] <= tol for k in SCORE_KEYS)
        rows.append(row)
    return worst, rows


# ------------------------------------------------------------------ FlagEmbedding half

def flag_side(model_dir, names, texts, pairs, max_lengths, batch_size, do_scores, weights):
    res = {"encodings": {}, "timings": {}}
    with flag_m3.FlagModelDir(model_dir) as folder:
        t0 = time.time()
        m = flag_m3.load_flag_model(folder)
        res["timings"]["load"] = time.time() - t0
        raw = {}
        for n in max_lengths:
            t0 = time.time()
            out, ids = flag_m3.encode(m, texts, n, batch_size=batch_size)
            res["timings"][f"encode_{n}"] = time.time() - t0
            raw[n] = (out, ids)
            res["encodings"][n] = flag_m3.to_items(texts, out, ids, names)
            print(f"[flag] max_length {n}: {len(texts)} texts, max {max(len(i) for i in ids)} "
                  f"tokens, {res['timings'][f'encode_{n}']:.1f} s", file=sys.stderr)
        if do_scores:
            # Both sides of every pair at max_length 8192; texts already encoded at 8192
            # above are reused (one text at a time gives the same numbers either way
            # with --batch-size 1).
            t0 = time.time()
            recs = {}
            if 8192 in raw:
                out, ids = raw[8192]
                for i, t in enumerate(texts):
                    recs.setdefault(t, flag_m3.raw_record(out, ids, i))
            todo = sorted(({q for q, _ in pairs} | {p for _, p in pairs}) - set(recs))
            if todo:
                out, ids = flag_m3.encode(m, todo, 8192, batch_size=batch_size)
                for i, t in enumerate(todo):
                    recs[t] = flag_m3.raw_record(out, ids, i)
            res["pairs"] = pairs
            res["scores"] = [flag_m3.pair_scores(m, recs[q], recs[p], weights) for q, p in pairs]
            res["timings"]["scores"] = time.time() - t0
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description="m3search vs FlagEmbedding parity check")
    ap.add_argument("model_dir")
    ap.add_argument("--m3search", help="path to the m3search binary (or any command with "
                                       "the same protocol, e.g. 'python3 mock_m3search.py')")
    ap.add_argument("--max-length", type=int, action="append", dest="max_lengths",
                    help="repeatable; default 8192 and 128")
    ap.add_argument("--texts", help="JSONL of {\"text\": ...} (optional \"name\")")
    ap.add_argument("--pairs", help="JSONL of {\"query\": ..., \"passage\": ...}")
    ap.add_argument("--no-scores", action="store_true")
    ap.add_argument("--weights", default="0.4,0.3,0.3")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--strict-keys", action="store_true")
    ap.add_argument("--batch-size", type=int, default=1,
                    help="FlagEmbedding batch size (1: no padding; FlagEmbedding's own "
                         "default is 256, which pads every text to the longest one)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per binary call, seconds")
    ap.add_argument("--out", help="write the result summary (JSON) here")
    ap.add_argument("--flag-only", action="store_true", help="run only the FlagEmbedding half")
    ap.add_argument("--dump", help="with --flag-only: write FlagEmbedding's outputs here")
    args = ap.parse_args(argv)
    if not args.flag_only and not args.m3search:
        ap.error("--m3search is required (or --flag-only)")
    max_lengths = args.max_lengths or [8192, 128]
    weights = [float(x) for x in args.weights.split(",")]
    assert len(weights) == 3
    names, texts = load_texts(args)
    pairs = load_pairs(args, names, texts)
    do_scores = not args.no_scores and bool(pairs)

    t0 = time.time()
    ref = flag_side(args.model_dir, names, texts, pairs, max_lengths, args.batch_size,
                    do_scores, weights)
    result = {"model_dir": os.path.abspath(args.model_dir), "tolerance": args.tolerance,
              "max_lengths": max_lengths, "texts": len(texts),
              "token_counts": {str(n): [len(it["input_ids"]) for it in ref["encodings"][n]]
                               for n in max_lengths},
              "versions": flag_m3.versions(), "batch_size": args.batch_size,
              "flag_seconds": {k: round(v, 2) for k, v in ref["timings"].items()}}

    if args.flag_only:
        result["flag_total_seconds"] = round(time.time() - t0, 2)
        if args.dump:
            with open(args.dump, "w", encoding="utf-8") as f:
                json.dump({"encodings": {str(k): v for k, v in ref["encodings"].items()},
                           "pairs": ref.get("pairs"), "scores": ref.get("scores")}, f,
                          ensure_ascii=False)
        _write(args.out, result)
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0

    base = [args.m3search] if os.path.exists(args.m3search) else shlex.split(args.m3search)
    ok = True
    result["encode"], result["m3search_seconds"] = {}, {}
    try:
        for n in max_lengths:
            got, secs = run_binary(base + ["encode", "--model", args.model_dir, "--max-length", str(n)],
                                   [{"text": t} for t in texts], args.timeout)
            result["m3search_seconds"][f"encode_{n}"] = round(secs, 2)
            per_text = []
            for item, g in zip(ref["encodings"][n], got):
                c = compare_item(item, g, args.tolerance, args.strict_keys)
                per_text.append({"name": item["name"]} | c)
            summary = summarize_encode(per_text)
            result["encode"][str(n)] = summary | {"per_text": per_text}
            ok &= not summary["failing_texts"]
        if do_scores:
            got, secs = run_binary(base + ["score", "--model", args.model_dir, "--weights", args.weights],
                                   [{"query": q, "passage": p} for q, p in pairs], args.timeout)
            result["m3search_seconds"]["score"] = round(secs, 2)
            worst, rows = compare_scores(ref, got, args.tolerance)
            result["scores"] = {"pairs": len(pairs), "max_abs": worst,
                                "failing_pairs": [i for i, r in enumerate(rows) if not r["ok"]],
                                "per_pair": rows}
            ok &= all(r["ok"] for r in rows)
    except BinaryError as e:
        result["error"] = str(e)
        _write(args.out, result)
        print(f"ERROR: {e}", file=sys.stderr)
        return 2

    result["ok"] = bool(ok)
    _write(args.out, result)
    _print_report(result)
    return 0 if ok else 1


def _write(path, result):
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1, ensure_ascii=False)
            f.write("\n")


def _print_report(result):
    tol = result["tolerance"]
    for n, s in result["encode"].items():
        print(f"max_length {n}: {s['texts']} texts | input_ids identical: {s['input_ids_identical']} | "
              f"dense max|Δ| {s['dense_max_abs']:.3g}, min cos {s['dense_cos_min']:.9f} | "
              f"sparse max|Δ| {s['sparse_max_abs']:.3g}, key sets equal: {s['sparse_key_sets_equal']} | "
              f"colbert max|Δ| {s['colbert_max_abs']:.3g}")
        for p in s["per_text"]:
            if not p["ok"]:
                print(f"   FAIL {p['name']}: " + json.dumps(
                    {k: v for k, v in p.items() if k not in ("name", "ok")}, ensure_ascii=False)[:600])
    if "scores" in result:
        s = result["scores"]
        print(f"scores: {s['pairs']} pairs | " + ", ".join(
            f"{k} max|Δ| {v:.3g}" for k, v in s["max_abs"].items()))
        for i in s["failing_pairs"]:
            print(f"   FAIL pair {i}: {s['per_pair'][i]}")
    print(f"{'PASS' if result['ok'] else 'FAIL'} (tolerance {tol})")


if __name__ == "__main__":
    sys.exit(main())

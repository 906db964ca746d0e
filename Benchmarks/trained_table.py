#!/usr/bin/env python3
"""BENCHMARKS.md's "Storage on trained weights" tables, and `StorageCost.measured`'s rows,
from Benchmarks/results/trained_eval.jsonl (written by Benchmarks/trained_eval.py).

For each model the newest record of each (ColBERT, dense) storage pair is used. "default"
is per model: the storage `SearchIndex.defaultColBERTStorage(dimension:)` picks at its
dimension (the most faithful ColBERT codec within 300 bytes per row: int8 up to 296-d, pq2
at 384-d, pq4 at 768- and 1024-d) with int8 dense. Prints Markdown (--markdown, the
default), the Swift rows of `StorageCost.measured` (--swift; a ColBERT codec's cost is its
record with exact f32 dense, a dense codec's its record with exact f16 ColBERT), or the
default-against-exact check (--check: exits 1 unless (a) on the trained model the default
loses at most 0.005 nDCG@10 in every mode, brute force and `m3search eval` alike, (b) on
each random model its hybrid top-10 overlap with exact storage is at least 0.99, and (c)
the default ColBERT row at 1024-d takes at most 300 bytes).

Usage: python Benchmarks/trained_table.py [--results FILE] [--markdown | --swift | --check]
"""
import argparse, json, os, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ["dense", "sparse", "colbert", "dense+sparse", "dense+sparse+colbert"]
HEAD = ["dense", "sparse", "ColBERT", "dense+sparse", "all three"]
EXACT, INT8, OLD = ("f16", "f32"), ("int8", "int8"), ("pq16", "int8")
MAX_LOSS, MIN_OVERLAP = 0.005, 0.99
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trained_eval import ROW_BUDGET, default_storage as default_pair  # noqa: E402 (the one copy of the rule)


def order(d):
    default = default_pair(d)
    return [EXACT, default] + [p for p in [INT8, ("int8", "f32"), ("f16", "int8"), ("f16", "f16"), OLD, ("pq2", "f32"),
                                           ("pq4", "f32"), ("pq8", "f32"), ("pq16", "f32"), ("pq32", "f32"),
                                           ("pq64", "f32"), ("binary", "f32")] if p != default]


def label(p, d):
    if p == EXACT:
        return "exact"
    if p == default_pair(d):
        return "default"
    return {INT8: "default before the 300-byte budget", OLD: "default before issue 12"}.get(p)


def colbert_bytes(codec, d):
    """Bytes per ColBERT row of `d` dimensions (ColBERTStorage.bytesPerRow)."""
    if codec == "f16":
        return 2 * d
    if codec == "int8":
        return 4 + d
    if codec == "binary":
        return 4 + d // 8
    return d // int(codec[2:])


def load(path):
    """{model_path: {(colbert, dense): newest record}} in file order of first appearance."""
    out = {}
    for line in open(path):
        r = json.loads(line)
        out.setdefault(r["model_path"], {})[(r["colbert_storage"], r["dense_storage"])] = r
    return out


def describe(recs):
    r = next(iter(recs.values()))
    kind = "trained" if r["model"] == "e5" else "random"
    return (f"`{r['model_path']}` ({kind}, {r['dimension']}-d, {r['pooling']} pooling): {r['documents']} documents, "
            f"{r['chunks']} chunks, {r['colbert_rows']:,} ColBERT rows, {r['queries']} held-out queries; "
            f"measured {r['date']}" + (f", commit {r['commit']}" if r.get("commit") else ""))


def dim(recs):
    return next(iter(recs.values()))["dimension"]


def pairs(recs):
    o = order(dim(recs))
    return [p for p in o if p in recs] + sorted(p for p in recs if p not in o)


def name(p, d):
    return f"{p[0]} / {p[1]}" + (f" ({label(p, d)})" if label(p, d) else "")


def f4(x):
    return f"{x:.4f}"


def loss(x):
    return "0" if abs(x) < 5e-5 else f"{x:+.4f}".replace("-", "−")


def markdown(data):
    lines = []
    for model, recs in data.items():
        if EXACT not in recs:
            continue
        ex = recs[EXACT]["metrics"]
        d = recs[EXACT]["dimension"]
        lines += [f"#### {describe(recs)}", ""]
        lines += [f"nDCG@10 per mode (exact: the value; other storages: exact minus theirs, positive = worse), "
                  f"and top-10 document overlap with exact storage:", ""]
        lines += ["| ColBERT / dense | ColBERT bytes/row at 1024-d (here) | " + " | ".join(HEAD) +
                  " | hybrid overlap | ColBERT overlap |", "|---|---:|" + "---:|" * (len(HEAD) + 2)]
        for p in pairs(recs):
            r = recs[p]
            cells = [f4(ex[m]["ndcg@10"]) if p == EXACT else loss(ex[m]["ndcg@10"] - r["metrics"][m]["ndcg@10"])
                     for m in MODES]
            lines.append(f"| {name(p, d)} | {colbert_bytes(p[0], 1024):,} ({colbert_bytes(p[0], d):,}) | " + " | ".join(cells) +
                         f" | {r['hybrid_top10_overlap_vs_exact']:.3f} | {r['colbert_top10_overlap_vs_exact']:.3f} |")
        lines += ["", "Recall@100 / MRR@10 per mode:", ""]
        lines += ["| ColBERT / dense | " + " | ".join(HEAD) + " |", "|---|" + "---:|" * len(HEAD)]
        for p in pairs(recs):
            m = recs[p]["metrics"]
            lines.append(f"| {name(p, d)} | " + " | ".join(f"{m[k]['recall@100']:.4f} / {m[k]['mrr@10']:.4f}" for k in MODES) + " |")
        cli = [(p, recs[p]["cli_eval"]) for p in pairs(recs) if "cli_eval" in recs[p]]
        if cli:
            lines += ["", "`m3search eval --json` (HNSW and candidate generation included), nDCG@10:", ""]
            lines += ["| ColBERT / dense | " + " | ".join(HEAD) + " |", "|---|" + "---:|" * len(HEAD)]
            for p, c in cli:
                lines.append(f"| {name(p, d)} | " + " | ".join(f4(c[k]["ndcg@10"]) for k in MODES) + " |")
        lines.append("")
    return "\n".join(lines)


def before_after(data):
    """nDCG@10 per mode: exact, the previous defaults, the default; max loss of the default."""
    lines = []
    for model, recs in data.items():
        d = dim(recs)
        default = default_pair(d)
        if not all(p in recs for p in (EXACT, default)):
            continue
        lines += [f"{model}:", "| storage | " + " | ".join(HEAD) + " | hybrid overlap |", "|---|" + "---:|" * (len(HEAD) + 1)]
        for p in dict.fromkeys((EXACT, OLD, INT8, default)):
            if p in recs:
                m = recs[p]["metrics"]
                lines.append(f"| {name(p, d)} | " + " | ".join(f4(m[k]["ndcg@10"]) for k in MODES) +
                             f" | {recs[p]['hybrid_top10_overlap_vs_exact']:.3f} |")
        worst = max(recs[EXACT]["metrics"][k]["ndcg@10"] - recs[default]["metrics"][k]["ndcg@10"] for k in MODES)
        lines += [f"default's worst nDCG@10 loss vs exact: {worst:+.4f}", ""]
    return "\n".join(lines)


def check(data):
    """The three bounds of issue 12 item 3 on the default storage; (ok, report lines)."""
    ok, out = True, []
    budget = colbert_bytes(default_pair(1024)[0], 1024)
    good = budget <= ROW_BUDGET
    ok &= good
    out.append(f"(c) default ColBERT row at 1024-d: {default_pair(1024)[0]}, {budget} bytes (≤ {ROW_BUDGET}): "
               f"{'ok' if good else 'FAIL'}")
    trained = False
    for model, recs in data.items():
        d = dim(recs)
        default = default_pair(d)
        kind = next(iter(recs.values()))["model"]
        if EXACT not in recs or default not in recs:
            ok = False
            out.append(f"{model}: default {default[0]}/{default[1]} or exact not measured: FAIL")
            continue
        r, ex = recs[default], recs[EXACT]
        if kind == "e5":
            trained = True
            worst = max(ex["metrics"][k]["ndcg@10"] - r["metrics"][k]["ndcg@10"] for k in MODES)
            good = worst <= MAX_LOSS
            text = f"(a) {model} ({d}-d) default {default[0]}/{default[1]}: worst nDCG@10 loss {worst:+.4f} (brute force)"
            if "cli_eval" in r and "cli_eval" in ex:
                cli = max(ex["cli_eval"][k]["ndcg@10"] - r["cli_eval"][k]["ndcg@10"] for k in MODES)
                good &= cli <= MAX_LOSS
                text += f", {cli:+.4f} (m3search eval)"
            else:
                good = False
                text += ", m3search eval not measured"
        else:
            ov = r["hybrid_top10_overlap_vs_exact"]
            good = ov >= MIN_OVERLAP
            text = f"(b) {model} ({d}-d) default {default[0]}/{default[1]}: hybrid top-10 overlap {ov:.3f}"
        ok &= good
        out.append(f"{text}: {'ok' if good else 'FAIL'}")
    if not trained:
        ok = False
        out.append("(a) no trained-model records: FAIL")
    return ok, out


def swift(data, model):
    recs = data[model]
    def row(component, codec, r):
        l = [round(recs[EXACT]["metrics"][k]["ndcg@10"] - r["metrics"][k]["ndcg@10"], 4) for k in MODES]
        l = "[" + ", ".join("0" if x == 0 else repr(x) for x in l) + "]"
        return (f'        StorageCost(component: "{component}", codec: "{codec}", ndcgLoss: {l}, '
                f'hybridOverlap: {r["hybrid_top10_overlap_vs_exact"]:.3f}, colbertOverlap: {r["colbert_top10_overlap_vs_exact"]:.3f}),')
    out = [row("colbert", c, recs[(c, "f32")]) for c, _ in pairs(recs) if (c, "f32") in recs and _ == "f32"]
    out += [row("dense", d, recs[("f16", d)]) for _, d in pairs(recs) if ("f16", d) in recs and _ == "f16"]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=os.path.join(ROOT, "Benchmarks", "results", "trained_eval.jsonl"))
    ap.add_argument("--swift", action="store_true")
    ap.add_argument("--before-after", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--model", default="Fixtures/generated/e5-small", help="model_path whose rows --swift prints")
    args = ap.parse_args(argv)
    data = load(args.results)
    if args.swift:
        print(swift(data, args.model))
    elif args.before_after:
        print(before_after(data))
    elif args.check:
        ok, lines = check(data)
        print("\n".join(lines))
        return 0 if ok else 1
    else:
        print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())

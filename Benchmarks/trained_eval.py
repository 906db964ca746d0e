#!/usr/bin/env python3
"""Ranking quality of every storage codec against exact storage, on trained and random weights.

For each model (the trained e5-small fixture from Fixtures/convert_e5.py, and a random
model: the full-size one if generated, else Fixtures/models/tiny-safetensors) and each
storage pair (--colbert-storage, --dense-storage), this:

  1. indexes the evaluation set's documents (Fixtures/eval/gettext: 328 English gettext
     messages, one file each) with the CLI;
  2. runs `m3search eval --json` on the held-out queries (qrels/test.tsv): nDCG@10,
     Recall@100 and MRR@10 for dense, sparse, ColBERT, dense+sparse and all three;
  3. exports the index (vectors as stored, decoded) and scores every query against every
     chunk by brute force in NumPy (dense dot, sparse Σ q·d over shared tokens, ColBERT
     mean of max dots; fusion 0.4/0.3/0.3 weighted), and reports the top-10 overlap of
     the hybrid and ColBERT-only document rankings with those of the exact index
     (ColBERT f16, dense f32): the storage's effect alone, no HNSW in between.

The storage "default" (in --storages and --cli-eval) is what `m3search index` picks when no
storage is named: that index is built without storage options (or, with --default-via
import, re-encoded from the exact export into the rule's codecs), and its recorded codecs
must equal default_storage(d), the 300-byte row budget rule of
SearchIndex.defaultColBERTStorage(dimension:) (pq2 at 384-d, pq4 at 1024-d, int8 at 16-d).

e5 wants mean pooling and "query: " / "passage: " prefixes. The prefixes are written into
the texts here (documents' files and queries); pooling is `index --pooling mean` when the
CLI has it, else the index is created through `import` from an empty export whose header
says "pooling": "mean" (the recorded pooling then applies to documents and queries).

Prints one line per (model, storage) and appends records to --out (JSON Lines).

Usage (from the repository root, after `swift build -c release --product m3search` and
`python Fixtures/convert_e5.py`):
  python Benchmarks/trained_eval.py --m3search .build/release/m3search
"""
import argparse, json, os, platform, shutil, subprocess, sys, time

# Small matmuls: threads only contend on a shared machine.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
import numpy as np  # noqa: E402 (after the thread settings)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXACT = ("f16", "f32")
# "default" is the storage `m3search index` picks when none is named (the index is then
# created without --colbert-storage / --dense-storage, and its recorded codecs must be the
# rule's, see default_storage). Then each ColBERT codec with exact dense and each dense codec
# with exact ColBERT (so StorageCost can attribute a loss to one component), and the previous
# defaults (int8/int8, and pq16/int8 before issue 12).
DEFAULT = ("default", "default")
STORAGES = [EXACT, DEFAULT, ("int8", "int8"), ("int8", "f32"), ("binary", "f32"), ("pq2", "f32"), ("pq4", "f32"),
            ("pq8", "f32"), ("pq16", "f32"), ("pq32", "f32"), ("pq64", "f32"), ("f16", "f16"), ("f16", "int8"),
            ("pq16", "int8")]
# SearchIndex.defaultColBERTRowBudget: bytes a default ColBERT row may take.
ROW_BUDGET = 300
PRECISION = []  # --precision for the commands that encode
PQ_STEPS = [2, 4, 8, 16, 32, 64]
MODES = ["dense", "sparse", "colbert", "dense+sparse", "dense+sparse+colbert"]
WEIGHTS = (0.4, 0.3, 0.3)


def default_storage(d):
    """SearchIndex.defaultColBERTStorage(dimension:) and defaultDenseStorage: the most
    faithful ColBERT codec whose row fits ROW_BUDGET bytes (int8, else the pq with the
    fewest values per code that divides d and fits), int8 dense."""
    if d + 4 <= ROW_BUDGET:
        return ("int8", "int8")
    steps = [n for n in PQ_STEPS if d % n == 0]
    fit = [n for n in steps if d // n <= ROW_BUDGET]
    if fit:
        return (f"pq{fit[0]}", "int8")
    return (f"pq{steps[-1]}", "int8") if steps else ("int8", "int8")


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}")
    return r


def load_set(path):
    corpus = [json.loads(l) for l in open(os.path.join(path, "corpus.jsonl"), encoding="utf-8")]
    queries = [json.loads(l) for l in open(os.path.join(path, "queries.jsonl"), encoding="utf-8")]
    qrels = {}
    for split in ("test", "tune"):
        rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(path, "qrels", f"{split}.tsv"))][1:]
        qrels[split] = [(q, d, int(s)) for q, d, s in rows]
    return corpus, queries, qrels


def prepare(work, corpus, queries, qrels, split, prefixes):
    """Documents as files under work/docs, queries and qrels with the ids the index uses."""
    qp, dp = prefixes
    docs = os.path.join(work, "docs")
    os.makedirs(docs, exist_ok=True)
    for d in corpus:
        with open(os.path.join(docs, d["_id"] + ".txt"), "w", encoding="utf-8") as f:
            f.write(dp + d["text"] + "\n")
    wanted = {q for q, _, _ in qrels[split]}
    qs = [q for q in queries if q["_id"] in wanted]
    with open(os.path.join(work, "queries.jsonl"), "w", encoding="utf-8") as f:
        for q in qs:
            f.write(json.dumps({"_id": q["_id"], "text": qp + q["text"]}, ensure_ascii=False) + "\n")
    with open(os.path.join(work, "qrels.tsv"), "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, d, s in qrels[split]:
            f.write(f"{q}\t{doc_id(work, d)}\t{s}\n")
    return [(q["_id"], qp + q["text"]) for q in qs]


def commit():
    """The checkout's commit (the benchmark's and the binary's, when built from it)."""
    r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or None


def doc_id(work, d):
    """A document's id in the index: its file's canonical absolute path."""
    return os.path.realpath(os.path.join(work, "docs", d + ".txt"))


def has_index_pooling(binary):
    return "--pooling" in run([binary, "index", "--help"]).stdout


def create_index(binary, model, work, path, colbert, dense, pooling, max_length):
    """Indexes work/docs with the CLI; colbert/dense None: the CLI's default storage."""
    common = ["--index", path, "--model", model]
    opts = ["--max-length", str(max_length)]
    opts += ["--colbert-storage", colbert] if colbert else []
    opts += ["--dense-storage", dense] if dense else []
    if pooling != "cls" and not has_index_pooling(binary):
        # An empty index with the right settings: export one, set the header's pooling, import.
        empty = os.path.join(work, "empty")
        os.makedirs(empty, exist_ok=True)
        seed = path + ".seed.m3index"
        run([binary, "index", empty, "--index", seed, "--model", model] + opts, cwd=work)
        header = json.loads(run([binary, "export", "--index", seed]).stdout.splitlines()[0])
        header["settings"]["pooling"] = pooling
        hfile = path + ".header.jsonl"
        with open(hfile, "w") as f:
            f.write(json.dumps(header) + "\n")
        run([binary, "import", hfile] + common, cwd=work)
        os.remove(seed)
        run([binary, "index", "docs"] + common + opts + PRECISION, cwd=work)
    else:
        extra = ["--pooling", pooling] if pooling != "cls" else []
        run([binary, "index", "docs"] + common + opts + extra + PRECISION, cwd=work)


def export_lines(binary, path):
    return run([binary, "export", "--index", path]).stdout.splitlines()


def reencode(binary, model, work, lines, path, colbert, dense):
    """An index of another storage from the exact index's export: the header's storage
    names changed, then `import` (no encoding; the vectors are encoded into the codec)."""
    header = json.loads(lines[0])
    header["settings"]["colbertStorage"], header["settings"]["denseStorage"] = colbert, dense
    src = path + ".import.jsonl"
    with open(src, "w") as f:
        f.write(json.dumps(header) + "\n")
        for l in lines[1:]:
            f.write(l + "\n")
    run([binary, "import", src, "--index", path, "--model", model], cwd=work)
    os.remove(src)


def chunk_arrays(lines):
    chunks = [json.loads(l) for l in lines[1:]]
    doc = [c["doc_id"] for c in chunks]
    dense = np.asarray([c["dense"] for c in chunks], np.float32)
    sparse = [{int(k): float(v) for k, v in c["sparse"].items()} for c in chunks]
    colbert = [np.asarray(c["colbert"], np.float32).reshape(-1, dense.shape[1]) for c in chunks]
    return doc, dense, sparse, colbert


def encode_queries(binary, model, texts, pooling, max_length, cache):
    if os.path.exists(cache):
        enc = [json.loads(l) for l in open(cache)]
        if len(enc) == len(texts):
            return enc
    inp = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    r = run([binary, "encode", "--model", model, "--pooling", pooling, "--max-length", str(max_length)] + PRECISION,
            input=inp)
    with open(cache, "w") as f:
        f.write(r.stdout)
    return [json.loads(l) for l in r.stdout.splitlines()]


def mode_scores(qenc, arrays):
    """Per query, every chunk's score in each mode `m3search eval` reports (brute force).

    Vectorised: sparse as one product over the tokens the chunks use, ColBERT as one matmul
    against all rows then a max per chunk (np.maximum.reduceat); a loop of small matmuls
    per chunk took ~4 s a query on the shared machine."""
    doc, dense, sparse, colbert = arrays
    d = dense.shape[1]
    vocab = {t: i for i, t in enumerate(sorted({t for s in sparse for t in s}))}
    sd_mat = np.zeros((len(sparse), len(vocab)), np.float32)           # (chunks, tokens used)
    for i, s in enumerate(sparse):
        for t, w in s.items():
            sd_mat[i, vocab[t]] = w
    rows = np.concatenate([c for c in colbert if len(c)] or [np.zeros((0, d), np.float32)])  # (R, d)
    has = np.array([len(c) > 0 for c in colbert])
    starts = np.cumsum([0] + [len(c) for c in colbert if len(c)])[:-1]  # first row of each non-empty chunk
    out = []
    for q in qenc:
        qd = np.asarray(q["dense"], np.float32)
        qs = np.zeros(len(vocab), np.float32)
        for k, v in q["sparse"].items():
            if int(k) in vocab:
                qs[vocab[int(k)]] = float(v)
        qc = np.asarray(q["colbert"], np.float32).reshape(-1, d)
        sd = dense @ qd
        ss = sd_mat @ qs
        sc = np.zeros(len(colbert), np.float32)
        if len(qc) and len(rows):
            sim = qc @ rows.T                                               # (query tokens, R)
            sc[has] = np.maximum.reduceat(sim, starts, axis=1).mean(axis=0)
        wd, ws, wc = WEIGHTS
        out.append({"dense": sd, "sparse": ss, "colbert": sc,
                    "dense+sparse": (wd * sd + ws * ss) / (wd + ws),
                    "dense+sparse+colbert": (wd * sd + ws * ss + wc * sc) / (wd + ws + wc)})
    return out


def doc_ranking(doc, scores, n):
    """Documents by their best chunk's score, top n, as (doc, score)."""
    best = {}
    for i in np.argsort(-scores, kind="stable"):
        if doc[i] not in best:
            best[doc[i]] = float(scores[i])
            if len(best) == n:
                break
    return best


def metrics(qids, doc, per_query, qrels):
    """nDCG@10, Recall@100, MRR@10 per mode with pytrec_eval (trec_eval's C code)."""
    import pytrec_eval
    res = {}
    for mode in MODES:
        run100 = {q: doc_ranking(doc, s[mode], 100) for q, s in zip(qids, per_query)}
        run10 = {q: dict(sorted(r.items(), key=lambda kv: -kv[1])[:10]) for q, r in run100.items()}
        a = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_100"}).evaluate(run100)
        b = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run10)
        res[mode] = {"ndcg@10": float(np.mean([a[q]["ndcg_cut_10"] for q in a])),
                     "recall@100": float(np.mean([a[q]["recall_100"] for q in a])),
                     "mrr@10": float(np.mean([b[q]["recip_rank"] for q in b]))}
    return res


def top10(doc, per_query, mode):
    return [list(doc_ranking(doc, s[mode], 10)) for s in per_query]


def overlap(a, b):
    return float(np.mean([len(set(x) & set(y)) / max(1, len(y)) for x, y in zip(a, b)]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--m3search", required=True)
    ap.add_argument("--set", default=os.path.join(ROOT, "Fixtures", "eval", "gettext"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--e5", default=os.path.join(ROOT, "Fixtures", "generated", "e5-small"))
    ap.add_argument("--random", default=None, help="random-weight model (default: full-size if generated, else tiny)")
    ap.add_argument("--models", default="e5,random")
    ap.add_argument("--storages", default=None,
                    help="comma-separated colbert/dense pairs, e.g. default,int8/int8,pq16/int8 "
                         "(default: what `m3search index` picks when none is named)")
    ap.add_argument("--cli-eval", default="f16/f32,default,int8/int8,pq16/int8",
                    help="storages also measured with `m3search eval --json` (HNSW and candidates included)")
    ap.add_argument("--precision", default=None, help="--precision for index, encode and eval (f32, bf16, int8)")
    ap.add_argument("--default-via", choices=["index", "import"], default="index",
                    help="build the default-storage index with `index` (encoding again, as a user would) "
                         "or by importing the exact index's export (no second encoding; the full-size model)")
    ap.add_argument("--work", default=os.path.join(ROOT, "Benchmarks", "work", "trained_eval"))
    ap.add_argument("--out", default=os.path.join(ROOT, "Benchmarks", "results", "trained_eval.jsonl"))
    args = ap.parse_args(argv)
    binary = os.path.abspath(args.m3search)
    args.work = os.path.abspath(args.work)  # commands run with cwd = the work folder
    global PRECISION
    PRECISION = ["--precision", args.precision] if args.precision else []

    full = os.path.join(ROOT, "Fixtures", "generated", "bge-m3-full-random")
    random_model = args.random or (full if os.path.exists(os.path.join(full, "config.json"))
                                   else os.path.join(ROOT, "Fixtures", "models", "tiny-safetensors"))
    models = {"e5": (os.path.abspath(args.e5), "mean", ("query: ", "passage: "), 512),
              "random": (os.path.abspath(random_model), "cls", ("", ""), 512)}
    def pair(text):
        return DEFAULT if text in ("default", "default/default") else tuple(text.split("/"))
    storages = STORAGES if not args.storages else [pair(s) for s in args.storages.split(",")]
    storages = [EXACT] + [s for s in storages if s != EXACT]
    cli_eval = {pair(s) for s in args.cli_eval.split(",") if s}
    corpus, queries, qrels = load_set(args.set)
    for name in args.models.split(","):
        model, pooling, prefixes, max_length = models[name]
        work = os.path.join(args.work, name)
        os.makedirs(work, exist_ok=True)
        for f in os.listdir(work):
            if f.endswith(".m3index") or ".m3index" in f:
                os.remove(os.path.join(work, f))
        qs = prepare(work, corpus, queries, qrels, args.split, prefixes)
        qids = [q for q, _ in qs]
        judged = {}
        for q, d, s in qrels[args.split]:
            judged.setdefault(q, {})[doc_id(work, d)] = s
        t0 = time.time()
        qenc = encode_queries(binary, model, [t for _, t in qs], pooling, max_length,
                              os.path.join(work, f"queries.{os.path.basename(model)}.{pooling}."
                                                 f"{args.precision or 'f32'}.enc.jsonl"))
        print(f"{name}: {len(qs)} queries encoded in {time.time() - t0:.0f} s", flush=True)
        exact_lines, ref, base = None, None, None
        for spec in storages:
            is_default = spec == DEFAULT
            t0 = time.time()
            if spec == EXACT:
                colbert, dense = spec
                path = os.path.join(work, f"{colbert}-{dense}.m3index")
                create_index(binary, model, work, path, colbert, dense, pooling, max_length)
                lines = exact_lines = export_lines(binary, path)
            elif is_default:
                d = json.loads(exact_lines[0])["settings"]["dimension"]
                colbert, dense = default_storage(d)
                path = os.path.join(work, f"default-{colbert}-{dense}.m3index")
                if args.default_via == "index":
                    # Built like a user's index: `m3search index` without storage options.
                    create_index(binary, model, work, path, None, None, pooling, max_length)
                else:
                    reencode(binary, model, work, exact_lines, path, colbert, dense)
                lines = export_lines(binary, path)
            else:
                colbert, dense = spec
                path = os.path.join(work, f"{colbert}-{dense}.m3index")
                reencode(binary, model, work, exact_lines, path, colbert, dense)
                lines = export_lines(binary, path)
            header = json.loads(lines[0])
            assert header["settings"]["pooling"] == pooling, header["settings"]
            assert (header["settings"]["colbertStorage"], header["settings"]["denseStorage"]) == (colbert, dense), \
                (header["settings"], "expected", (colbert, dense))
            arrays = chunk_arrays(lines)
            missing = {d for j in judged.values() for d in j} - set(arrays[0])
            assert not missing, f"{len(missing)} judged documents not in the index, e.g. {sorted(missing)[:2]}"
            per_query = mode_scores(qenc, arrays)
            hyb, col = top10(arrays[0], per_query, "dense+sparse+colbert"), top10(arrays[0], per_query, "colbert")
            m = metrics(qids, arrays[0], per_query, judged)
            if spec == EXACT:
                ref, base = (hyb, col), m
            rec = {
                "bench": "trained_eval", "model": name, "model_path": os.path.relpath(model, ROOT),
                "pooling": pooling, "colbert_storage": colbert, "dense_storage": dense,
                "built_by": ("index (default storage)" if is_default and args.default_via == "index" else
                             "index" if spec == EXACT else "import of the exact export"),
                "default": is_default, "precision": args.precision or "f32",
                "dimension": int(arrays[1].shape[1]), "documents": len(corpus), "queries": len(qids),
                "chunks": len(lines) - 1, "colbert_rows": int(sum(len(c) for c in arrays[3])), "split": args.split,
                "scoring": "brute force over the exported (decoded) vectors, pytrec_eval",
                "metrics": m,
                "ndcg@10_loss_vs_exact": {k: round(base[k]["ndcg@10"] - m[k]["ndcg@10"], 4) for k in MODES},
                "hybrid_top10_overlap_vs_exact": overlap(hyb, ref[0]),
                "colbert_top10_overlap_vs_exact": overlap(col, ref[1]),
            }
            if spec in cli_eval:
                ev = json.loads(run([binary, "eval", "--queries", "queries.jsonl", "--qrels", "qrels.tsv",
                                     "--index", path, "--model", model, "--json"] + PRECISION, cwd=work).stdout)
                rec["cli_eval"] = {r["mode"]: {k: r[k] for k in ("ndcg@10", "recall@100", "mrr@10")} for r in ev["results"]}
            rec.update({"seconds": round(time.time() - t0, 1), "machine": platform.machine(),
                        "commit": commit(), "date": time.strftime("%Y-%m-%d")})
            loss = rec["ndcg@10_loss_vs_exact"]
            print(f"{name:6s} {colbert:>6s}/{dense:<4s}{' (default)' if is_default else ''} " +
                  " ".join(f"{k}={m[k]['ndcg@10']:.4f}" for k in MODES) +
                  f" | max loss {max(loss.values()):+.4f} | overlap hybrid {rec['hybrid_top10_overlap_vs_exact']:.3f}"
                  f" colbert {rec['colbert_top10_overlap_vs_exact']:.3f}" +
                  (" | cli " + " ".join(f"{k}={v['ndcg@10']:.4f}" for k, v in rec["cli_eval"].items()) if "cli_eval" in rec else ""),
                  flush=True)
            os.makedirs(os.path.dirname(args.out), exist_ok=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()

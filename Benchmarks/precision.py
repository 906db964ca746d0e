"""Reduced-precision parity on the full-size model: m3search bf16 / int8 and onnxruntime's
dynamic int8 quantisation, each against m3search float32 (itself within 1e-6 of FlagEmbedding,
Fixtures/full-size-parity.json).

    /work/venv/bin/python Benchmarks/precision.py [--engines m3search-bf16,m3search-int8,ort-int8]

Texts: 2,000 chunks cut from Fixtures/corpus, 24..88 tokens each (mean 56, 112k tokens), and
the 60 queries of the search tests (Tests/M3SearchTests/SearchEngineTests.swift). Every engine
encodes them once; encodings are cached in Benchmarks/work/precision/<engine>.npz (delete to
re-encode). Needs .build/release/m3search, and for ort-int8 Benchmarks/work/bge-m3-int8.onnx
(Benchmarks/quantize_onnx.py).

Reported per engine, against float32:
- dense cosine, mean and min over all texts;
- max |Δ| of the dense, sparse and ColBERT scores over all 60 × 2,000 query-chunk pairs
  (ColBERT as FlagEmbedding's per-text colbert_score: MaxSim averaged over query tokens);
- hybrid top-10 agreement: exhaustive weighted fusion 0.4 / 0.3 / 0.3 (Σ wᵢsᵢ / Σ wᵢ, as
  `m3search query`), mean over queries of |top10 ∩ top10_f32| / 10. Exhaustive scoring keeps
  ANN effects out of the comparison.
Appends a JSON record to Benchmarks/results/precision.jsonl.
"""
import argparse, datetime, json, os, subprocess, sys, time
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "Fixtures"))
import encoder as enc  # workloads, versions, machine

MODEL = enc.MODEL
BINARY = enc.BINARY
ONNX_INT8 = os.path.join(HERE, "work/bge-m3-int8.onnx")
CACHE = os.path.join(HERE, "work/precision")
RESULTS = os.path.join(HERE, "results/precision.jsonl")
CHUNKS = 2000
UNUSED = {0, 1, 2, 3}  # FlagEmbedding's unused_tokens: cls, eos, pad, unk
WEIGHTS = (0.4, 0.3, 0.3)


def queries():
    names = sorted(f for f in os.listdir(os.path.join(ROOT, "Fixtures/corpus")) if f != "LICENSE.md")
    topics = [os.path.splitext(n)[0].replace("-", " ") for n in names][:50]
    return topics + [
        "how does the with statement work", "what is a generator expression",
        "exception handling with try and finally", "integer division and modulo",
        "dictionary keys must be hashable", "global and nonlocal names",
        "how are default argument values evaluated", "slicing a sequence with a step",
        "string formatting with f-strings", "operator precedence of comparisons"]


def texts():
    from transformers import AutoTokenizer
    from flag_m3 import FlagModelDir
    with FlagModelDir(MODEL) as folder:
        tok = AutoTokenizer.from_pretrained(folder)
    lengths = [24 + (i * 37) % 65 for i in range(CHUNKS)]
    chunks = enc.make_texts(tok, lengths)
    qs = queries()
    ids = [tok(t, truncation=True, max_length=512)["input_ids"] for t in chunks + qs]
    return chunks, qs, ids


# ---------------------------------------------------------------- encoders

def encode_m3search(precision, all_texts):
    inp = "".join(json.dumps({"text": t}) + "\n" for t in all_texts)
    t = time.perf_counter()
    cmd = [BINARY, "encode", "--model", MODEL, "--max-length", "512"]
    if precision != "f32":  # the default; builds before --precision existed encode float32
        cmd += ["--precision", precision]
    p = subprocess.run(cmd, input=inp, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"m3search encode --precision {precision} failed:\n{p.stderr[-2000:]}")
    out = [json.loads(l) for l in p.stdout.splitlines()]
    return pack([o["input_ids"] for o in out], [o["dense"] for o in out],
                [{int(k): v for k, v in o["sparse"].items()} for o in out],
                [o["colbert"] for o in out], wall)


def load_heads():
    import torch
    c = torch.load(os.path.join(MODEL, "colbert_linear.pt"), map_location="cpu", weights_only=True)
    s = torch.load(os.path.join(MODEL, "sparse_linear.pt"), map_location="cpu", weights_only=True)
    f = lambda t: t.float().numpy()
    return f(c["weight"]), f(c["bias"]), f(s["weight"])[0], float(f(s["bias"])[0])


def encode_ort_int8(ids):
    """onnxruntime (dynamic int8 linear layers) for the encoder, then the three heads in
    numpy float32 exactly as FlagEmbedding computes them from last_hidden_state."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = enc.THREADS
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(ONNX_INT8, so, providers=["CPUExecutionProvider"])
    wc, bc, ws, bs = load_heads()
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    dense, sparse, colbert = [None] * len(ids), [None] * len(ids), [None] * len(ids)
    t = time.perf_counter()
    for b in range(0, len(order), 32):
        batch = order[b:b + 32]
        a, m = enc.pad([ids[i] for i in batch])
        h = sess.run(None, {"input_ids": a, "attention_mask": m})[0]
        for r, i in enumerate(batch):
            n = len(ids[i])
            x = h[r, :n].astype(np.float32)
            dense[i] = x[0] / np.linalg.norm(x[0])
            w = np.maximum(x @ ws + bs, 0)
            sp = {}
            for tid, wt in zip(ids[i], w):
                if tid not in UNUSED and wt > 0:
                    sp[tid] = max(sp.get(tid, 0.0), float(wt))
            sparse[i] = sp
            cv = x[1:] @ wc.T + bc
            colbert[i] = cv / np.linalg.norm(cv, axis=1, keepdims=True)
    wall = time.perf_counter() - t
    return pack(ids, dense, sparse, colbert, wall)


def pack(ids, dense, sparse, colbert, wall):
    cols = [np.asarray(c, dtype=np.float32).reshape(-1, 1024) for c in colbert]
    offsets = np.cumsum([0] + [len(c) for c in cols])
    sp_ids = [np.array(sorted(s), dtype=np.int64) for s in sparse]
    sp_w = [np.array([s[k] for k in sorted(s)], dtype=np.float32) for s in sparse]
    return {"ids": ids, "dense": np.asarray(dense, dtype=np.float32), "sparse_ids": sp_ids,
            "sparse_w": sp_w, "colbert": np.concatenate(cols), "colbert_offsets": offsets,
            "wall_s": wall}


def save(path, e):
    np.savez(path, dense=e["dense"], colbert=e["colbert"], colbert_offsets=e["colbert_offsets"],
             sparse_lengths=np.array([len(i) for i in e["sparse_ids"]]),
             sparse_ids=np.concatenate(e["sparse_ids"]), sparse_w=np.concatenate(e["sparse_w"]),
             ids=np.array(json.dumps(e["ids"])), wall_s=e["wall_s"])


def load(path):
    z = np.load(path)
    ends = np.cumsum(z["sparse_lengths"])
    starts = ends - z["sparse_lengths"]
    return {"dense": z["dense"], "colbert": z["colbert"], "colbert_offsets": z["colbert_offsets"],
            "sparse_ids": [z["sparse_ids"][a:b] for a, b in zip(starts, ends)],
            "sparse_w": [z["sparse_w"][a:b] for a, b in zip(starts, ends)],
            "ids": json.loads(str(z["ids"])), "wall_s": float(z["wall_s"])}


# ---------------------------------------------------------------- scores

def score_matrices(e, nchunks):
    """(queries × chunks) dense, sparse and ColBERT scores, exact."""
    from scipy.sparse import csr_matrix
    n = len(e["dense"])
    q_idx, c_idx = range(nchunks, n), range(nchunks)
    dense = e["dense"][nchunks:] @ e["dense"][:nchunks].T

    def csr(rows):
        data = np.concatenate([e["sparse_w"][i] for i in rows])
        ind = np.concatenate([e["sparse_ids"][i] for i in rows])
        ptr = np.cumsum([0] + [len(e["sparse_ids"][i]) for i in rows])
        return csr_matrix((data.astype(np.float64), ind, ptr), shape=(len(rows), 250002))
    sparse = (csr(q_idx) @ csr(c_idx).T).toarray().astype(np.float32)

    off = e["colbert_offsets"]
    docs = e["colbert"][:off[nchunks]]
    colbert = np.zeros((len(q_idx), nchunks), dtype=np.float32)
    for r, qi in enumerate(q_idx):
        qv = e["colbert"][off[qi]:off[qi + 1]]
        sims = qv @ docs.T                                   # (nq, tokens of all chunks)
        mx = np.maximum.reduceat(sims, off[:nchunks], axis=1)  # (nq, chunks)
        colbert[r] = mx.mean(axis=0)
    return dense, sparse, colbert


def fused(d, s, c):
    return (WEIGHTS[0] * d + WEIGHTS[1] * s + WEIGHTS[2] * c) / sum(WEIGHTS)


def top10(m):
    return [set(np.argsort(-row, kind="stable")[:10]) for row in m]


def compare(ref, e, ref_scores, scores):
    cos = np.sum(ref["dense"] * e["dense"], axis=1) / (
        np.linalg.norm(ref["dense"], axis=1) * np.linalg.norm(e["dense"], axis=1))
    out = {"dense_cosine_mean": float(cos.mean()), "dense_cosine_min": float(cos.min())}
    for name, a, b in zip(("dense", "sparse", "colbert"), ref_scores, scores):
        out[f"{name}_score_max_abs_diff"] = float(np.abs(a - b).max())
    rt, et = top10(fused(*ref_scores)), top10(fused(*scores))
    out["hybrid_top10_agreement"] = float(np.mean([len(a & b) / 10 for a, b in zip(rt, et)]))
    out["hybrid_top10_agreement_min"] = float(min(len(a & b) / 10 for a, b in zip(rt, et)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engines", default="m3search-bf16,m3search-int8,ort-int8")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    engines = ["m3search-f32"] + [e for e in args.engines.split(",") if e != "m3search-f32"]
    os.makedirs(CACHE, exist_ok=True)
    chunks, qs, ids = texts()
    all_texts = chunks + qs
    print(f"{len(chunks)} chunks ({sum(len(i) for i in ids[:len(chunks)])} tokens), {len(qs)} queries")
    enc_by = {}
    for e in engines:
        path = os.path.join(CACHE, f"{e}.npz")
        if not os.path.exists(path):
            print(f"encoding with {e} …", flush=True)
            if e.startswith("m3search-"):
                x = encode_m3search(e.split("-", 1)[1], all_texts)
            elif e == "ort-int8":
                x = encode_ort_int8(ids)
            else:
                sys.exit(f"unknown engine {e}")
            save(path, x)
        enc_by[e] = load(path)
        assert enc_by[e]["ids"] == ids, f"{e}: input_ids differ from the HF tokenizer's"
    scores = {e: score_matrices(enc_by[e], len(chunks)) for e in engines}
    ref = "m3search-f32"
    results = {e: compare(enc_by[ref], enc_by[e], scores[ref], scores[e]) for e in engines if e != ref}
    keys = ["dense_cosine_mean", "dense_cosine_min", "dense_score_max_abs_diff",
            "sparse_score_max_abs_diff", "colbert_score_max_abs_diff", "hybrid_top10_agreement",
            "hybrid_top10_agreement_min"]
    print("| engine | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for e, r in results.items():
        print(f"| {e} | " + " | ".join(f"{r[k]:.6f}" for k in keys) + " |")
    if not args.no_record:
        rec = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "benchmark": "precision", "machine": enc.machine(), "versions": enc.versions(),
               "model": os.path.relpath(MODEL, ROOT), "chunks": len(chunks), "queries": len(qs),
               "tokens": sum(len(i) for i in ids), "reference": ref, "results": results,
               "encode_wall_s": {e: enc_by[e]["wall_s"] for e in engines}}
        with open(RESULTS, "a") as f:
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()

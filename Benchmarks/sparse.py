"""Sparse exact top-k: m3search's pruned MaxScore search and brute-force scans (m3bench sparse)
next to scipy on the same corpus and queries, interleaved round by round.

    flock /tmp/m3-bench.lock /work/venv/bin/python Benchmarks/sparse.py [--rounds 3] [--docs 100000]

Each round runs `m3bench sparse --rounds 1` (which regenerates the seeded corpus, checks that
every method returns identical results, times them and writes Benchmarks/work/sparse_<docs>.bin),
then times scipy on that file:
- `scipy_csr`: the chunk×vocab CSR matrix times a dense query vector (every stored weight is
  visited), then argpartition for the top k and a sort of those k (score desc, id asc);
- `scipy_csc`: the same matrix in CSC, only the query's columns: M[:, ids] @ w, then the same top k.
Both are checked against m3search's results (ids and float32 scores). Prints a table and
appends a record to Benchmarks/results/sparse.jsonl (median of rounds of p50/p95/mean).
"""
import argparse, datetime, json, os, platform, statistics, subprocess, sys, time

import numpy as np
import scipy
import scipy.sparse as sp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BINARY = os.path.join(ROOT, ".build/release/m3bench")
RESULTS = os.path.join(HERE, "results/sparse.jsonl")


def read_data(path):
    with open(path, "rb") as f:
        buf = f.read()
    assert buf[:8] == b"M3SPARSE", "not a sparse benchmark file"
    version, docs, vocab, nq, k = np.frombuffer(buf, dtype="<u4", count=5, offset=8)
    assert version == 1
    off = 28

    def take(dtype, n):
        nonlocal off
        a = np.frombuffer(buf, dtype=dtype, count=int(n), offset=off)
        off += a.nbytes
        return a

    indptr = take("<i8", docs + 1)
    indices = take("<i4", indptr[-1])
    data = take("<f4", indptr[-1])
    qptr = take("<i8", nq + 1)
    qidx = take("<i4", qptr[-1])
    qw = take("<f4", qptr[-1])
    rec = np.dtype([("id", "<i8"), ("score", "<f4")])
    expected = take(rec, nq * k).reshape(nq, k)
    m = sp.csr_matrix((data, indices, indptr), shape=(int(docs), int(vocab)))
    queries = [(qidx[qptr[i]:qptr[i + 1]], qw[qptr[i]:qptr[i + 1]]) for i in range(nq)]
    return m, queries, expected, int(k)


def top_k(scores, k):
    """Exact top k, score desc then id asc (ties at the cut resolved the same way)."""
    nz = np.count_nonzero(scores)
    kk = min(k, nz)
    if kk == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    part = np.argpartition(-scores, kk - 1)[:kk]
    cut = scores[part].min()
    # Everything tied with the k-th score competes on id.
    cand = np.union1d(part, np.flatnonzero(scores == cut))
    order = np.lexsort((cand, -scores[cand]))[:kk]
    ids = cand[order]
    return ids.astype(np.int64), scores[ids]


def time_scipy(m, queries, k, variant):
    vocab = m.shape[1]
    csc = m.tocsc() if variant == "csc" else None
    qv = np.zeros(vocab, np.float32)
    ns, results = [], []
    for ids, w in queries:
        t = time.perf_counter_ns()
        if variant == "csr":
            qv[ids] = w
            s = m @ qv
            qv[ids] = 0
        else:
            s = csc[:, ids] @ w
        r = top_k(s, k)
        ns.append(time.perf_counter_ns() - t)
        results.append(r)
    return ns, results


def stats(ns):
    ms = np.array(ns) / 1e6
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "mean": float(ms.mean())}


def check(results, expected, name):
    bad = 0
    for qi, (ids, scores) in enumerate(results):
        e = expected[qi]
        n = int((e["id"] >= 0).sum())
        if len(ids) != n or not np.array_equal(ids, e["id"][:n]) or not np.array_equal(scores, e["score"][:n]):
            bad += 1
    print(f"check {name}: {len(results) - bad}/{len(results)} queries identical to m3search (ids and scores)")
    return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    per = {}
    swift_records = []
    mismatches = {}
    for r in range(a.rounds):
        out = os.path.join(HERE, "work/sparse_swift_round.json")
        subprocess.run([BINARY, "sparse", "--rounds", "1", "--docs", str(a.docs), "--queries", str(a.queries),
                        "--json", out], check=True, cwd=ROOT)
        rec = json.load(open(out))
        swift_records.append(rec)
        for m, s in rec["median_ms"].items():
            per.setdefault(m, []).append(s)
        m, queries, expected, k = read_data(rec["data_file"])
        for variant in ("csr", "csc"):
            ns, res = time_scipy(m, queries, k, variant)
            if r == 0:
                mismatches[f"scipy_{variant}"] = check(res, expected, f"scipy_{variant}")
            s = stats(ns)
            per.setdefault(f"scipy_{variant}", []).append(s)
            print(f"round {r + 1}: scipy_{variant} p50 {s['p50']:.3f} ms p95 {s['p95']:.3f} mean {s['mean']:.3f}")
    med = {m: {f: statistics.median(x[f] for x in v) for f in ("p50", "p95", "mean")} for m, v in per.items()}
    base = med["pruned"]["mean"]
    print(f"\nmedian of {a.rounds} rounds, {a.queries} queries, {a.docs} chunks (ms):")
    print("| method | p50 | p95 | mean | mean ÷ pruned |")
    print("|---|---:|---:|---:|---:|")
    for m in ["pruned", "taat", "forward", "library", "scipy_csr", "scipy_csc"]:
        if m in med:
            s = med[m]
            print(f"| {m} | {s['p50']:.3f} | {s['p95']:.3f} | {s['mean']:.3f} | {s['mean'] / base:.1f}× |")
    if a.no_record:
        return
    record = {
        "benchmark": "sparse", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": swift_records[0].get("cpu"), "commit": swift_records[0].get("commit"),
        "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
        "parameters": swift_records[0]["parameters"] | {"rounds": a.rounds},
        "median_ms": med, "rounds_ms": per, "scipy_mismatched_queries": mismatches,
    }
    with open(RESULTS, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()

"""HNSW benchmark: M3Index's HNSWIndex (via `m3bench hnsw`) against hnswlib and faiss-cpu
IndexHNSWFlat on identical vectors, M and efConstruction; and the compact graphs: M3Index
with int8 codes (exact rescoring from the base vectors) against faiss IndexHNSWSQ (SQ8).

Per set (Benchmarks/hnsw_data.py writes them; missing sets are generated first):
  build time with each --threads value (every engine builds with the same thread count), and
  for the graph built with the first --threads value: recall@10 and QPS per efSearch, with
  queries on ONE thread, one query per call (like a server request). Peers also report a
  batched single-thread call (all queries in one knn_query/search call) to show the Python
  per-call overhead, which the one-at-a-time numbers include (a few µs per call).

Rounds interleave the engines (m3search, hnswlib, faiss, m3search, …); each run is a fresh
process holding /tmp/m3-bench.lock (the machine is shared, so no two timings overlap).
Reported: medians over rounds of build time and of QPS at recall@10 = 0.95 and 0.99 (per
round, interpolated linearly in time per query between the two efSearch values that bracket
the target recall), and their ratios to hnswlib. Appends one record to results/hnsw.jsonl.

  /work/venv/bin/python Benchmarks/hnsw.py                   # both sets, 3 rounds
  /work/venv/bin/python Benchmarks/hnsw.py --sets corpus --rounds 1 --no-record
  /work/venv/bin/python Benchmarks/hnsw.py --sets clustered-1m --threads 2 --rounds 1 \
      --engines m3search-int8,faiss-sq8,m3search,hnswlib      # one peer at a time, peak RSS each

Engines: m3search (float32 graph), m3search-int8 (int8 codes, candidates rescored exactly
from the memory-mapped base file, as the store does in the product), hnswlib, faiss
(IndexHNSWFlat), faiss-sq8 (IndexHNSWSQ with QT_8bit, trained on the base; no rescoring).
Every worker maps the base file (numpy memmap), so the anonymous resident memory it gains
while building is its index; that and the peak RSS are recorded per engine.
"""
import argparse, datetime, fcntl, json, os, platform, statistics, subprocess, sys, time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hnsw_data  # noqa: E402

ROOT = hnsw_data.ROOT
M3BENCH = os.environ.get("M3BENCH_BIN", os.path.join(ROOT, ".build", "release", "m3bench"))
RESULTS = os.path.join(ROOT, "Benchmarks", "results", "hnsw.jsonl")
LOCK = "/tmp/m3-bench.lock"
ENGINES = ["m3search", "hnswlib", "faiss"]
KNOWN = ENGINES + ["m3search-int8", "faiss-sq8"]
EF_DEFAULT = "10,16,24,32,48,64,96,128,192,256"
TARGETS = (0.95, 0.99)


# ---------------------------------------------------------------- peers (worker processes)

def load(set_path):
    meta = json.load(open(os.path.join(set_path, "meta.json")))
    d = meta["d"]
    # Mapped, not read: a 1M × 1024 base is 4 GB, and the index's own memory must show.
    base = np.memmap(os.path.join(set_path, "base.f32"), dtype="<f4", mode="r").reshape(-1, d)
    queries = np.fromfile(os.path.join(set_path, "queries.f32"), dtype="<f4").reshape(-1, d)
    truth = np.fromfile(os.path.join(set_path, "truth.i32"), dtype="<i4").reshape(len(queries), -1)
    return base, queries, truth


def recall(labels, truth):
    k = truth.shape[1]
    return sum(len(set(map(int, labels[i][:k])) & set(map(int, truth[i]))) for i in range(len(truth))) / truth.size


def status_kb(field):
    """A field of /proc/self/status in kB (RssAnon: private memory; VmHWM: peak RSS)."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def worker(engine, set_path, m, efc, threads, efs, search, repeats=1):
    base, queries, truth = load(set_path)
    n, d = base.shape
    k = truth.shape[1]
    anon_before = status_kb("RssAnon")
    if engine == "hnswlib":
        import hnswlib
        index = hnswlib.Index(space="ip", dim=d)
        index.init_index(max_elements=n, ef_construction=efc, M=m, random_seed=100)
        index.set_num_threads(threads)
        t = time.perf_counter()
        for s0 in range(0, n, 100_000):
            index.add_items(np.ascontiguousarray(base[s0:s0 + 100_000]), np.arange(s0, min(n, s0 + 100_000)))
        build = time.perf_counter() - t
        index.set_num_threads(1)

        def set_ef(ef): index.set_ef(ef)
        def one(q): return index.knn_query(q, k=k)[0][0]
        def batch(qs): return index.knn_query(qs, k=k, num_threads=1)[0]
        version = hnswlib.__version__ if hasattr(hnswlib, "__version__") else "?"
    else:
        import faiss
        faiss.omp_set_num_threads(threads)
        if engine == "faiss-sq8":
            index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = efc
        t = time.perf_counter()
        if engine == "faiss-sq8":  # the quantiser's per-dimension ranges, from a sample (timed)
            sample = np.ascontiguousarray(base[:: max(1, n // 100_000)])
            index.train(sample)
            del sample
        for s0 in range(0, n, 100_000):  # in slices: a contiguous copy of a slice, not of 4 GB
            index.add(np.ascontiguousarray(base[s0:s0 + 100_000]))
        build = time.perf_counter() - t
        faiss.omp_set_num_threads(1)

        def set_ef(ef): index.hnsw.efSearch = ef
        def one(q): return index.search(q, k)[1][0]
        def batch(qs): return index.search(qs, k)[1]
        version = faiss.__version__
    out = {"engine": engine, "version": version, "n": n, "nq": len(queries), "dim": d, "m": m,
           "ef_construction": efc, "threads": threads, "build_s": build, "curve": [],
           "graph_rss_kb": status_kb("RssAnon") - anon_before, "peak_rss_kb": status_kb("VmHWM")}
    if search:
        set_ef(efs[0])
        for i in range(len(queries)):  # warm-up
            one(queries[i:i + 1])
        for ef in efs:
            set_ef(ef)
            dt = dtb = float("inf")
            for _ in range(repeats):  # the fastest pass, as m3bench --repeats
                t = time.perf_counter()
                labels = [one(queries[i:i + 1]) for i in range(len(queries))]
                dt = min(dt, time.perf_counter() - t)
                tb = time.perf_counter()
                blabels = batch(queries)
                dtb = min(dtb, time.perf_counter() - tb)
            out["curve"].append({"ef": ef, "recall": recall(labels, truth), "qps": len(queries) / dt,
                                 "seconds": dt, "qps_batch": len(queries) / dtb,
                                 "recall_batch": recall(blabels, truth)})
    print("JSON " + json.dumps(out), flush=True)


# ---------------------------------------------------------------- driver

def locked_run(cmd):
    with open(LOCK, "a") as lf:
        fcntl.flock(lf, fcntl.LOCK_EX)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True)
        finally:
            fcntl.flock(lf, fcntl.LOCK_UN)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    line = next(l for l in p.stdout.splitlines() if l.startswith("JSON "))
    return json.loads(line[5:])


def run_engine(engine, set_path, args, threads, search):
    efs = args.ef_search if search else args.ef_search.split(",")[0]
    if engine in ("m3search", "m3search-int8"):
        cmd = [M3BENCH, "hnsw", "--base", os.path.join(set_path, "base.f32"),
               "--queries", os.path.join(set_path, "queries.f32"), "--truth", os.path.join(set_path, "truth.i32"),
               "--dim", str(json.load(open(os.path.join(set_path, "meta.json")))["d"]),
               "--m", str(args.m), "--ef-construction", str(args.ef_construction),
               "--threads", str(threads), "--ef-search", efs, "--repeats", str(args.repeats), "--json",
               "--encoding", "int8" if engine == "m3search-int8" else "float32"]
        if not search:
            cmd.append("--no-search")
    else:
        cmd = [sys.executable, __file__, "--worker", engine, set_path, str(args.m), str(args.ef_construction),
               str(threads), efs, "1" if search else "0", str(args.repeats)]
    return locked_run(cmd)


def at_recall(curve, target):
    """(QPS, efSearch) at recall `target`: linear in seconds/query between the bracketing points."""
    pts = sorted(curve, key=lambda p: p["ef"])
    for i, p in enumerate(pts):
        if p["recall"] >= target:
            if i == 0 or p["recall"] == pts[i - 1]["recall"]:
                return p["qps"], float(p["ef"])
            a = pts[i - 1]
            f = (target - a["recall"]) / (p["recall"] - a["recall"])
            spq = 1 / a["qps"] + f * (1 / p["qps"] - 1 / a["qps"])
            return 1 / spq, a["ef"] + f * (p["ef"] - a["ef"])
    return None, None


def versions():
    import importlib.metadata as md
    v = {p: md.version(p) for p in ("hnswlib", "faiss-cpu", "numpy")}
    v["python"] = platform.python_version()
    v["m3search_git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                       capture_output=True, text=True).stdout.strip()
    if subprocess.run(["git", "status", "--porcelain", "Sources", "Package.swift", "Benchmarks/Sources"],
                      cwd=ROOT, capture_output=True, text=True).stdout.strip():
        v["m3search_git"] += "+dirty"
    v["swift"] = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout.strip().splitlines()[0]
    return v


from encoder import machine  # noqa: E402  (one description of the machine for every record)


def fmt_ratio(x, ref):
    if x is None:
        return "not reached"
    return f"{x:,.0f} ({x / ref:.2f}×)" if ref else f"{x:,.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="clustered,corpus")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef-search", default=EF_DEFAULT)
    ap.add_argument("--threads", default="1,2", help="build thread counts; queries always on 1 thread")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed passes over the queries per efSearch, every engine; the fastest counts "
                         "(a 60-query pass takes ~10 ms, so one preemption would decide it)")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--reference", default="hnswlib", help="engine the ratios are taken to")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        e, sp, m, efc, th, efs, search, *rep = args.worker
        return worker(e, sp, int(m), int(efc), int(th), [int(x) for x in efs.split(",")], search == "1",
                      int(rep[0]) if rep else 1)

    if not os.path.exists(M3BENCH):
        sys.exit(f"missing {M3BENCH}: swift build -c release --product m3bench")
    engines = args.engines.split(",")
    for e in engines:
        if e not in KNOWN:
            sys.exit(f"unknown engine {e}; known: {', '.join(KNOWN)}")
    threads = [int(t) for t in args.threads.split(",")]
    sets = {s: hnsw_data.ensure(s) for s in args.sets.split(",")}
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    runs = {s: {e: [] for e in engines} for s in sets}
    for r in range(args.rounds):
        for s, path in sets.items():
            for e in engines:
                rec = {}
                for i, th in enumerate(threads):
                    t = time.perf_counter()
                    res = run_engine(e, path, args, th, search=(i == 0))
                    rec[f"build_s_{th}t"] = res["build_s"]
                    rec[f"graph_mb_{th}t"] = res.get("graph_rss_kb", 0) / 1e3
                    rec[f"peak_rss_mb_{th}t"] = res.get("peak_rss_kb", 0) / 1e3
                    if i == 0:
                        rec["curve"] = res["curve"]
                        rec["version"] = res.get("version", res.get("isa"))
                    print(f"round {r + 1}/{args.rounds} {s:10s} {e:9s} threads {th}: build {res['build_s']:7.2f} s"
                          f"  (run {time.perf_counter() - t:5.1f} s)", flush=True)
                runs[s][e].append(rec)

    summary = {}
    for s in sets:
        summary[s] = {}
        for e in engines:
            rs = runs[s][e]
            x = {f"build_s_{th}t": statistics.median(r[f"build_s_{th}t"] for r in rs) for th in threads}
            x["graph_mb"] = statistics.median(r[f"graph_mb_{threads[0]}t"] for r in rs)
            x["peak_rss_mb"] = max(r[f"peak_rss_mb_{threads[0]}t"] for r in rs)
            for tgt in TARGETS:
                vals = [at_recall(r["curve"], tgt) for r in rs]
                qps = [v[0] for v in vals if v[0] is not None]
                x[f"qps_at_{tgt}"] = statistics.median(qps) if len(qps) == len(vals) else None
                x[f"ef_at_{tgt}"] = statistics.median(v[1] for v in vals) if len(qps) == len(vals) else None
            # median curve per ef
            x["curve"] = [{"ef": p["ef"], "recall": statistics.median(r["curve"][j]["recall"] for r in rs),
                           "qps": statistics.median(r["curve"][j]["qps"] for r in rs),
                           **({"qps_batch": statistics.median(r["curve"][j]["qps_batch"] for r in rs)}
                              if "qps_batch" in p else {})}
                          for j, p in enumerate(rs[0]["curve"])]
            summary[s][e] = x

    ref = args.reference if args.reference in engines else ("hnswlib" if "hnswlib" in engines else None)
    for s in sets:
        meta = json.load(open(os.path.join(sets[s], "meta.json")))
        print(f"\n### {s}: {meta['n']:,} × {meta['d']} base, {meta['nq']} queries; M {args.m}, "
              f"efConstruction {args.ef_construction}; median of {args.rounds} rounds (ratio to {ref})\n")
        print("| | " + " | ".join(engines) + " |")
        print("|---|" + "---:|" * len(engines))
        for th in threads:
            cells = []
            for e in engines:
                b = summary[s][e][f"build_s_{th}t"]
                rb = summary[s][ref][f"build_s_{th}t"] if ref else None
                cells.append(f"{b:.2f} s ({b / rb:.2f}×)" if rb else f"{b:.2f} s")
            print(f"| build, {th} thread{'s' if th > 1 else ''} | " + " | ".join(cells) + " |")
        print("| index memory (anonymous RSS growth) | " + " | ".join(
            f"{summary[s][e]['graph_mb']:,.0f} MB" for e in engines) + " |")
        print("| peak RSS (base file mapped) | " + " | ".join(
            f"{summary[s][e]['peak_rss_mb']:,.0f} MB" for e in engines) + " |")
        for tgt in TARGETS:
            rq = summary[s][ref][f"qps_at_{tgt}"] if ref else None
            print(f"| QPS at recall@10 {tgt} (1 thread, 1 query/call) | "
                  + " | ".join(fmt_ratio(summary[s][e][f"qps_at_{tgt}"], rq) for e in engines) + " |")
            print(f"| efSearch there | " + " | ".join(
                "—" if summary[s][e][f"ef_at_{tgt}"] is None else f"{summary[s][e][f'ef_at_{tgt}']:.0f}"
                for e in engines) + " |")
        print(f"\nrecall@10 / QPS per efSearch (median; peers' batched 1-thread QPS in brackets):\n")
        print("| efSearch | " + " | ".join(engines) + " |")
        print("|---:|" + "---|" * len(engines))
        for j, p in enumerate(summary[s][engines[0]]["curve"]):
            cells = []
            for e in engines:
                c = summary[s][e]["curve"][j]
                cells.append(f"{c['recall']:.4f} / {c['qps']:,.0f}"
                             + (f" [{c['qps_batch']:,.0f}]" if "qps_batch" in c else ""))
            print(f"| {p['ef']} | " + " | ".join(cells) + " |")

    if not args.no_record:
        rec = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "started": started,
               "benchmark": "hnsw", "machine": machine(), "versions": versions(), "rounds": args.rounds,
               "m": args.m, "ef_construction": args.ef_construction, "build_threads": threads,
               "query_repeats": args.repeats,
               "query_threads": 1, "sets": {s: json.load(open(os.path.join(p, "meta.json"))) for s, p in sets.items()},
               "summary": summary, "runs": runs}
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        with open(RESULTS, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"\nappended to {os.path.relpath(RESULTS, ROOT)}")


if __name__ == "__main__":
    main()

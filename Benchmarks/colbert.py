"""ColBERT MaxSim of one query against 100 candidates × 256 tokens × 1024: m3search's kernels
(m3bench colbert) next to numpy on the same data, interleaved round by round.

    flock /tmp/m3-bench.lock /work/venv/bin/python Benchmarks/colbert.py [--rounds 3]

Each round runs `m3bench colbert --rounds 1` (writes Benchmarks/work/colbert.bin: the query,
the float16 passages, and m3search's scores), then times numpy (OpenBLAS, its default 2 threads):
- `numpy_loop_f32`: per candidate `(q @ d.T).max(1).mean()` on float32 passages (converted once,
  outside the timing: a store that keeps float32 rows);
- `numpy_batched_f32`: one matmul against all candidates' rows, reshape, max, mean;
- `numpy_loop_f16`: per candidate, float16 → float32 conversion inside the timing (the rows as
  stored), then the same expression.
Scores are checked against m3search's (|diff| < 1e-4). Appends to Benchmarks/results/colbert.jsonl.
"""
import argparse, datetime, json, os, platform, statistics, subprocess, time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BINARY = os.path.join(ROOT, ".build/release/m3bench")
RESULTS = os.path.join(HERE, "results/colbert.jsonl")


def read_data(path):
    buf = open(path, "rb").read()
    assert buf[:8] == b"M3COLBRT"
    version, c, t, d, nqmax, nqn = np.frombuffer(buf, "<u4", 6, 8)
    nqs = list(np.frombuffer(buf, "<u4", nqn, 32))
    off = 32 + 4 * nqn
    q = np.frombuffer(buf, "<f4", nqmax * d, off).reshape(nqmax, d); off += q.nbytes
    half = np.frombuffer(buf, "<f2", c * t * d, off).reshape(c, t, d); off += half.nbytes
    exp = np.frombuffer(buf, "<f4", nqn * c, off).reshape(nqn, c)
    return [int(x) for x in nqs], q, half, exp


def methods(q, half, f32):
    c, t, d = half.shape
    flat = f32.reshape(c * t, d)
    return {
        "numpy_loop_f32": lambda: np.array([(q @ f32[i].T).max(1).mean() for i in range(c)], np.float32),
        "numpy_batched_f32": lambda: (q @ flat.T).reshape(len(q), c, t).max(2).mean(0),
        "numpy_loop_f16": lambda: np.array([(q @ half[i].astype(np.float32).T).max(1).mean() for i in range(c)], np.float32),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    per, swift = {}, []
    for r in range(a.rounds):
        out = os.path.join(HERE, "work/colbert_swift_round.json")
        subprocess.run([BINARY, "colbert", "--rounds", "1", "--repeats", str(a.repeats), "--json", out], check=True, cwd=ROOT)
        rec = json.load(open(out))
        swift.append(rec)
        for m, s in rec["median_ms"].items():
            per.setdefault(m, []).append(s)
        nqs, q, half, exp = read_data(rec["data_file"])
        f32 = half.astype(np.float32)
        for qi, nq in enumerate(nqs):
            for name, fn in methods(q[:nq], half, f32).items():
                got = fn()
                err = float(np.abs(got - exp[qi]).max())
                assert err < 1e-4, f"{name} nq={nq}: max |numpy - m3search| = {err}"
                ns = []
                for _ in range(a.repeats):
                    t = time.perf_counter_ns()
                    fn()
                    ns.append(time.perf_counter_ns() - t)
                ms = np.array(ns) / 1e6
                s = {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "mean": float(ms.mean())}
                per.setdefault(f"{name}/q{nq}", []).append(s)
                print(f"round {r + 1}: {name} q{nq} p50 {s['p50']:.3f} ms (max |diff| {err:.1e})")
    med = {m: {f: statistics.median(x[f] for x in v) for f in ("p50", "p95", "mean")} for m, v in per.items()}
    p = swift[0]["parameters"]
    print(f"\n{p['candidates']} candidates × {p['tokens']} tokens × {p['dimension']}, median of {a.rounds} rounds (ms per query):")
    print("| method | q tokens | p50 | p95 | mean | ÷ numpy_loop_f32 p50 |")
    print("|---|---:|---:|---:|---:|---:|")
    for nq in p["query_tokens"]:
        base = med[f"numpy_loop_f32/q{nq}"]["p50"]
        for m in ["maxsim_f16", "maxsim_f16_2t", "maxsim_f32", "sgemm_f32", "decode_sgemm_f16",
                  "numpy_loop_f32", "numpy_batched_f32", "numpy_loop_f16"]:
            s = med[f"{m}/q{nq}"]
            print(f"| {m} | {nq} | {s['p50']:.3f} | {s['p95']:.3f} | {s['mean']:.3f} | {s['p50'] / base:.2f} |")
    if a.no_record:
        return
    record = {"benchmark": "colbert", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "cpu": swift[0].get("cpu"), "commit": swift[0].get("commit"), "isa": swift[0].get("isa"),
              "python": platform.python_version(), "numpy": np.__version__,
              "parameters": p | {"rounds": a.rounds}, "median_ms": med, "rounds_ms": per}
    with open(RESULTS, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()

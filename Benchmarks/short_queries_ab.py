"""Two m3bench builds on the same 16-token queries, back to back (no onnxruntime):

    OPENBLAS_CORETYPE=SKYLAKEX RECORD=1 /work/venv/bin/python Benchmarks/short_queries_ab.py [ROUNDS] [BATCHES]

PRECISION (int8, f32 or bf16; default int8) picks the encoder precision.
BASE / NEW (paths, defaults /work/bin/main/m3bench and .build/release/m3bench) run as
`m3bench short-queries --serve`, both loaded; each round sends each batch size (batch 1 five
times) to both, in alternating order, holding /tmp/m3-bench.lock. Prints the medians of wall
and CPU seconds and the median per-pair wall ratio; RECORD=1 appends the raw [wall, cpu]
pairs to Benchmarks/results/short_queries.jsonl ("short_queries_ab").
"""
import datetime, fcntl, json, os, platform, random, statistics, subprocess, sys
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "Fixtures/generated/bge-m3-full-random")
BINS = {"base": os.environ.get("BASE", "/work/bin/main/m3bench"), "new": os.environ.get("NEW", os.path.join(ROOT, ".build/release/m3bench"))}
PRECISION = os.environ.get("PRECISION", "int8")
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
batches = [int(b) for b in (sys.argv[2] if len(sys.argv) > 2 else "1,8,32").split(",")]
env = dict(os.environ, OPENBLAS_CORETYPE="SKYLAKEX")
procs = {}
for name, b in BINS.items():
    p = subprocess.Popen([b, "short-queries", "--serve", "--model", MODEL, "--precision", PRECISION], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    print(name, p.stdout.readline().strip(), flush=True)
    procs[name] = p
def ask(p, ids, check=False):
    p.stdin.write(json.dumps({"ids": ids, **({"check": True} if check else {})}) + "\n"); p.stdin.flush()
    return json.loads(p.stdout.readline())
rng = random.Random(1)
def queries(n): return [[0] + [rng.randrange(4, 249994) for _ in range(14)] + [2] for _ in range(n)]
for p in procs.values(): ask(p, queries(2)); ask(p, queries(32))  # warm-up
res = {(n, b): [] for n in BINS for b in batches}
lock = open("/tmp/m3-bench.lock", "w")
load0 = os.getloadavg()
for r in range(rounds):
    fcntl.flock(lock, fcntl.LOCK_EX)
    for b in batches:
        reps = 5 if b == 1 else 1
        for _ in range(reps):
            q = queries(b)
            order = list(BINS) if r % 2 == 0 else list(BINS)[::-1]
            for n in order:
                a = ask(procs[n], q); res[(n, b)].append((a["seconds"], a["cpu_seconds"]))
    fcntl.flock(lock, fcntl.LOCK_UN)
out = {}
for b in batches:
    line = f"batch {b:3d}:"
    for n in BINS:
        w = statistics.median(x[0] for x in res[(n, b)]); c = statistics.median(x[1] for x in res[(n, b)])
        out[(n, b)] = w
        line += f"  {n} {w*1e3:7.1f} ms wall ({b/w:6.1f} q/s), cpu {c*1e3:7.1f} ms"
    ratios = [m[0] / t[0] for m, t in zip(res[("base", b)], res[("new", b)])]
    line += f"  base/new per-pair median {statistics.median(ratios):.3f}"
    print(line, flush=True)
differ = ask(procs["new"], queries(32), check=True)
print("differ (new, batch 32):", differ)
commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
rec = {"benchmark": "short_queries_ab", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "commit": commit, "baseline": os.environ.get("BASE_LABEL", BINS["base"]), "new": os.environ.get("NEW_LABEL", BINS["new"]), "cpu": platform.processor() or "x86_64 AVX-512 VNNI, 2 cores",
       "threads": 2, "length": 16, "rounds": rounds, "batches": batches, "precision": PRECISION,
       "method": "m3bench short-queries --serve, both builds loaded, same queries back to back, order alternating per round; batch 1 five times per round; [wall s, cpu s]; no onnxruntime (ONNX exports absent in this worktree)",
       "seconds": {n: {str(b): res[(n, b)] for b in batches} for n in BINS},
       "batch_invariance": {"build": "new", **differ}, "load_average_start": load0, "load_average_end": os.getloadavg()}
if os.environ.get("RECORD"):
    with open(os.path.join(ROOT, "Benchmarks/results/short_queries.jsonl"), "a") as f: f.write(json.dumps(rec) + "\n")
print(json.dumps({f"{n} b{b}": v for (n, b), v in out.items()}))
for p in procs.values(): p.stdin.close(); p.wait()

#!/usr/bin/env python3
"""Start-up of `--precision int8` (or bf16) with and without the packed-weights cache.

Times whole processes with hyperfine, side by side in one run:
  base:  a binary without the cache (packs every start)      --base BIN
  first: this build, its packed file removed before each run (packs and writes the file)
  warm:  this build, the packed file in place (maps it)
for `m3search encode` of one word (stdin) and `m3search query` on a small index built with the
same model. Each binary has its own cache folder, warmed first (tokenizer tables and weight
digests cached), so the only difference left is the packing. Also records one `--explain`
load split per variant. Appends one JSON line to Benchmarks/results/packed_start.jsonl.

  flock /tmp/m3-bench.lock python3 Benchmarks/packed_start.py --base /work/bin/m3search \\
      --bin .build/release/m3search --model /work/models/bge-m3-full-random --runs 10
"""
import argparse, datetime, json, os, re, subprocess, sys, tempfile

p = argparse.ArgumentParser()
p.add_argument("--base", required=True)
p.add_argument("--bin", required=True)
p.add_argument("--model", required=True)
p.add_argument("--precision", default="int8")
p.add_argument("--runs", type=int, default=10)
p.add_argument("--first-runs", type=int, default=5)
p.add_argument("--work", default=tempfile.gettempdir() + "/m3-packed-start")
p.add_argument("--label", default="")
p.add_argument("--record", action="store_true")
a = p.parse_args()

os.makedirs(a.work, exist_ok=True)
caches = {"base": f"{a.work}/cache-base", "this": f"{a.work}/cache-this"}
for c in caches.values():
    os.makedirs(c, exist_ok=True)
docs = f"{a.work}/docs"
os.makedirs(docs, exist_ok=True)
for i, text in enumerate(["The packed weights of the encoder are cached between starts.",
                          "Int8 kernels read panels of sixty-four columns from a memory map.",
                          "A hybrid index fuses dense, sparse and late-interaction scores."]):
    with open(f"{docs}/doc{i}.txt", "w") as f:
        f.write(text + "\n")
index = f"{a.work}/small.m3index"
word = f"{a.work}/word.jsonl"
with open(word, "w") as f:
    f.write('{"text": "word"}\n')


def run(cmd, cache, stdin=None):
    env = dict(os.environ, M3SEARCH_CACHE_DIR=cache)
    with open(stdin) if stdin else open(os.devnull) as inp:
        return subprocess.run(cmd, env=env, stdin=inp, capture_output=True, text=True, check=True)


if not os.path.exists(index):
    run([a.bin, "index", docs, "--index", index, "--model", a.model, "--precision", a.precision], caches["this"])

common = ["--model", a.model, "--precision", a.precision]
encode = lambda b: f"{b} encode --outputs dense {' '.join(common)} < {word}"
query = lambda b: f"{b} query 'cached packed weights' --index {index} {' '.join(common)}"

# Warm both caches (tokenizer, digests; this build's packed file).
for name, b in [("base", a.base), ("this", a.bin)]:
    for _ in range(2):
        run(["sh", "-c", encode(b)], caches[name])


def explain(b, cache, prepare=None):
    if prepare:
        subprocess.run(["sh", "-c", prepare], check=True)
    out = run(["sh", "-c", encode(b) + " --explain"], cache).stderr
    line = next(l for l in out.splitlines() if l.startswith("model load"))
    return line


def hyperfine(cmds, runs, prepare=None):
    out = f"{a.work}/hf.json"
    args = ["hyperfine", "--style", "none", "--runs", str(runs), "--export-json", out]
    if prepare:
        args += ["--prepare", prepare]
    else:
        args += ["--warmup", "1"]
    for name, cmd, cache in cmds:
        args += ["-n", name, f"M3SEARCH_CACHE_DIR={cache} {cmd}"]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    res = json.load(open(out))["results"]
    return {r["command"]: {"median_ms": r["median"] * 1000, "mean_ms": r["mean"] * 1000, "min_ms": r["min"] * 1000,
                           "max_ms": r["max"] * 1000, "stddev_ms": (r["stddev"] or 0) * 1000, "runs": len(r["times"])}
            for r in res}


remove = f"rm -f {caches['this']}/packed-*"
results = {}
for what, cmd in [("encode", encode), ("query", query)]:
    results[what] = hyperfine([("base", cmd(a.base), caches["base"]), ("warm", cmd(a.bin), caches["this"])], a.runs)
    results[what].update(hyperfine([("first", cmd(a.bin), caches["this"])], a.first_runs, prepare=remove))
    run(["sh", "-c", encode(a.bin)], caches["this"])  # leave the packed file in place

explains = {"base": explain(a.base, caches["base"]),
            "first": explain(a.bin, caches["this"], prepare=remove),
            "warm": explain(a.bin, caches["this"])}
packed = [f for f in os.listdir(caches["this"]) if f.startswith("packed-")]
record = {
    "benchmark": "packed_start", "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "label": a.label, "base": a.base, "bin": a.bin, "model": a.model, "precision": a.precision,
    "repo_head": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "load_before": list(os.getloadavg()), "results": results, "explain": explains,
    "packed_file_bytes": sum(os.path.getsize(f"{caches['this']}/{f}") for f in packed),
}
for what, r in results.items():
    print(f"{what}: base {r['base']['median_ms']:.0f} ms, first {r['first']['median_ms']:.0f} ms, "
          f"warm {r['warm']['median_ms']:.0f} ms (base/warm {r['base']['median_ms'] / r['warm']['median_ms']:.2f}x)")
for k, v in explains.items():
    print(f"{k}: {v}")
print(f"packed file: {record['packed_file_bytes'] / 1e6:.0f} MB")
if a.record:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results/packed_start.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")

#!/usr/bin/env python3
"""Start-up time of `m3search query` and `info`, and resident memory of `m3search serve`,
on one index (issue 13 items 1 and 5; BENCHMARKS.md "Start-up and memory at 100k chunks").

    flock /tmp/m3-bench.lock python3 Benchmarks/open_time.py --bin .build/release/m3search \\
        --index Benchmarks/work/e2e_100000x32.m3index --model /work/models/bge-m3-full-random \\
        --runs 7 --precision float32,int8 --record

For each precision: one warm-up, then --runs processes of `m3search query TEXT --explain
--json`, each timed by wall clock around the process; the explain object gives the encode,
the search stages, the model load and (from the build that reports it) the index open. What
the query spends beyond the encode is wall − encode. Then hyperfine times the plain command
(no --explain, no --json) and `m3search info`. Then `serve` is started, its VmRSS / VmHWM /
RssAnon / RssFile read from /proc/PID/status once /health answers, and again after
--serve-queries distinct queries. Medians over the runs. Prints a table; --record appends
one JSON line to Benchmarks/results/open_time.jsonl. Standard library only (and hyperfine).
"""
import argparse, json, os, platform, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
QUERY = "how does the hybrid index store dense vectors next to the sparse postings"


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def commit(binary):
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        out = ""
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return out, head


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0]) / 1024  # kB → MB (MiB)
    return fields


def query_runs(args, precision):
    cmd = [args.bin, "query", args.query, "--index", args.index, "--model", args.model, "--precision", precision,
           "--explain", "--json"]
    subprocess.run(cmd, capture_output=True, check=True)  # warm-up: page cache, model cache
    runs = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        wall = (time.perf_counter() - t0) * 1000
        if p.returncode != 0:
            sys.exit(f"query failed ({p.returncode}): {p.stderr}")
        ex = json.loads(p.stdout)["explain"]
        search = ex["candidates_ms"] + ex["score_ms"] + ex["fuse_ms"]
        run = {"wall_ms": wall, "encode_ms": ex["encode_ms"], "search_ms": search,
               "model_load_ms": ex["model_load"]["total_ms"], "beyond_encode_ms": wall - ex["encode_ms"]}
        if "index_open" in ex:
            run["index_open_ms"] = ex["index_open"]["total_ms"]
            run["index_open"] = ex["index_open"]
        # The rest: process start and exit, argument parsing, tokenizing, printing.
        run["other_ms"] = wall - ex["encode_ms"] - search - run["model_load_ms"] - run.get("index_open_ms", 0)
        runs.append(run)
    keys = [k for k in runs[0] if k.endswith("_ms")]
    median = {k: statistics.median(r[k] for r in runs) for k in keys}
    if "index_open" in runs[0]:
        median["index_open"] = {k: statistics.median(r["index_open"][k] for r in runs) if isinstance(v, (int, float))
                                else runs[-1]["index_open"][k] for k, v in runs[0]["index_open"].items()}
    return {"precision": precision, "runs": runs, "median": median}


def hyperfine(args, name, cmd):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(["hyperfine", "--style", "none", "--warmup", "1", "--runs", str(args.runs), "--export-json", out.name,
                        "--command-name", name, cmd], check=True, stdout=subprocess.DEVNULL)
        r = json.load(open(out.name))["results"][0]
    return {"command": cmd, "median_ms": r["median"] * 1000, "mean_ms": r["mean"] * 1000, "min_ms": r["min"] * 1000,
            "max_ms": r["max"] * 1000, "stddev_ms": (r["stddev"] or 0) * 1000}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_memory(args):
    port = free_port()
    cmd = [args.bin, "serve", "--index", args.index, "--model", args.model, "--port", str(port), "--log-level", "warning"]
    if args.serve_precision:
        cmd += ["--precision", args.serve_precision]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                sys.exit(f"serve exited ({proc.returncode}): {proc.stderr.read()}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except Exception:
                time.sleep(0.05)
        ready = (time.perf_counter() - t0) * 1000
        started = status(proc.pid)
        latencies = []
        for i in range(args.serve_queries):
            body = json.dumps({"query": f"{args.query} {i}", "k": 10}).encode()
            req = urllib.request.Request(base + "/search", data=body, headers={"Content-Type": "application/json"})
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=120) as r:
                r.read()
            latencies.append((time.perf_counter() - t) * 1000)
        after = status(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"ready_ms": ready, "after_start_mb": started, "after_queries_mb": after, "queries": args.serve_queries,
            "query_ms_median": statistics.median(latencies) if latencies else None, "precision": args.serve_precision or "float32"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, ".build/release/m3search"))
    ap.add_argument("--index", default=os.path.join(ROOT, "Benchmarks/work/e2e_100000x32.m3index"))
    ap.add_argument("--model", default="/work/models/bge-m3-full-random")
    ap.add_argument("--query", default=QUERY)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--precision", default="float32,int8", help="comma-separated query precisions")
    ap.add_argument("--serve-queries", type=int, default=50)
    ap.add_argument("--serve-precision", default=None)
    ap.add_argument("--no-serve", action="store_true")
    ap.add_argument("--label", default="", help="free text kept in the record (e.g. 'main' or 'lazy dense')")
    ap.add_argument("--record", action="store_true", help="append to Benchmarks/results/open_time.jsonl")
    args = ap.parse_args()

    version, head = commit(args.bin)
    rec = {"benchmark": "open_time", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu": cpu_name(),
           "cores": os.cpu_count(), "load_before": os.getloadavg(), "binary": args.bin, "binary_version": version,
           "repo_head": head, "label": args.label, "index": args.index, "index_bytes": os.path.getsize(args.index),
           "model": args.model, "query": args.query, "runs": args.runs}
    info = subprocess.run([args.bin, "info", "--index", args.index, "--json"], capture_output=True, text=True)
    if info.returncode == 0:
        try:
            rec["index_info"] = json.loads(info.stdout)
        except json.JSONDecodeError:
            pass
    rec["query"] = [query_runs(args, p) for p in args.precision.split(",") if p]
    q = args.query.replace('"', '\\"')
    rec["hyperfine"] = {}
    for p in args.precision.split(","):
        rec["hyperfine"][f"query_{p}"] = hyperfine(args, f"query {p}",
            f'{args.bin} query "{q}" --index {args.index} --model {args.model} --precision {p}')
    rec["hyperfine"]["info"] = hyperfine(args, "info", f"{args.bin} info --index {args.index}")
    if not args.no_serve:
        rec["serve"] = serve_memory(args)
    rec["load_after"] = os.getloadavg()

    print(f"{args.index}: {rec['index_bytes'] / 1e9:.2f} GB; {rec['cpu']}; load {rec['load_before']} → {rec['load_after']}")
    print("| precision | wall | encode | beyond encode | model load | index open | search | other |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rec["query"]:
        m = r["median"]
        print(f"| {r['precision']} | {m['wall_ms']:.0f} | {m['encode_ms']:.0f} | {m['beyond_encode_ms']:.0f} | "
              f"{m['model_load_ms']:.0f} | {m.get('index_open_ms', float('nan')):.0f} | {m['search_ms']:.1f} | {m['other_ms']:.0f} |")
        if "index_open" in m:
            print("   index open (median ms): " + ", ".join(f"{k} {v:.1f}" if isinstance(v, (int, float)) else f"{k} {v}"
                                                          for k, v in m["index_open"].items()))
    for name, h in rec["hyperfine"].items():
        print(f"hyperfine {name}: median {h['median_ms']:.0f} ms (mean {h['mean_ms']:.0f} ± {h['stddev_ms']:.0f}, "
              f"min {h['min_ms']:.0f})")
    if "serve" in rec:
        s = rec["serve"]
        print(f"serve: /health after {s['ready_ms']:.0f} ms; after start-up {s['after_start_mb']}; "
              f"after {s['queries']} queries {s['after_queries_mb']} (MiB); query median {s['query_ms_median']:.0f} ms")
    if args.record:
        with open(os.path.join(ROOT, "Benchmarks/results/open_time.jsonl"), "a") as f:
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()

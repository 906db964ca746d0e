#!/usr/bin/env python3
"""Process start-up of m3search binaries side by side (issue 13 item 1; BENCHMARKS.md
"Start-up: poppler at the first PDF, a static Swift runtime").

    python3 Benchmarks/startup_ab.py --bin "main cd4a5e8=/work/bin/s9base/m3search" \\
        --bin "lazy poppler=/tmp/lazy/m3search" --bin "static=.build/release/m3search" --rounds 6 --runs 15 --record

Builds (once, with the first binary) an index of Fixtures/corpus with the tiny committed
model, then times three commands with hyperfine: `--version` (process start alone), `encode`
of one word and `query` on that index. The binaries alternate: each round runs hyperfine on
each binary in turn (the order rotating every round), each round holding
/tmp/m3-bench.lock (flock), so load from other jobs falls on all alike. Medians (and minima)
over all runs of all rounds; ratios against the first binary. Prints a table; --record
appends one JSON line to Benchmarks/results/startup.jsonl. Standard library only (and hyperfine).
"""
import argparse, fcntl, json, os, statistics, subprocess, tempfile, time

from open_time import cpu_name  # the script's folder is on sys.path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL = os.path.join(ROOT, "Fixtures/models/tiny-safetensors")


def hyperfine(command, runs, stdin=None):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = ["hyperfine", "-w", "3", "-r", str(runs), "--export-json", out.name]
        if stdin:
            # hyperfine 1.15 has no --input: through the shell, whose spawn it measures and subtracts.
            command += " < " + stdin
        else:
            cmd.append("-N")
        subprocess.run(cmd + [command], check=True, capture_output=True)
        with open(out.name) as f:
            return json.load(f)["results"][0]["times"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", action="append", required=True, help="LABEL=PATH (the first is the baseline)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--work", default=os.path.join(ROOT, "Benchmarks/work/startup"))
    p.add_argument("--record", action="store_true")
    args = p.parse_args()
    bins = [tuple(b.split("=", 1)) for b in args.bin]
    os.makedirs(args.work, exist_ok=True)
    index = os.path.join(args.work, "corpus.m3index")
    base = bins[0][1]
    # One index for all: an existing one is only brought up to date.
    subprocess.run(["nice", "-n", "19", base, "index", os.path.join(ROOT, "Fixtures/corpus"), "--index", index,
                    "--model", MODEL], check=True, capture_output=True)
    word = os.path.join(args.work, "word.jsonl")
    with open(word, "w") as f:
        f.write('{"text": "lighthouse"}\n')
    info = subprocess.run([base, "info", "--index", index], capture_output=True, text=True).stdout.splitlines()
    commands = {
        "version": ("{bin} --version", None),
        "encode": ("{bin} encode --model " + MODEL + " --outputs dense", word),
        "query": ("{bin} query 'how do context managers work' --index " + index + " --model " + MODEL + " --k 5", None),
    }
    times = {name: {label: [] for label, _ in bins} for name in commands}
    load_before = os.getloadavg()
    for r in range(args.rounds):
        order = bins[r % len(bins):] + bins[:r % len(bins)]
        # The machine's benchmark lock, held for one round (well under a minute).
        with open("/tmp/m3-bench.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for name, (template, stdin) in commands.items():
                for label, binary in order:
                    times[name][label] += hyperfine(template.format(bin=binary), args.runs, stdin)
    rows = []
    print(f"median (min) ms over {args.rounds}x{args.runs} runs each; ratio of medians to {bins[0][0]}")
    print(f"{'command':8} " + " ".join(f"{label:>28}" for label, _ in bins))
    for name in commands:
        b = statistics.median(times[name][bins[0][0]])
        cells = []
        for label, binary in bins:
            t = times[name][label]
            m = statistics.median(t)
            rows.append({"command": name, "label": label, "binary": binary, "median_ms": round(m * 1000, 2),
                         "min_ms": round(min(t) * 1000, 2), "ratio": round(m / b, 3), "runs": len(t)})
            cells.append(f"{m * 1000:8.2f} ({min(t) * 1000:6.2f}) {m / b:6.3f}x")
        print(f"{name:8} " + " ".join(f"{c:>28}" for c in cells))
    if args.record:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        line = {"benchmark": "startup_ab", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "cpu": cpu_name(), "cores": os.cpu_count(), "load_before": list(load_before),
                "load_after": list(os.getloadavg()), "repo_head": head,
                "index": index, "index_size": next((l for l in info if " documents, " in l), ""), "model": "Fixtures/models/tiny-safetensors",
                "rounds": args.rounds, "runs_per_round": args.runs, "results": rows}
        with open(os.path.join(HERE, "results/startup.jsonl"), "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Process start-up of two m3search binaries, A/B (issue 13 item 1; BENCHMARKS.md "Start-up:
poppler loaded at the first PDF").

    python3 Benchmarks/startup_ab.py --base /work/bin/s9base/m3search --new .build/release/m3search \\
        --label-base "main cd4a5e8" --label-new "lazypdf" --rounds 6 --runs 15 --record

Builds (once, with --base) an index of Fixtures/corpus with the tiny committed model, then
times three commands with hyperfine: `--version` (process start alone), `encode` of one word
and `query` on that index. The two binaries alternate: each round runs hyperfine on the base
then the new binary (or the reverse, every other round), each round under
`flock /tmp/m3-bench.lock`, so load from other jobs falls on both alike. Medians over all runs
of all rounds. Prints a table; --record appends one JSON line to
Benchmarks/results/startup.jsonl. Standard library only (and hyperfine).
"""
import argparse, json, os, platform, statistics, subprocess, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL = os.path.join(ROOT, "Fixtures/models/tiny-safetensors")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def hyperfine(command, runs, stdin=None):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = ["flock", "/tmp/m3-bench.lock", "hyperfine", "-N", "-w", "3", "-r", str(runs), "--export-json", out.name]
        if stdin:
            cmd += ["--input", stdin]
        subprocess.run(cmd + [command], check=True, capture_output=True)
        with open(out.name) as f:
            return json.load(f)["results"][0]["times"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--new", required=True)
    p.add_argument("--label-base", default="base")
    p.add_argument("--label-new", default="new")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--work", default=os.path.join(ROOT, "Benchmarks/work/startup"))
    p.add_argument("--record", action="store_true")
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    index = os.path.join(args.work, "corpus.m3index")
    # One index for both: the format is the same; an existing one is only checked.
    subprocess.run(["nice", "-n", "19", args.base, "index", os.path.join(ROOT, "Fixtures/corpus"), "--index", index,
                    "--model", MODEL], check=True, capture_output=True)
    word = os.path.join(args.work, "word.jsonl")
    with open(word, "w") as f:
        f.write('{"text": "lighthouse"}\n')
    info = subprocess.run([args.base, "info", "--index", index], capture_output=True, text=True).stdout.splitlines()
    commands = {
        "version": ("{bin} --version", None),
        "encode": ("{bin} encode --model " + MODEL + " --outputs dense", word),
        "query": ("{bin} query 'how do context managers work' --index " + index + " --model " + MODEL + " --k 5", None),
    }
    times = {name: {"base": [], "new": []} for name in commands}
    load_before = os.getloadavg()
    for r in range(args.rounds):
        order = ["base", "new"] if r % 2 == 0 else ["new", "base"]
        for name, (template, stdin) in commands.items():
            for side in order:
                binary = args.base if side == "base" else args.new
                times[name][side] += hyperfine(template.format(bin=binary), args.runs, stdin)
    rows = []
    print(f"{'command':8} {'base ms':>9} {'new ms':>9} {'new/base':>9}   (median of {args.rounds}×{args.runs} runs each)")
    for name in commands:
        b = statistics.median(times[name]["base"]) * 1000
        n = statistics.median(times[name]["new"]) * 1000
        rows.append({"command": name, "base_median_ms": round(b, 2), "new_median_ms": round(n, 2),
                     "base_min_ms": round(min(times[name]["base"]) * 1000, 2),
                     "new_min_ms": round(min(times[name]["new"]) * 1000, 2), "ratio": round(n / b, 3)})
        print(f"{name:8} {b:9.2f} {n:9.2f} {n / b:9.3f}")
    if args.record:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        line = {"benchmark": "startup_ab", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "cpu": cpu_name(), "cores": os.cpu_count(), "load_before": list(load_before), "repo_head": head,
                "base": args.base, "label_base": args.label_base, "new": args.new, "label_new": args.label_new,
                "index": info[0] if info else index, "model": "Fixtures/models/tiny-safetensors",
                "rounds": args.rounds, "runs_per_round": args.runs, "results": rows}
        with open(os.path.join(HERE, "results/startup.jsonl"), "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()

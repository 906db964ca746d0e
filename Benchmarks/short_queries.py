"""Short-query encoding: m3search (float32, bf16, int8) against onnxruntime (float32, dynamic
int8) on identical weights and identical token ids, interleaved in one run.

    /work/venv/bin/python Benchmarks/short_queries.py [--rounds 5] [--length 16] [--batches 1,2,4,8,16,32]

Needs Benchmarks/work/bge-m3.onnx and bge-m3-int8.onnx (export_onnx.py, quantize_onnx.py) and
.build/release/m3bench (swift build -c release --product m3bench). Prints the tables and
appends a JSON record to Benchmarks/results/short_queries.jsonl.

Each phase loads one m3search precision (`m3bench short-queries --serve`, a persistent
process, all three heads) and its onnxruntime peer (intra_op_num_threads=2, encoder only:
last_hidden_state), one phase at a time to stay within ~6 GB. A round runs every batch size;
for each, both engines encode the same freshly drawn distinct queries (uniform ids of the
ordinary vocabulary between <s> and </s>; random weights make real text pointless), in
alternating order, each after GAP_MS (default 50) idle milliseconds so that neither runs
beside the other's still-spinning thread pool. Reported per batch size: median latency over rounds and queries/s; for
m3search the speed-up of a batch over its queries one by one (batch size × the single-query
median); CPU seconds per query (user + system, all threads; onnxruntime's spinning pool
threads included); and onnxruntime's time over m3search's, both as the median of the
per-round ratios (same queries, back to back: robust to the machine's load drifting) and
as the ratio of the medians. After each phase, m3search encodes one batch of the largest size
and each of its queries alone, and reports how many are bit-identical both ways (the
dynamic batcher's requirement).
"""
import argparse, datetime, json, os, platform, random, resource, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL = os.path.join(ROOT, "Fixtures/generated/bge-m3-full-random")
BENCH = os.environ.get("M3BENCH", os.path.join(ROOT, ".build/release/m3bench"))  # M3BENCH=… another build
ONNX = {"f32": os.path.join(HERE, "work/bge-m3.onnx"), "int8": os.path.join(HERE, "work/bge-m3-int8.onnx")}
RESULTS = os.path.join(HERE, "results/short_queries.jsonl")
THREADS = 2
GAP = float(os.environ.get("GAP_MS", "50")) / 1000  # idle time before every timed call


class M3Search:
    def __init__(self, precision, model):
        self.name = f"m3search {precision}"
        self.proc = subprocess.Popen([BENCH, "short-queries", "--serve", "--model", model, "--precision", precision],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        hello = json.loads(self.proc.stdout.readline())
        self.precision = hello["precision"]  # what the CPU runs (float32 when it lacks the instructions)

    def __call__(self, ids):
        self.proc.stdin.write(json.dumps({"ids": ids}) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        return reply["seconds"], reply["cpu_seconds"]

    def differing(self, ids):
        """Indices of the queries whose outputs differ in any bit between alone and batched."""
        self.proc.stdin.write(json.dumps({"ids": ids, "check": True}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["differ"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


class ORT:
    def __init__(self, precision):
        import onnxruntime as ort
        self.name = f"onnxruntime {precision}"
        so = ort.SessionOptions()
        so.intra_op_num_threads = THREADS
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(ONNX[precision], so, providers=["CPUExecutionProvider"])

    def __call__(self, ids):
        import numpy as np
        x = np.array(ids, dtype=np.int64)
        c, t = cpu_seconds(), time.perf_counter()
        self.session.run(None, {"input_ids": x, "attention_mask": np.ones_like(x)})
        return time.perf_counter() - t, cpu_seconds() - c

    def close(self):
        del self.session


def cpu_seconds():
    """User + system CPU seconds of this process (onnxruntime's threads included)."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def queries(rng, batch, length):
    return [[0] + [rng.randrange(4, 249_994) for _ in range(length - 2)] + [2] for _ in range(batch)]


def run_phase(engines, batches, rounds, length, seed):
    """{engine name: {batch: [(wall, cpu) seconds per round]}}; every engine sees the same ids."""
    rng = random.Random(seed)
    for e in engines:  # warm-up: page in the weights, let onnxruntime plan
        for b in (1, batches[-1]):
            e(queries(rng, b, length))
    times = {e.name: {b: [] for b in batches} for e in engines}
    for r in range(rounds):
        for b in batches:
            ids = queries(rng, b, length)
            order = engines if (r + b) % 2 == 0 else engines[::-1]
            for e in order:
                # Each engine gets the cores to itself: onnxruntime's pool spins for a while
                # after a run (and m3search's for 0.5 ms), which would tax whoever runs next.
                time.sleep(GAP)
                times[e.name][b].append(e(ids))
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--length", type=int, default=16)
    ap.add_argument("--batches", default="1,2,4,8,16,32")
    ap.add_argument("--phases", default="f32,int8,bf16",
                    help="f32 (m3search f32 + ort f32), int8 (m3search int8 + ort int8), bf16 (m3search bf16)")
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()

    record = {"benchmark": "short_queries", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "commit": commit, "cpu": cpu_name(), "threads": THREADS, "length": args.length,
              "rounds": args.rounds, "batches": batches, "gap_ms": GAP * 1000, "phases": {},
              "load_average_start": os.getloadavg()}  # the machine is shared: how busy it was
    for phase in args.phases.split(","):
        engines = [M3Search(phase, args.model)]
        if phase in ONNX:
            engines.append(ORT(phase))
        ran = engines[0].precision
        print(f"phase {phase}: {', '.join(e.name for e in engines)} (m3search runs {ran})", file=sys.stderr)
        times = run_phase(engines, batches, args.rounds, args.length, args.seed)
        # The promise dynamic batching relies on, on this model and CPU.
        differ = engines[0].differing(queries(random.Random(args.seed + 1), batches[-1], args.length))
        for e in engines:
            e.close()
        record["phases"][phase] = {"m3search_runs": ran, "seconds": times,
                                   "batch_invariance": {"queries": batches[-1], "differ": differ}}
        print_phase(phase, ran, times, batches, args.length)
        print(f"batch invariance: {batches[-1] - len(differ)} of {batches[-1]} queries bit-identical alone and in one batch")

    record["load_average_end"] = os.getloadavg()
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(record) + "\n")


def print_phase(phase, ran, timings, batches, length):
    names = list(timings)
    ours = names[0]
    times = {e: {b: [w for w, _ in timings[e][b]] for b in batches} for e in names}
    cpu = {e: {b: [c for _, c in timings[e][b]] for b in batches} for e in names}
    print(f"\n{phase} ({ours} runs {ran}), {length}-token queries, median over rounds")
    header = f"{'batch':>5}  {ours + ' ms':>18}  {'q/s':>7}  {'vs one by one':>13}  {'cpu s/q':>7}"
    peer = names[1] if len(names) > 1 else None
    if peer:
        header += f"  {peer + ' ms':>20}  {'q/s':>7}  {'cpu s/q':>7}  {'ratio':>6}  {'of medians':>10}"
    print(header)
    single = statistics.median(times[ours][batches[0]]) / batches[0]
    for b in batches:
        m = statistics.median(times[ours][b])
        line = (f"{b:>5}  {m * 1e3:>18.1f}  {b / m:>7.1f}  {single * b / m:>12.2f}×"
                f"  {statistics.median(cpu[ours][b]) / b:>7.3f}")
        if peer:
            p = statistics.median(times[peer][b])
            # ratio per round (same queries, back to back), then the median
            ratios = [pt / mt for pt, mt in zip(times[peer][b], times[ours][b])]
            line += (f"  {p * 1e3:>20.1f}  {b / p:>7.1f}  {statistics.median(cpu[peer][b]) / b:>7.3f}"
                     f"  {statistics.median(ratios):>5.2f}×  {p / m:>9.2f}×")
        print(line)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    flags = open("/proc/cpuinfo").read()
                    isa = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse"
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cpus, {isa})"
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()

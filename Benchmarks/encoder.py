"""Encoder throughput: m3search (float32, bf16, int8) vs onnxruntime (float32, dynamic int8),
transformers and FlagEmbedding on identical weights (Fixtures/generated/bge-m3-full-random),
interleaved round-robin.

    /work/venv/bin/python Benchmarks/encoder.py [--rounds 3] [--engines m3search,ort,transformers,flag]
    /work/venv/bin/python Benchmarks/encoder.py --engines m3search,m3search-bf16,m3search-int8,ort,ort-int8

Engines: m3search (float32), m3search-bf16, m3search-int8 (`--precision`), ort (float32),
ort-int8 (Benchmarks/work/bge-m3-int8.onnx from Benchmarks/quantize_onnx.py), transformers, flag.

Needs Benchmarks/work/bge-m3.onnx (Benchmarks/export_onnx.py) and .build/release/m3search
(swift build -c release --product m3search). Prints a table and appends a JSON record to
Benchmarks/results/encoder.jsonl (records before the
rename carry "benchmark": "encoder").

Each round runs every engine once, in order; a Python engine is a fresh subprocess
(load, warm-up on one short batch, every workload once, peak RSS from getrusage). m3search
is one `encode --outputs dense` process per workload (its wall time minus the round's
startup time, i.e. the wall time of encoding one 8-token text) under /usr/bin/time -v.
Reported: median over rounds of tokens/s (real tokens, no padding) per workload.
"""
import argparse, datetime, json, os, platform, resource, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "Fixtures"))
MODEL = os.path.join(ROOT, "Fixtures/generated/bge-m3-full-random")
ONNX = os.path.join(HERE, "work/bge-m3.onnx")
BINARY = os.environ.get("M3SEARCH", os.path.join(ROOT, ".build/release/m3search"))  # M3SEARCH=: another build
RESULTS = os.path.join(HERE, "results/encoder.jsonl")
ONNX_INT8 = os.path.join(HERE, "work/bge-m3-int8.onnx")
PARTIAL = os.path.join(HERE, "work/encoder.partial.jsonl")  # every engine-round, as it ends
THREADS = 2

# name -> list of target lengths (tokens incl. <s> and </s>)
WORKLOADS = {
    "128x32": [128] * 32,
    "512x8": [512] * 8,
    "2048x4": [2048] * 4,
    "mixed16": [16, 24, 32, 48, 64, 96, 128, 192, 256, 320, 384, 512, 640, 768, 896, 1024],
}


# ---------------------------------------------------------------- workloads

def corpus_text():
    d = os.path.join(ROOT, "Fixtures/corpus")
    parts = [open(os.path.join(d, f), encoding="utf-8").read()
             for f in sorted(os.listdir(d)) if f != "LICENSE.md"]
    return " ".join(" ".join(p.split()) for p in parts)  # whitespace collapsed


def make_texts(tok, lengths):
    """Texts that the tokenizer turns into exactly `lengths[i]` ids (with <s>, </s>),
    cut from the corpus at successive offsets so that the documents differ."""
    text = corpus_text()
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    offs = enc["offset_mapping"]
    texts, pos = [], 0
    for L in lengths:
        n = L - 2
        if pos + n + 50 > len(offs):
            pos = 0
        for extra in range(0, 40):  # cut at a token end; shift if re-tokenizing differs
            start = offs[pos + extra][0]
            end = offs[pos + extra + n - 1][1]
            t = text[start:end]
            if len(tok(t)["input_ids"]) == L:
                break
        else:
            raise RuntimeError(f"no text of exactly {L} tokens near {pos}")
        texts.append(t)
        pos += n + 7
    return texts


def build_workloads():
    from transformers import AutoTokenizer
    from flag_m3 import FlagModelDir
    with FlagModelDir(MODEL) as folder:
        tok = AutoTokenizer.from_pretrained(folder)
    out = {}
    for name, lengths in WORKLOADS.items():
        texts = make_texts(tok, lengths)
        ids = [tok(t)["input_ids"] for t in texts]
        assert [len(i) for i in ids] == lengths, name
        out[name] = {"texts": texts, "ids": ids, "max_length": max(lengths),
                     "tokens": sum(lengths)}
    return out


# ---------------------------------------------------------------- Python engines (worker)

def pad(ids):
    import numpy as np
    T = max(len(i) for i in ids)
    a = np.ones((len(ids), T), dtype=np.int64)  # pad id 1
    m = np.zeros((len(ids), T), dtype=np.int64)
    for r, i in enumerate(ids):
        a[r, :len(i)] = i
        m[r, :len(i)] = 1
    return a, m


def worker(engine, wl_path):
    wls = json.load(open(wl_path))
    import torch
    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    if engine in ("ort", "ort-int8"):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = THREADS
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(ONNX if engine == "ort" else ONNX_INT8, so,
                                    providers=["CPUExecutionProvider"])

        def run(w):
            a, m = pad(w["ids"])
            return sess.run(None, {"input_ids": a, "attention_mask": m})[0]
    elif engine == "transformers":
        from transformers import XLMRobertaModel
        model = XLMRobertaModel.from_pretrained(MODEL, dtype=torch.float32,
                                                add_pooling_layer=False).eval()

        def run(w):
            a, m = pad(w["ids"])
            with torch.inference_mode():
                return model(input_ids=torch.from_numpy(a),
                             attention_mask=torch.from_numpy(m)).last_hidden_state
    elif engine == "flag":
        from flag_m3 import FlagModelDir, load_flag_model
        ctx = FlagModelDir(MODEL)
        folder = ctx.__enter__()
        model = load_flag_model(folder, verify_weights=False)

        def run(w):
            return model.encode(w["texts"], batch_size=len(w["texts"]), max_length=w["max_length"],
                                return_dense=True, return_sparse=False, return_colbert_vecs=False)
    else:
        raise ValueError(engine)
    load = time.perf_counter() - t0
    run({"ids": [[0, 100, 200, 2]] * 2, "texts": ["hello world"] * 2, "max_length": 16})  # warm-up
    times = {}
    for name, w in wls.items():
        t = time.perf_counter()
        run(w)
        times[name] = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    print(json.dumps({"load_s": load, "times": times, "peak_rss_mb": rss / 1024}))


def run_python_engine(engine, wl_path):
    p = subprocess.run([sys.executable, __file__, "--worker", engine, wl_path],
                       capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError(f"{engine} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- m3search

def time_m3search(texts, max_length, check_lengths=None, precision="f32"):
    inp = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    with tempfile.NamedTemporaryFile("w+", suffix=".time") as tf:
        cmd = ["/usr/bin/time", "-v", "-o", tf.name, BINARY, "encode", "--model", MODEL,
               "--max-length", str(max_length), "--outputs", "dense", "--precision", precision]
        t = time.perf_counter()
        p = subprocess.run(cmd, input=inp, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if p.returncode != 0:
            raise RuntimeError(f"m3search failed: {p.stderr[-2000:]}")
        tv = {}
        for line in open(tf.name):
            k, _, v = line.strip().rpartition(": ")
            tv[k] = v
    lines = p.stdout.strip().splitlines()
    assert len(lines) == len(texts)
    if check_lengths is not None:
        got = [json.loads(l)["input_ids"] for l in lines]
        assert got == check_lengths, "m3search input_ids differ from the HF tokenizer's"
    return {"wall_s": wall, "user_s": float(tv["User time (seconds)"]),
            "sys_s": float(tv["System time (seconds)"]),
            "peak_rss_mb": int(tv["Maximum resident set size (kbytes)"]) / 1024}


def run_m3search(wls, first, precision="f32"):
    start = time_m3search(["hello world, short text"], 16, precision=precision)
    res = {"load_s": start["wall_s"], "startup": start, "times": {}, "raw": {}}
    for name, w in wls.items():
        r = time_m3search(w["texts"], w["max_length"], w["ids"] if first else None, precision)
        res["raw"][name] = r
        res["times"][name] = r["wall_s"] - start["wall_s"]
    res["peak_rss_mb"] = max([start["peak_rss_mb"]] + [r["peak_rss_mb"] for r in res["raw"].values()])
    return res


# ---------------------------------------------------------------- main

def versions():
    import importlib.metadata as md
    v = {p: md.version(p) for p in ("onnxruntime", "onnx", "torch", "transformers",
                                    "FlagEmbedding", "tokenizers", "numpy")}
    v["python"] = platform.python_version()
    v["m3search_git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                       capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "Sources", "Package.swift"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        v["m3search_git"] += "+dirty"
    v["swift"] = subprocess.run(["swift", "--version"], capture_output=True,
                                text=True).stdout.strip().splitlines()[0]
    return v


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                  if l.startswith("model name")), "?")
    flags = next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "")
    return {"cpu": model, "nproc": os.cpu_count(), "avx512f": " avx512f" in flags,
            "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "kernel": platform.release()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--engines", default="m3search,ort,transformers,flag")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--no-record", action="store_true", help="do not append to the results file")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(*args.worker)

    engines = args.engines.split(",")
    needs = [(ONNX, "run Benchmarks/export_onnx.py")]
    if "ort-int8" in engines:
        needs.append((ONNX_INT8, "run Benchmarks/quantize_onnx.py"))
    for f, what in needs + [(BINARY, "swift build -c release --product m3search")]:
        if not os.path.exists(f):
            sys.exit(f"missing {f}: {what}")
    all_wls = build_workloads()
    wls = {k: all_wls[k] for k in args.workloads.split(",")}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(wls, f)
        wl_path = f.name
    runs = {e: [] for e in engines}
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    try:
        for r in range(args.rounds):
            for e in engines:
                t = time.perf_counter()
                if e.startswith("m3search"):
                    res = run_m3search(wls, r == 0, e.split("-", 1)[1] if "-" in e else "f32")
                else:
                    res = run_python_engine(e, wl_path)
                runs[e].append(res)
                with open(PARTIAL, "a") as pf:  # survives an interrupted run
                    pf.write(json.dumps({"started": started, "round": r + 1, "engine": e, **res}) + "\n")
                print(f"round {r + 1}/{args.rounds} {e:12s} {time.perf_counter() - t:6.1f} s  "
                      + "  ".join(f"{k} {v:.2f}s" for k, v in res["times"].items()), flush=True)
    finally:
        os.unlink(wl_path)

    summary = {}
    for e in engines:
        s = {"tokens_per_s": {}, "median_s": {}}
        for name, w in wls.items():
            med = statistics.median(x["times"][name] for x in runs[e])
            s["median_s"][name] = med
            s["tokens_per_s"][name] = w["tokens"] / med
        s["peak_rss_mb"] = max(x["peak_rss_mb"] for x in runs[e])
        s["load_s_median"] = statistics.median(x["load_s"] for x in runs[e])
        if e.startswith("m3search"):
            s["cpu_per_wall"] = {name: statistics.median(
                (x["raw"][name]["user_s"] + x["raw"][name]["sys_s"]) / x["raw"][name]["wall_s"]
                for x in runs[e]) for name in wls}
        summary[e] = s

    # table
    ref = "ort" if "ort" in engines else None
    print()
    print(f"encoder, {THREADS} threads, median of {args.rounds} rounds; tokens/s "
          f"(ratio to onnxruntime)")
    print("| workload | tokens | " + " | ".join(engines) + " |")
    print("|---|---:|" + "---:|" * len(engines))
    for name, w in wls.items():
        cells = []
        for e in engines:
            tps = summary[e]["tokens_per_s"][name]
            cell = f"{tps:.0f}"
            if ref:
                cell += f" ({tps / summary[ref]['tokens_per_s'][name]:.2f}×)"
            cells.append(cell)
        print(f"| {name} | {w['tokens']} | " + " | ".join(cells) + " |")
    print("| peak RSS (MB) | | " + " | ".join(f"{summary[e]['peak_rss_mb']:.0f}" for e in engines) + " |")
    print("| load (s) | | " + " | ".join(f"{summary[e]['load_s_median']:.2f}" for e in engines) + " |")
    for e in (e for e in engines if e.startswith("m3search")):
        print(f"{e} CPU time / wall time per workload (≈2.0 = both cores busy): "
              + ", ".join(f"{k} {v:.2f}" for k, v in summary[e]["cpu_per_wall"].items()))

    if not args.no_record:
        rec = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "benchmark": "encoder", "machine": machine(), "versions": versions(),
               "threads": THREADS, "rounds": args.rounds,
               "model": os.path.relpath(MODEL, ROOT),
               "workloads": {k: {"lengths": WORKLOADS[k], "tokens": w["tokens"]} for k, w in wls.items()},
               "summary": summary,
               "runs": {e: [{k: v for k, v in x.items() if k in ("times", "load_s", "peak_rss_mb", "raw")}
                            for x in runs[e]] for e in engines}}
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        with open(RESULTS, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"appended to {os.path.relpath(RESULTS, ROOT)}")


if __name__ == "__main__":
    main()

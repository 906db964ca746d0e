#!/usr/bin/env python3
"""Load generator for `m3search serve` (and, for comparison, embedding servers):
closed-loop clients, every query distinct, latency percentiles and QPS.

    # m3search serve, 8 clients for 30 s after 5 s of warm-up
    python Benchmarks/serve_load.py --url http://127.0.0.1:8080 --clients 8 --duration 30
    # sequential baseline, then 8 and 32 clients, in one run (ratios are what count)
    python Benchmarks/serve_load.py --url http://127.0.0.1:8080 --clients 1,8,32 --duration 30
    # check first that a query answers the same alone and under load (results and scores)
    python Benchmarks/serve_load.py --url http://127.0.0.1:8080 --verify 64 --clients 8
    # an OpenAI-style embedding server (infinity-emb): POST /embeddings {"input": [q], "model": M}
    python Benchmarks/serve_load.py --url http://127.0.0.1:7997 --target embeddings --model m3 --clients 1,8

Queries are generated: 3 to 9 words drawn from the committed corpus's vocabulary with a
fixed seed, each numbered so that no two are equal (a cache of repeated queries can never
help). Each client sends its next query as soon as the previous answer arrives. Warm-up
requests are not counted. Prints one line per client count and appends JSON lines to
Benchmarks/results/serve.jsonl (--out).
"""
import argparse, asyncio, json, os, random, re, statistics, sys, time

import aiohttp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def vocabulary():
    corpus = os.path.join(ROOT, "Fixtures", "corpus")
    words = set()
    for name in sorted(os.listdir(corpus)):
        if name.endswith(".md") and name.startswith("LICENSE"):
            continue
        with open(os.path.join(corpus, name), encoding="utf-8", errors="replace") as f:
            words.update(w.lower() for w in re.findall(r"[A-Za-z][A-Za-z_]{2,15}", f.read()))
    return sorted(words)


class Queries:
    """An endless stream of distinct queries (deterministic for a seed)."""

    def __init__(self, seed):
        self.words = vocabulary()
        self.rng = random.Random(seed)
        self.n = 0

    def next(self):
        self.n += 1
        k = self.rng.randint(3, 9)
        return " ".join(self.rng.choice(self.words) for _ in range(k)) + f" {self.n}"


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, int(round(p / 100 * (len(sorted_values) - 1)))))
    return sorted_values[i]


async def request(session, args, query):
    if args.target == "m3search":
        body = {"query": query, "k": args.k}
        path = "/search"
    else:
        body = {"input": [query], "model": args.model}
        path = "/embeddings"
    t0 = time.perf_counter()
    async with session.post(args.url + path, json=body) as r:
        payload = await r.read()
        status = r.status
    return status, time.perf_counter() - t0, payload


async def run_load(args, clients, queries):
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    connector = aiohttp.TCPConnector(limit=clients + 4)
    timeout = aiohttp.ClientTimeout(total=120)
    latencies, errors = [], 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        warm_end = time.perf_counter() + args.warmup
        end = warm_end + args.duration

        async def client():
            nonlocal errors
            while True:
                now = time.perf_counter()
                if now >= end:
                    return
                status, seconds, _ = await request(session, args, queries.next())
                finished = time.perf_counter()
                if now >= warm_end and finished <= end:
                    if status == 200:
                        latencies.append(seconds)
                    else:
                        errors += 1

        await asyncio.gather(*(client() for _ in range(clients)))
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "qps": round(len(latencies) / args.duration, 2),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p95_ms": round(percentile(latencies, 95) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
    }


def ranking(payload):
    """What must not change under batching: ranks, ids, chunks and every score."""
    body = json.loads(payload)
    return [(r["path"], r["chunk"], r["score"], r["scores"]["dense"], r["scores"]["sparse"], r["scores"]["colbert"])
            for r in body["results"]]


async def verify(args, clients, count):
    """Each of `count` distinct queries alone (one at a time), then all of them from
    `clients` concurrent clients: the answers must be identical."""
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    queries = Queries(args.seed + 1)
    texts = [queries.next() for _ in range(count)]
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=300)) as session:
        alone = {}
        for q in texts:
            status, _, payload = await request(session, args, q)
            assert status == 200, payload
            alone[q] = ranking(payload)
        pending = list(texts)
        together = {}

        async def client():
            while pending:
                q = pending.pop()
                status, _, payload = await request(session, args, q)
                assert status == 200, payload
                together[q] = ranking(payload)

        await asyncio.gather(*(client() for _ in range(clients)))
    differing = [q for q in texts if alone[q] != together[q]]
    return {"verified_queries": count, "clients": clients, "differing": len(differing),
            "example": differing[0] if differing else None}


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--clients", default="1,8", help="comma-separated client counts, run in order")
    ap.add_argument("--duration", type=float, default=30, help="measured seconds per client count")
    ap.add_argument("--warmup", type=float, default=5, help="seconds of load before measuring")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--target", choices=["m3search", "embeddings"], default="m3search")
    ap.add_argument("--model", default="m3", help="model name for --target embeddings")
    ap.add_argument("--api-key", default=os.environ.get("M3SEARCH_API_KEY"))
    ap.add_argument("--verify", type=int, default=0, help="first check N queries alone vs concurrent")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--label", default="", help="free text stored with the results (model, precision, settings)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "serve.jsonl"))
    args = ap.parse_args()

    counts = [int(c) for c in args.clients.split(",")]
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "label": args.label, "target": args.target,
              "url": args.url, "duration_s": args.duration, "k": args.k, "runs": []}
    if args.verify:
        v = await verify(args, max(counts), args.verify)
        print(f"verify: {v['verified_queries']} queries alone vs {v['clients']} clients: {v['differing']} differ")
        record["verify"] = v
        if v["differing"]:
            print("  first differing query:", v["example"])
    queries = Queries(args.seed)
    base = None
    for clients in counts:
        r = await run_load(args, clients, queries)
        base = base or r["qps"]
        r["qps_ratio_to_first"] = round(r["qps"] / base, 2) if base else None
        record["runs"].append(r)
        print(f"{args.target} {clients:3d} clients: {r['qps']:7.2f} QPS  p50 {r['p50_ms']:7.1f} ms  "
              f"p95 {r['p95_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  ({r['requests']} requests, {r['errors']} errors, "
              f"{r['qps_ratio_to_first']}x the first)")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    asyncio.run(main())

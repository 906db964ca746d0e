"""Vector sets for the HNSW benchmark (Benchmarks/hnsw.py), written to Benchmarks/work/.

Each set is four files in Benchmarks/work/<set>/:
  base.f32     n × d float32, row-major, little-endian, rows L2-normalised
  queries.f32  nq × d float32, the same
  truth.i32    nq × 10 int32: row indices of each query's exact top 10 by inner product
               (brute force in float64, best first)
  meta.json    n, nq, d, the generator and its parameters

Sets:
  clustered  The seeded clustered generator below (default 100,000 × 1024, 1,000 queries).
  clustered-1m  The same generator at 1,000,000 × 1024 (4 GB of base vectors), drawn and
             written in slices of 50,000 rows so it never holds more than a slice; its truth is
             computed slice by slice too. (Slicing changes the random stream, so its first
             100,000 rows are not the 100k set.) ~15 min; needs ~5 GB free on disk.
  corpus     Dense vectors of the Fixtures corpus chunks (64-token windows, overlap 8, as the
             M3SearchTests corpus index) encoded by the full-size random-weight BGE-M3 with
             the release `m3search index`; queries: the 60 query strings of
             Tests/M3SearchTests/SearchEngineTests.swift encoded with `m3search encode
             --outputs dense --max-length 512`, the same way the tests encode them.

The clustered generator (documented so the set can be rebuilt bit for bit):
  rng = numpy.random.default_rng(seed)                        seed = 20261129
  k = 512 cluster centres c_j: N(0, I_d) rows, normalised     (uniform on the sphere)
  cluster weights w ~ Dirichlet(1, …, 1)                      (unequal topic sizes)
  per cluster a spread basis B_j: r = 48 N(0, I_d/d) rows     (a low-dimensional "topic" subspace,
                                                              rows of norm ≈ 1)
  a point of cluster j (drawn with probability w_j):
      x = normalise(c_j + s_topic · z·B_j / √r + s_noise · g / √d)   (both terms of norm ≈ 1 before s_),
      z ~ N(0, I_r), g ~ N(0, I_d), s_topic = 0.7, s_noise = 0.3
  Base points are drawn first, then queries from the same mixture with the same rng (so
  queries are not in the base). Typical cosine: point–own centre ≈ 0.8, neighbours within a
  cluster ≈ 0.6–0.8, across clusters ≈ 0 — roughly the spread of real sentence embeddings,
  whose neighbourhoods are low-dimensional (pure isotropic noise in 1024-d would make every
  neighbour nearly equidistant, which no real embedding set looks like).
"""
import json, os, sqlite3, subprocess, sys, time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "Benchmarks", "work")
MODEL = os.environ.get("M3_FULL_MODEL", os.path.join(ROOT, "Fixtures", "generated", "bge-m3-full-random"))
BINARY = os.environ.get("M3SEARCH_BIN", os.path.join(ROOT, ".build", "release", "m3search"))

CLUSTERED = dict(seed=20261129, n=100_000, nq=1_000, d=1024, clusters=512, rank=48,
                 s_topic=0.7, s_noise=0.3)


def set_dir(name):
    return os.path.join(WORK, name)


def exact_top10(base, queries, k=10):
    """Exact top-k by inner product, float64, ties broken by lower row (stable argsort)."""
    out = np.empty((len(queries), k), dtype=np.int32)
    b64 = base.astype(np.float64)
    for s in range(0, len(queries), 100):
        sims = queries[s:s + 100].astype(np.float64) @ b64.T  # (≤100, n)
        part = np.argpartition(-sims, k, axis=1)[:, :k + 1] if sims.shape[1] > k + 1 else np.argsort(-sims, axis=1)
        for i, row in enumerate(sims):
            cand = part[i]
            order = cand[np.lexsort((cand, -row[cand]))]
            out[s + i] = order[:k]
    return out


def write_set(name, base, queries, meta):
    d = set_dir(name)
    os.makedirs(d, exist_ok=True)
    t = time.perf_counter()
    truth = exact_top10(base, queries)
    base.astype("<f4").tofile(os.path.join(d, "base.f32"))
    queries.astype("<f4").tofile(os.path.join(d, "queries.f32"))
    truth.astype("<i4").tofile(os.path.join(d, "truth.i32"))
    meta = dict(meta, n=len(base), nq=len(queries), d=base.shape[1], truth_k=10)
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{name}: {len(base)} × {base.shape[1]} base, {len(queries)} queries, truth in "
          f"{time.perf_counter() - t:.1f} s → {d}", flush=True)


def normalise(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(p=CLUSTERED, name="clustered"):
    rng = np.random.default_rng(p["seed"])
    d, k, r = p["d"], p["clusters"], p["rank"]
    centres = normalise(rng.standard_normal((k, d)))
    weights = rng.dirichlet(np.ones(k))
    bases = (rng.standard_normal((k, r, d)) / np.sqrt(d)).astype(np.float32)

    def draw(n):
        labels = rng.choice(k, size=n, p=weights)
        z = rng.standard_normal((n, r)).astype(np.float32)
        g = rng.standard_normal((n, d)).astype(np.float32)
        x = centres[labels] + p["s_noise"] * g / np.float32(np.sqrt(d))
        for j in range(k):  # the topic term, one cluster's rows at a time: (n_j, r) @ (r, d)
            rows = np.nonzero(labels == j)[0]
            x[rows] += p["s_topic"] * (z[rows] @ bases[j]) / np.float32(np.sqrt(r))
        return normalise(x)

    base = draw(p["n"])
    queries = draw(p["nq"])
    write_set(name, base, queries, {"generator": "clustered", "params": p})


def test_queries():
    """The 60 query strings of SearchEngineTests.queries (topic names + 10 questions)."""
    names = sorted(n for n in os.listdir(os.path.join(ROOT, "Fixtures", "corpus")) if n != "LICENSE.md")
    topics = [os.path.splitext(n)[0].replace("-", " ") for n in names][:50]
    src = open(os.path.join(ROOT, "Tests", "M3SearchTests", "SearchEngineTests.swift")).read()
    block = src.split("Array(topics.prefix(50)) + [", 1)[1].split("]", 1)[0]
    questions = [q.strip().strip('"') for q in block.replace("\n", " ").split('",') if q.strip().strip('",')]
    questions = [q.strip('"') for q in questions]
    assert len(questions) == 10, questions
    return topics + questions


def corpus():
    d = set_dir("corpus")
    os.makedirs(d, exist_ok=True)
    index = os.path.join(WORK, "corpus64.m3index")
    if not os.path.exists(index):
        # ~8 min on 2 cores: every 64-token chunk through the 568M-parameter encoder.
        subprocess.run([BINARY, "index", os.path.join(ROOT, "Fixtures", "corpus"), "--index", index,
                        "--model", MODEL, "--max-length", "64", "--overlap", "8"], check=True)
    con = sqlite3.connect(index)
    rows = con.execute("SELECT id, dense FROM chunks ORDER BY id").fetchall()
    con.close()
    base = np.stack([np.frombuffer(blob, dtype="<f4") for _, blob in rows])
    qs = test_queries()
    qfile = os.path.join(WORK, "corpus-queries.jsonl")
    if not os.path.exists(qfile):
        inp = "".join(json.dumps({"text": q}) + "\n" for q in qs)
        out = subprocess.run([BINARY, "encode", "--model", MODEL, "--outputs", "dense", "--max-length", "512"],
                             input=inp, capture_output=True, text=True, check=True).stdout
        with open(qfile, "w") as f:
            f.write(out)
    queries = np.array([json.loads(l)["dense"] for l in open(qfile) if l.strip()], dtype=np.float32)
    assert len(queries) == len(qs)
    write_set("corpus", base.astype(np.float32), queries,
              {"generator": "corpus", "index": os.path.relpath(index, ROOT), "chunk_tokens": 64, "overlap": 8,
               "model": "bge-m3-full-random", "queries": "SearchEngineTests.queries (60)"})


def clustered_sliced(p, name, slice_rows=50_000):
    """The clustered generator, drawn slice by slice into the files (for sets beyond RAM)."""
    rng = np.random.default_rng(p["seed"])
    d, k, r = p["d"], p["clusters"], p["rank"]
    centres = normalise(rng.standard_normal((k, d)))
    weights = rng.dirichlet(np.ones(k))
    bases = (rng.standard_normal((k, r, d)) / np.sqrt(d)).astype(np.float32)

    def draw(n):
        labels = rng.choice(k, size=n, p=weights)
        z = rng.standard_normal((n, r)).astype(np.float32)
        g = rng.standard_normal((n, d)).astype(np.float32)
        x = centres[labels] + p["s_noise"] * g / np.float32(np.sqrt(d))
        for j in np.unique(labels):
            rows = np.nonzero(labels == j)[0]
            x[rows] += p["s_topic"] * (z[rows] @ bases[j]) / np.float32(np.sqrt(r))
        return normalise(x)

    out = set_dir(name)
    os.makedirs(out, exist_ok=True)
    t = time.perf_counter()
    with open(os.path.join(out, "base.f32"), "wb") as f:
        for s0 in range(0, p["n"], slice_rows):
            draw(min(slice_rows, p["n"] - s0)).astype("<f4").tofile(f)
    queries = draw(p["nq"])
    queries.astype("<f4").tofile(os.path.join(out, "queries.f32"))
    base = np.memmap(os.path.join(out, "base.f32"), dtype="<f4", mode="r").reshape(-1, d)
    # Exact top 10: float64 per slice, merged (ties: lower row first, as exact_top10).
    q64 = queries.astype(np.float64)
    best_s = np.full((len(queries), 0), -np.inf)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for s0 in range(0, len(base), slice_rows):
        sims = q64 @ np.asarray(base[s0:s0 + slice_rows], dtype=np.float64).T
        top = np.argpartition(-sims, 10, axis=1)[:, :11]
        cand_s = np.concatenate([best_s, np.take_along_axis(sims, top, 1)], axis=1)
        cand_i = np.concatenate([best_i, top + s0], axis=1)
        order = np.lexsort((cand_i, -cand_s), axis=1)[:, :10]
        best_s = np.take_along_axis(cand_s, order, 1)
        best_i = np.take_along_axis(cand_i, order, 1)
    best_i.astype("<i4").tofile(os.path.join(out, "truth.i32"))
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump({"generator": "clustered (sliced)", "params": p, "slice_rows": slice_rows, "n": p["n"],
                   "nq": p["nq"], "d": d, "truth_k": 10}, f, indent=1)
    print(f"{name}: {p['n']} × {d} base, {p['nq']} queries in {time.perf_counter() - t:.0f} s → {out}", flush=True)


def ensure(name):
    if not os.path.exists(os.path.join(set_dir(name), "meta.json")):
        if name == "clustered-20k":  # a quick development set: same generator, smaller
            clustered(dict(CLUSTERED, n=20_000, nq=500), name)
        elif name == "clustered-1m":
            clustered_sliced(dict(CLUSTERED, n=1_000_000), name)
        else:
            {"clustered": clustered, "corpus": corpus}[name]()
    return set_dir(name)


if __name__ == "__main__":
    for name in sys.argv[1:] or ["clustered", "corpus"]:
        ensure(name)

#!/usr/bin/env python3
"""Round trip through the engines, checked against m3search's own ranking (issue 17).

    swift build -c release
    python3 Benchmarks/engines.py --m3search .build/release/m3search [--record]

1. Indexes Fixtures/corpus with the committed tiny model, as Fixtures/eval does (chunks of
   64 tokens, overlap 8), and exports it with `m3search export --format qdrant|milvus|vespa`.
2. Loads the Qdrant export into qdrant-client's local mode and the Milvus export into Milvus
   Lite (pymilvus + milvus-lite), exactly as docs/engines.md says.
3. Runs the 23 queries of Fixtures/eval/queries.jsonl with every recipe of docs/engines.md
   and compares each top-10 (chunks, and documents) with `m3search query --json`: overlap,
   identical order, largest score difference.
4. Vespa cannot run here. Its export is validated against Vespa's published formats
   (Benchmarks/vespa_check.py) and its rank profile is evaluated in NumPy on the feed, with
   the candidates its query would match; those rows say "emulated".

Prints a table. --record appends one JSON line to Benchmarks/results/engines.jsonl.
Needs numpy; the Qdrant and Milvus parts are skipped (and said so) without their packages.
Everything it writes goes to --work (default Benchmarks/work/engines, git-ignored).
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vespa_check  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
K = 10            # top-k compared
CANDIDATES = 100  # m3search's default --candidates: HNSW top-N ∪ sparse top-N
# The recipes that must give m3search's ranking exactly (--check): every candidate scored in
# all three modes, fused as m3search fuses.
EXACT = {"qdrant: client-side fusion", "milvus: hybrid_search candidates + client-side fusion",
         "vespa: rank profile m3 (emulated in NumPy)"}


def run(cmd, stdin=None):
    result = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{result.stderr}")
    return result.stdout


# ---------------------------------------------------------------------------------------
# m3search: index, export, encode, reference rankings

class M3:
    def __init__(self, binary, model, work):
        self.binary, self.model, self.work = binary, model, work
        self.index = work / "corpus.m3index"

    def build(self, reuse=False):
        if not reuse:
            self.export()
        manifest = json.load(open(self.work / "qdrant" / "export.json"))
        self.settings, self.weights = manifest["settings"], manifest["weights"]
        self.chunks, self.documents = manifest["chunks"], manifest["documents"]

    def export(self):
        if self.index.exists():
            self.index.unlink()
        run([self.binary, "index", ROOT / "Fixtures/corpus", "--index", self.index, "--model", self.model,
             "--max-length", "64", "--overlap", "8"])
        for engine in ("qdrant", "milvus", "vespa"):
            out = self.work / engine
            run([self.binary, "export", "--format", engine, "--index", self.index, "--out", out, "--force"])

    def encode(self, texts):
        """Query encodings as m3search.search makes them (max length 512, the index's pooling)."""
        flags = ["--max-length", "512", "--pooling", self.settings["pooling"]]
        if not self.settings["normalize"]:
            flags.append("--no-normalize")
        lines = "".join(json.dumps({"text": t}) + "\n" for t in texts)
        out = run([self.binary, "encode", "--model", self.model, *flags], stdin=lines)
        return [Query(json.loads(line)) for line in out.splitlines()]

    def query(self, text, chunks):
        out = run([self.binary, "query", text, "--index", self.index, "--model", self.model, "--json", "--k", str(K),
                   "--candidates", str(CANDIDATES), *(["--chunks"] if chunks else [])])
        return [Hit(f"{r['path']}#{r['chunk']}", r["path"], r["score"]) for r in json.loads(out)["results"]]


class Query:
    def __init__(self, e):
        self.dense = np.asarray(e["dense"], dtype=np.float32)
        self.sparse = {int(k): float(v) for k, v in e["sparse"].items()}
        self.colbert = np.asarray(e["colbert"], dtype=np.float32)


class Hit:
    def __init__(self, chunk_id, path, score):
        self.chunk_id, self.path, self.score = chunk_id, path, score


def fuse(dense, sparse, colbert, w):
    """m3search's weighted fusion in its float32 arithmetic and order (modes with weight 0 skipped)."""
    f = np.float32
    num, den = f(0), f(0)
    for score, weight in ((dense, w["dense"]), (sparse, w["sparse"]), (colbert, w["colbert"])):
        if weight > 0:
            num = f(num + f(score) * f(weight))
            den = f(den + f(weight))
    return float(num / den)


def maxsim(q, rows):
    """ColBERT score: mean over query rows of the best dot product with the chunk's rows."""
    return float(np.mean(np.max(q @ rows.T, axis=1)))


def ranked(scored, k):
    """[(chunk_id, path, score)] best first; ties by chunk id."""
    return [Hit(c, p, s) for c, p, s in sorted(scored, key=lambda x: (-x[2], x[0]))[:k]]


def by_document(hits, k):
    seen, out = set(), []
    for h in hits:
        if h.path not in seen:
            seen.add(h.path)
            out.append(h)
    return out[:k]


# ---------------------------------------------------------------------------------------
# Qdrant (local mode)

def qdrant_load(folder, path):
    from qdrant_client import QdrantClient, models
    if path.exists():
        shutil.rmtree(path)
    client = QdrantClient(path=str(path))
    config = json.load(open(folder / "collection.json"))
    client.create_collection(
        "m3",
        vectors_config={name: models.VectorParams(**v) for name, v in config["vectors"].items()},
        sparse_vectors_config={name: models.SparseVectorParams(**v) for name, v in config["sparse_vectors"].items()})
    batch = []
    with open(folder / "points.jsonl") as f:
        for line in f:
            batch.append(models.PointStruct(**json.loads(line)))
            if len(batch) == 64:
                client.upsert("m3", batch)
                batch = []
    if batch:
        client.upsert("m3", batch)
    return client


def qdrant_candidates(q, w, n):
    """m3search's candidates: dense (HNSW) top n and sparse top n."""
    from qdrant_client import models
    prefetch = []
    if w["dense"] > 0 or w["colbert"] > 0:
        prefetch.append(models.Prefetch(query=q.dense.tolist(), using="dense", limit=n))
    if (w["sparse"] > 0 or w["colbert"] > 0) and q.sparse:
        prefetch.append(models.Prefetch(query=models.SparseVector(indices=list(q.sparse), values=list(q.sparse.values())),
                                        using="sparse", limit=n))
    return prefetch


def qdrant_modes(q, w):
    """(name, query, weight) per mode: the three rescorings of the candidates."""
    from qdrant_client import models
    sparse = models.SparseVector(indices=list(q.sparse), values=list(q.sparse.values()))
    return [("dense", q.dense.tolist(), w["dense"]), ("sparse", sparse, w["sparse"]),
            ("colbert", q.colbert.tolist(), w["colbert"])]


def qdrant_formula(client, q, w, n, k, groups=False):
    """Engine-native: one request; the formula fuses three rescorings of the candidate union."""
    from qdrant_client import models
    union = qdrant_candidates(q, w, n)
    total = w["dense"] + w["sparse"] + w["colbert"]
    prefetch, terms, defaults = [], [], {}
    for name, vector, weight in qdrant_modes(q, w):
        if weight <= 0:
            continue
        i = len(prefetch)
        prefetch.append(models.Prefetch(prefetch=union, query=vector, using=name, limit=2 * n))
        # Qdrant's max_sim sums over query rows; m3search averages: fold 1/rows into the weight.
        scale = weight / total / (len(q.colbert) if name == "colbert" else 1)
        terms.append(models.MultExpression(mult=[scale, f"$score[{i}]"]))
        defaults[f"$score[{i}]"] = 0.0   # a candidate sharing no token has no sparse score
    query = models.FormulaQuery(formula=models.SumExpression(sum=terms), defaults=defaults)
    if groups:
        result = client.query_points_groups("m3", prefetch=prefetch, query=query, group_by="path", group_size=1,
                                            limit=k, with_payload=["chunk_id", "path"])
        return [Hit(g.hits[0].payload["chunk_id"], g.hits[0].payload["path"], g.hits[0].score) for g in result.groups]
    result = client.query_points("m3", prefetch=prefetch, query=query, limit=k, with_payload=["chunk_id", "path"])
    return [Hit(p.payload["chunk_id"], p.payload["path"], p.score) for p in result.points]


def qdrant_client_fusion(client, q, w, n):
    """Client-side: each mode's exact score for every candidate, fused as m3search fuses."""
    from qdrant_client import models
    union = qdrant_candidates(q, w, n)
    scores, paths = {}, {}
    for name, vector, weight in qdrant_modes(q, w):
        if weight <= 0:
            continue
        result = client.query_points("m3", prefetch=union, query=vector, using=name, limit=2 * n,
                                     with_payload=["chunk_id", "path"])
        for p in result.points:
            chunk = p.payload["chunk_id"]
            paths[chunk] = p.payload["path"]
            scores.setdefault(chunk, {})[name] = p.score / (len(q.colbert) if name == "colbert" else 1)
    scored = [(c, paths[c], fuse(s.get("dense", 0), s.get("sparse", 0), s.get("colbert", 0), w)) for c, s in scores.items()]
    return ranked(scored, len(scored))


def qdrant_colbert_rerank(client, q, w, n, k):
    """The README's earlier recipe: dense and sparse candidates, reranked by ColBERT alone."""
    result = client.query_points("m3", prefetch=qdrant_candidates(q, w, n), query=q.colbert.tolist(), using="colbert",
                                 limit=k, with_payload=["chunk_id", "path"])
    return [Hit(p.payload["chunk_id"], p.payload["path"], None) for p in result.points]


# ---------------------------------------------------------------------------------------
# Milvus (Milvus Lite)

def milvus_rows(part):
    """The rows of one `{"rows":[ ... ]}` part, streamed a line at a time."""
    with open(part) as f:
        if f.readline() != '{"rows":[\n':
            sys.exit(f"{part}: not a rows file")
        for line in f:
            line = line.rstrip("\n")
            if line == "]}":
                return
            yield json.loads(line[:-1] if line.endswith(",") else line)


def milvus_create(client, body):
    """Creates a collection from the REST API body the export wrote."""
    from pymilvus import DataType
    types = {"VarChar": DataType.VARCHAR, "Int64": DataType.INT64, "JSON": DataType.JSON,
             "FloatVector": DataType.FLOAT_VECTOR, "SparseFloatVector": DataType.SPARSE_FLOAT_VECTOR}
    schema = client.create_schema(auto_id=body["schema"]["autoID"], enable_dynamic_field=body["schema"]["enableDynamicField"])
    for f in body["schema"]["fields"]:
        params = {k: int(v) for k, v in f.get("elementTypeParams", {}).items()}
        schema.add_field(f["fieldName"], types[f["dataType"]], is_primary=f.get("isPrimary", False), **params)
    index = client.prepare_index_params()
    for i in body["indexParams"]:
        index.add_index(i["fieldName"], index_type=i.get("indexType", ""), index_name=i.get("indexName", ""),
                        metric_type=i.get("metricType", ""), params=i.get("params", {}))
    client.create_collection(body["collectionName"], schema=schema, index_params=index)


def milvus_load(folder, path):
    from pymilvus import MilvusClient
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    client = MilvusClient(str(path))
    for name in ("chunks", "colbert"):
        body = json.load(open(folder / f"{name}.collection.json"))
        milvus_create(client, body)
        batch = []
        for part in sorted((folder / name).glob("part-*.json")):
            json.load(open(part))   # each part is one valid JSON document, as bulk import reads it
            for row in milvus_rows(part):
                batch.append(row)
                if len(batch) == 512:
                    client.insert(body["collectionName"], batch)
                    batch = []
        if batch:
            client.insert(body["collectionName"], batch)
    return client


def milvus_requests(q, w, n):
    from pymilvus import AnnSearchRequest
    requests = []
    if w["dense"] > 0 or w["colbert"] > 0:
        requests.append(AnnSearchRequest([q.dense.tolist()], "dense", {"metric_type": "IP", "params": {"ef": max(64, n)}}, limit=n))
    if (w["sparse"] > 0 or w["colbert"] > 0) and q.sparse:
        requests.append(AnnSearchRequest([q.sparse], "sparse", {"metric_type": "IP"}, limit=n))
    return requests


def milvus_exact(client, q, w, n):
    """Candidates from hybrid_search, vectors fetched, all three scores and the fusion in the client."""
    from pymilvus import RRFRanker
    hits = client.hybrid_search("m3_chunks", milvus_requests(q, w, n), ranker=RRFRanker(), limit=2 * n,
                                output_fields=["chunk_id"])[0]
    ids = [h["entity"]["chunk_id"] if "entity" in h else h["chunk_id"] for h in hits]
    quoted = ",".join(json.dumps(i) for i in ids)
    rows = client.query("m3_chunks", filter=f"chunk_id in [{quoted}]",
                        output_fields=["chunk_id", "path", "colbert_rows", "dense", "sparse"])
    # A chunk's ColBERT rows by primary key, "<chunk_id>/<row>" (a filter on chunk_id is slow in Milvus Lite).
    keys = [f"{r['chunk_id']}/{t}" for r in rows for t in range(r["colbert_rows"])]
    tokens = {}
    for start in range(0, len(keys), 8192):
        for t in client.get("m3_colbert", ids=keys[start:start + 8192], output_fields=["chunk_id", "token", "vector"]):
            tokens.setdefault(t["chunk_id"], []).append((t["token"], t["vector"]))
    scored = []
    for r in rows:
        dense = float(np.dot(q.dense, np.asarray(r["dense"], dtype=np.float32)))
        sparse = float(sum(np.float32(q.sparse[t]) * np.float32(v) for t, v in r["sparse"].items() if t in q.sparse))
        matrix = np.asarray([v for _, v in sorted(tokens[r["chunk_id"]])], dtype=np.float32)
        scored.append((r["chunk_id"], r["path"], fuse(dense, sparse, maxsim(q.colbert, matrix), w)))
    return ranked(scored, len(scored))


def milvus_weighted(client, q, w, k, norm_score):
    """Engine-native: hybrid_search with WeightedRanker over dense and sparse (no ColBERT in the engine).
    norm_score=True (the default) maps each IP score s to 0.5 + atan(s)/π before weighting."""
    from pymilvus import WeightedRanker
    hits = client.hybrid_search("m3_chunks", milvus_requests(q, {**w, "colbert": 0}, CANDIDATES),
                                ranker=WeightedRanker(w["dense"], w["sparse"], norm_score=norm_score), limit=k,
                                output_fields=["chunk_id", "path"])[0]
    return [Hit(h["entity"]["chunk_id"], h["entity"]["path"], None) for h in hits]


# ---------------------------------------------------------------------------------------
# Vespa (validated and emulated, never run)

def vespa_inputs(q, w):
    return {"query(q_dense)": q.dense.tolist(),
            "query(q_sparse)": {str(t): v for t, v in q.sparse.items()},
            "query(q_colbert)": {str(i): row for i, row in enumerate(q.colbert.tolist())},
            "query(w_dense)": w["dense"], "query(w_sparse)": w["sparse"], "query(w_colbert)": w["colbert"]}


def vespa_candidates(documents, q, n, dense_matrix, token_weights):
    """What `({targetHits:n}nearestNeighbor(dense, q_dense)) or ({targetHits:n}wand(sparse_tokens, @tokens))`
    matches: the exact dense top n (Vespa's HNSW approximates it) and the top n by the
    integer dot product wand computes (documents sharing at least one token)."""
    dense = np.argsort(-(dense_matrix @ q.dense), kind="stable")[:n]
    query_tokens = {str(t): int(max(1, min(2**31 - 1, round(v * 1000)))) for t, v in q.sparse.items()}
    wand = [(sum(query_tokens[t] * d for t, d in weights.items() if t in query_tokens), i)
            for i, weights in enumerate(token_weights)]
    wand = [i for s, i in sorted((x for x in wand if x[0] > 0), key=lambda x: (-x[0], x[1]))[:n]]
    return sorted(set(dense.tolist()) | set(wand))


def vespa_emulate(schema, documents, q, w, n, k, bfloat16=False):
    dense_matrix = np.asarray([d[1]["dense"] for d in documents], dtype=np.float32)
    token_weights = [d[1].get("sparse_tokens", {}) for d in documents]
    candidates = vespa_candidates(documents, q, n, dense_matrix, token_weights)
    docs = documents
    if bfloat16:
        docs = [(i, {**f, "colbert": {l: bf16(r) for l, r in f["colbert"].items()}}) if j in candidates else (i, f)
                for j, (i, f) in enumerate(documents)]
    scored = vespa_check.rank(schema, "m3", docs, vespa_inputs(q, w), candidates)
    return ranked([(docs[i][1]["chunk_id"], docs[i][1]["path"], s) for i, s, _ in scored], len(scored))


def bf16(row):
    """float32 → bfloat16 (round to nearest even) → float32, as a tensor<bfloat16> cell stores it."""
    bits = np.asarray(row, dtype=np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return rounded.view(np.float32).tolist()


# ---------------------------------------------------------------------------------------

def compare(reference, got, key):
    ref_ids, got_ids = [getattr(h, key) for h in reference], [getattr(h, key) for h in got]
    overlap = len(set(ref_ids) & set(got_ids))
    diffs = [abs(r.score - g.score) for r in reference for g in got
             if getattr(r, key) == getattr(g, key) and g.score is not None]
    return {"overlap": overlap, "identical": ref_ids == got_ids, "max_score_diff": max(diffs) if diffs else None,
            "reference": [(i, r.score) for i, r in zip(ref_ids, reference)], "got": [(i, g.score) for i, g in zip(got_ids, got)]}


def summarize(rows):
    out = {"overlap_mean": round(float(np.mean([r["overlap"] for r in rows])), 3),
           "overlap_min": int(min(r["overlap"] for r in rows)),
           "identical_queries": int(sum(r["identical"] for r in rows)), "queries": len(rows)}
    diffs = [r["max_score_diff"] for r in rows if r["max_score_diff"] is not None]
    out["max_score_diff"] = float(f"{max(diffs):.3g}") if diffs else None
    return out


def versions():
    from importlib import metadata
    out = {}
    for package in ("qdrant-client", "pymilvus", "milvus-lite", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m3search", default=str(ROOT / ".build/release/m3search"))
    parser.add_argument("--model", default=str(ROOT / "Fixtures/models/tiny-safetensors"))
    parser.add_argument("--work", default=str(ROOT / "Benchmarks/work/engines"))
    parser.add_argument("--rnc", help="folder of Vespa's services.rnc (config-model/src/main/resources/schema) for a RELAX NG check")
    parser.add_argument("--engines", default="qdrant,milvus,vespa", help="comma-separated subset to run")
    parser.add_argument("--verbose", action="store_true", help="print the two top-10s of queries that differ only a little")
    parser.add_argument("--reuse", action="store_true", help="use the index and exports an earlier run left in --work")
    parser.add_argument("--record", action="store_true", help="append the results to Benchmarks/results/engines.jsonl")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless every exact recipe (fusion in the client, Vespa's emulated profile) returns "
                             "m3search's top 10 for every query, scores within 1e-5")
    parser.add_argument("--queries", type=int, help="only the first N queries (a quicker check)")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    m3 = M3(args.m3search, args.model, work)
    m3.build(reuse=args.reuse)
    w = m3.weights
    queries = [json.loads(line) for line in open(ROOT / "Fixtures/eval/queries.jsonl")][:args.queries]
    encoded = m3.encode([x["text"] for x in queries])
    print(f"corpus: {m3.documents} documents, {m3.chunks} chunks; {len(queries)} queries; weights {w}; "
          f"top-{K}, {CANDIDATES} candidates per mode")

    recipes = {}   # name -> (engine, native?, function(q) -> chunk hits, function(q) -> document hits or None)

    engines = set(args.engines.split(","))
    try:
        if "qdrant" not in engines:
            raise ImportError
        import qdrant_client  # noqa: F401
        qdrant = qdrant_load(work / "qdrant", work / "qdrant-local")
        recipes["qdrant: client-side fusion"] = ("qdrant", False,
            lambda q: qdrant_client_fusion(qdrant, q, w, CANDIDATES)[:K],
            lambda q: by_document(qdrant_client_fusion(qdrant, q, w, CANDIDATES), K))
        recipes["qdrant: formula query"] = ("qdrant", True,
            lambda q: qdrant_formula(qdrant, q, w, CANDIDATES, K),
            lambda q: qdrant_formula(qdrant, q, w, CANDIDATES, K, groups=True))
        recipes["qdrant: ColBERT rerank (earlier README)"] = ("qdrant", True,
            lambda q: qdrant_colbert_rerank(qdrant, q, w, CANDIDATES, K), None)
    except ImportError:
        print("Qdrant skipped (not asked for, or qdrant-client is not installed)")
    try:
        if "milvus" not in engines:
            raise ImportError
        import pymilvus  # noqa: F401
        import milvus_lite  # noqa: F401
        milvus = milvus_load(work / "milvus", work / "milvus-lite.db")
        recipes["milvus: hybrid_search candidates + client-side fusion"] = ("milvus", False,
            lambda q: milvus_exact(milvus, q, w, CANDIDATES)[:K],
            lambda q: by_document(milvus_exact(milvus, q, w, CANDIDATES), K))
        recipes["milvus: hybrid_search WeightedRanker (no ColBERT)"] = ("milvus", True,
            lambda q: milvus_weighted(milvus, q, w, K, True), None)
        recipes["milvus: same, norm_score=False"] = ("milvus", True,
            lambda q: milvus_weighted(milvus, q, w, K, False), None)
    except ImportError:
        print("Milvus skipped (not asked for, or pymilvus/milvus-lite is not installed)")

    schema, documents, services = vespa_check.check_export(work / "vespa", args.rnc)
    accepted = vespa_check.self_test(work / "vespa")
    if accepted:
        sys.exit(f"vespa_check accepted damaged exports: {accepted}")
    print(f"vespa: schema, {len(documents)} puts and services.xml ({services}) valid; the checker refused all 16 damaged "
          "copies; no Vespa instance was run")
    recipes["vespa: rank profile m3 (emulated in NumPy)"] = ("vespa", True,
        lambda q: vespa_emulate(schema, documents, q, w, CANDIDATES, K)[:K],
        lambda q: by_document(vespa_emulate(schema, documents, q, w, CANDIDATES, K), K))
    recipes["vespa: same, ColBERT as tensor<bfloat16> (emulated)"] = ("vespa", True,
        lambda q: vespa_emulate(schema, documents, q, w, CANDIDATES, K, bfloat16=True)[:K], None)

    references = [(m3.query(x["text"], chunks=True), m3.query(x["text"], chunks=False)) for x in queries]
    results = []
    print(f"\n{'recipe':58} {'chunks: overlap mean/min, identical':36} {'docs: overlap':14} max |Δscore|")
    failures = []
    for name, (engine, native, chunk_fn, doc_fn) in recipes.items():
        chunk_rows = [compare(ref[0], chunk_fn(q), "chunk_id") for ref, q in zip(references, encoded)]
        doc_rows = [compare(ref[1], doc_fn(q), "path") for ref, q in zip(references, encoded)] if doc_fn else None
        entry = {"recipe": name, "engine": engine, "engine_native": native, "chunks": summarize(chunk_rows),
                 "documents": summarize(doc_rows) if doc_rows else None}
        results.append(entry)
        c, d = entry["chunks"], entry["documents"]
        if args.verbose:
            for x, row in zip(queries, chunk_rows):
                if not row["identical"] and row["overlap"] >= 8:
                    print(f"    {x['_id']}: m3search {row['reference']}\n    {'':{len(x['_id'])}}  recipe   {row['got']}")
        docs = f"{d['overlap_mean']:5.2f}" if d else "    -"
        diff = c["max_score_diff"] if c["max_score_diff"] is not None else "-"
        print(f"{name:58} {c['overlap_mean']:5.2f}/{c['overlap_min']:2d}, {c['identical_queries']:2d}/{c['queries']} identical"
              f"{'':9} {docs:14} {diff}")
        if name in EXACT and (c["overlap_min"] < K or d is None or d["overlap_min"] < K
                              or c["max_score_diff"] is None or c["max_score_diff"] > 1e-5):
            failures.append(name)
    if args.record:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        record = {"benchmark": "engines", "date": datetime.date.today().isoformat(), "commit": commit,
                  "model": os.path.relpath(args.model, ROOT), "documents": m3.documents, "chunks": m3.chunks,
                  "m3search": args.m3search, "engines": sorted(engines),
                  "queries": len(queries), "k": K, "candidates": CANDIDATES, "weights": w, "versions": versions(),
                  "vespa": {"validated": True, "services_xml": services, "puts": len(documents), "damaged_copies_refused": 16,
                            "instance_run": False},
                  "recipes": results}
        with open(ROOT / "Benchmarks/results/engines.jsonl", "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        print("appended to Benchmarks/results/engines.jsonl")
    if args.check:
        if failures:
            sys.exit(f"check failed: these recipes should reproduce m3search's top 10 exactly: {failures}")
        print(f"check passed: {', '.join(n for n in recipes if n in EXACT)} reproduce m3search's top 10 "
              "(chunks and documents) for every query")


if __name__ == "__main__":
    main()

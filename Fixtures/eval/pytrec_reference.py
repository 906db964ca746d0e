#!/usr/bin/env python3
"""Writes Fixtures/eval/pytrec-reference.json: real m3search rankings of the demo set and the
metrics pytrec_eval (trec_eval's C code) gives them, for EvaluationMetricTests to compare with.

Run by hand (not in CI), from the repository root, after indexing the corpus:

    m3search index Fixtures/corpus --index /tmp/demo.m3index --model Fixtures/models/tiny-safetensors \
        --max-length 64 --overlap 8
    pip install pytrec-eval-terrier
    python3 Fixtures/eval/pytrec_reference.py --m3search .build/release/m3search --index /tmp/demo.m3index

The rankings are whatever the index returns (random-weight model: meaningless as quality);
what matters is that the same rankings get the same numbers from both implementations.
"""
import argparse
import json
import subprocess

import pytrec_eval

HERE = "Fixtures/eval"
MODES = {"dense": ["--mode", "dense"], "hybrid": ["--weights", "0.4,0.3,0.3"]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--m3search", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--model", default="Fixtures/models/tiny-safetensors")
    args = parser.parse_args()

    queries = [json.loads(line) for line in open(f"{HERE}/queries.jsonl")]
    qrels = {}
    for i, line in enumerate(open(f"{HERE}/qrels.tsv")):
        if i == 0:
            continue
        q, d, s = line.rstrip("\n").split("\t")
        qrels.setdefault(q, {})[d] = int(s)
    judged = {q: v for q, v in qrels.items() if any(g > 0 for g in v.values())}

    out = {"qrels": f"{HERE}/qrels.tsv", "modes": {}}
    for mode, flags in MODES.items():
        rankings = {}
        for q in queries:
            if q["_id"] not in judged:
                continue
            result = subprocess.run([args.m3search, "query", q["text"], "--index", args.index, "--model", args.model,
                                     "--k", "100", "--json", *flags], check=True, capture_output=True, text=True)
            rankings[q["_id"]] = [r["path"] for r in json.loads(result.stdout)["results"]]
        # trec_eval orders a run by score: give descending scores in rank order.
        run = {q: {d: float(1000 - i) for i, d in enumerate(r)} for q, r in rankings.items()}
        run10 = {q: {d: float(1000 - i) for i, d in enumerate(r[:10])} for q, r in rankings.items()}
        cut = pytrec_eval.RelevanceEvaluator(judged, {"ndcg_cut.10", "recall.100"}).evaluate(run)
        rr = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(run10)
        out["modes"][mode] = {
            "rankings": rankings,
            "ndcg@10": {q: cut[q]["ndcg_cut_10"] for q in rankings},
            "recall@100": {q: cut[q]["recall_100"] for q in rankings},
            "mrr@10": {q: rr[q]["recip_rank"] for q in rankings},
        }
    with open(f"{HERE}/pytrec-reference.json", "w") as f:
        json.dump(out, f, indent=0, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()

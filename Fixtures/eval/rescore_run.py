"""Re-scores a TREC run written by `m3search eval --run-out` (or `query --queries --run-out`)
with pytrec_eval (trec_eval's C code), printing the means m3search eval reports.

    python Fixtures/eval/rescore_run.py Fixtures/eval/qrels.tsv run.txt

Run by hand (pytrec_eval is not in CI); docs/evaluation.md records a run."""
import sys

import pytrec_eval

qrels = {}
for i, line in enumerate(open(sys.argv[1])):
    q, d, g = line.rstrip("\n").split("\t")
    if i == 0 and q == "query-id":
        continue
    qrels.setdefault(q, {})[d] = int(g)
run = {}
for line in open(sys.argv[2]):
    q, _, d, _rank, score, _tag = line.split()
    run.setdefault(q, {})[d] = float(score)
# m3search averages over the queries with a relevant judgment, as trec_eval does.
judged = {q: j for q, j in qrels.items() if any(v > 0 for v in j.values())}
res = pytrec_eval.RelevanceEvaluator(judged, {"ndcg_cut.10", "recall.100"}).evaluate(run)
# MRR@10: trec_eval's recip_rank is not cut, so score the run cut to its top 10
# in trec_eval's order (score, then document id, both descending).
top10 = {q: dict(sorted(d.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:10]) for q, d in run.items()}
rr = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(top10)
n = len(res)
print("queries", n)
print("ndcg@10", sum(r["ndcg_cut_10"] for r in res.values()) / n)
print("recall@100", sum(r["recall_100"] for r in res.values()) / n)
print("mrr@10", sum(r["recip_rank"] for r in rr.values()) / len(rr))

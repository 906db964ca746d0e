#!/usr/bin/env python3
"""Reference outputs of FlagEmbedding for a model folder.

    python Fixtures/generate_references.py Fixtures/models/tiny-safetensors
        -> Fixtures/reference/tiny-safetensors.json

Runs FlagEmbedding exactly as users do:

    from FlagEmbedding import BGEM3FlagModel
    m = BGEM3FlagModel(folder, use_fp16=False, devices="cpu")
    m.encode(texts, max_length=N, return_dense=True, return_sparse=True,
             return_colbert_vecs=True)

on a temporary copy of the folder with tokenizer.json added (so AutoTokenizer is the fast
tokenizer, as with the real bge-m3 download), for the text set of texts.py at max_length
8192 and 128, and scores the query/passage pairs of texts.py with the clean per-text
functions (see flag_m3.pair_scores). Output layout (JSON):

  {"format": 1, "model": NAME, "model_config": {...}, "versions": {...},
   "encodings": [{"max_length": 8192, "items": [
        {"name", "text", "input_ids": [int], "dense": [float],
         "sparse": {"<token id>": float}, "colbert": [[float]]}, ...]},
                 {"max_length": 128, "items": [...]}],
   "score_weights": [0.4, 0.3, 0.3], "score_max_length": 8192,
   "scores": [{"query", "passage_name", "passage", "dense", "sparse", "colbert",
               "sparse+dense", "colbert+sparse+dense"}, ...],
   "self_check_batched_vs_single_max_abs_diff": {...}}
"""
import argparse, json, os, sys, time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import flag_m3  # noqa: E402
from texts import TEXTS, TEXT_BY_NAME, SCORE_PAIRS  # noqa: E402

MAX_LENGTHS = (8192, 128)


def model_config(model_dir):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    weights = [f for f in ("model.safetensors", "pytorch_model.bin")
               if os.path.exists(os.path.join(model_dir, f))]
    return {k: cfg[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                "intermediate_size", "vocab_size", "max_position_embeddings",
                                "torch_dtype")} | {"weights_file": weights[0]}


def max_abs_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if len(a) else 0.0


def batch_vs_single(m, texts, out, max_length):
    """FlagEmbedding pads a batch to its longest text; the port encodes one text at a
    time. Report how far the two differ (float noise only, if all is well)."""
    single, _ = flag_m3.encode(m, texts, max_length, batch_size=1)
    d = {"dense": 0.0, "sparse": 0.0, "colbert": 0.0, "sparse_keys_equal": True}
    for i in range(len(texts)):
        d["dense"] = max(d["dense"], max_abs_diff(out["dense_vecs"][i], single["dense_vecs"][i]))
        a, b = out["lexical_weights"][i], single["lexical_weights"][i]
        if set(a) != set(b):
            d["sparse_keys_equal"] = False
        keys = sorted(set(a) | set(b))
        d["sparse"] = max(d["sparse"], max_abs_diff([a.get(k, 0) for k in keys],
                                                     [b.get(k, 0) for k in keys]))
        d["colbert"] = max(d["colbert"], max_abs_diff(out["colbert_vecs"][i].ravel(),
                                                       single["colbert_vecs"][i].ravel()))
    return d


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--out", help="default: Fixtures/reference/<model folder name>.json")
    ap.add_argument("--batch-size", type=int, default=256, help="FlagEmbedding's default")
    ap.add_argument("--no-self-check", action="store_true",
                    help="skip the batch-vs-one-at-a-time comparison")
    args = ap.parse_args(argv)

    name = os.path.basename(os.path.abspath(args.model_dir))
    out_path = args.out or os.path.join(HERE, "reference", f"{name}.json")
    names = [n for n, _ in TEXTS]
    texts = [t for _, t in TEXTS]

    t0 = time.time()
    doc = {"format": 1, "model": name, "model_config": model_config(args.model_dir),
           "versions": flag_m3.versions(),
           "flagembedding_call": "BGEM3FlagModel(folder, use_fp16=False, devices='cpu')"
                                 f".encode(texts, batch_size={args.batch_size}, max_length=N, "
                                 "return_dense=True, return_sparse=True, return_colbert_vecs=True)",
           "encodings": []}
    self_check = {}
    with flag_m3.FlagModelDir(args.model_dir) as folder:
        m = flag_m3.load_flag_model(folder)
        raw = {}
        for max_length in MAX_LENGTHS:
            out, ids = flag_m3.encode(m, texts, max_length, batch_size=args.batch_size)
            raw[max_length] = (out, ids)
            doc["encodings"].append({"max_length": max_length,
                                     "items": flag_m3.to_items(texts, out, ids, names)})
            if not args.no_self_check:
                self_check[str(max_length)] = batch_vs_single(m, texts, out, max_length)
            lens = {n: len(i) for n, i in zip(names, ids) if n.startswith("long_")}
            print(f"max_length {max_length}: encoded {len(texts)} texts, long texts {lens}",
                  file=sys.stderr)

        # Scores: query and passage each encoded on its own terms at max_length 8192.
        queries = sorted({q for q, _ in SCORE_PAIRS})
        q_out, q_ids = flag_m3.encode(m, queries, 8192, batch_size=args.batch_size)
        p_out, p_ids = raw[8192]
        doc["score_weights"] = list(flag_m3.SCORE_WEIGHTS)
        doc["score_max_length"] = 8192
        doc["scores"] = []
        for q, pname in SCORE_PAIRS:
            qi, pi = queries.index(q), names.index(pname)
            s = flag_m3.pair_scores(m, flag_m3.raw_record(q_out, q_ids, qi),
                                    flag_m3.raw_record(p_out, p_ids, pi))
            doc["scores"].append({"query": q, "passage_name": pname,
                                  "passage": TEXT_BY_NAME[pname]} | s)
    doc["self_check_batched_vs_single_max_abs_diff"] = self_check

    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    size = os.path.getsize(out_path)
    print(json.dumps({"out": out_path, "bytes": size, "seconds": round(time.time() - t0, 1),
                      "self_check": self_check}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

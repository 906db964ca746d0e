#!/usr/bin/env python3
"""FlagEmbedding's dense and ColBERT outputs under other pooling and normalisation
settings, and with e5-style prefixes: the references of the index-settings tests.

    python Fixtures/generate_pooling_references.py Fixtures/models/tiny-bin
        -> Fixtures/reference/tiny-bin-pooling.json

For each (pooling, normalize) in SETTINGS runs FlagEmbedding as users would:

    BGEM3FlagModel(folder, use_fp16=False, devices="cpu",
                   pooling_method=POOLING, normalize_embeddings=NORMALIZE)
        .encode(texts, max_length=8192, return_dense=True, return_colbert_vecs=True)

FlagEmbedding's M3 pools with "cls", "mean" (over every real token, <s> and </s>
included) or "last_token"; m3search's "max" has no FlagEmbedding counterpart and is
not covered here. The texts include prefixed ones ("query: …", "passage: …"), exactly
as the prefix settings must produce them. Output (JSON):

  {"format": 1, "model": NAME, "versions": {...}, "max_length": 8192,
   "settings": [{"pooling", "normalize", "items": [{"text", "input_ids", "dense", "colbert"}]}]}
"""
import argparse, json, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import flag_m3  # noqa: E402

SETTINGS = [("cls", True), ("mean", True), ("mean", False), ("cls", False)]
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "query: how does the with statement manage resources",
    "passage: The with statement wraps a block in the methods of a context manager.",
    "Москва — столица России.",
]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    from FlagEmbedding import BGEM3FlagModel

    name = os.path.basename(os.path.abspath(args.model_dir))
    out_path = args.out or os.path.join(HERE, "reference", f"{name}-pooling.json")
    doc = {"format": 1, "model": name, "versions": flag_m3.versions(), "max_length": 8192, "settings": []}
    with flag_m3.FlagModelDir(args.model_dir) as folder:
        flag_m3.load_flag_model(folder)  # its checks: float32, fast tokenizer, heads loaded from the files
        for pooling, normalize in SETTINGS:
            m = BGEM3FlagModel(folder, use_fp16=False, devices="cpu",
                               pooling_method=pooling, normalize_embeddings=normalize)
            out = m.encode(TEXTS, max_length=8192, return_dense=True, return_sparse=False,
                           return_colbert_vecs=True)
            ids = m.tokenizer(TEXTS, truncation=True, max_length=8192)["input_ids"]
            items = [{"text": t, "input_ids": list(map(int, ids[i])),
                      "dense": [float(x) for x in out["dense_vecs"][i]],
                      "colbert": [[float(x) for x in row] for row in out["colbert_vecs"][i]]}
                     for i, t in enumerate(TEXTS)]
            doc["settings"].append({"pooling": pooling, "normalize": normalize, "items": items})
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(json.dumps({"out": out_path, "bytes": os.path.getsize(out_path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

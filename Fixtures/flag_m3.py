"""FlagEmbedding's BGEM3FlagModel, loaded and called exactly as users do, for the
fixture scripts (generate_references.py, check_parity.py).

A model folder from generate_models.py has no tokenizer.json (17 MB, not committed), so
`FlagModelDir` lays out a temporary folder with the model's files (as absolute symlinks,
so a 2.3 GB checkpoint is not copied) plus tokenizer.json: AutoTokenizer then loads the
fast (Rust) tokenizer exactly as it does for the real BAAI/bge-m3 download.
"""
import os, shutil, tempfile

import numpy as np
import torch

from reference_tokenizer import default_tokenizer_json

SCORE_WEIGHTS = (0.4, 0.3, 0.3)  # dense, sparse, colbert


class FlagModelDir:
    """Context manager: a temporary stand-in for `model_dir` with tokenizer.json added."""

    def __init__(self, model_dir):
        self.model_dir = model_dir

    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix="m3-flag-")
        path = os.path.join(self.tmp, os.path.basename(os.path.abspath(self.model_dir)))
        os.makedirs(path)
        for name in os.listdir(self.model_dir):
            src = os.path.realpath(os.path.join(self.model_dir, name))
            if os.path.isfile(src):
                os.symlink(src, os.path.join(path, name))
        if not os.path.exists(os.path.join(path, "tokenizer.json")):
            shutil.copyfile(default_tokenizer_json(), os.path.join(path, "tokenizer.json"))
        return path

    def __exit__(self, *exc):
        shutil.rmtree(self.tmp, ignore_errors=True)


def _load_file_state(path):
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def load_flag_model(folder, verify_weights=True):
    """BGEM3FlagModel(folder, use_fp16=False, devices="cpu") plus sanity checks: every
    parameter is float32 in torch, the tokenizer is the fast one, and (verify_weights)
    the loaded tensors equal the files bit for bit (FlagEmbedding silently initialises
    random heads when colbert_linear.pt / sparse_linear.pt are missing)."""
    from FlagEmbedding import BGEM3FlagModel
    m = BGEM3FlagModel(folder, use_fp16=False, devices="cpu")
    inner = m.model  # EncoderOnlyEmbedderM3ModelForInference
    dtypes = {p.dtype for p in inner.parameters()}
    assert dtypes == {torch.float32}, f"parameters are {dtypes}, expected float32 only"
    assert m.tokenizer.is_fast, "expected the fast tokenizer (tokenizer.json)"
    assert m.target_devices == ["cpu"], m.target_devices
    if verify_weights:
        files = [f for f in ("model.safetensors", "pytorch_model.bin")
                 if os.path.exists(os.path.join(folder, f))]
        assert len(files) == 1, files
        state = _load_file_state(os.path.join(folder, files[0]))
        loaded = inner.model.state_dict()
        assert set(state) == set(loaded), set(state) ^ set(loaded)
        for k, v in state.items():
            assert torch.equal(v.float(), loaded[k]), f"weight {k} differs from the file"
        for name, lin in (("colbert_linear.pt", inner.colbert_linear),
                          ("sparse_linear.pt", inner.sparse_linear)):
            sd = torch.load(os.path.join(folder, name), map_location="cpu", weights_only=True)
            for k, v in sd.items():
                assert torch.equal(v.float(), getattr(lin, k)), f"{name}:{k} not loaded"
    return m


def encode(m, texts, max_length, batch_size=256):
    """m.encode(...) with all three outputs; returns FlagEmbedding's raw output and the
    input ids its tokenizer call produces (same arguments as inside encode)."""
    out = m.encode(texts, batch_size=batch_size, max_length=max_length,
                   return_dense=True, return_sparse=True, return_colbert_vecs=True)
    ids = m.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return out, ids


def to_items(texts, out, ids, names=None):
    """JSON-ready per-text records. float32 values become the Python floats that hold
    them exactly; sparse keeps FlagEmbedding's key order (first occurrence)."""
    items = []
    for i, text in enumerate(texts):
        item = {}
        if names is not None:
            item["name"] = names[i]
        item["text"] = text
        item["input_ids"] = [int(t) for t in ids[i]]
        item["dense"] = np.asarray(out["dense_vecs"][i], dtype=np.float32).tolist()
        item["sparse"] = {str(k): float(np.float32(v)) for k, v in out["lexical_weights"][i].items()}
        item["colbert"] = np.asarray(out["colbert_vecs"][i], dtype=np.float32).tolist()
        items.append(item)
    return items


def pair_scores(m, q, p, weights=SCORE_WEIGHTS):
    """Scores of one query/passage pair from per-text encodings (dicts with "dense",
    "sparse", "colbert" as FlagEmbedding returns them), with FlagEmbedding's clean
    per-text functions. compute_score is not used: it pads passages in a batch and its
    compute_colbert_score floors token maxima at 0 (padding rows are zero vectors)."""
    wd, ws, wc = weights
    dense = float(np.float32(np.asarray(q["dense"], np.float32) @ np.asarray(p["dense"], np.float32)))
    sparse = float(np.float32(m.compute_lexical_matching_score(q["sparse"], p["sparse"])))
    colbert = float(m.colbert_score(np.asarray(q["colbert"], np.float32),
                                    np.asarray(p["colbert"], np.float32)))
    return {
        "dense": dense, "sparse": sparse, "colbert": colbert,
        "sparse+dense": (wd * dense + ws * sparse) / (wd + ws),
        "colbert+sparse+dense": (wd * dense + ws * sparse + wc * colbert) / (wd + ws + wc),
    }


def raw_record(out, ids, i):
    """Record i of an encode() result in the (np.float32) form pair_scores expects."""
    return {"input_ids": ids[i], "dense": out["dense_vecs"][i],
            "sparse": out["lexical_weights"][i], "colbert": out["colbert_vecs"][i]}


def versions():
    import importlib.metadata as md
    return {p: md.version(p) for p in ("FlagEmbedding", "torch", "transformers", "tokenizers",
                                        "sentencepiece", "safetensors", "numpy")}

#!/usr/bin/env python3
"""A stand-in for the Swift `m3search` binary's `encode` and `score` commands, written
from scratch in NumPy (no torch, no transformers, no FlagEmbedding). It exists to test
check_parity.py before the Swift binary does, and doubles as an executable spec of what
the port has to compute to match FlagEmbedding:

  tokens      <s> + pieces[:max_length-2] + </s>   (tokenizers' fast XLM-R tokenizer)
  positions   XLM-R style: pad_id + cumsum(id != pad_id), and pad_id (=1) for a <pad> id
  embeddings  LN(word[id] + position[pos] + token_type[0])
  layer       x = LN(x + Wo·MHA(x) + bo); x = LN(x + W2·gelu_erf(W1·x + b1) + b2)  (post-LN)
  dense       normalize(h[0])
  sparse      w_t = relu(sparse_linear(h_t)); per token id the max w_t, ids of <s>, </s>,
              <pad>, <unk> dropped, and only w > 0 kept; keys are decimal id strings
  colbert     normalize(colbert_linear(h[1:]))  -> (num tokens - 1) rows (includes </s>)
  scores      dense = q·p, sparse = sum over shared ids of wq*wp, colbert = mean over query
              rows of the max over passage rows of the dot product (no floor at 0)

Usage (same protocol as the Swift binary):
  mock_m3search.py encode --model DIR --max-length N  < {"text": ...} lines
      -> {"input_ids": [...], "dense": [...], "sparse": {"id": w}, "colbert": [[...]]}
  mock_m3search.py score --model DIR --weights 0.4,0.3,0.3  < {"query", "passage"} lines
      -> {"dense", "sparse", "colbert", "sparse+dense", "colbert+sparse+dense"}
  --perturb X adds X to every dense value (to check that check_parity.py notices).
"""
import argparse, json, math, os, sys
import zipfile, pickle

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CLS, PAD, EOS, UNK = 0, 1, 2, 3


# ---------------------------------------------------------------------- weights

def _load_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    kinds = {"F32": np.float32, "F16": np.float16, "BF16": "bf16"}
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        raw = data[a:b]
        if kinds[v["dtype"]] == "bf16":
            arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, kinds[v["dtype"]]).astype(np.float32)
        out[k] = arr.reshape(v["shape"])
    return out


class _Storage:
    def __init__(self, key, dtype):
        self.key, self.dtype = key, dtype


def _load_torch_zip(path):
    """Minimal reader for torch.save's zip format (what the Swift port also has to do):
    data.pkl references storages data/<key>; tensors are _rebuild_tensor_v2 calls."""
    zf = zipfile.ZipFile(path)
    root = zf.namelist()[0].split("/")[0]
    dtypes = {"FloatStorage": np.float32, "HalfStorage": np.float16,
              "BFloat16Storage": "bf16"}

    def rebuild(storage, offset, size, stride, *rest):
        raw = zf.read(f"{root}/data/{storage.key}")
        if storage.dtype == "bf16":
            flat = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            flat = np.frombuffer(raw, storage.dtype).astype(np.float32)
        if not size:
            return flat[offset:offset + 1].reshape(())
        return np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size,
            strides=[s * 4 for s in stride]).copy()

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if name == "_rebuild_tensor_v2":
                return rebuild
            if name in dtypes:
                return name
            if module == "collections" and name == "OrderedDict":
                import collections
                return collections.OrderedDict
            raise pickle.UnpicklingError(f"unexpected {module}.{name}")

        def persistent_load(self, pid):
            _, storage_type, key, _location, _numel = pid
            return _Storage(key, dtypes[storage_type])

    with zf.open(f"{root}/data.pkl") as f:
        return dict(Unpickler(f).load())


def load_weights(model_dir):
    st = os.path.join(model_dir, "model.safetensors")
    w = _load_safetensors(st) if os.path.exists(st) else \
        _load_torch_zip(os.path.join(model_dir, "pytorch_model.bin"))
    for name in ("colbert_linear", "sparse_linear"):
        for k, v in _load_torch_zip(os.path.join(model_dir, f"{name}.pt")).items():
            w[f"{name}.{k}"] = v
    return w


# ---------------------------------------------------------------------- model

def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


try:
    from scipy.special import erf as _erf
except ImportError:  # plain NumPy fallback (slow)
    _erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x):
    """Exact (erf) GELU, as transformers' "gelu"; evaluated in float64."""
    x64 = x.astype(np.float64)
    return 0.5 * x64 * (1.0 + _erf(x64 / math.sqrt(2.0)))


class Model:
    def __init__(self, model_dir, dtype=np.float32):
        self.cfg = json.load(open(os.path.join(model_dir, "config.json")))
        self.w = {k: v.astype(dtype) for k, v in load_weights(model_dir).items()}
        self.dtype = dtype
        self.eps = self.cfg["layer_norm_eps"]

    def lin(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def ln(self, x, name):
        return layer_norm(x, self.w[name + ".weight"], self.w[name + ".bias"], self.eps)

    def hidden(self, ids):
        w, cfg = self.w, self.cfg
        ids = np.asarray(ids)
        not_pad = (ids != PAD).astype(np.int64)
        pos = np.cumsum(not_pad) * not_pad + PAD
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][pos]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self.ln(x, "embeddings.LayerNorm")
        n, H = x.shape
        nh = cfg["num_attention_heads"]
        d = H // nh
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q = self.lin(x, p + "attention.self.query").reshape(n, nh, d).transpose(1, 0, 2)
            k = self.lin(x, p + "attention.self.key").reshape(n, nh, d).transpose(1, 0, 2)
            v = self.lin(x, p + "attention.self.value").reshape(n, nh, d).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / self.dtype(math.sqrt(d))
            s = np.exp(s - s.max(-1, keepdims=True))
            a = s / s.sum(-1, keepdims=True)
            ctx = (a @ v).transpose(1, 0, 2).reshape(n, H)
            x = self.ln(x + self.lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = gelu(self.lin(x, p + "intermediate.dense")).astype(self.dtype)
            x = self.ln(x + self.lin(h, p + "output.dense"), p + "output.LayerNorm")
        return x

    def encode(self, ids):
        h = self.hidden(ids)
        dense = h[0] / max(np.linalg.norm(h[0]), 1e-12)
        tw = np.maximum(h @ self.w["sparse_linear.weight"][0] + self.w["sparse_linear.bias"][0], 0)
        sparse = {}
        for t, wt in zip(ids, tw):
            if t in (CLS, EOS, PAD, UNK) or wt <= 0:
                continue
            if wt > sparse.get(str(t), 0.0):
                sparse[str(t)] = float(wt)
        c = self.lin(h[1:], "colbert_linear")
        c = c / np.maximum(np.linalg.norm(c, axis=-1, keepdims=True), 1e-12)
        return {"input_ids": [int(t) for t in ids], "dense": dense.tolist(),
                "sparse": sparse, "colbert": c.tolist()}


def tokenize(tok, text, max_length):
    pieces = tok.encode(text, add_special_tokens=False).ids
    return [CLS] + pieces[:max_length - 2] + [EOS]


def scores(q, p, weights):
    wd, ws, wc = weights
    dense = float(np.dot(q["dense"], p["dense"]))
    sparse = float(sum(w * p["sparse"][t] for t, w in q["sparse"].items() if t in p["sparse"]))
    colbert = float((np.asarray(q["colbert"]) @ np.asarray(p["colbert"]).T).max(-1).mean())
    return {"dense": dense, "sparse": sparse, "colbert": colbert,
            "sparse+dense": (wd * dense + ws * sparse) / (wd + ws),
            "colbert+sparse+dense": (wd * dense + ws * sparse + wc * colbert) / (wd + ws + wc)}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["encode", "score"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--max-length", type=int, default=8192)
    ap.add_argument("--weights", default="0.4,0.3,0.3")
    ap.add_argument("--perturb", type=float, default=0.0)
    ap.add_argument("--float64", action="store_true",
                    help="compute in float64 (how far is float32 from exact arithmetic?)")
    args = ap.parse_args(argv)

    sys.path.insert(0, HERE)
    from reference_tokenizer import default_tokenizer_json
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(default_tokenizer_json())
    model = Model(args.model, np.float64 if args.float64 else np.float32)
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        if args.command == "encode":
            r = model.encode(tokenize(tok, req["text"], args.max_length))
            r["dense"] = [x + args.perturb for x in r["dense"]]
        else:
            weights = [float(x) for x in args.weights.split(",")]
            q = model.encode(tokenize(tok, req["query"], args.max_length))
            p = model.encode(tokenize(tok, req["passage"], args.max_length))
            r = scores(q, p, weights)
        out.write(json.dumps(r) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

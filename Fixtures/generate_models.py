#!/usr/bin/env python3
"""Build a random-weight model folder in the exact BAAI/bge-m3 layout.

    config.json                      XLMRobertaModel config (like bge-m3, chosen sizes)
    model.safetensors | pytorch_model.bin
                                     exactly the keys of XLMRobertaModel.state_dict()
    colbert_linear.pt                {"weight": [H, H], "bias": [H]}  (Linear.state_dict())
    sparse_linear.pt                 {"weight": [1, H], "bias": [1]}
    sentencepiece.bpe.model          relative symlink to Fixtures/tokenizer/ (or a copy)
    tokenizer_config.json, special_tokens_map.json
    tokenizer.json                   only with --with-tokenizer-json (17 MB, never commit)

The word embedding matrix keeps all 250002 rows so the real tokenizer works.

Initialisation. Plain N(0, 0.02) (what from_config gives) makes a random post-LayerNorm
encoder degenerate: attention and FFN add almost nothing to the residual stream, the
[CLS] output is nearly the same for every text (dense cosines ~1) and a random sparse
head gives every token weight 0. Here instead:
  * Linear weights ~ N(0, 1/fan_in), times --qk-scale (2) for query/key, --ffn-scale
    (1) for the FFN down-projection and, for value and attention output, --attn-scale
    (1) in the first --mix-layers layers and --late-attn-scale (0.2) after them
    (--mix-layers defaults to all layers for up to 6 layers, else 2). Two failure
    modes bound these: with strong attention in every layer a deep post-LN stack
    collapses (every token of a text ends up with the same vector), and with peaky
    attention (large query/key scales) it turns chaotic: float32 rounding grows to
    0.1-1 in the outputs (measured as float32_vs_float64_max_abs), so no float32 port
    could match FlagEmbedding to 1e-4. The 24-layer model therefore mixes strongly in
    its first two layers only;
  * embeddings ~ N(0, 1) (word), N(0, 0.5) (position, token type), every row random
    (also the padding rows: a literal "<pad>" in a text does reach the model);
  * every bias ~ N(0, 0.1), every LayerNorm gain ~ 1 + N(0, 0.2) and bias ~ N(0, 0.1),
    so a port that forgets one of them fails the parity check;
  * ColBERT head: weight ~ N(0, 1/H), bias ~ N(0, 0.1);
  * sparse head: the weight row is the top principal direction of the within-text
    variation of the hidden states plus half a random direction (see sparse_direction;
    --sparse-direction random keeps the random row), and the bias is minus the median
    pre-activation, so about half of the tokens get a positive weight and most texts
    have both kinds. Calibration and diagnostics use the short texts of texts.py.
Everything random comes from one torch.Generator seeded with --seed, drawn in
state-dict order, so the output is deterministic for a given seed and shape (the
calibrated sparse head can differ in the last bit across machines: it depends on a
float forward pass).

Examples (from the repository root):
  python Fixtures/generate_models.py --hidden 16 --layers 2 --heads 2 --intermediate 64 \
      --seed 3 --weights-format safetensors --weights-dtype float16 --heads-dtype float32 \
      --out Fixtures/models/tiny-safetensors
  python Fixtures/generate_models.py --full --seed 3 --weights-format bin \
      --weights-dtype float32 --heads-dtype float32 --out Fixtures/generated/bge-m3-full-random
"""
import argparse, collections, json, math, os, re, sys, time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from reference_tokenizer import write_tokenizer_files, default_tokenizer_json  # noqa: E402
from texts import TEXTS  # noqa: E402

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SPECIAL_IDS = {0, 1, 2, 3}  # <s>=cls, <pad>, </s>=eos, <unk>: dropped by FlagEmbedding

MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "colbert_linear.pt",
               "sparse_linear.pt", "sentencepiece.bpe.model", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json")


def bge_m3_config(hidden, layers, heads, intermediate, dtype_name):
    """config.json of BAAI/bge-m3 with the chosen sizes."""
    return {
        "_name_or_path": "",
        "architectures": ["XLMRobertaModel"],
        "attention_probs_dropout_prob": 0.1,
        "bos_token_id": 0,
        "classifier_dropout": None,
        "eos_token_id": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": intermediate,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 8194,
        "model_type": "xlm-roberta",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "output_past": True,
        "pad_token_id": 1,
        "position_embedding_type": "absolute",
        "torch_dtype": dtype_name,
        "transformers_version": "4.33.0",
        "type_vocab_size": 1,
        "use_cache": True,
        "vocab_size": 250002,
    }


def state_dict_shapes(config_dict):
    """Keys and shapes of XLMRobertaModel.state_dict() without allocating weights."""
    from transformers import XLMRobertaConfig, XLMRobertaModel
    config = XLMRobertaConfig(**{k: v for k, v in config_dict.items() if not k.startswith("_")})
    with torch.device("meta"):
        model = XLMRobertaModel(config)
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def init_tensor(key, shape, gen, qk_scale, attn_scale, ffn_scale=1.0):
    """One tensor of the random checkpoint (float32), following the scheme above.
    attn_scale may be a function of the layer index."""
    if callable(attn_scale):
        m = re.search(r"encoder\.layer\.(\d+)\.", key)
        attn_scale = attn_scale(int(m.group(1))) if m else 1.0
    def normal(std, mean=0.0):
        return torch.randn(shape, generator=gen, dtype=torch.float32) * std + mean

    if key.endswith("word_embeddings.weight"):
        return normal(1.0)
    if key.endswith("position_embeddings.weight") or key.endswith("token_type_embeddings.weight"):
        return normal(0.5)
    if "LayerNorm" in key:
        return normal(0.2, 1.0) if key.endswith(".weight") else normal(0.1)
    if key.endswith(".bias"):
        return normal(0.1)
    assert key.endswith(".weight") and len(shape) == 2, key
    std = 1.0 / math.sqrt(shape[1])
    if ".attention.self.query." in key or ".attention.self.key." in key:
        std *= qk_scale
    elif ".attention.self.value." in key or ".attention.output.dense." in key:
        std *= attn_scale
    elif key.endswith(".output.dense.weight"):  # FFN down-projection
        std *= ffn_scale
    return normal(std)


def build(args):
    config = bge_m3_config(args.hidden, args.layers, args.heads, args.intermediate,
                           args.weights_dtype)
    gen = torch.Generator().manual_seed(args.seed)
    wdtype, hdtype = DTYPES[args.weights_dtype], DTYPES[args.heads_dtype]

    encoder = collections.OrderedDict()
    for key, shape in state_dict_shapes(config):
        # Round to the storage dtype right away: what gets saved is what FlagEmbedding
        # loads (it upcasts to float32), and the calibration below sees the same values.
        attn = lambda layer: args.attn_scale if layer < args.mix_layers else args.late_attn_scale
        encoder[key] = init_tensor(key, shape, gen, args.qk_scale, attn,
                                   args.ffn_scale).to(wdtype)

    H = args.hidden
    colbert = collections.OrderedDict(
        weight=(torch.randn((H, H), generator=gen) / math.sqrt(H)).to(hdtype),
        bias=(torch.randn((H,), generator=gen) * 0.1).to(hdtype))
    sparse_w = (torch.randn((1, H), generator=gen) / math.sqrt(H)).to(hdtype)
    return config, encoder, colbert, sparse_w


# ---------------------------------------------------------------------------------------
# A plain-transformers forward pass (no FlagEmbedding) for calibration and diagnostics.

def load_hf_model(config, encoder):
    from transformers import XLMRobertaConfig, XLMRobertaModel
    cfg = XLMRobertaConfig(**{k: v for k, v in config.items() if not k.startswith("_")})
    model = XLMRobertaModel(cfg).float().eval()
    missing, unexpected = model.load_state_dict(
        {k: v.float() for k, v in encoder.items()}, strict=True)
    assert not missing and not unexpected
    return model


def fast_tokenizer():
    from tokenizers import Tokenizer
    return Tokenizer.from_file(default_tokenizer_json())


@torch.no_grad()
def hidden_states(model, tokenizer, texts):
    out = []
    for text in texts:
        ids = tokenizer.encode(text).ids
        h = model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                                                           dtype=torch.long))
        out.append((ids, h.last_hidden_state[0]))
    return out


def float32_error(states32, states64, colbert, sparse_w, sparse_b):
    """How far float32 arithmetic lands from float64 on this model (dense, sparse
    weights, ColBERT): the noise floor any float32 port shares with FlagEmbedding. Large
    attention logits or LayerNorm of near-constant vectors amplify rounding; the parity
    tolerance (1e-4) needs this well below it."""
    def outputs(h, dt):
        cw, cb = colbert["weight"].to(dt), colbert["bias"].to(dt)
        d = torch.nn.functional.normalize(h[0], dim=-1)
        s = torch.relu(h @ sparse_w.to(dt)[0] + sparse_b.to(dt)[0])
        c = torch.nn.functional.normalize(h[1:] @ cw.T + cb, dim=-1)
        return d, s, c
    err = {"dense": 0.0, "sparse": 0.0, "colbert": 0.0}
    for (_, h32), (_, h64) in zip(states32, states64):
        for key, a, b in zip(err, outputs(h32, torch.float32), outputs(h64, torch.float64)):
            if a.numel():
                err[key] = max(err[key], float((a.double() - b).abs().max()))
    return err


def _content(ids, h):
    """Hidden states of the tokens FlagEmbedding keeps for sparse weights."""
    keep = ~torch.isin(torch.tensor(ids), torch.tensor(sorted(SPECIAL_IDS)))
    return h[keep]


def sparse_direction(states, random_w, mode, mix=0.5):
    """The sparse head's weight row. "random": random_w as drawn. "within-pc1": the top
    principal direction of the within-text (per-text centred) hidden states plus `mix`
    times the random direction, scaled so pre-activations vary by ~1 within a text.
    A random encoder gives every token of a text a large shared component, so a purely
    random row makes most texts all-positive or all-zero; this one makes the weights vary
    from token to token inside a text, as in the real model."""
    if mode == "random":
        return random_w
    hc = torch.cat([c - c.mean(0) for c in (_content(i, h).double() for i, h in states)
                    if len(c) > 1])
    v1 = torch.linalg.svd(hc, full_matrices=False).Vh[0]
    v1 = v1 * torch.sign(v1[v1.abs().argmax()])  # fix the SVD's arbitrary sign
    r = random_w[0].double() / random_w[0].double().norm()
    w = v1 + mix * r
    w = w / (hc @ w).std()
    return w.reshape(1, -1).to(random_w.dtype)


def calibrate_sparse_bias(states, sparse_w, hdtype):
    pre = torch.cat([_content(ids, h).float() @ sparse_w.float()[0] for ids, h in states])
    return (-pre.median()).reshape(1).to(hdtype)


def bias_with_margin(pre, bias, hdtype, margin):
    """Nudge the sparse bias (as little as possible) so that no pre-activation in `pre`
    lies within `margin` of the relu threshold: a weight of 1e-6 that one float32
    implementation keeps and another drops would make sparse key sets differ for
    nothing. Returns (bias, smallest |pre + bias|)."""
    vals = np.sort(pre.double().numpy())

    def gap(b):
        return float(np.min(np.abs(vals + float(b.float()[0]))))

    if gap(bias) >= margin:
        return bias, gap(bias)
    b0 = float(bias.float()[0])
    mids = (vals[1:] + vals[:-1]) / 2
    ok = (vals[1:] - vals[:-1]) > 2 * margin
    for m in sorted(-mids[ok], key=lambda c: abs(c - b0)):
        cand = torch.tensor([m]).to(hdtype)
        if gap(cand) >= margin:
            return cand, gap(cand)
    return bias, gap(bias)


@torch.no_grad()
def reference_preactivations(model, tokenizer, sparse_w, max_lengths=(8192, 128)):
    """Sparse pre-activations (without bias) of the content tokens of every text in
    texts.py at the max lengths of the reference files."""
    out = []
    for _, text in TEXTS:
        pieces = tokenizer.encode(text, add_special_tokens=False).ids
        for n in max_lengths:
            ids = [0] + pieces[:n - 2] + [2]
            h = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
            out.append(_content(ids, h) @ sparse_w.float()[0])
    return torch.cat(out)


def diagnostics(states, colbert, sparse_w, sparse_b, names):
    cw, cb = colbert["weight"].float(), colbert["bias"].float()
    sw, sb = sparse_w.float(), sparse_b.float()
    dense, n_tok, n_pos, sparse_vals, colbert_cos, mixed = [], 0, 0, [], [], []
    for ids, h in states:
        assert torch.isfinite(h).all()
        dense.append(torch.nn.functional.normalize(h[0], dim=-1))
        w = torch.relu(h @ sw[0] + sb[0])
        ids_t = torch.tensor(ids)
        keep = ~torch.isin(ids_t, torch.tensor(sorted(SPECIAL_IDS)))
        n_tok += int(keep.sum()); n_pos += int((w[keep] > 0).sum())
        sparse_vals.extend(w[keep][w[keep] > 0].tolist())
        if int(keep.sum()) >= 5:
            mixed.append(0.2 <= float((w[keep] > 0).float().mean()) <= 0.8)
        if len(ids) > 3:
            c = torch.nn.functional.normalize(h[1:] @ cw.T + cb, dim=-1)
            sim = c @ c.T
            colbert_cos.extend(sim[~torch.eye(len(c), dtype=torch.bool)].tolist())
    D = torch.stack(dense)
    cos = (D @ D.T)[~torch.eye(len(D), dtype=torch.bool)].numpy()
    return {
        "texts": len(states),
        "sparse_fraction_positive": n_pos / max(n_tok, 1),
        "sparse_texts_mixed": float(np.mean(mixed)),
        "sparse_weight_mean": float(np.mean(sparse_vals)) if sparse_vals else 0.0,
        "sparse_weight_max": float(np.max(sparse_vals)) if sparse_vals else 0.0,
        "dense_cos_min": float(cos.min()), "dense_cos_mean": float(cos.mean()),
        "dense_cos_max": float(cos.max()), "dense_cos_std": float(cos.std()),
        "colbert_token_cos_mean": float(np.mean(colbert_cos)),
    }


def check_diagnostics(d):
    problems = []
    if not 0.3 <= d["sparse_fraction_positive"] <= 0.7:
        problems.append(f"sparse fraction {d['sparse_fraction_positive']:.3f} not in [0.3, 0.7]")
    if d["sparse_texts_mixed"] < 0.5:
        problems.append(f"only {d['sparse_texts_mixed']:.2f} of the texts have 20-80% of their "
                        "tokens with positive sparse weight (most are all-or-nothing)")
    spread = d["dense_cos_max"] - d["dense_cos_min"]
    if d["dense_cos_mean"] > 0.9 or spread < 0.1:
        problems.append(f"dense cosines degenerate (mean {d['dense_cos_mean']:.3f}, "
                        f"max - min {spread:.3f})")
    if d["dense_cos_max"] > 0.9999:
        problems.append(f"two texts have identical dense vectors (max cos {d['dense_cos_max']})")
    worst = max(d.get("float32_vs_float64_max_abs", {}).values(), default=0.0)
    if worst > 1e-5:
        problems.append(f"float32 rounding is amplified to {worst:.2g} (> 1e-5) on this "
                        "model: too close to the 1e-4 parity tolerance; lower --qk-scale")
    if d["colbert_token_cos_mean"] > 0.95:
        problems.append(f"ColBERT vectors of a text collapse to one direction (mean cos "
                        f"{d['colbert_token_cos_mean']:.3f}): deep-model rank collapse, "
                        "lower --late-attn-scale or --mix-layers")
    return problems


# ---------------------------------------------------------------------------------------

def save(args, config, encoder, colbert, sparse):
    out = args.out
    os.makedirs(out, exist_ok=True)
    for name in MODEL_FILES:
        p = os.path.join(out, name)
        if os.path.lexists(p):
            os.remove(p)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    if args.weights_format == "safetensors":
        from safetensors.torch import save_file
        save_file(dict(encoder), os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
        os.chmod(os.path.join(out, "model.safetensors"), 0o644)  # save_file creates it 0600
    else:
        # transformers' save_pretrained writes a plain dict of tensors (zip format).
        torch.save(dict(encoder), os.path.join(out, "pytorch_model.bin"))
    # FlagEmbedding saves the heads as torch.nn.Linear.state_dict() (an OrderedDict).
    for name, sd in (("colbert_linear.pt", colbert), ("sparse_linear.pt", sparse)):
        lin = torch.nn.Linear(sd["weight"].shape[1], sd["weight"].shape[0], dtype=sd["weight"].dtype)
        lin.load_state_dict(sd)
        torch.save(lin.state_dict(), os.path.join(out, name))
    write_tokenizer_files(out, with_tokenizer_json=args.with_tokenizer_json,
                          link_spm=not args.copy_spm)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=64)
    ap.add_argument("--full", action="store_true",
                    help="BGE-M3's real sizes: hidden 1024, 24 layers, 16 heads, intermediate 4096")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights-format", choices=["safetensors", "bin"], default="safetensors")
    ap.add_argument("--weights-dtype", choices=list(DTYPES), default="float32")
    ap.add_argument("--heads-dtype", choices=list(DTYPES), default="float32")
    ap.add_argument("--qk-scale", type=float, default=2.0,
                    help="extra std factor for query/key weights (larger: peakier attention, "
                         "but also float32 rounding amplified; see float32_error)")
    ap.add_argument("--attn-scale", type=float, default=1.0,
                    help="extra std factor for value/attention-output weights of the first "
                         "--mix-layers layers")
    ap.add_argument("--late-attn-scale", type=float, default=0.2,
                    help="the same for the layers after those")
    ap.add_argument("--mix-layers", type=int,
                    help="default: all layers up to 6 layers, else 2")
    ap.add_argument("--ffn-scale", type=float, default=1.0,
                    help="extra std factor for the FFN output (down-projection) weights")
    ap.add_argument("--sparse-direction", choices=["within-pc1", "random"], default="within-pc1",
                    help="how the sparse head's weight row is chosen (see sparse_direction)")
    ap.add_argument("--sparse-margin", type=float, default=5e-4,
                    help="keep every sparse pre-activation of the texts.py texts (at max "
                         "length 8192 and 128) at least this far from 0 by nudging the "
                         "bias; 0 disables (and skips that extra forward pass)")
    ap.add_argument("--with-tokenizer-json", action="store_true",
                    help="also write tokenizer.json (17 MB; never in committed folders)")
    ap.add_argument("--copy-spm", action="store_true",
                    help="copy sentencepiece.bpe.model instead of a relative symlink")
    ap.add_argument("--calibration-texts", type=int, default=0,
                    help="use only the first N short texts for calibration/diagnostics (0: all)")
    ap.add_argument("--no-check", action="store_true", help="do not fail on bad diagnostics")
    ap.add_argument("--dry-run", action="store_true",
                    help="build and print diagnostics, write nothing")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.full:
        args.hidden, args.layers, args.heads, args.intermediate = 1024, 24, 16, 4096
    assert args.hidden % args.heads == 0
    if args.mix_layers is None:
        args.mix_layers = args.layers if args.layers <= 6 else 2

    t0 = time.time()
    torch.manual_seed(args.seed)  # only the explicit generator is used; belt and braces
    config, encoder, colbert, sparse_w = build(args)
    t_build = time.time() - t0

    model = load_hf_model(config, encoder)
    tok = fast_tokenizer()
    calib = [t for n, t in TEXTS if not n.startswith("long_")]
    if args.calibration_texts:
        calib = calib[:args.calibration_texts]
    states = hidden_states(model, tok, calib)
    sparse_w = sparse_direction(states, sparse_w, args.sparse_direction)
    sparse_b = calibrate_sparse_bias(states, sparse_w, DTYPES[args.heads_dtype])
    margin = None
    if args.sparse_margin > 0:
        sparse_b, margin = bias_with_margin(reference_preactivations(model, tok, sparse_w),
                                            sparse_b, DTYPES[args.heads_dtype],
                                            args.sparse_margin)
    sparse = collections.OrderedDict(weight=sparse_w, bias=sparse_b)
    diag = diagnostics(states, colbert, sparse_w, sparse_b, calib)
    diag["sparse_min_abs_preactivation_reference_texts"] = margin
    # float32 vs float64 on every text of texts.py (long ones amplify rounding most)
    all_texts = [t for _, t in TEXTS]
    states32 = hidden_states(model, tok, all_texts)
    diag["float32_vs_float64_max_abs"] = float32_error(
        states32, hidden_states(model.double(), tok, all_texts), colbert, sparse_w, sparse_b)
    del model
    t_calib = time.time() - t0 - t_build

    problems = check_diagnostics(diag)
    failed = bool(problems) and not args.no_check
    if not args.dry_run and not failed:
        save(args, config, encoder, colbert, sparse)
    t_total = time.time() - t0
    n_params = sum(v.numel() for v in encoder.values())
    print(json.dumps({
        "out": args.out, "hidden": args.hidden, "layers": args.layers, "heads": args.heads,
        "intermediate": args.intermediate, "seed": args.seed,
        "weights": f"{args.weights_format}/{args.weights_dtype}", "heads_dtype": args.heads_dtype,
        "scales": {"qk": args.qk_scale, "attn": args.attn_scale, "mix_layers": args.mix_layers,
                   "late_attn": args.late_attn_scale, "ffn": args.ffn_scale,
                   "sparse_direction": args.sparse_direction},
        "encoder_parameters": n_params, "sparse_bias": float(sparse_b.float()[0]),
        "diagnostics": diag,
        "seconds": {"build": round(t_build, 1), "calibrate": round(t_calib, 1),
                    "total": round(t_total, 1)},
    }, indent=2))
    for p in problems:
        print("DIAGNOSTIC PROBLEM:", p, file=sys.stderr)
    if failed:
        print("nothing written (--no-check writes anyway)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

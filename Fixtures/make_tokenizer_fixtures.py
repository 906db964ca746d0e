"""Write Fixtures/tokenizer/strings.jsonl: texts and the input_ids FlagEmbedding's
tokenizer (XLMRobertaTokenizerFast from XLM-R's tokenizer.json) gives them.

Texts: a stratified sample of real translations (msgstr) from the gettext catalogs in
/usr/share/locale/*/LC_MESSAGES/*.mo (every language directory, every length range, plus
strings with leading/trailing whitespace, control and format characters as they occur,
plus strings on which plain SentencePiece disagrees with Hugging Face), hand-written edge
cases, a text of more than 8192 tokens, and a few exact-tie strings.

Each line is one JSON object:
  {"text": ..., "ids": [...]}                      no truncation
  {"text": ..., "max_length": L, "ids": [...]}     truncation=True, max_length=L
  {"text": ..., "ids": [...], "tie": true}         depends on tokenizer.json's exact
                                                   double scores (see M3Tokenizer)
  plus "source": "gettext:<lang>" | "edge" | "long" | "tie".

Usage: python make_tokenizer_fixtures.py [OUT.jsonl]   (deterministic; needs /work/venv)
"""
import glob, json, os, random, struct, sys, tempfile, unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from reference_tokenizer import load_reference_tokenizer, ensure_spm  # noqa: E402

OUT = os.path.join(HERE, "tokenizer", "strings.jsonl")
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


# --------------------------------------------------------------------------- gettext

def read_mo(path):
    """msgstr translations of a GNU .mo catalog (plural forms split)."""
    data = open(path, "rb").read()
    if len(data) < 20:
        return []
    for order in "<>":
        if struct.unpack(order + "I", data[:4])[0] == 0x950412DE:
            break
    else:
        return []
    _, _, n, ids_at, strs_at = struct.unpack(order + "5I", data[:20])
    charset, raw = "utf-8", []
    for i in range(n):
        olen, opos = struct.unpack(order + "2I", data[ids_at + 8 * i: ids_at + 8 * i + 8])
        tlen, tpos = struct.unpack(order + "2I", data[strs_at + 8 * i: strs_at + 8 * i + 8])
        if olen == 0:  # header
            for line in data[tpos:tpos + tlen].decode("ascii", "replace").split("\n"):
                if line.lower().startswith("content-type:") and "charset=" in line:
                    charset = line.split("charset=", 1)[1].strip() or "utf-8"
            continue
        raw.append(data[tpos:tpos + tlen])
    out = []
    for b in raw:
        try:
            text = b.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
        out.extend(p for p in text.split("\x00") if p)
    return out


def load_catalogs():
    by_lang = {}
    for path in sorted(glob.glob("/usr/share/locale/*/LC_MESSAGES/*.mo")):
        lang = path.split("/")[4]
        by_lang.setdefault(lang, set()).update(read_mo(path))
    return {lang: sorted(v) for lang, v in sorted(by_lang.items())}


LENGTH_BUCKETS = [(1, 10), (11, 30), (31, 80), (81, 200), (201, 10 ** 9)]


def sample_gettext(catalogs, rnd, per_bucket=8):
    picked = {}
    for lang, strings in catalogs.items():
        for lo, hi in LENGTH_BUCKETS:
            pool = [s for s in strings if lo <= len(s) <= hi]
            rnd.shuffle(pool)
            for s in pool[:per_bucket]:
                picked.setdefault(s, lang)
    return picked


def is_interesting(s):
    """Whitespace at the ends, control/format/separator characters, literal ▁, specials."""
    if s != s.strip() or "\t" in s or "\r" in s or "\u2581" in s:
        return True
    if any(t in s for t in SPECIAL_TOKENS):
        return True
    return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") or
               (unicodedata.category(c) == "Zs" and c != " ") for c in s)


def sample_interesting(catalogs, rnd, limit=400):
    pool = sorted({(s, lang) for lang, v in catalogs.items() for s in v if is_interesting(s)})
    rnd.shuffle(pool)
    # Spread over kinds: group by a coarse signature, take round-robin.
    def kind(s):
        if s != s.rstrip():
            return "trailing:" + repr(s[-1])
        if s != s.lstrip():
            return "leading:" + repr(s[0])
        for c in s:
            cat = unicodedata.category(c)
            if cat in ("Cc", "Cf", "Zl", "Zp") or (cat == "Zs" and c != " "):
                return "char:%04X" % ord(c)
        return "other"
    groups = {}
    for s, lang in pool:
        groups.setdefault(kind(s), []).append((s, lang))
    out, i = {}, 0
    while len(out) < limit and any(i < len(g) for g in groups.values()):
        for k in sorted(groups):
            if i < len(groups[k]) and len(out) < limit:
                s, lang = groups[k][i]
                out.setdefault(s, lang)
        i += 1
    return out


def sentencepiece_disagreements(candidates, tok, limit=250):
    """Strings (without trailing whitespace) where plain SentencePiece != Hugging Face."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=ensure_spm())
    texts = [s for s in candidates if s == s.rstrip()]
    ref = tok(texts, truncation=False)["input_ids"]
    out = []
    for s, r in zip(texts, ref):
        plain = [0] + [3 if i == 0 else i + 1 for i in sp.encode(s)] + [2]
        if plain != r:
            out.append(s)
    return out[:limit]


# --------------------------------------------------------------------------- edge cases

def edge_cases(rnd):
    e = [
        # empty / whitespace
        "", " ", "  ", "\t", "\n", "\r", "\r\n", " \n\t ", "\u00a0", "\u3000", "\u200b", "\u200d",
        "\ufeff", "\u2028", "\u2029", "\u0085", "\u1680", "\u202f", "\u205f", "\u2009\u200a",
        # trailing / leading whitespace
        "Hello world", "Hello world ", "Hello world  ", "Hello world\n", "Hello world\t",
        "Hello world\r\n", "Hello world\n\n", " Hello world", "\nHello", "\t\tHello",
        "Hello   world", "Hello \t\n world", "Hello\u00a0world", "Hello\u00a0", "\u00a0Hello",
        "日本語\u3000テキスト", "テキスト\u3000", "\u3000テキスト", "end.\u2028", "x\u2029y",
        "a\r\nb", "\r\n\r\n", "line one\nline two\n", "tab\tseparated\tvalues\t",
        # zero-width and format characters
        "\u200bHello\u200b", "\u200dx\u200d", "a\u200cb", "x\u2060y", "\u00adsoft\u00ad hyphen",
        "\u200e\u200fltr rtl\u200f", "\u202eevil\u202c", "x\ufeff", "\ufeffBOM", "a\u2062b",
        "x\u200b ", "x \u200b", "\u200bx ", "a\u034fb",
        # emoji, ZWJ sequences, flags, modifiers, variation selectors
        "👨\u200d👩\u200d👧\u200d👦 family", "🏳\ufe0f\u200d🌈", "👍🏽", "❤\ufe0f", "☺\ufe0e",
        "🇩🇪🇫🇷🇯🇵", "🇺🇸x", "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
        "x\U000e0100\U000e0101y", "🧿\U0001fae8", "🙂 🙃 😀", "1\ufe0f\u20e3",
        # combining marks, composed vs decomposed
        "e\u0301", "\u00e9", "cafe\u0301", "caf\u00e9", "n\u0303o", "a\u0308\u0304", "\u0301",
        " \u0301", "x\u0301\u0302\u0303\u0304", "\ufb01\u0301", "\ufb01", "\u212b", "\u2126",
        "A\u030a", "\u1100\u1161\u11a8", "\uac01", "क्षत्रिय", "ภาษาไทย", "العَرَبِيَّة",
        "שָׁלוֹם", "ǅemal", "Ⅻ", "ǈ", "\u0627\u0644\u0644\u0647", "\u1e9b\u0323", "ﷺ", "ﷻ",
        "Zalgo: Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e"
        "\u0349\u035a\u032f\u031e\u0320\u034da\u0340\u0341\u035bl\u0357\u0351go",
        # full-width, compatibility
        "ＡＢＣ１２３", "ｈｅｌｌｏ　ｗｏｒｌｄ", "ｶﾀｶﾅ", "㍻", "①②③", "x²", "½", "™", "ℌ", "㎏",
        "＜s＞", "＜mask＞", "a＜unk＞b", "\U0010fffd＜unk＞", "ﬀ ﬃ ﬄ", "…", "‥", "ｰ",
        # control characters and NUL
        "\x00", "a\x00b", "\x00\x00", "\x00 x", "x\x01y", "\x01", "\x01 ", " \x01", "a \x01 b",
        "\x07bell", "\x1b[31mred\x1b[0m", "\x7f", "\x85", "\x9f", "a\x0bb", "a\x0cb", "\x08\x08",
        "a\ufffdb", "\ufffd", "\ue000\uf8ff", "\ufffe\uffff", "\U0010ffff", "\U000e0080",
        # literal special tokens in every position
        "<s>", "</s>", "<pad>", "<unk>", "<mask>", "x<s>y", "<s>x", "x</s>", "hello <mask> there",
        "hello<mask>there", "a </s> b", " <pad>", "<pad> ", "<s><s>", "<s></s><pad><unk><mask>",
        "<<s>>", "<s >", "< s>", "<S>", "<mask", "mask>", "<mas<mask>k>", "text<unk>",
        "<unk>\u0301", "x<s>\u200b", "x<s>\x01", "x<s>\x01<s>", "\u200b<s>", "e<s>\u0301",
        "<s>\u0301", " <s> ", "<s>  ", "x <mask>", "<mask> x", "<s> </s>", "<//s>", "<<<mask>>>",
        "Use <s> for strike-through and </s> to close it.", "a<pad>\u00a0b", "<mask>\n",
        # U+2581 literal
        "\u2581", "\u2581\u2581", "\u2581x", "x\u2581", "x \u2581 y", "a\u2581b", "\u2581\u0301",
        "\u2581\u2581\u2581hello\u2581\u2581world\u2581", "<s>\u2581",
        # long runs
        "a" + " " * 100 + "b", " " * 1000, "\t" * 50, "x" + "\u3000" * 20 + "y", "\n" * 30 + "x",
        "." * 64, "-" * 80, "=" * 40, "!" * 33, "?!" * 20, "…" * 12, "ーー" * 10,
        # very long words
        "a" * 500, "supercalifragilisticexpialidocious" * 20, "🙂" * 300, "1234567890" * 50,
        "日本" * 500, "क" * 200, "https://example.com/" + "path/" * 60 + "?q=" + "x" * 100,
        "".join(rnd.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/")
                for _ in range(2000)),
        "".join(chr(rnd.randint(0x4E00, 0x9FFF)) for _ in range(600)),
        "".join(chr(rnd.randint(0x0400, 0x04FF)) for _ in range(600)),
        # mixed
        "Mixed: English, Deutsch (ß, ẞ), Ελληνικά, русский, עברית, العربية, हिन्दी, 中文, 日本語, 한국어.",
        "İstanbul ıi İI", "ΣΊΣΥΦΟΣ σίσυφος", "Straße STRASSE", "ǰ", "ŉ",
    ]
    # every Latin-1 and a spread of BMP characters on their own, between letters
    e.append("".join(chr(c) for c in range(0x20, 0x250)))
    e.append(" ".join(chr(c) for c in range(0x2000, 0x2070)))
    e.append("x".join(chr(c) for c in range(0xFF00, 0xFFF0)))
    return e


TIES = [  # exact ties whose winner Hugging Face decides by its double scores' rounding
    "д9999999", "д9999999999", "ع///////////////", "ع++++++++++", "ع>>>>>>>", "ع]]]]]]]]]]]",
    "ع{{{{{{{", "д····················", "ع0.0.0.0.0.0.0.0.0.0.0.",
]


def long_text(catalogs, tok, rnd, min_tokens=9000):
    langs = ["de", "ru", "ja", "ar", "hi", "zh_CN", "fr", "ko", "el", "th", "he", "es"]
    parts = []
    for lang in langs:
        pool = [s for s in catalogs.get(lang, []) if 40 <= len(s) <= 400]
        rnd.shuffle(pool)
        parts.extend(pool[:200])
    rnd.shuffle(parts)
    text = ""
    for i, p in enumerate(parts):
        text += p + ("\n\n" if i % 7 == 6 else " ")
        if i % 50 == 49 and len(tok(text, truncation=False)["input_ids"]) > min_tokens:
            break
    return text


# --------------------------------------------------------------------------- main

def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else OUT
    rnd = random.Random(20240601)
    tok = load_reference_tokenizer(tempfile.mkdtemp())
    catalogs = load_catalogs()

    entries = {}  # text -> source (first wins)
    for s in edge_cases(rnd):
        entries.setdefault(s, "edge")
    for s, lang in sample_gettext(catalogs, rnd).items():
        entries.setdefault(s, "gettext:" + lang)
    for s, lang in sample_interesting(catalogs, rnd).items():
        entries.setdefault(s, "gettext:" + lang)
    probe = {}
    for lang, strings in catalogs.items():
        pool = list(strings)
        rnd.shuffle(pool)
        for s in pool[:150]:
            probe.setdefault(s, lang)
    for s in sentencepiece_disagreements(sorted(probe), tok):
        entries.setdefault(s, "gettext:" + probe[s])

    texts = list(entries)
    ids = tok(texts, truncation=False)["input_ids"]
    lines = [{"text": t, "ids": i, "source": entries[t]} for t, i in zip(texts, ids)]

    for t in TIES:
        lines.append({"text": t, "ids": tok(t, truncation=False)["input_ids"], "tie": True,
                      "source": "tie"})

    big = long_text(catalogs, tok, rnd)
    lines.append({"text": big, "ids": tok(big, truncation=False)["input_ids"], "source": "long"})
    truncated = [big, "hello <mask> there " * 10, "<s>" * 40, "x" * 5 + "<mask>" * 20,
                 "Hello world " * 30] + [t for t in texts if len(t) > 300][:5]
    for t in truncated:
        for max_length in (8192, 128, 16) if t is big else (128, 16):
            lines.append({"text": t, "max_length": max_length,
                          "ids": tok(t, max_length=max_length, truncation=True)["input_ids"],
                          "source": "long" if t is big else entries.get(t, "edge")})

    with open(out_path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    n_gettext = sum(1 for l in lines if l["source"].startswith("gettext:"))
    langs = {l["source"] for l in lines if l["source"].startswith("gettext:")}
    print(f"wrote {out_path}: {len(lines)} lines ({n_gettext} gettext strings from "
          f"{len(langs)} languages), {os.path.getsize(out_path)} bytes")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A multilingual retrieval set with known answers, from Django's gettext catalogues.

Material no one here wrote: Django's translators. Each English message (msgid) of the
catalogues shipped in the Django wheel is a document; a query is one of its human
translations (msgstr) in one of 15 languages, and its only relevant document is that
English message. Cross-lingual retrieval of this kind is what multilingual encoders are
trained for, and there is exactly one right answer per query.

Selection, deterministic:
  * catalogues: every `locale/<lang>/LC_MESSAGES/*.mo` in the wheel (django/conf/locale and
    each contrib app's locale), read with the standard library's gettext parser;
  * documents: singular msgids (no plural forms, no msgctxt) of at least 4 words and 24
    characters, not only a format string, deduplicated;
  * queries: one per document, in the language chosen round-robin (in LANGS order, starting
    at the document's position) among the languages whose translation exists, differs from
    the msgid and is at least 10 characters long; a document with no such translation gets
    no query.
  * split: a query whose id's CRC-32 is divisible by 5 goes to tune.tsv (~20 %), the others
    to test.tsv (held out).

Output (BEIR): corpus.jsonl {"_id", "text"}, queries.jsonl {"_id", "text", "metadata":
{"lang"}}, qrels/test.tsv and qrels/tune.tsv (query-id, corpus-id, score), and
source.json (the wheel's name and SHA-256, languages, counts).

Usage: python Fixtures/eval/make_gettext_set.py --wheel Django-5.1.4-py3-none-any.whl \
           --out Fixtures/eval/gettext
(get the wheel with `pip download --no-deps django==5.1.4 -d DIR`).
"""
import argparse, gettext, hashlib, io, json, os, re, zipfile, zlib

LANGS = ["de", "fr", "es", "it", "pt_BR", "nl", "pl", "ru", "uk", "tr", "ar", "ja",
         "zh_Hans", "ko", "sv"]
# Catalogue folder names per language where packages differ (Django, Sphinx).
ALIASES = {"zh_Hans": ("zh_Hans", "zh_CN"), "uk": ("uk", "uk_UA")}
MO = re.compile(r"^(.+)/locale/([^/]+)/LC_MESSAGES/([^/]+)\.mo$")
FORMAT_ONLY = re.compile(r"^[\s%()\w.:{}-]*$")


def catalogues(wheels):
    """{lang: {"<package>/<catalogue>": {msgid: msgstr}}} for every .mo in the wheels."""
    folder = {a: lang for lang, names in ALIASES.items() for a in names}
    out = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            for name in sorted(z.namelist()):
                m = MO.match(name)
                if not m:
                    continue
                lang = folder.get(m.group(2), m.group(2))
                t = gettext.GNUTranslations(io.BytesIO(z.read(name)))
                cat = {k: v for k, v in t._catalog.items() if isinstance(k, str) and k}
                out.setdefault(lang, {})[f"{m.group(1)}/{m.group(3)}"] = cat
    return out


def good_document(s):
    return ("\x04" not in s and len(s) >= 24 and len(s.split()) >= 4
            and not FORMAT_ONLY.match(s.replace(" ", "")) and "\n" not in s.strip())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", required=True, action="append", help="a wheel; repeat for more")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    cats = catalogues(args.wheel)
    missing = [l for l in LANGS if l not in cats]
    assert not missing, f"languages missing from the wheel: {missing}"
    # Documents: English msgids in a fixed order (catalogue path, then msgid).
    docs, seen = [], set()
    domains = sorted({d for l in LANGS for d in cats[l]})
    for dom in domains:
        ids = set()
        for l in LANGS:
            ids |= set(cats[l].get(dom, {}))
        for msgid in sorted(ids):
            text = msgid.strip()
            if good_document(text) and text not in seen:
                seen.add(text)
                docs.append((dom, msgid, text))

    corpus, queries, qrels = [], [], []
    for i, (dom, msgid, text) in enumerate(docs):
        did = f"d{i:04d}"
        corpus.append({"_id": did, "text": text})
        for j in range(len(LANGS)):
            lang = LANGS[(i + j) % len(LANGS)]
            tr = cats[lang].get(dom, {}).get(msgid, "").strip()
            if tr and tr != text and len(tr) >= 10 and "\n" not in tr:
                qid = f"q{i:04d}-{lang}"
                queries.append({"_id": qid, "text": tr, "metadata": {"lang": lang}})
                qrels.append((qid, did))
                break

    os.makedirs(os.path.join(args.out, "qrels"), exist_ok=True)
    with open(os.path.join(args.out, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for d in corpus:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(os.path.join(args.out, "queries.jsonl"), "w", encoding="utf-8") as f:
        for q in queries:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    split = {"test": [], "tune": []}
    for qid, did in qrels:
        split["tune" if zlib.crc32(qid.encode()) % 5 == 0 else "test"].append((qid, did))
    for name, rows in split.items():
        with open(os.path.join(args.out, "qrels", f"{name}.tsv"), "w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qid, did in rows:
                f.write(f"{qid}\t{did}\t1\n")
    by_lang = {}
    for q in queries:
        by_lang[q["metadata"]["lang"]] = by_lang.get(q["metadata"]["lang"], 0) + 1
    src = {
        "wheels": {os.path.basename(w): hashlib.sha256(open(w, "rb").read()).hexdigest()
                   for w in args.wheel},
        "languages": LANGS, "documents": len(corpus), "queries": len(queries),
        "queries_by_language": by_lang,
        "test_queries": len(split["test"]), "tune_queries": len(split["tune"]),
    }
    with open(os.path.join(args.out, "source.json"), "w") as f:
        json.dump(src, f, indent=2)
        f.write("\n")
    print(json.dumps(src))


if __name__ == "__main__":
    main()

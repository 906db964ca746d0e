"""The storage benchmark's corpus: 5,000 chunks and 100 queries encoded once with the
full-size random-weight model, cached in Benchmarks/work/storage/ (delete to re-encode).

    /work/venv/bin/python Benchmarks/storage_data.py [--chunks 5000] [--precision int8]

Texts: Fixtures/corpus (Python's documentation topics), continued with the docstrings of
Python's standard library (read with `ast`, in sorted module order) and its comment blocks, so that 5,000 chunks do
not repeat text. Chunk i has exactly 48 + (i * 37) % 129 tokens with <s> and </s> (48..176,
mean 112). Query q is one sentence (8..24 tokens) of chunk (q * 7919) % chunks, so every query
has a known source chunk. Encoded by `m3search encode --precision <p>` (int8 by default, the
fastest encoder; the codecs are compared against float16 of these same vectors, so the
encoder's precision only shifts what "the vectors" are).

Written (little-endian, row-major):
  meta.json                        counts, lengths, precision, wall time
  texts.jsonl                      {"text": ...} for chunks then queries
  ids.i32 / ids_off.i64            input ids, offsets per text
  dense.f32                        (texts, 1024)
  sparse_ids.i32 / sparse_w.f32 / sparse_off.i64
  colbert.f16 / colbert_off.i64    (tokens, 1024) float16 (float32 -> float16 rounding once)
"""
import argparse, ast, json, os, re, subprocess, sys, sysconfig, time
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "Fixtures"))
import encoder as enc  # corpus_text, MODEL

OUT = os.path.join(HERE, "work/storage")


def stdlib_sources():
    """(path, text) of the standard library's .py files, in a fixed order, tests left out."""
    base = sysconfig.get_paths()["stdlib"]
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames
                             if d not in ("test", "tests", "idle_test", "site-packages", "__pycache__"))
        for f in sorted(filenames):
            if f.endswith(".py"):
                try:
                    yield os.path.join(dirpath, f), open(os.path.join(dirpath, f), encoding="utf-8").read()
                except UnicodeDecodeError:
                    continue


def stdlib_docstrings():
    out = []
    for _, text in stdlib_sources():
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                d = ast.get_docstring(node)
                if d and len(d) > 80:
                    out.append(" ".join(d.split()))
    return " ".join(out)


def stdlib_comments():
    """Comment blocks (3+ consecutive # lines) of the standard library: more English prose."""
    out = []
    for _, text in stdlib_sources():
        block = []
        for line in text.splitlines() + [""]:
            s = line.strip()
            if s.startswith("#") and not s.startswith("#!"):
                block.append(s.lstrip("#").strip())
            else:
                if len(block) >= 3:
                    out.append(" ".join(" ".join(block).split()))
                block = []
    return " ".join(out)


def make_texts(tok, lengths, text):
    offs = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    texts, pos = [], 0
    for L in lengths:
        n = L - 2
        if pos + n + 50 > len(offs):
            raise RuntimeError("text source exhausted")
        for extra in range(0, 40):
            t = text[offs[pos + extra][0]:offs[pos + extra + n - 1][1]]
            if len(tok(t)["input_ids"]) == L:
                break
        else:
            raise RuntimeError(f"no text of exactly {L} tokens near {pos}")
        texts.append(t)
        pos += n + 3
    return texts


def make_queries(tok, chunks, count):
    qs, src = [], []
    for q in range(count):
        j = (q * 7919) % len(chunks)
        sentences = [s.strip() for s in re.split(r"(?<=[.!?:;])\s+", chunks[j]) if s.strip()]
        best = None
        for s in sentences:
            words = s.split()
            n = len(tok(s)["input_ids"])
            while n > 24 and len(words) > 3:
                words = words[:-1]
                s = " ".join(words)
                n = len(tok(s)["input_ids"])
            if n >= 8 and (best is None or n > best[1]):
                best = (s, n)
        if best is None:
            best = (" ".join(chunks[j].split()[:12]), 0)
        qs.append(best[0])
        src.append(j)
    return qs, src


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=5000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--binary", default=enc.BINARY)
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    from transformers import AutoTokenizer
    from flag_m3 import FlagModelDir
    with FlagModelDir(enc.MODEL) as folder:
        tok = AutoTokenizer.from_pretrained(folder)
    lengths = [48 + (i * 37) % 129 for i in range(args.chunks)]
    text = enc.corpus_text() + " " + stdlib_docstrings() + " " + stdlib_comments()
    chunks = make_texts(tok, lengths, text)
    qs, src = make_queries(tok, chunks, args.queries)
    all_texts = chunks + qs
    with open(os.path.join(OUT, "texts.jsonl"), "w") as f:
        for t in all_texts:
            f.write(json.dumps({"text": t}) + "\n")
    print(f"{len(chunks)} chunks ({sum(lengths)} tokens) + {len(qs)} queries; encoding "
          f"with {args.binary} --precision {args.precision}", file=sys.stderr, flush=True)

    ids, dense, sp_ids, sp_w, sp_off, ids_off, cb_off = [], [], [], [], [0], [0], [0]
    colbert = []
    t0 = time.perf_counter()
    with open(os.path.join(OUT, "texts.jsonl")) as stdin:
        p = subprocess.Popen([args.binary, "encode", "--model", enc.MODEL, "--max-length", "512",
                              "--precision", args.precision], stdin=stdin, stdout=subprocess.PIPE,
                             text=True, bufsize=1 << 20)
        used = None
        for n, line in enumerate(p.stdout):
            o = json.loads(line)
            used = o.get("precision")
            ids.extend(o["input_ids"]); ids_off.append(len(ids))
            dense.append(np.asarray(o["dense"], dtype=np.float32))
            for k, v in o["sparse"].items():
                sp_ids.append(int(k)); sp_w.append(v)
            sp_off.append(len(sp_ids))
            c = np.asarray(o["colbert"], dtype=np.float32).astype(np.float16)
            colbert.append(c); cb_off.append(cb_off[-1] + len(c))
            if n % 250 == 0:
                el = time.perf_counter() - t0
                print(f"  {n + 1}/{len(all_texts)} texts, {len(ids)} tokens, {el:.0f} s, "
                      f"{len(ids) / max(el, 1e-9):.0f} tok/s", file=sys.stderr, flush=True)
        if p.wait() != 0:
            sys.exit("m3search encode failed")
    wall = time.perf_counter() - t0
    if len(dense) != len(all_texts):
        sys.exit(f"encoder returned {len(dense)} of {len(all_texts)} texts")
    np.asarray(ids, dtype=np.int32).tofile(os.path.join(OUT, "ids.i32"))
    np.asarray(ids_off, dtype=np.int64).tofile(os.path.join(OUT, "ids_off.i64"))
    np.stack(dense).tofile(os.path.join(OUT, "dense.f32"))
    np.asarray(sp_ids, dtype=np.int32).tofile(os.path.join(OUT, "sparse_ids.i32"))
    np.asarray(sp_w, dtype=np.float32).tofile(os.path.join(OUT, "sparse_w.f32"))
    np.asarray(sp_off, dtype=np.int64).tofile(os.path.join(OUT, "sparse_off.i64"))
    np.concatenate(colbert).tofile(os.path.join(OUT, "colbert.f16"))
    np.asarray(cb_off, dtype=np.int64).tofile(os.path.join(OUT, "colbert_off.i64"))
    meta = {"chunks": len(chunks), "queries": len(qs), "query_source_chunk": src,
            "chunk_tokens": int(sum(lengths)), "dim": 1024, "precision": used,
            "colbert_vectors": int(cb_off[-1]), "encode_seconds": round(wall, 1),
            "binary": args.binary, "model": enc.MODEL}
    json.dump(meta, open(os.path.join(OUT, "meta.json"), "w"), indent=1)
    print(f"done in {wall:.0f} s: {cb_off[-1]} ColBERT vectors", file=sys.stderr)


if __name__ == "__main__":
    main()

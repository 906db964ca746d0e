#!/usr/bin/env python3
"""Turn an `m3search export` file (JSON Lines) into the feed format of Vespa, Qdrant or Milvus.

Python standard library only; streams line by line, so memory stays at one chunk (Qdrant:
one batch).

    python3 scripts/export-convert.py vespa  export.jsonl feed.jsonl [--namespace m3 --doctype m3chunk]
    python3 scripts/export-convert.py qdrant export.jsonl points.jsonl [--batch 64]
    python3 scripts/export-convert.py milvus export.jsonl rows          # rows.chunks.jsonl, rows.colbert.jsonl

The schemas these outputs fit are in docs/engines.md.
"""
import argparse
import json
import sys
import uuid

# Fixed namespace for Qdrant point ids: uuid5(NAMESPACE, "<doc_id>#<chunk>") is the same
# for the same chunk id in every run, so re-feeding an export overwrites instead of duplicating.
QDRANT_NAMESPACE = uuid.UUID("6d3f1c1e-8b0a-5c59-9f57-3e2b8a0c5d11")


def read_export(path):
    """Yields (header, None) first, then (header, chunk) per chunk line."""
    with open(path, encoding="utf-8") as f:
        first = f.readline()
        try:
            header = json.loads(first)
        except json.JSONDecodeError as e:
            sys.exit(f"{path}:1: not JSON ({e})")
        if header.get("format") != "m3search-export" or header.get("version") != 1:
            sys.exit(f"{path}:1: not an m3search export header (format m3search-export, version 1)")
        yield header, None
        for number, line in enumerate(f, start=2):
            if not line.strip():
                continue
            try:
                chunk = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{number}: not JSON ({e})")
            for key in ("id", "doc_id", "chunk", "text", "dense", "sparse", "colbert"):
                if key not in chunk:
                    sys.exit(f"{path}:{number}: no \"{key}\" field")
            yield header, chunk


def payload(chunk):
    """The non-vector fields every engine keeps next to the vectors."""
    fields = {
        "chunk_id": chunk["id"],
        "doc_id": chunk["doc_id"],
        "chunk": chunk["chunk"],
        "char_start": chunk.get("char_start"),
        "char_end": chunk.get("char_end"),
        "text": chunk["text"],
        "metadata": chunk.get("metadata") or {},
    }
    return {k: v for k, v in fields.items() if v is not None}


def to_vespa(src, out, namespace, doctype):
    count = 0
    for _, chunk in read_export(src):
        if chunk is None:
            continue
        fields = payload(chunk)
        fields["dense"] = chunk["dense"]
        # Mapped tensor t{}: the short form is {"<label>": value}; labels are token ids.
        fields["sparse"] = chunk["sparse"]
        # Mixed tensor (t{}, x[d]): the short form maps each label to its dense row.
        fields["colbert"] = {str(i): row for i, row in enumerate(chunk["colbert"])}
        out.write(json.dumps({"put": f"id:{namespace}:{doctype}::{chunk['id']}", "fields": fields},
                             ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count


def qdrant_point(chunk):
    sparse = sorted((int(k), v) for k, v in chunk["sparse"].items())
    return {
        "id": str(uuid.uuid5(QDRANT_NAMESPACE, chunk["id"])),
        "vector": {
            "dense": chunk["dense"],
            "sparse": {"indices": [k for k, _ in sparse], "values": [v for _, v in sparse]},
            "colbert": chunk["colbert"],
        },
        "payload": payload(chunk),
    }


def to_qdrant(src, out, batch):
    count, points = 0, []
    for _, chunk in read_export(src):
        if chunk is None:
            continue
        points.append(qdrant_point(chunk))
        if len(points) == batch:
            out.write(json.dumps({"points": points}, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += len(points)
            points = []
    if points:
        out.write(json.dumps({"points": points}, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += len(points)
    return count


def to_milvus(src, prefix):
    count = 0
    with open(prefix + ".chunks.jsonl", "w", encoding="utf-8") as chunks, \
         open(prefix + ".colbert.jsonl", "w", encoding="utf-8") as colbert:
        for _, chunk in read_export(src):
            if chunk is None:
                continue
            row = payload(chunk)
            row["dense"] = chunk["dense"]
            # JSON keys are strings; the loader turns them into int dimension indices.
            row["sparse"] = chunk["sparse"]
            chunks.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
            for i, vector in enumerate(chunk["colbert"]):
                colbert.write(json.dumps({"chunk_id": chunk["id"], "token": i, "vector": vector},
                                         separators=(",", ":")) + "\n")
            count += 1
    return count


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("engine", choices=["vespa", "qdrant", "milvus"])
    parser.add_argument("export", help="the file written by `m3search export --format jsonl`")
    parser.add_argument("out", help="output file (milvus: a prefix for .chunks.jsonl and .colbert.jsonl); - for stdout")
    parser.add_argument("--namespace", default="m3", help="Vespa document id namespace")
    parser.add_argument("--doctype", default="m3chunk", help="Vespa document type (the schema name)")
    parser.add_argument("--batch", type=int, default=64, help="Qdrant points per upsert body")
    args = parser.parse_args()
    if args.engine == "milvus":
        count = to_milvus(args.export, args.out)
    else:
        out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")
        with out:
            if args.engine == "vespa":
                count = to_vespa(args.export, out, args.namespace, args.doctype)
            else:
                count = to_qdrant(args.export, out, max(1, args.batch))
    print(f"{count} chunks converted for {args.engine}", file=sys.stderr)


if __name__ == "__main__":
    main()

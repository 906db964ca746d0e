#!/usr/bin/env python3
"""Checks an `m3search export --format vespa` folder against Vespa's published formats, and
evaluates its rank profile in NumPy. No Vespa instance is involved (none can run here).

    python3 Benchmarks/vespa_check.py EXPORT_DIR [--rnc VESPA_RNC_DIR]

What is checked, and against what:
- application/schemas/*.sd: parsed by the grammar of Vespa's schema reference
  (docs.vespa.ai/en/reference/schemas/schemas.html; the productions used are those of
  config-model/src/main/javacc/SchemaParser.jj): document type = schema name, field types
  (primitive, map, weightedset, tensor type specs), indexing statements, attribute and HNSW
  settings, no reserved field names (config-model Schema.RESERVED_NAMES). The rank profile's
  inputs are parsed, and every ranking expression is parsed and type-checked with Vespa's
  tensor type rules (join = union of dimensions, indexed sizes must agree; reduce removes
  the named dimensions; first-phase must be a scalar), every query(), attribute() and
  function reference resolved.
- feed.jsonl: every line is a put of the document JSON format
  (docs.vespa.ai/en/reference/schemas/document-json-format.html): a document id of the id
  scheme for this document type, only declared fields, each value in the form its type
  takes (string, int/long ranges, map, weightedset with int32 weights, the short forms of
  indexed, mapped and mixed tensors with the declared sizes), strings and ids of text
  characters only (com.yahoo.text.Text.isTextCharacter), unique ids.
- application/services.xml: with --rnc, validated against Vespa's own RELAX NG schema
  (config-model/src/main/resources/schema/services.rnc, converted by rnc2rng, checked by lxml);
  always: the content cluster serves this schema's document type.

The rank profile evaluation (`rank`) computes the profile's first-phase expression in float32
for given query tensors over the feed's documents, with the candidates a Vespa query of
docs/engines.md would match; engines.py compares it with m3search.
"""
import argparse
import json
import math
import re
import sys
from pathlib import Path

# Vespa's reserved field names (config-model com.yahoo.schema.Schema.RESERVED_NAMES).
RESERVED_FIELD_NAMES = {"index", "index_url", "summary", "attribute", "select_input", "host", "documentid",
                        "position", "split_foreach", "tokenize", "if", "else", "switch", "case", "sddocname",
                        "relevancy"}
PRIMITIVES = {"string", "int", "long", "float", "double", "bool", "byte", "raw", "uri", "position", "predicate"}
CELL_TYPES = {"float", "double", "bfloat16", "int8"}
DISTANCE_METRICS = {"euclidean", "angular", "dotproduct", "prenormalized-angular", "geodegrees", "hamming"}
AGGREGATORS = {"avg", "count", "max", "median", "min", "prod", "sum"}
INDEXING_STATEMENTS = {"summary", "attribute", "index"}
DOC_MODES = {"index", "streaming", "store-only"}


class Invalid(Exception):
    pass


def is_text_character(cp):
    """com.yahoo.text.Text.isTextCharacter."""
    if cp < 0x80:
        return cp >= 0x20 or cp in (0x09, 0x0A, 0x0D)
    if 0xFDD0 <= cp <= 0xFDDF:
        return False
    return cp <= 0xFFFF or (cp & 0xFFFE) != 0xFFFE


def check_text(value, where):
    for ch in value:
        if not is_text_character(ord(ch)):
            raise Invalid(f"{where}: U+{ord(ch):04X} is not a Vespa text character")


# ---------------------------------------------------------------------------------------
# Tensor types: tensor<cell>(dim{}, dim[N], ...)

class TensorType:
    def __init__(self, cell, dims):
        self.cell = cell
        self.dims = dict(dims)  # name -> size (int) for indexed, None for mapped

    @staticmethod
    def parse(spec, where):
        m = re.fullmatch(r"tensor(?:<(\w+)>)?\((.*)\)", spec.replace(" ", ""))
        if not m:
            raise Invalid(f"{where}: {spec!r} is not a tensor type spec")
        cell = m.group(1) or "double"
        if cell not in CELL_TYPES:
            raise Invalid(f"{where}: cell type {cell!r} is not one of {sorted(CELL_TYPES)}")
        dims = {}
        for part in filter(None, m.group(2).split(",")):
            d = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(\{\}|\[(\d+)\])", part)
            if not d:
                raise Invalid(f"{where}: dimension {part!r} is neither name{{}} nor name[N]")
            if d.group(1) in dims:
                raise Invalid(f"{where}: dimension {d.group(1)} appears twice")
            size = int(d.group(3)) if d.group(3) else None
            if size is not None and size < 1:
                raise Invalid(f"{where}: dimension {d.group(1)} has size {size}")
            dims[d.group(1)] = size
        return TensorType(cell, dims)

    def __repr__(self):
        dims = ",".join(f"{k}{{}}" if v is None else f"{k}[{v}]" for k, v in sorted(self.dims.items()))
        return f"tensor<{self.cell}>({dims})"

    @property
    def mapped(self):
        return [k for k, v in self.dims.items() if v is None]

    @property
    def indexed(self):
        return {k: v for k, v in self.dims.items() if v is not None}


SCALAR = TensorType("double", {})


def join_types(a, b, where):
    dims = dict(a.dims)
    for k, v in b.dims.items():
        if k in dims and dims[k] != v:
            raise Invalid(f"{where}: cannot join {a} and {b}: dimension {k} differs")
        dims[k] = v
    cell = "float" if a.cell == b.cell == "float" or (not a.dims and b.cell == "float") or (not b.dims and a.cell == "float") else "double"
    return TensorType(cell, dims)


# ---------------------------------------------------------------------------------------
# Ranking expressions: a parser for the subset of RankingExpressionParser.jj that the
# generated profile uses (numbers, + - * /, parentheses, query(), attribute(), function
# references, sum(t[, dims]), reduce(t, aggregator[, dims])), producing an AST that is both
# type-checked and evaluated.

TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|(.))")


def tokenize(text):
    tokens, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        if m.group(1):
            tokens.append(("num", float(m.group(1))))
        elif m.group(2):
            tokens.append(("id", m.group(2)))
        elif m.group(3) and not m.group(3).isspace():
            tokens.append(("op", m.group(3)))
    return tokens


class ExprParser:
    def __init__(self, text, where):
        self.tokens, self.i, self.where = tokenize(text), 0, where

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", None)

    def take(self, kind=None, value=None):
        tok = self.peek()
        if (kind and tok[0] != kind) or (value is not None and tok[1] != value):
            raise Invalid(f"{self.where}: expected {value or kind}, found {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self):
        node = self.additive()
        if self.peek()[0] != "end":
            raise Invalid(f"{self.where}: unexpected {self.peek()[1]!r}")
        return node

    def additive(self):
        node = self.multiplicative()
        while self.peek() in (("op", "+"), ("op", "-")):
            node = ("bin", self.take()[1], node, self.multiplicative())
        return node

    def multiplicative(self):
        node = self.primary()
        while self.peek() in (("op", "*"), ("op", "/")):
            node = ("bin", self.take()[1], node, self.primary())
        return node

    def primary(self):
        kind, value = self.peek()
        if kind == "num":
            self.take()
            return ("num", value)
        if (kind, value) == ("op", "("):
            self.take()
            node = self.additive()
            self.take("op", ")")
            return node
        if kind == "id":
            self.take()
            if value in ("query", "attribute"):
                self.take("op", "(")
                name = self.take("id")[1]
                self.take("op", ")")
                return (value, name)
            if value in ("sum", "reduce"):
                self.take("op", "(")
                arg = self.additive()
                aggregator = "sum"
                if value == "reduce":
                    self.take("op", ",")
                    aggregator = self.take("id")[1]
                    if aggregator not in AGGREGATORS:
                        raise Invalid(f"{self.where}: {aggregator!r} is not an aggregator {sorted(AGGREGATORS)}")
                dims = []
                while self.peek() == ("op", ","):
                    self.take()
                    dims.append(self.take("id")[1])
                self.take("op", ")")
                return ("reduce", aggregator, arg, dims)
            if self.peek() == ("op", "("):
                raise Invalid(f"{self.where}: function {value}() is not in the checked subset")
            return ("ref", value)
        raise Invalid(f"{self.where}: unexpected {value!r}")


def type_of(node, profile, where):
    kind = node[0]
    if kind == "num":
        return SCALAR
    if kind == "query":
        name = f"query({node[1]})"
        if name not in profile["inputs"]:
            raise Invalid(f"{where}: {name} is not declared in inputs")
        return profile["inputs"][name]
    if kind == "attribute":
        field = profile["fields"].get(node[1])
        if field is None or "attribute" not in field["indexing"]:
            raise Invalid(f"{where}: attribute({node[1]}) names no attribute field")
        if not isinstance(field["type"], TensorType):
            raise Invalid(f"{where}: attribute({node[1]}) is not a tensor")
        return field["type"]
    if kind == "ref":
        if node[1] not in profile["functions"]:
            raise Invalid(f"{where}: {node[1]} is neither a function of the profile nor a checked feature")
        return profile["function_types"][node[1]]
    if kind == "bin":
        return join_types(type_of(node[2], profile, where), type_of(node[3], profile, where), where)
    if kind == "reduce":
        t = type_of(node[2], profile, where)
        dims = node[3] or list(t.dims)
        for d in dims:
            if d not in t.dims:
                raise Invalid(f"{where}: reduce over {d}, which {t} does not have")
        return TensorType(t.cell if dims != list(t.dims) else "double", {k: v for k, v in t.dims.items() if k not in dims})
    raise Invalid(f"{where}: unknown node {kind}")


# ---------------------------------------------------------------------------------------
# Schema (.sd) files.

def sd_lines(text):
    """Lines without comments, as (number, stripped text)."""
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            yield number, line


def parse_schema(path):
    """The schema as a dict: name, document, fields, rank profiles (with typed functions)."""
    text = Path(path).read_text(encoding="utf-8")
    lines = list(sd_lines(text))
    pos = 0

    def where(n=None):
        return f"{path}:{n if n is not None else lines[min(pos, len(lines) - 1)][0]}"

    def expect_open(pattern):
        nonlocal pos
        number, line = lines[pos]
        m = re.fullmatch(pattern + r"\s*\{", line)
        if not m:
            raise Invalid(f"{where(number)}: expected {pattern!r} {{, found {line!r}")
        pos += 1
        return m

    def at_close():
        return pos < len(lines) and lines[pos][1] == "}"

    def close():
        nonlocal pos
        if not at_close():
            raise Invalid(f"{where()}: expected }}")
        pos += 1

    schema = {"fields": {}, "profiles": {}}
    schema["name"] = expect_open(r"schema\s+([a-z][a-z0-9_]*)").group(1)
    schema["document"] = expect_open(r"document\s+([a-z][a-z0-9_]*)").group(1)
    if schema["document"] != schema["name"]:
        raise Invalid(f"{path}: the document type {schema['document']} must be named as the schema {schema['name']}")
    while not at_close():
        number = lines[pos][0]
        m = expect_open(r"field\s+([a-z_][a-z0-9_]*)\s+type\s+(.+?)")
        name, type_text = m.group(1), m.group(2)
        if name in RESERVED_FIELD_NAMES:
            raise Invalid(f"{where(number)}: field name {name} is reserved")
        if name in schema["fields"]:
            raise Invalid(f"{where(number)}: field {name} is declared twice")
        field = {"type": parse_field_type(type_text, where(number)), "indexing": [], "settings": {}}
        while not at_close():
            number, line = lines[pos]
            if m := re.fullmatch(r"indexing:\s*(.+)", line):
                field["indexing"] = [s.strip() for s in m.group(1).split("|")]
                bad = [s for s in field["indexing"] if s not in INDEXING_STATEMENTS]
                if bad:
                    raise Invalid(f"{where(number)}: indexing statement(s) {bad} outside {sorted(INDEXING_STATEMENTS)}")
                pos += 1
            elif line == "index: enable-bm25":
                field["settings"]["bm25"] = True
                pos += 1
            elif line == "attribute: fast-search":
                field["settings"]["fast-search"] = True
                pos += 1
            elif line == "attribute {":
                pos += 1
                while not at_close():
                    number, line = lines[pos]
                    m = re.fullmatch(r"distance-metric:\s*(\S+)", line)
                    if not m or m.group(1) not in DISTANCE_METRICS:
                        raise Invalid(f"{where(number)}: {line!r} is not a distance-metric of {sorted(DISTANCE_METRICS)}")
                    field["settings"]["distance-metric"] = m.group(1)
                    pos += 1
                close()
            elif line == "index {":
                pos += 1
                expect_open("hnsw")
                while not at_close():
                    number, line = lines[pos]
                    m = re.fullmatch(r"(max-links-per-node|neighbors-to-explore-at-insert):\s*(\d+)", line)
                    if not m or int(m.group(2)) < 1:
                        raise Invalid(f"{where(number)}: {line!r} is not an HNSW setting")
                    field["settings"][m.group(1)] = int(m.group(2))
                    pos += 1
                close()
                close()
                field["settings"]["hnsw"] = True
            else:
                raise Invalid(f"{where(number)}: {line!r} is not a field setting this checker knows")
        close()
        check_field(name, field, where())
        schema["fields"][name] = field
    close()
    while not at_close():
        m = expect_open(r"rank-profile\s+([A-Za-z_][A-Za-z0-9_-]*)")
        schema["profiles"][m.group(1)] = parse_profile(lines, pos, schema, where, m.group(1))
        pos = schema["profiles"][m.group(1)].pop("_end")
    close()
    if pos != len(lines):
        raise Invalid(f"{where()}: text after the schema")
    return schema


def parse_field_type(text, where):
    text = text.strip()
    if text in PRIMITIVES:
        return text
    if m := re.fullmatch(r"map<\s*(\w+)\s*,\s*(\w+)\s*>", text):
        if m.group(1) not in PRIMITIVES or m.group(2) not in PRIMITIVES:
            raise Invalid(f"{where}: map<{m.group(1)}, {m.group(2)}> needs primitive key and value types")
        return ("map", m.group(1), m.group(2))
    if m := re.fullmatch(r"weightedset<\s*(\w+)\s*>", text):
        if m.group(1) not in ("string", "int", "long"):
            raise Invalid(f"{where}: weightedset<{m.group(1)}>: the key must be string, int or long")
        return ("weightedset", m.group(1))
    if m := re.fullmatch(r"array<\s*(\w+)\s*>", text):
        return ("array", m.group(1))
    if text.startswith("tensor"):
        return TensorType.parse(text, where)
    raise Invalid(f"{where}: {text!r} is not a field type")


def check_field(name, field, where):
    t, s, ix = field["type"], field["settings"], field["indexing"]
    if s.get("bm25") and ("index" not in ix or t != "string"):
        raise Invalid(f"{where}: field {name}: enable-bm25 needs a string field with indexing: index")
    if s.get("fast-search") and "attribute" not in ix:
        raise Invalid(f"{where}: field {name}: fast-search needs indexing: attribute")
    if s.get("hnsw") or "distance-metric" in s:
        if not isinstance(t, TensorType) or len(t.indexed) != 1 or len(t.mapped) > 1:
            raise Invalid(f"{where}: field {name}: HNSW and distance-metric need a tensor with one indexed dimension")
        if "attribute" not in ix or (s.get("hnsw") and "index" not in ix):
            raise Invalid(f"{where}: field {name}: an HNSW index needs indexing: attribute | index")
    if isinstance(t, TensorType) and "index" in ix and not s.get("hnsw"):
        raise Invalid(f"{where}: field {name}: a tensor is indexed only with an HNSW index")
    if isinstance(t, TensorType) and t.cell == "int8" and s.get("distance-metric") not in (None, "hamming", "euclidean", "dotproduct"):
        raise Invalid(f"{where}: field {name}: int8 cells with {s['distance-metric']}")


def parse_profile(lines, pos, schema, where, name):
    profile = {"inputs": {}, "defaults": {}, "functions": {}, "function_types": {}, "first_phase": None,
               "match_features": [], "fields": schema["fields"]}

    def line():
        return lines[pos]

    while line()[1] != "}":
        number, text = line()
        if text == "inputs {":
            pos += 1
            while line()[1] != "}":
                number, text = line()
                m = re.fullmatch(r"query\((\w+)\)\s+(double|tensor\S*\(.*?\))(?:\s*:\s*(\S+))?", text)
                if not m:
                    raise Invalid(f"{where(number)}: {text!r} is not an input declaration")
                key = f"query({m.group(1)})"
                if key in profile["inputs"]:
                    raise Invalid(f"{where(number)}: {key} is declared twice")
                profile["inputs"][key] = SCALAR if m.group(2) == "double" else TensorType.parse(m.group(2), where(number))
                if m.group(3) is not None:
                    if m.group(2) != "double":
                        raise Invalid(f"{where(number)}: the checker reads defaults of double inputs only")
                    profile["defaults"][key] = float(m.group(3))
                pos += 1
            pos += 1
        elif m := re.fullmatch(r"function\s+([A-Za-z_][A-Za-z0-9_]*)\(\)\s*\{", text):
            fname = m.group(1)
            pos += 1
            number, text = line()
            e = re.fullmatch(r"expression:\s*(.+)", text)
            if not e:
                raise Invalid(f"{where(number)}: function {fname}: expected expression:")
            ast = ExprParser(e.group(1), where(number)).parse()
            profile["functions"][fname] = ast
            profile["function_types"][fname] = type_of(ast, profile, where(number))
            pos += 1
            if line()[1] != "}":
                raise Invalid(f"{where()}: function {fname}: expected }}")
            pos += 1
        elif text == "first-phase {":
            pos += 1
            number, text = line()
            e = re.fullmatch(r"expression:\s*(.+)", text)
            if not e:
                raise Invalid(f"{where(number)}: first-phase: expected expression:")
            ast = ExprParser(e.group(1), where(number)).parse()
            t = type_of(ast, profile, where(number))
            if t.dims:
                raise Invalid(f"{where(number)}: first-phase must be a scalar, is {t}")
            profile["first_phase"] = ast
            pos += 1
            if line()[1] != "}":
                raise Invalid(f"{where()}: first-phase: expected }}")
            pos += 1
        elif m := re.fullmatch(r"match-features:\s*(.+)", text):
            for feature in m.group(1).split():
                if feature not in profile["functions"]:
                    raise Invalid(f"{where(number)}: match-feature {feature} is not a function of the profile")
                if profile["function_types"][feature].dims:
                    raise Invalid(f"{where(number)}: match-feature {feature} is not a scalar")
                profile["match_features"].append(feature)
            pos += 1
        else:
            raise Invalid(f"{where(number)}: {text!r} is not a rank-profile element this checker knows")
    if profile["first_phase"] is None:
        raise Invalid(f"{where()}: rank profile {name} has no first-phase")
    profile["_end"] = pos + 1
    return profile


# ---------------------------------------------------------------------------------------
# Feed (document JSON format).

def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_value(value, ftype, where):
    if ftype == "string":
        if not isinstance(value, str):
            raise Invalid(f"{where}: a string field needs a JSON string")
        check_text(value, where)
    elif ftype in ("int", "long", "byte"):
        bits = {"int": 32, "long": 64, "byte": 8}[ftype]
        if not isinstance(value, int) or isinstance(value, bool) or not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            raise Invalid(f"{where}: {value!r} is not a {ftype}")
    elif isinstance(ftype, tuple) and ftype[0] == "map":
        if not isinstance(value, dict):
            raise Invalid(f"{where}: a map field needs a JSON object")
        for k, v in value.items():
            check_text(k, where)
            check_value(v, ftype[2], f"{where}[{k!r}]")
    elif isinstance(ftype, tuple) and ftype[0] == "weightedset":
        if not isinstance(value, dict):
            raise Invalid(f"{where}: a weighted set needs a JSON object of key: weight")
        for k, v in value.items():
            check_text(k, where)
            if not isinstance(v, int) or isinstance(v, bool) or not -2 ** 31 <= v < 2 ** 31:
                raise Invalid(f"{where}[{k!r}]: weight {v!r} is not an int32")
    elif isinstance(ftype, TensorType):
        check_tensor(value, ftype, where)
    else:
        raise Invalid(f"{where}: the checker does not know the type {ftype}")


def check_tensor(value, t, where):
    mapped, indexed = t.mapped, t.indexed
    if not mapped and len(indexed) == 1:  # indexed short form, optionally under "values"
        if isinstance(value, dict) and set(value) == {"values"}:
            value = value["values"]
        (size,) = indexed.values()
        if not isinstance(value, list) or len(value) != size or not all(map(is_number, value)):
            raise Invalid(f"{where}: {t} needs an array of {size} numbers")
    elif len(mapped) == 1 and not indexed:  # mapped short form, optionally under "cells"
        if isinstance(value, dict) and set(value) == {"cells"} and isinstance(value["cells"], dict):
            value = value["cells"]
        if not isinstance(value, dict) or not all(map(is_number, value.values())):
            raise Invalid(f"{where}: {t} needs an object of label: number")
    elif len(mapped) == 1 and len(indexed) == 1:  # mixed short form, optionally under "blocks"
        if isinstance(value, dict) and set(value) == {"blocks"} and isinstance(value["blocks"], dict):
            value = value["blocks"]
        (size,) = indexed.values()
        if not isinstance(value, dict):
            raise Invalid(f"{where}: {t} needs an object of label: [numbers]")
        for label, block in value.items():
            if not isinstance(block, list) or len(block) != size or not all(map(is_number, block)):
                raise Invalid(f"{where}[{label!r}]: {t} needs {size} numbers per label")
    else:
        raise Invalid(f"{where}: the checker does not know the short form of {t}")


def check_feed(path, schema):
    """Validates every put; returns the documents as (id, fields) in feed order."""
    prefix = re.compile(r"id:([^:]+):([^:]+):([^:]*):(.+)", re.S)
    seen, documents = set(), []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            where = f"{path}:{number}"
            try:
                op = json.loads(line)
            except json.JSONDecodeError as e:
                raise Invalid(f"{where}: not JSON ({e})")
            if not isinstance(op, dict) or set(op) != {"put", "fields"}:
                raise Invalid(f"{where}: a put is {{\"put\": id, \"fields\": {{...}}}}, found keys {sorted(op)}")
            m = prefix.fullmatch(op["put"])
            if not m or m.group(2) != schema["document"] or m.group(3) != "":
                raise Invalid(f"{where}: {op['put']!r} is not id:<namespace>:{schema['document']}::<id>")
            check_text(op["put"], where)
            if op["put"] in seen:
                raise Invalid(f"{where}: document id {op['put']!r} appears twice")
            seen.add(op["put"])
            for name, value in op["fields"].items():
                field = schema["fields"].get(name)
                if field is None:
                    raise Invalid(f"{where}: field {name} is not in the schema")
                check_value(value, field["type"], f"{where}: {name}")
            documents.append((op["put"], op["fields"]))
    return documents


# ---------------------------------------------------------------------------------------
# services.xml

def check_services(path, schema, rnc_dir=None):
    import xml.etree.ElementTree as ET
    root = ET.parse(path).getroot()
    if root.tag != "services" or root.get("version") != "1.0":
        raise Invalid(f"{path}: the root must be <services version=\"1.0\">")
    types = [d.get("type") for d in root.iter("document")]
    if schema["document"] not in types:
        raise Invalid(f"{path}: no content cluster serves document type {schema['document']}")
    for d in root.iter("document"):
        if d.get("mode") not in DOC_MODES:
            raise Invalid(f"{path}: document mode {d.get('mode')!r} is not one of {sorted(DOC_MODES)}")
    if rnc_dir is None:
        return "structure only"
    import shutil
    import tempfile
    from lxml import etree
    import rnc2rng
    with tempfile.TemporaryDirectory() as tmp:
        for rnc in Path(rnc_dir).glob("*.rnc"):
            shutil.copy(rnc, tmp)
        # rnc2rng does not carry a namespace declared in an included file (content.rnc
        # declares the annotation namespace "a"): declare it in the including file too.
        services_rnc = Path(tmp) / "services.rnc"
        services_rnc.write_text('namespace a = "http://relaxng.org/ns/compatibility/annotations/1.0"\n'
                                + services_rnc.read_text())
        relaxng = etree.RelaxNG(etree.fromstring(rnc2rng.dumps(rnc2rng.load(str(services_rnc))).encode()))
        if not relaxng.validate(etree.parse(str(path))):
            raise Invalid(f"{path}: not valid against Vespa's services.rnc: {relaxng.error_log}")
    return "RELAX NG (services.rnc)"


def check_export(folder, rnc_dir=None):
    """Validates the whole folder; returns (schema, documents, what services.xml was checked with)."""
    folder = Path(folder)
    schemas = sorted((folder / "application" / "schemas").glob("*.sd"))
    if len(schemas) != 1:
        raise Invalid(f"{folder}: expected one schema in application/schemas, found {len(schemas)}")
    schema = parse_schema(schemas[0])
    if schemas[0].stem != schema["name"]:
        raise Invalid(f"{schemas[0]}: the file must be named after the schema ({schema['name']}.sd)")
    services = check_services(folder / "application" / "services.xml", schema, rnc_dir)
    documents = check_feed(folder / "feed.jsonl", schema)
    return schema, documents, services


# ---------------------------------------------------------------------------------------
# Evaluating the rank profile. Tensors are (dims, labels, array): one numpy axis per dimension,
# mapped dimensions carrying their labels. Joins follow Vespa's rule (the union of the
# dimensions; a mapped dimension both sides have keeps the labels both have), reduces
# aggregate axes; float cells stay float32, scalars are doubles.

class Tensor:
    def __init__(self, dims, labels, array):
        self.dims, self.labels, self.array = list(dims), dict(labels), array

    @staticmethod
    def scalar(value):
        import numpy as np
        return Tensor([], {}, np.asarray(value, dtype=np.float64))

    @staticmethod
    def from_json(value, t):
        """A tensor from the document JSON short form of type t (as the feed writes it)."""
        import numpy as np
        dtype = np.float32 if t.cell == "float" else np.float64
        mapped, indexed = t.mapped, t.indexed
        if not mapped:
            (name, _), = indexed.items()
            return Tensor([name], {}, np.asarray(value, dtype=dtype))
        if not indexed:
            labels = list(value)
            return Tensor(mapped, {mapped[0]: labels}, np.asarray([value[l] for l in labels], dtype=dtype))
        (name, size), = indexed.items()
        labels = list(value)
        array = np.asarray([value[l] for l in labels], dtype=dtype).reshape(len(labels), size)
        return Tensor([mapped[0], name], {mapped[0]: labels}, array)

    def aligned(self, dims, labels):
        """This tensor's array with axes in `dims` order (size 1 where absent) and mapped
        dimensions restricted to `labels`."""
        import numpy as np
        array = self.array
        for d in self.dims:
            if d in self.labels and d in labels:
                index = {l: i for i, l in enumerate(self.labels[d])}
                array = np.take(array, [index[l] for l in labels[d]], axis=self.dims.index(d))
        order = [self.dims.index(d) for d in dims if d in self.dims]
        array = np.transpose(array, order) if order else array
        shape = [array.shape[order.index(self.dims.index(d))] if d in self.dims else 1 for d in dims]
        return array.reshape(shape)


def join(a, b, op):
    dims = a.dims + [d for d in b.dims if d not in a.dims]
    labels = {}
    for d in dims:
        if d in a.labels and d in b.labels:
            other = set(b.labels[d])
            labels[d] = [l for l in a.labels[d] if l in other]
        elif d in a.labels or d in b.labels:
            labels[d] = (a.labels if d in a.labels else b.labels)[d]
    return Tensor(dims, labels, op(a.aligned(dims, labels), b.aligned(dims, labels)))


def reduce_tensor(t, aggregator, dims):
    import numpy as np
    dims = dims or list(t.dims)
    axes = tuple(t.dims.index(d) for d in dims)
    keep = [d for d in t.dims if d not in dims]
    if any(t.array.shape[a] == 0 for a in axes):
        # Vespa: aggregating no cells gives 0.
        shape = [t.array.shape[t.dims.index(d)] for d in keep]
        return Tensor(keep, {d: t.labels[d] for d in keep if d in t.labels}, np.zeros(shape, dtype=t.array.dtype))
    functions = {"sum": np.sum, "max": np.max, "min": np.min, "avg": np.mean, "prod": np.prod, "median": np.median,
                 "count": lambda x, axis: np.full(np.delete(np.array(x.shape), axis), np.prod([x.shape[i] for i in axis]), dtype=x.dtype)}
    array = functions[aggregator](t.array, axis=axes).astype(t.array.dtype)
    return Tensor(keep, {d: t.labels[d] for d in keep if d in t.labels}, array)


def evaluate(node, profile, query, doc):
    """The value of an expression AST for one document: query and doc map names to Tensors."""
    import numpy as np
    kind = node[0]
    if kind == "num":
        return Tensor.scalar(node[1])
    if kind == "query":
        return query[f"query({node[1]})"]
    if kind == "attribute":
        return doc[node[1]]
    if kind == "ref":
        return evaluate(profile["functions"][node[1]], profile, query, doc)
    if kind == "bin":
        ops = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}
        return join(evaluate(node[2], profile, query, doc), evaluate(node[3], profile, query, doc), ops[node[1]])
    if kind == "reduce":
        return reduce_tensor(evaluate(node[2], profile, query, doc), node[1], node[3])
    raise Invalid(f"evaluate: unknown node {kind}")


def rank(schema, profile_name, documents, query_inputs, candidates):
    """First-phase scores and match-features of the candidate documents (indexes into documents)."""
    profile = schema["profiles"][profile_name]
    query = {}
    for name, t in profile["inputs"].items():
        if name in query_inputs:
            value = query_inputs[name]
            query[name] = Tensor.scalar(value) if not t.dims else Tensor.from_json(value, t)
        elif name in profile["defaults"]:
            query[name] = Tensor.scalar(profile["defaults"][name])
        else:
            raise Invalid(f"query input {name} is missing and has no default")
    scored = []
    for i in candidates:
        fields = documents[i][1]
        doc = {}
        for name, field in profile["fields"].items():
            if isinstance(field["type"], TensorType) and "attribute" in field["indexing"]:
                doc[name] = Tensor.from_json(fields.get(name, {} if field["type"].mapped else []), field["type"])
        score = float(evaluate(profile["first_phase"], profile, query, doc).array)
        features = {f: float(evaluate(profile["functions"][f], profile, query, doc).array) for f in profile["match_features"]}
        scored.append((i, score, features))
    return scored


def self_test(folder, rnc_dir=None):
    """The checker must refuse each of these damaged copies of a valid export (else it could
    not fail): returns the mutations it accepted (should be none)."""
    import shutil
    import tempfile
    folder = Path(folder)
    sd = "application/schemas/m3chunk.sd"
    first = json.loads(open(folder / "feed.jsonl").readline())
    dim = len(first["fields"]["dense"])

    def put(**changes):
        fields = dict(first["fields"])
        op = {"put": changes.pop("put", first["put"]), "fields": fields}
        for k, v in changes.items():
            if v is None:
                fields.pop(k, None)
            else:
                fields[k] = v
        return json.dumps(op)

    schema_edits = {
        "dense size differs from the query": ("query(q_dense) tensor<float>(x[", "query(q_dense) tensor<float>(x[1"),
        "undeclared input": ("sum(query(q_sparse)", "sum(query(q_other)"),
        "reduce over a missing dimension": ("max, t)", "max, tt)"),
        "non-scalar first phase": ("expression: (query(w_dense) * dense_score", "expression: (attribute(dense) * dense_score"),
        "reserved field name": ("field path type", "field index type"),
        "unknown distance metric": ("distance-metric: dotproduct", "distance-metric: cosine"),
        "bad cell type": ("field sparse type tensor<float>", "field sparse type tensor<half>"),
        "bm25 on an attribute": ("indexing: summary | index\n", "indexing: summary | attribute\n"),
    }
    feed_edits = {
        "dense with a missing value": put(dense=first["fields"]["dense"][:-1]),
        "ColBERT row of the wrong size": put(colbert={"0": [0.5] * (dim + 1)}),
        "sparse weight as a string": put(sparse={"5": "0.5"}),
        "weighted-set weight not an int": put(sparse_tokens={"5": 1.5}),
        "undeclared field": put(title="x"),
        "control character": put(text="a\u0001b"),
        "document type differs": put(put=first["put"].replace(":m3chunk:", ":other:")),
        "chunk not an int32": put(chunk=2**40),
    }
    accepted = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, edit in [*schema_edits.items(), *feed_edits.items()]:
            copy = Path(tmp) / "copy"
            shutil.rmtree(copy, ignore_errors=True)
            (copy / "application" / "schemas").mkdir(parents=True)
            shutil.copy(folder / "application" / "services.xml", copy / "application" / "services.xml")
            text = (folder / sd).read_text()
            feed = [first_line := json.dumps(first)]
            if isinstance(edit, tuple):
                if edit[0] not in text:
                    accepted.append(f"{name} (the schema no longer has {edit[0]!r})")
                    continue
                text = text.replace(edit[0], edit[1], 1)
            else:
                feed = [first_line, edit]
            (copy / sd).write_text(text)
            (copy / "feed.jsonl").write_text("\n".join(feed) + "\n")
            try:
                check_export(copy, None)
                accepted.append(name)
            except Invalid:
                pass
    return accepted


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--rnc", help="folder of Vespa's services.rnc and the files it includes")
    args = parser.parse_args()
    accepted = self_test(args.folder)
    if accepted:
        sys.exit(f"the checker accepted damaged exports: {accepted}")
    try:
        schema, documents, services = check_export(args.folder, args.rnc)
    except Invalid as e:
        sys.exit(f"invalid: {e}")
    print(f"valid: schema {schema['name']} ({len(schema['fields'])} fields, rank profiles {sorted(schema['profiles'])}), "
          f"{len(documents)} puts, services.xml checked by {services}")


if __name__ == "__main__":
    main()

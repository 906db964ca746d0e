#!/usr/bin/env python3
"""Writes the small weight files Tests/M3ModelTests/WeightLoadingTests.swift loads.

Run from anywhere with the project's venv (torch, safetensors):
    /work/venv/bin/python Fixtures/weights/make_weight_fixtures.py

Valid files come from torch.save (zip format) and safetensors.torch.save_file; the
expected values come from torch itself (.float().flatten().tolist()), so the Swift
loaders are checked against an independent reader. Hostile and malformed files are
crafted here too; none of them is ever loaded by this script (a pickle is only ever
written, never unpickled).
"""
import io
import json
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
# The hostile pickle's command; the Swift test checks this file never appears.
PWNED = "/tmp/m3search-weights-fixture-pwned-5c1e9d"


class Tiny(torch.nn.Module):
    """A miniature encoder-shaped module: its state_dict() carries torch's `_metadata`."""

    def __init__(self):
        super().__init__()
        self.embeddings = torch.nn.Embedding(6, 4)
        self.LayerNorm = torch.nn.LayerNorm(4)
        self.dense = torch.nn.Linear(4, 3)
        # An int64 buffer, like old XLM-R checkpoints' embeddings.position_ids.
        self.register_buffer("position_ids", torch.arange(6).unsqueeze(0))


def state_dict(dtype):
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():
        model.LayerNorm.weight.copy_(torch.randn(4))
        model.LayerNorm.bias.copy_(torch.randn(4))
    sd = model.to(dtype).state_dict()  # OrderedDict with _metadata; position_ids stays int64
    base = torch.randn(5, 6).to(dtype)
    sd["views.transposed"] = base.T  # non-contiguous: stride (1, 6)
    sd["views.rows"] = base[2:4]  # storage offset 12, shares base's storage
    sd["views.column"] = base[:, 1]  # stride (6,), storage offset 1
    sd["views.expanded"] = base[0, :3].unsqueeze(0).expand(2, 3)  # stride (0, 1)
    sd["empty"] = torch.empty(0, 3, dtype=dtype)
    sd["scalar"] = torch.tensor(3.5, dtype=dtype)
    # Zeros of both signs, a float16 subnormal, the float16 max, a bfloat16-only magnitude.
    sd["special"] = torch.tensor([0.0, -0.0, 6e-8, 65504.0, -2.5, 1 / 3, 1e30 if dtype != torch.float16 else 1.0], dtype=dtype)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2).to(dtype))
    return sd


def expected(sd):
    tensors = {}
    for name, value in sd.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            tensors[name] = {"shape": list(value.shape), "values": value.detach().float().flatten().tolist()}
    return {"tensors": tensors, "unsupported": ["position_ids"]}


def write_valid():
    for tag, dtype in DTYPES.items():
        sd = state_dict(dtype)
        # safetensors takes contiguous, unshared tensors only.
        flat = {k: v.detach().contiguous().clone() for k, v in sd.items()}
        sd["step"] = 7  # not a tensor: the loader skips it
        torch.save(sd, OUT / f"model_{tag}.pt")
        save_file(flat, str(OUT / f"model_{tag}.safetensors"), metadata={"format": "pt"})
        (OUT / f"expected_{tag}.json").write_text(json.dumps(expected(sd), indent=1) + "\n")
    # The pre-1.6 format, which the loader must refuse with advice (its bytes vary run to run).
    torch.save({"w": torch.ones(2)}, OUT / "legacy.pt", _use_new_zipfile_serialization=False)


# ---- crafted safetensors -------------------------------------------------------------

def safetensors_bytes(header, data, pad_to=8):
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % pad_to)
    return struct.pack("<Q", len(text)) + text + data


def write_unaligned_safetensors():
    # An F32 tensor at an odd offset: must be copied, not viewed in place.
    header = {
        "pad": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
        "x": {"dtype": "F32", "shape": [3], "data_offsets": [2, 14]},
    }
    data = b"\x01\x02" + struct.pack("<3f", 1.5, -2.25, 1e-3)
    (OUT / "unaligned_f32.safetensors").write_bytes(safetensors_bytes(header, data))


# ---- crafted torch archives -------------------------------------------------------------

class FakeStorage:
    def __init__(self, key, numel, storage_type=torch.FloatStorage):
        self.key, self.numel, self.storage_type = key, numel, storage_type


class FakeTensor:
    """Pickles like a tensor whose storage and view we choose freely."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class StatePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", obj.storage_type, obj.key, "cpu", obj.numel)
        return None


def state_pickle(obj):
    buffer = io.BytesIO()
    StatePickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def archive(name, pickle_bytes, storages=None, compression=zipfile.ZIP_STORED, extra=None, zip64=False):
    """A torch-like archive written by Python's zipfile (no alignment; zip64 records only
    when asked for, by lowering zipfile's 4 GB threshold so every size and offset uses them)."""
    buffer = io.BytesIO()
    limit = zipfile.ZIP64_LIMIT
    zipfile.ZIP64_LIMIT = 1 if zip64 else limit
    with zipfile.ZipFile(buffer, "w", compression) as z:
        def add(entry, data):  # fixed timestamps keep the fixtures reproducible
            z.writestr(zipfile.ZipInfo(entry, date_time=(2024, 1, 1, 0, 0, 0)), data, compress_type=compression)

        add("archive/data.pkl", pickle_bytes)
        add("archive/byteorder", (extra or {}).pop("byteorder", b"little"))
        for key, data in (storages or {}).items():
            add(f"archive/data/{key}", data)
        for entry, data in (extra or {}).items():
            add(entry, data)
        add("archive/version", b"3\n")
    zipfile.ZIP64_LIMIT = limit
    (OUT / name).write_bytes(buffer.getvalue())
    return buffer.getvalue()


def write_crafted_archives():
    four = struct.pack("<4f", 1, 2, 3, 4)
    ok = {"w": FakeTensor(FakeStorage("0", 4), 0, [2, 2], [2, 1])}

    # Hostile: torch.save pickles __reduce__ as GLOBAL 'posix system' + REDUCE.
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {PWNED}",))

    torch.save({"weight": torch.zeros(2), "evil": Evil()}, OUT / "hostile_os_system.pt")

    # Hostile, protocol 4 spelling: STACK_GLOBAL builtins.eval.
    eval_pickle = (b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93"
                   + b"\x8c\x0bprint('hi')\x85R.")
    archive("hostile_stack_global.pt", eval_pickle)
    # INST ('i') imports and calls in one opcode; it is not in the supported subset.
    archive("unsupported_opcode.pt", b"\x80\x02(X\x04\x00\x00\x00echoios\nsystem\n.")
    # Hostile nesting: 1000 nested 1-tuples, 1000 open MARKs.
    archive("deep_tuples.pt", b"\x80\x02N" + b"\x85" * 1000 + b".")
    archive("deep_marks.pt", b"\x80\x02" + b"(" * 1000 + b".")
    # A view reaching past its 4-element storage.
    archive("view_out_of_bounds.pt", state_pickle({"w": FakeTensor(FakeStorage("0", 4), 1, [2, 2], [2, 1])}), {"0": four})
    # A stride-0 view of 2^62 elements over a 4-element storage (would exhaust memory).
    huge = FakeTensor(FakeStorage("0", 4), 0, [1 << 31, 1 << 31], [0, 0])
    archive("view_too_large.pt", state_pickle({"w": huge}), {"0": four})
    # A tensor whose storage entry is missing.
    archive("missing_storage.pt", state_pickle(ok))
    # A plain, valid crafted archive (Python zipfile: no zip64, unaligned data).
    archive("crafted_ok.pt", state_pickle(ok), {"0": four})
    archive("crafted_zip64.pt", state_pickle(ok), {"0": four}, zip64=True)
    # Container-level problems.
    archive("compressed.pt", state_pickle(ok), {"0": four}, compression=zipfile.ZIP_DEFLATED)
    archive("unsafe_name.pt", state_pickle(ok), {"0": four}, extra={"archive/../../evil": b"x"})
    archive("big_endian.pt", state_pickle(ok), {"0": four}, extra={"byteorder": b"big"})
    data = bytearray(archive("entry_past_end.pt", state_pickle(ok), {"0": four}))
    # Claim a 2 GB storage entry in its central directory header (sizes at +20 and +24).
    name = b"archive/data/0"
    at = data.find(name, data.find(b"PK\x01\x02")) - 46
    assert data[at:at + 4] == b"PK\x01\x02", "central header for archive/data/0 not found"
    data[at + 20:at + 28] = struct.pack("<II", 0x7FFFFFFF, 0x7FFFFFFF)
    (OUT / "entry_past_end.pt").write_bytes(bytes(data))


if __name__ == "__main__":
    write_valid()
    write_unaligned_safetensors()
    write_crafted_archives()
    total = sum(p.stat().st_size for p in OUT.iterdir() if p.is_file())
    print(f"wrote fixtures to {OUT} ({total} bytes)")

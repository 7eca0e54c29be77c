#!/usr/bin/env python3
"""fuzz/seeds.py — write the generated part of the seed corpora.

fuzz/run copies the project's fixtures (tests/data, examples/, a handful of
Debian libonnx-testdata models) into fuzz/corpus/<target>/ and calls this
for the inputs no fixture provides: index files for the two scratch shards
of fuzz_index, location strings for fuzz_location, name pairs for
fuzz_names, journals in the format documented atop codec/txn/stage.c for
fuzz_journal, and edit programs for fuzz_edit_commit.  Everything is
deterministic; usage: seeds.py CORPUS_DIR (the parent of the target dirs).
"""
import json
import os
import random
import struct
import sys
import zlib

out = sys.argv[1]


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# fuzz_index: the scratch directory holds model-0000{1,2}-of-00002.safetensors
# (tensors a; b, c), sub/model-extra.safetensors (d) and traps.
S1, S2, S3 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", \
    "sub/model-extra.safetensors"
good = {"metadata": {"total_size": 21}, "weight_map": {"a": S1, "b": S2, "c": S2}}
put("fuzz_index", "good", json.dumps(good))
put("fuzz_index", "sub", json.dumps({"weight_map": {"d": S3}}))
put("fuzz_index", "one", json.dumps({"weight_map": {"a": S1}}))
for i, trap in enumerate(["link.safetensors", "abs.safetensors", "fifo.safetensors",
                          "hard.safetensors", "../x.safetensors", "/etc/hostname",
                          "sublink/model-extra.safetensors", "./" + S1, "sub//model-extra.safetensors"]):
    put("fuzz_index", "trap%d" % i, json.dumps({"weight_map": {"a": trap}}))
put("fuzz_index", "nested", '{"weight_map":{"a":"' + S1 + '"},"metadata":{"k":[[[[1]]]]}}')

# fuzz_location: spellings of the acceptable files and of every trap.
for i, s in enumerate(["ok", "sub/inner", "sub/deeper/file", "./ok", "sub//inner", "sub/./inner",
                       "lnk", "out", "up/outside", "abs", "subl/inner", "sub/back", "sub/out",
                       "hard", "hard2", "fifo", "emptydir", "emptydir/", "../outside",
                       "/etc/passwd", "sub/../ok", "", ".", "..", "sub/", "ok/", "ok\0trail"]):
    put("fuzz_location", "%02d" % i, s)

# fuzz_names: byte 0 picks max, byte 1 the cut, then two names.
for i, (mx, a, b) in enumerate([(223, b"layer.weight", b"layer%2Eweight"),
                                (0, b".", b".."), (223, b"", b"%"),
                                (100, b"a/b", b"a%2Fb"), (223, b"x" * 300, b"x" * 301),
                                (5, "é".encode() * 40, b"\x00\x01\x7f"),
                                (223, b"%~0123456789abcdef", b"%2e%2E")]):
    put("fuzz_names", "%02d" % i, bytes([mx, len(a) % 256]) + a + b)

# fuzz_journal: mode byte (bit 0 stamp identity, bit 1 fix CRCs, bit 2
# abort), then a journal.  Keys: top byte 0 tensor data, 1 dtype, 2 shape,
# 3 meta, 4 prop (txn.c).
def record(rtype, key, arg=0, payload=b"", raw=True, dlen=None, ulen=None):
    dlen = len(payload) if dlen is None else dlen
    ulen = dlen if ulen is None else ulen
    h = b"MFSR" + bytes([rtype, 1 if raw else 0]) + b"\0\0" + struct.pack(
        "<QQIII", key, arg, dlen, ulen, len(payload))
    h += struct.pack("<I", zlib.crc32(payload) if payload else 0) + b"\0" * 4
    h += struct.pack("<I", zlib.crc32(h))
    return h + payload


def journal(records):
    h = b"MFSJRNL\0" + struct.pack("<II", 1, 262144) + b"\0" * 40 + b"\0" * 4
    h += struct.pack("<I", zlib.crc32(h))
    return h + b"".join(records)


T, DT, SH, ME, PR = 0, 1 << 56, 2 << 56, 3 << 56, 4 << 56
recs = [
    [record(1, T | 0, 40), record(3, T | 0, 0, bytes(range(40)))],
    [record(1, T | 1, 4), record(2, T | 1, 8), record(3, T | 1, 0, b"\1\2\3\4\5\6\7\10")],
    [record(1, DT | 0, 0), record(4, DT | 0, 0, b"float16")],
    [record(1, SH | 0, 0), record(4, SH | 0, 0, b"5,4")],
    [record(1, PR | 0, 0), record(4, PR | 0, 0, b"Skey\0value")],
    [record(1, PR | 0, 0), record(4, PR | 0, 0, b"Tkey\0uint32\0value")],
    [record(1, ME | 0, 0), record(4, ME | 0, 0, b"me")],
    [record(1, T | 0, 40), record(3, T | 0, 0, b"\xff" * 40), record(5, T | 0), record(6, 0)],
    [record(1, 5 << 56, 0), record(3, 5 << 56, 0, b"abc"), record(1, T | 1, 4),
     record(7, T | 1, 5 << 56)],
    [record(1, T | 0, 40), record(2, T | 0, 1 << 40)],
]
for i, r in enumerate(recs):
    for mode in (3, 7):
        put("fuzz_journal", "%02d-%d" % (i, mode), bytes([mode]) + journal(r))
put("fuzz_journal", "raw", b"\0" + journal(recs[0]))

# fuzz_edit_commit: byte 0 mode, then ops (see the target's comment).
def prog(mode, ops):
    return bytes([mode]) + bytes(b for op in ops for b in op)


fix = [[9, 0], [9, 1]]
put("fuzz_edit_commit", "write", prog(0, [[0, 0, 4, 0, 8] + list(range(8)), [7]]))
put("fuzz_edit_commit", "inplace", prog(2, [[0, 1, 0, 0, 4, 1, 2, 3, 4]]))
put("fuzz_edit_commit", "dtype", prog(1, [[2, 0, 1, 0]] + fix))
put("fuzz_edit_commit", "shape", prog(0, [[3, 0, 2, 5, 2, 0]] + fix))
put("fuzz_edit_commit", "props", prog(1, [[4, 0, 0, 3, 65, 66, 67, 1], [4, 0, 1, 1, 70, 0],
                                          [6, 0, 0, 2], [5, 0, 1], [7], [8]]))
put("fuzz_edit_commit", "bad", prog(0, [[1, 0, 3, 0], [7], [9, 0]]))
rnd = random.Random(6)
for i in range(6):
    put("fuzz_edit_commit", "rand%d" % i, bytes(rnd.randrange(256) for _ in range(rnd.randrange(8, 120))))

# fuzz_gguf: small GGUF files from the tests' writer (every value type, the
# three tensor kinds of the llama test, a nested array, another alignment).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "tools"))
import gguf_write as gw  # noqa: E402

def gguf_seed(name, kvs, ts, alignment=32, raw=None):
    p = os.path.join(out, "fuzz_gguf", "seed-" + name)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    gw.write(p, kvs, ts, alignment=alignment, raw_kvs=raw)


vals = [("general.architecture", gw.STR, "llama"), ("a.u8", gw.U8, 7), ("a.i8", gw.I8, -1),
        ("a.u16", gw.U16, 9), ("a.i16", gw.I16, -9), ("a.u32", gw.U32, 1), ("a.i32", gw.I32, -3),
        ("a.f32", gw.F32, 0.5), ("a.b", gw.BOOL, True), ("a.s", gw.STR, "x\n%y"),
        ("a.u64", gw.U64, 1 << 40), ("a.i64", gw.I64, -(1 << 40)), ("a.f64", gw.F64, 0.1),
        ("a.strs", gw.ARR, (gw.STR, ["p", "", "q\tr"])), ("a.fl", gw.ARR, (gw.F32, [1.0, -2.5]))]
nested = gw.gstr("a.nest") + struct.pack("<IIQ", gw.ARR, gw.ARR, 1) + \
    gw.value(gw.ARR, (gw.I16, [1, 2]))
gguf_seed("values", vals, [("w", "f32", [8], b"\1" * 32), ("q", "q8_0", [32], b"\2" * 34),
                           ("h", "f16", [4, 2], b"\3" * 16)], raw=[nested])
gguf_seed("align64", vals[:2] + [("general.alignment", gw.U32, 64)],
          [("w", "f32", [3], b"\1" * 12), ("v", "i8", [5], b"\2" * 5)], alignment=64)
gguf_seed("split", [("split.no", gw.U16, 0), ("split.count", gw.U16, 1)], [])

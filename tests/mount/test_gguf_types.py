#!/usr/bin/python3
"""tests/mount/test_gguf_types.py — issue 15: ggml type names, and convert of GGUF.

A GGUF file made by tests/tools/gguf_write.py holds one tensor of every ggml
type llama.cpp defines (random bytes: the reader does not look inside
blocks).  Through a real mount:
  - weights/<path>/dtype shows ggml's name of each type (f32, bf16, i64,
    q4_k, iq2_xxs, tq2_0, ...), `data` its exact bytes, `shape` row-major;
  - writing the tensor's own name back to `dtype` is no edit (nothing
    staged); another ggml name, or the generic "float32" of an f32 tensor,
    is refused with EINVAL;
  - `modelfs convert` of a GGUF of the unquantized types gives a safetensors
    file that a reader written here (json header + numpy) finds equal to
    the tensors (dtype, row-major shape, bytes; props as __metadata__), and
    that the project's own mount shows alike, and as shards (--max-shard-size)
    that its sharded mount shows alike; the file with quantized types
    is refused with one line naming a quantized tensor, nothing written.
"""
import errno
import json
import os
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from mfstest import MODELFS, T, read_value  # noqa: E402
import gguf_write as gw  # noqa: E402

# ggml types (ggml.h enum ggml_type; ggml-common.h block sizes), by llama.cpp's
# type names: id, elements per block, bytes per block.
TYPES = {
    "f32": (0, 1, 4), "f16": (1, 1, 2), "q4_0": (2, 32, 18), "q4_1": (3, 32, 20),
    "q5_0": (6, 32, 22), "q5_1": (7, 32, 24), "q8_0": (8, 32, 34), "q8_1": (9, 32, 36),
    "q2_k": (10, 256, 84), "q3_k": (11, 256, 110), "q4_k": (12, 256, 144),
    "q5_k": (13, 256, 176), "q6_k": (14, 256, 210), "q8_k": (15, 256, 292),
    "iq2_xxs": (16, 256, 66), "iq2_xs": (17, 256, 74), "iq3_xxs": (18, 256, 98),
    "iq1_s": (19, 256, 50), "iq4_nl": (20, 32, 18), "iq3_s": (21, 256, 110),
    "iq2_s": (22, 256, 82), "iq4_xs": (23, 256, 136), "i8": (24, 1, 1), "i16": (25, 1, 2),
    "i32": (26, 1, 4), "i64": (27, 1, 8), "f64": (28, 1, 8), "iq1_m": (29, 256, 56),
    "bf16": (30, 1, 2), "tq1_0": (34, 256, 54), "tq2_0": (35, 256, 66),
    "mxfp4": (39, 32, 17),
}
PLAIN = {"f32": "<f4", "f16": "<f2", "f64": "<f8", "i8": "i1", "i16": "<i2", "i32": "<i4",
         "i64": "<i8", "bf16": "<u2"}
ST = {"f32": "F32", "f16": "F16", "bf16": "BF16", "f64": "F64", "i8": "I8", "i16": "I16",
      "i32": "I32", "i64": "I64"}


def rd(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


def fixture(path, names, rng):
    """One tensor per type: numpy shape (2, 256) (one or more whole blocks a row)."""
    for n, v in TYPES.items():
        gw.GGML.setdefault(n, v)
    ts = []
    for n in names:
        _, blck, bsize = TYPES[n]
        rows, cols = 2, 256
        if n in PLAIN:
            x = rng.standard_normal((rows, cols)) * 100
            data = x.astype(PLAIN[n]).tobytes() if n != "bf16" else \
                (x.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
        else:
            data = rng.integers(0, 256, rows * cols // blck * bsize, dtype=np.uint8).tobytes()
        ts.append(("t." + n, n, [cols, rows], data))
    kvs = [("general.architecture", gw.STR, "llama"), ("general.name", gw.STR, "types"),
           ("x.count", gw.U32, 7)]
    gw.write(path, kvs, ts)
    return {name: (gt, data) for name, gt, _, data in ts}


def read_safetensors(path):
    """(metadata, {name: (dtype, shape, bytes)}) of a safetensors file, by its spec."""
    raw = rd(path)
    n = struct.unpack_from("<Q", raw)[0]
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    buf = raw[8 + n:]
    return meta, {k: (e["dtype"], tuple(e["shape"]), buf[e["data_offsets"][0]:e["data_offsets"][1]])
                  for k, e in header.items()}


def write_err(path, data):
    try:
        with open(path, "wb") as f:
            f.write(data)
        return None
    except OSError as e:
        return e.errno


def tree(t, rng):
    path = os.path.join(t.tmp, "types.gguf")
    want = fixture(path, list(TYPES), rng)
    with t.mount(path) as mnt:
        w = os.path.join(mnt, "weights", "t")
        got = {n: rd(os.path.join(w, n, "dtype"), "r") for n in TYPES}
        t.eq("every ggml type shows its ggml name in dtype (%d types)" % len(TYPES),
             {n: n + "\n" for n in TYPES}, got)
        bad = [n for n in TYPES if rd(os.path.join(w, n, "data")) != want["t." + n][1] or
               rd(os.path.join(w, n, "shape"), "r") != "2,256\n"]
        t.check("every type's data is its bytes and its shape row-major", not bad, bad)
        t.eq("a dtype file's size is its text's", len("iq2_xxs\n"),
             os.stat(os.path.join(w, "iq2_xxs", "dtype")).st_size)

        t.eq("writing f32 back to an f32 tensor's dtype succeeds", None,
             write_err(os.path.join(w, "f32", "dtype"), b"f32\n"))
        t.eq("writing q8_0 back to a q8_0 tensor's dtype succeeds", None,
             write_err(os.path.join(w, "q8_0", "dtype"), b"q8_0"))
        st = rd(os.path.join(mnt, ".modelfs", "status"), "r")
        t.check("writing a tensor's own dtype name back stages nothing", "staged" not in st,
                st[:300])
        t.eq("the generic name float32 for an f32 tensor: EINVAL", errno.EINVAL,
             write_err(os.path.join(w, "f32", "dtype"), b"float32\n"))
        t.eq("another ggml type (f16 for f32): EINVAL", errno.EINVAL,
             write_err(os.path.join(w, "f32", "dtype"), b"f16\n"))
        t.eq("another ggml type (q4_0 for q8_0): EINVAL", errno.EINVAL,
             write_err(os.path.join(w, "q8_0", "dtype"), b"q4_0\n"))
        t.eq("the dtype file still reads f32", "f32\n", rd(os.path.join(w, "f32", "dtype"), "r"))
    r = subprocess.run([MODELFS, "info", path], capture_output=True, text=True)
    t.check("modelfs info names the types as the mount does",
            r.returncode == 0 and " bf16 " in r.stdout and " iq4_xs " in r.stdout and
            " float32 " not in r.stdout, r.stdout[-300:] + r.stderr)
    return path


def convert(t, rng, quantized):
    path = os.path.join(t.tmp, "plain.gguf")
    want = fixture(path, list(PLAIN), rng)
    out = os.path.join(t.tmp, "plain.safetensors")
    r = subprocess.run([MODELFS, "convert", path, out], capture_output=True, text=True)
    if not t.check("convert of a GGUF with f32 f16 bf16 f64 i8 i16 i32 i64 succeeds",
                   r.returncode == 0 and not r.stderr, r.stderr):
        return
    meta, got = read_safetensors(out)
    t.eq("the output holds every tensor", sorted(want), sorted(got))
    bad = []
    for name, (gt, data) in want.items():
        dt, shape, b = got.get(name, (None, None, None))
        if dt != ST[gt] or shape != (2, 256) or b != data:
            bad.append((name, dt, shape))
        elif gt != "bf16" and not np.array_equal(np.frombuffer(b, PLAIN[gt]),
                                                  np.frombuffer(data, PLAIN[gt])):
            bad.append((name, "values"))
    t.check("every tensor's safetensors dtype, row-major shape and bytes", not bad, bad[:3])
    t.eq("the props are the __metadata__", {"general.architecture": "llama",
                                           "general.name": "types", "x.count": "7"}, meta)
    with t.mount(out) as mnt:
        seen = {}
        for dirpath, _, files in os.walk(os.path.join(mnt, "weights")):
            if "data" in files:
                seen[read_value(os.path.join(dirpath, "name")).decode()] = \
                    rd(os.path.join(dirpath, "data"))
        t.eq("the project's safetensors mount of the output shows the same tensors",
             {k: v[1] for k, v in want.items()}, seen)

    # Sharded: 8 tensors of 512 to 4096 bytes, shards of at most 5000.
    sdir = os.path.join(t.tmp, "shards")
    os.mkdir(sdir)
    index = os.path.join(sdir, "model.safetensors.index.json")
    r = subprocess.run([MODELFS, "convert", "--max-shard-size", "5000", path, index],
                       capture_output=True, text=True)
    if t.check("convert --max-shard-size of the GGUF succeeds", r.returncode == 0 and
               not r.stderr, r.stderr):
        with open(index) as f:
            wm = json.load(f)["weight_map"]
        shards = sorted(set(wm.values()))
        t.check("the GGUF's shards: more than one, each within 5000 tensor bytes (%d)" %
                len(shards), len(shards) > 1 and all(
                    sum(len(b) for _, _, b in read_safetensors(os.path.join(sdir, s))[1].values())
                    <= 5000 for s in shards), shards)
        with t.mount(index) as mnt:
            seen = {}
            for dirpath, _, files in os.walk(os.path.join(mnt, "weights")):
                if "data" in files:
                    seen[read_value(os.path.join(dirpath, "name")).decode()] = \
                        rd(os.path.join(dirpath, "data"))
            t.eq("the sharded mount of the GGUF's shards shows the same tensors",
                 {k: v[1] for k, v in want.items()}, seen)

    bad_out = os.path.join(t.tmp, "quant.safetensors")
    r = subprocess.run([MODELFS, "convert", quantized, bad_out], capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    t.check("convert of a GGUF with a quantized tensor: refused with one line naming it",
            r.returncode != 0 and len(lines) == 1 and "'t.q4_0'" in r.stderr and
            "q4_0" in r.stderr and "quantized" in r.stderr, r.stderr)
    t.check("nothing is written when convert refuses",
            not os.path.exists(bad_out) and not [n for n in os.listdir(t.tmp) if ".tmp-" in n],
            os.listdir(t.tmp))


def main():
    t = T()
    rng = np.random.default_rng(15)
    quantized = tree(t, rng)
    convert(t, rng, quantized)
    t.done()


if __name__ == "__main__":
    main()

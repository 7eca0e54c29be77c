#!/usr/bin/python3
"""tests/mount/test_tensor_sums.py — the example program examples/tensor_sums.c.

No mount: the example uses the public API (include/modelfs/model.h) only.
Its output, one "crc32 bytes dtype shape name" line per tensor, is compared
line for line with what Python computes on its own:
  - ONNX (examples/linear.onnx, a few libonnx-testdata models with weights,
    attribute tensors and subgraphs): every TensorProto from python3-onnx,
    its bytes as numpy_helper.to_array(t).tobytes() (tests/tools/onnx_xcheck.py),
    zlib.crc32 of them; for linear.onnx also against the exported PyTorch
    weights in examples/linear.weights.npz;
  - safetensors (a file and a 2-shard index written here): the header parsed
    here from the file's bytes, each tensor's bytes sliced by data_offsets;
  - a model with one weight byte changed gives a different, still correct,
    line; a file that is no model exits 1 with one line on stderr; no
    argument exits 2.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from mfstest import BUILD, SRC, T  # noqa: E402
from onnx_xcheck import Walk, dtype_name, tensor_bytes  # noqa: E402
from test_safetensors import DTYPES, make_tensor, st_write, write_sharded  # noqa: E402

EXAMPLE = os.path.join(BUILD, "examples", "tensor_sums")
CORPUS = os.environ.get("MFS_CORPUS", "/usr/share/libonnx-testdata/data")
CORPUS_MODELS = [
    "pytorch-converted/test_Linear",               # weight and bias initializers
    "pytorch-converted/test_Conv2d",
    "pytorch-converted/test_BatchNorm2d_eval",
    "node/test_constant",                          # a tensor-valued attribute
    "node/test_constantofshape_int_zeros",         # int32 attribute tensor
    "node/test_if",                                # unnamed tensors in subgraphs
]


def line(data, dtype, dims, name):
    return "%08x\t%d\t%s\t%s\t%s" % (zlib.crc32(data), len(data), dtype,
                                     ",".join(str(d) for d in dims), name)


def expect_onnx(path):
    w = Walk(os.path.dirname(path))
    w.model(onnx.load(path))
    return [line(tensor_bytes(t, w.base_dir), dtype_name(t.data_type), t.dims, t.name)
            for _, t in w.tensors]


def expect_safetensors(path):
    """Lines for one safetensors file, from its own header."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    names = {k: v[2] for k, v in DTYPES.items()}
    out = []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        begin, end = e["data_offsets"]
        out.append(line(raw[8 + n + begin:8 + n + end], names[e["dtype"]], e["shape"], name))
    return out


def run(*args):
    return subprocess.run([EXAMPLE] + list(args), capture_output=True, text=True)


def compare(t, what, path, want):
    r = run(path)
    if r.returncode != 0:
        t.not_ok(what, "exit %d: %s" % (r.returncode, r.stderr.strip()))
        return None
    got = r.stdout.splitlines()
    # The example prints mfs_desc.tensors in the codec's walk order; the
    # comparison is of the lines themselves, every one, in any order.
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    t.check(what + ": %d tensor(s), every line as Python computes it" % len(want),
            len(want) > 0 and sorted(got) == sorted(want),
            "%d lines, %d expected; missing %s; unexpected %s" % (
                len(got), len(want), missing[:3], extra[:3]))
    return got


def main():
    t = T()
    if not os.access(EXAMPLE, os.X_OK):
        t.not_ok("example built", "no executable at " + EXAMPLE)
        t.done()

    # The bundled example, against onnx and against the exported weights.
    linear = os.path.join(SRC, "examples", "linear.onnx")
    got = compare(t, "examples/linear.onnx", linear, expect_onnx(linear))
    w = np.load(os.path.join(SRC, "examples", "linear.weights.npz"))
    t.eq("linear.onnx lines are fc.weight then fc.bias, checksums of the PyTorch weights",
         [line(w["fc_weight"].astype("<f4").tobytes(), "float32", [1, 10], "fc.weight"),
          line(w["fc_bias"].astype("<f4").tobytes(), "float32", [1], "fc.bias")], got)

    for m in CORPUS_MODELS:
        path = os.path.join(CORPUS, m, "model.onnx")
        if not os.path.exists(path):
            t.not_ok(m, "missing: " + path + " (libonnx-testdata)")
            continue
        compare(t, m, path, expect_onnx(path))

    # safetensors: one file with several dtypes, 0-d and empty tensors, metadata.
    rng = np.random.default_rng(10)
    tensors = [make_tensor(rng, "embed.weight", "F32", (6, 4)),
               make_tensor(rng, "layers.0.attn.q.weight", "BF16", (4, 4)),
               make_tensor(rng, "layers.0.norm", "F16", (4,)),
               make_tensor(rng, "steps", "I64", ()),
               make_tensor(rng, "mask", "BOOL", (3, 2)),
               make_tensor(rng, "ids", "U8", (5,)),
               make_tensor(rng, "empty", "F64", (0, 3))]
    st = os.path.join(t.tmp, "model.safetensors")
    st_write(st, tensors, {"format": "pt"})
    compare(t, "generated model.safetensors", st, expect_safetensors(st))
    d = os.path.join(t.tmp, "sharded")
    write_sharded(d, tensors[:6], n_shards=2)
    shards = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    compare(t, "generated 2-shard safetensors index", os.path.join(d, "model.safetensors.index.json"),
            sum((expect_safetensors(os.path.join(d, s)) for s in shards), []))

    # One changed weight byte changes that tensor's line, and only that one.
    changed = os.path.join(t.tmp, "changed.onnx")
    m = onnx.load(linear)
    raw = bytearray(m.graph.initializer[0].raw_data)
    raw[5] ^= 0x40
    m.graph.initializer[0].raw_data = bytes(raw)
    onnx.save(m, changed)
    got2 = compare(t, "linear.onnx with one weight byte changed", changed, expect_onnx(changed))
    if got and got2:
        t.check("the change shows in fc.weight's checksum and nowhere else",
                got2[0] != got[0] and got2[1] == got[1], "%r vs %r" % (got2, got))

    # Failures.
    bad = os.path.join(t.tmp, "not-a-model.onnx")
    with open(bad, "wb") as f:
        f.write(b"\x08\x07\x12\x05hello" * 3)
    r = run(bad)
    t.check("a file that is no model: exit 1, one line on stderr, nothing on stdout",
            r.returncode == 1 and r.stdout == "" and len(r.stderr.splitlines()) == 1 and
            r.stderr.startswith("tensor_sums: "), "exit %d, %r, %r" % (r.returncode, r.stdout, r.stderr))
    r = run()
    t.check("no argument: exit 2 and a usage line", r.returncode == 2 and "usage" in r.stderr,
            "exit %d, %r" % (r.returncode, r.stderr))
    shutil.rmtree(d, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""tests/mount/test_diff.py — issue 17: `modelfs diff A B`.

Fixtures made here with onnx.helper and a small safetensors writer (json +
numpy), compared by the real command:
  - a model against itself: exit 0, every tensor unchanged;
  - against a copy with one weight changed by 1e-3: exit 1, exactly that
    tensor, its max abs error (float64 of the float32 values) and one
    differing element; --tolerance above the error makes it exit 0; --json
    says the same;
  - against its safetensors conversion (modelfs convert): exit 0 with
    --tolerance 0 (another format, the same tensors);
  - tensors only in A / only in B, a shape change, a dtype change, a prop
    change, a NaN against a number, and bfloat16 compared by value;
  - trouble: a missing file, a corrupt one, a bad option: exit 2, one line.
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mfstest import MODELFS, T  # noqa: E402


def make_onnx(path, inits):
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y0"]), helper.make_node("Add", ["y0", "b"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(a, n) for n, a in inits.items()])
    onnx.save(helper.make_model(g), path)


def write_st(path, tensors, meta=None):
    header, off, blobs = {}, 0, []
    if meta:
        header["__metadata__"] = meta
    for name, (dt, shape, raw) in tensors.items():
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def diff(*args):
    return subprocess.run([MODELFS, "diff"] + list(args), capture_output=True, text=True)


def main():
    t = T()
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    a = os.path.join(t.tmp, "a.onnx")
    make_onnx(a, {"w": w, "b": b})

    r = diff(a, a)
    t.check("A against itself: exit 0", r.returncode == 0, r.stdout + r.stderr)
    t.eq("A against itself: 2 tensors unchanged", "2 tensors unchanged\n", r.stdout)

    w2 = w.copy()
    w2[1, 2] += np.float32(1e-3)
    c = os.path.join(t.tmp, "c.onnx")
    make_onnx(c, {"w": w2, "b": b})
    err = abs(float(w2[1, 2]) - float(w[1, 2]))
    rel = err / abs(float(w2[1, 2]))
    r = diff(a, c)
    t.eq("one weight changed by 1e-3: exit 1", 1, r.returncode)
    lines = r.stdout.splitlines()
    t.check("exactly that tensor is reported, with its error",
            len(lines) == 2 and lines[0].startswith("changed: w: max abs error ") and
            "1 of 20 elements differ" in lines[0] and lines[1] == "1 tensors unchanged",
            r.stdout)
    got = float(lines[0].split("max abs error ")[1].split(",")[0]) if lines else None
    t.eq("the max abs error is the float64 difference", err, got)
    r = diff("--json", a, c)
    try:
        j = json.loads(r.stdout)
        ch = j["changed"]
        t.check("--json: the one change, its error, relative error and count",
                r.returncode == 1 and len(ch) == 1 and ch[0]["name"] == "w" and
                ch[0]["max_abs_error"] == err and np.isclose(ch[0]["max_rel_error"], rel) and
                ch[0]["differing"] == 1 and ch[0]["count"] == 20 and j["unchanged"] == 1 and
                j["same"] is False and not j["only_in_a"] and not j["only_in_b"], r.stdout)
    except (ValueError, KeyError) as e:
        t.not_ok("--json: parses", e)
    t.eq("--tolerance 2e-3: equal, exit 0", 0, diff("--tolerance", "2e-3", a, c).returncode)
    t.eq("--tolerance 1e-5: lossy, exit 1", 1, diff("--tolerance", "1e-5", a, c).returncode)
    t.eq("--rtol 1e-2: equal, exit 0", 0, diff("--rtol", "1e-2", a, c).returncode)

    st = os.path.join(t.tmp, "a.safetensors")
    r = subprocess.run([MODELFS, "convert", a, st], capture_output=True, text=True)
    t.check("modelfs convert to safetensors", r.returncode == 0, r.stderr)
    r = diff("--tolerance", "0", a, st)
    t.check("ONNX against its safetensors conversion: exit 0 with --tolerance 0",
            r.returncode == 0 and r.stdout == "2 tensors unchanged\n", r.stdout + r.stderr)

    # Kinds of difference between two safetensors files.
    f = np.array([1.0, 2.0, np.nan, 4.0], np.float32)
    bf = (np.array([1.0, -2.0, 3.0], np.float32).view(np.uint32) >> 16).astype(np.uint16)
    bf2 = bf.copy()
    bf2[1] = (np.array([-2.5], np.float32).view(np.uint32) >> 16).astype(np.uint16)[0]
    x = os.path.join(t.tmp, "x.safetensors")
    y = os.path.join(t.tmp, "y.safetensors")
    write_st(x, {"same": ("F32", (4,), f.tobytes()), "gone": ("F32", (1,), b"\0" * 4),
                 "reshaped": ("F32", (2, 2), f.tobytes()), "retyped": ("I32", (1,), b"\0" * 4),
                 "nan": ("F32", (2,), np.array([np.nan, 1], np.float32).tobytes()),
                 "bf": ("BF16", (3,), bf.tobytes())}, {"k": "1", "only_x": "a"})
    write_st(y, {"same": ("F32", (4,), f.tobytes()), "new": ("F32", (1,), b"\0" * 4),
                 "reshaped": ("F32", (4,), f.tobytes()), "retyped": ("U32", (1,), b"\0" * 4),
                 "nan": ("F32", (2,), np.array([0, 1], np.float32).tobytes()),
                 "bf": ("BF16", (3,), bf2.tobytes())}, {"k": "2"})
    r = diff(x, y)
    out = r.stdout
    t.eq("differences: exit 1", 1, r.returncode)
    for want in ("only in A: gone (float32 [1])", "only in B: new (float32 [1])",
                 "changed: reshaped: float32 [2,2] -> float32 [4]",
                 "changed: retyped: int32 [1] -> uint32 [1]",
                 "changed: nan: max abs error inf, max rel error inf, 1 of 2 elements differ",
                 "changed: bf: max abs error 0.5, max rel error 0.20000000000000001, 1 of 3 elements differ",
                 "prop changed: k", "prop only in A: only_x", "1 tensors unchanged"):
        t.check("differences: reports '%s'" % want, want in out.splitlines(), out)
    t.check("a NaN equals a NaN ('same' holds one)", "changed: same" not in out, out)

    bad = os.path.join(t.tmp, "bad.safetensors")
    with open(bad, "wb") as fh:
        fh.write(struct.pack("<Q", 1 << 40) + b"{}")
    for what, args in (("a missing file", [a, os.path.join(t.tmp, "none.onnx")]),
                       ("a corrupt file", [bad, a]), ("a bad option", ["--tolerance", "-1", a, a]),
                       ("one model only", [a])):
        r = diff(*args)
        t.check("trouble (%s): exit 2, one line on stderr" % what,
                r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and not r.stdout,
                "exit %d: %r %r" % (r.returncode, r.stdout, r.stderr))
    t.done()


main()

#!/usr/bin/python3
"""tests/mount/test_views.py — issue 17: the computed views of a tensor.

A safetensors fixture from the small writer below (json + numpy, never
modelfs code) holds every numeric dtype, with NaN and Inf in the floats,
an empty tensor and a 0-d one.  Through a real mount:
  - weights/<t>/sha256 equals sha256sum of weights/<t>/data;
  - weights/<t>/stats equals numpy's count, min, max, mean, std (finite
    elements), NaN and Inf counts, for every dtype incl. bfloat16, float16;
  - both are read-only (EACCES on open for writing);
  - npy/<path>.npy: numpy.load (and with mmap_mode='r') equals the tensor
    with its dtype and shape for every dtype numpy has; bfloat16 has none;
  - a staged write to data changes sha256, stats and the npy view at once,
    and an abort brings the first digest back;
  - `rsync -a weights/` copies each tensor's bytes once (no .npy there).
"""
import errno
import hashlib
import json
import os
import struct
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mfstest import T  # noqa: E402


def write_st(path, tensors):
    """tensors: name -> (safetensors dtype, shape, raw bytes)."""
    header, off, blobs = {}, 0, []
    for name, (dt, shape, raw) in tensors.items():
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def bf16_bytes(a32):
    return (a32.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()


def bf16_values(a32):
    u = (a32.astype(np.float32).view(np.uint32) >> 16).astype(np.uint32) << 16
    return u.view(np.float32).astype(np.float64)


def expected_stats(v):
    v = np.asarray(v, dtype=np.float64).ravel()
    fin = v[np.isfinite(v)]
    st = {"count": v.size, "nan": int(np.isnan(v).sum()), "inf": int(np.isinf(v).sum())}
    if fin.size:
        st.update(min=fin.min(), max=fin.max(), mean=fin.mean(), std=fin.std())
    return st


def parse_stats(text):
    out = {}
    for line in text.splitlines():
        k, v = line.split(" ", 1)
        out[k] = float(v)
    return out


def stats_match(exp, got):
    for k in ("count", "nan", "inf"):
        if got.get(k) != exp[k]:
            return "%s: expected %r, got %r" % (k, exp[k], got.get(k))
    for k in ("min", "max", "mean", "std"):
        if k not in exp:
            if not np.isnan(got.get(k, 0.0)):
                return "%s: expected nan, got %r" % (k, got.get(k))
            continue
        if not np.isclose(got.get(k, np.nan), exp[k], rtol=1e-9, atol=1e-12):
            return "%s: expected %r, got %r" % (k, exp[k], got.get(k))
    return None


def main():
    t = T()
    rng = np.random.default_rng(17)
    f = rng.standard_normal(1000) * 3 + 1
    f[[3, 99]] = np.nan
    f[[5]] = np.inf
    f[[7]] = -np.inf
    tensors, values = {}, {}
    for st, npdt in (("F32", np.float32), ("F64", np.float64), ("F16", np.float16)):
        a = f.astype(npdt).reshape(10, 100)
        tensors["f." + st] = (st, a.shape, a.tobytes())
        values["f." + st] = a
    tensors["f.BF16"] = ("BF16", (1000,), bf16_bytes(f))
    values["f.BF16"] = bf16_values(f)
    for st, npdt in (("I8", np.int8), ("U8", np.uint8), ("I16", np.int16),
                     ("U16", np.uint16), ("I32", np.int32), ("U32", np.uint32),
                     ("I64", np.int64), ("U64", np.uint64)):
        info = np.iinfo(npdt)
        a = rng.integers(max(info.min, -2**40), min(info.max, 2**40), size=(4, 33),
                         dtype=npdt, endpoint=True)
        a.flat[0] = info.min if info.min > -2**53 else a.flat[0]
        tensors["i." + st] = (st, a.shape, a.tobytes())
        values["i." + st] = a
    b = rng.integers(0, 2, size=77).astype(np.bool_)
    tensors["b.BOOL"] = ("BOOL", b.shape, b.tobytes())
    values["b.BOOL"] = b
    tensors["e.empty"] = ("F32", (0, 4), b"")
    values["e.empty"] = np.zeros((0, 4), np.float32)
    tensors["z.scalar"] = ("F32", (), np.float32(2.5).tobytes())
    values["z.scalar"] = np.float32(2.5)
    model = os.path.join(t.tmp, "views.safetensors")
    write_st(model, tensors)

    with t.mount(model) as mnt:
        for name in tensors:
            d = os.path.join(mnt, "weights", *name.split("."))
            got = open(os.path.join(d, "sha256")).read()
            ref = subprocess.run(["sha256sum", os.path.join(d, "data")], capture_output=True,
                                 text=True).stdout.split()[0] + "\n"
            t.eq("%s: sha256 equals sha256sum of data" % name, ref, got)
            text = open(os.path.join(d, "stats")).read()
            why = stats_match(expected_stats(values[name]), parse_stats(text))
            t.check("%s: stats equal numpy's" % name, why is None, why)
            t.eq("%s: stat size of stats is its length" % name,
                 len(text), os.stat(os.path.join(d, "stats")).st_size)
        for name in tensors:
            p = os.path.join(mnt, "npy", *name.split(".")[:-1], name.split(".")[-1] + ".npy")
            if name == "f.BF16":
                t.check("bfloat16 has no npy view", not os.path.exists(p), p)
                continue
            want = np.asarray(values[name])
            try:
                a = np.load(p)
                m = np.load(p, mmap_mode="r")
                good = (a.dtype == want.dtype and a.shape == want.shape and
                        np.array_equal(a, want, equal_nan=a.dtype.kind == "f") and
                        np.array_equal(np.asarray(m), a, equal_nan=a.dtype.kind == "f"))
                t.check("%s: numpy.load of its npy view (and mmap_mode='r') equals it" % name,
                        good, "%s %s vs %s %s" % (a.dtype, a.shape, want.dtype, want.shape))
                del m
            except Exception as e:  # noqa: BLE001
                t.not_ok("%s: numpy.load of its npy view" % name, e)
            t.eq("%s: the npy view's size is header + data, 64-aligned header" % name, 0,
                 (os.path.getsize(p) - want.nbytes) % 64)
        dst = os.path.join(t.tmp, "rs")
        r = subprocess.run(["rsync", "-a", mnt + "/weights/", dst + "/"], capture_output=True,
                           text=True)
        copied = sum(os.path.getsize(os.path.join(b, f)) for b, _, fs in os.walk(dst)
                     for f in fs if f == "data")
        t.check("rsync -a weights/ copies every tensor once, no npy",
                r.returncode == 0 and copied == sum(len(x[2]) for x in tensors.values()) and
                not any(f.endswith(".npy") for _, _, fs in os.walk(dst) for f in fs),
                r.stderr)
        for view in ("sha256", "stats"):
            p = os.path.join(mnt, "weights", "f", "F32", view)
            try:
                os.open(p, os.O_WRONLY)
                t.not_ok("%s is read-only" % view, "opened for writing")
            except OSError as e:
                t.eq("%s is read-only (EACCES)" % view, errno.EACCES, e.errno)
        d = os.path.join(mnt, "weights", "f", "F32")
        before = open(d + "/sha256").read()
        again = open(d + "/sha256").read()
        t.eq("a second read gives the same digest", before, again)
        with open(d + "/data", "r+b") as fh:
            fh.seek(8)
            fh.write(np.float32(1e30).tobytes())
        edited = values["f.F32"].copy().ravel()
        edited[2] = np.float32(1e30)
        after = open(d + "/sha256").read()
        t.eq("a staged write changes sha256", hashlib.sha256(edited.tobytes()).hexdigest() + "\n",
             after)
        why = stats_match(expected_stats(edited), parse_stats(open(d + "/stats").read()))
        t.check("a staged write changes stats", why is None, why)
        a = np.load(os.path.join(mnt, "npy", "f", "F32.npy"))
        t.check("a staged write shows in the npy view", np.array_equal(
            a.ravel(), edited, equal_nan=True))
        with open(mnt + "/.modelfs/abort", "w") as fh:
            fh.write("1\n")
        t.eq("after abort sha256 is the first again", before, open(d + "/sha256").read())
    t.done()


main()

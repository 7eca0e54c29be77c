#!/usr/bin/python3
"""Issue 17 Deliver 2: a safetensors tensor's dtype, shape and data set to
new values of a new size through a real mount, committed with `modelfs
commit`, and the file checked by a reader written here (the 8-byte length,
the JSON header, numpy on the buffer), not by modelfs:

(a) one tensor of three grows (float32 [2,3] -> float16 [4,5]) and another
    shrinks (int64 [8] -> int32 [3]): after the commit the header is valid
    JSON, its length is a multiple of 8 and its padding is spaces, the
    tensors tile the buffer in offset order with no hole and no overlap and
    end at the end of the file, each tensor's dtype/shape is the new one
    and its bytes equal what was written; the untouched tensor keeps its
    bytes; __metadata__ is kept.
(b) a shape × dtype that does not match the data size is refused at commit
    (EINVAL, `modelfs commit` exits 1, status names the tensor), and the
    model stays byte-identical; fixing the data then commits.
"""
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from mfstest import T, read  # noqa: E402
from txnacc import commit, sha256_file, status, why  # noqa: E402

ST_NP = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def write_st(path, tensors, meta):
    """tensors: list of (name, st dtype, numpy array), stored in that order."""
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, dt, a in tensors:
        b = np.ascontiguousarray(a, dtype=ST_NP[dt]).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_st(path):
    """An independent reader: (header dict, raw header bytes, {name: array}),
    or raises ValueError naming what breaks the format's rules."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    if n % 8:
        raise ValueError("header length %d is not a multiple of 8" % n)
    hb = raw[8:8 + n]
    # The JSON ends at its last '}'; whatever follows is padding, which
    # must be spaces only (and shorter than the 8-byte alignment needs).
    text = hb[:hb.rfind(b"}") + 1]
    pad = hb[len(text):]
    if pad.strip(b" ") or len(pad) >= 8:
        raise ValueError("header padding %r is not up to 7 spaces" % pad)
    header = json.loads(text)
    buf = raw[8 + n:]
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k)
                   for k, v in header.items() if k != "__metadata__")
    pos = 0
    for a, b, k in spans:
        if a != pos:
            raise ValueError("tensor %s starts at %d, expected %d (hole or overlap)" % (k, a, pos))
        pos = b
    if pos != len(buf):
        raise ValueError("tensors end at %d, the buffer is %d bytes" % (pos, len(buf)))
    arrays = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        arr = np.frombuffer(buf[a:b], dtype=ST_NP[v["dtype"]])
        need = int(np.prod(v["shape"], dtype=np.int64))
        if arr.size != need:
            raise ValueError("tensor %s: %d elements for shape %r" % (k, arr.size, v["shape"]))
        arrays[k] = arr.reshape(v["shape"])
    return header, hb, arrays


def put(path, text):
    with open(path, "w") as f:
        f.write(text)


def main():
    t = T()
    rng = np.random.default_rng(17)
    model = os.path.join(t.tmp, "m.safetensors")
    a0 = rng.standard_normal((2, 3)).astype(np.float32)
    b0 = np.arange(8, dtype=np.int64)
    c0 = rng.standard_normal((5,)).astype(np.float32)
    write_st(model, [("a.weight", "F32", a0), ("b.idx", "I64", b0), ("c.bias", "F32", c0)],
             {"format": "pt"})

    # (a) grow one tensor, shrink another, keep the third.
    a1 = rng.standard_normal((4, 5)).astype(np.float16)
    b1 = np.array([7, -1, 3], dtype=np.int32)
    with t.mount(model) as mnt:
        wa, wb = mnt + "/weights/a/weight", mnt + "/weights/b/idx"
        try:
            put(wa + "/dtype", "float16\n")
            put(wa + "/shape", "4,5\n")
            with open(wa + "/data", "wb") as f:
                f.write(a1.tobytes())
            put(wb + "/dtype", "int32\n")
            put(wb + "/shape", "3\n")
            with open(wb + "/data", "wb") as f:
                f.write(b1.tobytes())
            t.ok("dtype, shape and data of two tensors written")
        except OSError as e:
            t.not_ok("dtype, shape and data of two tensors written", e)
        t.eq("the mount shows the staged shape", "4,5\n", read(wa + "/shape"))
        r = commit(mnt)
        t.check("modelfs commit of the resize", r.returncode == 0, why(r) + status(mnt))
        t.eq("the mount shows the committed dtype", "float16\n", read(wa + "/dtype"))
        t.eq("the mount shows the committed bytes", a1.tobytes(), read(wa + "/data", "rb"))
    try:
        header, hb, arrays = read_st(model)
        t.ok("the committed file passes the independent reader (8-byte header, "
             "space padding, no hole, no overlap, ends at the end)")
    except (ValueError, KeyError) as e:
        t.not_ok("the committed file passes the independent reader", e)
        t.done()
    t.eq("a.weight dtype and shape", ("F16", [4, 5]),
         (header["a.weight"]["dtype"], header["a.weight"]["shape"]))
    t.eq("b.idx dtype and shape", ("I32", [3]), (header["b.idx"]["dtype"], header["b.idx"]["shape"]))
    t.check("a.weight bytes are the written ones", np.array_equal(arrays["a.weight"], a1))
    t.check("b.idx bytes are the written ones", np.array_equal(arrays["b.idx"], b1))
    t.check("c.bias (untouched) keeps its bytes", np.array_equal(arrays["c.bias"], c0))
    t.eq("__metadata__ kept", {"format": "pt"}, header.get("__metadata__"))
    order = [k for k, _ in sorted(((k, v["data_offsets"][0]) for k, v in header.items()
                                   if k != "__metadata__"), key=lambda kv: kv[1])]
    t.eq("tensors keep their buffer order", ["a.weight", "b.idx", "c.bias"], order)
    t.check("the header starts with __metadata__", hb.startswith(b'{"__metadata__"'), hb[:40])
    try:
        from safetensors.numpy import load_file
        got = load_file(model)
        t.check("the safetensors library reads the committed file",
                np.array_equal(got["a.weight"], a1) and np.array_equal(got["b.idx"], b1))
    except ImportError:
        pass

    # (b) a shape that does not match the data size is refused at commit.
    before = sha256_file(model)
    with t.mount(model) as mnt:
        wc = mnt + "/weights/c/bias"
        put(wc + "/shape", "2,5\n")  # 10 elements, the data holds 5
        r = commit(mnt)
        st = status(mnt)
        t.check("a shape that contradicts the data size is refused at commit",
                r.returncode != 0, why(r))
        t.check("status names the tensor and the size mismatch",
                "c.bias" in st and "last commit: failed" in st, st)
        t.eq("the refused commit leaves the model byte-identical", before, sha256_file(model))
        c1 = rng.standard_normal((2, 5)).astype(np.float32)
        with open(wc + "/data", "wb") as f:
            f.write(c1.tobytes())
        r = commit(mnt)
        t.check("after the data is fixed the commit passes", r.returncode == 0, why(r) + st)
    try:
        header, _, arrays = read_st(model)
        t.check("c.bias is [2,5] with the new bytes", header["c.bias"]["shape"] == [2, 5]
                and np.array_equal(arrays["c.bias"], c1))
        t.check("the other tensors are kept",
                np.array_equal(arrays["a.weight"], a1) and np.array_equal(arrays["b.idx"], b1))
    except (ValueError, KeyError) as e:
        t.not_ok("the second commit passes the independent reader", e)

    t.done()


main()

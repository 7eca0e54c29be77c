"""tests/tools/packfx.py — the models the pack tests pack (test_pack.py,
test_pack_write.py), and an independent reader of a pack's seek table and
manifest (doc/pack.md, "Layout"), so that the tests do not trust modelfs to
say what it wrote."""
import json
import os
import struct

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def onnx_model(rng):
    w = rng.normal(0, 0.02, (256, 300)).astype(np.float32)
    b = rng.normal(0, 0.02, (300,)).astype(np.float32)
    k = np.arange(4000, dtype=np.int64)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
    g = helper.make_graph(nodes, "p", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 256])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 300])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
                           numpy_helper.from_array(k, "k")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def st_write(path, tensors, metadata=None):
    hdr, off, blobs = {}, 0, []
    if metadata is not None:
        hdr["__metadata__"] = metadata
    for name, (dt, shape, raw) in tensors.items():
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def bf16(x):
    return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()


def st_tensors(rng, n):
    a = rng.normal(0, 0.02, n).astype(np.float32)
    return {"a.bf16": ("BF16", [n], bf16(a)),
            "b.f32": ("F32", [n], a.tobytes()),
            "c.f16": ("F16", [n], a.astype(np.float16).tobytes()),
            "d.i32": ("I32", [n], np.arange(n, dtype=np.int32).tobytes()),
            "e.tied": ("BF16", [n], bf16(a))}      # the same bytes as a.bf16: deduped


def onnx_inline(d, rng):
    p = os.path.join(d, "model.onnx")
    os.makedirs(d)
    onnx.save(onnx_model(rng), p)
    return p


def onnx_external(d, rng):
    p = os.path.join(d, "model.onnx")
    os.makedirs(d)
    onnx.save(onnx_model(rng), p, save_as_external_data=True, location="weights.bin",
              size_threshold=0)
    os.chmod(os.path.join(d, "weights.bin"), 0o640)
    os.utime(os.path.join(d, "weights.bin"), ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    return p


def safetensors(d, rng, n=300_000):
    p = os.path.join(d, "model.safetensors")
    os.makedirs(d)
    st_write(p, st_tensors(rng, n), metadata={"format": "pt"})
    return p


def safetensors_sharded(d, rng):
    os.makedirs(d)
    wm = {}
    for i in range(2):
        name = "model-%05d-of-00002.safetensors" % (i + 1)
        ts = {("s%d." % i) + k: v for k, v in st_tensors(rng, 70_000 + i).items()}
        st_write(os.path.join(d, name), ts)
        wm.update({k: name for k in ts})
    p = os.path.join(d, "model.safetensors.index.json")
    with open(p, "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, f)
    return p


class Pack:
    """A pack's seek table and manifest, parsed here from the bytes."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.raw = raw = f.read()
        magic, ln = struct.unpack_from("<II", raw, len(raw) - 48)
        assert magic == 0x184D2A53 and ln == 40 and raw[-40:-32] == b"MFSTAIL\0", "no tail"
        s, m = struct.unpack_from("<QQ", raw, len(raw) - 24)
        magic, slen = struct.unpack_from("<II", raw, s)
        assert magic == 0x184D2A51 and raw[s + 8:s + 16] == b"MFSSEEK\0", "no seek table"
        nf, nc = struct.unpack_from("<II", raw, s + 16)
        self.files = [struct.unpack_from("<QII", raw, s + 24 + 16 * i) for i in range(nf)]
        base = s + 24 + 16 * nf
        self.chunks = []
        for i in range(nc):
            off, flen, rlen, t = struct.unpack_from("<QIIB", raw, base + 24 * i)
            self.chunks.append((off, flen, rlen, t))
        magic, mlen = struct.unpack_from("<II", raw, m)
        assert magic == 0x184D2A52, "no manifest"
        self.manifest = json.loads(raw[m + 8:m + 8 + mlen])
        self.data_end = s

    def file_chunks(self, path):
        """[(offset in the file, length, arrangement, frame bytes)] of one file."""
        i = [f["path"] for f in self.manifest["files"]].index(path)
        size, first, n = self.files[i]
        out, pos = [], 0
        for off, flen, rlen, t in self.chunks[first:first + n]:
            out.append((pos, rlen, t, self.raw[off:off + flen]))
            pos += rlen
        return out

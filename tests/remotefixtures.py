"""tests/remotefixtures.py — one model of every kind modelfs reads, written
into a directory by independent writers (onnx, torch, numpy + json, the
tests' own GGUF writer; never modelfs code), and a tree comparison for
the remote tests: a remote mount must show what a local mount shows.
"""
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "tools"))


def st_write(path, tensors, meta=None):
    """safetensors: tensors is [(name, numpy array)]."""
    hdr, off, blobs = {}, 0, []
    if meta:
        hdr["__metadata__"] = meta
    names = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
             np.dtype(np.int64): "I64", np.dtype(np.uint8): "U8"}
    for name, a in tensors:
        b = a.tobytes()
        hdr[name] = {"dtype": names[a.dtype], "shape": list(a.shape),
                     "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def make_all(d, seed=1):
    """Write every kind into d; returns {kind: file name of the model}."""
    rng = np.random.default_rng(seed)
    out = {}
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def graph():
        w = rng.standard_normal((10, 4)).astype(np.float32)
        b = rng.standard_normal((4,)).astype(np.float32)
        big = rng.standard_normal((64, 64)).astype(np.float32)
        nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]),
                 helper.make_node("Add", ["xw", "b"], ["y"])]
        g = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 4])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
                               numpy_helper.from_array(big, "unused_big")])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        return m

    onnx.save_model(graph(), os.path.join(d, "inline.onnx"))
    out["onnx inline"] = "inline.onnx"
    os.makedirs(os.path.join(d, "ext", "weights"), exist_ok=True)
    onnx.save_model(graph(), os.path.join(d, "ext", "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights/model.bin",
                    size_threshold=0)
    out["onnx external data"] = "ext/model.onnx"

    st_write(os.path.join(d, "single.safetensors"),
             [("embed.weight", rng.standard_normal((32, 16)).astype(np.float32)),
              ("layer.0.bias", rng.standard_normal((16,)).astype(np.float16)),
              ("ids", np.arange(7, dtype=np.int64))], meta={"format": "pt"})
    out["safetensors single"] = "single.safetensors"

    os.makedirs(os.path.join(d, "sharded"), exist_ok=True)
    wm = {}
    for i in range(3):
        fn = "model-%05d-of-00003.safetensors" % (i + 1)
        ts = [("layers.%d.w" % i, rng.standard_normal((8, 8)).astype(np.float32)),
              ("layers.%d.b" % i, rng.standard_normal((8,)).astype(np.float32))]
        st_write(os.path.join(d, "sharded", fn), ts)
        for n, _ in ts:
            wm[n] = fn
    with open(os.path.join(d, "sharded", "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 3 * (64 + 8) * 4}, "weight_map": wm}, f)
    out["safetensors sharded"] = "sharded/model.safetensors.index.json"

    import torch
    sd = {"fc.weight": torch.from_numpy(rng.standard_normal((6, 3)).astype(np.float32)),
          "fc.bias": torch.from_numpy(rng.standard_normal((6,)).astype(np.float32)),
          "steps": torch.tensor([3, 4, 5], dtype=torch.int64)}
    torch.save(sd, os.path.join(d, "model.pt"))
    out["torch"] = "model.pt"

    import gguf_write as gw
    gw.llama(os.path.join(d, "model.gguf"), n_layer=1)
    out["gguf"] = "model.gguf"
    return out


def tree(root):
    """{relative path: bytes} of every regular file under root, and the
    set of directories."""
    files, dirs = {}, set()
    for dp, dn, fn in os.walk(root):
        rel = os.path.relpath(dp, root)
        dirs.add(rel)
        for f in fn:
            p = os.path.join(dp, f)
            with open(p, "rb") as fh:
                files[os.path.join(rel, f)] = fh.read()
    return files, dirs


# Files that say where the model is (a path here, a URL there), or whether it
# can be written: the rest must be byte-identical.
def differs_by_place(rel):
    base = os.path.basename(rel)
    return base in ("status", "source", "path", "writable", "mode")


def compare(t, what, local_root, remote_root):
    lf, ld = tree(local_root)
    rf, rd = tree(remote_root)
    t.eq(what + ": same directories", sorted(ld), sorted(rd))
    t.eq(what + ": same files", sorted(lf), sorted(rf))
    bad = [k for k in lf if k in rf and lf[k] != rf[k] and not differs_by_place(k)]
    t.check(what + ": every file (%d, %d tensors) byte-identical" %
            (len(lf), sum(1 for k in lf if os.path.basename(k) == "data")), not bad,
            "differ: %s" % bad[:5])
    return lf

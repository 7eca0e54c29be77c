#!/usr/bin/python3
"""External data: a model saved with save_as_external_data=True mounts and
reads correctly, its data files appear at the root at their relative
locations, and ONNX Runtime loads the root model from the mount.  Locations
that are absolute, contain "..", are symlinks (final or intermediate), hard
links, FIFOs, missing, or whose offset/length leave the file make the mount
fail with one clear line and nothing mounted."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mfstest import MOUNT_MODELFS, SRC, T, is_mounted, read  # noqa: E402

ORT = os.path.join(SRC, "tests", "node", "ort_run.js")


def make_model(rng):
    w = rng.standard_normal((16, 8)).astype(np.float32)
    b = rng.standard_normal((8,)).astype(np.float32)
    k = rng.integers(-5, 5, size=(8,)).astype(np.int64)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Add", ["h", "b"], ["y"])]
    g = helper.make_graph(nodes, "ext", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])],
                          [numpy_helper.from_array(w, "layer.w"), numpy_helper.from_array(b, "layer.b"),
                           numpy_helper.from_array(k, "k")])
    g.node[0].input[1] = "layer.w"
    g.node[1].input[1] = "layer.b"
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), {"layer.w": w, "layer.b": b, "k": k}


def ort(model, x):
    spec = {"x": {"dims": list(x.shape), "type": "float32", "data": x.reshape(-1).tolist()}}
    inp = model + ".input.json"
    with open("/tmp/mfs-ort-input-%d.json" % os.getpid(), "w") as f:
        json.dump(spec, f)
        inp = f.name
    r = subprocess.run(["node", ORT, model, inp], capture_output=True, text=True)
    os.unlink(inp)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return json.loads(r.stdout)


def with_location(model_path, out_path, location, offset=None, length=None):
    """Copy of an external-data model whose first tensor points elsewhere."""
    m = onnx.load(model_path, load_external_data=False)
    t = m.graph.initializer[0]
    entries = {e.key: e.value for e in t.external_data}
    entries["location"] = location
    if offset is not None:
        entries["offset"] = str(offset)
    if length is not None:
        entries["length"] = str(length)
    del t.external_data[:]
    for k2, v in entries.items():
        t.external_data.add(key=k2, value=v)
    with open(out_path, "wb") as f:
        f.write(m.SerializeToString())


def expect_refused(t, what, model, needle):
    mnt = os.path.join(t.tmp, "refused")
    os.makedirs(mnt, exist_ok=True)
    try:
        r = subprocess.run([MOUNT_MODELFS, model, mnt], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        t.not_ok(what, "mount.modelfs hung")
        subprocess.run(["fusermount3", "-u", mnt], stderr=subprocess.DEVNULL)
        return
    lines = r.stderr.strip("\n").split("\n") if r.stderr.strip() else []
    t.check(what, r.returncode not in (0,) and r.returncode < 128 and len(lines) == 1
            and needle in lines[0] and not is_mounted(mnt),
            "rc=%d stderr=%r mounted=%s" % (r.returncode, r.stderr, is_mounted(mnt)))


def main():
    t = T()
    rng = np.random.default_rng(7)
    model, arrays = make_model(rng)
    d = os.path.join(t.tmp, "ext")
    os.makedirs(d)
    path = os.path.join(d, "model.onnx")
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    t.check("fixture uses external data", os.path.exists(os.path.join(d, "weights.bin")))
    x = rng.standard_normal((3, 16)).astype(np.float32)
    with t.mount(path) as mnt:
        t.eq("root lists the model and its data file", ["model.onnx", "weights.bin"],
             sorted(e for e in os.listdir(mnt) if e in ("model.onnx", "weights.bin")))
        t.check("root data file is byte-identical",
                read(os.path.join(mnt, "weights.bin"), "rb") == read(os.path.join(d, "weights.bin"), "rb"))
        t.check("root model file is byte-identical",
                read(os.path.join(mnt, "model.onnx"), "rb") == read(path, "rb"))
        for name, rel in (("layer.w", "layer/w"), ("layer.b", "layer/b"), ("k", "k")):
            got = np.fromfile(os.path.join(mnt, "weights", rel, "data"), dtype=arrays[name].dtype)
            t.check("external tensor %s reads correctly" % name,
                    np.array_equal(got.reshape(arrays[name].shape), arrays[name]))
        want = ort(path, x)
        got = ort(os.path.join(mnt, "model.onnx"), x)
        t.check("ONNX Runtime on the mounted external-data model equals the original",
                want == got and len(want["y"]["data"]) == 24, "%r vs %r" % (got, want))

    # A data file in a subdirectory appears there at the root.
    d2 = os.path.join(t.tmp, "ext2")
    os.makedirs(os.path.join(d2, "data"))
    p2 = os.path.join(d2, "m.onnx")
    onnx.save_model(make_model(np.random.default_rng(7))[0], p2, save_as_external_data=True,
                    all_tensors_to_one_file=True, location="data/w.bin", size_threshold=0)
    with t.mount(p2) as mnt:
        t.check("data file in a subdirectory shows at data/w.bin",
                read(os.path.join(mnt, "data", "w.bin"), "rb") == read(os.path.join(d2, "data", "w.bin"), "rb"))
        t.check("ONNX Runtime loads it from the mount", ort(os.path.join(mnt, "m.onnx"), x) == ort(p2, x))

    # Hostile locations.
    bad = os.path.join(t.tmp, "bad")
    os.makedirs(os.path.join(bad, "sub"))
    shutil.copy(os.path.join(d, "weights.bin"), os.path.join(bad, "real.bin"))
    shutil.copy(os.path.join(d, "weights.bin"), os.path.join(t.tmp, "outside.bin"))
    os.symlink("real.bin", os.path.join(bad, "link.bin"))
    os.symlink(os.path.join(bad, "sub"), os.path.join(bad, "linkdir"))
    shutil.copy(os.path.join(d, "weights.bin"), os.path.join(bad, "sub", "w.bin"))
    shutil.copy(os.path.join(d, "weights.bin"), os.path.join(bad, "hardsrc.bin"))
    os.link(os.path.join(bad, "hardsrc.bin"), os.path.join(bad, "hard.bin"))
    os.mkfifo(os.path.join(bad, "fifo.bin"))
    size = os.path.getsize(os.path.join(bad, "real.bin"))
    cases = [
        ("absolute location", os.path.join(t.tmp, "outside.bin"), {}, "absolute"),
        ("location with ..", "../outside.bin", {}, ".."),
        ("location with .. in the middle", "sub/../../outside.bin", {}, ".."),
        ("symlink location", "link.bin", {}, "symlink"),
        ("location through a symlinked directory", "linkdir/w.bin", {}, "symlink"),
        ("hard-linked data file", "hard.bin", {}, "link"),
        ("FIFO data file (must not block)", "fifo.bin", {}, "regular file"),
        ("missing data file", "nope.bin", {}, "nope.bin"),
        ("offset past the end", "real.bin", {"offset": size + 1, "length": 4}, "real.bin"),
        ("length past the end", "real.bin", {"offset": 0, "length": size + 4096}, "real.bin"),
    ]
    for i, (what, loc, kw, needle) in enumerate(cases):
        mp = os.path.join(bad, "bad%d.onnx" % i)
        with_location(path, mp, loc, **kw)
        before = read(mp, "rb")
        expect_refused(t, "refused: " + what, mp, needle)
        t.check("model untouched after refusal: " + what, read(mp, "rb") == before)
    t.done()


if __name__ == "__main__":
    main()

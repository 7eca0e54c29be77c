#!/usr/bin/python3
"""Issue 4, acceptance bullets 2 ("Edit the example classifier ...") and 3
("Two mounts of models with the same architecture ... rsync -a"), plus the
commit on unmount (doc/design.md §5.3); all through real mounts and tools:

(a) the example classifier (a copy of examples/linear.onnx): known weights
    `cp`'d onto weights/fc/weight/data and weights/fc/bias/data, `modelfs
    commit`: onnx.checker.check_model passes and ONNX Runtime (node
    tests/node/ort_run.js) returns relu(x @ W.T + b) for those weights
    (numpy).  ONNX Runtime also sees the staged weights through the mount's
    root model file before the commit.
(b) meta/doc_string changed to a longer value and a prop added (`echo v >
    meta/props/newkey`), commit: python3-onnx parses the file, doc_string and
    props are the new values, and every tensor, node, graph input/output and
    other metadata field is unchanged.
(c) two mounts of models with the same architecture and different weights
    (layers.<i>.weight/bias): `rsync -a` of one layer directory from the
    first mount into the second, commit: that layer in the second model
    equals the first's, everything else in both models is unchanged.
(d) commit on unmount (doc/design.md §5.3): an uncommitted staged edit is
    in the model when `fusermount3 -u` returns, and once the daemon exited.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from mfstest import SRC, T, read  # noqa: E402
from txnacc import (Daemon, commit, make_mlp, modelfs, mounted, sha256_file,  # noqa: E402
                    side_files, status, why)

ORT = os.path.join(SRC, "tests", "node", "ort_run.js")


def ort(t, model, x):
    spec = os.path.join(t.tmp, "input.json")
    with open(spec, "w") as f:
        json.dump({"input": {"dims": list(x.shape), "type": "float32",
                             "data": x.reshape(-1).tolist()}}, f)
    r = subprocess.run(["node", ORT, model, spec], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("ort_run.js: " + r.stderr.strip())
    return json.loads(r.stdout)


def inits(m):
    return {x.name: (x.data_type, list(x.dims), numpy_helper.to_array(x).tobytes())
            for x in m.graph.initializer}


def same_structure(a, b):
    """'' when nodes, graph inputs/outputs/value_info, opsets, ir_version and
    graph name agree, else the first difference."""
    for what in ("node", "input", "output", "value_info"):
        x, y = getattr(a.graph, what), getattr(b.graph, what)
        if [e.SerializeToString() for e in x] != [e.SerializeToString() for e in y]:
            return "graph." + what + " differs"
    if [o.SerializeToString() for o in a.opset_import] != \
            [o.SerializeToString() for o in b.opset_import]:
        return "opset_import differs"
    for f in ("ir_version", "producer_name", "producer_version", "domain", "model_version"):
        if getattr(a, f) != getattr(b, f):
            return f + " differs"
    if a.graph.name != b.graph.name:
        return "graph name differs"
    return ""


def cp_bytes(t, data, dst):
    src = os.path.join(t.tmp, "src.bin")
    with open(src, "wb") as f:
        f.write(data)
    return subprocess.run(["cp", src, dst], capture_output=True, text=True)


def part_a_b(t):
    d = os.path.join(t.tmp, "a")
    os.makedirs(d)
    path = os.path.join(d, "linear.onnx")
    shutil.copyfile(os.path.join(SRC, "examples", "linear.onnx"), path)
    orig = onnx.load(path)
    w = np.array([[0.5, -1.0, 2.0, 0.25, -0.75, 1.5, -2.0, 0.125, 3.0, -0.5]], dtype=np.float32)
    b = np.array([0.375], dtype=np.float32)
    x = np.random.default_rng(7).standard_normal((6, 10)).astype(np.float32)
    want = np.maximum(x @ w.T + b, 0).reshape(-1)
    t.check("test input gives positive and clipped outputs", (want > 0).any() and (want == 0).any())

    with mounted(path, os.path.join(t.tmp, "mnt")) as dm:
        mnt = dm.mnt
        wd = os.path.join(mnt, "weights", "fc", "weight", "data")
        bd = os.path.join(mnt, "weights", "fc", "bias", "data")
        r = cp_bytes(t, w.astype("<f4").tobytes(), wd)
        t.check("cp known weights onto weights/fc/weight/data", r.returncode == 0, r.stderr)
        r = cp_bytes(t, b.astype("<f4").tobytes(), bd)
        t.check("cp known bias onto weights/fc/bias/data", r.returncode == 0, r.stderr)
        t.eq("staged weights read back through the mount", w.astype("<f4").tobytes(),
             read(wd, "rb"))
        t.check("status lists the staged tensors", "fc.weight" in status(mnt)
                and "fc.bias" in status(mnt), status(mnt))
        r = modelfs("status", mnt)
        t.check("`modelfs status` prints .modelfs/status", r.returncode == 0 and
                r.stdout == status(mnt), why(r))
        try:
            got = ort(t, os.path.join(mnt, "linear.onnx"), x)["output"]["data"]
            t.check("ONNX Runtime on the mount's root model file sees the staged weights",
                    np.allclose(got, want, rtol=1e-5, atol=1e-6), "got %r want %r" % (got, want))
        except RuntimeError as e:
            t.not_ok("ONNX Runtime on the mount's root model file", e)
        t.eq("model file untouched while edits are staged",
             sha256_file(os.path.join(SRC, "examples", "linear.onnx")), sha256_file(path))
        r = commit(mnt)
        t.check("modelfs commit", r.returncode == 0, why(r))
        st = status(mnt)
        t.check("status after commit reports an ok commit", "last commit: ok" in st, st)
        t.eq("mount shows the committed weights", w.astype("<f4").tobytes(), read(wd, "rb"))
        after_a = sha256_file(path)
        m = onnx.load(path)
        try:
            onnx.checker.check_model(m)
            t.ok("onnx.checker.check_model passes on the committed model")
        except Exception as e:  # noqa: BLE001
            t.not_ok("onnx.checker.check_model passes on the committed model", e)
        ini = inits(m)
        t.check("committed fc.weight equals the written weights",
                ini["fc.weight"][2] == w.astype("<f4").tobytes() and ini["fc.weight"][1] == [1, 10])
        t.check("committed fc.bias equals the written bias",
                ini["fc.bias"][2] == b.astype("<f4").tobytes() and ini["fc.bias"][1] == [1])
        t.eq("nodes, inputs, outputs, metadata unchanged by the weight edit", "",
             same_structure(orig, m))
        try:
            got = ort(t, path, x)["output"]["data"]
            t.check("ONNX Runtime on the committed file returns relu(x @ W.T + b) of the new "
                    "weights", np.allclose(got, want, rtol=1e-5, atol=1e-6),
                    "got %r want %r" % (got, want))
        except RuntimeError as e:
            t.not_ok("ONNX Runtime on the committed file", e)

        # (b) metadata: a longer doc_string and a new prop.
        doc = "Linear(10,1)+ReLU classifier; weights patched by the modelfs acceptance tests " \
              "(a much longer doc_string than the empty original) " + "x" * 300
        r = subprocess.run(["sh", "-c", 'echo "$1" > "$2"', "sh", doc,
                            os.path.join(mnt, "meta", "doc_string")],
                           capture_output=True, text=True)
        t.check("echo > meta/doc_string", r.returncode == 0, r.stderr)
        r = subprocess.run(["sh", "-c", 'echo v > "$1"', "sh",
                            os.path.join(mnt, "meta", "props", "newkey")],
                           capture_output=True, text=True)
        t.check("echo v > meta/props/newkey", r.returncode == 0, r.stderr)
        t.eq("meta/doc_string reads the new value", doc + "\n",
             read(os.path.join(mnt, "meta", "doc_string")))
        t.eq("meta/props/newkey reads v", "v\n", read(os.path.join(mnt, "meta", "props", "newkey")))
        t.check("ls meta/props shows newkey", "newkey" in os.listdir(os.path.join(mnt, "meta",
                                                                                 "props")))
        r = commit(mnt)
        t.check("modelfs commit of the metadata edit", r.returncode == 0, why(r))
        m2 = onnx.load(path)
        try:
            onnx.checker.check_model(m2)
            t.ok("python3-onnx parses and checks the metadata-edited model")
        except Exception as e:  # noqa: BLE001
            t.not_ok("python3-onnx parses and checks the metadata-edited model", e)
        t.eq("doc_string is the new value", doc, m2.doc_string)
        t.eq("metadata_props is exactly [newkey=v]", [("newkey", "v")],
             [(p.key, p.value) for p in m2.metadata_props])
        t.eq("every node, input, output and other metadata field unchanged", "",
             same_structure(m, m2))
        t.check("every tensor unchanged (name, dtype, dims, bytes)", inits(m) == inits(m2))
        t.eq("graph doc_string unchanged", m.graph.doc_string, m2.graph.doc_string)
        t.eq("mount shows the committed doc_string", doc + "\n",
             read(os.path.join(mnt, "meta", "doc_string")))
        try:
            got = ort(t, path, x)["output"]["data"]
            t.check("ONNX Runtime output unchanged by the metadata edit",
                    np.allclose(got, want, rtol=1e-5, atol=1e-6))
        except RuntimeError as e:
            t.not_ok("ONNX Runtime after the metadata edit", e)
        after_b = sha256_file(path)
    t.check("weight commit changed the file", after_a != sha256_file(os.path.join(SRC, "examples",
                                                                                 "linear.onnx")))
    t.eq("unmount after commits leaves the committed file", after_b, sha256_file(path))
    t.eq("no journal/temp files left after unmount", [], side_files(d, "linear.onnx"))


def part_c(t):
    d1, d2 = os.path.join(t.tmp, "c1"), os.path.join(t.tmp, "c2")
    os.makedirs(d1)
    os.makedirs(d2)
    p1, p2 = os.path.join(d1, "mlp.onnx"), os.path.join(d2, "mlp.onnx")
    make_mlp(p1, 3, 16, seed=1)
    make_mlp(p2, 3, 16, seed=2)
    # Distinct mtimes, as two real model files have: rsync's quick check
    # must not think the layer is already there.
    st = os.stat(p2)
    os.utime(p1, (st.st_atime - 5000, st.st_mtime - 5000))
    m1, m2 = onnx.load(p1), onnx.load(p2)
    i1, i2 = inits(m1), inits(m2)
    t.check("the two models differ in every tensor", all(i1[k][2] != i2[k][2] for k in i1))
    sha1 = sha256_file(p1)
    with mounted(p1, os.path.join(t.tmp, "mnt1")) as dm1, \
            mounted(p2, os.path.join(t.tmp, "mnt2")) as dm2:
        mnt1, mnt2 = dm1.mnt, dm2.mnt
        layer = os.path.join("weights", "layers", "1")
        t.eq("layer directory holds bias and weight", ["bias", "weight"],
             sorted(os.listdir(os.path.join(mnt2, layer))))
        r = subprocess.run(["rsync", "-a", os.path.join(mnt1, layer) + "/",
                            os.path.join(mnt2, layer) + "/"], capture_output=True, text=True)
        t.check("rsync -a of weights/layers/1/ from mount 1 into mount 2", r.returncode == 0,
                "exit %d: %s" % (r.returncode, r.stderr.strip()))
        for k in ("weight", "bias"):
            t.eq("layers.1.%s data reads the first model's bytes in mount 2" % k,
                 i1["layers.1." + k][2], read(os.path.join(mnt2, layer, k, "data"), "rb"))
        left = [n for n in os.listdir(os.path.join(mnt2, layer, "weight")) +
                os.listdir(os.path.join(mnt2, layer, "bias")) if n.startswith(".")]
        t.eq("no rsync temporary files left in the layer", [], left)
        r = commit(mnt2)
        t.check("modelfs commit of mount 2", r.returncode == 0, why(r))
        st2 = status(mnt2)
        t.check("no scratch files reached the commit", "scratch" not in st2 or "scratch files: 0"
                in st2, st2)
    n2 = onnx.load(p2)
    try:
        onnx.checker.check_model(n2)
        t.ok("the second model checks after the rsync commit")
    except Exception as e:  # noqa: BLE001
        t.not_ok("the second model checks after the rsync commit", e)
    j2 = inits(n2)
    t.check("layers.1.* in the second model equal the first model's",
            all(j2["layers.1." + k] == i1["layers.1." + k] for k in ("weight", "bias")))
    others = [k for k in i2 if not k.startswith("layers.1.")]
    t.check("every other tensor of the second model unchanged (%d tensors)" % len(others),
            all(j2[k] == i2[k] for k in others) and sorted(j2) == sorted(i2))
    t.eq("nodes, inputs, outputs, metadata of the second model unchanged", "",
         same_structure(m2, n2))
    t.eq("the first model is byte-identical", sha1, sha256_file(p1))
    t.eq("no journal/temp files left beside either model", [],
         side_files(d1, "mlp.onnx") + side_files(d2, "mlp.onnx"))


def part_d(t):
    """Commit on unmount: `fusermount3 -u` commits (doc/design.md §5.3)."""
    d = os.path.join(t.tmp, "d")
    os.makedirs(d)
    path = os.path.join(d, "linear.onnx")
    shutil.copyfile(os.path.join(SRC, "examples", "linear.onnx"), path)
    w = numpy_helper.to_array(onnx.load(path).graph.initializer[0]).astype("<f4")
    w.reshape(-1)[3] = 42.0
    dm = Daemon(path, os.path.join(t.tmp, "mntd"))
    try:
        with open(os.path.join(dm.mnt, "weights", "fc", "weight", "data"), "r+b") as f:
            f.seek(12)
            f.write(np.float32(42.0).tobytes())
        r = subprocess.run(["fusermount3", "-u", dm.mnt], capture_output=True, text=True)
        t.check("fusermount3 -u with an edit staged", r.returncode == 0, r.stderr)
        # The kernel does not wait for a FUSE daemon when a mount goes away,
        # so the commit on unmount finishes after fusermount3 returns and
        # before the daemon exits (documented in mount.modelfs(8)).
    finally:
        rc = dm.stop()
    t.eq("daemon exit status after the unmount", 0, rc)
    t.check("the model holds the staged edit once the daemon has exited",
            inits(onnx.load(path))["fc.weight"][2] == w.tobytes())
    t.eq("no journal/temp files left", [], side_files(d, "linear.onnx"))


def main():
    t = T()
    for part in (part_a_b, part_c, part_d):
        try:
            part(t)
        except Exception as e:  # noqa: BLE001
            t.not_ok(part.__name__, repr(e))
    t.done()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
# mfs-test: heavy (exports a torchvision squeezenet1_1, 5 MB, at test time)
"""Issue 17 item 1, graph surgery by `mv` and `rm -r`: a value's directory (inputs/,
outputs/, values/ of the main graph) renamed within its directory renames
the value everywhere it is used; through real mounts, os.rename (what mv
calls), `modelfs commit`, python3-onnx's full checker and ONNX Runtime:

(a) a small onnx.helper model: mv inputs/x inputs/images, values/y
    values/hidden (a value_info entry and a node output), outputs/out
    outputs/probs, weights/W weights/K (an initializer: its bytes, name file
    and npy view move with it): the node inputs/outputs files and graph.dot show the new
    names at once, status lists the renames; after the commit the file is
    python's rename of the old model (every other byte of every message the
    same), check_model(full_check=True) passes and ORT, fed by the new input
    name, gives numpy's output under the new output name.
(b) refused renames: onto a name in use (the initializer W, a node output,
    an initializer onto the input) EEXIST, a component the tree's name
    escaping cannot give (and for an initializer one with a '.') EINVAL, out
    of its directory EPERM, each with nothing staged; a rename back to the
    model's name unstages, and so does modelfs abort; the model stays
    byte-identical.
(c) an If node whose branches read the main graph's input from the outer
    scope: the rename reaches inside both branches (checker and ORT pass);
    a new name that a branch defines itself is refused (EINVAL, status says
    why).
(d) kill -9 with a rename staged: the next mount shows the renamed tree
    (replayed from the journal) and commits it.
(f) rm -r of a tensor directory: refused with EBUSY while a node reads the
    tensor (in a branch too), status naming the node, the model
    byte-identical; for an unused initializer of an IR 3 model (listed as a
    graph input too) the directory and its npy view go at once, and the
    commit drops the TensorProto and the input and nothing else: the full
    checker and ORT pass.
(e) torchvision squeezenet1_1: input, output and features.0.weight
    (weights/features/0/weight -> kernel) renamed, input and output given a symbolic
    batch in one commit; the file is python's edit of the export, the full
    checker passes and ORT fed a batch of 2 by the new name gives torch's
    logits.
"""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from mfstest import MOUNT_MODELFS, SRC, T, daemon_pids, read, umount  # noqa: E402
from txnacc import abort, commit, sha256_file, status, why  # noqa: E402

ORT = os.path.join(SRC, "tests", "node", "ort_run.js")


def ort(t, model, feeds):
    spec = os.path.join(t.tmp, "input.json")
    with open(spec, "w") as f:
        json.dump({k: {"dims": list(v.shape), "type": "float32",
                       "data": v.reshape(-1).tolist()} for k, v in feeds.items()}, f)
    r = subprocess.run(["node", ORT, model, spec], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("ort_run.js: " + r.stderr.strip())
    return {k: np.array(v["data"], dtype=np.float32).reshape(v["dims"])
            for k, v in json.loads(r.stdout).items()}


def full_check(t, what, path):
    try:
        onnx.checker.check_model(onnx.load(path), full_check=True)
        t.ok(what)
    except Exception as e:  # noqa: BLE001 - any checker failure is the finding
        t.not_ok(what, e)


def renamed(path, names):
    """The model at `path` with python renaming the values of `names`
    everywhere (main graph and subgraphs), serialized."""
    m = onnx.load(path)

    def walk(g):
        for v in list(g.input) + list(g.output) + list(g.value_info):
            v.name = names.get(v.name, v.name)
        for i in g.initializer:
            i.name = names.get(i.name, i.name)
        for nd in g.node:
            nd.input[:] = [names.get(s, s) for s in nd.input]
            nd.output[:] = [names.get(s, s) for s in nd.output]
            for a in nd.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
    walk(m.graph)
    return m.SerializeToString()


def rename_errno(src, dst):
    try:
        os.rename(src, dst)
    except OSError as e:
        return e.errno
    return 0


def small_model(path):
    W = np.random.default_rng(17).standard_normal((4, 3)).astype(np.float32)
    g = helper.make_graph([
        helper.make_node("Gemm", ["x", "W"], ["y"], name="gemm", transB=1),
        helper.make_node("Relu", ["y"], ["out"], name="relu"),
    ], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(W, "W")],
        value_info=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)
    return W


def part_a(t):
    model = os.path.join(t.tmp, "small.onnx")
    W = small_model(model)
    names = {"x": "images", "y": "hidden", "out": "probs", "W": "K"}
    want_bytes = renamed(model, names)
    with t.mount(model) as mnt:
        t.check("inputs/ is writable (mv renames in it)",
                os.stat(mnt + "/inputs").st_mode & 0o200 != 0)
        try:
            os.rename(mnt + "/inputs/x", mnt + "/inputs/images")
            os.rename(mnt + "/values/y", mnt + "/values/hidden")
            os.rename(mnt + "/outputs/out", mnt + "/outputs/probs")
            os.rename(mnt + "/weights/W", mnt + "/weights/K")
            t.ok("mv of an input, a value_info entry, an output and an initializer")
        except OSError as e:
            t.not_ok("mv of an input, a value_info entry, an output and an initializer", e)
        t.eq("inputs/ shows the new name", ["images"], os.listdir(mnt + "/inputs"))
        t.eq("the renamed input's files are there", "N,3\n", read(mnt + "/inputs/images/shape"))
        t.eq("the renamed initializer's name file", "K\n", read(mnt + "/weights/K/name"))
        t.check("its bytes and npy view moved with it", np.array_equal(
            np.fromfile(mnt + "/weights/K/data", np.float32).reshape(4, 3), W) and
            os.path.exists(mnt + "/npy/K.npy") and not os.path.exists(mnt + "/npy/W.npy"))
        t.eq("the Gemm node reads the new input and initializer names", "images\nK\n",
             read(mnt + "/nodes/0000-Gemm/inputs"))
        t.eq("the Gemm node writes the new value name", "hidden\n",
             read(mnt + "/nodes/0000-Gemm/outputs"))
        t.eq("the Relu node reads and writes the new names", ("hidden\n", "probs\n"),
             (read(mnt + "/nodes/0001-Relu/inputs"), read(mnt + "/nodes/0001-Relu/outputs")))
        dot = read(mnt + "/meta/graph.dot")
        t.check("graph.dot shows the new names", "images" in dot and "probs" in dot
                and '"x"' not in dot, dot[:400])
        st = status(mnt)
        t.check("status lists the four renames", "staged tensor weights W renamed to K\n" in st
                and
                "staged graph input 'x' renamed to images\n" in st and
                "staged value 'y' renamed to hidden\n" in st and
                "staged graph output 'out' renamed to probs\n" in st, st)
        try:
            got = ort(t, os.path.join(mnt, "small.onnx"),
                      {"images": np.ones((1, 3), np.float32)})
            t.check("before the commit ORT runs the mount's root file by the new names",
                    list(got) == ["probs"], list(got))
        except RuntimeError as e:
            t.not_ok("before the commit ORT runs the mount's root file", e)
        r = commit(mnt)
        t.check("modelfs commit of the renames", r.returncode == 0, why(r) + status(mnt))
        t.eq("after the commit the tree shows the committed names", ["hidden"],
             os.listdir(mnt + "/values"))
    full_check(t, "check_model(full_check=True) passes after the renames", model)
    with open(model, "rb") as f:
        got_bytes = f.read()
    t.check("the file is the old model with the names changed and nothing else",
            got_bytes == want_bytes, "%d vs %d bytes" % (len(got_bytes), len(want_bytes)))
    x = np.random.default_rng(3).standard_normal((5, 3)).astype(np.float32)
    try:
        got = ort(t, model, {"images": x})
        t.check("ORT fed by 'images' gives numpy's relu(x W^T) as 'probs'",
                "probs" in got and np.allclose(got["probs"], np.maximum(x @ W.T, 0), atol=1e-5),
                list(got))
    except RuntimeError as e:
        t.not_ok("ORT fed by the new input name", e)


def part_b(t):
    model = os.path.join(t.tmp, "refuse.onnx")
    small_model(model)
    before = sha256_file(model)
    with t.mount(model) as mnt:
        t.eq("a rename onto the initializer's name: EEXIST", errno.EEXIST,
             rename_errno(mnt + "/inputs/x", mnt + "/inputs/W"))
        t.check("status says the name is in use", "last refused write: 'W' is already a value "
                "name of the graph" in status(mnt), status(mnt))
        t.eq("a rename onto a node output's name: EEXIST", errno.EEXIST,
             rename_errno(mnt + "/outputs/out", mnt + "/outputs/y"))
        t.eq("a rename onto another listed value: EEXIST", errno.EEXIST,
             rename_errno(mnt + "/values/y", mnt + "/values/x"))
        t.eq("a component the name escaping never makes (%zz): EINVAL", errno.EINVAL,
             rename_errno(mnt + "/inputs/x", mnt + "/inputs/a%zz"))
        t.eq("the empty name (a component of '%'): EINVAL", errno.EINVAL,
             rename_errno(mnt + "/inputs/x", mnt + "/inputs/%"))
        t.eq("a value moved to another directory: EPERM", errno.EPERM,
             rename_errno(mnt + "/inputs/x", mnt + "/outputs/x2"))
        t.check("nothing is staged after refused renames", "staged " not in status(mnt),
                status(mnt))
        os.rename(mnt + "/inputs/x", mnt + "/inputs/tmp")
        os.rename(mnt + "/inputs/tmp", mnt + "/inputs/x")
        t.check("a rename back to the model's name unstages it", "staged " not in status(mnt),
                status(mnt))
        t.eq("and the tree shows the old name", "x\nW\n", read(mnt + "/nodes/0000-Gemm/inputs"))
        os.rename(mnt + "/inputs/x", mnt + "/inputs/z")
        abort(mnt)
        t.check("modelfs abort drops a staged rename and the tree shows the old name again",
                os.listdir(mnt + "/inputs") == ["x"] and "staged " not in status(mnt),
                status(mnt))
        t.eq("an initializer renamed onto the input's name: EEXIST", errno.EEXIST,
             rename_errno(mnt + "/weights/W", mnt + "/weights/x"))
        t.eq("an initializer's new component with a '.' (a path the tree would split): "
             "EINVAL", errno.EINVAL, rename_errno(mnt + "/weights/W", mnt + "/weights/a.b"))
    t.eq("refused renames leave the model byte-identical", before, sha256_file(model))


def if_model(path):
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    then_g = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["t"], name="tm")],
                               "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT,
                                                                          [2])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"], name="en")],
                               "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT,
                                                                          [2])])
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    g = helper.make_graph([
        helper.make_node("ReduceSum", ["x"], ["s"], name="sum", keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["c"], name="gt"),
        helper.make_node("If", ["c"], ["y"], name="if", then_branch=then_g, else_branch=else_g),
    ], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [zero, two])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)


def part_c(t):
    model = os.path.join(t.tmp, "if.onnx")
    if_model(model)
    want_bytes = renamed(model, {"x": "inp"})
    before = sha256_file(model)
    with t.mount(model) as mnt:
        e = rename_errno(mnt + "/inputs/x", mnt + "/inputs/t")
        t.eq("a new name that a branch defines itself: EINVAL", errno.EINVAL, e)
        t.check("status says the branch defines it", "is defined inside a subgraph"
                in status(mnt), status(mnt))
        r = rm_r(mnt + "/weights/two")
        t.check("rm -r of an initializer that only a branch reads (outer scope) fails",
                r.returncode != 0 and "busy" in r.stderr.lower(), r.stderr)
        t.check("status names the branch's node", "tensor 'two' is read by node 'tm' (Mul)"
                in status(mnt), status(mnt))
        try:
            os.rename(mnt + "/inputs/x", mnt + "/inputs/inp")
            t.ok("mv inputs/x inputs/inp (read inside both branches)")
        except OSError as e:
            t.not_ok("mv inputs/x inputs/inp", e)
        br = mnt + "/nodes/0002-If/attrs/"
        t.eq("the then branch's node reads the new name", "inp\ntwo\n",
             read(br + "then_branch/nodes/0000-Mul/inputs"))
        t.eq("the else branch's node reads the new name", "inp\n",
             read(br + "else_branch/nodes/0000-Neg/inputs"))
        r = commit(mnt)
        t.check("commit of the rename", r.returncode == 0, why(r) + status(mnt))
    t.check("the model changed", before != sha256_file(model))
    with open(model, "rb") as f:
        t.check("the file is python's rename of the old model, subgraphs included",
                f.read() == want_bytes)
    full_check(t, "check_model(full_check=True) passes with the If node", model)
    for x, want in ((np.array([1.0, 2.0], np.float32), np.array([2.0, 4.0], np.float32)),
                    (np.array([-1.0, -2.0], np.float32), np.array([1.0, 2.0], np.float32))):
        try:
            got = ort(t, model, {"inp": x})["y"]
            t.check("ORT fed by 'inp' takes the %s branch" % ("then" if x[0] > 0 else "else"),
                    np.allclose(got, want), got)
        except RuntimeError as e:
            t.not_ok("ORT on the renamed If model", e)


def part_d(t):
    model = os.path.join(t.tmp, "crash.onnx")
    small_model(model)
    before = sha256_file(model)
    mnt = os.path.join(t.tmp, "mnt.crash")
    os.mkdir(mnt)
    r = subprocess.run([MOUNT_MODELFS, model, mnt], capture_output=True, text=True, timeout=60)
    if r.returncode:
        t.not_ok("mount for the crash test", r.stderr)
        return
    try:
        os.rename(mnt + "/inputs/x", mnt + "/inputs/images")
    finally:
        for pid in daemon_pids(mnt):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
        umount(mnt)
    t.eq("kill -9 with a staged rename leaves the model as it was", before, sha256_file(model))
    with t.mount(model) as mnt2:
        t.eq("the next mount shows the replayed rename", ["images"], os.listdir(mnt2 + "/inputs"))
        t.eq("and the node reads it", "images\nW\n", read(mnt2 + "/nodes/0000-Gemm/inputs"))
        r = commit(mnt2)
        t.check("and commits it", r.returncode == 0, why(r) + status(mnt2))
    t.eq("the recovered rename is in the model", "images", onnx.load(model).graph.input[0].name)
    full_check(t, "check_model(full_check=True) passes after the recovered rename", model)


def part_e(t):
    import torch
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.squeezenet1_1(weights=None).eval()
    model = os.path.join(t.tmp, "squeezenet.onnx")
    with torch.no_grad():
        torch.onnx.export(net, torch.zeros(1, 3, 224, 224), model, input_names=["x"],
                          output_names=["logits"], opset_version=13)
    want = onnx.ModelProto()
    want.ParseFromString(renamed(model, {"x": "images", "logits": "scores",
                                         "features.0.weight": "features.0.kernel"}))
    want.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    want.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    want_bytes = want.SerializeToString()
    with t.mount(model) as mnt:
        try:
            os.rename(mnt + "/inputs/x", mnt + "/inputs/images")
            os.rename(mnt + "/outputs/logits", mnt + "/outputs/scores")
            os.rename(mnt + "/weights/features/0/weight", mnt + "/weights/features/0/kernel")
            t.ok("mv of the exported input, output and first conv's weight")
        except OSError as e:
            t.not_ok("mv of the exported input, output and first conv's weight", e)
        try:
            with open(mnt + "/inputs/images/shape", "w") as f:
                f.write("N,3,224,224\n")
            with open(mnt + "/outputs/scores/shape", "w") as f:
                f.write("N,1000\n")
            t.ok("and a symbolic batch on the renamed input and output, in the same commit")
        except OSError as e:
            t.not_ok("a symbolic batch on the renamed input and output", e)
        reads = [read(mnt + "/nodes/" + n + "/inputs").split("\n")
                 for n in os.listdir(mnt + "/nodes")]
        t.check("a node reads 'images' and none reads 'x'",
                any("images" in r for r in reads) and not any("x" in r for r in reads))
        r = commit(mnt)
        t.check("commit of the renames", r.returncode == 0, why(r) + status(mnt))
    full_check(t, "check_model(full_check=True) passes on the renamed squeezenet", model)
    with open(model, "rb") as f:
        t.check("the file is python's rename and reshape of the export", f.read() == want_bytes)
    x = np.random.default_rng(5).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    try:
        got = ort(t, model, {"images": x})["scores"]
        err = float(np.max(np.abs(got - want)))
        t.check("ORT fed a batch of 2 by 'images' gives torch's logits as 'scores' "
                "(max err %.2g)" % err,
                got.shape == want.shape and err < 1e-3, err)
    except (RuntimeError, KeyError) as e:
        t.not_ok("ORT on the renamed squeezenet", e)


def ir3_model(path):
    """IR 3: every initializer is also a graph input; 'extra.bias' is read by
    no node."""
    W = np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("W", TensorProto.FLOAT, [3, 4]),
         helper.make_tensor_value_info("extra.bias", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.array([5.0, 6.0], np.float32), "extra.bias"),
         numpy_helper.from_array(W, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 8)], ir_version=3)
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)
    return W


def without(path, name):
    """The model at `path` without initializer `name` and its graph input."""
    m = onnx.load(path)
    keep = [i for i in m.graph.initializer if i.name != name]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    keep = [i for i in m.graph.input if i.name != name]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    return m.SerializeToString()


def rm_r(path):
    return subprocess.run(["rm", "-r", path], capture_output=True, text=True, timeout=60)


def part_f(t):
    """rm -r of a tensor directory deletes an initializer no node reads."""
    model = os.path.join(t.tmp, "ir3.onnx")
    W = ir3_model(model)
    want_bytes = without(model, "extra.bias")
    before = sha256_file(model)
    with t.mount(model) as mnt:
        r = rm_r(mnt + "/weights/W")
        t.check("rm -r of an initializer a node reads fails", r.returncode != 0, r.stderr)
        t.check("with EBUSY", "busy" in r.stderr.lower(), r.stderr)
        st = status(mnt)
        t.check("status names the node that reads it",
                "last refused write: tensor 'W' is read by node 'mm' (MatMul)" in st, st)
        t.check("and nothing is staged", "staged " not in st, st)
        t.check("its files are all still there",
                sorted(os.listdir(mnt + "/weights/W")) ==
                ["data", "dtype", "name", "sha256", "shape", "stats"])
    t.eq("the refused rm -r leaves the model byte-identical", before, sha256_file(model))
    with t.mount(model) as mnt:
        t.check("npy/ has the unused tensor's view", os.path.exists(mnt + "/npy/extra/bias.npy"))
        r = rm_r(mnt + "/weights/extra")
        t.check("rm -r weights/extra (the tensor extra.bias, unused) succeeds",
                r.returncode == 0, r.stderr)
        t.check("its directory is gone from the tree",
                not os.path.exists(mnt + "/weights/extra/bias"))
        t.check("and its npy view", not os.path.exists(mnt + "/npy/extra/bias.npy"))
        t.check("status lists the deletion",
                "staged tensor weights extra.bias deleted\n" in status(mnt), status(mnt))
        t.check("W is untouched", np.array_equal(
            np.fromfile(mnt + "/weights/W/data", np.float32).reshape(3, 4), W))
        r = commit(mnt)
        t.check("commit of the deletion", r.returncode == 0, why(r) + status(mnt))
        t.eq("after the commit weights/ holds W alone", ["W"], os.listdir(mnt + "/weights"))
    full_check(t, "check_model(full_check=True) passes after the deletion", model)
    with open(model, "rb") as f:
        t.check("the file is the old model without the TensorProto and its graph input",
                f.read() == want_bytes)
    x = np.random.default_rng(9).standard_normal((2, 3)).astype(np.float32)
    try:
        got = ort(t, model, {"x": x})["y"]
        t.check("ORT runs the model without the deleted tensor", np.allclose(got, x @ W, atol=1e-5))
    except RuntimeError as e:
        t.not_ok("ORT runs the model without the deleted tensor", e)


def main():
    t = T()
    part_a(t)
    part_b(t)
    part_c(t)
    part_d(t)
    part_f(t)
    part_e(t)
    t.done()


main()

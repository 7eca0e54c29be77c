#!/usr/bin/python3
# mfs-test: heavy (exports a torchvision resnet18, 45 MB, at test time)
"""Issue 17 Deliver 1, graph field edits, through real mounts, `echo` and
`modelfs commit`, checked with python3-onnx's full checker, ONNX Runtime
(tests/node/ort_run.js), numpy and torch:

(a) a small onnx.helper model: Gemm alpha, LeakyRelu alpha, a Transpose
    perm (INTS) together with the output's shape, a node's name: after the
    commit check_model(full_check=True) passes and ORT gives numpy's output
    for the new attribute values; the file is the old one but for those
    fields (every other node, initializer and value is unchanged).
(b) every scalar and list kind (INT FLOAT STRING INTS FLOATS STRINGS) of a
    custom-domain node round-trips: what is written is what onnx.load reads.
(c) refused writes: a non-number in an INT, a fraction in an INT, a float
    past float32, a negative or spaced dim in a shape, a second line in a
    scalar: EINVAL at once, a `last refused write` line in status, nothing
    staged, and the model byte-identical after the unmount.
(d) a staged field survives kill -9 of the daemon (the journal is replayed
    at the next mount) and commits then.
(f) doc_string of a node and of a graph input committed; a graph output
    that is an initializer: a shape contradicting the tensor's bytes is
    refused at commit, the model byte-identical, the reason in status.
(g) an If node's subgraphs: their attributes, names and shapes stay
    read-only (EACCES); the If node's own name commits, subgraphs intact.
(e) torchvision resnet18 exported with a fixed batch of 1: ORT refuses a
    batch of 3; `echo N,3,224,224 > inputs/<x>/shape` and `echo N,1000 >
    outputs/<y>/shape`, commit: the full checker passes, and ORT runs
    batches of 3 and 2 giving torch's outputs for them.
"""
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
from txnacc import commit, sha256_file, status, why  # noqa: E402

ORT = os.path.join(SRC, "tests", "node", "ort_run.js")


def ort(t, model, feeds):
    spec = os.path.join(t.tmp, "input.json")
    with open(spec, "w") as f:
        json.dump({k: {"dims": list(v.shape), "type": "float32",
                       "data": v.reshape(-1).tolist()} for k, v in feeds.items()}, f)
    r = subprocess.run(["node", ORT, model, spec], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("ort_run.js: " + r.stderr.strip())
    return {k: np.array(v["data"], dtype=np.float32).reshape(v["dims"])
            for k, v in json.loads(r.stdout).items()}


def put(path, text):
    """Write `text` as a shell's echo does: one write(2)."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def refused(path, text):
    try:
        put(path, text)
    except OSError as e:
        return e.errno
    return 0


def full_check(t, what, path):
    try:
        onnx.checker.check_model(onnx.load(path), full_check=True)
        t.ok(what)
        return True
    except Exception as e:  # noqa: BLE001 - any checker failure is the finding
        t.not_ok(what, e)
        return False


def small_model(path):
    rng = np.random.default_rng(17)
    W = rng.standard_normal((4, 3)).astype(np.float32)
    g = helper.make_graph([
        helper.make_node("Gemm", ["x", "W"], ["y"], name="gemm", alpha=1.0, transB=1),
        helper.make_node("LeakyRelu", ["y"], ["z"], name="lrelu", alpha=0.1),
        helper.make_node("Transpose", ["z"], ["out"], name="tr", perm=[0, 1]),
    ], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(W, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)
    return W


def part_a(t):
    model = os.path.join(t.tmp, "small.onnx")
    W = small_model(model)
    with t.mount(model) as mnt:
        n = mnt + "/nodes/"
        try:
            put(n + "0000-Gemm/attrs/alpha", "2.5\n")
            put(n + "0001-LeakyRelu/attrs/alpha", "0.25\n")
            put(n + "0002-Transpose/attrs/perm", "1\n0\n")
            put(mnt + "/outputs/out/shape", "4,N\n")
            put(n + "0001-LeakyRelu/name", "leaky\n")
            t.ok("attributes, a name and an output shape written with one write each")
        except OSError as e:
            t.not_ok("attributes, a name and an output shape written", e)
        t.eq("the mount shows the staged perm", "1\n0\n", read(n + "0002-Transpose/attrs/perm"))
        t.eq("the mount shows the staged alpha", "2.5\n", read(n + "0000-Gemm/attrs/alpha"))
        st = status(mnt)
        t.check("status lists the staged graph fields",
                "staged node 0 (Gemm) attribute alpha: 2.5\n" in st and
                "staged node 2 (Transpose) attribute perm: 1%0A0\n" in st and
                "staged node 1 (LeakyRelu) name leaky\n" in st and
                "staged graph output 'out' shape 4,N\n" in st and st.count("staged ") == 5, st)
        r = commit(mnt)
        t.check("modelfs commit of the graph edits", r.returncode == 0, why(r) + status(mnt))
        t.eq("after the commit the mount shows the committed name", "leaky\n",
             read(n + "0001-LeakyRelu/name"))
    full_check(t, "check_model(full_check=True) passes on the edited small model", model)
    m = onnx.load(model)
    a = {(nd.name, at.name): helper.get_attribute_value(at) for nd in m.graph.node
         for at in nd.attribute}
    t.eq("Gemm alpha is 2.5", 2.5, a[("gemm", "alpha")])
    t.eq("LeakyRelu alpha is 0.25 and the node is named leaky", 0.25, a[("leaky", "alpha")])
    t.eq("Transpose perm is [1, 0]", [1, 0], a[("tr", "perm")])
    t.eq("transB is kept", 1, a[("gemm", "transB")])
    t.eq("the output's shape is [4, N]", [4, "N"],
         [d.dim_value or d.dim_param for d in m.graph.output[0].type.tensor_type.shape.dim])
    t.check("the initializer is unchanged",
            np.array_equal(numpy_helper.to_array(m.graph.initializer[0]), W))
    x = np.random.default_rng(3).standard_normal((5, 3)).astype(np.float32)
    y = 2.5 * (x @ W.T)
    want = np.where(y > 0, y, 0.25 * y).T
    try:
        got = ort(t, model, {"x": x})["out"]
        t.check("ONNX Runtime on the edited model gives numpy's output for the new attributes",
                got.shape == want.shape and np.allclose(got, want, atol=1e-5),
                "%r vs %r" % (got.shape, want.shape))
    except RuntimeError as e:
        t.not_ok("ONNX Runtime on the edited model", e)


def part_b(t):
    model = os.path.join(t.tmp, "kinds.onnx")
    node = helper.make_node("Thing", ["x"], ["y"], name="thing", domain="my.domain",
                            i=3, f=0.5, s="abc", ints=[1, 2, 3], floats=[1.5, -2.0],
                            strings=["p", "q"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid("my.domain", 1)])
    onnx.save(m, model)
    order = [at.name for at in onnx.load(model).graph.node[0].attribute]
    with t.mount(model) as mnt:
        d = mnt + "/nodes/0000-Thing/attrs/"
        try:
            put(d + "i", "-7\n")
            put(d + "f", "1e-3\n")
            put(d + "s", "new value%0Awith a line break\n")
            put(d + "ints", "10,20\n")
            put(d + "floats", "0.125\n3\n-1e10\n")
            put(d + "strings", "\n%25x\nthird\n")
            t.ok("every scalar and list kind written")
        except OSError as e:
            t.not_ok("every scalar and list kind written", e)
        r = commit(mnt)
        t.check("commit of every kind", r.returncode == 0, why(r) + status(mnt))
    m = onnx.load(model)
    a = {at.name: helper.get_attribute_value(at) for at in m.graph.node[0].attribute}
    t.eq("INT", -7, a["i"])
    t.check("FLOAT", abs(a["f"] - 1e-3) < 1e-9, a["f"])
    t.eq("STRING (escapes decoded)", b"new value\nwith a line break", a["s"])
    t.eq("INTS (comma-separated)", [10, 20], a["ints"])
    t.eq("FLOATS", [0.125, 3.0, -1e10], [float(np.float32(v)) for v in a["floats"]])
    t.eq("STRINGS (an empty one, an escape)", [b"", b"%x", b"third"], a["strings"])
    t.eq("attribute order kept", order, [at.name for at in m.graph.node[0].attribute])


def part_c(t):
    model = os.path.join(t.tmp, "small2.onnx")
    small_model(model)
    before = sha256_file(model)
    with t.mount(model) as mnt:
        n = mnt + "/nodes/"
        cases = [("0000-Gemm/attrs/transB", "abc\n", "a word in an INT"),
                 ("0000-Gemm/attrs/transB", "1.5\n", "a fraction in an INT"),
                 ("0000-Gemm/attrs/alpha", "1e40\n", "a float past float32"),
                 ("0000-Gemm/attrs/alpha", "1\n2\n", "two lines in a FLOAT"),
                 ("../inputs/x/shape", "-1,3\n", "a negative dim"),
                 ("../inputs/x/shape", "a b,3\n", "a dim with a space"),
                 ("../inputs/x/dtype", "float99\n", "an unknown dtype")]
        for rel, text, what in cases:
            e = refused(n + rel, text)
            t.eq("EINVAL for %s" % what, 22, e)
        st = status(mnt)
        t.check("status has the last refused write's reason", "last refused write: " in st
                and "dtype" in st, st)
        t.check("nothing is staged after refused writes", "staged " not in st, st)
        e = refused(mnt + "/nodes/0000-Gemm/op_type", "Conv\n")
        t.check("op_type stays read-only", e in (13, 1), e)
        e = refused(mnt + "/weights/W/name", "x\n")
        t.check("a tensor's name file is read-only (rsync -a copies name files)", e in (13, 1), e)
    t.eq("refused writes leave the model byte-identical", before, sha256_file(model))


def part_d(t):
    model = os.path.join(t.tmp, "crash.onnx")
    small_model(model)
    before = sha256_file(model)
    mnt = os.path.join(t.tmp, "mnt.crash")
    os.mkdir(mnt)
    r = subprocess.run([MOUNT_MODELFS, model, mnt], capture_output=True, text=True)
    if r.returncode:
        t.not_ok("mount for the crash test", r.stderr)
        return
    put(mnt + "/nodes/0001-LeakyRelu/attrs/alpha", "0.75\n")
    for pid in daemon_pids(mnt):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    umount(mnt)
    t.eq("kill -9 with a staged field leaves the model as it was", before, sha256_file(model))
    with t.mount(model) as mnt2:
        t.eq("the next mount offers the staged attribute", "0.75\n",
             read(mnt2 + "/nodes/0001-LeakyRelu/attrs/alpha"))
        r = commit(mnt2)
        t.check("and commits it", r.returncode == 0, why(r) + status(mnt2))
    m = onnx.load(model)
    t.check("the recovered value is in the model",
            abs(helper.get_attribute_value(m.graph.node[1].attribute[0]) - 0.75) < 1e-7)


def part_f(t):
    """doc_string files of a node and of a graph input; a graph output that
    is an initializer keeps the tensor's shape (refused at commit)."""
    model = os.path.join(t.tmp, "docs.onnx")
    W = np.arange(6, dtype=np.float32).reshape(2, 3)
    node = helper.make_node("Relu", ["x"], ["y"], name="r", doc_string="old node doc")
    xi = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2], doc_string="old input doc")
    g = helper.make_graph([node], "g", [xi],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2]),
                           helper.make_tensor_value_info("W", TensorProto.FLOAT, [2, 3])],
                          [numpy_helper.from_array(W, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, model)
    with t.mount(model) as mnt:
        try:
            put(mnt + "/nodes/0000-Relu/doc_string", "new node doc\nsecond line\n")
            put(mnt + "/inputs/x/doc_string", "new input doc\n")
            t.ok("doc_string of a node and of an input written")
        except OSError as e:
            t.not_ok("doc_string of a node and of an input written", e)
        t.eq("the node's doc_string reads back escaped", "new node doc%0Asecond line\n",
             read(mnt + "/nodes/0000-Relu/doc_string"))
        r = commit(mnt)
        t.check("commit of the doc_strings", r.returncode == 0, why(r) + status(mnt))
        before = sha256_file(model)
        put(mnt + "/outputs/W/shape", "3,2\n")
        r = commit(mnt)
        st = status(mnt)
        t.check("an output shape that contradicts its initializer's bytes is refused at commit",
                r.returncode != 0 and "contradicts the initializer" in st, why(r) + st)
        t.eq("the refused commit leaves the model byte-identical", before, sha256_file(model))
        put(mnt + "/outputs/W/shape", "2,3\n")
        t.check("setting it back unstages it", "staged " not in status(mnt), status(mnt))
    m = onnx.load(model)
    t.eq("node doc_string committed", "new node doc\nsecond line", m.graph.node[0].doc_string)
    t.eq("input doc_string committed", "new input doc", m.graph.input[0].doc_string)
    t.eq("input type kept beside the new doc_string", [2],
         [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim])
    full_check(t, "check_model(full_check=True) passes after the doc_string edits", model)


def part_g(t):
    """Only the main graph's fields are writable: a subgraph's stay read-only."""
    model = os.path.join(t.tmp, "if.onnx")
    def branch(name, alpha):
        return helper.make_graph(
            [helper.make_node("LeakyRelu", ["x"], [name], name=name + "_n", alpha=alpha)],
            name, [], [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2])])
    node = helper.make_node("If", ["c"], ["y"], name="if", then_branch=branch("t", 0.1),
                            else_branch=branch("e", 0.2))
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                                        helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, model)
    before = sha256_file(model)
    with t.mount(model) as mnt:
        sub = mnt + "/nodes/0000-If/attrs/then_branch/nodes/0000-LeakyRelu/"
        t.check("a subgraph node's attribute is read-only",
                refused(sub + "attrs/alpha", "0.5\n") in (13, 1))
        t.check("a subgraph node's name is read-only", refused(sub + "name", "z\n") in (13, 1))
        t.check("a subgraph's output shape is read-only", refused(
            mnt + "/nodes/0000-If/attrs/then_branch/outputs/t/shape", "3\n") in (13, 1))
        t.check("the main graph's If node name is writable",
                refused(mnt + "/nodes/0000-If/name", "branch\n") == 0)
        r = commit(mnt)
        t.check("commit of the If node's name", r.returncode == 0, why(r) + status(mnt))
    m = onnx.load(model)
    a = {at.name: helper.get_attribute_value(at) for at in m.graph.node[0].attribute}
    t.eq("the If node is renamed, its subgraphs kept", ("branch", 0.1, 0.2),
         (m.graph.node[0].name,
          round(helper.get_attribute_value(a["then_branch"].node[0].attribute[0]), 6),
          round(helper.get_attribute_value(a["else_branch"].node[0].attribute[0]), 6)))
    full_check(t, "check_model(full_check=True) passes after renaming the If node", model)
    t.check("the model changed only by the commit", before != sha256_file(model))


def part_e(t):
    import torch
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    model = os.path.join(t.tmp, "resnet18.onnx")
    with torch.no_grad():
        torch.onnx.export(net, torch.zeros(1, 3, 224, 224), model, input_names=["x"],
                          output_names=["logits"], opset_version=13)
    x3 = np.random.default_rng(5).standard_normal((3, 3, 224, 224)).astype(np.float32)
    try:
        ort(t, model, {"x": x3})
        t.not_ok("ONNX Runtime refuses a batch of 3 for the fixed-batch export")
    except RuntimeError:
        t.ok("ONNX Runtime refuses a batch of 3 for the fixed-batch export")
    with t.mount(model) as mnt:
        t.eq("the exported input shape", "1,3,224,224\n", read(mnt + "/inputs/x/shape"))
        try:
            put(mnt + "/inputs/x/shape", "N,3,224,224\n")
            put(mnt + "/outputs/logits/shape", "N,1000\n")
            t.ok("batch dim set to N on the input and the output")
        except OSError as e:
            t.not_ok("batch dim set to N", e)
        try:
            got = ort(t, os.path.join(mnt, "resnet18.onnx"), {"x": x3})["logits"]
            t.eq("before the commit ONNX Runtime runs a batch of 3 from the mount's root "
                 "file (the staged graph)", (3, 1000), got.shape)
        except RuntimeError as e:
            t.not_ok("before the commit ONNX Runtime runs a batch of 3 from the mount", e)
        r = commit(mnt)
        t.check("commit of the batch edit", r.returncode == 0, why(r) + status(mnt))
    full_check(t, "check_model(full_check=True) passes on the edited resnet18", model)
    with torch.no_grad():
        want3 = net(torch.from_numpy(x3)).numpy()
        x2 = x3[:2].copy()
        want2 = net(torch.from_numpy(x2)).numpy()
    for x, want, what in ((x3, want3, "3"), (x2, want2, "2")):
        try:
            got = ort(t, model, {"x": x})["logits"]
            err = float(np.max(np.abs(got - want)))
            t.check("ONNX Runtime runs a batch of %s and gives torch's logits (max err %.2g)"
                    % (what, err), got.shape == want.shape and err < 1e-3, err)
        except RuntimeError as e:
            t.not_ok("ONNX Runtime runs a batch of %s" % what, e)


def main():
    t = T()
    part_a(t)
    part_b(t)
    part_c(t)
    part_d(t)
    part_f(t)
    part_g(t)
    part_e(t)
    t.done()


main()

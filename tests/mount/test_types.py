#!/usr/bin/python3
"""Edits that break the graph (doc/design.md §5.4): a dtype edit that
contradicts the type the graph declares for the tensor (a graph input or
value_info of its name) is refused at commit with one line naming the
tensor and the declared type, and staged as a "type conflict" in status;
with -o force_types it is committed, and ONNX Runtime (onnxruntime-node,
tests/node) and python3-onnx's full check then refuse the model, which is
what the refusal prevented.
A dtype edit that a node's other inputs contradict (the graph declares
nothing) is a "type warning" and commits; ONNX Runtime refuses that model
too.  A dtype edit nothing contradicts (the input of a Cast) is neither,
and the model still runs.  The check goes through the format (codec/onnx/
types.c): the transaction never asks which format a model is."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mfstest import MODELFS, SRC, T, read  # noqa: E402

ORT = os.path.join(SRC, "tests", "node", "ort_run.js")


def gemm_model(path, declare):
    """input[5,10] x fc.weight[1,10]^T + fc.bias[1]; with `declare`, the
    initializers are graph inputs too (the pre-IR-4 form), which declares
    their types."""
    w = numpy_helper.from_array(np.full((1, 10), 0.5, np.float32), "fc.weight")
    b = numpy_helper.from_array(np.array([0.25], np.float32), "fc.bias")
    node = helper.make_node("Gemm", ["input", "fc.weight", "fc.bias"], ["out"], transB=1)
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [5, 10])]
    values = []
    if declare == "inputs":
        inputs += [helper.make_tensor_value_info("fc.weight", TensorProto.FLOAT, [1, 10]),
                   helper.make_tensor_value_info("fc.bias", TensorProto.FLOAT, [1])]
    elif declare == "value_info":
        values = [helper.make_tensor_value_info("fc.bias", TensorProto.FLOAT, [1])]
    g = helper.make_graph([node], "g", inputs,
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [5, 1])],
                          initializer=[w, b], value_info=values)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.save(m, path)


def cast_model(path):
    """out = Cast(c, to=float) + input: c is free to take any dtype."""
    c = numpy_helper.from_array(np.array([2.0], np.float32), "c")
    n1 = helper.make_node("Cast", ["c"], ["cf"], to=TensorProto.FLOAT)
    n2 = helper.make_node("Add", ["input", "cf"], ["out"])
    g = helper.make_graph([n1, n2], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, [5, 10])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [5, 10])],
                          initializer=[c])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.save(m, path)


def ort(t, model):
    """(exit status, stderr or outputs) of ONNX Runtime on a zero input."""
    spec = os.path.join(t.tmp, "input.json")
    with open(spec, "w") as f:
        json.dump({"input": {"dims": [5, 10], "type": "float32", "data": [1.0] * 50}}, f)
    r = subprocess.run(["node", ORT, model, spec], capture_output=True, text=True)
    return r.returncode, (r.stderr.strip() if r.returncode else json.loads(r.stdout))


def checker(path):
    """What python3-onnx's full check says of a model ("" when it passes)."""
    try:
        onnx.checker.check_model(onnx.load(path), full_check=True)
        return ""
    except Exception as e:  # noqa: BLE001 — ValidationError or InferenceError
        return "Inferred elem type differs from existing elem type" if \
            "Inferred elem type differs from existing elem type" in str(e) else str(e)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def retype(mnt, tensor, dtype, data):
    d = os.path.join(mnt, "weights", *tensor.split("."))
    with open(os.path.join(d, "dtype"), "w") as f:
        f.write(dtype + "\n")
    with open(os.path.join(d, "data"), "wb") as f:
        f.write(data)


def status(mnt):
    return read(os.path.join(mnt, ".modelfs", "status"))


def commit(mnt):
    return subprocess.run([MODELFS, "commit", mnt], capture_output=True, text=True)


def main():
    t = T()
    half = np.array([0.25], np.float16).tobytes()

    for declare in ("inputs", "value_info"):
        model = os.path.join(t.tmp, "declared-%s.onnx" % declare)
        gemm_model(model, declare)
        rc, out = ort(t, model)
        t.check("[%s] ONNX Runtime runs the original" % declare, rc == 0, out)
        t.eq("[%s] the onnx checker passes it" % declare, "", checker(model))
        before = sha(model)
        what = "graph input" if declare == "inputs" else "value_info"

        # Refused: one line naming the tensor and the declared type.
        with t.mount(model) as mnt:
            retype(mnt, "fc.bias", "float16", half)
            st = status(mnt)
            t.check("[%s] status: a type conflict, staged" % declare,
                    "type conflict: tensor 'fc.bias': dtype float16 contradicts the graph, "
                    "which declares it float32 (%s 'fc.bias')" % what in st, st)
            r = commit(mnt)
            t.check("[%s] the commit is refused with one line naming the tensor and the "
                    "declared type" % declare,
                    r.returncode == 1 and r.stderr.count("\n") == 1 and "'fc.bias'" in r.stderr
                    and "declares it float32" in r.stderr and "force_types" in r.stderr,
                    r.stderr)
            t.check("[%s] the edit stays staged" % declare,
                    "staged tensor weights fc.bias dtype float16" in status(mnt), status(mnt))
            subprocess.run([MODELFS, "abort", mnt], capture_output=True)
        t.eq("[%s] the model is untouched" % declare, before, sha(model))

        # Forced: committed; ONNX Runtime then refuses the model.
        forced = os.path.join(t.tmp, "forced-%s.onnx" % declare)
        shutil.copy(model, forced)
        with t.mount(forced, "-o", "force_types") as mnt:
            retype(mnt, "fc.bias", "float16", half)
            t.check("[%s] forced: status still says what a commit writes" % declare,
                    "(force_types: a commit writes it)" in status(mnt), status(mnt))
            r = commit(mnt)
            t.check("[%s] forced: the commit succeeds" % declare, r.returncode == 0, r.stderr)
            st = status(mnt)
            t.check("[%s] forced: status keeps the warning" % declare,
                    "last commit's type warning: forced (force_types): tensor 'fc.bias'" in st,
                    st)
        b = [x for x in onnx.load(forced).graph.initializer if x.name == "fc.bias"][0]
        t.eq("[%s] forced: the committed bias is float16" % declare, TensorProto.FLOAT16,
             b.data_type)
        rc, out = ort(t, forced)
        t.check("[%s] ONNX Runtime refuses the forced model (the refusal was right)" % declare,
                rc != 0, out)
        t.eq("[%s] the onnx checker refuses it too" % declare,
             "Inferred elem type differs from existing elem type", checker(forced))

    # Undeclared (torch's export): a node's other inputs contradict it: a warning.
    model = os.path.join(t.tmp, "undeclared.onnx")
    gemm_model(model, None)
    with t.mount(model) as mnt:
        retype(mnt, "fc.bias", "float16", half)
        st = status(mnt)
        t.check("undeclared: status warns, naming the node and the input",
                "type warning: tensor 'fc.bias': dtype float16, but node 0000-Gemm also reads "
                "'input' of float32, the tensor's old dtype" in st, st)
        t.check("undeclared: no type conflict", "type conflict" not in st, st)
        # Retyping every input of the node alike leaves only the declared input.
        retype(mnt, "fc.weight", "float16", np.full((1, 10), 0.5, np.float16).tobytes())
        st = status(mnt)
        t.check("undeclared: a peer retyped alike does not count; 'input' still does",
                st.count("type warning:") == 2 and "reads 'fc.weight'" not in st, st)
        subprocess.run([MODELFS, "abort", mnt], capture_output=True)
        retype(mnt, "fc.bias", "float16", half)
        r = commit(mnt)
        t.check("undeclared: the commit is not refused", r.returncode == 0, r.stderr)
        t.check("undeclared: status keeps the warning",
                "last commit's type warning: tensor 'fc.bias'" in status(mnt), status(mnt))
    rc, out = ort(t, model)
    t.check("ONNX Runtime refuses that model too (the warning was right)", rc != 0, out)

    # Nothing contradicts it: no line, and the model runs.
    model = os.path.join(t.tmp, "cast.onnx")
    cast_model(model)
    with t.mount(model) as mnt:
        retype(mnt, "c", "float16", np.array([2.0], np.float16).tobytes())
        st = status(mnt)
        t.check("cast: no type line", "type conflict" not in st and "type warning" not in st, st)
        r = commit(mnt)
        t.check("cast: the commit succeeds", r.returncode == 0, r.stderr)
    rc, out = ort(t, model)
    t.check("cast: ONNX Runtime runs the retyped model", rc == 0, out)
    if rc == 0:
        t.check("cast: its output is input + 2", np.allclose(out["out"]["data"], 3.0), out)
    t.done()


if __name__ == "__main__":
    main()

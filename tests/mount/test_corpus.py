#!/usr/bin/python3
"""Every model of the libonnx-testdata corpus mounts, and what the mount
shows agrees with python3-onnx: each tensor's data (initializers, sparse
initializers, tensor-valued attributes, in subgraphs too) equals
numpy_helper.to_array(t).tobytes(), dtype and shape agree, and the node list,
op types and graph inputs/outputs agree."""
import glob
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mfstest import T, encode_component, node_dir_names, read, read_value, tensor_dirs  # noqa: E402

CORPUS = os.environ.get("MFS_CORPUS", "/usr/share/libonnx-testdata/data")
DTYPE = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
         8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
         14: "complex64", 15: "complex128", 16: "bfloat16"}


def expected_bytes(t):
    if t.data_type == onnx.TensorProto.STRING:
        return b"".join(bytes(s) + b"\n" for s in t.string_data)
    if t.data_type == onnx.TensorProto.BFLOAT16:
        # numpy_helper widens bfloat16 to float32; the mount shows the raw
        # 16-bit patterns, which are the top halves of those float32 values.
        a = numpy_helper.to_array(t).astype(np.float32).reshape(-1)
        return (a.view(np.uint32) >> 16).astype("<u2").tobytes()
    return numpy_helper.to_array(t).tobytes()


class Stats:
    models = tensors = nodes = attrs = graphs = 0


def check_tensor(problems, d, t, where):
    Stats.tensors += 1
    want = expected_bytes(t)
    got = read(os.path.join(d, "data"), "rb")
    if got != want:
        problems.append("%s: data differs (%d vs %d bytes)" % (where, len(got), len(want)))
    dt = read(os.path.join(d, "dtype")).rstrip("\n")
    if dt != DTYPE.get(t.data_type, "?"):
        problems.append("%s: dtype %r, expected %r" % (where, dt, DTYPE.get(t.data_type)))
    shape = read(os.path.join(d, "shape")).rstrip("\n")
    if shape != ",".join(str(x) for x in t.dims):
        problems.append("%s: shape %r, expected %r" % (where, shape, list(t.dims)))
    name = read_value(os.path.join(d, "name"))
    if name != t.name.encode():
        problems.append("%s: name %r, expected %r" % (where, name, t.name))


def check_graph(problems, g, d, where):
    Stats.graphs += 1
    nodes = sorted(os.listdir(os.path.join(d, "nodes")))
    want = node_dir_names(g.node)
    if nodes != sorted(want):
        problems.append("%s: nodes/ %r, expected %r" % (where, nodes[:5], want[:5]))
        return
    inits = {t.name for t in g.initializer}
    want_in = sorted(encode_component(i.name) for i in g.input if i.name not in inits)
    got_in = sorted(os.listdir(os.path.join(d, "inputs")))
    if got_in != want_in:
        problems.append("%s: inputs/ %r, expected %r" % (where, got_in, want_in))
    want_out = sorted(encode_component(o.name) for o in g.output)
    got_out = sorted(os.listdir(os.path.join(d, "outputs")))
    if got_out != want_out:
        problems.append("%s: outputs/ %r, expected %r" % (where, got_out, want_out))

    # Initializers: found through their `name` files, wherever the path
    # mapping put them.
    by_name = {}
    wdir = os.path.join(d, "weights")
    for td in tensor_dirs(wdir) if os.path.isdir(wdir) else []:
        rel = os.path.relpath(td, wdir).split(os.sep)
        if rel[-1] in ("values", "indices"):
            continue        # parts of a sparse initializer, checked below
        by_name[read_value(os.path.join(td, "name")).decode()] = td
    for t in g.initializer:
        if t.name not in by_name:
            problems.append("%s: initializer %r not under weights/" % (where, t.name))
            continue
        check_tensor(problems, by_name.pop(t.name), t, where + "/init " + t.name)
    for s in g.sparse_initializer:
        sd = by_name.pop(s.values.name, None)
        if sd is None:
            problems.append("%s: sparse initializer %r not found" % (where, s.values.name))
            continue
        check_tensor(problems, os.path.join(sd, "values"), s.values, where + "/sparse values")
        check_tensor(problems, os.path.join(sd, "indices"), s.indices, where + "/sparse indices")
    if by_name:
        problems.append("%s: unexpected weights %r" % (where, sorted(by_name)[:3]))

    for nd, n in zip(want, g.node):
        Stats.nodes += 1
        ndir = os.path.join(d, "nodes", nd)
        if read(os.path.join(ndir, "op_type")) != n.op_type + "\n":
            problems.append("%s: op_type of %s" % (where, nd))
        want_lines = "".join(x + "\n" for x in n.input)
        if read(os.path.join(ndir, "inputs")) != want_lines:
            problems.append("%s: inputs of %s" % (where, nd))
        want_lines = "".join(x + "\n" for x in n.output)
        if read(os.path.join(ndir, "outputs")) != want_lines:
            problems.append("%s: outputs of %s" % (where, nd))
        for a in n.attribute:
            Stats.attrs += 1
            adir = os.path.join(ndir, "attrs", encode_component(a.name))
            aw = "%s/%s/%s" % (where, nd, a.name)
            if a.type == onnx.AttributeProto.TENSOR:
                check_tensor(problems, adir, a.t, aw)
            elif a.type == onnx.AttributeProto.TENSORS:
                for k, t in enumerate(a.tensors):
                    check_tensor(problems, os.path.join(adir, str(k)), t, aw + "/%d" % k)
            elif a.type == onnx.AttributeProto.GRAPH:
                check_graph(problems, a.g, adir, aw)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for k, sg in enumerate(a.graphs):
                    check_graph(problems, sg, os.path.join(adir, str(k)), aw + "/%d" % k)
            elif a.type == onnx.AttributeProto.INT:
                if read(adir) != "%d\n" % a.i:
                    problems.append("%s: INT value" % aw)
            elif a.type == onnx.AttributeProto.INTS:
                if read(adir) != "".join("%d\n" % v for v in a.ints):
                    problems.append("%s: INTS value" % aw)
            elif a.type == onnx.AttributeProto.FLOAT:
                got = read(adir)
                if np.float32(float(got)) != np.float32(a.f) and not np.isnan(a.f):
                    problems.append("%s: FLOAT value %r vs %r" % (aw, got, a.f))
            elif a.type == onnx.AttributeProto.STRING:
                if read(adir, "rb") != a.s + b"\n":
                    problems.append("%s: STRING value" % aw)


def main():
    t = T()
    models = sorted(glob.glob(os.path.join(CORPUS, "**", "*.onnx"), recursive=True))
    # The sanitizer pass of tests/run takes every Nth model (the normal pass
    # takes them all): the daemon runs 5-10x slower under ASan.
    step = int(os.environ.get("MFS_CORPUS_STEP", "1"))
    all_models, models = models, models[::step]
    t.check("corpus present (%d models under %s; %d taken)" % (len(all_models), CORPUS, len(models)),
            len(all_models) > 1000)
    failed_mount = []
    bad = []
    for path in models:
        rel = os.path.relpath(path, CORPUS)
        try:
            m = onnx.load(path)
        except Exception as e:  # noqa: BLE001
            bad.append("%s: python3-onnx cannot load it: %s" % (rel, e))
            continue
        try:
            with t.mount(path) as mnt:
                Stats.models += 1
                problems = []
                check_graph(problems, m.graph, mnt, rel)
                with open(path, "rb") as f:
                    if read(os.path.join(mnt, os.path.basename(path)), "rb") != f.read():
                        problems.append("%s: root model file differs" % rel)
                opset = "".join("%s %d\n" % (o.domain or "ai.onnx", o.version) for o in m.opset_import)
                if read(os.path.join(mnt, "meta", "opset")) != opset:
                    problems.append("%s: meta/opset" % rel)
                if read(os.path.join(mnt, "meta", "ir_version")) != "%d\n" % m.ir_version:
                    problems.append("%s: meta/ir_version" % rel)
                bad.extend(problems)
        except Exception as e:  # noqa: BLE001
            failed_mount.append("%s: %s" % (rel, e))
    t.check("every corpus model mounts (%d of %d)" % (len(models) - len(failed_mount), len(models)),
            not failed_mount, "; ".join(failed_mount[:5]))
    t.check("mount agrees with python3-onnx: %d models, %d graphs, %d nodes, %d attributes, "
            "%d tensors compared" % (Stats.models, Stats.graphs, Stats.nodes, Stats.attrs, Stats.tensors),
            not bad, "%d problems: %s" % (len(bad), "; ".join(bad[:8])))
    t.check("tensors were compared", Stats.tensors > 300 // step, "only %d" % Stats.tensors)
    t.done()


if __name__ == "__main__":
    main()

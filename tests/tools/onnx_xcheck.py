#!/usr/bin/python3
"""tests/tools/onnx_xcheck.py — compare the ONNX codec with python3-onnx.

For every model (default: all of /usr/share/libonnx-testdata/data), run the
hidden `modelfs dump-tensors` and `modelfs dump-nodes` subcommands and compare
them with what python3-onnx sees:

  * every tensor (initializers, sparse initializers, tensor-valued attributes,
    in subgraphs, functions and training graphs), in walk order: name, dtype,
    dims, byte count, and an FNV-1a 64 digest of the bytes the codec serves,
    against onnx.numpy_helper.to_array(t).tobytes();
  * every graph's input and output names, every node's op_type, domain,
    inputs and outputs, and the node and tensor counts.

Usage: onnx_xcheck.py [--modelfs PATH] [--synthetic] [MODEL_OR_DIR ...]
--synthetic also builds small models that cover every storage form (typed
fields, strings, sparse, subgraphs, functions, training_info, external data).
Prints one line per mismatch and a summary; exits 1 if anything differs.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

# mfs_dtype_name() (codec/dtype.c), by ONNX data_type number.
DTYPE_NAMES = [
    "undefined", "float32", "uint8", "int8", "uint16", "int16", "int32", "int64", "string",
    "bool", "float16", "float64", "uint32", "uint64", "complex64", "complex128", "bfloat16",
    "float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz", "uint4", "int4",
    "float4e2m1", "float8e8m0", "uint2", "int2",
]


def dtype_name(n):
    return DTYPE_NAMES[n] if 0 <= n < len(DTYPE_NAMES) else "dtype%d" % n


def escape_bytes(s):
    """The escaping of text values (doc/design.md §3.5), as bytes: '%',
    controls and DEL as %XX."""
    if isinstance(s, str):
        s = s.encode("utf-8", "surrogateescape")
    out = bytearray()
    for c in s:
        if c == 0x25 or c < 0x20 or c == 0x7F:
            out += b"%%%02X" % c
        else:
            out.append(c)
    return bytes(out)


def escape(s):
    """escape_bytes() as text: what put_escaped() in tools/modelfs.c prints."""
    return escape_bytes(s).decode("utf-8", "replace")


FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK = (1 << 64) - 1


def fnv1a64(data):
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK
    return "%016x" % h


def tensor_bytes(t, base_dir):
    """numpy_helper.to_array(t).tobytes(), in the form modelfs serves."""
    if t.data_type == TensorProto.STRING:
        # One element per line, each escaped (doc/design.md §3.5).
        return b"".join(escape_bytes(x) + b"\n" for x in t.string_data)
    if t.data_type in (TensorProto.COMPLEX64, TensorProto.COMPLEX128) and \
            not t.HasField("raw_data") and t.data_location != TensorProto.EXTERNAL:
        # onnx 1.12's to_array() cannot convert typed complex fields (it
        # casts the complex values to the float storage type); the
        # interleaved (re, im) pairs are exactly numpy's complex layout.
        if t.data_type == TensorProto.COMPLEX64:
            return np.asarray(t.float_data, dtype="<f4").tobytes()
        return np.asarray(t.double_data, dtype="<f8").tobytes()
    arr = numpy_helper.to_array(t, base_dir)
    if t.data_type == TensorProto.BFLOAT16:
        # onnx 1.12 widens bfloat16 to float32; modelfs shows the 16-bit
        # pattern, which is exactly the upper half.
        bits = np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32) >> 16
        return bits.astype("<u2").tobytes()
    return np.ascontiguousarray(arr).tobytes()


class Walk:
    def __init__(self, base_dir):
        self.base_dir = base_dir
        self.tensors = []       # (where, TensorProto)
        self.graph_lines = []
        self.n_nodes = 0

    def tensor(self, where, t):
        self.tensors.append((where, t))

    def sparse(self, where, s):
        self.tensor(where, s.values)
        self.tensor(where, s.indices)

    def attr_values(self, a):
        """(tensors, sparse, graphs) the codec keeps for attribute `a`."""
        A = onnx.AttributeProto
        if a.type == A.TENSOR:
            return [a.t], [], []
        if a.type == A.TENSORS:
            return list(a.tensors), [], []
        if a.type == A.SPARSE_TENSOR:
            return [], [a.sparse_tensor], []
        if a.type == A.SPARSE_TENSORS:
            return [], list(a.sparse_tensors), []
        if a.type == A.GRAPH:
            return [], [], [a.g]
        if a.type == A.GRAPHS:
            return [], [], list(a.graphs)
        return [], [], []

    def attrs(self, attrs):
        for a in attrs:
            ts, ss, gs = self.attr_values(a)
            for t in ts:
                self.tensor("attr", t)
            for s in ss:
                self.sparse("attr", s)
            for g in gs:
                self.graph(g)

    def graph(self, g):
        for t in g.initializer:
            self.tensor("weight", t)
        for s in g.sparse_initializer:
            self.sparse("sparse", s)
        for n in g.node:
            self.n_nodes += 1
            self.attrs(n.attribute)

    def node_lines(self, g, depth):
        self.graph_lines.append("graph\t%d\t%s\t%s\t%s" % (
            depth, escape(g.name), ",".join(escape(v.name) for v in g.input),
            ",".join(escape(v.name) for v in g.output)))
        for n in g.node:
            self.graph_lines.append("node\t%d\t%s\t%s\t%s\t%s" % (
                depth, escape(n.op_type), escape(n.domain),
                ",".join(escape(x) for x in n.input), ",".join(escape(x) for x in n.output)))
            for a in n.attribute:
                for sub in self.attr_values(a)[2]:
                    self.node_lines(sub, depth + 1)

    def model(self, m):
        self.graph(m.graph)
        for f in m.functions:
            for n in f.node:
                self.n_nodes += 1
                self.attrs(n.attribute)
        for tr in m.training_info:
            if tr.HasField("initialization"):
                self.graph(tr.initialization)
            if tr.HasField("algorithm"):
                self.graph(tr.algorithm)
        self.node_lines(m.graph, 0)


def make_synthetic(outdir):
    """Small models covering what the test corpus lacks: every typed field
    (int32_data narrowing with negatives, float16/bfloat16 bit patterns,
    uint64_data for uint32/uint64, double_data, complex), string tensors,
    sparse initializers, nested subgraphs, local functions, training_info
    and external data.  Returns the model paths."""
    from onnx import helper
    T = TensorProto
    rng = np.random.default_rng(7)
    inits = [
        helper.make_tensor("i8", T.INT8, [5], [-128, -1, 0, 1, 127]),
        helper.make_tensor("u8", T.UINT8, [3], [0, 7, 255]),
        helper.make_tensor("i16", T.INT16, [3], [-32768, -2, 32767]),
        helper.make_tensor("u16", T.UINT16, [2], [0, 65535]),
        helper.make_tensor("i32", T.INT32, [2, 2], [-2147483648, -1, 0, 2147483647]),
        helper.make_tensor("i64", T.INT64, [3], [-(1 << 63), -1, (1 << 63) - 1]),
        helper.make_tensor("u32", T.UINT32, [2], [0, 4294967295]),
        helper.make_tensor("u64", T.UINT64, [2], [1, (1 << 64) - 1]),
        helper.make_tensor("b", T.BOOL, [4], [True, False, True, True]),
        helper.make_tensor("f16", T.FLOAT16, [3], np.array([1.5, -2.0, 65504], np.float16)),
        helper.make_tensor("bf16", T.BFLOAT16, [3], [1.0, -3.5, 0.15625]),
        helper.make_tensor("f64", T.DOUBLE, [2], [1.0 / 3, -1e300]),
        helper.make_tensor("c64", T.COMPLEX64, [2], [1 + 2j, -3.5j]),
        helper.make_tensor("c128", T.COMPLEX128, [1], [1e-300 + 2j]),
        helper.make_tensor("s", T.STRING, [3], [b"alpha", b"", "\u00e9t\u00e9".encode()]),
        helper.make_tensor("f32", T.FLOAT, [2, 3], rng.standard_normal(6).astype(np.float32)),
        helper.make_tensor("raw", T.FLOAT, [4, 4],
                           rng.standard_normal(16).astype(np.float32).tobytes(), raw=True),
        helper.make_tensor("raw_i64", T.INT64, [2], np.array([5, -6], np.int64).tobytes(),
                           raw=True),
        helper.make_tensor("empty", T.FLOAT, [0, 3], []),
        helper.make_tensor("scalar", T.FLOAT, [], [2.5]),
        helper.make_tensor("layer4.1/conv2.weight", T.FLOAT, [2], [1, 2]),
    ]
    sparse = helper.make_sparse_tensor(
        helper.make_tensor("sp", T.FLOAT, [2], [5.0, 6.0]),
        helper.make_tensor("sp_idx", T.INT64, [2], [1, 7]), [3, 4])
    then_g = helper.make_graph(
        [helper.make_node("Constant", [], ["t"], value=helper.make_tensor(
            "then_c", T.INT32, [2], [-5, 9]))],
        "then", [], [helper.make_tensor_value_info("t", T.INT32, [2])])
    inner = helper.make_graph(
        [helper.make_node("Constant", [], ["z"], value=helper.make_tensor(
            "deep_c", T.FLOAT16, [1], np.array([0.5], np.float16)))],
        "inner", [], [helper.make_tensor_value_info("z", T.FLOAT16, [1])])
    else_g = helper.make_graph(
        [helper.make_node("If", ["cond"], ["z2"], then_branch=inner, else_branch=inner)],
        "else", [], [helper.make_tensor_value_info("z2", T.FLOAT16, [1])],
        initializer=[helper.make_tensor("else_init", T.UINT16, [2], [1, 2])])
    nodes = [
        helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g),
        helper.make_node("Constant", [], ["k"], value_ints=[1, -2, 3]),
        helper.make_node("Constant", [], ["st"], sparse_value=helper.make_sparse_tensor(
            helper.make_tensor("sv", T.INT8, [2], [-3, 4]),
            helper.make_tensor("si", T.INT64, [2, 1], [0, 2]), [5])),
        helper.make_node("Identity", ["x"], ["", "o2"], name="id"),
        helper.make_node("MyFn", ["x"], ["fo"], domain="local"),
    ]
    g = helper.make_graph(
        nodes, "synthetic",
        [helper.make_tensor_value_info("cond", T.BOOL, []),
         helper.make_tensor_value_info("x", T.FLOAT, ["batch", 3, None]),
         helper.make_tensor_value_info("i8", T.INT8, [5])],
        [helper.make_tensor_value_info("y", T.INT32, [2])],
        initializer=inits, sparse_initializer=[sparse])
    fn = helper.make_function(
        "local", "MyFn", ["a"], ["b"],
        [helper.make_node("Constant", [], ["c"], value=helper.make_tensor(
            "fn_c", T.UINT64, [1], [42])),
         helper.make_node("Add", ["a", "c"], ["b"])],
        [helper.make_opsetid("", 13)])
    alg = helper.make_graph(
        [helper.make_node("Constant", [], ["u"], value=helper.make_tensor(
            "alg_c", T.INT16, [2], [-7, 7]))],
        "algorithm", [], [helper.make_tensor_value_info("u", T.INT16, [2])],
        initializer=[helper.make_tensor("alg_init", T.DOUBLE, [1], [2.0])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid("local", 1)],
                          functions=[fn])
    m.training_info.append(helper.make_training_info(alg, [("a", "b")], None, None))
    m.ir_version = 8
    helper.set_model_props(m, {"author": "xcheck"})
    paths = []
    p = os.path.join(outdir, "typed.onnx")
    onnx.save(m, p)
    paths.append(p)

    # External data: all big-enough tensors in one file, then one per tensor.
    # (onnx 1.12 only moves raw_data tensors out, hence from_array.)
    big = [numpy_helper.from_array(rng.standard_normal((64, 16)).astype(np.float32), "w%d" % i)
           for i in range(3)]
    big.append(numpy_helper.from_array(np.arange(-50, 50, dtype=np.int64), "sub/wi"))
    big.append(helper.make_tensor("typed_stays_inline", T.INT64, [2], [3, -4]))
    g2 = helper.make_graph([helper.make_node("Add", ["w0", "w1"], ["o"])], "ext",
                           [], [helper.make_tensor_value_info("o", T.FLOAT, [64, 16])],
                           initializer=big)
    for name, one in (("ext_one", True), ("ext_many", False)):
        d = os.path.join(outdir, name)
        os.makedirs(d)
        m2 = helper.make_model(g2, opset_imports=[helper.make_opsetid("", 13)])
        p = os.path.join(d, "model.onnx")
        onnx.save_model(m2, p, save_as_external_data=True, all_tensors_to_one_file=one,
                        location="weights.bin" if one else None, size_threshold=0)
        paths.append(p)
    return paths


def run(modelfs, sub, path):
    p = subprocess.run([modelfs, sub, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError("%s %s failed: %s" % (sub, path, p.stderr.decode(errors="replace").strip()))
    return p.stdout.decode("utf-8", "replace").splitlines()


def check(modelfs, path, stats, problems):
    m = onnx.load(path)     # loads external data too
    w = Walk(os.path.dirname(os.path.abspath(path)))
    w.model(m)
    c_tensors = run(modelfs, "dump-tensors", path)
    c_nodes = run(modelfs, "dump-nodes", path)

    bad = []
    if len(c_tensors) != len(w.tensors):
        bad.append("tensor count: codec %d, onnx %d" % (len(c_tensors), len(w.tensors)))
    for i, (line, (where, t)) in enumerate(zip(c_tensors, w.tensors)):
        data = tensor_bytes(t, w.base_dir)
        want = "\t".join([where, escape(t.name), dtype_name(t.data_type),
                          ",".join(str(d) for d in t.dims), str(len(data)), fnv1a64(data)])
        stats["tensors"] += 1
        stats["bytes"] += len(data)
        if line != want:
            bad.append("tensor %d: codec %r, onnx %r" % (i, line, want))
    counts = c_nodes[-1] if c_nodes else ""
    c_nodes = c_nodes[:-1]
    if c_nodes != w.graph_lines:
        for i, (a, b) in enumerate(zip(c_nodes, w.graph_lines)):
            if a != b:
                bad.append("graph/node line %d: codec %r, onnx %r" % (i, a, b))
                break
        else:
            bad.append("graph/node lines: codec %d, onnx %d" % (len(c_nodes), len(w.graph_lines)))
    want_counts = "counts\t%d\t%d" % (w.n_nodes, len(w.tensors))
    if counts != want_counts:
        bad.append("counts: codec %r, onnx %r" % (counts, want_counts))
    stats["nodes"] += sum(1 for x in w.graph_lines if x.startswith("node\t"))
    stats["graphs"] += sum(1 for x in w.graph_lines if x.startswith("graph\t"))
    for b in bad:
        problems.append("%s: %s" % (path, b))
    return not bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    build = os.environ.get("MFS_BUILD", os.path.join(here, "..", "..", "build"))
    ap.add_argument("--modelfs", default=os.path.join(build, "tools", "modelfs"))
    ap.add_argument("--synthetic", action="store_true",
                    help="also build and check small models covering every storage form")
    ap.add_argument("paths", nargs="*")
    args = ap.parse_args()
    if not args.paths and not args.synthetic:
        args.paths = ["/usr/share/libonnx-testdata/data"]

    models = []
    for p in args.paths:
        if os.path.isdir(p):
            for root, _, files in os.walk(p):
                models += [os.path.join(root, f) for f in files if f.endswith(".onnx")]
        else:
            models.append(p)
    models.sort()
    tmp = None
    if args.synthetic:
        import tempfile
        tmp = tempfile.TemporaryDirectory(prefix="onnx_xcheck.")
        models += make_synthetic(tmp.name)

    stats = {"tensors": 0, "bytes": 0, "nodes": 0, "graphs": 0}
    problems = []
    ok = 0
    for path in models:
        try:
            if check(args.modelfs, path, stats, problems):
                ok += 1
        except Exception as e:     # report and keep going
            problems.append("%s: %s" % (path, e))
    for p in problems:
        print("MISMATCH " + p)
    print("models: %d checked, %d agree, %d differ" % (len(models), ok, len(models) - ok))
    print("tensors: %d compared (%d bytes); graphs: %d; nodes: %d"
          % (stats["tensors"], stats["bytes"], stats["graphs"], stats["nodes"]))
    return 0 if ok == len(models) else 1


if __name__ == "__main__":
    sys.exit(main())

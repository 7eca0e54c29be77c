#!/usr/bin/python3
"""Write a large ONNX model with inline (raw_data) weights without holding it
in memory: the small parts are serialized by python3-onnx and the tensors
are streamed as protobuf fields by hand (parsing a concatenation of fields is
a merge, so the result is one valid ModelProto).

    make_big_onnx.py OUT.onnx [--layers N] [--dim D]

Layer i is a D×D float32 weight "layers.<i>.weight" whose element j has the
bit pattern (j * 2654435761 + i) mod 2^32 masked into a finite float; the
expected bytes of any tensor can be recomputed with tensor_bytes(i, D).
Prints one JSON line: {"size": ..., "tensors": [[name, offset, nbytes], ...]}.
"""
import argparse
import json

import numpy as np
import onnx
from onnx import TensorProto, helper


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tensor_bytes(i, dim):
    j = np.arange(dim * dim, dtype=np.uint64)
    bits = ((j * 2654435761 + i) & 0xFFFFFFFF).astype(np.uint32)
    bits &= np.uint32(0xBF7FFFFF)     # clear an exponent bit: always finite
    return bits.astype("<u4").tobytes()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--dim", type=int, default=4096)
    a = ap.parse_args()
    n, dim = a.layers, a.dim

    nodes, prev = [], "x"
    for i in range(n):
        nodes.append(helper.make_node("MatMul", [prev, "layers.%d.weight" % i], ["h%d" % i],
                                      name="layers.%d.matmul" % i))
        prev = "h%d" % i
    small_graph = helper.make_graph(
        nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", dim])])
    graph_small = small_graph.SerializeToString()

    heads = []
    for i in range(n):
        name = ("layers.%d.weight" % i).encode()
        head = varint(0x08) + varint(dim) + varint(0x08) + varint(dim)      # dims
        head += varint(0x10) + varint(TensorProto.FLOAT)                    # data_type
        head += varint(0x42) + varint(len(name)) + name                     # name
        nbytes = dim * dim * 4
        head += varint(0x4A) + varint(nbytes)                               # raw_data
        heads.append((name.decode(), head, nbytes))

    graph_len = len(graph_small)
    for _, head, nbytes in heads:
        tlen = len(head) + nbytes
        graph_len += 1 + len(varint(tlen)) + tlen

    model = helper.make_model(onnx.GraphProto(), opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="modelfs-tests")
    model.ClearField("graph")
    table = []
    with open(a.out, "wb") as f:
        f.write(model.SerializeToString())
        f.write(varint(0x3A) + varint(graph_len))
        f.write(graph_small)
        for i, (name, head, nbytes) in enumerate(heads):
            tlen = len(head) + nbytes
            f.write(varint(0x2A) + varint(tlen) + head)
            table.append([name, f.tell(), nbytes])
            f.write(tensor_bytes(i, dim))
        size = f.tell()
    print(json.dumps({"size": size, "tensors": table}))


if __name__ == "__main__":
    main()

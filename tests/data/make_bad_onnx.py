#!/usr/bin/python3
"""tests/data/make_bad_onnx.py — write the bad ONNX fixtures in tests/data/bad/.

Each fixture is a few dozen bytes of hand-encoded protobuf, built here from
raw bytes (not with onnx or modelfs code, so the fixtures do not share a bug
with what they test).  Every one must make mfs_model_open() fail cleanly with
-EUCLEAN or -EFBIG and a one-line message (tests/unit/test_wire.c).

Run: /usr/bin/python3 tests/data/make_bad_onnx.py   (rewrites the files)
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "bad")


def varint(n):
    n &= (1 << 64) - 1      # negative int64 -> 10-byte two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wt):
    return varint(field << 3 | wt)


def vint(field, n):
    return key(field, 0) + varint(n)


def ld(field, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return key(field, 2) + varint(len(payload)) + payload


# ---- well-formed pieces (field numbers: doc/formats.md §1.2)

def tensor(name, dtype, dims, raw=None, extra=b""):
    t = b"".join(vint(1, d) for d in dims) + vint(2, dtype) + ld(8, name)
    if raw is not None:
        t += ld(9, raw)
    return t + extra


def tensor_type(elem, dims):
    shape = b"".join(ld(1, vint(1, d)) for d in dims)
    return ld(1, vint(1, elem) + ld(2, shape))          # TypeProto.tensor_type


def value_info(name, type_proto):
    return ld(1, name) + ld(2, type_proto)


def node(op, inputs, outputs, extra=b""):
    return (b"".join(ld(1, i) for i in inputs) + b"".join(ld(2, o) for o in outputs)
            + ld(4, op) + extra)


def graph(nodes=(), inits=(), inputs=(), outputs=(), name="g"):
    return (b"".join(ld(1, n) for n in nodes) + ld(2, name)
            + b"".join(ld(5, t) for t in inits)
            + b"".join(ld(11, v) for v in inputs) + b"".join(ld(12, v) for v in outputs))


def model(graph_bytes):
    opset = ld(1, "") + vint(2, 13)
    return vint(1, 8) + ld(2, "make_bad_onnx") + ld(8, opset) + ld(7, graph_bytes)


FLOAT, INT64 = 1, 7


def good_model():
    w = tensor("W", FLOAT, [2, 2], raw=struct.pack("<4f", 1, 2, 3, 4))
    x = value_info("X", tensor_type(FLOAT, [2, 2]))
    y = value_info("Y", tensor_type(FLOAT, [2, 2]))
    return model(graph([node("Add", ["X", "W"], ["Y"])], [w], [x], [y]))


def fixtures():
    f = {}
    f["empty.onnx"] = b""
    # Text: 't' (0x74) is field 14 with wire type 4, a group end tag.
    f["garbage.onnx"] = b"this is not a model, just some text\n" * 3
    good = good_model()
    f["truncated.onnx"] = good[: len(good) * 2 // 3]

    # A node whose length prefix runs past the end of its graph, though not
    # past the end of the file (a trailing field follows the graph).
    g = ld(2, "g") + key(1, 2) + varint(200) + node("Relu", ["X"], ["Y"])
    f["length_past_end.onnx"] = model(g) + ld(6, "x" * 300)

    # 2^62 * 2^62 * 4 overflows uint64; raw_data is tiny so only the
    # product check can catch it.
    t = tensor("big", FLOAT, [1 << 62, 1 << 62, 4], raw=b"\0" * 4)
    f["dims_overflow.onnx"] = model(graph(inits=[t]))

    # A graph input typed sequence(sequence(...(float32)...)) 300 levels deep.
    tp = tensor_type(FLOAT, [1])
    for _ in range(300):
        tp = ld(4, ld(1, tp))   # TypeProto.sequence_type { elem_type = tp }
    f["deep_nesting.onnx"] = model(graph(inputs=[value_info("X", tp)]))

    t = tensor("neg", FLOAT, [-1, 2], raw=b"")
    f["negative_dim.onnx"] = model(graph(inits=[t]))

    t = tensor("short", FLOAT, [4], raw=struct.pack("<3f", 1, 2, 3))
    f["raw_size_mismatch.onnx"] = model(graph(inits=[t]))

    # dims = 1 written as an 11-byte varint (ten continuation bytes).
    t = key(1, 0) + b"\x81" + b"\x80" * 9 + b"\x00" + vint(2, FLOAT) + ld(8, "v") + ld(9, b"\0" * 4)
    f["overlong_varint.onnx"] = model(graph(inits=[t]))

    # A node with a field numbered 0 (key byte 0x02: field 0, wire type 2).
    n = node("Relu", ["X"], ["Y"]) + b"\x02\x01a"
    f["field_zero.onnx"] = model(graph(nodes=[n]))
    return f


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in sorted(fixtures().items()):
        with open(os.path.join(OUT, name), "wb") as fh:
            fh.write(data)
        print("%-24s %5d bytes" % (name, len(data)))


if __name__ == "__main__":
    main()

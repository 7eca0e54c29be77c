#!/usr/bin/python3
"""tests/tools/txn_check.py — independent checks of models written by modelfs.

Used by tests/unit/test_txn.c, which runs it with Debian's python3 (onnx,
numpy).  Nothing here imports modelfs: it is the second opinion.

  txn_check.py onnx-dump MODEL
      onnx.checker.check_model(MODEL), then one JSON object on stdout:
      meta (producer_name, producer_version, domain, model_version,
      doc_string, graph_name), props ([key, value] in order), and every
      initializer of the main graph as {name, dtype, dims, hex} where hex is
      numpy_helper.to_array(t).tobytes() in hex.
  txn_check.py onnx-same OLD NEW
      check_model(NEW); every node and tensor of NEW equals OLD's: nodes,
      graph inputs/outputs/value_info serialized byte for byte, every
      initializer (also in subgraphs) by name, dtype, dims and values.
      Prints "same" or the first difference (exit 1).
  txn_check.py st-dump FILE
      a safetensors reader in 30 lines (json + struct): checks the header
      length, that offsets tile the buffer and sizes match dtype × shape,
      then prints {metadata, tensors: {name: {dtype, shape, hex}}}.
"""
import json
import struct
import sys

ST_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "I16": 16, "U16": 16,
           "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64,
           "I64": 64, "U64": 64, "F4": 4}


def onnx_dump(path):
    import onnx
    from onnx import numpy_helper
    m = onnx.load(path)
    onnx.checker.check_model(m)
    out = {
        "meta": {
            "producer_name": m.producer_name,
            "producer_version": m.producer_version,
            "domain": m.domain,
            "model_version": m.model_version,
            "doc_string": m.doc_string,
            "graph_name": m.graph.name,
        },
        "props": [[p.key, p.value] for p in m.metadata_props],
        "tensors": [],
    }
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        out["tensors"].append({"name": t.name, "dtype": t.data_type, "dims": list(t.dims),
                               "hex": a.tobytes().hex()})
    print(json.dumps(out))


def all_tensors(g, prefix, acc):
    from onnx import numpy_helper
    for t in g.initializer:
        acc[prefix + t.name] = (t.data_type, list(t.dims), numpy_helper.to_array(t).tobytes())
    for n in g.node:
        for a in n.attribute:
            if a.HasField("g"):
                all_tensors(a.g, prefix + n.name + "/" + a.name + "/", acc)
            for i, sg in enumerate(a.graphs):
                all_tensors(sg, "%s%s/%s[%d]/" % (prefix, n.name, a.name, i), acc)
    return acc


def onnx_same(old_path, new_path):
    import onnx
    old = onnx.load(old_path)
    new = onnx.load(new_path)
    onnx.checker.check_model(new)
    go, gn = old.graph, new.graph
    for what in ("node", "input", "output", "value_info", "sparse_initializer"):
        a, b = getattr(go, what), getattr(gn, what)
        if len(a) != len(b):
            print("%s: %d vs %d" % (what, len(a), len(b)))
            return 1
        for i, (x, y) in enumerate(zip(a, b)):
            if x.SerializeToString() != y.SerializeToString():
                print("%s[%d] differs" % (what, i))
                return 1
    ta, tb = all_tensors(go, "", {}), all_tensors(gn, "", {})
    if ta.keys() != tb.keys():
        print("tensor names differ")
        return 1
    for k in ta:
        if ta[k] != tb[k]:
            print("tensor %s differs" % k)
            return 1
    if [o.SerializeToString() for o in old.opset_import] != \
            [o.SerializeToString() for o in new.opset_import]:
        print("opset_import differs")
        return 1
    print("same")
    return 0


def st_dump(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    assert 8 + n <= len(data), "header past end"
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    assert all(isinstance(v, str) for v in meta.values())
    buf = data[8 + n:]
    ents = sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
    pos = 0
    tensors = {}
    for name, e in ents:
        b, end = e["data_offsets"]
        assert b == pos, "hole or overlap at %s" % name
        nelem = 1
        for d in e["shape"]:
            nelem *= d
        bits = nelem * ST_BITS[e["dtype"]]
        assert bits % 8 == 0 and end - b == bits // 8, "size of %s" % name
        tensors[name] = {"dtype": e["dtype"], "shape": e["shape"], "hex": buf[b:end].hex()}
        pos = end
    assert pos == len(buf), "trailing bytes"
    print(json.dumps({"metadata": meta, "tensors": tensors}))


def main():
    cmd = sys.argv[1]
    if cmd == "onnx-dump":
        onnx_dump(sys.argv[2])
    elif cmd == "onnx-same":
        return onnx_same(sys.argv[2], sys.argv[3])
    elif cmd == "st-dump":
        st_dump(sys.argv[2])
    else:
        print("unknown command", cmd)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

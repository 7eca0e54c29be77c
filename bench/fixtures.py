"""bench/fixtures.py — generated fixtures for bench/run.

Every fixture is written by a streamed writer (no whole model in memory) from
deterministic synthetic weights (i.i.d. N(0, 0.02), seeded per tensor name),
so a fixture is a pure function of its parameters.  Each writer leaves a
sidecar `<file>.json` stamp holding the parameters, the file sizes and the
tensor table (name, dtype, shape, file, offset, nbytes); `ensure()` reuses a
fixture whose stamp matches and whose files still have the recorded sizes.

Fixtures (see `layouts()`):
  onnx      one .onnx with inline raw_data weights (>= 1 GiB in full mode)
  onnx-ext  the same weights as ONNX external data: model.onnx + weights.bin
  st-bf16   safetensors, BF16 (>= 1 GiB)
  st-fp32   safetensors, F32, the onnx fixture's layout (>= 1 GiB)
  graph     an ONNX graph of a long Identity/Relu chain (>= 100,000 nodes)
  st-many   safetensors with 300,000 small tensors named as a mixture of
            experts names them (a ~35 MB header; the data is a sparse hole)
"""
import hashlib
import json
import os
import struct

import numpy as np

MiB = 1 << 20
GEN_VERSION = 1          # bump when a writer's output changes

ONNX_FLOAT = 1
ONNX_BFLOAT16 = 16


# ----------------------------------------------------------------- layouts

def llama_layout(hidden, ffn, vocab, layers, vec, adapter):
    """Tensors of a llama-like decoder: (name, shape).  `vocab` x `hidden` is
    the big embedding (the 256 MiB tensor of the small-reads row), `adapter`
    x `adapter` a small square matrix (4 MiB in full mode: the commit rows'
    edit target), `vec`-long bias vectors."""
    t = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = "model.layers.%d." % i
        t += [(p + "input_layernorm.weight", (hidden,)),
              (p + "self_attn.q_proj.weight", (hidden, hidden)),
              (p + "self_attn.k_proj.weight", (hidden, hidden)),
              (p + "self_attn.v_proj.weight", (hidden, hidden)),
              (p + "self_attn.o_proj.weight", (hidden, hidden)),
              (p + "self_attn.q_proj.bias", (vec,)),
              (p + "self_attn.k_proj.bias", (vec,)),
              (p + "self_attn.v_proj.bias", (vec,)),
              (p + "post_attention_layernorm.weight", (hidden,)),
              (p + "mlp.gate_proj.weight", (ffn, hidden)),
              (p + "mlp.up_proj.weight", (ffn, hidden)),
              (p + "mlp.down_proj.weight", (hidden, ffn))]
    t += [("model.adapter.weight", (adapter, adapter)),
          ("model.norm.weight", (hidden,))]
    return t


def layouts(smoke):
    """Parameters of every fixture.  Full mode: fp32 = embedding 16384x4096
    (256 MiB) + one 4096/11008 layer + 4 MiB adapter ~= 1.01 GiB; bf16 = the
    same with twice the elements (embedding 32768x4096 = 256 MiB, two layers).
    Smoke mode: the same shapes scaled down to a few MiB."""
    if smoke:
        fp32 = dict(hidden=256, ffn=688, vocab=4096, layers=1, vec=64, adapter=256)
        bf16 = dict(hidden=256, ffn=688, vocab=8192, layers=2, vec=64, adapter=256)
        nodes = 1000
    else:
        fp32 = dict(hidden=4096, ffn=11008, vocab=16384, layers=1, vec=1024, adapter=1024)
        bf16 = dict(hidden=4096, ffn=11008, vocab=32768, layers=2, vec=1024, adapter=1024)
        nodes = 100000
    return {
        "onnx": dict(kind="onnx", dtype="float32", layout=fp32),
        "onnx-ext": dict(kind="onnx-ext", dtype="float32", layout=fp32),
        "st-bf16": dict(kind="safetensors", dtype="bfloat16", layout=bf16),
        "st-fp32": dict(kind="safetensors", dtype="float32", layout=fp32),
        "graph": dict(kind="graph", nodes=nodes),
        "st-many": dict(kind="st-many", layers=10 if smoke else 100,
                        experts=100 if smoke else 1000),
    }


# ----------------------------------------------------------------- weights

def weights(name, shape, dtype):
    """Deterministic N(0, 0.02) bytes of one tensor, little-endian."""
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    a = rng.standard_normal(n, dtype=np.float32)
    a *= np.float32(0.02)
    if dtype == "float32":
        return a.astype("<f4").tobytes()
    if dtype == "bfloat16":          # round-to-nearest-even on the top 16 bits
        u = a.view(np.uint32)
        u = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
        return u.astype("<u2").tobytes()
    raise ValueError(dtype)


def itemsize(dtype):
    return {"float32": 4, "bfloat16": 2}[dtype]


def nbytes(shape, dtype):
    return int(np.prod(shape)) * itemsize(dtype)


# ----------------------------------------------------------------- protobuf

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


def pb_len(field, payload_len):
    """Tag and length of a length-delimited field."""
    return varint((field << 3) | 2) + varint(payload_len)


def pb_bytes(field, b):
    return pb_len(field, len(b)) + b


def pb_varint(field, v):
    return varint(field << 3) + varint(v)


def _small_graph(tensors, name):
    """The graph without initializers: a Gather of the embedding, then one
    MatMul / Add / Mul per weight, chained.  Serialized by python3-onnx."""
    from onnx import TensorProto, helper
    nodes, prev = [], "h"
    nodes.append(helper.make_node("Gather", [tensors[0][0], "input_ids"], ["h"], name="embed"))
    for i, (tname, shape) in enumerate(tensors[1:]):
        op = "MatMul" if len(shape) == 2 else ("Add" if tname.endswith("bias") else "Mul")
        out = "h%d" % i
        nodes.append(helper.make_node(op, [prev, tname], [out], name=tname.rsplit(".", 1)[0]))
        prev = out
    g = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", "seq", "?"])])
    return g


def _model_head():
    """ModelProto fields before `graph`, serialized by python3-onnx."""
    import onnx
    from onnx import helper
    m = helper.make_model(onnx.GraphProto(), opset_imports=[helper.make_opsetid("", 17)],
                          producer_name="modelfs-bench")
    m.ClearField("graph")
    return m.SerializeToString()


def _tensor_head(name, shape, data_type, raw_len=None, external=None):
    """TensorProto fields before raw_data (dims 1, data_type 2, name 8), then
    either the raw_data (9) tag and length, or external_data (13) entries and
    data_location (14) = EXTERNAL."""
    h = b"".join(pb_varint(1, d) for d in shape)
    h += pb_varint(2, data_type)
    h += pb_bytes(8, name.encode())
    if external is not None:
        for k, v in external:
            entry = pb_bytes(1, k.encode()) + pb_bytes(2, v.encode())
            h += pb_bytes(13, entry)
        h += pb_varint(14, 1)
    else:
        h += pb_len(9, raw_len)
    return h


def write_onnx(path, tensors, dtype):
    """Inline-weight ONNX, streamed: ModelProto head, graph tag+length, the
    small graph, then each initializer (GraphProto field 5) with its raw_data
    written straight from the generator.  Returns the tensor table."""
    dt = {"float32": ONNX_FLOAT, "bfloat16": ONNX_BFLOAT16}[dtype]
    graph_small = _small_graph(tensors, "bench").SerializeToString()
    heads = []
    for name, shape in tensors:
        n = nbytes(shape, dtype)
        heads.append((name, shape, _tensor_head(name, shape, dt, raw_len=n), n))
    graph_len = len(graph_small)
    for _, _, head, n in heads:
        tlen = len(head) + n
        graph_len += len(pb_len(5, tlen)) + tlen
    table = []
    with open(path, "wb") as f:
        f.write(_model_head())
        f.write(pb_len(7, graph_len))
        f.write(graph_small)
        for name, shape, head, n in heads:
            f.write(pb_len(5, len(head) + n) + head)
            table.append(dict(name=name, dtype=dtype, shape=list(shape),
                              file=os.path.basename(path), offset=f.tell(), nbytes=n))
            f.write(weights(name, shape, dtype))
    return table


def write_onnx_ext(path, tensors, dtype, data_name="weights.bin", align=4096):
    """External-data ONNX: `path` holds the graph and TensorProtos with
    data_location=EXTERNAL pointing into one `data_name` beside it; each
    tensor starts at a multiple of `align` in the data file."""
    dt = {"float32": ONNX_FLOAT, "bfloat16": ONNX_BFLOAT16}[dtype]
    dpath = os.path.join(os.path.dirname(path), data_name)
    table, inits = [], b""
    with open(dpath, "wb") as d:
        for name, shape in tensors:
            n = nbytes(shape, dtype)
            off = d.tell()
            pad = (-off) % align
            if pad:
                d.write(b"\0" * pad)
                off += pad
            d.write(weights(name, shape, dtype))
            ext = [("location", data_name), ("offset", str(off)), ("length", str(n))]
            inits += pb_bytes(5, _tensor_head(name, shape, dt, external=ext))
            table.append(dict(name=name, dtype=dtype, shape=list(shape), file=data_name,
                              offset=off, nbytes=n))
    graph = _small_graph(tensors, "bench").SerializeToString() + inits
    with open(path, "wb") as f:
        f.write(_model_head())
        f.write(pb_bytes(7, graph))
    return table


def write_safetensors(path, tensors, dtype):
    """safetensors: u64le header length, JSON header padded with spaces to a
    multiple of 8, then the tensors back to back in `tensors` order."""
    st = {"float32": "F32", "bfloat16": "BF16"}[dtype]
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in tensors:
        n = nbytes(shape, dtype)
        header[name] = {"dtype": st, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((-len(hj)) % 8)
    base = 8 + len(hj)
    table = []
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for name, shape in tensors:
            b, e = header[name]["data_offsets"]
            table.append(dict(name=name, dtype=dtype, shape=list(shape),
                              file=os.path.basename(path), offset=base + b, nbytes=e - b))
            f.write(weights(name, shape, dtype))
    return table


def write_st_many(path, layers, experts):
    """safetensors with layers x experts x 3 tensors named
    model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight, each BF16
    [16, 8], in name order, header padded to 8.  The data buffer is left a
    hole (ftruncate): only the header is ever read.  The header is written
    as the reference writer would (compact JSON, __metadata__ first)."""
    parts, off = [b'{"__metadata__":{"format":"pt"}'], 0
    nb = 16 * 8 * 2
    for layer in range(layers):
        for e in range(experts):
            for proj in ("gate_proj", "up_proj", "down_proj"):
                parts.append(b',"model.layers.%d.mlp.experts.%d.%s.weight":{"dtype":"BF16",'
                             b'"shape":[16,8],"data_offsets":[%d,%d]}' % (
                                 layer, e, proj.encode(), off, off + nb))
                off += nb
    parts.append(b"}")
    hj = b"".join(parts)
    hj += b" " * ((-len(hj)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        f.truncate(8 + len(hj) + off)
    return [], dict(count=layers * experts * 3, header=len(hj))


def write_graph(path, nodes):
    """An ONNX model whose graph is a chain of `nodes` alternating
    Identity/Relu nodes, and one small initializer."""
    import onnx
    from onnx import TensorProto, helper
    ns, prev = [], "x"
    for i in range(nodes):
        out = "t%d" % i
        ns.append(helper.make_node("Relu" if i % 2 else "Identity", [prev], [out], name="n%d" % i))
        prev = out
    w = helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    g = helper.make_graph(ns, "chain",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", 4])],
                          initializer=[w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)],
                          producer_name="modelfs-bench")
    onnx.save_model(m, path)
    return [dict(name="w", dtype="float32", shape=[4], file=os.path.basename(path),
                 offset=None, nbytes=16)]


# ----------------------------------------------------------------- fixtures

def _files(d, kind):
    if kind == "onnx":
        return ["model.onnx"]
    if kind == "onnx-ext":
        return ["model.onnx", "weights.bin"]
    if kind in ("safetensors", "st-many"):
        return ["model.safetensors"]
    if kind == "graph":
        return ["model.onnx"]
    raise ValueError(kind)


def ensure(workdir, key, params, log=print):
    """Generate fixture `key` under workdir/key/ unless a matching one is
    there.  Returns its stamp: {model, files, size, tensors, params, reused}."""
    d = os.path.join(workdir, key)
    stamp_path = os.path.join(d, "fixture.json")
    want = dict(params, gen=GEN_VERSION)
    try:
        with open(stamp_path) as f:
            st = json.load(f)
        if st["params"] == want and all(
                os.path.getsize(os.path.join(d, fn)) == sz for fn, sz in st["files"].items()):
            st["reused"] = True
            st["model"] = os.path.join(d, st["model_name"])
            return st
    except (OSError, ValueError, KeyError):
        pass
    os.makedirs(d, exist_ok=True)
    if os.path.exists(stamp_path):
        os.unlink(stamp_path)
    kind = params["kind"]
    names = _files(d, kind)
    for fn in names:
        if os.path.exists(os.path.join(d, fn)):
            os.unlink(os.path.join(d, fn))
    model = os.path.join(d, names[0])
    log("# generating fixture %s in %s" % (key, d))
    extra = {}
    if kind == "graph":
        table = write_graph(model, params["nodes"])
    elif kind == "st-many":
        table, extra = write_st_many(model, params["layers"], params["experts"])
    else:
        tensors = llama_layout(**params["layout"])
        writer = {"onnx": write_onnx, "onnx-ext": write_onnx_ext,
                  "safetensors": write_safetensors}[kind]
        table = writer(model, tensors, params["dtype"])
    files = {fn: os.path.getsize(os.path.join(d, fn)) for fn in names}
    st = dict(params=want, model_name=names[0], files=files, size=sum(files.values()),
              tensors=table, **extra)
    with open(stamp_path + ".tmp", "w") as f:
        json.dump(st, f)
    os.rename(stamp_path + ".tmp", stamp_path)
    st["reused"] = False
    st["model"] = model
    return st

#!/usr/bin/python3
"""tests/mount/test_torch_convert.py — issue 13: `modelfs convert MODEL
OUT.safetensors` for every readable format.

Inputs: the torch.save fixtures of tests/data/make_torch.py (state dicts,
a checkpoint dict, views, every dtype safetensors has, protocol 4), an ONNX
model with inline initializers and one with external data, and a sharded
safetensors checkpoint (index + 2 shards, themselves made by convert).
For each: the output, read back by the small safetensors reader below
(json header + numpy, nothing of modelfs), holds exactly the source's
tensors with their dtype, shape and bytes (and props as __metadata__); the
bytes loaded into torch (torch.frombuffer) equal the source tensors; the
header obeys the writer's rules (tiling offsets, length a multiple of 8);
the project's safetensors mount of the output shows the same data.  A
tensor safetensors cannot hold (complex128) is refused with one line and
no output left behind.
"""
import hashlib
import json
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "data"))
from mfstest import MODELFS, T, read_value  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402
import torch  # noqa: E402

import make_torch  # noqa: E402

ST_TORCH = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16,
            "BF16": torch.bfloat16, "I8": torch.int8, "U8": torch.uint8, "I16": torch.int16,
            "I32": torch.int32, "I64": torch.int64, "BOOL": torch.bool, "C64": torch.complex64}


def read_safetensors(path):
    """(metadata, {name: (dtype, shape, bytes)}, problems) of a safetensors file."""
    problems = []
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack_from("<Q", raw)[0]
    if n % 8:
        problems.append("header length %d is not a multiple of 8" % n)
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    buf = raw[8 + n:]
    out, spans = {}, []
    for name, e in header.items():
        b, end = e["data_offsets"]
        spans.append((b, end))
        out[name] = (e["dtype"], tuple(e["shape"]), buf[b:end])
    pos = 0
    for b, end in sorted(spans):
        if b != pos:
            problems.append("offsets do not tile at %d" % b)
        pos = end
    if pos != len(buf):
        problems.append("buffer of %d bytes, tensors end at %d" % (len(buf), pos))
    return meta, out, problems


def as_torch(dtype, shape, data):
    td = ST_TORCH[dtype]
    if not data:
        return torch.zeros(shape, dtype=td)
    return torch.frombuffer(bytearray(data), dtype=td).reshape(shape)


def convert(src, out):
    return subprocess.run([MODELFS, "convert", src, out], capture_output=True, text=True)


def check_output(label, out, want, want_meta):
    """want: name -> (torch tensor or None, st dtype or None, shape, bytes)."""
    meta, got, problems = read_safetensors(out)
    t.check("%s: header follows the writer's rules" % label, not problems, problems)
    t.eq("%s: tensor names" % label, sorted(want), sorted(got))
    t.eq("%s: __metadata__ holds the props" % label, want_meta, meta)
    bad = []
    for name, (tensor, wdt, wshape, wbytes) in want.items():
        if name not in got:
            continue
        dt, shape, data = got[name]
        if (wdt and dt != wdt) or shape != wshape or data != wbytes:
            bad.append("%s: %s %s %d bytes" % (name, dt, shape, len(data)))
        elif tensor is not None and not torch.equal(as_torch(dt, shape, data),
                                                    tensor.detach().contiguous()):
            bad.append("%s: torch values differ" % name)
    t.check("%s: every tensor's dtype, shape, bytes and torch values" % label, not bad,
            "; ".join(bad[:5]))
    # The project's own safetensors mount of the output agrees.
    try:
        with t.mount(out) as mnt:
            seen, bad = 0, []
            for dirpath, _, files in os.walk(os.path.join(mnt, "weights")):
                if "data" in files and "name" in files:
                    name = read_value(os.path.join(dirpath, "name")).decode()
                    with open(os.path.join(dirpath, "data"), "rb") as f:
                        if name not in want or f.read() != want[name][3]:
                            bad.append(name)
                    seen += 1
            t.check("%s: the mount of the output shows the same %d tensors" % (label, len(want)),
                    seen == len(want) and not bad, "%d seen, bad %s" % (seen, bad[:3]))
    except RuntimeError as e:
        t.not_ok("%s: the output mounts" % label, e)


t = T()
fdir = os.path.join(t.tmp, "fx")
os.mkdir(fdir)
fixtures = dict(make_torch.fixtures(fdir))
TORCH_ST = {v: k for k, v in ST_TORCH.items()}

for fname in ("resnet18.pt", "checkpoint.pt", "views.pt", "proto4.pt", "tensor.pt"):
    obj = fixtures[fname]
    tensors, props = make_torch.expected(obj)
    want = {n: (x, TORCH_ST[x.dtype], tuple(x.shape), make_torch.tensor_bytes(x))
            for n, x in tensors.items()}
    out = os.path.join(t.tmp, fname + ".safetensors")
    r = convert(os.path.join(fdir, fname), out)
    if t.check("%s: convert succeeds" % fname, r.returncode == 0 and not r.stderr, r.stderr):
        check_output(fname, out, want, dict(props))

# Every dtype safetensors can hold; complex128 it cannot.
dt = dict(fixtures["dtypes.pt"])
r = convert(os.path.join(fdir, "dtypes.pt"), os.path.join(t.tmp, "dtypes.safetensors"))
t.check("dtypes.pt with complex128: refused with one line naming the tensor",
        r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "c128" in r.stderr and
        not os.path.exists(os.path.join(t.tmp, "dtypes.safetensors")) and
        not [n for n in os.listdir(t.tmp) if ".tmp-" in n], r.stderr)
del dt["c128"]
torch.save(dt, os.path.join(fdir, "dtypes2.pt"))
out = os.path.join(t.tmp, "dtypes2.safetensors")
r = convert(os.path.join(fdir, "dtypes2.pt"), out)
if t.check("every safetensors dtype: convert succeeds", r.returncode == 0, r.stderr):
    check_output("dtypes2.pt", out,
                 {n: (x, TORCH_ST[x.dtype], tuple(x.shape), make_torch.tensor_bytes(x))
                  for n, x in dt.items()}, {})

# ONNX, inline and external data.
rng = np.random.default_rng(5)
inits = [numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "fc.weight"),
         numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "fc.bias"),
         numpy_helper.from_array(np.arange(6, dtype=np.int64), "idx")]
graph = helper.make_graph(
    [helper.make_node("MatMul", ["x", "fc.weight"], ["y0"]),
     helper.make_node("Add", ["y0", "fc.bias"], ["y"])], "g",
    [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
    [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
want = {i.name: (None, None, tuple(i.dims), numpy_helper.to_array(i).tobytes()) for i in inits}
inline = os.path.join(fdir, "inline.onnx")
onnx.save_model(model, inline)
ext_dir = os.path.join(fdir, "ext")
os.mkdir(ext_dir)
ext = os.path.join(ext_dir, "ext.onnx")
onnx.save_model(model, ext, save_as_external_data=True, all_tensors_to_one_file=True,
                location="weights.bin", size_threshold=0)
for label, path in (("onnx inline", inline), ("onnx external data", ext)):
    out = os.path.join(t.tmp, label.replace(" ", "_") + ".safetensors")
    r = convert(path, out)
    if t.check("%s: convert succeeds" % label, r.returncode == 0, r.stderr):
        check_output(label, out, want, {})

# A sharded safetensors checkpoint (two shards made by convert) into one file.
sh_dir = os.path.join(fdir, "sharded")
os.mkdir(sh_dir)
views = fixtures["views.pt"]
names = list(views)
parts = [dict((n, views[n]) for n in names[:6]), dict((n, views[n]) for n in names[6:])]
weight_map = {}
for i, part in enumerate(parts):
    src = os.path.join(fdir, "part%d.pt" % i)
    torch.save(part, src)
    shard = "model-%05d-of-00002.safetensors" % (i + 1)
    r = convert(src, os.path.join(sh_dir, shard))
    t.check("shard %d: convert succeeds" % i, r.returncode == 0, r.stderr)
    for n in part:
        weight_map[n] = shard
with open(os.path.join(sh_dir, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": 1}, "weight_map": weight_map}, f)
out = os.path.join(t.tmp, "joined.safetensors")
r = convert(os.path.join(sh_dir, "model.safetensors.index.json"), out)
tensors, _ = make_torch.expected(views)
if t.check("sharded safetensors: convert succeeds", r.returncode == 0, r.stderr):
    check_output("sharded safetensors", out,
                 {n: (x, TORCH_ST[x.dtype], tuple(x.shape), make_torch.tensor_bytes(x))
                  for n, x in tensors.items()}, {"total_size": "1"})

# A sharded torch checkpoint (index + 3 shards) into one file.
tdir = os.path.join(fdir, "torch_sharded")
os.mkdir(tdir)
index, sd = make_torch.sharded(tdir)
out = os.path.join(t.tmp, "torch_joined.safetensors")
r = convert(index, out)
if t.check("sharded torch: convert succeeds", r.returncode == 0, r.stderr):
    check_output("sharded torch", out,
                 {n: (x, TORCH_ST[x.dtype], tuple(x.shape), make_torch.tensor_bytes(x))
                  for n, x in sd.items()},
                 {"total_size": str(sum(x.numel() * x.element_size() for x in sd.values()))})

# OUT must never be one of the model's own files: the rename would replace
# the input (the model itself, by another name too, or one of its shards).
shard1 = os.path.join(sh_dir, "model-00001-of-00002.safetensors")
idx = os.path.join(sh_dir, "model.safetensors.index.json")
before = {p: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in (shard1, idx)}
link = os.path.join(t.tmp, "hardlink.safetensors")
for label, src, dst in (("a shard of the sharded model", idx, shard1),
                        ("the model itself", shard1, shard1),
                        ("the model by a hard link", shard1, link)):
    if dst == link:
        os.link(shard1, link)
    r = convert(src, dst)
    t.check("convert onto %s: refused with one line" % label,
            r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "itself" in r.stderr,
            r.stderr)
t.eq("the refused converts left the model's files as they were", before,
     {p: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in (shard1, idx)})
t.done()

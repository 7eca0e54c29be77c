#!/usr/bin/python3
"""tests/mount/test_convert_shards.py — issue 13: `modelfs convert
--max-shard-size SIZE MODEL NAME.safetensors.index.json`.

Inputs made now by torch.save: a torchvision resnet18 state dict (random
init, 44 MiB), and a dict with a tensor bigger than the limit, an empty one
and views (strided, so read and written in pieces, not copied by range).
For each, the output is checked with a reader written here (json header +
numpy, nothing of modelfs):
  - the shard files are NAME-0000k-of-0000N.safetensors, N what a greedy
    split at tensor boundaries computed here gives, every shard within the
    limit except a tensor bigger than it, alone in its shard;
  - the index's weight_map names, for every tensor, the shard that holds
    it, and metadata.total_size is the sum of the tensors' bytes;
  - the shards, in order, hold the model's tensors in its order, each
    shard obeying the writer's rules (tiling offsets, header a multiple of
    8), every tensor's bytes loaded into torch equal to the source tensor;
  - the project's own sharded mount of the index shows the same tensors;
Refused with one line and nothing written: an OUT that is not an index
name, a size that is not one, a size of 0.
"""
import json
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "data"))
from mfstest import MODELFS, T, read_value  # noqa: E402

import torch  # noqa: E402

import make_torch  # noqa: E402

ST_TORCH = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16,
            "BF16": torch.bfloat16, "I8": torch.int8, "U8": torch.uint8, "I16": torch.int16,
            "I32": torch.int32, "I64": torch.int64, "BOOL": torch.bool}


def read_safetensors(path):
    """([(name, dtype, shape, bytes)] in offset order, problems)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack_from("<Q", raw)[0]
    problems = [] if n % 8 == 0 else ["header length %d" % n]
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    buf = raw[8 + n:]
    out, pos = [], 0
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, end = e["data_offsets"]
        if b != pos:
            problems.append("offsets do not tile at %d" % b)
        pos = end
        out.append((name, e["dtype"], tuple(e["shape"]), buf[b:end]))
    if pos != len(buf):
        problems.append("buffer of %d bytes, tensors end at %d" % (len(buf), pos))
    return out, problems


def as_torch(dtype, shape, data):
    if not data:
        return torch.zeros(shape, dtype=ST_TORCH[dtype])
    return torch.frombuffer(bytearray(data), dtype=ST_TORCH[dtype]).reshape(shape)


def greedy(sizes, limit):
    """The split the tool promises: in order, a new shard when the next tensor
    would pass the limit (and the shard has bytes already)."""
    shards, cur = [[]], 0
    for i, s in enumerate(sizes):
        if cur > 0 and cur + s > limit:
            shards.append([])
            cur = 0
        shards[-1].append(i)
        cur += s
    return shards


def run(*args):
    return subprocess.run([MODELFS, "convert"] + list(args), capture_output=True, text=True)


def check(t, label, src, tensors, limit, size_arg):
    """tensors: [(name, torch tensor)] in the model's order."""
    out = os.path.join(t.tmp, label)
    os.mkdir(out)
    index = os.path.join(out, "model.safetensors.index.json")
    r = run("--max-shard-size", size_arg, src, index)
    if not t.check("%s: convert --max-shard-size %s succeeds" % (label, size_arg),
                   r.returncode == 0 and not r.stderr, r.stderr):
        return
    sizes = [x.numel() * x.element_size() for _, x in tensors]
    plan = greedy(sizes, limit)
    n = len(plan)
    names = ["model-%05d-of-%05d.safetensors" % (k + 1, n) for k in range(n)]
    t.eq("%s: the files are the index and %d shards" % (label, n),
         sorted(names + ["model.safetensors.index.json"]), sorted(os.listdir(out)))
    with open(index) as f:
        idx = json.load(f)
    t.eq("%s: metadata.total_size is the tensors' bytes" % label, sum(sizes),
         idx["metadata"]["total_size"])
    want_map = {tensors[i][0]: names[k] for k, p in enumerate(plan) for i in p}
    t.eq("%s: weight_map names each tensor's shard" % label, want_map, idx["weight_map"])
    order, bad, over = [], [], []
    for k, fn in enumerate(names):
        got, problems = read_safetensors(os.path.join(out, fn))
        if problems:
            bad.append((fn, problems))
        total = sum(len(g[3]) for g in got)
        if total > limit and len(got) != 1:
            over.append((fn, total, len(got)))
        order += [g[0] for g in got]
        for name, dt, shape, data in got:
            x = dict(tensors).get(name)
            if x is None or not torch.equal(as_torch(dt, shape, data), x.contiguous()):
                bad.append(name)
    t.check("%s: every shard within the limit, or one tensor alone" % label, not over, over)
    t.eq("%s: the shards in order hold the tensors in the model's order" % label,
         [nm for nm, _ in tensors], order)
    t.check("%s: every tensor's dtype, shape and values; headers by the rules" % label,
            not bad, bad[:3])
    with t.mount(index) as mnt:
        seen = {}
        for dirpath, _, files in os.walk(os.path.join(mnt, "weights")):
            if "data" in files and "name" in files:
                with open(os.path.join(dirpath, "data"), "rb") as f:
                    seen[read_value(os.path.join(dirpath, "name")).decode()] = f.read()
        t.check("%s: the project's sharded mount of the index shows the same %d tensors" %
                (label, len(tensors)),
                seen == {nm: make_torch.tensor_bytes(x) for nm, x in tensors},
                "%d seen" % len(seen))
        t.eq("%s: the mount lists the shards" % label, "\n".join(names) + "\n",
             read_value(os.path.join(mnt, "meta", "shards")).decode() + "\n")


def main():
    t = T()
    torch.manual_seed(13)
    fdir = os.path.join(t.tmp, "fx")
    os.mkdir(fdir)
    fixtures = dict(make_torch.fixtures(fdir))
    res, _ = make_torch.expected(fixtures["resnet18.pt"])
    check(t, "resnet18", os.path.join(fdir, "resnet18.pt"), list(res.items()), 5 << 20, "5MiB")

    big = torch.randn(512, 600)                 # 1.2 MB, over the limit
    obj = {"small": torch.randn(1000), "big": big, "empty": torch.zeros(0),
           "t": torch.randn(300, 200).t(), "s": torch.randn(400, 300)[::2],
           "tail": torch.arange(10, dtype=torch.int64)}
    path = os.path.join(fdir, "mixed.pt")
    torch.save(obj, path)
    mixed, _ = make_torch.expected(obj)
    check(t, "mixed", path, list(mixed.items()), 300000, "300KB")

    idx = os.path.join(t.tmp, "bad", "model.safetensors.index.json")
    os.mkdir(os.path.dirname(idx))
    for what, args, needle in (
            ("an OUT that is no index name",
             ["--max-shard-size", "1MB", path, os.path.join(t.tmp, "bad", "x.safetensors")],
             "index"),
            ("a size that is not one", ["--max-shard-size", "12XB", path, idx], "not a size"),
            ("a size of 0", ["--max-shard-size", "0", path, idx], "not a size")):
        r = run(*args)
        t.check("%s: refused with one line, nothing written" % what,
                r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and
                needle in r.stderr and not os.listdir(os.path.dirname(idx)), r.stderr)
    t.done()


if __name__ == "__main__":
    main()

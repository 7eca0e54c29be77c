#!/usr/bin/python3
"""tests/mount/test_torch.py — issue 13: torch.save checkpoints mounted
without running their pickle.

Fixtures are made now by torch.save (tests/data/make_torch.py): state dicts
of three torchvision architectures (random init), a checkpoint dict with
model/optimizer/epoch and plain values, every dtype torch 1.13 writes,
transposed, sliced and permuted views, tied weights and a Parameter, empty
and 0-d tensors, pickle protocols 2 and 4, a bare tensor, an empty dict.
Checked through real mounts:
  - the tensors under weights/ are exactly the object's tensors, named by
    their '.'-joined paths; each one's dtype, shape and data equal
    t.contiguous().numpy().tobytes() (bf16 through a view as int16);
  - meta/format, meta/pickle_globals (the globals the pickle names), every
    plain value as meta/props/<path>;
  - contiguous tensors are served zero-copy (mmap of `data` works), strided
    ones give their row-major bytes at any offset (odd-sized reads);
  - the model file at the root is byte-identical;
  - a legacy (non-zip) file and a compressed member are refused with one
    line that says what they are, and nothing is mounted.
"""
import mmap
import os
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "data"))
from mfstest import MODELFS, MOUNT_MODELFS, T, is_mounted, read_value  # noqa: E402

import torch  # noqa: E402

import make_torch  # noqa: E402

t = T()
fdir = os.path.join(t.tmp, "fx")
os.mkdir(fdir)
fixtures = make_torch.fixtures(fdir)


def mounted_tensors(mnt):
    """name -> tensor directory, for every tensor under weights/."""
    out = {}
    root = os.path.join(mnt, "weights")
    if not os.path.isdir(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        if {"data", "dtype", "shape", "name"} <= set(filenames):
            out[read_value(os.path.join(dirpath, "name")).decode()] = dirpath
    return out


for fname, obj in fixtures:
    path = os.path.join(fdir, fname)
    want_t, want_p = make_torch.expected(obj)
    try:
        with t.mount(path) as mnt:
            got = mounted_tensors(mnt)
            t.eq("%s: tensor names" % fname, sorted(want_t), sorted(got))
            bad = []
            for name, tensor in want_t.items():
                d = got.get(name)
                if d is None:
                    continue
                dt = read_value(os.path.join(d, "dtype")).decode()
                sh = read_value(os.path.join(d, "shape")).decode()
                with open(os.path.join(d, "data"), "rb") as f:
                    data = f.read()
                want_sh = ",".join(str(x) for x in tensor.shape)
                if dt != make_torch.DTYPE_NAMES[tensor.dtype]:
                    bad.append("%s dtype %s" % (name, dt))
                if sh.strip("[]") != want_sh:
                    bad.append("%s shape %r, not %r" % (name, sh, want_sh))
                if data != make_torch.tensor_bytes(tensor):
                    bad.append("%s data differs (%d bytes)" % (name, len(data)))
            t.check("%s: %d tensors' dtype, shape and data" % (fname, len(want_t)), not bad,
                    "; ".join(bad[:5]))
            props = {}
            pdir = os.path.join(mnt, "meta", "props")
            for p in os.listdir(pdir):
                props[p] = read_value(os.path.join(pdir, p)).decode()
            want_pp = {k.replace("/", "%2F"): v for k, v in want_p.items()}
            t.eq("%s: props" % fname, want_pp, props)
            t.eq("%s: meta/format" % fname, "torch", read_value(mnt + "/meta/format").decode())
            globs = read_value(mnt + "/meta/pickle_globals").decode().split()
            if want_t:
                t.check("%s: meta/pickle_globals names the rebuild function" % fname,
                        "torch._utils._rebuild_tensor_v2" in globs, globs)
            with open(path, "rb") as a, open(os.path.join(mnt, fname), "rb") as b:
                t.check("%s: model file at the root is byte-identical" % fname,
                        a.read() == b.read())
    except RuntimeError as e:
        t.not_ok("%s mounts" % fname, e)

# Zero-copy and strided reads at odd offsets.
path = os.path.join(fdir, "views.pt")
views = dict(fixtures)["views.pt"]
with t.mount(path) as mnt:
    got = mounted_tensors(mnt)
    with open(os.path.join(got["w"], "data"), "rb") as f:
        m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        t.check("mmap of a contiguous tensor's data", m[:] == make_torch.tensor_bytes(views["w"]))
        m.close()
    for name in ("w_t", "cube_perm", "w_cols"):
        want = make_torch.tensor_bytes(views[name])
        parts = []
        with open(os.path.join(got[name], "data"), "rb", buffering=0) as f:
            while True:
                b = f.read(7)
                if not b:
                    break
                parts.append(b)
        t.check("%s: 7-byte reads give the row-major bytes" % name, b"".join(parts) == want)
        with open(os.path.join(got[name], "data"), "rb", buffering=0) as f:
            f.seek(5)
            t.check("%s: a read at offset 5" % name, f.read(9) == want[5:14])
    st = os.stat(os.path.join(got["w_t"], "data"))
    t.eq("strided tensor's data size", views["w_t"].numel() * 4, st.st_size)
    with open(os.path.join(got["embed.weight"], "data"), "rb") as a, \
            open(os.path.join(got["lm_head.weight"], "data"), "rb") as b:
        t.check("tied weights read the same bytes", a.read() == b.read())


def refused(what, path, needle):
    mnt = os.path.join(t.tmp, "mnt-refused")
    os.makedirs(mnt, exist_ok=True)
    r = subprocess.run([MOUNT_MODELFS, path, mnt], capture_output=True, text=True, timeout=60)
    lines = r.stderr.strip().splitlines()
    t.check("%s: refused, one line naming it" % what,
            r.returncode != 0 and len(lines) == 1 and needle in lines[0], r.stderr)
    if is_mounted(mnt):
        subprocess.run(["fusermount3", "-u", mnt])
        t.not_ok("%s: nothing mounted" % what)


legacy = os.path.join(fdir, "legacy.pt")
torch.save(make_torch._dtypes(), legacy, _use_new_zipfile_serialization=False)
refused("legacy torch.save file", legacy, "legacy torch.save")

# A checkpoint whose storages are deflated: rewrite views.pt's members compressed.
comp = os.path.join(fdir, "compressed.pt")
with zipfile.ZipFile(path) as zi, zipfile.ZipFile(comp, "w", zipfile.ZIP_DEFLATED) as zo:
    for info in zi.infolist():
        zo.writestr(info.filename, zi.read(info.filename))
refused("compressed members", comp, "compressed")

# A sharded checkpoint: pytorch_model.bin.index.json and 3 shards, one tree.
sdir = os.path.join(t.tmp, "sharded")
os.mkdir(sdir)
index, sd = make_torch.sharded(sdir)
with t.mount(index) as mnt:
    got = mounted_tensors(mnt)
    t.eq("sharded: tensor names", sorted(sd), sorted(got))
    bad = [n for n in sd if n in got and
           open(os.path.join(got[n], "data"), "rb").read() != make_torch.tensor_bytes(sd[n])]
    t.check("sharded: every tensor's data", not bad, bad[:3])
    t.eq("sharded: meta/shards", sorted(f for f in os.listdir(sdir) if f.endswith(".bin")),
         read_value(mnt + "/meta/shards").decode().split())
    t.eq("sharded: meta/props/total_size",
         str(sum(x.numel() * x.element_size() for x in sd.values())),
         read_value(mnt + "/meta/props/total_size").decode())
    t.eq("sharded: meta/format", "torch", read_value(mnt + "/meta/format").decode())
    t.check("sharded: the root shows the index and the shards",
            set(os.listdir(sdir)) <= set(os.listdir(mnt)), os.listdir(mnt))
    try:
        with open(os.path.join(got[list(sd)[0]], "data"), "r+b") as f:
            f.write(b"x")
        t.not_ok("sharded: tensors are read-only", "the write succeeded")
    except OSError:
        t.ok("sharded: tensors are read-only")
os.rename(os.path.join(sdir, "pytorch_model-00002-of-00003.bin"), os.path.join(sdir, "gone"))
refused("sharded with a shard missing", index, "missing")

# TorchScript: its members as read-only uint8 files (the deflated code/
# ones inflated), nothing unpickled.
ts = os.path.join(fdir, "script.pt")
torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), ts)
with zipfile.ZipFile(ts) as z, t.mount(ts) as mnt:
    t.eq("torchscript: meta/format", "torchscript", read_value(mnt + "/meta/format").decode())
    t.check("torchscript: no meta/pickle_globals",
            not os.path.exists(mnt + "/meta/pickle_globals"))
    got = mounted_tensors(mnt)
    stored = [i.filename for i in z.infolist() if i.compress_type == zipfile.ZIP_STORED]
    members = [i.filename for i in z.infolist()]
    t.check("torchscript: torch deflates some members (code/)",
            len(stored) < len(members), members)
    t.eq("torchscript: every member is a tensor", sorted(members), sorted(got))
    bad = [n for n in members if n in got and
           open(os.path.join(got[n], "data"), "rb").read() != z.read(n)]
    t.check("torchscript: each member's data is its (inflated) bytes", not bad, bad)
    try:
        with open(os.path.join(got[stored[0]], "data"), "r+b") as f:
            f.write(b"x")
        t.not_ok("torchscript: members are read-only", "the write succeeded")
    except OSError:
        t.ok("torchscript: members are read-only")

r = subprocess.run([MODELFS, "info", os.path.join(fdir, "checkpoint.pt")], capture_output=True,
                   text=True)
t.check("modelfs info of a checkpoint", r.returncode == 0 and "format: torch" in r.stdout and
        "optimizer.state.0.momentum_buffer" in r.stdout, r.stdout[-300:] + r.stderr)
t.done()

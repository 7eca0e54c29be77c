#!/usr/bin/python3
"""tests/mount/test_torch_write.py — issue 13: edits of torch.save
checkpoints through a mount.

  - a same-size edit of a tensor's data (a whole rewrite, and a few bytes
    in the middle) commits with `modelfs commit`: torch.load(path,
    weights_only=True) returns the new values and every other tensor
    unchanged; Python's zipfile finds every member's CRC-32 right
    (testzip), and the local header's CRC equals the central directory's;
  - a no-op commit (the same bytes written back) leaves the file
    byte-identical;
  - dtype and shape files are read-only (EACCES), tensors that share bytes
    (tied weights, views) and strided views cannot be written, a commit of
    data of another size is refused with a line and leaves the file as it
    was;
  - the same edit committed by a patch of the file, in place
    (commit=inplace) and as a reflink clone on an XFS image (commit=auto),
    gets its CRC-32 fields patched too.
"""
import collections
import hashlib
import os
import struct
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from mfstest import MODELFS, T, read_value  # noqa: E402

import torch  # noqa: E402

t = T()


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def tensor_dirs(mnt):
    out = {}
    for dirpath, _, files in os.walk(os.path.join(mnt, "weights")):
        if "name" in files and "data" in files:
            out[read_value(os.path.join(dirpath, "name")).decode()] = dirpath
    return out


def crc_fields(path):
    """Members whose local header or data descriptor CRC-32 disagrees with the
    central directory's (a local 0 is the format's "see the descriptor")."""
    bad = []
    with open(path, "rb") as f:
        raw = f.read()
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            o = info.header_offset
            local = struct.unpack_from("<I", raw, o + 14)[0]
            nlen, xlen = struct.unpack_from("<HH", raw, o + 26)
            if info.flag_bits & 8:
                dd = o + 30 + nlen + xlen + info.compress_size
                if raw[dd:dd + 4] == b"PK\x07\x08":
                    dd += 4
                if struct.unpack_from("<I", raw, dd)[0] != info.CRC or local not in (0, info.CRC):
                    bad.append(info.filename)
            elif local != info.CRC:
                bad.append(info.filename)
    return bad


g = torch.Generator().manual_seed(7)
base = torch.randn(6, 4, generator=g)
emb = torch.randn(8, 3, generator=g)
sd = collections.OrderedDict([
    ("fc.weight", torch.randn(16, 8, generator=g)),
    ("fc.bias", torch.randn(16, generator=g)),
    ("bn.num_batches_tracked", torch.tensor(5)),
    ("half", torch.randn(10, generator=g).half()),
    ("embed.weight", emb),
    ("head.weight", emb),           # tied
    ("base", base),
    ("base_t", base.t()),           # a strided view of base
])
path = os.path.join(t.tmp, "model.pt")
torch.save(sd, path)
orig = {k: v.clone() for k, v in sd.items()}

# A no-op commit: the same bytes written back.
before = sha(path)
with t.mount(path) as mnt:
    d = tensor_dirs(mnt)
    with open(os.path.join(d["fc.bias"], "data"), "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(data)
    r = subprocess.run([MODELFS, "commit", mnt], capture_output=True, text=True)
    t.check("no-op commit succeeds", r.returncode == 0, r.stderr)
t.eq("no-op commit leaves the file byte-identical", before, sha(path))

new_w = torch.arange(128, dtype=torch.float32).reshape(16, 8) / 7
with t.mount(path) as mnt:
    d = tensor_dirs(mnt)
    with open(os.path.join(d["fc.weight"], "data"), "r+b") as f:
        f.write(new_w.numpy().tobytes())
    with open(os.path.join(d["half"], "data"), "r+b") as f:
        f.seek(6)
        f.write(torch.tensor([1.5, -2.0], dtype=torch.float16).numpy().tobytes())
    with open(os.path.join(d["bn.num_batches_tracked"], "data"), "r+b") as f:
        f.write(struct.pack("<q", 1234))
    for what, p in (("dtype", os.path.join(d["fc.weight"], "dtype")),
                    ("shape", os.path.join(d["fc.weight"], "shape")),
                    ("tied weight data", os.path.join(d["head.weight"], "data")),
                    ("strided view data", os.path.join(d["base_t"], "data")),
                    ("data under a view", os.path.join(d["base"], "data"))):
        try:
            with open(p, "r+b") as f:
                f.write(b"0")
            t.not_ok("%s is not writable" % what, "the write succeeded")
        except PermissionError:
            t.ok("%s is not writable (EACCES)" % what)
        except OSError as e:
            t.not_ok("%s is not writable (EACCES)" % what, e)
    r = subprocess.run([MODELFS, "commit", mnt], capture_output=True, text=True)
    t.check("commit of three data edits succeeds", r.returncode == 0, r.stderr)

loaded = torch.load(path, weights_only=True)
want = dict(orig)
want["fc.weight"] = new_w
h = orig["half"].clone()
h[3], h[4] = 1.5, -2.0
want["half"] = h
want["bn.num_batches_tracked"] = torch.tensor(1234)
t.eq("torch.load(weights_only=True) sees the same names", sorted(want), sorted(loaded))
bad = [k for k in want if k in loaded and not torch.equal(loaded[k], want[k])]
t.check("torch.load sees the new values and every other tensor unchanged", not bad, bad)
t.check("tied weights still share their storage after the commit",
        loaded["embed.weight"].data_ptr() == loaded["head.weight"].data_ptr())
with zipfile.ZipFile(path) as z:
    t.eq("zipfile: every member's CRC-32 is right", None, z.testzip())
t.eq("local header and data descriptor CRCs agree with the central directory", [],
     crc_fields(path))

# Data of another size: refused at commit, the file unchanged.
before = sha(path)
with t.mount(path) as mnt:
    d = tensor_dirs(mnt)
    with open(os.path.join(d["fc.bias"], "data"), "ab") as f:
        f.write(b"\0" * 4)
    r = subprocess.run([MODELFS, "commit", mnt], capture_output=True, text=True)
    t.check("commit of a size change is refused with a line naming the tensor",
            r.returncode != 0 and "fc.bias" in r.stderr, r.stderr)
    subprocess.run([MODELFS, "abort", mnt], capture_output=True)
t.eq("the refused commit left the file as it was", before, sha(path))


def patched_commit(label, d, mode, want_path):
    """A same-size edit committed by a patch of the file (in place, or a
    reflink clone): the CRC-32 fields are patched with the data."""
    m = os.path.join(d, "m.pt")
    torch.save(sd, m)
    new = torch.full((16,), -3.5)
    with t.mount(m, "-o", "commit=" + mode) as mnt:
        dd = tensor_dirs(mnt)
        with open(os.path.join(dd["fc.bias"], "data"), "r+b") as f:
            f.write(new.numpy().tobytes())
        r = subprocess.run([MODELFS, "commit", mnt], capture_output=True, text=True)
        st = subprocess.run([MODELFS, "status", mnt], capture_output=True, text=True).stdout
        last = [ln for ln in st.splitlines() if ln.startswith("last commit")]
        t.check("%s: commit=%s of a same-size edit: %s" % (label, mode, want_path),
                r.returncode == 0 and any(" %s " % want_path in ln for ln in last),
                (r.stderr, last))
    got = torch.load(m, weights_only=True)
    t.check("%s: torch.load sees the edit, the rest unchanged" % label,
            torch.equal(got["fc.bias"], new) and
            all(torch.equal(got[k], orig[k]) for k in orig if k != "fc.bias"))
    with zipfile.ZipFile(m) as z:
        t.eq("%s: zipfile finds every CRC-32 right" % label, None, z.testzip())
    t.eq("%s: local header and data descriptor CRCs agree" % label, [], crc_fields(m))


d = os.path.join(t.tmp, "inplace")
os.mkdir(d)
patched_commit("in place", d, "inplace", "inplace")

# A reflink clone (commit=auto on XFS with reflinks), when this machine can make one.
img = os.path.join(t.tmp, "xfs.img")
with open(img, "wb") as f:
    f.truncate(320 << 20)
xd = os.path.join(t.tmp, "xfs")
os.mkdir(xd)
r = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", img], capture_output=True, text=True)
if t.check("mkfs.xfs -m reflink=1 of an image", r.returncode == 0, r.stderr):
    r = subprocess.run(["mount", "-o", "loop", img, xd], capture_output=True, text=True)
    if t.check("loop mount of the XFS image", r.returncode == 0, r.stderr):
        try:
            patched_commit("clone on XFS", xd, "auto", "clone")
        finally:
            if subprocess.run(["umount", xd]).returncode != 0:
                subprocess.run(["umount", "-l", xd])
os.unlink(img)
t.done()

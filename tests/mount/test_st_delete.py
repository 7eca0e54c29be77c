#!/usr/bin/python3
"""Issue 17 item 2: `rm -r weights/<path>` of a safetensors tensor stages its
deletion, and `modelfs commit` writes a file without it.  Through real
mounts, with the committed file judged by a reader written here (the 8-byte
length, the JSON header, numpy on the buffer), not by modelfs:

(a) one tensor of four deleted: its directory goes at once, status lists
    the deletion; after the commit the header has no entry for it, the
    others tile the buffer from 0 in their old order (no hole), the header
    is padded with spaces to a multiple of 8, every kept tensor's bytes are
    its old ones, __metadata__ is kept.
(b) two deletions, a rename (`mv` of its directory) and a reshape (dtype, shape and
    new bytes) of other tensors in one commit.
(c) every tensor deleted: the file is a header `{"__metadata__":...}` (then
    `{}` with no metadata) and an empty buffer, and mounts again.
(d) kill -9 with a deletion staged: the model is untouched, the next mount
    replays the deletion from the journal and commits it.
(e) `modelfs abort` drops a staged deletion: the directory is back.
(f) a sharded checkpoint: rm -r fails with EPERM, the files byte-identical.
(g) through a pack mount: the deletion commits a new pack that `modelfs
    verify` passes and that unpacks to the plainly committed file.
"""
import errno
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from mfstest import MODELFS, MOUNT_MODELFS, T, daemon_pids, read, umount  # noqa: E402
from txnacc import abort, commit, sha256_file, status, why  # noqa: E402
import packfx  # noqa: E402

ST_NP = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}
ST_NP_T = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "BF16": np.uint16}


def read_st(path):
    """An independent reader: (header dict, {name: array}), or raises
    ValueError naming what breaks the format's rules."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = np.frombuffer(raw[:8], "<u8")
    n = int(n)
    if n % 8:
        raise ValueError("header length %d is not a multiple of 8" % n)
    hb = raw[8:8 + n]
    text = hb.rstrip(b" ")
    if not text.endswith(b"}") or len(hb) - len(text) >= 8:
        raise ValueError("header padding of %r is not up to 7 spaces" % hb[-16:])
    import json
    header = json.loads(text)
    buf = raw[8 + n:]
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k)
                   for k, v in header.items() if k != "__metadata__")
    pos = 0
    for a, b, k in spans:
        if a != pos:
            raise ValueError("tensor %s starts at %d, expected %d (hole or overlap)" % (k, a, pos))
        pos = b
    if pos != len(buf):
        raise ValueError("tensors end at %d, the buffer is %d bytes" % (pos, len(buf)))
    arrays = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        arr = np.frombuffer(buf[a:b], dtype=ST_NP_T[v["dtype"]])
        if arr.size != int(np.prod(v["shape"], dtype=np.int64)):
            raise ValueError("tensor %s: %d elements for shape %r" % (k, arr.size, v["shape"]))
        arrays[k] = arr.reshape(v["shape"])
    return header, arrays


def order(header):
    return [k for _, k in sorted((v["data_offsets"][0], k) for k, v in header.items()
                                 if k != "__metadata__")]


def rm_r(path):
    return subprocess.run(["rm", "-r", path], capture_output=True, text=True, timeout=60)


def put(path, text):
    with open(path, "w") as f:
        f.write(text)


def tensors5(rng):
    return [("a.weight", rng.standard_normal((2, 3)).astype(np.float32)),
            ("b.idx", np.arange(7, dtype=np.int64)),
            ("c.bias", rng.standard_normal((5,)).astype(np.float32)),
            ("d.half", rng.standard_normal((3, 3)).astype(np.float16)),
            ("e.last", np.arange(11, dtype=np.int32))]


def write(path, tensors, meta):
    dt = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
          np.dtype(np.int64): "I64", np.dtype(np.int32): "I32"}
    packfx.st_write(path, {k: (dt[a.dtype], list(a.shape), a.tobytes()) for k, a in tensors},
                    metadata=meta)


def judge(t, what, path, want, meta):
    """The committed file passes the reader, holds exactly `want` (a list of
    (name, array) in buffer order) and keeps `meta`."""
    try:
        header, arrays = read_st(path)
        t.ok("%s: the file passes the independent reader (8-byte aligned header, "
             "space padding, no hole, no overlap)" % what)
    except (ValueError, KeyError) as e:
        t.not_ok("%s: the file passes the independent reader" % what, e)
        return None
    t.eq("%s: the tensors kept, in their old order" % what, [k for k, _ in want], order(header))
    t.check("%s: every kept tensor has its dtype, shape and bytes" % what,
            all(k in arrays and arrays[k].dtype == a.dtype and arrays[k].shape == a.shape
                and arrays[k].tobytes() == a.tobytes() for k, a in want))
    t.eq("%s: __metadata__" % what, meta, header.get("__metadata__"))
    return header


def part_a(t, rng):
    model = os.path.join(t.tmp, "a.safetensors")
    ts = tensors5(rng)[:4]
    write(model, ts, {"format": "pt"})
    with t.mount(model) as mnt:
        r = rm_r(mnt + "/weights/b")
        t.check("(a) rm -r weights/b (the tensor b.idx) succeeds", r.returncode == 0, r.stderr)
        t.check("(a) its directory is gone at once", not os.path.exists(mnt + "/weights/b/idx"))
        t.eq("(a) the directory on its way stays, empty, until the commit", [],
             os.listdir(mnt + "/weights/b"))
        t.check("(a) and its npy view", not os.path.exists(mnt + "/npy/b/idx.npy"))
        st = status(mnt)
        t.check("(a) status lists the deletion", "staged tensor weights b.idx deleted\n" in st, st)
        t.check("(a) the other tensors are shown", all(os.path.isdir(mnt + "/weights/" + p) for p in
                                                      ("a/weight", "c/bias", "d/half")))
        fd = os.open(mnt + "/weights/d/half/data", os.O_RDONLY)
        try:
            r = commit(mnt)
            t.check("(a) commit of the deletion", r.returncode == 0, why(r) + status(mnt))
            t.eq("(a) a descriptor of a later tensor opened before the commit reads it after",
                 ts[3][1].tobytes(), os.pread(fd, 64, 0))
        finally:
            os.close(fd)
        t.eq("(a) after the commit weights/ holds the three others", ["a", "c", "d"],
             sorted(os.listdir(mnt + "/weights")))
        t.eq("(a) a later tensor reads its bytes after the ids moved down",
             ts[3][1].tobytes(), read(mnt + "/weights/d/half/data", "rb"))
    judge(t, "(a)", model, [ts[0], ts[2], ts[3]], {"format": "pt"})


def part_b(t, rng):
    model = os.path.join(t.tmp, "b.safetensors")
    ts = tensors5(rng)
    write(model, ts, {"format": "pt", "k": "v"})
    c1 = rng.standard_normal((4, 2)).astype(np.float16)
    with t.mount(model) as mnt:
        r1, r2 = rm_r(mnt + "/weights/a"), rm_r(mnt + "/weights/d/half")
        t.check("(b) rm -r of a.weight and d.half", r1.returncode == 0 and r2.returncode == 0,
                r1.stderr + r2.stderr)
        try:
            os.rename(mnt + "/weights/b/idx", mnt + "/weights/b/renamed")
            t.eq("(b) the renamed tensor's name file", "b.renamed\n",
                 read(mnt + "/weights/b/renamed/name"))
            w = mnt + "/weights/c/bias"
            put(w + "/dtype", "float16\n")
            put(w + "/shape", "4,2\n")
            with open(w + "/data", "wb") as f:
                f.write(c1.tobytes())
            t.ok("(b) b.idx renamed (mv) and c.bias reshaped in the same stage")
        except OSError as e:
            t.not_ok("(b) b.idx renamed and c.bias reshaped in the same stage", e)
        r = commit(mnt)
        t.check("(b) one commit of two deletions, a rename and a reshape", r.returncode == 0,
                why(r) + status(mnt))
        t.eq("(b) the mount shows the committed tree", ["b", "c", "e"],
             sorted(os.listdir(mnt + "/weights")))
    h = judge(t, "(b)", model, [("b.renamed", ts[1][1]), ("c.bias", c1), ts[4]],
              {"format": "pt", "k": "v"})
    if h:
        t.eq("(b) c.bias is F16 [4,2]", ("F16", [4, 2]), (h["c.bias"]["dtype"], h["c.bias"]["shape"]))


def part_c(t, rng):
    for meta in ({"framework": "pt"}, None):
        what = "(c%s)" % ("" if meta else ", no metadata")
        model = os.path.join(t.tmp, "c%d.safetensors" % (meta is None))
        ts = tensors5(rng)[:3]
        write(model, ts, meta)
        with t.mount(model) as mnt:
            rcs = [rm_r(mnt + "/weights/" + d).returncode for d in ("a", "b", "c")]
            t.eq("%s rm -r of every tensor" % what, [0, 0, 0], rcs)
            t.eq("%s no tensor is left in weights/" % what, [],
                 [p for p, _, fs in os.walk(mnt + "/weights") if fs])
            r = commit(mnt)
            t.check("%s commit of deleting every tensor" % what, r.returncode == 0,
                    why(r) + status(mnt))
        judge(t, what, model, [], meta)
        with open(model, "rb") as f:
            raw = f.read()
        # The bytes the reference writer's serialize() gives for no tensors
        # (safetensors/src/tensor.rs, test_empty): {} or the metadata alone,
        # padded with spaces to 8 and 40 bytes.
        want = b'{"__metadata__":{"framework":"pt"}}' if meta else b"{}"
        want += b" " * (-len(want) % 8)
        t.eq("%s the file is the reference writer's empty file (%d-byte header)"
             % (what, len(want)), struct.pack("<Q", len(want)) + want, raw)
        try:
            with t.mount(model) as mnt:
                t.eq("%s the empty model mounts, weights/ empty" % what, [],
                     os.listdir(mnt + "/weights") if os.path.isdir(mnt + "/weights") else [])
        except RuntimeError as e:
            t.not_ok("%s the empty model mounts" % what, e)


def part_d(t, rng):
    model = os.path.join(t.tmp, "d.safetensors")
    ts = tensors5(rng)
    write(model, ts, {"format": "pt"})
    before = sha256_file(model)
    mnt = os.path.join(t.tmp, "mnt.crash")
    os.mkdir(mnt)
    r = subprocess.run([MOUNT_MODELFS, model, mnt], capture_output=True, text=True, timeout=60)
    if r.returncode:
        t.not_ok("(d) mount for the crash test", r.stderr)
        return
    try:
        r = rm_r(mnt + "/weights/c")
        t.check("(d) rm -r weights/c staged", r.returncode == 0, r.stderr)
    finally:
        for pid in daemon_pids(mnt):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
        umount(mnt)
    t.eq("(d) kill -9 with a staged deletion leaves the model as it was", before,
         sha256_file(model))
    with t.mount(model) as mnt2:
        t.check("(d) the next mount shows the replayed deletion",
                not os.path.exists(mnt2 + "/weights/c/bias") and
                os.path.isdir(mnt2 + "/weights/d/half"), os.listdir(mnt2 + "/weights"))
        t.check("(d) status lists it", "staged tensor weights c.bias deleted\n" in status(mnt2),
                status(mnt2))
        r = commit(mnt2)
        t.check("(d) and commits it", r.returncode == 0, why(r) + status(mnt2))
    judge(t, "(d)", model, [ts[0], ts[1], ts[3], ts[4]], {"format": "pt"})


def part_e(t, rng):
    model = os.path.join(t.tmp, "e.safetensors")
    write(model, tensors5(rng), {"format": "pt"})
    before = sha256_file(model)
    with t.mount(model) as mnt:
        rm_r(mnt + "/weights/b")
        t.check("(e) deletion staged", not os.path.exists(mnt + "/weights/b/idx"))
        r = abort(mnt)
        t.check("(e) modelfs abort", r.returncode == 0, why(r))
        t.check("(e) the directory is back", os.path.isdir(mnt + "/weights/b/idx"))
        t.check("(e) nothing staged", "staged " not in status(mnt), status(mnt))
    t.eq("(e) the model is byte-identical", before, sha256_file(model))


def part_f(t, rng):
    index = packfx.safetensors_sharded(os.path.join(t.tmp, "sharded"), rng)
    d = os.path.dirname(index)
    before = {f: sha256_file(os.path.join(d, f)) for f in os.listdir(d)}
    with t.mount(index) as mnt:
        try:
            os.rmdir(mnt + "/weights/s0/b/f32")
            t.not_ok("(f) rmdir of a sharded tensor is refused")
        except OSError as e:
            t.eq("(f) rmdir of a sharded tensor is refused with EPERM", errno.EPERM, e.errno)
        r = rm_r(mnt + "/weights/s0/b")
        t.check("(f) rm -r of a sharded tensor fails", r.returncode != 0, r.stderr)
        t.check("(f) the tensor is still there", os.path.isdir(mnt + "/weights/s0/b/f32"))
        t.check("(f) nothing staged", "staged " not in status(mnt), status(mnt))
    t.eq("(f) the sharded files are byte-identical", before,
         {f: sha256_file(os.path.join(d, f)) for f in os.listdir(d)})


def part_g(t, rng):
    base = os.path.join(t.tmp, "g")
    model = packfx.safetensors(os.path.join(base, "plain"), rng, n=50_000)
    pdir = os.path.join(base, "pack")
    os.makedirs(pdir)
    pk = os.path.join(pdir, "model.safetensors.mfs")
    r = subprocess.run([MODELFS, "pack", model, "-o", pk], capture_output=True, text=True,
                       timeout=120)
    if r.returncode:
        t.not_ok("(g) modelfs pack", r.stderr)
        return
    for m in (model, pk):
        with t.mount(m) as mnt:
            r1, r2 = rm_r(mnt + "/weights/b"), rm_r(mnt + "/weights/d")
            r = commit(mnt)
            t.check("(g) rm -r of b.f32 and d.i32 committed on the %s mount"
                    % ("pack" if m == pk else "plain"),
                    r1.returncode == 0 and r2.returncode == 0 and r.returncode == 0,
                    r1.stderr + r2.stderr + why(r) + status(mnt))
    v = subprocess.run([MODELFS, "verify", pk], capture_output=True, text=True, timeout=120)
    t.check("(g) verify passes on the new pack", v.returncode == 0 and "ok:" in v.stdout,
            v.stdout + v.stderr)
    dest = os.path.join(base, "un")
    u = subprocess.run([MODELFS, "unpack", pk, "-o", dest], capture_output=True, text=True,
                       timeout=120)
    got = os.path.join(dest, "model.safetensors")
    t.check("(g) unpack of the new pack equals the plainly committed file",
            u.returncode == 0 and os.path.exists(got) and sha256_file(got) == sha256_file(model),
            u.stderr)
    try:
        h, _ = read_st(model)
        t.eq("(g) the committed file keeps a, c, e", ["a.bf16", "c.f16", "e.tied"], order(h))
    except (ValueError, KeyError) as e:
        t.not_ok("(g) the committed file passes the independent reader", e)
    shutil.rmtree(base, ignore_errors=True)


def main():
    t = T()
    rng = np.random.default_rng(17)
    for part in (part_a, part_b, part_c, part_d, part_e, part_f, part_g):
        try:
            part(t, rng)
        except RuntimeError as e:
            t.not_ok(part.__name__ + ": mount", e)
    t.done()


main()

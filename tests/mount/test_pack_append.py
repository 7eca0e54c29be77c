#!/usr/bin/python3
"""Appending commits into a pack (issue 14, item 4; doc/pack.md, "Appending").

With commit=auto (the default) a commit through a pack mount writes only
what changed after the pack's end, with its new seek table and manifest,
through the redo log (txn/commit.c, mfs_commit_append); the old bytes are
never written.  Checked with real mounts and `modelfs` itself:
  - the old pack is a byte-identical prefix of the new one, which grew by
    about the compressed size of the edit (not a copy of the pack);
  - unpack of the new pack equals the plainly edited model, verify passes,
    the edited tensor's SHA-256 is its new bytes', the others' are kept;
    a file over 64 MiB gets a null SHA-256 (verify prints the computed
    one and says none is recorded), a small one its real SHA-256;
  - a remount shows the new bytes and stages nothing; meta/pack/sha256 says
    "unknown" for the big file;
  - repeated commits never let dead bytes pass a quarter of the pack: one
    of them rewrites it whole (smaller again, SHA-256 recorded);
  - -o commit=rewrite writes a whole new pack (no dead bytes, SHA-256);
  - a --plain pack is rewritten, so zstd -d still gives the model;
  - a hard-linked pack is not appended to (the commit refuses it, as any
    hard-linked model's);
  - kill -9 at each write into the pack leaves a torn end that verify
    names and a remount finishes (tests/tools/killwrite.c);
  - a read-only mount of the old pack, open during the append, keeps
    serving the old bytes; a remount shows the new ones.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from mfstest import MODELFS, T  # noqa: E402
import packfx  # noqa: E402
from packfx import Pack  # noqa: E402
from txnacc import Daemon, status  # noqa: E402

t = T()
MIB = 1 << 20


def run(*args, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def read(p):
    with open(p, "rb") as f:
        return f.read()


def model_of(d, n_tensors, per, rng, dtype="BF16"):
    """A safetensors of n_tensors tensors of `per` bytes each, and its pack."""
    os.makedirs(os.path.join(d, "pack"))
    model = os.path.join(d, "model.safetensors")
    ts = {}
    for i in range(n_tensors):
        x = rng.normal(0, 0.02, per // (2 if dtype == "BF16" else 4))
        raw = packfx.bf16(x) if dtype == "BF16" else x.astype(np.float32).tobytes()
        ts["t%02d" % i] = (dtype, [len(raw) // (2 if dtype == "BF16" else 4)], raw)
    packfx.st_write(model, ts)
    pk = os.path.join(d, "pack", "model.safetensors.mfs")
    r = run(MODELFS, "pack", model, "-o", pk)
    if r.returncode != 0:
        raise RuntimeError("modelfs pack: " + r.stderr.strip())
    return model, pk


def edit_plain(model, name, new):
    """The same edit made to the plain model, by hand."""
    b = bytearray(read(model))
    hlen = int.from_bytes(b[:8], "little")
    h = json.loads(b[8:8 + hlen])
    a, e = h[name]["data_offsets"]
    assert e - a == len(new)
    b[8 + hlen + a:8 + hlen + e] = new
    with open(model, "wb") as f:
        f.write(b)


class Done:
    """`modelfs commit`'s result, with the mount's status line of it."""

    def __init__(self, r, st):
        self.returncode = r.returncode
        self.stdout = r.stdout + "".join(ln for ln in st.splitlines(True)
                                         if ln.startswith("last commit"))
        self.stderr = r.stderr


def commit_edit(mnt, name, new):
    with open(os.path.join(mnt, "weights", name, "data"), "r+b") as f:
        f.write(new)
    r = run(MODELFS, "commit", mnt)
    return Done(r, status(mnt))


def side_files(pk):
    base = "." + os.path.basename(pk) + ".modelfs-"
    return sorted(x[len(base):].split("-")[0] for x in os.listdir(os.path.dirname(pk))
                  if x.startswith(base) and "journal" not in x)


rng = np.random.default_rng(3)

# ------------------------------------------------------------ a big pack: one append

d = os.path.join(t.tmp, "big")
model, pk = model_of(d, 18, 4 * MIB, rng)      # 72 MiB: over the hash limit (64 MiB)
old = read(pk)
oldp = Pack(pk)
new = packfx.bf16(rng.normal(0, 0.02, 2 * MIB))
try:
    with t.mount(pk) as m:
        r = commit_edit(m, "t09", new)
    t.check("big pack: the commit appends (commit=auto)", r.returncode == 0 and
            "ok append" in r.stdout, r.stdout + r.stderr)
    cur = read(pk)
    grew = len(cur) - len(old)
    t.check("big pack: the old pack is a byte-identical prefix of the new one",
            cur[:len(old)] == old)
    t.check("big pack: it grew by about the edit's compressed size (%d bytes for a 4 MiB "
            "edit of a %d-byte pack), not by a copy" % (grew, len(old)),
            MIB < grew < 4 * MIB + 256 * 1024, grew)
    edit_plain(model, "t09", new)
    dest = os.path.join(t.tmp, "un-big")
    u = run(MODELFS, "unpack", pk, "-o", dest)
    t.check("big pack: unpack equals the plainly edited model", u.returncode == 0 and
            read(os.path.join(dest, "model.safetensors")) == read(model), u.stderr)
    p = Pack(pk)
    t.eq("big pack: the manifest's file SHA-256 is null (not recomputed over 72 MiB)", None,
         p.manifest["files"][0]["sha256"])
    tsha = {x["name"]: x["sha256"] for x in p.manifest["tensors"]}
    osha = {x["name"]: x["sha256"] for x in oldp.manifest["tensors"]}
    t.eq("big pack: the edited tensor's SHA-256 is its new bytes'", sha(new), tsha.get("t09"))
    t.check("big pack: every other tensor keeps its SHA-256",
            all(tsha[k] == osha[k] for k in osha if k != "t09") and len(tsha) == len(osha))
    t.check("big pack: every chunk of the new seek table but the edited ones names an old frame",
            sum(1 for c in p.chunks if c[0] >= len(old)) == 16 and
            all(c[0] + c[1] <= p.data_end for c in p.chunks), [c for c in p.chunks if c[0] >= len(old)][:3])
    v = run(MODELFS, "verify", pk)
    t.check("big pack: verify passes, prints the file's SHA-256 and says none is recorded",
            v.returncode == 0 and sha(read(model)) in v.stdout and "records none" in v.stdout,
            v.stdout + v.stderr)
    t.eq("big pack: no redo log or temp left beside the pack", [], side_files(pk))
    with t.mount(pk) as m:
        t.check("big pack: the remount shows the new bytes",
                read(os.path.join(m, "weights", "t09", "data")) == new)
        t.check("big pack: the remount stages nothing",
                not any(ln.startswith("staged") for ln in status(m).splitlines()), status(m))
        t.eq("big pack: meta/pack/sha256 says the file's hash is unknown", "unknown",
             read(os.path.join(m, "meta", "pack", "sha256")).decode().strip())

    # ------------------------------------------------------------ dead space
    sizes, rewrote, fresh = [], None, len(old)
    with t.mount(pk) as m:
        for i in range(12):
            x = packfx.bf16(rng.normal(0, 0.02, 2 * MIB))
            r = commit_edit(m, "t03", x)
            if r.returncode != 0:
                t.not_ok("dead space: commit %d" % i, r.stderr)
                break
            edit_plain(model, "t03", x)
            sizes.append(len(read(pk)))
            if rewrote is None and len(sizes) > 1 and sizes[-1] < sizes[-2]:
                rewrote = i
                after = Pack(pk).manifest["files"][0]["sha256"]
    t.check("dead space: of 12 commits of one tensor, one rewrote the pack (smaller again; "
            "sizes %s)" % [s // 1000 for s in sizes], rewrote is not None, sizes)
    t.check("dead space: the pack never grew past 4/3 of a fresh one (%d) plus an edit"
            % fresh, max(sizes) <= fresh * 4 // 3 + 4 * MIB, max(sizes))
    if rewrote is not None:
        t.check("dead space: the rewrite recorded the file's SHA-256 again", after is not None)
    dest = os.path.join(t.tmp, "un-dead")
    u = run(MODELFS, "unpack", pk, "-o", dest)
    t.check("dead space: after 13 commits, unpack equals the plainly edited model",
            u.returncode == 0 and read(os.path.join(dest, "model.safetensors")) == read(model),
            u.stderr)

    # ------------------------------------------------------------ commit=rewrite
    x = packfx.bf16(rng.normal(0, 0.02, 2 * MIB))
    with t.mount(pk, "-o", "commit=rewrite") as m:
        r = commit_edit(m, "t05", x)
    edit_plain(model, "t05", x)
    p = Pack(pk)
    t.check("commit=rewrite: a whole new pack, no old frame past a fresh pack's size "
            "(%d vs fresh %d)" % (len(read(pk)), fresh), r.returncode == 0 and
            "ok rewrite" in r.stdout and len(read(pk)) < fresh + 64 * 1024,
            r.stdout + r.stderr)
    t.eq("commit=rewrite: the manifest records the file's SHA-256", sha(read(model)),
         p.manifest["files"][0]["sha256"])
except RuntimeError as e:
    t.not_ok("big pack: mount", e)

# ------------------------------------------------------------ a small pack: hashed whole

d = os.path.join(t.tmp, "small")
model, pk = model_of(d, 8, MIB, rng, "F32")
old = read(pk)
new = rng.normal(0, 0.02, MIB // 4).astype(np.float32).tobytes()
try:
    with t.mount(pk) as m:
        r = commit_edit(m, "t02", new)
    edit_plain(model, "t02", new)
    cur = read(pk)
    t.check("small pack: the commit appends, the old pack a prefix of the new one",
            r.returncode == 0 and "ok append" in r.stdout and cur[:len(old)] == old,
            r.stdout + r.stderr)
    t.eq("small pack: the manifest's file SHA-256 is the new file's (8 MiB: hashed whole)",
         sha(read(model)), Pack(pk).manifest["files"][0]["sha256"])
    v = run(MODELFS, "verify", pk)
    t.check("small pack: verify passes with every hash matching", v.returncode == 0 and
            "ok: 1 files" in v.stdout, v.stdout + v.stderr)
except RuntimeError as e:
    t.not_ok("small pack: mount", e)

# ------------------------------------------------------------ --plain is rewritten

d = os.path.join(t.tmp, "plain")
model, _ = model_of(d, 4, MIB, rng, "F32")
ppk = os.path.join(d, "plain.mfs")
run(MODELFS, "pack", "--plain", model, "-o", ppk)
new = rng.normal(0, 0.02, MIB // 4).astype(np.float32).tobytes()
try:
    with t.mount(ppk) as m:
        r = commit_edit(m, "t01", new)
    edit_plain(model, "t01", new)
    z = subprocess.run(["zstd", "-q", "-d", "-c", ppk], capture_output=True)
    t.check("--plain pack: rewritten, not appended; zstd -d of it is the edited model",
            r.returncode == 0 and "ok rewrite" in r.stdout and z.stdout == read(model),
            r.stdout + r.stderr)
except RuntimeError as e:
    t.not_ok("--plain pack: mount", e)

# ------------------------------------------------------------ a reader during the append

d = os.path.join(t.tmp, "two")
model, pk = model_of(d, 8, MIB, rng, "F32")
before = read(os.path.join(d, "model.safetensors"))
new = rng.normal(0, 0.02, MIB // 4).astype(np.float32).tobytes()
ro_mnt = os.path.join(t.tmp, "mnt-ro")
try:
    reader = Daemon(pk, ro_mnt, "-o", "ro")
    try:
        old_t4 = read(os.path.join(ro_mnt, "weights", "t04", "data"))
        with t.mount(pk) as m:
            r = commit_edit(m, "t04", new)
        t.check("two mounts: the read-write one appended", r.returncode == 0 and
                "ok append" in r.stdout, r.stdout + r.stderr)
        # Fresh opens, so that the kernel's page cache is not what answers.
        got = read(os.path.join(ro_mnt, "model.safetensors"))
        t.check("two mounts: the read-only mount still serves the old model, byte for byte",
                got == before and old_t4 != new)
    finally:
        reader.stop()
except RuntimeError as e:
    t.not_ok("two mounts", e)
try:
    with t.mount(pk) as m:
        t.check("two mounts: a remount shows the appended edit",
                read(os.path.join(m, "weights", "t04", "data")) == new)
except RuntimeError as e:
    t.not_ok("two mounts: remount", e)

# ------------------------------------------------------------ a hard-linked pack

d = os.path.join(t.tmp, "linked")
model, pk = model_of(d, 4, MIB, rng, "F32")
os.link(pk, os.path.join(d, "other-name.mfs"))
old = read(pk)
try:
    with t.mount(pk) as m:
        r = commit_edit(m, "t01", rng.normal(0, 0.02, MIB // 4).astype(np.float32).tobytes())
        run(MODELFS, "abort", m)
    t.check("hard-linked pack: not appended to (the other name would see it grow): the "
            "commit is refused as for any hard-linked model, the pack untouched",
            r.returncode != 0 and "hard link" in r.stderr + r.stdout and read(pk) == old,
            r.stdout + r.stderr)
except RuntimeError as e:
    t.not_ok("hard-linked pack: mount", e)

# ------------------------------------------------------------ kill -9 in the append
# tests/tools/killwrite.c, preloaded into the daemon, kills it at the Nth
# write into the pack file, after half of that write: the redo log is
# complete and marked, the pack's end torn.  verify says what finishes it;
# a remount finishes it (the complete new pack), or `modelfs recover`.

shim = os.path.join(t.tmp, "killwrite.so")
cc = run("cc", "-shared", "-fPIC", "-o", shim, os.path.join(HERE, "..", "tools", "killwrite.c"), "-ldl")
if cc.returncode != 0:
    t.not_ok("kill -9: build the preload shim", cc.stderr)
d = os.path.join(t.tmp, "kill")
model, pk = model_of(d, 8, MIB, rng, "F32")
pristine = read(pk)
kmnt = os.path.join(t.tmp, "mnt-kill")
torn_seen = 0
for n in (1, 2, 3):
    with open(pk, "wb") as f:
        f.write(pristine)
    for x in os.listdir(os.path.dirname(pk)):
        if x.startswith("."):
            os.unlink(os.path.join(os.path.dirname(pk), x))
    new = rng.normal(0, 0.02, MIB // 4).astype(np.float32).tobytes()
    env = dict(os.environ)
    os.environ.update(LD_PRELOAD=shim, MFS_KILL_SUFFIX="/" + os.path.basename(pk),
                      MFS_KILL_AT=str(n))
    if "ASAN_OPTIONS" in os.environ:
        os.environ["ASAN_OPTIONS"] += ":verify_asan_link_order=0"
    try:
        dm = Daemon(pk, kmnt)
    except RuntimeError as e:
        t.not_ok("kill -9 at pack write %d: mount" % n, e)
        continue
    finally:
        os.environ.clear()
        os.environ.update(env)
    with open(os.path.join(kmnt, "weights", "t02", "data"), "r+b") as f:
        f.write(new)
    r = run(MODELFS, "commit", kmnt)
    killed = not dm.alive() or dm.p.wait(timeout=30) is not None
    dm.stop()
    cur = read(pk)
    torn = cur != pristine and len(cur) > len(pristine)
    try:
        Pack(pk)
        whole = True
    except AssertionError:
        whole = False
    v = run(MODELFS, "verify", pk)
    if not whole:
        torn_seen += 1
        t.check("kill -9 at pack write %d: the old bytes are intact under the torn end, and "
                "verify says an interrupted commit is to be finished (one line)" % n,
                cur[:len(pristine)] == pristine and v.returncode != 0 and
                "modelfs recover" in v.stderr and len(v.stderr.strip().splitlines()) == 1,
                v.stdout + v.stderr)
    try:
        with t.mount(pk) as m:
            got = read(os.path.join(m, "weights", "t02", "data"))
            st = status(m)
        v = run(MODELFS, "verify", pk)
        t.check("kill -9 at pack write %d (%s): the remount finished it: the new pack, "
                "verified, with the edit, nothing staged" % (n, "torn" if not whole else
                "whole" if cur != pristine else "untouched"),
                killed and got == new and v.returncode == 0 and
                not any(ln.startswith("staged") for ln in st.splitlines()) and
                read(pk)[:len(pristine)] == pristine, (r.stderr, v.stdout + v.stderr, st))
        t.eq("kill -9 at pack write %d: no redo log left" % n, [], side_files(pk))
    except RuntimeError as e:
        t.not_ok("kill -9 at pack write %d: remount" % n, e)
t.check("kill -9: at least one kill left a torn pack end (%d of 3)" % torn_seen, torn_seen >= 1)

t.done()

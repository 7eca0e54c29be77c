#!/usr/bin/python3
"""Edits through a pack mount (issue 14, item 4; doc/pack.md, "How a commit
writes a pack").  For ONNX inline, ONNX with external data and safetensors
(single and sharded), the same edit is made through a plain mount of the
model and through a mount of its pack, and both are committed; then:
  - `modelfs unpack` of the new pack gives the plainly committed files,
    byte-identical, and `modelfs verify` passes on it;
  - the seek tables of the old and the new pack, parsed here (packfx.Pack,
    not modelfs), show every frame of an untouched file byte-identical, and
    after a same-size edit exactly the chunks holding changed bytes
    recompressed; after an edit that changed sizes (a new property, a
    float32 tensor made float16 with new bytes) only
    the chunks holding changed bytes are new, the others' frames (the
    tensors' behind a grown header) are the old ones;
  - sharded safetensors take the edits a plain mount takes (none: shard
    tensors and the index's props are not editable), refused alike;
  - a --plain pack stays plain: `zstd -d` of the new pack is the new file.
kill -9 of the daemon at random moments of a pack commit leaves the old pack
byte-identical or the new one complete (it verifies and has the edit; killed
while appending, after the remount has finished the redo log), and
the remount shows the staged edit from the journal when it is old; a pack
replaced under a mount makes the commit fail (changed on disk) and leaves
it untouched with the edit still staged, and so does a frame corrupted in
place that the commit must read (one line naming the pack); renames and a
deletion (graph surgery) committed through a pack mount give the plain
result and a manifest of the tensors after them; ONNX Runtime loads the root file
of the remounted new pack with the outputs of the plainly edited model."""
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from mfstest import MODELFS, SRC, T  # noqa: E402
import packfx  # noqa: E402
from packfx import Pack  # noqa: E402
from txnacc import Daemon, status, temp_files  # noqa: E402

ORT = os.path.join(SRC, "tests", "node", "ort_run.js")
t = T()


def run(*args, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def read(p):
    with open(p, "rb") as f:
        return f.read()


MAKERS = {"onnx-inline": packfx.onnx_inline, "onnx-external": packfx.onnx_external,
          "safetensors": packfx.safetensors, "safetensors-sharded": packfx.safetensors_sharded}


def fresh(kind, tag):
    """A plain copy of the model and a pack of it in a directory of its own."""
    base = os.path.join(t.tmp, "%s-%s" % (kind, tag))
    model = MAKERS[kind](os.path.join(base, "plain"), np.random.default_rng(7))
    pdir = os.path.join(base, "pack")
    os.makedirs(pdir)
    pk = os.path.join(pdir, os.path.basename(model) + ".mfs")
    r = run(MODELFS, "pack", model, "-o", pk)
    if r.returncode != 0:
        raise RuntimeError("modelfs pack: " + r.stderr.strip())
    return model, pk


def apply(mnt, edit):
    """Make one edit through a mount; the errno of a refusal, or 0."""
    try:
        if edit[0] == "reshape":
            d = os.path.join(mnt, edit[1])
            for name, text in (("dtype", edit[2]), ("shape", edit[3])):
                with open(os.path.join(d, name), "w") as f:
                    f.write(text + "\n")
            with open(os.path.join(d, "data"), "wb") as f:
                f.write(edit[4])
        elif edit[0] == "data":
            fd = os.open(os.path.join(mnt, edit[1]), os.O_WRONLY)
            try:
                os.pwrite(fd, edit[3], edit[2])
            finally:
                os.close(fd)
        else:
            with open(os.path.join(mnt, "meta", "props", edit[1]), "w") as f:
                f.write(edit[2])
    except OSError as e:
        return e.errno
    return 0


def commit(mnt):
    return run(MODELFS, "commit", mnt)


def edit_and_commit(model, edit, *opts):
    with t.mount(model, *opts) as m:
        e = apply(m, edit)
        r = commit(m) if e == 0 else None
    return e, r


def manifest_files(pk):
    return [f["path"] for f in Pack(pk).manifest["files"]]


# ------------------------------------------------------------ round trips

PATCH = bytes(range(1, 17)) * 4          # 64 bytes
CASES = [
    ("onnx-inline", ("data", "weights/w/data", 4 * 70_001, PATCH), "same"),
    ("onnx-inline", ("prop", "newkey", "a value that grows the file"), "grow"),
    ("onnx-external", ("data", "weights/w/data", 4000, PATCH), "refused"),
    ("onnx-external", ("prop", "newkey", "v"), "grow"),
    ("safetensors", ("data", "weights/b/f32/data", 4 * 100_000, PATCH), "same"),
    ("safetensors", ("data", "weights/c/f16/data", 2 * 299_000, PATCH), "same"),
    ("safetensors", ("prop", "newkey", "a value that grows the header"), "grow"),
    ("safetensors", ("reshape", "weights/b/f32", "float16", "300000",
                     np.random.default_rng(4).normal(0, 1, 300_000).astype(np.float16).tobytes()),
     "grow"),
    ("safetensors-sharded", ("data", "weights/s0/b/f32/data", 4000, PATCH), "refused"),
    ("safetensors-sharded", ("prop", "newkey", "v"), "refused"),
]

for n, (kind, edit, how) in enumerate(CASES):
    what = "%s, %s %s" % (kind, edit[0], edit[1])
    try:
        model, pk = fresh(kind, n)
    except RuntimeError as e:
        t.not_ok("%s: fixture" % what, e)
        continue
    pdir = os.path.dirname(model)
    names = manifest_files(pk)
    orig = {f: read(os.path.join(pdir, f)) for f in names}
    old_pack = read(pk)
    old = Pack(pk)
    try:
        e_plain, r_plain = edit_and_commit(model, edit)
        e_pack, r_pack = edit_and_commit(pk, edit)
    except RuntimeError as e:
        t.not_ok("%s: mount" % what, e)
        continue
    if how == "refused":
        t.check("%s: refused on the pack mount as on the plain mount (errno %d)" % (what, e_plain),
                e_plain != 0 and e_pack == e_plain, (e_plain, e_pack))
        t.check("%s: the pack is untouched" % what, read(pk) == old_pack)
        continue
    t.check("%s: committed through the plain mount and the pack mount" % what,
            e_plain == 0 and e_pack == 0 and r_plain.returncode == 0 and r_pack.returncode == 0,
            (e_plain, e_pack, r_plain and r_plain.stderr, r_pack and r_pack.stderr))
    new_files = {f: read(os.path.join(pdir, f)) for f in names}
    changed = [f for f in names if new_files[f] != orig[f]]
    t.eq("%s: the plain commit changed the model file only" % what, [names[0]], changed)
    dest = os.path.join(t.tmp, "un-%d" % n)
    u = run(MODELFS, "unpack", pk, "-o", dest)
    diff = [f for f in names if not os.path.exists(os.path.join(dest, f)) or
            read(os.path.join(dest, f)) != new_files[f]]
    t.check("%s: unpack of the new pack equals the plainly committed model (%d files)"
            % (what, len(names)), u.returncode == 0 and not diff, u.stderr + repr(diff))
    v = run(MODELFS, "verify", pk)
    t.check("%s: verify passes on the new pack" % what, v.returncode == 0 and "ok:" in v.stdout,
            v.stdout + v.stderr)
    new = Pack(pk)
    for f in names[1:]:
        t.check("%s: every frame of the untouched %s is the old pack's" % (what, f),
                [c[3] for c in old.file_chunks(f)] == [c[3] for c in new.file_chunks(f)])
    oc, nc = old.file_chunks(names[0]), new.file_chunks(names[0])
    if how == "same":
        a = np.frombuffer(orig[names[0]], np.uint8)
        b = np.frombuffer(new_files[names[0]], np.uint8)
        at = np.nonzero(a != b)[0]
        touched = {i for i, (off, ln, _, _) in enumerate(oc) if
                   np.any((at >= off) & (at < off + ln))}
        redone = {i for i in range(len(nc)) if i >= len(oc) or nc[i][3] != oc[i][3]}
        t.check("%s: the same %d chunks, same cuts and arrangements" % (what, len(oc)),
                [c[:3] for c in oc] == [c[:3] for c in nc])
        shared = len(old.chunks) - len({c[0] for c in old.chunks})
        t.check("%s: the %d chunk(s) sharing a frame in the old pack share one in the new" % (what, shared),
                len(new.chunks) - len({c[0] for c in new.chunks}) == shared and
                (kind != "safetensors" or shared > 0), shared)
        t.check("%s: exactly the %d chunk(s) holding the %d changed bytes are recompressed"
                % (what, len(touched), len(at)), touched and redone == touched,
                (sorted(touched), sorted(redone)))
    else:
        # The bytes that changed: between the longest common prefix and
        # suffix of the old and the new file.
        ob, nb = orig[names[0]], new_files[names[0]]
        pre = next((i for i in range(min(len(ob), len(nb))) if ob[i] != nb[i]), min(len(ob), len(nb)))
        suf = 0
        while suf < min(len(ob), len(nb)) - pre and ob[-1 - suf] == nb[-1 - suf]:
            suf += 1
        lo, hi = pre, len(nb) - suf
        olds = {c[3] for c in oc}
        redone = [c for c in nc if c[3] not in olds]
        cs = new.manifest["options"]["chunk_size"]
        t.check("%s: of %d chunks only the %d holding the changed bytes [%d, %d) are new, "
                "the others' frames are the old ones" % (what, len(nc), len(redone), lo, hi),
                1 <= len(redone) <= (hi - lo) // cs + 2 and
                all(c[0] < max(hi, lo + 1) and c[0] + c[1] > lo for c in redone),
                [(c[0], c[1], c[2]) for c in redone])
        if edit[0] == "reshape":
            t.check("%s: the new float16 bytes are compressed as fp16 planes" % what,
                    any(c[2] == 1 and c[1] > 4096 for c in redone), [(c[0], c[1], c[2]) for c in redone])
    t.eq("%s: the manifest's SHA-256 of the changed file is its new bytes'" % what,
         sha(new_files[names[0]]), new.manifest["files"][0]["sha256"])
    t.eq("%s: the manifest keeps the pack's options" % what, old.manifest["options"],
         new.manifest["options"])
    t.eq("%s: no temp or side file left beside the pack but the journal's" % what, [],
         [x for x in os.listdir(os.path.dirname(pk)) if "modelfs-tmp" in x])
    if kind == "onnx-inline" and how == "same":
        x = np.random.default_rng(2).standard_normal((3, 256)).astype(np.float32)
        inp = os.path.join(t.tmp, "ort-in.json")
        with open(inp, "w") as f:
            json.dump({"x": {"dims": list(x.shape), "type": "float32",
                             "data": x.reshape(-1).tolist()}}, f)
        orig_model = os.path.join(t.tmp, "orig.onnx")
        with open(orig_model, "wb") as f:
            f.write(orig[names[0]])
        want = run("node", ORT, model, inp)
        before = run("node", ORT, orig_model, inp)
        try:
            with t.mount(pk, "-o", "ro") as m:
                got = run("node", ORT, os.path.join(m, names[0]), inp)
            t.check("%s: ORT loads the root file of the new pack, outputs of the plainly "
                    "edited model (not the old ones)" % what,
                    want.returncode == 0 and got.returncode == 0 and
                    json.loads(got.stdout) == json.loads(want.stdout) and
                    json.loads(got.stdout) != json.loads(before.stdout), got.stderr + want.stderr)
        except RuntimeError as e:
            t.not_ok("%s: ORT mount" % what, e)

# ------------------------------------------------------------ --plain stays plain

model, _ = fresh("safetensors", "plain")
ppk = os.path.join(t.tmp, "plain.mfs")
r = run(MODELFS, "pack", "--plain", model, "-o", ppk)
edit = ("data", "weights/b/f32/data", 4 * 123_456, PATCH)
try:
    e1, r1 = edit_and_commit(model, edit)
    e2, r2 = edit_and_commit(ppk, edit)
    z = subprocess.run(["zstd", "-q", "-d", "-c", ppk], capture_output=True)
    t.check("--plain pack: committed, and zstd -d of the new pack is the plainly edited model",
            e1 == 0 and e2 == 0 and r2.returncode == 0 and z.returncode == 0 and
            z.stdout == read(model), (r2 and r2.stderr, z.stderr))
    p = Pack(ppk)
    t.check("--plain pack: every chunk of the new pack is raw, none shared",
            all(c[3] == 0 for c in p.chunks) and len({c[0] for c in p.chunks}) == len(p.chunks))
    v = run(MODELFS, "verify", ppk)
    t.check("--plain pack: verify passes on the new pack", v.returncode == 0, v.stdout + v.stderr)
except RuntimeError as e:
    t.not_ok("--plain pack: mount", e)

# ------------------------------------------------------------ changed underneath

model, pk = fresh("safetensors", "stale")
other = os.path.join(t.tmp, "other.mfs")
r = run(MODELFS, "pack", packfx.safetensors(os.path.join(t.tmp, "other"), np.random.default_rng(9)),
        "-o", other)
try:
    with t.mount(pk) as m:
        e = apply(m, ("data", "weights/b/f32/data", 0, PATCH))
        os.replace(other, pk)           # another pack renamed over it
        planted = read(pk)
        r = commit(m)
        msg = (r.stdout + r.stderr).lower()
        t.check("a pack replaced under the mount: the commit is refused (changed on disk)",
                e == 0 and r.returncode != 0 and "changed on disk" in msg, r.stdout + r.stderr)
        t.check("the pack that replaced it is untouched", read(pk) == planted)
        t.check("the edit is still staged", any(ln.startswith("staged") for ln in
                                                status(m).splitlines()), status(m))
        t.eq("no temp file left", [], temp_files(os.path.dirname(pk), os.path.basename(pk)))
        run(MODELFS, "abort", m)
except RuntimeError as e:
    t.not_ok("changed underneath: mount", e)

# ------------------------------------------------------------ a bad frame met by a commit

model, pk = fresh("safetensors", "badframe")
try:
    with t.mount(pk) as m:
        e = apply(m, ("data", "weights/b/f32/data", 0, PATCH))
        # A byte of the last chunk's frame flipped in place (same inode, size
        # and mtime): the commit copies that frame but must hash its bytes.
        p = Pack(pk)
        off, flen = p.chunks[-1][0], p.chunks[-1][1]
        st = os.stat(pk)
        with open(pk, "r+b") as f:
            f.seek(off + flen // 2)
            b = f.read(1)
            f.seek(off + flen // 2)
            f.write(bytes([b[0] ^ 0x40]))
        os.utime(pk, ns=(st.st_atime_ns, st.st_mtime_ns))
        planted = read(pk)
        r = commit(m)
        line = (r.stderr or r.stdout).strip()
        t.check("a commit meeting a corrupt frame fails with one line naming the pack",
                e == 0 and r.returncode != 0 and len(line.splitlines()) == 1 and
                os.path.basename(pk) in line, r.stdout + r.stderr)
        t.check("the pack is left as it was (corrupt frame and all)", read(pk) == planted)
        t.check("the edit is still staged after the failed commit",
                any(ln.startswith("staged") for ln in status(m).splitlines()), status(m))
        t.eq("no temp file left after the failed commit", [],
             temp_files(os.path.dirname(pk), os.path.basename(pk)))
        run(MODELFS, "abort", m)
except RuntimeError as e:
    t.not_ok("bad frame: mount", e)

# ------------------------------------------------------------ graph surgery through a pack
# Renames and deletions change the tensor list the manifest holds: the same
# rm -r of an unused initializer, mv of another and mv of a graph input,
# through a plain mount and through a pack mount; unpack equals the plain
# result, verify passes, and the manifest lists the plain model's tensors.
def surgery_model(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    inits = [numpy_helper.from_array(np.arange(64, dtype=np.float32).reshape(8, 8), "W"),
             numpy_helper.from_array(np.ones(70_000, dtype=np.float32), "unused"),
             numpy_helper.from_array(np.full(8, 3, dtype=np.float32), "zlast")]
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y0"]), helper.make_node("Add", ["y0", "zlast"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(m, path)


def surgery(mnt):
    shutil.rmtree(os.path.join(mnt, "weights", "unused"))
    os.rename(os.path.join(mnt, "weights", "zlast"), os.path.join(mnt, "weights", "bias"))
    os.rename(os.path.join(mnt, "inputs", "x"), os.path.join(mnt, "inputs", "images"))
    return commit(mnt)


try:
    import onnx
    sdir = os.path.join(t.tmp, "surgery")
    smodel = os.path.join(sdir, "plain", "s.onnx")
    surgery_model(smodel)
    spk = os.path.join(sdir, "s.onnx.mfs")
    r0 = run(MODELFS, "pack", smodel, "-o", spk)
    with t.mount(smodel) as m:
        r1 = surgery(m)
    with t.mount(spk) as m:
        r2 = surgery(m)
    t.check("surgery: rm -r, mv of an initializer and of an input commit on both mounts",
            r0.returncode == 0 and r1.returncode == 0 and r2.returncode == 0,
            (r0.stderr, r1.stderr, r2.stderr))
    v = run(MODELFS, "verify", spk)
    t.check("surgery: verify passes on the new pack", v.returncode == 0 and "ok:" in v.stdout,
            v.stdout + v.stderr)
    dest = os.path.join(sdir, "un")
    u = run(MODELFS, "unpack", spk, "-o", dest)
    t.check("surgery: unpack of the new pack equals the plainly committed model",
            u.returncode == 0 and read(os.path.join(dest, "s.onnx")) == read(smodel), u.stderr)
    want = [i.name for i in onnx.load(smodel).graph.initializer]
    t.eq("surgery: the manifest lists the tensors after the commit", want,
         [x["name"] for x in Pack(spk).manifest["tensors"]])
except (RuntimeError, OSError) as e:
    t.not_ok("surgery through a pack mount", e)

# ------------------------------------------------------------ kill -9 in a commit

big = os.path.join(t.tmp, "big", "plain", "model.safetensors")
os.makedirs(os.path.dirname(big))
rng = np.random.default_rng(11)
n_el = 8 << 20                           # 32 MiB of fp32, and a 4 MiB one to edit
packfx.st_write(big, {"a": ("F32", [n_el], rng.normal(0, 0.02, n_el).astype(np.float32).tobytes()),
                      "e": ("F32", [1 << 20], rng.normal(0, 0.02, 1 << 20).astype(np.float32).tobytes())})
bpk = os.path.join(t.tmp, "big", "model.safetensors.mfs")
run(MODELFS, "pack", big, "-o", bpk)
orig_file = read(big)
hlen = int.from_bytes(orig_file[:8], "little") + 8
e_off = hlen + 4 * n_el
mnt = os.path.join(t.tmp, "mnt-kill")
prng = random.Random(5)
rounds, old_seen, new_seen, torn_seen, bad = 8, 0, 0, 0, []
t0 = time.monotonic()
try:
    dm = Daemon(bpk, mnt)
    apply(mnt, ("data", "weights/e/data", 0, b"\x01" * 64))
    commit(mnt)
    dm.stop()
except RuntimeError as e:
    bad.append("calibration mount: %s" % e)
span = max(0.05, time.monotonic() - t0)   # a mount, an edit and a commit: the window to hit
for i in range(rounds):
    if bad:
        break
    cur = read(bpk)
    cur_file_sha = Pack(bpk).manifest["files"][0]["sha256"]
    patch = prng.randbytes(4096)
    off = prng.randrange(0, (4 << 20) - 4096)
    try:
        dm = Daemon(bpk, mnt)
    except RuntimeError as e:
        bad.append("round %d: mount: %s" % (i, e))
        break
    apply(mnt, ("data", "weights/e/data", off, patch))
    cp = subprocess.Popen([MODELFS, "commit", mnt], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    time.sleep(prng.uniform(0, span))
    dm.kill9()
    try:
        cp.wait(timeout=60)
    except subprocess.TimeoutExpired:
        cp.kill()
        cp.wait()
        bad.append("round %d: modelfs commit hung" % i)
    now = read(bpk)
    if now == cur:
        old_seen += 1
        try:
            dm = Daemon(bpk, mnt)
        except RuntimeError as e:
            bad.append("round %d: remount: %s" % (i, e))
            break
        st = status(mnt)
        with open(os.path.join(mnt, "weights", "e", "data"), "rb") as f:
            f.seek(off)
            got = f.read(len(patch))
        if not any(ln.startswith("staged") for ln in st.splitlines()) or got != patch:
            bad.append("round %d: old pack, but the remount does not show the staged edit" % i)
        run(MODELFS, "abort", mnt)
        dm.stop()
    else:
        new_seen += 1
        v = run(MODELFS, "verify", bpk)
        if v.returncode != 0 and "modelfs recover" in v.stderr:
            # Killed while appending: the redo log is marked and the
            # pack's end torn; the remount below finishes it first.
            torn_seen += 1
            try:
                Daemon(bpk, mnt).stop()
            except RuntimeError as e:
                bad.append("round %d: remount of a torn pack: %s" % (i, e))
                break
            v = run(MODELFS, "verify", bpk)
        p = Pack(bpk)
        dest = os.path.join(t.tmp, "kill-un")
        shutil.rmtree(dest, ignore_errors=True)
        u = run(MODELFS, "unpack", bpk, "-o", dest)
        un = read(os.path.join(dest, "model.safetensors")) if u.returncode == 0 else b""
        if v.returncode != 0 or un[e_off + off:e_off + off + len(patch)] != patch or \
                p.manifest["files"][0]["sha256"] == cur_file_sha:
            bad.append("round %d: the pack changed but is not the complete new one: %s"
                       % (i, v.stdout + v.stderr))
        try:
            dm = Daemon(bpk, mnt)
            if any(ln.startswith("staged") for ln in status(mnt).splitlines()):
                bad.append("round %d: new pack, but edits are staged again" % i)
            dm.stop()
        except RuntimeError as e:
            bad.append("round %d: remount: %s" % (i, e))
    left = temp_files(os.path.dirname(bpk), os.path.basename(bpk))
    if left:
        bad.append("round %d: temp files left after the remount: %s" % (i, left))
print("# kill -9 during pack commits: %d rounds, %d left the old pack, %d the new one "
      "(%d of them torn, finished by the remount)" % (rounds, old_seen, new_seen, torn_seen))
t.check("kill -9 during a pack commit (%d rounds): old pack byte-identical (edit staged on "
        "remount) or the new one complete" % rounds, not bad, bad[:3])
t.done()

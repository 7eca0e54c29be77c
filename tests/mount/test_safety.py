#!/usr/bin/python3
"""tests/mount/test_safety.py — issue 11, data safety items 1-6, with real
mounts, the real `modelfs` command and python-onnx as the judge.

1. A model replaced in place by another model of the same size, its mtime
   put back (`cp C m.onnx; touch -d 2020-01-01 m.onnx`: same inode, new
   ctime): `modelfs commit` refuses with "changed on disk", C is untouched,
   the edits and the journal stay; the commit at unmount fails too and
   leaves a failure note that `modelfs recover` and the next mount report.
   A chmod (ctime only, same content) does not stop a commit.
2. A mount point that would cover the model (its directory, a directory
   above it, the directory reached through a bind mount) is refused with
   one line, quickly, and nothing is mounted; a sibling directory works.
3. `commit=auto` never patches in place: on tmpfs it rewrites, on an XFS
   image made with reflinks it clones (status says which), and a reader of
   the model file sees only whole versions (the kill -9 storm is in
   test_crash.py).  `modelfs recover` without a mount: reports staged edits
   of a dead daemon (and keeps them for the next mount), refuses a model
   that is mounted read-write, and says "not a model" for /etc/passwd.
4. A read-only mount and a read-write `commit=inplace` mount of one model:
   the commit rewrites (status "rewrite") and the read-only mount keeps
   reading the old bytes, whole; once alone, the next commit is in place.
5. (obsolete journals: unit tests and test_crash.py's storm.)
6. `modelfs unmount` commits, unmounts and returns only after the daemon
   has exited, with the edits in the model; when its commit fails it exits
   1 and leaves the mount and the edits; a detached daemon's failed commit
   at unmount leaves a note (.m.onnx.modelfs-failed) that status and
   `modelfs recover` show and that the next successful commit removes.
Also: extended attributes and a POSIX ACL on the model survive a rewrite
and a clone commit; .modelfs/progress says "idle" between commits; the
daemon's pid and the model's path are in the status.
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from mfstest import MODELFS, MOUNT_MODELFS, T, is_mounted, umount  # noqa: E402
from txnacc import (Daemon, DirectReader, commit, mkdir_tmpfs, modelfs,  # noqa: E402
                    sha256_file, side_files, status, umount_tmpfs, why)


def make_model(path, names, seed=1, dim=64):
    """An MLP of len(names)//2 layers whose tensors are called `names`."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i in range(0, len(names), 2):
        w, b = names[i], names[i + 1]
        inits.append(numpy_helper.from_array(rng.standard_normal((dim, dim)).astype(np.float32), w))
        inits.append(numpy_helper.from_array(rng.standard_normal(dim).astype(np.float32), b))
        nodes.append(helper.make_node("MatMul", [prev, w], ["m%d" % i]))
        nodes.append(helper.make_node("Add", ["m%d" % i, b], ["h%d" % i]))
        prev = "h%d" % i
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [1, dim])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, dim])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="modelfs-tests")
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)


def tensor(path, name):
    m = onnx.load(path)
    for x in m.graph.initializer:
        if x.name == name:
            return numpy_helper.to_array(x)
    raise KeyError(name)


def run(*argv, timeout=60):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout)


def one_line(s):
    return len(s.strip().splitlines()) == 1


def staged(st):
    return [ln for ln in st.splitlines() if ln.startswith("staged")]


def write_at(path, data, off=0):
    fd = os.open(path, os.O_WRONLY)
    try:
        return os.pwrite(fd, data, off)
    finally:
        os.close(fd)


def fuse_mounted(path):
    """Is there a modelfs mount at path (a bind mount there is not one)?"""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for ln in f:
            parts = ln.split()
            if parts[4] == path and parts[parts.index("-") + 1].startswith("fuse"):
                return True
    return False


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return not f.read().split(") ")[-1].startswith("Z")
    except OSError:
        return False


# ------------------------------------------------------------------ item 1

def replaced_in_place(t, base):
    d = os.path.join(base, "replaced")
    os.makedirs(d)
    a, c, m = (os.path.join(d, n) for n in ("a.onnx", "c.onnx", "m.onnx"))
    make_model(a, ["wa", "ba", "wb", "bb"], seed=1)
    make_model(c, ["wc", "bc", "wd", "bd"], seed=2)
    t.eq("the two models have the same size", os.path.getsize(a), os.path.getsize(c))
    run("cp", a, m)
    run("touch", "-d", "2020-01-01", m)
    ino = os.stat(m).st_ino
    mnt = os.path.join(base, "mnt-replaced")
    dm = Daemon(m, mnt)
    try:
        w = np.full(64, 7.0, np.float32).tobytes()
        t.eq("a tensor write through the mount", len(w),
             write_at(os.path.join(mnt, "weights", "ba", "data"), w))
        run("cp", c, m)
        run("touch", "-d", "2020-01-01", m)
        st = os.stat(m)
        t.check("cp + touch -d kept the inode, size and mtime", st.st_ino == ino and
                st.st_size == os.path.getsize(a) and int(st.st_mtime) == 1577836800)
        csha = sha256_file(c)
        r = commit(mnt)
        t.check("modelfs commit of a model replaced in place (same size and mtime) fails "
                "with one line saying it changed on disk",
                r.returncode != 0 and "changed on disk" in r.stderr and one_line(r.stderr),
                why(r))
        t.eq("the replacing model is untouched", csha, sha256_file(m))
        t.check("the edit is still staged", any("ba" in s for s in staged(status(mnt))),
                status(mnt))
        t.check("the journal is kept", ".m.onnx.modelfs-journal" in side_files(d, "m.onnx"),
                side_files(d, "m.onnx"))
        r = modelfs("unmount", mnt)
        t.check("modelfs unmount whose commit fails exits 1 with one line and leaves the "
                "mount", r.returncode == 1 and one_line(r.stderr) and is_mounted(mnt), why(r))
    finally:
        dm.stop()
    t.eq("the commit at unmount did not touch the replacing model", csha, sha256_file(m))
    onnx.checker.check_model(onnx.load(m))
    t.check("the failed commit at unmount left a note",
            ".m.onnx.modelfs-failed" in side_files(d, "m.onnx"), side_files(d, "m.onnx"))
    r = modelfs("recover", m)
    t.check("modelfs recover reports the failed commit and that the journal was written for "
            "another version", r.returncode == 0 and "failed" in r.stdout and
            "changed on disk" in r.stdout and "another version" in r.stdout, why(r))
    t.eq("modelfs recover did not touch the model", csha, sha256_file(m))
    t.check("the journal was set aside, not deleted",
            any(".modelfs-journal.stale-" in f for f in side_files(d, "m.onnx")),
            side_files(d, "m.onnx"))

    # A chmod is not a new version.
    run("cp", a, m)
    dm = Daemon(m, mnt)
    try:
        write_at(os.path.join(mnt, "weights", "ba", "data"), w)
        time.sleep(0.02)
        os.chmod(m, 0o600)
        r = commit(mnt)
        t.check("after a chmod of the model the commit goes ahead", r.returncode == 0, why(r))
    finally:
        dm.stop()
    t.check("the model has the edit and the new mode",
            (tensor(m, "ba") == 7.0).all() and (os.stat(m).st_mode & 0o7777) == 0o600)


# ------------------------------------------------------------------ item 2

def covering_mount_points(t, base):
    d = os.path.join(base, "cover", "self")
    os.makedirs(d)
    m = os.path.join(d, "m.onnx")
    make_model(m, ["w0", "b0"])
    alias = os.path.join(base, "cover-alias")
    os.makedirs(alias)
    r = run("mount", "--bind", d, alias)
    t.check("a bind mount of the model's directory", r.returncode == 0, r.stderr)
    cases = [("the model's own directory", m, d),
             ("the directory above it", m, os.path.dirname(d)),
             ("its directory, the model named through a bind mount of it",
              os.path.join(alias, "m.onnx"), d),
             ("the bind mount itself", m, alias)]
    try:
        for what, model, mnt in cases:
            try:
                r = run(MOUNT_MODELFS, model, mnt, timeout=20)
            except subprocess.TimeoutExpired:
                t.not_ok("mount point = %s: refused" % what, "mount.modelfs hung")
                continue
            t.check("mount point = %s: refused with one line naming the model" % what,
                    r.returncode != 0 and "cover" in r.stderr and one_line(r.stderr) and
                    not fuse_mounted(mnt), why(r))
            if fuse_mounted(mnt):
                umount(mnt)
        for what, mnt in (("a sibling directory", os.path.join(base, "cover", "sibling")),
                          ("a directory inside the model's", os.path.join(d, "mnt"))):
            os.makedirs(mnt)
            r = run(MOUNT_MODELFS, m, mnt)
            t.check("%s as the mount point works" % what,
                    r.returncode == 0 and fuse_mounted(mnt), why(r))
            if fuse_mounted(mnt):
                write_at(os.path.join(mnt, "weights", "b0", "data"), b"\0\0\x80\x3f")
                t.eq("and the commit works", 0, commit(mnt).returncode)
                umount(mnt)
            t.check("the model has the edit", tensor(m, "b0")[0] == 1.0)
    finally:
        run("umount", alias)


# ------------------------------------------------------------------ item 3

def recover_command(t, base):
    d = os.path.join(base, "recover")
    os.makedirs(d)
    m = os.path.join(d, "m.onnx")
    make_model(m, ["w0", "b0"])
    sha = sha256_file(m)
    mnt = os.path.join(base, "mnt-recover")
    r = modelfs("recover", m)
    t.check("modelfs recover of a clean model: nothing to recover",
            r.returncode == 0 and "nothing to recover" in r.stdout, why(r))
    dm = Daemon(m, mnt)
    w = np.full(64, 3.0, np.float32).tobytes()
    write_at(os.path.join(mnt, "weights", "b0", "data"), w)
    r = modelfs("recover", m)
    t.check("modelfs recover of a model mounted read-write refuses with one line",
            r.returncode == 1 and one_line(r.stderr) and "m.onnx" in r.stderr, why(r))
    dm.kill9()
    r = modelfs("recover", m)
    t.check("modelfs recover after kill -9 of the daemon reports the staged edits",
            r.returncode == 0 and "recovered" in r.stdout, why(r))
    t.eq("and leaves the model as it was", sha, sha256_file(m))
    dm = Daemon(m, mnt)
    try:
        t.check("the next mount has the edit staged", any("b0" in s for s in staged(status(mnt))),
                status(mnt))
        with open(os.path.join(mnt, "weights", "b0", "data"), "rb") as f:
            t.eq("and reads it", w, f.read())
    finally:
        dm.stop()
    t.check("the unmount committed it", (tensor(m, "b0") == 3.0).all())
    r = modelfs("recover", "/etc/passwd")
    t.check("modelfs recover /etc/passwd: one line naming the file, exit 1",
            r.returncode == 1 and one_line(r.stderr) and "/etc/passwd" in r.stderr, why(r))
    r = modelfs("recover", os.path.join(d, "absent.onnx"))
    t.check("modelfs recover of a missing file: one line, exit 1",
            r.returncode == 1 and one_line(r.stderr), why(r))


# ------------------------------------------------------------------ item 4

def two_mounts(t, base):
    d = os.path.join(base, "two")
    os.makedirs(d)
    m = os.path.join(d, "m.onnx")
    make_model(m, ["w0", "b0", "w1", "b1"], dim=256)
    old_w1 = tensor(m, "w1").tobytes()
    ro = Daemon(m, os.path.join(base, "mnt-ro"), "-o", "ro")
    rw = Daemon(m, os.path.join(base, "mnt-rw"), "-o", "commit=inplace")
    try:
        rod = os.path.join(ro.mnt, "weights", "w1", "data")
        with open(rod, "rb") as f:
            t.eq("the read-only mount reads the tensor", old_w1, f.read())
        new = np.full(256 * 256, 2.5, np.float32).tobytes()
        write_at(os.path.join(rw.mnt, "weights", "w1", "data"), new)
        r = commit(rw.mnt)
        t.check("commit=inplace with a read-only mount of the same model commits", r.returncode == 0,
                why(r))
        last = [ln for ln in status(rw.mnt).splitlines() if ln.startswith("last commit")]
        t.check("... by a rewrite, not in place", any("rewrite" in ln for ln in last), last)
        fd = os.open(rod, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)      # uncached pages too
            got = os.pread(fd, len(old_w1), 0)
        finally:
            os.close(fd)
        t.eq("the read-only mount still reads the old version, whole", old_w1, got)
        t.check("the model file has the new version", tensor(m, "w1").tobytes() == new)
        ro.stop()
        newer = np.full(256 * 256, 4.5, np.float32).tobytes()
        write_at(os.path.join(rw.mnt, "weights", "w1", "data"), newer)
        r = commit(rw.mnt)
        last = [ln for ln in status(rw.mnt).splitlines() if ln.startswith("last commit")]
        t.check("alone, the next commit=inplace commit is in place",
                r.returncode == 0 and any("inplace" in ln for ln in last), (why(r), last))
        t.check("the model file has it", tensor(m, "w1").tobytes() == newer)
    finally:
        if ro.alive():
            ro.stop()
        rw.stop()
    t.eq("nothing left beside the model", [], side_files(d, "m.onnx"))


# ------------------------------------------------------------------ item 6

def unmount_command(t, base):
    d = os.path.join(base, "unmount")
    os.makedirs(d)
    m = os.path.join(d, "m.onnx")
    make_model(m, ["w0", "b0"], dim=512)
    mnt = os.path.join(base, "mnt-unmount")
    os.makedirs(mnt)
    r = run(MOUNT_MODELFS, m, mnt)          # detached, as users run it
    t.check("a detached mount", r.returncode == 0 and is_mounted(mnt), why(r))
    st = status(mnt)
    pid = int([ln for ln in st.splitlines() if ln.startswith("daemon: pid ")][0].split()[2])
    t.check("status names the daemon's pid and the model's path",
            pid_alive(pid) and ("model: " + os.path.realpath(m)) in st.splitlines(), st)
    with open(os.path.join(mnt, ".modelfs", "progress")) as f:
        t.eq(".modelfs/progress between commits", "idle\n", f.read())
    w = np.full(512 * 512, 1.5, np.float32).tobytes()
    write_at(os.path.join(mnt, "weights", "w0", "data"), w)
    r = modelfs("unmount", mnt)
    alive = pid_alive(pid)
    t.check("modelfs unmount exits 0, silently", r.returncode == 0 and not r.stderr, why(r))
    t.check("when it returns the mount is gone and the daemon has exited",
            not is_mounted(mnt) and not alive)
    t.check("the model has the edit", tensor(m, "w0").tobytes() == w)
    t.eq("nothing left beside the model", [], side_files(d, "m.onnx"))
    r = modelfs("unmount", mnt)
    t.check("modelfs unmount of a directory that is no mount: one line, exit 1",
            r.returncode == 1 and one_line(r.stderr) and "not a modelfs mount" in r.stderr,
            why(r))

    # A detached daemon whose commit at unmount fails: the note.
    r = run(MOUNT_MODELFS, m, mnt)
    t.check("mounted again", r.returncode == 0, why(r))
    pid = int([ln for ln in status(mnt).splitlines()
               if ln.startswith("daemon: pid ")][0].split()[2])
    write_at(os.path.join(mnt, "weights", "b0", "data"), np.full(512, 9.0, np.float32).tobytes())
    other = os.path.join(d, "other.onnx")
    make_model(other, ["x0", "y0"], seed=5, dim=512)
    run("cp", other, m)                     # replaced in place: the commit must refuse
    osha = sha256_file(m)
    run("fusermount3", "-u", mnt)
    for _ in range(600):
        if not pid_alive(pid):
            break
        time.sleep(0.05)
    t.check("the detached daemon exited after fusermount3 -u", not pid_alive(pid))
    t.eq("its failed commit did not touch the model", osha, sha256_file(m))
    note = os.path.join(d, ".m.onnx.modelfs-failed")
    t.check("and left a note beside the model", os.path.exists(note), side_files(d, "m.onnx"))
    r = modelfs("recover", m)
    t.check("modelfs recover shows the note", r.returncode == 0 and "failed" in r.stdout and
            "nobody to tell" in r.stdout, why(r))
    r = run(MOUNT_MODELFS, m, mnt)
    t.check("the next mount says so on stderr", r.returncode == 0 and "failed" in r.stderr,
            why(r))
    t.check("and so does its status", "nobody to tell" in status(mnt), status(mnt))
    write_at(os.path.join(mnt, "weights", "y0", "data"), np.full(512, 1.0, np.float32).tobytes())
    r = commit(mnt)
    t.check("a successful commit removes the note",
            r.returncode == 0 and not os.path.exists(note) and
            "nobody to tell" not in status(mnt), why(r))
    r = modelfs("unmount", os.path.join(mnt, "weights", "y0"))
    t.check("modelfs unmount given a directory inside the mount unmounts the mount",
            r.returncode == 0 and not fuse_mounted(mnt), why(r))
    t.check("the model has the last edit", (tensor(m, "y0") == 1.0).all())
    for f in side_files(d, "m.onnx"):
        os.unlink(os.path.join(d, f))       # the journal set aside at the remount


# ------------------------------------------------------------------ xattrs, clone

def attrs(path):
    x = {k: os.getxattr(path, k) for k in os.listxattr(path) if k.startswith("user.")}
    acl = run("getfacl", "--omit-header", "--absolute-names", path).stdout
    return x, acl


def xfs_clone_and_attrs(t, base):
    img = os.path.join(base, "xfs.img")
    with open(img, "wb") as f:
        f.truncate(320 << 20)
    r = run("mkfs.xfs", "-q", "-m", "reflink=1", img)
    if not t.check("mkfs.xfs -m reflink=1 of a 320 MiB image", r.returncode == 0, why(r)):
        return
    xd = os.path.join(base, "xfs")
    os.makedirs(xd)
    r = run("mount", "-o", "loop", img, xd)
    if not t.check("loop mount of the XFS image", r.returncode == 0, why(r)):
        return
    try:
        for fsname, d in (("tmpfs", os.path.join(base, "attrs")), ("XFS", xd)):
            os.makedirs(d, exist_ok=True)
            m = os.path.join(d, "m.onnx")
            make_model(m, ["w0", "b0", "w1", "b1"], dim=256)
            os.setxattr(m, "user.origin", b"run 42")
            r = run("setfacl", "-m", "u:nobody:r", m)
            t.check("setfacl on %s" % fsname, r.returncode == 0, why(r))
            before = attrs(m)
            t.check("the model on %s has a user xattr and an ACL entry" % fsname,
                    before[0] == {"user.origin": b"run 42"} and "user:nobody:r--" in before[1],
                    before)
            mnt = os.path.join(base, "mnt-" + fsname)
            want = "clone" if fsname == "XFS" else "rewrite"
            dm = Daemon(m, mnt)
            try:
                new = np.full(256, -1.25, np.float32).tobytes()
                write_at(os.path.join(mnt, "weights", "b1", "data"), new)
                r = commit(mnt)
                last = [ln for ln in status(mnt).splitlines() if ln.startswith("last commit")]
                t.check("commit=auto of a same-size edit on %s: %s" % (fsname, want),
                        r.returncode == 0 and any(" %s " % want in ln for ln in last),
                        (why(r), last))
                t.check("the %s result has the edit and passes onnx.checker" % want,
                        tensor(m, "b1").tobytes() == new and
                        onnx.checker.check_model(onnx.load(m)) is None)
                t.eq("xattr and ACL kept by the %s on %s" % (want, fsname), before, attrs(m))
                # A change of size: a rewrite on every file system.
                with open(os.path.join(mnt, "meta", "doc_string"), "w") as f:
                    f.write("a longer doc string than before\n")
                r = commit(mnt)
                last = [ln for ln in status(mnt).splitlines() if ln.startswith("last commit")]
                t.check("a size-changing commit on %s rewrites" % fsname,
                        r.returncode == 0 and any(" rewrite " in ln for ln in last),
                        (why(r), last))
                t.eq("xattr and ACL kept by that rewrite on %s" % fsname, before, attrs(m))
            finally:
                dm.stop()
            t.eq("nothing left beside the model on %s" % fsname, [], side_files(d, "m.onnx"))
        if sys.argv[1:] != ["--no-storm"]:
            clone_storm(t, base, xd)
    finally:
        r = run("umount", xd)
        if r.returncode != 0:
            run("umount", "-l", xd)
        os.unlink(img)


def clone_storm(t, base, xd):
    """kill -9 during clone commits on XFS, a direct reader of the file beside."""
    import hashlib
    import random
    rng = random.Random(int(os.environ.get("MFS_SEED", "7")))
    m = os.path.join(xd, "storm.onnx")
    make_model(m, ["w0", "b0", "w1", "b1", "w2", "b2"], dim=512, seed=9)
    mnt = os.path.join(base, "mnt-storm")
    bad, kills, reads, clones = [], 0, 0, 0
    for i in range(40):
        old = sha256_file(m)
        dm = Daemon(m, mnt)
        k = rng.randrange(3)
        data = os.path.join(mnt, "weights", "w%d" % k, "data")
        patch = rng.randbytes(4 * rng.randrange(1, 512 * 512))
        write_at(data, patch)
        with open(os.path.join(mnt, os.path.basename(m)), "rb") as f:
            new = hashlib.sha256(f.read()).hexdigest()  # what the commit will write
        reader = DirectReader(m)
        reader.start()
        cp = subprocess.Popen([MODELFS, "commit", mnt], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, 0.015))
        dm.kill9()
        kills += 1
        cp.wait(timeout=60)
        dm = Daemon(m, mnt)
        reader.finish()
        reads += reader.reads
        if set(reader.seen) - {old, new} or reader.errors:
            bad.append("round %d: a direct reader saw neither version %s" % (i, reader.errors[:1]))
        if sha256_file(m) not in (old, new):
            bad.append("round %d: the model is neither old nor new" % i)
        r = commit(mnt)          # whatever was recovered
        clones += "clone" in status(mnt)
        if r.returncode != 0:
            bad.append("round %d: commit after recovery: %s" % (i, why(r)))
        dm.stop()
        if side_files(xd, "storm.onnx"):
            bad.append("round %d: left %s" % (i, side_files(xd, "storm.onnx")))
            break
    t.check("%d kill -9 of clone commits on XFS with a direct reader (%d whole reads): always "
            "the old or the new version, nothing left" % (kills, reads), not bad and clones > 0,
            "; ".join(bad[:4]) or "no commit took the clone path")


def main():
    t = T()
    base = tempfile.mkdtemp(prefix="safety.", dir=t.tmp)
    # The model directories on a tmpfs of their own: no reflinks there, and
    # xattrs of the user namespace work on it.
    mkdir_tmpfs(base, 512 << 20)
    try:
        for part in (replaced_in_place, covering_mount_points, recover_command, two_mounts,
                     unmount_command, xfs_clone_and_attrs):
            try:
                part(t, base)
            except (OSError, RuntimeError, subprocess.SubprocessError, IndexError) as e:
                t.not_ok(part.__name__, "%s: %s" % (type(e).__name__, e))
    finally:
        for ln in open("/proc/self/mountinfo").read().splitlines():
            mp = ln.split()[4]
            if mp.startswith(base + "/"):
                subprocess.run(["umount", "-l", mp], capture_output=True)
        umount_tmpfs(base)
    t.done()


main()

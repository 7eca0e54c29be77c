#!/usr/bin/python3
# mfs-test: heavy (big fixtures, RSS bounds or kill storms; the normal pass runs it)
"""Issue 4, acceptance bullet 5 ("Crash safety"), cases (b) and (c)
(doc/reliability.md §2.2 C4, C5, §2.3 F3, F4),
on tmpfs file systems mounted for the test (root only; unmounted at the end).

(b) kill -9 storm: at least $MFS_KILLS (default 300, minimum 200) times, at
    least 200 of them in the default `commit=auto` (issue 11, acceptance):
    mount a copy of a model of a few MiB with the foreground daemon (every
    third round `-o commit=inplace`, the others the default `auto`, which
    rewrites, or clones where the file system can), stage an edit (random bytes over a random range of a
    random tensor, written with pwrite through the mount), start `modelfs
    commit` in the background, sleep a random 0-20 ms, kill -9 the daemon,
    take the dead mount down (fusermount3 -u, umount -l).  Meanwhile, in
    `auto` rounds, a reader that opens the model file directly (not through
    modelfs) reads it whole again and again, from before the commit starts
    until after the next mount: every read is exactly the old or the new
    version, and every 8th is parsed and checked by python-onnx.  Then:
      - an `auto` model file is exactly the old or the new version (sha256)
        already before the next mount (an in-place one may be torn until the
        next mount or `modelfs recover` replays its redo log, as the man page
        says);
      - the next mount succeeds, leaves no `.<model>.modelfs-tmp-*` temp file,
        and the model file is then exactly old or new; new if `modelfs commit`
        had reported success;
      - when it is old, `.modelfs/status` lists the staged edit and the
        tensor's data reads the edited bytes (recovered from the journal);
        then the round commits (-> new) or aborts (-> old) at random;
      - when it is new, the mount shows the new bytes and nothing is staged;
      - no journal is ever set aside as another version's (`.stale-`): a
        journal whose commit was installed is recognised and removed.
    "new" is computed independently: the old bytes with the edit patched in
    at the tensor's raw_data offset (same-size edits keep the layout).
(c) ENOSPC: a commit that needs a new file larger than the free space of the
    tmpfs (t1 grown from 256 KiB to 512 KiB: shape and data, so a rewrite)
    fails: `modelfs commit` exits non-zero with a message about space,
    `fsync(2)` of a file in the mount raises OSError(ENOSPC); the model is
    untouched, the edits are still staged (status and reads), no temp is
    left and the free space is what it was; after space is freed, fsync
    commits and the result has the edit.
Seed: $MFS_SEED (printed).  Outcome counts are printed; no timing asserts.
"""
import errno
import os
import random
import subprocess
import sys
import time

import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from mfstest import MODELFS, T, read  # noqa: E402
from txnacc import (Daemon, DirectReader, MiB, abort, commit, make_random_model,  # noqa: E402
                    mkdir_tmpfs, raw_offset, sha256, sha256_file, side_files, status, temp_files,
                    umount_tmpfs, why)

KILLS = max(200, int(os.environ.get("MFS_KILLS", "300")))
AUTO_KILLS = 200
SIZES = [64 * 1024, 6 * MiB, 2 * MiB + 17]          # a few MiB: commits take a while



def staged_lines(st):
    return [ln for ln in st.splitlines() if ln.startswith("staged")]


def storm(t, rng, base):
    d = os.path.join(base, "storm")
    os.makedirs(d)
    path = os.path.join(d, "crash.onnx")
    name = os.path.basename(path)
    m = make_random_model(path, SIZES, rng.randrange(1 << 30))
    cur = read(path, "rb")
    tens = [numpy_helper.to_array(x).tobytes() for x in m.graph.initializer]
    offs = [raw_offset(cur, tb) for tb in tens]
    mnt = os.path.join(base, "mnt")       # outside the tmpfs model dir: keeps listings clean
    os.makedirs(mnt, exist_ok=True)

    n = {"kills": 0, "old": 0, "new": 0, "commit_reported_ok": 0, "torn_before_mount": 0,
         "redo_replayed": 0, "redo_discarded": 0, "stale_cache_after_abort": 0,
         "recovered_then_commit": 0, "recovered_then_abort": 0, "stale_journals": 0,
         "inplace_rounds": 0, "auto_kills": 0, "direct_reads": 0, "direct_parsed": 0}
    bad = []

    def fail(i, what):
        bad.append("round %d: %s" % (i, what))

    i = 0
    dm = None
    try:
        while (n["kills"] < KILLS or n["auto_kills"] < AUTO_KILLS) and len(bad) < 10:
            i += 1
            inplace = i % 3 == 0
            opts = ["-o", "commit=inplace"] if inplace else []
            n["inplace_rounds"] += inplace
            old = cur
            old_sha = sha256(old)
            try:
                dm = Daemon(path, mnt, *opts)
            except RuntimeError as e:
                fail(i, "mount: %s" % e)
                break
            st = status(mnt)
            if staged_lines(st):
                fail(i, "something is staged at the start of the round: %s" % st)
            k = rng.randrange(len(SIZES))
            size = SIZES[k]
            off = rng.randrange(size)
            if inplace and rng.random() < 0.5:
                off = rng.randrange(min(size, 4096))     # most of the tensor: a long apply
                ln = size - off
            else:
                ln = rng.randint(1, min(size - off, rng.choice([4096, 256 * 1024, size])))
            patch = rng.randbytes(ln)
            while patch == old[offs[k] + off:offs[k] + off + ln]:
                patch = rng.randbytes(ln)      # an edit that changes nothing is no test
            new = old[:offs[k] + off] + patch + old[offs[k] + off + ln:]
            new_sha = sha256(new)
            data = os.path.join(mnt, "weights", "t%d" % k, "data")
            fd = os.open(data, os.O_WRONLY)
            try:
                w = os.pwrite(fd, patch, off)
            finally:
                os.close(fd)
            if w != ln:
                fail(i, "pwrite of %d bytes returned %d" % (ln, w))
            if i % 10 == 1:
                # The root model file shows what a commit would write.
                if read(os.path.join(mnt, name), "rb") != new:
                    fail(i, "root model file with the edit staged is not the patched model")
            reader = None
            if not inplace:
                reader = DirectReader(path)
                reader.start()
            cp = subprocess.Popen([MODELFS, "commit", mnt], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0, 0.020))
            if not dm.kill9():
                fail(i, "the dead mount could not be unmounted")
            n["kills"] += 1
            n["auto_kills"] += not inplace
            try:
                crc = cp.wait(timeout=60)
            except subprocess.TimeoutExpired:
                cp.kill()
                crc = cp.wait()
                fail(i, "modelfs commit hung after the daemon was killed")
            reported_ok = crc == 0
            n["commit_reported_ok"] += reported_ok
            disk = sha256_file(path)
            if disk not in (old_sha, new_sha):
                if inplace:
                    n["torn_before_mount"] += 1
                else:
                    fail(i, "after kill -9 of a rewrite commit the model is neither old nor new")

            # Next mount: recovery.
            try:
                dm = Daemon(path, mnt)
            except RuntimeError as e:
                fail(i, "remount after kill -9 failed: %s" % e)
                break
            finally:
                if reader:
                    reader.finish()
                    n["direct_reads"] += reader.reads
                    n["direct_parsed"] += reader.parsed
                    other = set(reader.seen) - {old_sha, new_sha}
                    if other or reader.errors:
                        fail(i, "a direct reader of the model file saw %d read(s) of neither "
                             "the old nor the new version%s" % (
                                 sum(reader.seen[h] for h in other),
                                 "; " + "; ".join(reader.errors[:2]) if reader.errors else ""))
            try:
                left = temp_files(d, name)
                if left:
                    fail(i, "temp files left after the next mount: %s" % left)
                disk = sha256_file(path)
                st = status(mnt)
                if "finished an interrupted" in st:
                    n["redo_replayed"] += 1
                if "never started patching" in st:
                    n["redo_discarded"] += 1
                tdata = read(data, "rb")
                if disk == new_sha:
                    n["new"] += 1
                    if staged_lines(st):
                        fail(i, "commit completed but edits are staged again: %r"
                             % staged_lines(st))
                        abort(mnt)
                    if tdata != new[offs[k]:offs[k] + size]:
                        fail(i, "model is new but the mount shows other bytes")
                    cur = new
                elif disk == old_sha:
                    n["old"] += 1
                    if reported_ok:
                        fail(i, "modelfs commit reported success but the model is the old version")
                    if not any(("t%d" % k) in s and "data" in s for s in staged_lines(st)):
                        fail(i, "commit interrupted, but status does not list the staged edit of "
                             "t%d: %r" % (k, st))
                    if tdata != new[offs[k]:offs[k] + size]:
                        fail(i, "commit interrupted, but the tensor does not read the staged bytes")
                    if rng.random() < 0.5:
                        r = commit(mnt)
                        n["recovered_then_commit"] += 1
                        if r.returncode != 0:
                            fail(i, "commit of recovered edits failed: %s" % why(r))
                        if sha256_file(path) != new_sha:
                            fail(i, "commit of the recovered edit did not give the new version")
                        cur = read(path, "rb")
                    else:
                        r = abort(mnt)
                        n["recovered_then_abort"] += 1
                        if r.returncode != 0:
                            fail(i, "abort of recovered edits failed: %s" % why(r))
                        if staged_lines(status(mnt)):
                            fail(i, "abort left staged edits")
                        if read(data, "rb") != old[offs[k]:offs[k] + size]:
                            # Counted apart (a kernel page-cache problem, see
                            # the check below); the daemon's answer is what
                            # must be right here.
                            n["stale_cache_after_abort"] += 1
                            fd = os.open(data, os.O_RDONLY)
                            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                            os.close(fd)
                        if read(data, "rb") != old[offs[k]:offs[k] + size]:
                            fail(i, "after abort the tensor does not read the old bytes, even with "
                                 "the kernel's cached pages dropped")
                        cur = old
                else:
                    fail(i, "after the next mount the model is neither old nor new")
                    cur = read(path, "rb")
                    break
            finally:
                rc = dm.stop()
                if rc != 0:
                    fail(i, "daemon exit status %s after unmount" % rc)
            if sha256_file(path) != sha256(cur):
                fail(i, "unmount changed the model")
                cur = read(path, "rb")
            for f in side_files(d, name):
                if ".modelfs-journal." in f:
                    # Journals set aside (stale: written for the old version of a
                    # model whose commit completed).  Counted, then removed so that
                    # the tmpfs does not fill up.
                    n["stale_journals"] += 1
                    os.unlink(os.path.join(d, f))
    finally:
        # Never leave a daemon behind (the tmpfs must come down).
        if dm is not None and dm.alive():
            dm.kill9()

    print("# kill -9 storm: %s" % ", ".join("%s %d" % kv for kv in n.items()))
    t.check("%d kill -9 of the daemon during commits (%d rounds): model always old or new, "
            "remount ok, no temp left, interrupted edits recovered" % (n["kills"], i),
            not bad and n["kills"] >= 200, "%d problems: %s" % (len(bad), "; ".join(bad[:6])))
    t.check("%d of the kills in commit=auto, with a direct reader of the model file: %d "
            "whole reads, every one the old or the new version, %d checked by python-onnx"
            % (n["auto_kills"], n["direct_reads"], n["direct_parsed"]),
            n["auto_kills"] >= AUTO_KILLS and n["direct_reads"] > n["auto_kills"] and
            n["direct_parsed"] > 0 and not any("direct reader" in b for b in bad))
    t.eq("journals set aside as another version's (.stale-) during the storm", 0,
         n["stale_journals"])
    t.check("kills landed on both sides of the commit point (%d old, %d new)"
            % (n["old"], n["new"]), n["old"] > 0 and n["new"] > 0)
    t.check("after `modelfs abort` of edits recovered from the journal, the data file reads "
            "the old bytes (%d of %d aborts read the aborted bytes from the kernel's page cache)"
            % (n["stale_cache_after_abort"], n["recovered_then_abort"]),
            n["stale_cache_after_abort"] == 0,
            "abort does not invalidate cached pages of tensors whose edits came from the journal")
    left = side_files(d, name)
    t.eq("nothing left beside the model at the end", [], left)
    onnx.checker.check_model(onnx.load(path))


def enospc(t, base):
    d = os.path.join(base, "full")
    os.makedirs(d)
    path = os.path.join(d, "full.onnx")
    name = os.path.basename(path)
    m = make_random_model(path, [4 * MiB, 256 * 1024], 5)
    t0 = numpy_helper.to_array(m.graph.initializer[0]).tobytes()
    old_sha = sha256_file(path)
    new_t1 = random.Random(6).randbytes(512 * 1024)
    src = os.path.join(os.path.dirname(base), "t1.bin")     # not on the small tmpfs
    with open(src, "wb") as f:
        f.write(new_t1)
    mnt = os.path.join(base, "mnt2")
    try:
        dm = Daemon(path, mnt)
    except RuntimeError as e:
        t.not_ok("mount on the small tmpfs", e)
        return
    filler = os.path.join(d, "filler")
    try:
        w = os.path.join(mnt, "weights", "t1")
        r1 = subprocess.run(["sh", "-c", 'echo 524288 > "$1"', "sh", os.path.join(w, "shape")],
                            capture_output=True, text=True)
        r2 = subprocess.run(["cp", src, os.path.join(w, "data")], capture_output=True, text=True)
        t.check("stage t1 grown to 512 KiB (shape and data)", r1.returncode == r2.returncode == 0,
                (r1.stderr + r2.stderr).strip())
        new_size = len(read(os.path.join(mnt, name), "rb"))
        t.check("the root model file shows the grown model (%d bytes)" % new_size,
                new_size > os.path.getsize(path))
        # Leave half the new file's size free.
        sv = os.statvfs(d)
        free = sv.f_bavail * sv.f_frsize
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        os.posix_fallocate(fd, 0, free - new_size // 2)
        os.close(fd)
        sv = os.statvfs(d)
        free0 = sv.f_bfree
        t.check("free space on the tmpfs (%d bytes) is less than the new file"
                % (sv.f_bavail * sv.f_frsize), sv.f_bavail * sv.f_frsize < new_size)

        r = commit(mnt)
        msg = (r.stdout + r.stderr).lower()
        print("# modelfs commit on the full tmpfs: %s" % why(r))
        t.check("modelfs commit fails on a full tmpfs", r.returncode != 0, why(r))
        t.check("modelfs commit says it is out of space", "space" in msg or "enospc" in msg,
                why(r))
        t.eq("model untouched after the failed commit", old_sha, sha256_file(path))
        st = status(mnt)
        t.check("edits still staged after the failed commit", any("t1" in s for s in
                                                                  staged_lines(st)), st)
        t.check("status reports the failure", "failed" in st and ("space" in st.lower()), st)
        t.eq("staged data still reads back", new_t1, read(os.path.join(w, "data"), "rb"))
        t.eq("no temp file left after the failed commit", [], temp_files(d, name))
        t.eq("free space back to the pre-commit value", free0, os.statvfs(d).f_bfree)

        fd = os.open(os.path.join(w, "data"), os.O_RDWR)
        try:
            try:
                os.fsync(fd)
                t.not_ok("fsync(2) on a full tmpfs reports ENOSPC", "fsync succeeded")
            except OSError as e:
                t.eq("fsync(2) on a full tmpfs reports ENOSPC", errno.ENOSPC, e.errno)
            t.eq("model untouched after the failed fsync", old_sha, sha256_file(path))
            t.check("edits still staged after the failed fsync",
                    any("t1" in s for s in staged_lines(status(mnt))), status(mnt))
            t.eq("no temp file left after the failed fsync", [], temp_files(d, name))

            os.unlink(filler)
            try:
                os.fsync(fd)
                t.ok("fsync(2) after freeing space succeeds")
            except OSError as e:
                t.not_ok("fsync(2) after freeing space succeeds", e)
        finally:
            os.close(fd)
        if sha256_file(path) == old_sha:
            t.not_ok("fsync committed the staged edits", "model unchanged; trying modelfs commit")
            r = commit(mnt)
            t.check("modelfs commit after freeing space", r.returncode == 0, why(r))
        else:
            t.ok("fsync committed the staged edits")
        t.check("nothing staged after the commit", not staged_lines(status(mnt)), status(mnt))
    finally:
        if os.path.exists(filler):
            os.unlink(filler)
        rc = dm.stop()
    t.eq("daemon exit status", 0, rc)
    nm = onnx.load(path)
    got = {x.name: (list(x.dims), numpy_helper.to_array(x).tobytes()) for x in nm.graph.initializer}
    t.check("committed model: t1 is the new 512 KiB, t0 unchanged",
            got == {"t0": ([4 * MiB], t0), "t1": ([512 * 1024], new_t1)})
    t.eq("nothing left beside the model", [], side_files(d, name))


def main():
    t = T()
    if os.geteuid() != 0:
        t.not_ok("test_crash.py mounts tmpfs file systems: run it as root")
        t.done()
    seed = int(os.environ.get("MFS_SEED", random.SystemRandom().randrange(1 << 31)))
    print("# seed %d (MFS_SEED=%d to repeat)" % (seed, seed))
    rng = random.Random(seed)
    fs1 = os.path.join(t.tmp, "tmpfs")
    fs2 = os.path.join(t.tmp, "small")
    mounted = []
    try:
        mkdir_tmpfs(fs1, 256 * MiB)
        mounted.append(fs1)
        try:
            storm(t, rng, fs1)
        except Exception as e:  # noqa: BLE001
            t.not_ok("kill -9 storm", repr(e))
        mkdir_tmpfs(fs2, 16 * MiB)
        mounted.append(fs2)
        try:
            enospc(t, fs2)
        except Exception as e:  # noqa: BLE001
            t.not_ok("ENOSPC commit", repr(e))
    finally:
        for f in reversed(mounted):
            for sub in ("mnt", "mnt2"):
                p = os.path.join(f, sub)
                if os.path.ismount(p):
                    subprocess.run(["umount", "-l", p], capture_output=True)
            umount_tmpfs(f)
    t.check("tmpfs file systems unmounted", not any(os.path.ismount(f) for f in mounted))
    t.done()


if __name__ == "__main__":
    main()

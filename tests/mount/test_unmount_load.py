#!/usr/bin/python3
"""Issue 6, "Unmount under load": `fusermount3 -u` and `kill` of the daemon
while files are open and reads are in flight.

Model: three uint8 pattern tensors (tests/tools/stresslib.py).  In each
scenario a fresh copy is mounted (foreground daemon), a new version of t1 is
staged (scratch file renamed over weights/t1/data), and under load: reader
threads loop on reads (fresh open + pread, and long-lived descriptors), a
data file is mmap'ed (MAP_SHARED, read once, held), the root model file is
held open.  Then:

  umount   fusermount3 -u; a refusal (EBUSY) is recorded and followed by
           fusermount3 -uz (lazy).  The mount leaves the namespace; the
           readers are stopped, the descriptors and the mmap dropped; the
           daemon must then exit 0 having committed the staged edit.
  term     kill -TERM of the daemon: it unmounts and commits the staged edit
           (doc/design.md §5.3); readers get errors, not hangs.
  kill9    kill -9 of the daemon: readers get errors (ENOTCONN), not hangs;
           the mount is ENOTCONN until fusermount3 -u cleans it; the model is
           byte-identical to before, and the staged edit is offered again by
           the next mount (journal), which is aborted.

Every scenario then checks the model file (sha256 == before or == the
committed version, as expected), that no reader thread hung (joined with a
timeout; a hang is a failure, not a wait), and that a remount works and reads
the expected bytes of every tensor.  The outcome of each unmount is printed.
"""
import errno
import mmap
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from mfstest import T, is_mounted  # noqa: E402
from txnacc import Daemon, MiB, sha256_file  # noqa: E402
from stresslib import (classify, control, make_pattern_model, model_tensors,  # noqa: E402
                       pattern, stage_by_rename)

SIZES = [2 * MiB, 3 * MiB, MiB]
NEWV = 7
JOIN = 30               # seconds a reader may take to notice; more is a hang


def expected(version_of_t1):
    return {"t%d" % i: pattern(i, version_of_t1 if i == 1 else 0, n)
            for i, n in enumerate(SIZES)}


class Load:
    """Reader threads, long-lived descriptors, an mmap, the root file open."""

    def __init__(self, mnt, nthreads=6):
        self.mnt = mnt
        self.stop = threading.Event()
        self.results = {}           # thread index -> (reads, last error or None)
        self.count = [0] * nthreads
        self.short = 0
        self.lock = threading.Lock()
        self.bad = []
        tdata = self.tdata
        self.fds = [os.open(tdata(i), os.O_RDONLY) for i in range(len(SIZES))]
        self.root_fd = os.open(os.path.join(mnt, "model.onnx"), os.O_RDONLY)
        self.mfd = os.open(tdata(2), os.O_RDONLY)
        self.map = mmap.mmap(self.mfd, SIZES[2], mmap.MAP_SHARED, mmap.PROT_READ)
        self.map_ok = self.map[:SIZES[2]] == pattern(2, 0, SIZES[2])
        self.threads = [threading.Thread(target=self.run, args=(k,), daemon=True)
                        for k in range(nthreads)]
        for th in self.threads:
            th.start()

    def tdata(self, i):
        return os.path.join(self.mnt, "weights", "t%d" % i, "data")

    def run(self, k):
        n, err = 0, None
        seed = k * 7919
        while not self.stop.is_set():
            seed = (seed * 1103515245 + 12345) & 0x7fffffff
            i = seed % len(SIZES)
            ln = min(SIZES[i], 4096 << (seed % 8))
            off = (seed >> 4) % (SIZES[i] - ln + 1)
            try:
                if k % 2:
                    b = os.pread(self.fds[i], ln, off)
                else:
                    fd = os.open(self.tdata(i), os.O_RDONLY)
                    try:
                        b = os.pread(fd, ln, off)
                    finally:
                        os.close(fd)
            except OSError as e:
                err = e
                break
            if len(b) < ln:
                # A read cut short when the connection dies mid-way returns
                # what it had (cached pages); those bytes must be right.
                self.short += 1
                if len(b) < 8:
                    continue
            v, why = classify(i, off, b)
            if v is None or (v not in (0, NEWV) if i == 1 else v != 0):
                with self.lock:
                    self.bad.append("t%d off %d: %s (v %s)" % (i, off, why, v))
            n += 1
            self.count[k] = n
        with self.lock:
            self.results[k] = (n, err)

    def finish(self, wait=JOIN):
        """Let the readers run into the end on their own (up to `wait`
        seconds), then stop them.  Returns (hung, cached, results): hung =
        threads stuck in a call (no progress for 2 s); cached = threads still
        reading successfully (long-lived descriptors served from the page
        cache)."""
        t0 = time.monotonic()
        while time.monotonic() < t0 + wait and any(th.is_alive() for th in self.threads):
            if (time.monotonic() > t0 + 3 and
                    not any(th.is_alive() for k, th in enumerate(self.threads) if k % 2 == 0)):
                break       # the fresh-open readers are done; the others are judged below
            time.sleep(0.05)
        before = list(self.count)
        time.sleep(2)
        alive = [k for k, th in enumerate(self.threads) if th.is_alive()]
        hung = [k for k in alive if self.count[k] == before[k]]
        cached = [k for k in alive if self.count[k] != before[k]]
        self.stop.set()
        for th in self.threads:
            th.join(5)
        hung += [k for k, th in enumerate(self.threads) if th.is_alive() and k not in hung]
        return sorted(set(hung)), cached, dict(self.results)

    def release(self):
        for fd in self.fds + [self.root_fd]:
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.map.close()
        except (OSError, ValueError):
            pass
        try:
            os.close(self.mfd)
        except OSError:
            pass


def wait_gone(p, timeout=120):
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def errs_of(results):
    return sorted(set(errno.errorcode.get(e.errno, str(e.errno)) if e else "none"
                      for _, e in results.values()))


def remount_check(t, label, path, mnt, want, abort=False):
    dm = Daemon(path, mnt)
    try:
        st = open(os.path.join(mnt, ".modelfs", "status")).read()
        if abort:
            t.check("%s: the remount offers the staged edit again (journal)" % label,
                    "journal: none" not in st, st.replace("\n", " | "))
            e = control(mnt, "abort")
            t.check("%s: abort of the recovered edit" % label, e is None, e)
        good = True
        for i, n in enumerate(SIZES):
            with open(os.path.join(mnt, "weights", "t%d" % i, "data"), "rb") as f:
                good = good and f.read() == want["t%d" % i]
        t.check("%s: remount works and reads the expected bytes of every tensor" % label, good)
    finally:
        rc = dm.stop()
    t.eq("%s: remounted daemon exits 0" % label, 0, rc)


def scenario(t, how):
    d = os.path.join(t.tmp, how)
    os.makedirs(d)
    path = os.path.join(d, "model.onnx")
    make_pattern_model(path, SIZES, 0)
    before = sha256_file(path)
    mnt = os.path.join(t.tmp, "mnt-" + how)
    dm = Daemon(path, mnt)
    load = None
    note = ""
    try:
        stage_by_rename(os.path.join(mnt, "weights", "t1"), pattern(1, NEWV, SIZES[1]))
        load = Load(mnt)
        t.check("%s: mmap of a data file reads its bytes" % how, load.map_ok)
        time.sleep(0.3)     # reads in flight
        if how == "umount":
            r = subprocess.run(["fusermount3", "-u", mnt], capture_output=True, text=True)
            if r.returncode == 0:
                note = "fusermount3 -u succeeded with files open"
            else:
                note = "fusermount3 -u refused (%s); used -uz" % r.stderr.strip()
                r = subprocess.run(["fusermount3", "-uz", mnt], capture_output=True, text=True)
                t.eq("umount: fusermount3 -uz succeeds", 0, r.returncode)
            t.check("umount: the mount point left the namespace", not is_mounted(mnt))
            hung, cached, res = load.finish(0.5)
            load.release()
            rc = wait_gone(dm.p)
            t.check("umount: daemon exits once the last file is closed (rc %s)" % rc, rc == 0,
                    dm.stderr()[-300:])
            want_sha = "new"
        elif how == "term":
            os.kill(dm.pid, signal.SIGTERM)
            rc = wait_gone(dm.p)
            hung, cached, res = load.finish()
            t.check("term: daemon exits 0 after SIGTERM (rc %s)" % rc, rc == 0,
                    dm.stderr()[-300:])
            gone = not is_mounted(mnt)
            if not gone:
                subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
                if is_mounted(mnt):
                    subprocess.run(["fusermount3", "-uz", mnt], capture_output=True)
            note = "after SIGTERM the mount was %s" % ("gone" if gone else
                                                        "still there (cleaned by fusermount3)")
            t.check("term: mount gone", not is_mounted(mnt))
            load.release()
            want_sha = "new"
        else:
            os.kill(dm.pid, signal.SIGKILL)
            dm.p.wait()
            hung, cached, res = load.finish()
            try:
                os.stat(os.path.join(mnt, "weights"))
                state = "readable"
            except OSError as e:
                state = errno.errorcode.get(e.errno, str(e.errno))
            note = "after kill -9: mount point %s, mounted=%s" % (state, is_mounted(mnt))
            load.release()
            r = subprocess.run(["fusermount3", "-u", mnt], capture_output=True, text=True)
            if is_mounted(mnt):
                subprocess.run(["fusermount3", "-uz", mnt], capture_output=True)
            t.check("kill9: fusermount3 -u cleans the dead mount", not is_mounted(mnt), r.stderr)
            want_sha = "old"
        print("# %s: %s; reads per thread: %s; errors seen: %s; still reading from cache "
              "(long-lived fds): %s; short reads: %d" % (
                  how, note, {k: v[0] for k, v in sorted(res.items())}, errs_of(res), cached,
                  load.short))
        t.eq("%s: no reader thread hung" % how, [], hung)
        if how != "umount":
            fresh = [k for k in range(len(load.threads)) if k % 2 == 0]
            t.check("%s: every fresh-open reader stopped with an error" % how,
                    all(res.get(k, (0, None))[1] for k in fresh),
                    {k: res.get(k) for k in fresh})
            t.check("%s: every long-lived-descriptor reader stopped with an error or "
                    "still reads correct bytes" % how,
                    all(res.get(k, (0, None))[1] or k in cached
                        for k in range(len(load.threads)) if k % 2), res)
        t.check("%s: every read before the end returned correct bytes" % how, not load.bad,
                load.bad[:3])
    finally:
        if load:
            load.stop.set()
            load.release()
        if dm.alive():
            dm.p.kill()
            dm.p.wait()
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-uz", mnt], capture_output=True)
    after = sha256_file(path)
    if want_sha == "old":
        t.eq("%s: model file byte-identical to before" % how, before, after)
        want = expected(0)
    else:
        try:
            got = model_tensors(path)
        except Exception as e:  # noqa: BLE001
            got = {"error": str(e)}
        t.check("%s: model file holds the edit committed at unmount" % how,
                got == expected(NEWV), "sha %s (before %s)" % (after, before))
        want = expected(NEWV)
    remount_check(t, how, path, mnt, want, abort=(want_sha == "old"))
    left = [n for n in os.listdir(d) if n != "model.onnx"]
    t.eq("%s: nothing left beside the model" % how, [], left)


def main():
    t = T()
    for how in ("umount", "term", "kill9"):
        try:
            scenario(t, how)
        except Exception as e:  # noqa: BLE001
            t.not_ok("%s: scenario ran" % how, repr(e))
    t.done()


if __name__ == "__main__":
    main()

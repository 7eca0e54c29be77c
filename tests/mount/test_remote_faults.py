#!/usr/bin/python3
"""tests/mount/test_remote_faults.py — issue 16: a remote server that
misbehaves (tests/remotepeers.py FaultServer, on 127.0.0.1).  Checked, each
on a fresh mount without a cache (-o cache=none, timeout=2):
  - 500 twice then 200, for the first request and for tensor reads: retried,
    the right bytes;
  - the connection dropped mid-body: retried, the right bytes;
  - a stall: the read fails with EIO (bounded), a log line names the URL;
  - the object changes between two reads: the second read fails with EIO,
    never bytes of the new version, and a log line says it changed;
  - a server that ignores Range (200 to a range request), 403 and 404:
    the mount fails at once with one line.
"""
import errno
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from mfstest import MOUNT_MODELFS, T, is_mounted, umount  # noqa: E402
import remotefixtures as rf  # noqa: E402
from remotepeers import FaultServer  # noqa: E402

OPTS = ["-o", "cache=none", "-o", "timeout=2", "-o", "retries=3"]


class FgMount:
    """mount.modelfs -f in the background, its stderr kept (the log)."""

    def __init__(self, t, url, *opts):
        self.mnt = os.path.join(t.tmp, "m%d" % len(os.listdir(t.tmp)))
        os.makedirs(self.mnt)
        self.err = open(self.mnt + ".log", "w+")
        self.p = subprocess.Popen([MOUNT_MODELFS, url, self.mnt, "-f"] + OPTS + list(opts),
                                  stdout=subprocess.DEVNULL, stderr=self.err)
        for _ in range(300):
            if is_mounted(self.mnt) or self.p.poll() is not None:
                break
            time.sleep(0.05)
        if not is_mounted(self.mnt):
            raise RuntimeError("mount failed: " + self.log())

    def log(self):
        self.err.flush()
        self.err.seek(0)
        return self.err.read()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        umount(self.mnt)
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(timeout=10)
        self.err.close()


def data(mnt, name):
    with open(os.path.join(mnt, "weights", name, "data"), "rb") as f:
        return f.read()


def fails_at_once(t, what, url, expect):
    mnt = os.path.join(t.tmp, "f%d" % len(os.listdir(t.tmp)))
    os.makedirs(mnt)
    start = time.time()
    r = subprocess.run([MOUNT_MODELFS, url, mnt] + OPTS, capture_output=True, text=True,
                       timeout=60)
    took = time.time() - start
    if r.returncode == 0:
        umount(mnt)
    lines = r.stderr.strip().splitlines()
    t.check(what, r.returncode != 0 and len(lines) == 1 and expect in lines[0] and
            url in lines[0] and took < 10, "rc %d, %.1f s, %r" % (r.returncode, took, r.stderr))


def main():
    t = T()
    srv = os.path.join(t.tmp, "srv")
    os.makedirs(srv)
    rng = np.random.default_rng(7)
    big = rng.standard_normal((512, 1024)).astype(np.float32)      # 2 MiB: past the head
    other = rng.standard_normal((256, 1024)).astype(np.float32)
    rf.st_write(os.path.join(srv, "m.safetensors"), [("big", big), ("other", other)])
    with FaultServer(srv) as fs:
        url = fs.url("m.safetensors")
        fs.fault = "500x2"
        try:
            with FgMount(t, url) as m:
                t.check("500 twice then 200: the mount retried", True)
                t.check("500 twice then 200: tensor bytes right", data(m.mnt, "big") ==
                        big.tobytes())
        except Exception as e:  # noqa: BLE001
            t.not_ok("500 twice then 200", e)

        fs.fault = None
        fs.counts.clear()
        try:
            with FgMount(t, url) as m:
                fs.fault = "drop"
                t.check("dropped mid-body: retried, tensor bytes right",
                        data(m.mnt, "big") == big.tobytes())
                fs.fault = None
        except Exception as e:  # noqa: BLE001
            t.not_ok("dropped mid-body", e)

        fs.fault = None
        try:
            with FgMount(t, url, "-o", "retries=1") as m:
                fs.fault = "stall"
                start = time.time()
                try:
                    data(m.mnt, "big")
                    t.not_ok("stall: the read fails", "it returned bytes")
                except OSError as e:
                    t.eq("stall: the read fails with EIO", errno.EIO, e.errno)
                t.check("stall: bounded (%.1f s)" % (time.time() - start),
                        time.time() - start < 60)
                fs.fault = None
                t.check("stall: a log line names the URL and the timeout",
                        url in m.log() and "imeout" in m.log(), m.log()[-300:])
        except Exception as e:  # noqa: BLE001
            t.not_ok("stall", e)
        fs.fault = None

        try:
            with FgMount(t, url) as m:
                t.check("change: first read right", data(m.mnt, "big") == big.tobytes())
                fs.etag = '"v2"'
                try:
                    data(m.mnt, "other")
                    t.not_ok("change: the read after the change fails", "it returned bytes")
                except OSError as e:
                    t.eq("change: the read after the change fails with EIO", errno.EIO,
                         e.errno)
                t.check("change: a log line says the object changed",
                        url in m.log() and "changed" in m.log(), m.log()[-300:])
                fs.etag = '"v1"'
        except Exception as e:  # noqa: BLE001
            t.not_ok("change", e)

        fs.fault = "norange"
        fails_at_once(t, "server ignoring Range: the mount fails at once with one line", url,
                      "Range")
        fs.fault = "403"
        fails_at_once(t, "403: the mount fails at once with one line", url, "403")
        fs.fault = None
        fails_at_once(t, "404: the mount fails at once with one line",
                      fs.url("nope.safetensors"), "404")
    t.done()


if __name__ == "__main__":
    main()

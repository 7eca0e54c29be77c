#!/usr/bin/python3
"""bench/root_writes.py — what keeping the root model file's pages true costs
a loop of small writes (issue 10 item 7).

    MFS_BUILD=build bench/root_writes.py [--reps N] [--writes N] [--mount-opt ARG]...

A model with one 8 MiB uint8 tensor is mounted read-write; each repetition
times N (default 1000) sequential 4 KiB pwrite(2)s to that tensor's `data`
(one descriptor, no close in the loop), in three states of the root model
file:
  closed    no descriptor open on it: an edit only bumps its version;
  mapped    open and mapped whole (MAP_SHARED, or MAP_PRIVATE where shared
            mappings fail, as before the root file was page-cached), every
            page touched before the loop, so that each write's invalidation
            has a mapped page to drop (and the writer waits for it);
  open      open, nothing cached (the invalidations find no page).
Before each repetition the staged edits are aborted.  Prints the median
(min..max) microseconds per write over the repetitions, for each state, and
mapped/closed.  The model lives in a temporary directory under --workdir
(default /var/tmp), on disk.
"""
import argparse
import mmap
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("MFS_BUILD") or os.path.join(SRC, "build")
MOUNT = os.path.join(BUILD, "fs", "mount.modelfs")
MODELFS = os.path.join(BUILD, "tools", "modelfs")
MiB = 1 << 20


def make_model(path):
    a = np.random.default_rng(1).integers(0, 256, 8 * MiB, dtype=np.uint8)
    g = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "w", [],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8, [a.size])],
                          [numpy_helper.from_array(a, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)


def mounted(mnt):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == mnt for line in f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--writes", type=int, default=1000)
    ap.add_argument("--workdir", default="/var/tmp")
    ap.add_argument("--mount-opt", action="append", default=[])
    args = ap.parse_args()
    if args.writes * 4096 > 8 * MiB:
        ap.error("--writes: at most 2048")
    d = tempfile.mkdtemp(prefix="mfs-rootw.", dir=args.workdir)
    model, mnt = os.path.join(d, "w.onnx"), os.path.join(d, "mnt")
    os.makedirs(mnt)
    make_model(model)
    daemon = subprocess.Popen([MOUNT, "-f", model, mnt] + args.mount_opt,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(1000):
            if mounted(mnt):
                break
            time.sleep(0.01)
        root, data = os.path.join(mnt, "w.onnx"), os.path.join(mnt, "weights", "w", "data")
        buf = os.urandom(4096)
        kind = "MAP_SHARED"
        res = {"closed": [], "mapped": [], "open": []}
        for rep in range(args.reps):
            for state in res:
                subprocess.run([MODELFS, "abort", mnt], check=True, capture_output=True)
                rfd, mm = None, None
                if state != "closed":
                    rfd = os.open(root, os.O_RDONLY)
                    size = os.fstat(rfd).st_size
                    if state == "mapped":
                        try:
                            mm = mmap.mmap(rfd, size, flags=mmap.MAP_SHARED,
                                           prot=mmap.PROT_READ)
                        except OSError:
                            kind = "MAP_PRIVATE"
                            mm = mmap.mmap(rfd, size, flags=mmap.MAP_PRIVATE,
                                           prot=mmap.PROT_READ)
                        for p in range(0, size, mmap.PAGESIZE):
                            mm[p]
                    else:
                        os.posix_fadvise(rfd, 0, 0, os.POSIX_FADV_DONTNEED)
                fd = os.open(data, os.O_WRONLY)
                t0 = time.perf_counter()
                for i in range(args.writes):
                    os.pwrite(fd, buf, i * 4096)
                dt = time.perf_counter() - t0
                os.close(fd)
                res[state].append(dt / args.writes * 1e6)
                if mm:
                    mm.close()
                if rfd is not None:
                    os.close(rfd)
        subprocess.run([MODELFS, "abort", mnt], check=True, capture_output=True)
    finally:
        subprocess.run(["fusermount3", "-u", mnt])
        daemon.wait(timeout=120)
        shutil.rmtree(d, ignore_errors=True)
    print("# %s; %d x 4 KiB pwrite to data, %d reps; options: %s; mapped = %s"
          % (BUILD, args.writes, args.reps, " ".join(args.mount_opt) or "(default)", kind))
    for state, v in res.items():
        print("%-7s %7.1f us/write (%.1f..%.1f)" % (state, statistics.median(v), min(v), max(v)))
    print("mapped/closed %.2fx" % (statistics.median(res["mapped"]) /
                                   statistics.median(res["closed"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())

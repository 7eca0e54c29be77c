#!/usr/bin/python3
"""Issue 4, acceptance bullet 7 ("A random read/write exerciser on a tensor
`data` file ..."; doc/reliability.md §2.3 F1, fsx-lite): a random read/write
exerciser on one tensor `data` file through the mount.  At least 20,000
operations of random offsets and lengths on one O_RDWR descriptor (pwrite,
also past the end; pread, also past the end; ftruncate, shrinking and
extending; fstat), every read and size checked against an in-memory shadow
(bytearray); some reads come after posix_fadvise(DONTNEED) dropped the
kernel's cached pages, so that they reach the daemon.  At the end the file
is truncated back to dtype × shape, read whole through the first and a fresh
descriptor, `modelfs commit`, and the committed model's tensor
(python3-onnx numpy_helper.to_array(...).tobytes() of the file on disk) must
equal the shadow, the other tensors unchanged.  Seed: $MFS_SEED (printed)."""
import os
import random
import shutil
import sys

import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from mfstest import T  # noqa: E402
from txnacc import MiB, commit, make_random_model, mounted, side_files, status, why  # noqa: E402

N_OPS = int(os.environ.get("MFS_OPS", "20000"))


def rand_len(rng):
    r = rng.random()
    if r < 0.3:
        return rng.randint(1, 64)
    if r < 0.7:
        return rng.randint(1, 4096)
    if r < 0.97:
        return rng.randint(1, 65536)
    return rng.randint(65536, 512 * 1024)


def rand_off(rng, size):
    r = rng.random()
    if r < 0.05:
        return max(0, size - rng.randint(0, 64))            # around the end
    if r < 0.08:
        return size + rng.randint(0, 8192)                  # past the end
    if r < 0.12:
        return rng.randrange(0, max(1, size)) & ~4095        # page aligned
    return rng.randrange(0, max(1, size))


def main():
    t = T()
    seed = int(os.environ.get("MFS_SEED", random.SystemRandom().randrange(1 << 31)))
    print("# seed %d (MFS_SEED=%d to repeat), %d operations" % (seed, seed, N_OPS))
    rng = random.Random(seed)
    d = os.path.join(t.tmp, "m")
    os.makedirs(d)
    path = os.path.join(d, "ex.onnx")
    size0 = 3 * MiB + 123                           # odd: not a multiple of a page or chunk
    orig = make_random_model(path, [1000, size0, 5000], seed)
    before = {x.name: numpy_helper.to_array(x).tobytes() for x in orig.graph.initializer}
    shadow = bytearray(before["t1"])
    counts = {"write": 0, "read": 0, "truncate": 0, "stat": 0, "drop": 0}
    bad = []
    try:
        with mounted(path, os.path.join(t.tmp, "mnt")) as dm:
            mnt = dm.mnt
            data = os.path.join(mnt, "weights", "t1", "data")
            fd = os.open(data, os.O_RDWR)
            try:
                for i in range(N_OPS):
                    r = rng.random()
                    if r < 0.45:
                        off, n = rand_off(rng, len(shadow)), rand_len(rng)
                        buf = rng.randbytes(n)
                        w = os.pwrite(fd, buf, off)
                        counts["write"] += 1
                        if w != n:
                            bad.append("op %d: pwrite(%d, %d) returned %d" % (i, off, n, w))
                            break
                        if off > len(shadow):
                            shadow.extend(bytes(off - len(shadow)))
                        shadow[off:off + n] = buf
                    elif r < 0.92:
                        off, n = rand_off(rng, len(shadow)), rand_len(rng)
                        if rng.random() < 0.03:
                            # Drop the kernel's cached pages: this read
                            # reaches the daemon (staged chunks).
                            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                            counts["drop"] += 1
                        got = os.pread(fd, n, off)
                        counts["read"] += 1
                        want = bytes(shadow[off:off + n])
                        if got != want:
                            diff = next((k for k in range(min(len(got), len(want)))
                                         if got[k] != want[k]), min(len(got), len(want)))
                            bad.append("op %d: pread(%d, %d) returned %d bytes, first difference "
                                       "at +%d" % (i, off, n, len(got), diff))
                            break
                    elif r < 0.96:
                        # Mostly around the original size; the final truncate
                        # puts it back.
                        new = rng.randint(len(shadow) // 2, size0 + size0 // 4)
                        os.ftruncate(fd, new)
                        counts["truncate"] += 1
                        if new < len(shadow):
                            del shadow[new:]
                        else:
                            shadow.extend(bytes(new - len(shadow)))
                    else:
                        st = os.fstat(fd).st_size
                        counts["stat"] += 1
                        if st != len(shadow):
                            bad.append("op %d: fstat size %d, shadow %d" % (i, st, len(shadow)))
                            break
                os.ftruncate(fd, size0)
                counts["truncate"] += 1
                if size0 < len(shadow):
                    del shadow[size0:]
                else:
                    shadow.extend(bytes(size0 - len(shadow)))
                whole = os.pread(fd, size0 + 4096, 0)
                t.check("whole file read through the exerciser's descriptor equals the shadow",
                        whole == bytes(shadow), "%d vs %d bytes" % (len(whole), len(shadow)))
            finally:
                os.close(fd)
            nops = sum(counts.values()) - counts["drop"]
            t.check("%d operations (%d writes, %d reads (%d after dropping cached pages), %d "
                    "truncates, %d stats) agree with the shadow"
                    % (nops, counts["write"], counts["read"], counts["drop"], counts["truncate"],
                       counts["stat"]), not bad and nops >= 20000, "; ".join(bad))
            with open(data, "rb") as f:
                t.check("a fresh open reads the shadow", f.read() == bytes(shadow))
            t.eq("st_size of data is the tensor size again", size0, os.stat(data).st_size)
            r = commit(mnt)
            t.check("modelfs commit", r.returncode == 0, why(r) + " " + status(mnt))
            with open(data, "rb") as f:
                t.check("the mount shows the shadow after the commit", f.read() == bytes(shadow))
    except RuntimeError as e:
        t.not_ok("mount", e)
    m = onnx.load(path)
    after = {x.name: numpy_helper.to_array(x).tobytes() for x in m.graph.initializer}
    t.check("committed tensor (numpy_helper.to_array on the file on disk) equals the shadow",
            after.get("t1") == bytes(shadow))
    t.check("the other tensors unchanged", after.get("t0") == before["t0"]
            and after.get("t2") == before["t2"])
    t.eq("shape unchanged", [size0], list(next(x for x in m.graph.initializer
                                              if x.name == "t1").dims))
    try:
        onnx.checker.check_model(m)
        t.ok("onnx.checker.check_model passes on the committed model")
    except Exception as e:  # noqa: BLE001
        t.not_ok("onnx.checker.check_model passes on the committed model", e)
    t.eq("no journal/temp files left after unmount", [], side_files(d, "ex.onnx"))
    shutil.rmtree(d, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()

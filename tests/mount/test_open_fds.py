#!/usr/bin/python3
"""Issue 4, acceptance bullet 8 ("Open file descriptors on the old model
keep reading the old bytes ..."; doc/reliability.md §2.2 C9): open file descriptors
on the old model keep reading the old bytes during and after a commit; new
opens see the new bytes.

Model: three uint8 tensors t0 (1 MiB), t1 (2 MiB), t2 (2 MiB).  Before
anything is staged, these are opened: the model file on disk (a descriptor
and an mmap), the mount's root model file, weights/t1/data (a tensor that is
not edited but moves in the file) and weights/t2/data.  Staged: t0 grows to
1.5 MiB (shape and data: a rewrite commit, every later byte moves) and
64 KiB of t2 change (dd conv=notrunc).

What "old bytes" means: on disk, the old inode's bytes (the rename leaves
them to old descriptors and mmaps).  In the mount a commit changes no file's
content: the root model file already shows the staged edits
(doc/design.md §4, "the spliced result of the staged edits") and a data file
shows its writes, so an old descriptor in the mount must read exactly what it
read just before the commit — no mix of old-file and new-file offsets —
during and after it.

Reader threads pread random ranges of the old descriptors and the mmap while
`modelfs commit` runs; after the commit the old descriptors and the mmap are
read whole (to EOF), new opens (on disk and through the mount) are read whole,
then the old ones again and the new ones again, so that neither can leave
stale kernel-cached pages or sizes for the other, and once more after
posix_fadvise(DONTNEED) dropped the cached pages, so the reads reach the
daemon.  The rename gives the model
a new inode.
"""
import os
import mmap
import random
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from mfstest import T, read  # noqa: E402
from txnacc import MiB, commit, make_random_model, mounted, side_files, status, why  # noqa: E402


def pread_all(fd, n):
    """Read from offset 0 to EOF (at most n + 1 MiB): a descriptor that
    shows n bytes returns them and then EOF."""
    out = bytearray()
    while len(out) < n + MiB:
        b = os.pread(fd, 256 * 1024, len(out))
        if not b:
            break
        out += b
    return bytes(out)


def main():
    t = T()
    d = os.path.join(t.tmp, "m")
    os.makedirs(d)
    path = os.path.join(d, "fds.onnx")
    m = make_random_model(path, [MiB, 2 * MiB, 2 * MiB], 11)
    a, b, c = (numpy_helper.to_array(x).tobytes() for x in m.graph.initializer)
    old = read(path, "rb")
    rng = np.random.default_rng(12)
    new_a = rng.integers(0, 256, 3 * MiB // 2, dtype=np.uint8).tobytes()
    patch_off, patch = 700 * 1024 + 5, rng.integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes()
    new_c = c[:patch_off] + patch + c[patch_off + len(patch):]
    src = os.path.join(t.tmp, "src")
    os.makedirs(src)
    with open(os.path.join(src, "a"), "wb") as f:
        f.write(new_a)
    with open(os.path.join(src, "patch"), "wb") as f:
        f.write(patch)

    disk_fd = os.open(path, os.O_RDONLY)
    disk_ino = os.fstat(disk_fd).st_ino
    disk_mm = mmap.mmap(disk_fd, 0, prot=mmap.PROT_READ)
    try:
        with mounted(path, os.path.join(t.tmp, "mnt")) as dm:
            mnt = dm.mnt
            w = os.path.join(mnt, "weights")
            root_fd = os.open(os.path.join(mnt, "fds.onnx"), os.O_RDONLY)
            b_fd = os.open(os.path.join(w, "t1", "data"), os.O_RDONLY)
            c_fd = os.open(os.path.join(w, "t2", "data"), os.O_RDONLY)
            olds = {"model on disk": (disk_fd, old), "root model file in the mount": (root_fd, old),
                    "weights/t1/data in the mount": (b_fd, b)}
            for name, (fd, want) in olds.items():
                t.eq("%s reads the model before the edit" % name, want[:8192],
                     os.pread(fd, 8192, 0))

            r1 = subprocess.run(["sh", "-c", 'echo %d > "$1"' % len(new_a), "sh",
                                 os.path.join(w, "t0", "shape")], capture_output=True, text=True)
            r2 = subprocess.run(["cp", os.path.join(src, "a"), os.path.join(w, "t0", "data")],
                                capture_output=True, text=True)
            r3 = subprocess.run(["dd", "if=" + os.path.join(src, "patch"),
                                 "of=" + os.path.join(w, "t2", "data"), "bs=%d" % patch_off,
                                 "seek=1", "conv=notrunc", "status=none"],
                                capture_output=True, text=True)
            t.check("stage: t0 shape and data grown to 1.5 MiB, 64 KiB of t2 rewritten with dd",
                    r1.returncode == r2.returncode == r3.returncode == 0,
                    (r1.stderr + r2.stderr + r3.stderr).strip())
            t.eq("an old descriptor of weights/t2/data sees the staged dd write",
                 new_c, pread_all(c_fd, len(c)))
            # The root model file's view with the edits staged: the commit
            # must not change it for any descriptor (checked against the
            # committed file below).
            staged_root = pread_all(root_fd, 8 * MiB)
            t.eq("the root model file's size with the edits staged",
                 len(old) + len(new_a) - len(a), len(staged_root))
            olds["root model file in the mount"] = (root_fd, staged_root)
            olds["weights/t2/data in the mount"] = (c_fd, new_c)

            # Readers during the commit.
            stop = threading.Event()
            reads, errors = [0], []

            def reader(name, get, size, want, seed):
                r = random.Random(seed)
                while not stop.is_set():
                    off = r.randrange(0, size)
                    n = r.randint(1, 256 * 1024)
                    try:
                        got = get(off, n)
                    except OSError as e:
                        errors.append("%s: %s" % (name, e))
                        return
                    if got != want[off:off + n]:
                        errors.append("%s: %d bytes at %d differ from the old model"
                                      % (name, n, off))
                        return
                    reads[0] += 1

            threads = []
            for k, (name, (fd, want)) in enumerate(olds.items()):
                threads.append(threading.Thread(
                    target=reader, args=(name, lambda off, n, fd=fd: os.pread(fd, n, off),
                                         len(want), want, k)))
            threads.append(threading.Thread(
                target=reader, args=("mmap of the model on disk",
                                     lambda off, n: disk_mm[off:off + n], len(old), old, 9)))
            for th in threads:
                th.start()
            time.sleep(0.1)
            r = commit(mnt)
            time.sleep(0.1)
            stop.set()
            for th in threads:
                th.join()
            t.check("modelfs commit", r.returncode == 0, why(r) + " " + status(mnt))
            t.check("%d reads of the old descriptors and the mmap during the commit returned "
                    "the old bytes" % reads[0], not errors and reads[0] > 0, "; ".join(errors))

            new = read(path, "rb")
            t.check("the model on disk changed (rewrite: new inode)",
                    new != old and os.stat(path).st_ino != disk_ino)
            t.check("the committed file is what the root model file showed with the edits "
                    "staged", new == staged_root)
            nm = onnx.load(path)
            got = {x.name: (list(x.dims), numpy_helper.to_array(x).tobytes())
                   for x in nm.graph.initializer}
            t.check("the new model has the new t0, unchanged t1, patched t2",
                    got == {"t0": ([len(new_a)], new_a), "t1": ([2 * MiB], b),
                            "t2": ([2 * MiB], new_c)})

            def check_old(when):
                for name, (fd, want) in olds.items():
                    t.check("%s: old descriptor of the %s reads what it read before the commit"
                            % (when, name), pread_all(fd, len(want)) == want)
                t.check("%s: mmap of the old model reads the old bytes" % when,
                        disk_mm[:] == old)

            def check_new(when):
                t.check("%s: a new open of the model on disk reads the new bytes" % when,
                        read(path, "rb") == new)
                t.check("%s: a new open of the mount's root model file reads the new bytes"
                        % when, read(os.path.join(mnt, "fds.onnx"), "rb") == new)
                t.eq("%s: st_size of the root model file is the new size" % when, len(new),
                     os.stat(os.path.join(mnt, "fds.onnx")).st_size)
                for k, want in (("t0", new_a), ("t1", b), ("t2", new_c)):
                    t.check("%s: a new open of weights/%s/data reads the new bytes" % (when, k),
                            read(os.path.join(w, k, "data"), "rb") == want)
                t.eq("%s: weights/t0/shape" % when, "%d\n" % len(new_a),
                     read(os.path.join(w, "t0", "shape")))

            check_old("after the commit")
            check_new("after the commit")
            check_old("after new opens")
            check_new("again")
            # Once more with the kernel's cached pages of every descriptor
            # dropped, so the reads reach the daemon.
            for fd, _ in olds.values():
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            check_old("cached pages dropped")
            for p in [path, os.path.join(mnt, "fds.onnx")] + \
                    [os.path.join(w, k, "data") for k in ("t0", "t1", "t2")]:
                fd = os.open(p, os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
            check_new("cached pages dropped")
            for fd in (root_fd, b_fd, c_fd):
                os.close(fd)
    except RuntimeError as e:
        t.not_ok("mount", e)
    finally:
        disk_mm.close()
        os.close(disk_fd)
    t.eq("no journal/temp files left after unmount", [], side_files(d, "fds.onnx"))
    shutil.rmtree(d, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()

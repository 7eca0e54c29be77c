#!/usr/bin/python3
# mfs-test: heavy (two 1 GiB fixtures; the normal pass runs it)
"""tests/mount/test_diff_big.py — issue 17: `modelfs diff` streams.

Two 1 GiB safetensors checkpoints (four 256 MiB float32 tensors each,
sparse files of zeros but for one element of B), compared by the real
command: it reports exactly that tensor and element, exits 1, and its
peak RSS (wait4's ru_maxrss of the child) stays under 64 MiB.
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mfstest import MODELFS, T  # noqa: E402

N = 4
NBYTES = 256 << 20


def write(path, poke=None):
    header, off = {}, 0
    for i in range(N):
        header["layer%d.weight" % i] = {"dtype": "F32", "shape": [NBYTES // 4],
                                        "data_offsets": [off, off + NBYTES]}
        off += NBYTES
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.truncate(8 + len(h) + off)
        if poke is not None:
            f.seek(8 + len(h) + poke)
            f.write(np.float32(0.5).tobytes())


def main():
    t = T()
    a, b = os.path.join(t.tmp, "a.safetensors"), os.path.join(t.tmp, "b.safetensors")
    write(a)
    write(b, poke=2 * NBYTES + 4 * 12345)
    p = subprocess.Popen([MODELFS, "diff", a, b], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    out, err = p.communicate()
    # Popen reaps its child: run it once more under our own wait4 for the RSS.
    pid = os.fork()
    if pid == 0:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.execv(MODELFS, [MODELFS, "diff", a, b])
    _, status, ru = os.wait4(pid, 0)
    t.eq("1 GiB pair: exit 1", 1, p.returncode)
    t.eq("1 GiB pair: exactly the changed tensor, one element, error 0.5",
         "changed: layer2.weight: max abs error 0.5, max rel error 1, 1 of 67108864 elements "
         "differ\n3 tensors unchanged\n", out)
    rss = ru.ru_maxrss / 1024.0
    print("# modelfs diff of two 1 GiB models: peak RSS %.1f MiB" % rss)
    t.check("1 GiB pair: peak RSS under 64 MiB", os.WEXITSTATUS(status) == 1 and rss < 64,
            "%.1f MiB, exit %d, %s" % (rss, os.WEXITSTATUS(status), err))
    t.done()


main()

#!/usr/bin/python3
"""tests/mount/test_torch_hostile.py — issue 13: a hostile corpus of
torch.save files (tests/data/make_bad_torch.py), every one refused.

Pickles whose __reduce__ calls os.system (writing a marker file), eval,
exec, subprocess, a getattr chain, a global nested deep in a dict,
STACK_GLOBAL with names from the memo or of non-strings, EXT1/2/4, INST,
OBJ, NEWOBJ, PERSID, memo poisoning (an overwrite, an unset get, a huge
index), 1 GB and past-the-end length fields, 10^6 MARKs, 10^6 values on
the stack, 10^6 lists nested through the memo, a cycle, 2^60 paths through
shared lists, protocol 0 and 6, calls and BUILDs of allowed names used
wrongly, bad persistent ids and storage keys, tensors past their storage,
overflowing and negative strides; and broken zip containers.  For each:
mount.modelfs exits non-zero with exactly one stderr line that names the
file and holds the case's words (the opcode or global and, for the pickle
cases that have one, its offset), nothing is mounted, the file is
unchanged, the marker file never appears, and the mount's user+sys CPU is
at most 5 s and its ru_maxrss at most 256 MiB (os.wait4 of the child).
No torch or numpy is imported: this process stays small, so the child's
ru_maxrss is its own.
"""
import hashlib
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "data"))
from mfstest import MOUNT_MODELFS, T, is_mounted  # noqa: E402

import make_bad_torch  # noqa: E402

CPU_MAX = 5.0
RSS_MAX = 256 << 20

t = T()
d = os.path.join(t.tmp, "corpus")
os.mkdir(d)
marker = os.path.join(t.tmp, "MARKER")
mnt = os.path.join(t.tmp, "mnt")
os.mkdir(mnt)
errf = os.path.join(t.tmp, "stderr")


def run_mount(path):
    """(exit status, stderr text, cpu seconds, maxrss bytes) of one mount attempt."""
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open(errf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, 2)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            os.execv(MOUNT_MODELFS, [MOUNT_MODELFS, path, mnt])
        finally:
            os._exit(127)
    deadline = time.time() + 20
    while True:
        wpid, status, ru = os.wait4(pid, os.WNOHANG)
        if wpid:
            break
        if time.time() > deadline:
            os.kill(pid, signal.SIGKILL)
            wpid, status, ru = os.wait4(pid, 0)
            status = -1
            break
        time.sleep(0.01)
    with open(errf) as f:
        err = f.read()
    return status, err, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024


cases = make_bad_torch.corpus(marker) + make_bad_torch.zip_corpus()
t.check("corpus has at least 20 hostile pickles", len(cases) >= 20 + 9, len(cases))
for name, data, words in cases:
    path = os.path.join(d, name + ".pt")
    with open(path, "wb") as f:
        f.write(data)
    before = hashlib.sha256(data).hexdigest()
    status, err, cpu, rss = run_mount(path)
    lines = err.strip().splitlines()
    line = lines[0] if lines else ""
    ok = (status not in (0, -1) and len(lines) == 1 and path in line and
          all(w in line for w in words))
    t.check("%s: refused with one line (%s)" % (name, ", ".join(words)), ok,
            "status %d: %r" % (status, err.strip()[:400]))
    if is_mounted(mnt):
        os.system("fusermount3 -u " + mnt)
        t.not_ok("%s: nothing mounted" % name)
    with open(path, "rb") as f:
        after = hashlib.sha256(f.read()).hexdigest()
    t.check("%s: file unchanged, CPU %.2f s <= %.0f, RSS %d MiB <= %d" %
            (name, cpu, CPU_MAX, rss >> 20, RSS_MAX >> 20),
            after == before and cpu <= CPU_MAX and rss <= RSS_MAX)
t.check("no marker file was ever created", not os.path.exists(marker))
t.eq("nothing else created beside the corpus", sorted(n + ".pt" for n, _, _ in cases),
     sorted(os.listdir(d)))
t.done()

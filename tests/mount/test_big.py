#!/usr/bin/python3
# mfs-test: heavy (1 GiB fixture and RSS bounds; the normal pass runs it)
"""A generated ONNX model of over 1 GiB with inline weights: mounting reads
under 1% of the file (read syscalls of the daemon, /proc/PID/io rchar), the
daemon stays under 64 MiB RSS after `ls -lR` of the whole tree, and `cat` of
one tensor returns exactly that tensor.  Bytes and memory, never times."""
import hashlib
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from mfstest import MOUNT_MODELFS, T, is_mounted, umount  # noqa: E402
import make_big_onnx  # noqa: E402

MiB = 1 << 20


def proc_field(pid, fname, key):
    with open("/proc/%d/%s" % (pid, fname)) as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise KeyError(key)


def main():
    t = T()
    # Keep the 1 GiB fixture on disk, not in a tmpfs /tmp.
    base = os.environ.get("MFS_BIG_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                        "..", "out")
    os.makedirs(base, exist_ok=True)
    path = os.path.join(base, "big.onnx")
    dim, layers = 4096, 17
    r = subprocess.run([sys.executable, make_big_onnx.__file__, path, "--layers", str(layers),
                        "--dim", str(dim)], capture_output=True, text=True, check=True)
    info = json.loads(r.stdout)
    size = info["size"]
    t.check("fixture is at least 1 GiB (%d bytes)" % size, size >= 1 << 30)
    mnt = os.path.join(t.tmp, "mnt")
    os.makedirs(mnt)
    # Foreground, so the PID we watch is the process that parsed the model.
    daemon = subprocess.Popen([MOUNT_MODELFS, "-f", path, mnt], stderr=subprocess.PIPE)
    try:
        for _ in range(400):
            if is_mounted(mnt) or daemon.poll() is not None:
                break
            time.sleep(0.05)
        if not t.check("big model mounts", is_mounted(mnt), daemon.stderr.read1(4096) if daemon.poll() is not None else ""):
            t.done()
        rchar = proc_field(daemon.pid, "io", "rchar")
        t.check("mount read %d bytes = %.4f%% of the file (< 1%%)" % (rchar, 100.0 * rchar / size),
                rchar < size / 100)
        lr = subprocess.run(["ls", "-lR", mnt], capture_output=True)
        t.check("ls -lR of the whole tree", lr.returncode == 0 and b"data" in lr.stdout)
        rss = proc_field(daemon.pid, "status", "VmRSS:") * 1024
        t.check("daemon RSS after ls -lR is %.1f MiB (< 64 MiB)" % (rss / MiB), rss < 64 * MiB)
        i = layers // 2
        want = hashlib.sha256(make_big_onnx.tensor_bytes(i, dim)).hexdigest()
        cat = subprocess.run(["cat", os.path.join(mnt, "weights", "layers", str(i), "weight", "data")],
                             capture_output=True)
        t.check("cat of one tensor returns exactly that tensor (%d bytes)" % len(cat.stdout),
                len(cat.stdout) == dim * dim * 4 and hashlib.sha256(cat.stdout).hexdigest() == want)
        rss = proc_field(daemon.pid, "status", "VmRSS:") * 1024
        t.check("daemon RSS after reading a 64 MiB tensor is %.1f MiB (< 64 MiB)" % (rss / MiB),
                rss < 64 * MiB)
        with open(os.path.join(mnt, "big.onnx"), "rb") as f:
            f.seek(info["tensors"][-1][1])
            tail = f.read(4096)
        t.check("root model file reads the model's bytes at a tensor offset",
                tail == make_big_onnx.tensor_bytes(layers - 1, dim)[:4096])
    finally:
        umount(mnt)
        try:
            rc = daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            rc = -9
        os.unlink(path)
    t.eq("daemon exit status after unmount", 0, rc)
    t.done()


if __name__ == "__main__":
    main()

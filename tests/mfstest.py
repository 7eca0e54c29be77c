"""tests/mfstest.py — helpers for mount tests written in Python.

Run with /usr/bin/python3 (Debian's, which has numpy and onnx).  A test
prints "ok - <what>" / "not ok - <what>: <why>" lines and exits non-zero
when any check failed; tests/run counts the lines.

    from mfstest import T
    t = T()
    with t.mount(model) as mnt:
        t.eq("input shape", open(mnt + "/meta/input_shape").read(), "batch_size,10\\n")
    t.done()
"""
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("MFS_SRC") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("MFS_BUILD") or os.path.join(SRC, "build")
MOUNT_MODELFS = os.path.join(BUILD, "fs", "mount.modelfs")
MODELFS = os.path.join(BUILD, "tools", "modelfs")


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if line.split()[4] == path:
                return True
    return False


def daemon_pids(path):
    """PIDs of mount.modelfs processes serving mount point `path`."""
    path = os.path.realpath(path)
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"mount.modelfs") and path.encode() in argv:
            pids.append(int(pid))
    return pids


def umount(path, timeout=120):
    """Unmount and wait for the daemon to exit: the kernel does not wait for
    it, and the daemon commits staged edits after the mount is gone."""
    pids = daemon_pids(path)
    subprocess.run(["fusermount3", "-u", path], stderr=subprocess.DEVNULL)
    for _ in range(100):
        if not is_mounted(path):
            break
        time.sleep(0.05)
    else:
        subprocess.run(["umount", "-l", path], stderr=subprocess.DEVNULL)
        return False
    deadline = time.time() + timeout
    while pids and time.time() < deadline:
        pids = [p for p in pids if os.path.exists("/proc/%d" % p)
                and not open("/proc/%d/stat" % p).read().split(") ")[-1].startswith("Z")]
        time.sleep(0.02)
    return not pids


class T:
    def __init__(self):
        self.failed = 0
        self.passed = 0
        self.tmp = tempfile.mkdtemp(prefix="mfstest.")
        if not os.path.exists("/dev/fuse"):
            self.not_ok("FUSE is required: /dev/fuse is missing")
            self.done()
        if not os.access(MOUNT_MODELFS, os.X_OK):
            self.not_ok("mount.modelfs not built at " + MOUNT_MODELFS)
            self.done()

    def ok(self, what):
        self.passed += 1
        print("ok - " + what, flush=True)

    def not_ok(self, what, why=""):
        self.failed += 1
        print("not ok - " + what + (": " + str(why).replace("\n", " ")[:500] if why else ""),
              flush=True)

    def check(self, what, cond, why=""):
        if cond:
            self.ok(what)
        else:
            self.not_ok(what, why)
        return bool(cond)

    def eq(self, what, expected, actual):
        return self.check(what, expected == actual,
                          "expected %r, got %r" % (expected, actual))

    @contextlib.contextmanager
    def mount(self, model, *opts, mnt=None):
        """Mount `model`; yields the mount point; always unmounts."""
        if mnt is None:
            mnt = tempfile.mkdtemp(prefix="mnt.", dir=self.tmp)
        r = subprocess.run([MOUNT_MODELFS, model, mnt] + list(opts),
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("mount failed (%d): %s" % (r.returncode, r.stderr.strip()))
        try:
            yield mnt
        finally:
            # A daemon that does not exit after its unmount (a thread left
            # running, a commit that never ends) is a failure, not a leak
            # to ignore.
            if not umount(mnt):
                self.not_ok("%s: unmounted and its daemon exited within 120 s" % model,
                            "still mounted" if is_mounted(mnt) else "daemon alive: %s"
                            % daemon_pids(mnt))

    def done(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        sys.exit(1 if self.failed else 0)


def encode_component(name):
    """doc/design.md §3.3 encoding of one path component (bytes or str)."""
    if isinstance(name, str):
        name = name.encode("utf-8", "surrogateescape")
    if name == b"":
        return "%"
    if name == b".":
        return "%2E"
    if name == b"..":
        return "%2E%2E"
    out = bytearray()
    for c in name:
        if c == 0x25 or c == 0x2F or c < 0x20 or c == 0x7F:
            out += b"%%%02X" % c
        else:
            out.append(c)
    if len(out) > 255:
        raise ValueError("long names are cut and hashed; not modelled here")
    return out.decode("utf-8", "surrogateescape")


def escape_text(value):
    """doc/design.md §3.5: a text value as the tree shows it (bytes in,
    bytes out): '%', bytes below 0x20 and 0x7f as %XX."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    out = bytearray()
    for c in value:
        if c == 0x25 or c < 0x20 or c == 0x7F:
            out += b"%%%02X" % c
        else:
            out.append(c)
    return bytes(out)


def unescape_text(text):
    """The inverse (bytes in, bytes out): %XX is that byte; any other '%'
    is itself."""
    out, i = bytearray(), 0
    hexd = b"0123456789abcdefABCDEF"
    while i < len(text):
        if text[i] == 0x25 and i + 2 < len(text) and text[i + 1] in hexd and \
                text[i + 2] in hexd:
            out.append(int(text[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(text[i])
            i += 1
    return bytes(out)


def read_value(path):
    """The value a one-value text file holds: its line, decoded (bytes)."""
    with open(path, "rb") as f:
        b = f.read()
    return unescape_text(b[:-1] if b.endswith(b"\n") else b)


def node_dir_names(nodes):
    """Expected names of nodes/ entries for a list of NodeProto."""
    width = max(4, len(str(len(nodes))))
    return ["%0*d-%s" % (width, i, encode_component(n.op_type)) for i, n in enumerate(nodes)]


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def tensor_dirs(root):
    """Every tensor directory (holding data, dtype, shape, name) under root."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if {"data", "dtype", "shape", "name"} <= set(filenames):
            found.append(dirpath)
    return found

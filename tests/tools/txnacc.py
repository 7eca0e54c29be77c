"""tests/tools/txnacc.py — helpers for the write-path acceptance tests
(tests/mount/test_commit_*.py, test_crash.py, test_exerciser.py,
test_open_fds.py; issue 4).

Nothing here imports modelfs code: the tests drive the real daemon and the
real `modelfs` command and judge the results with python3-onnx, numpy and
sha256.
"""
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mfstest import MODELFS, MOUNT_MODELFS, is_mounted, umount  # noqa: E402,F401

MiB = 1 << 20


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                return h.hexdigest()
            h.update(b)


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def modelfs(*args, timeout=600):
    """Run the `modelfs` command; returns the CompletedProcess (text)."""
    return subprocess.run([MODELFS] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout)


def commit(mnt, timeout=600):
    return modelfs("commit", mnt, timeout=timeout)


def abort(mnt):
    return modelfs("abort", mnt)


def status(mnt):
    """The text of .modelfs/status (read directly: cheaper than a process)."""
    with open(os.path.join(mnt, ".modelfs", "status")) as f:
        return f.read()


def why(r):
    """One line describing a failed CompletedProcess."""
    return "exit %s: %s %s" % (r.returncode, (r.stdout or "").strip()[-300:],
                                (r.stderr or "").strip()[-300:])


def proc_field(pid, fname, key):
    with open("/proc/%d/%s" % (pid, fname)) as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise KeyError(key)


def proc_io(pid):
    out = {}
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            k, v = line.split(":")
            out[k.strip()] = int(v)
    return out


def side_files(directory, model_name):
    """Every `.<model>.modelfs-*` file beside the model."""
    pre = "." + model_name + ".modelfs-"
    return sorted(n for n in os.listdir(directory) if n.startswith(pre))


def temp_files(directory, model_name):
    """Commit temps (`.<model>.modelfs-tmp-*`)."""
    pre = "." + model_name + ".modelfs-tmp-"
    return sorted(n for n in os.listdir(directory) if n.startswith(pre))


class Daemon:
    """mount.modelfs run in the foreground (-f), so the PID is the daemon's."""

    def __init__(self, model, mnt, *opts):
        self.model, self.mnt = model, mnt
        os.makedirs(mnt, exist_ok=True)
        # stderr to a file, not a pipe: a daemon must never block on it.
        self.errf = tempfile.TemporaryFile()
        self.p = subprocess.Popen([MOUNT_MODELFS, "-f", model, mnt] + list(opts),
                                  stdout=subprocess.DEVNULL, stderr=self.errf)
        self.pid = self.p.pid
        for _ in range(2000):
            if is_mounted(mnt):
                return
            if self.p.poll() is not None:
                raise RuntimeError("mount.modelfs -f exited %d: %s"
                                   % (self.p.returncode, self.stderr()))
            time.sleep(0.005)
        self.p.kill()
        self.p.wait()
        raise RuntimeError("mount.modelfs -f: mount not live after 10 s")

    def stderr(self):
        """What the daemon wrote on stderr so far."""
        self.errf.seek(0)
        return self.errf.read().decode(errors="replace").strip()

    def alive(self):
        return self.p.poll() is None

    def stop(self, timeout=120):
        """Unmount (commits what is staged) and wait for the daemon; returns its exit status."""
        if is_mounted(self.mnt):
            umount(self.mnt)
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
            rc = "killed after %ds" % timeout
        self.rc = rc
        return rc

    def kill9(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.p.wait()
        # The connection is dead (ENOTCONN); take the mount point back.
        if is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", self.mnt], stderr=subprocess.DEVNULL)
        if is_mounted(self.mnt):
            subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)
        return not is_mounted(self.mnt)

    def rss(self):
        return proc_field(self.pid, "status", "VmRSS:") * 1024

    def hwm(self):
        return proc_field(self.pid, "status", "VmHWM:") * 1024


class DirectReader(threading.Thread):
    """Reads the model file whole, directly, until stopped; records each
    version's sha256 and checks every 8th read with python-onnx."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.stop_ev = path, threading.Event()
        self.seen, self.reads, self.parsed, self.errors = {}, 0, 0, []

    def run(self):
        while not self.stop_ev.is_set():
            try:
                with open(self.path, "rb") as f:
                    b = f.read()
            except OSError as e:
                self.errors.append("open/read: %s" % e)
                time.sleep(0.001)
                continue
            h = hashlib.sha256(b).hexdigest()
            self.seen[h] = self.seen.get(h, 0) + 1
            self.reads += 1
            if self.reads % 8 == 1:
                try:
                    import onnx
                    onnx.checker.check_model(onnx.load_from_string(b))
                    self.parsed += 1
                except Exception as e:          # noqa: BLE001 - any failure is the finding
                    self.errors.append("python-onnx: %s" % str(e).splitlines()[0][:120])

    def finish(self):
        self.stop_ev.set()
        self.join()
SIZES = [64 * 1024, 6 * MiB, 2 * MiB + 17]          # a few MiB: commits take a while


@contextlib.contextmanager
def mounted(model, mnt, *opts):
    """Mount with a foreground daemon; yields the Daemon.  At exit unmounts
    and waits for the daemon to exit: the commit on unmount runs after
    fusermount3 -u has returned, so checks of the model file must wait."""
    dm = Daemon(model, mnt, *opts)
    try:
        yield dm
    finally:
        dm.stop()


def make_mlp(path, n_layers, dim, seed, producer="modelfs-tests"):
    """An MLP (MatMul + Add + Relu per layer) with PyTorch-style tensor names
    layers.<i>.weight (dim×dim float32) and layers.<i>.bias (dim), raw_data.
    Same n_layers/dim give the same architecture; seed picks the weights."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i in range(n_layers):
        w = rng.standard_normal((dim, dim)).astype(np.float32)
        b = rng.standard_normal(dim).astype(np.float32)
        inits.append(numpy_helper.from_array(w, "layers.%d.weight" % i))
        inits.append(numpy_helper.from_array(b, "layers.%d.bias" % i))
        nodes.append(helper.make_node("MatMul", [prev, "layers.%d.weight" % i], ["mm%d" % i]))
        nodes.append(helper.make_node("Add", ["mm%d" % i, "layers.%d.bias" % i], ["add%d" % i]))
        nodes.append(helper.make_node("Relu", ["add%d" % i], ["h%d" % i]))
        prev = "h%d" % i
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                       ["batch", dim])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", dim])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name=producer)
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return m


def make_random_model(path, sizes, seed):
    """A model whose initializers t0, t1, ... are uint8 tensors of the given
    byte sizes, random content (so each tensor's bytes occur once in the
    file), consumed by an Identity-free graph: output = Concat of nothing
    would be invalid, so each tensor is the input of one Identity node."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    inits, nodes, outs = [], [], []
    for i, n in enumerate(sizes):
        a = rng.integers(0, 256, n, dtype=np.uint8)
        inits.append(numpy_helper.from_array(a, "t%d" % i))
        nodes.append(helper.make_node("Identity", ["t%d" % i], ["o%d" % i]))
        outs.append(helper.make_tensor_value_info("o%d" % i, TensorProto.UINT8, [n]))
    g = helper.make_graph(nodes, "rand", [], outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="modelfs-tests")
    m.ir_version = 8
    onnx.save(m, path)
    return m


def raw_offset(file_bytes, tensor_bytes):
    """Offset of a tensor's raw_data in the serialized file (must be unique)."""
    off = file_bytes.find(tensor_bytes)
    if off < 0 or file_bytes.find(tensor_bytes, off + 1) >= 0:
        raise ValueError("tensor bytes not found exactly once")
    return off


def mkdir_tmpfs(path, size):
    """Mount a tmpfs of `size` bytes at path (root only)."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0755" % size, "tmpfs", path],
                   check=True)


def umount_tmpfs(path):
    r = subprocess.run(["umount", path], capture_output=True)
    if r.returncode != 0:
        subprocess.run(["umount", "-l", path], capture_output=True)

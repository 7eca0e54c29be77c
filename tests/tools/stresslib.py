"""tests/tools/stresslib.py — helpers for the stress and unmount-under-load
tests (tests/mount/test_stress.py, test_unmount_load.py; issue 6).

Version patterns: tensor `i` at version `v` is a uint8 tensor whose every
little-endian 4-byte word k is

    0xA5 << 24 | (i & 0xf) << 20 | (v & 0xfff) << 8 | (k & 0xff)

so any read of at least 8 bytes names the one (tensor, version) it must come
from, and a read that mixes two versions, or bytes from the wrong offset, or
garbage, does not match the slice of that version.
"""
import os
import sys

import numpy as np

MAGIC = 0xA5
MiB = 1 << 20


def pattern_words(i, v, k0, k1):
    k = np.arange(k0, k1, dtype=np.uint32)
    return (np.uint32(MAGIC << 24) | np.uint32((i & 0xf) << 20) | np.uint32((v & 0xfff) << 8)
            | (k & np.uint32(0xff))).astype("<u4")


def pattern(i, v, size):
    """The whole tensor (bytes) of tensor i, version v; size % 4 == 0."""
    return pattern_words(i, v, 0, size // 4).tobytes()


def pattern_slice(i, v, off, n):
    k0, k1 = off // 4, (off + n + 3) // 4
    b = pattern_words(i, v, k0, k1).tobytes()
    s = off - k0 * 4
    return b[s:s + n]


def classify(i, off, b):
    """(version, None) when b (read at off from tensor i) is all one version
    of tensor i, else (None, reason)."""
    n = len(b)
    a = (off + 3) // 4 * 4
    if a + 4 > off + n:
        return None, "read too short to classify (%d bytes)" % n
    w = int.from_bytes(b[a - off:a - off + 4], "little")
    if w >> 24 != MAGIC or (w >> 20) & 0xf != (i & 0xf) or (w & 0xff) != (a // 4) & 0xff:
        return None, "garbage word %#010x at offset %d" % (w, a)
    v = (w >> 8) & 0xfff
    exp = pattern_slice(i, v, off, n)
    if exp == b:
        return v, None
    # Describe the mix: which versions are present, and where it changes.
    arr = np.frombuffer(b[a - off:a - off + (n - (a - off)) // 4 * 4], dtype="<u4")
    vs = sorted(set(((arr >> 8) & 0xfff).tolist()))
    diff = next(j for j in range(n) if exp[j] != b[j])
    return None, ("mix at tensor %d offset %d len %d: versions %s, first differs at +%d"
                  % (i, off, n, vs[:8], diff))


def make_pattern_model(path, sizes, version=0):
    """An ONNX model whose initializers t0, t1, ... are uint8 tensors holding
    pattern(i, version), each the input of an Identity node."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    inits, nodes, outs = [], [], []
    for i, n in enumerate(sizes):
        a = np.frombuffer(pattern(i, version, n), dtype=np.uint8)
        inits.append(numpy_helper.from_array(a, "t%d" % i))
        nodes.append(helper.make_node("Identity", ["t%d" % i], ["o%d" % i]))
        outs.append(helper.make_tensor_value_info("o%d" % i, TensorProto.UINT8, [n]))
    g = helper.make_graph(nodes, "stress", [], outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="modelfs-tests")
    m.ir_version = 8
    onnx.save(m, path)
    return m


def model_tensors(path):
    """{name: bytes} of the initializers of the model file at path."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(path)
    return {x.name: numpy_helper.to_array(x).tobytes() for x in m.graph.initializer}


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def asan_build():
    b = os.environ.get("MFS_BUILD", "").rstrip("/")
    return b.endswith("asan")


def stage_by_rename(tdir, data, tag="stress"):
    """Stage `data` as the tensor's new bytes the way rsync does: a scratch
    file beside `data`, written whole, renamed over it (atomic for readers
    that open after the rename)."""
    tmp = os.path.join(tdir, ".data.%s" % tag)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        mv = memoryview(data)
        off = 0
        while off < len(mv):
            off += os.pwrite(fd, mv[off:off + 4 * MiB], off)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(tdir, "data"))


def control(mnt, what):
    """Write to .modelfs/<what>; returns None or the OSError."""
    try:
        fd = os.open(os.path.join(mnt, ".modelfs", what), os.O_WRONLY)
        try:
            os.write(fd, b"1\n")
        finally:
            os.close(fd)
    except OSError as e:
        return e
    return None


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#!/usr/bin/python3
"""Issue 10 item 7: mmap of the root model file in every mount mode.

A read-write mount serves the root model file through the page cache, so
that MAP_SHARED mappings work (loaders that map the whole file: llama.cpp,
the safetensors library, numpy memmaps), and invalidates what an edit
changes, so that what the file shows stays the staged state (fs/fs.h,
CACHING).  Run once with the default multi-threaded loop and once with -s:

  - a MAP_SHARED mapping of the root file reads every byte of the model on
    disk; read(2) too;
  - after a same-size write to a tensor's data, a new mapping, read(2) and
    the mapping made before the edit show the new bytes (the old mapping at
    once when the write returns, except with -s, where the invalidation
    is sent shortly after: then within 2 s);
  - after a shape and data edit that changes the file's size, stat, read(2)
    and a new mapping show the new size and bytes (checked by parsing them
    with python3-onnx);
  - after an abort, the old bytes; after a commit, the committed file on disk,
    which equals what the root file showed just before;
  - a read right after a write in the same process is never stale: 300
    random same-size writes each followed by a pread of the range (and of the
    mapping), every 25th by `cp` of a whole tensor and `cmp` of the root file
    against the expected bytes;
and, in a read-write mount: numpy memmaps of a safetensors root file follow
a same-size edit (the one made before, at once) and a shape edit; a
MAP_SHARED mapping of an external data file reads its bytes; ONNX Runtime
(tests/node) loads the root file after an edit and computes with the edited
weights.  The daemon must exit 0.
"""
import ctypes
import json
import mmap
import os
import random
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from mfstest import SRC, T, read  # noqa: E402
from txnacc import abort, commit, make_random_model, mounted, raw_offset, why  # noqa: E402

ORT = os.path.join(SRC, "tests", "node", "ort_run.js")
SIZES = [64 * 1024, 300 * 1024 + 7, 40 * 1024 + 3]
PAGE = mmap.PAGESIZE


def map_all(path):
    """Every byte of `path` through a fresh MAP_SHARED mapping (its own open)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        n = os.fstat(fd).st_size
        mm = mmap.mmap(fd, n, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        try:
            return bytes(mm)
        finally:
            mm.close()
    finally:
        os.close(fd)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]


def cached_pages(fd, n):
    """Which of the first `n` bytes' pages of open file `fd` the kernel's page
    cache holds: mincore(2) of a mapping that touches none (and no open,
    fstat or read, each of which could drop them)."""
    a = _libc.mmap(None, n, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if a in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap")
    try:
        vec = ctypes.create_string_buffer((n + PAGE - 1) // PAGE)
        if _libc.mincore(a, n, vec) != 0:
            raise OSError(ctypes.get_errno(), "mincore")
        return [b & 1 for b in vec.raw]
    finally:
        _libc.munmap(a, n)


def try_map(path):
    try:
        return map_all(path), None
    except OSError as e:
        return None, e


def arrays(b):
    """The initializers of the serialized model `b`, by name."""
    m = onnx.load_from_string(b)
    return {x.name: numpy_helper.to_array(x) for x in m.graph.initializer}


def wait_for(pred, timeout):
    """pred() true now, or within `timeout` seconds (polled)."""
    deadline = time.time() + timeout
    while True:
        if pred():
            return True
        if time.time() > deadline:
            return False
        time.sleep(0.005)


def scenario(t, label, opts):
    d = os.path.join(t.tmp, "s" if opts else "mt")
    os.makedirs(d)
    path = os.path.join(d, "r.onnx")
    m = make_random_model(path, SIZES, 7)
    orig = read(path, "rb")
    tens = [numpy_helper.to_array(x).tobytes() for x in m.graph.initializer]
    base = [raw_offset(orig, b) for b in tens]
    single = "-s" in opts
    rng = random.Random(label)
    with mounted(path, os.path.join(d, "mnt"), *opts) as dm:
        mnt = dm.mnt
        root = os.path.join(mnt, "r.onnx")
        data = [os.path.join(mnt, "weights", "t%d" % i, "data") for i in range(len(SIZES))]

        got, err = try_map(root)
        if not t.check("%s: MAP_SHARED of the root model file in a read-write mount" % label,
                       got is not None, err):
            return
        t.check("%s: the mapping reads every byte of the model on disk" % label, got == orig,
                "%d bytes, differ" % len(got))
        t.check("%s: read(2) of the root file too" % label, read(root, "rb") == orig)

        # A mapping and a descriptor made before any edit, kept to the end.
        rfd = os.open(root, os.O_RDONLY)
        old_mm = mmap.mmap(rfd, len(orig), flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        t.check("%s: a long-lived mapping reads the model" % label, old_mm[:] == orig)

        # Same-size edit of t1's data: exactly those bytes change.
        off, new = 1000, bytes(rng.randrange(256) for _ in range(5000))
        with open(data[1], "r+b") as f:
            f.seek(off)
            f.write(new)
            f.flush()
            pages = cached_pages(rfd, len(orig))    # before anything touches the file
            old_seen = old_mm[base[1] + off:base[1] + off + len(new)] == new
        if not single:
            # Only the pages the write changed were dropped (the rest of the
            # file stays cached, mapped or not).
            lo, hi = (base[1] + off) // PAGE, (base[1] + off + len(new) - 1) // PAGE
            inside = pages[lo:hi + 1]
            outside = pages[:lo] + pages[hi + 1:]
            t.check("%s: a same-size edit drops only its own pages from the cache" % label,
                    not any(inside) and all(outside),
                    "%d of %d pages it changed still cached, %d of %d others cached"
                    % (sum(inside), len(inside), sum(outside), len(outside)))
        exp = bytearray(orig)
        exp[base[1] + off:base[1] + off + len(new)] = new
        exp = bytes(exp)
        if single:
            old_seen = old_seen or wait_for(lambda: old_mm[:] == exp, 2)
            t.check("%s: the mapping made before the edit shows it within 2 s" % label,
                    old_seen and old_mm[:] == exp)
        else:
            t.check("%s: the mapping made before the edit shows it when the write returns"
                    % label, old_seen and old_mm[:] == exp)
        t.check("%s: a new mapping shows the same-size edit" % label, map_all(root) == exp)
        t.check("%s: read(2) shows it" % label, read(root, "rb") == exp)
        t.eq("%s: stat size unchanged" % label, len(orig), os.stat(root).st_size)

        # Shape and data of t2 shrink: the file's size and layout change.
        n2 = SIZES[2] - 1000
        with open(os.path.join(mnt, "weights", "t2", "shape"), "w") as f:
            f.write("%d\n" % n2)
        os.truncate(data[2], n2)
        b = read(root, "rb")
        st = os.stat(root).st_size
        mp = map_all(root)
        a = arrays(b)
        t.check("%s: after a shape edit stat, read(2) and a new mapping agree on the new size"
                % label, st == len(b) == len(mp) == len(orig) - 1000,
                "stat %d, read %d, mmap %d, want %d" % (st, len(b), len(mp), len(orig) - 1000))
        t.check("%s: the new mapping holds the new bytes" % label, mp == b)
        t.check("%s: they parse as the edited model" % label,
                a["t2"].shape == (n2,) and a["t2"].tobytes() == tens[2][:n2]
                and a["t1"].tobytes() == exp[base[1]:base[1] + SIZES[1]]
                and a["t0"].tobytes() == tens[0])
        # The mapping made before: the new file at the same offsets.
        same = lambda: old_mm[:len(b)] == b  # noqa: E731
        t.check("%s: the old mapping shows the new layout at its offsets" % label,
                same() if not single else wait_for(same, 2))

        r = abort(mnt)
        t.check("%s: abort" % label, r.returncode == 0, why(r))
        t.eq("%s: after abort stat shows the old size" % label, len(orig), os.stat(root).st_size)
        t.check("%s: after abort read(2) shows the old bytes" % label, read(root, "rb") == orig)
        t.check("%s: after abort a new mapping shows the old bytes" % label, map_all(root) == orig)
        back = lambda: old_mm[:] == orig  # noqa: E731
        t.check("%s: after abort the old mapping shows the old bytes" % label,
                back() if not single else wait_for(back, 2))

        # Read-your-writes: every write followed at once by reads of what it changed.
        cur = bytearray(orig)
        fds = [os.open(p, os.O_WRONLY) for p in data]
        src = os.path.join(d, "src")
        want = os.path.join(d, "want")
        stale_pread = stale_map = stale_cmp = 0
        first = ""
        for it in range(300):
            i = rng.randrange(len(SIZES))
            if it % 25 == 24:
                # cp of a whole tensor (O_TRUNC, then writes), then cmp of the root.
                blob = bytes(rng.randrange(256) for _ in range(SIZES[i]))
                with open(src, "wb") as f:
                    f.write(blob)
                cur[base[i]:base[i] + SIZES[i]] = blob
                with open(want, "wb") as f:
                    f.write(cur)
                r1 = subprocess.run(["cp", src, data[i]], capture_output=True, text=True)
                r2 = subprocess.run(["cmp", want, root], capture_output=True, text=True)
                if r1.returncode != 0 or r2.returncode != 0:
                    stale_cmp += 1
                    first = first or "cp/cmp at %d: %s %s" % (it, r1.stderr, r2.stdout)
                continue
            n = rng.choice([1, 7, 4096, 5000, 12000])
            n = min(n, SIZES[i])
            o = rng.randrange(0, SIZES[i] - n + 1)
            blob = os.urandom(n)
            os.pwrite(fds[i], blob, o)
            cur[base[i] + o:base[i] + o + n] = blob
            lo, hi = base[i] + o, base[i] + o + n
            # The mapping first: a read(2) asks for the attributes, and the
            # kernel then drops the whole file's pages (mtime changed).
            if single:
                okm = wait_for(lambda: old_mm[lo:hi] == blob, 2)
            else:
                okm = old_mm[lo:hi] == blob
            if not okm:
                stale_map += 1
                first = first or "mapping stale at %d (%d bytes at %d)" % (it, n, lo)
            if os.pread(rfd, n, lo) != blob:
                stale_pread += 1
                first = first or "pread stale at %d (%d bytes at %d)" % (it, n, lo)
            if it % 50 == 0 and (read(root, "rb") != cur or map_all(root) != cur):
                stale_pread += 1
                first = first or "whole file differs at %d" % it
        for fd in fds:
            os.close(fd)
        t.check("%s: 300 writes, each read back at once through pread and the old mapping,"
                " cp+cmp every 25th: never stale" % label,
                stale_pread == stale_map == stale_cmp == 0,
                "pread %d, mapping %d, cmp %d stale; first: %s"
                % (stale_pread, stale_map, stale_cmp, first))

        # Commit: the staged view is what lands on disk.
        with open(os.path.join(mnt, "weights", "t0", "shape"), "w") as f:
            f.write("%d\n" % (SIZES[0] + 10))
        with open(data[0], "ab") as f:
            f.write(b"\x05" * 10)
        staged = read(root, "rb")
        r = commit(mnt)
        t.check("%s: commit" % label, r.returncode == 0, why(r))
        disk = read(path, "rb")
        t.check("%s: the committed model equals what the root file showed before" % label,
                disk == staged)
        t.check("%s: after commit read(2) and a new mapping show the model on disk" % label,
                read(root, "rb") == disk and map_all(root) == disk)
        t.eq("%s: after commit stat shows its size" % label, len(disk), os.stat(root).st_size)
        old_mm.close()
        os.close(rfd)
    t.eq("%s: the daemon exits 0" % label, 0, dm.rc)


def external(t):
    """External data files are page-cached in a read-write mount: mmap works."""
    d = os.path.join(t.tmp, "ext")
    os.makedirs(d)
    rng = np.random.default_rng(3)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "ext",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 32])],
                          [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    path = os.path.join(d, "e.onnx")
    onnx.save(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="e.bin", size_threshold=0)
    want = read(os.path.join(d, "e.bin"), "rb")
    with mounted(path, os.path.join(d, "mnt")) as dm:
        ext = os.path.join(dm.mnt, "e.bin")
        got, err = try_map(ext)
        t.check("external data file: MAP_SHARED in a read-write mount reads its bytes",
                got == want, err or "bytes differ")
        # An edit elsewhere leaves it as it is.
        with open(os.path.join(dm.mnt, "meta", "doc_string"), "w") as f:
            f.write("edited\n")
        got, err = try_map(ext)
        t.check("external data file: the same bytes after an edit of the model", got == want,
                err or "bytes differ")
        r = abort(dm.mnt)
        t.check("external data file: abort", r.returncode == 0, why(r))
    t.eq("external data file: the daemon exits 0", 0, dm.rc)


def st_file(path, arrays):
    """A safetensors file of float32 arrays (the README's layout)."""
    header, off, blobs = {}, 0, []
    for name, a in arrays.items():
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
        blobs.append(a.tobytes())
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    b = struct.pack("<Q", len(h)) + h + b"".join(blobs)
    with open(path, "wb") as f:
        f.write(b)
    return b, 8 + len(h)


def st_header(b):
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n])


def safetensors(t):
    """A numpy memmap (MAP_SHARED) of a safetensors root file follows its edits."""
    d = os.path.join(t.tmp, "st")
    os.makedirs(d)
    rng = np.random.default_rng(5)
    arrs = {"w0": rng.standard_normal(4096).astype(np.float32),
            "w1": rng.standard_normal(1024).astype(np.float32)}
    path = os.path.join(d, "m.safetensors")
    orig, start = st_file(path, arrs)
    with mounted(path, os.path.join(d, "mnt")) as dm:
        root = os.path.join(dm.mnt, "m.safetensors")
        try:
            mm = np.memmap(root, dtype=np.uint8, mode="r")
        except OSError as e:
            t.not_ok("safetensors: a numpy memmap of the root file", e)
            return
        t.check("safetensors: a numpy memmap of the root file reads the model",
                mm.tobytes() == orig)
        w0 = np.memmap(root, dtype=np.float32, mode="r", offset=start, shape=(4096,))
        new = np.arange(100, dtype=np.float32)
        with open(os.path.join(dm.mnt, "weights", "w0", "data"), "r+b") as f:
            f.seek(400)
            f.write(new.tobytes())
        want = arrs["w0"].copy()
        want[100:200] = new
        t.check("safetensors: the memmap made before an edit shows it when the write returns",
                np.array_equal(w0, want))
        exp = bytearray(orig)
        exp[start:start + want.nbytes] = want.tobytes()
        t.check("safetensors: a new memmap and read(2) show it",
                np.memmap(root, dtype=np.uint8, mode="r").tobytes() == bytes(exp)
                and read(root, "rb") == bytes(exp))
        with open(os.path.join(dm.mnt, "weights", "w1", "shape"), "w") as f:
            f.write("512\n")
        os.truncate(os.path.join(dm.mnt, "weights", "w1", "data"), 2048)
        b = read(root, "rb")
        nm = np.memmap(root, dtype=np.uint8, mode="r")
        t.check("safetensors: after a shape edit stat, read(2) and a new memmap show the new "
                "file", os.stat(root).st_size == len(b) == len(nm) == len(orig) - 2048
                and nm.tobytes() == b and st_header(b)["w1"]["shape"] == [512])
        del w0, mm, nm
        r = abort(dm.mnt)
        t.check("safetensors: abort", r.returncode == 0, why(r))
        t.check("safetensors: after abort a memmap shows the model again",
                np.memmap(root, dtype=np.uint8, mode="r").tobytes() == orig)
    t.eq("safetensors: the daemon exits 0", 0, dm.rc)


def ort(t):
    """ONNX Runtime loads the root file after an edit and uses the edited weights."""
    if not os.path.exists(os.path.join(SRC, "tests", "node", "node_modules", "onnxruntime-node")):
        t.not_ok("ONNX Runtime after an edit", "tests/node/node_modules/onnxruntime-node missing")
        return
    d = os.path.join(t.tmp, "ort")
    os.makedirs(d)
    path = os.path.join(d, "linear.onnx")
    shutil.copy(os.path.join(SRC, "examples", "linear.onnx"), path)
    wts = np.load(os.path.join(SRC, "examples", "linear.weights.npz"))
    x = np.random.default_rng(1).standard_normal((5, 10)).astype(np.float32)
    spec = os.path.join(d, "input.json")
    with open(spec, "w") as f:
        json.dump({"input": {"dims": list(x.shape), "type": "float32",
                             "data": x.reshape(-1).tolist()}}, f)
    with mounted(path, os.path.join(d, "mnt")) as dm:
        root = os.path.join(dm.mnt, "linear.onnx")
        # Mapped (and so cached) before the edit.
        t.check("ONNX Runtime: the root file maps before the edit", try_map(root)[0] is not None)
        bias = np.array([7.5], dtype=np.float32)
        with open(os.path.join(dm.mnt, "weights", "fc", "bias", "data"), "r+b") as f:
            f.write(bias.tobytes())
        r = subprocess.run(["node", ORT, root, spec], capture_output=True, text=True)
        want = np.maximum(x @ wts["fc_weight"].T + bias, 0).reshape(-1)
        ok = r.returncode == 0 and np.allclose(json.loads(r.stdout)["output"]["data"], want,
                                               atol=1e-5)
        t.check("ONNX Runtime on the root file after an edit computes with the edited bias", ok,
                r.stderr.strip()[-300:])
        r = abort(dm.mnt)
        t.check("ONNX Runtime: abort", r.returncode == 0, why(r))
    t.eq("ONNX Runtime: the daemon exits 0", 0, dm.rc)


def main():
    t = T()
    scenario(t, "multi-threaded", [])
    scenario(t, "single-threaded (-s)", ["-s"])
    safetensors(t)
    external(t)
    ort(t)
    t.done()


if __name__ == "__main__":
    main()

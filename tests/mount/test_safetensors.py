#!/usr/bin/python3
# mfs-test: heavy (1 GiB fixture and RSS bounds; the normal pass runs it)
"""tests/mount/test_safetensors.py — issue 3: safetensors mounts.

Fixtures come from the small independent writer below (numpy + json +
struct, never modelfs code).  Checked through real mounts:
  - every dtype (numpy's, and the others as raw bytes), 0-d and empty
    tensors, names with '.' and '/', __metadata__: `data` read with
    numpy.fromfile and reshaped by `shape` equals the array written, `dtype`
    names, meta/format, meta/props, mmap of `data`, the model file at the
    root byte-identical;
  - the hostile-names fixture mounts, every name findable, nothing outside;
  - an LLM-shaped checkpoint in 3 shards + index mounts as one tree,
    meta/shards, root files byte-identical, rsync of one layer exact;
  - broken sharded checkpoints and every tests/data/bad/st_* fixture fail
    to mount with one stderr line and nothing mounted;
  - a >= 1 GiB checkpoint mounts reading < 0.1% of it, daemon RSS < 64 MiB
    after `ls -lR`, and `cat` of a tensor gives its bytes.
"""
import glob
import hashlib
import json
import mmap
import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mfstest import MODELFS, MOUNT_MODELFS, SRC, T, is_mounted, read_value, umount  # noqa: E402

# ----------------------------------------------------------------- writer

# safetensors dtype -> (numpy dtype or None, bits, name shown in `dtype`)
DTYPES = {
    "BOOL": (np.bool_, 8, "bool"),
    "U8": (np.uint8, 8, "uint8"),
    "I8": (np.int8, 8, "int8"),
    "I16": (np.int16, 16, "int16"),
    "U16": (np.uint16, 16, "uint16"),
    "F16": (np.float16, 16, "float16"),
    "BF16": (None, 16, "bfloat16"),
    "I32": (np.int32, 32, "int32"),
    "U32": (np.uint32, 32, "uint32"),
    "F32": (np.float32, 32, "float32"),
    "C64": (np.complex64, 64, "complex64"),
    "F64": (np.float64, 64, "float64"),
    "I64": (np.int64, 64, "int64"),
    "U64": (np.uint64, 64, "uint64"),
    "F8_E5M2": (None, 8, "float8e5m2"),
    "F8_E4M3": (None, 8, "float8e4m3fn"),
    "F8_E8M0": (None, 8, "float8e8m0"),
    "F8_E4M3FNUZ": (None, 8, "float8e4m3fnuz"),
    "F8_E5M2FNUZ": (None, 8, "float8e5m2fnuz"),
    "F4": (None, 4, "float4e2m1"),
    "F6_E2M3": (None, 6, "float6e2m3"),
    "F6_E3M2": (None, 6, "float6e3m2"),
}


class Tensor:
    """A tensor to write: name, safetensors dtype, shape and its bytes;
    `array` is the numpy array when numpy has the dtype."""

    def __init__(self, name, dtype, shape, array=None, raw=None):
        self.name, self.dtype, self.shape, self.array = name, dtype, tuple(shape), array
        self.raw = array.tobytes() if array is not None else raw
        nelem = int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1
        assert len(self.raw) * 8 == nelem * DTYPES[dtype][1], name


def st_bytes(tensors, metadata=None):
    """The bytes of a safetensors file: the README's layout, header padded."""
    header, off = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for t in tensors:
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape),
                          "data_offsets": [off, off + len(t.raw)]}
        off += len(t.raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(t.raw for t in tensors)


def st_write(path, tensors, metadata=None):
    data = st_bytes(tensors, metadata)
    with open(path, "wb") as f:
        f.write(data)
    return data


def make_tensor(rng, name, dtype, shape):
    npdt, bits, _ = DTYPES[dtype]
    nelem = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if npdt is None:
        return Tensor(name, dtype, shape, raw=rng.integers(0, 256, nelem * bits // 8,
                                                           dtype=np.uint8).tobytes())
    if npdt is np.bool_:
        a = rng.integers(0, 2, shape).astype(np.bool_)
    elif np.issubdtype(npdt, np.integer):
        info = np.iinfo(npdt)
        a = rng.integers(info.min, info.max, shape, dtype=npdt, endpoint=True)
    elif np.issubdtype(npdt, np.complexfloating):
        a = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(npdt)
    else:
        a = rng.standard_normal(shape).astype(npdt)
    return Tensor(name, dtype, shape, array=np.asarray(a, dtype=npdt))


# ----------------------------------------------------------------- reading the mount

def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def tensor_dirs(mnt):
    """Map tensor name -> its directory, from every `name` file under weights/."""
    out = {}
    for d, dirs, files in os.walk(os.path.join(mnt, "weights")):
        if "name" in files and "data" in files:
            # A name file holds the name escaped (doc/design.md §3.5).
            name = read_value(os.path.join(d, "name")).decode("utf-8", "surrogateescape")
            out[name] = d
    return out


def shape_of(d):
    text = read(os.path.join(d, "shape"))
    assert text.endswith("\n"), text
    text = text[:-1]
    return tuple(int(x) for x in text.split(",")) if text else ()


def check_tensors(t, what, mnt, tensors):
    dirs = tensor_dirs(mnt)
    t.eq(what + ": every tensor has a directory", sorted(x.name for x in tensors),
         sorted(dirs))
    bad = []
    for x in tensors:
        d = dirs.get(x.name)
        if d is None:
            continue
        data = os.path.join(d, "data")
        if shape_of(d) != x.shape:
            bad.append("%s: shape %r" % (x.name, shape_of(d)))
        if read(os.path.join(d, "dtype")) != DTYPES[x.dtype][2] + "\n":
            bad.append("%s: dtype %r" % (x.name, read(os.path.join(d, "dtype"))))
        if os.path.getsize(data) != len(x.raw):
            bad.append("%s: size %d" % (x.name, os.path.getsize(data)))
        if x.array is not None:
            got = np.fromfile(data, dtype=x.array.dtype).reshape(shape_of(d))
            if got.dtype != x.array.dtype or got.shape != x.array.shape or \
                    got.tobytes() != x.array.tobytes() or not np.array_equal(got, x.array):
                bad.append("%s: numpy.fromfile differs" % x.name)
        elif read(data, "rb") != x.raw:
            bad.append("%s: bytes differ" % x.name)
        if x.raw:
            with open(data, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
                if mm[:] != x.raw:
                    bad.append("%s: mmap differs" % x.name)
    t.check(what + ": data (numpy.fromfile + shape), dtype, shape, mmap of %d tensors"
            % len(tensors), not bad, "; ".join(bad[:5]))
    return dirs


def mount_fails(t, what, model):
    """mount.modelfs must exit non-zero, print one stderr line, mount nothing."""
    mnt = os.path.join(t.tmp, "failmnt")
    os.makedirs(mnt, exist_ok=True)
    try:
        r = subprocess.run([MOUNT_MODELFS, model, mnt], capture_output=True, text=True,
                           timeout=30, errors="replace")
    except subprocess.TimeoutExpired:
        umount(mnt)
        t.not_ok(what, "mount.modelfs did not exit within 30 s")
        return
    lines = r.stderr.splitlines()
    mounted = is_mounted(mnt)
    if mounted:
        umount(mnt)
    t.check(what, r.returncode != 0 and len(lines) == 1 and lines[0].strip() and not mounted,
            "rc %d, mounted %s, stderr %r" % (r.returncode, mounted, r.stderr[:300]))
    return lines[0] if lines else ""


# ----------------------------------------------------------------- tests

def test_every_dtype(t, rng):
    tensors = []
    for dt, (npdt, bits, _) in DTYPES.items():
        shape = (2, 3) if bits >= 8 else (4, 2) if bits == 4 else (2, 4)
        tensors.append(make_tensor(rng, "dtypes." + dt.lower(), dt, shape))
    tensors += [
        make_tensor(rng, "scalar", "F32", ()),
        make_tensor(rng, "scalar.i64", "I64", ()),
        make_tensor(rng, "empty.rows", "F32", (0, 3)),
        make_tensor(rng, "empty.all", "I8", (0,)),
        make_tensor(rng, "enc/block.0/attn.w", "F32", (3, 4)),
        make_tensor(rng, "a.b.c", "F16", (5,)),
        make_tensor(rng, "deep/x/y/z", "U8", (1, 1, 1, 2)),
    ]
    meta = {"format": "pt", "author": "modelfs tests", "note": "two words"}
    model = os.path.join(t.tmp, "all.safetensors")
    raw = st_write(model, tensors, meta)
    with t.mount(model) as mnt:
        t.eq("single file: meta/format", "safetensors\n", read(mnt + "/meta/format"))
        t.eq("single file: meta/props keys", sorted(meta),
             sorted(os.listdir(mnt + "/meta/props")))
        t.eq("single file: meta/props values", {k: v + "\n" for k, v in meta.items()},
             {k: read(mnt + "/meta/props/" + k) for k in meta})
        t.check("root shows the model file byte-identical",
                read(mnt + "/all.safetensors", "rb") == raw)
        check_tensors(t, "every dtype", mnt, tensors)
        t.check("names with '.' and '/' split into directories",
                os.path.isfile(mnt + "/weights/enc/block/0/attn/w/data") and
                os.path.isfile(mnt + "/weights/a/b/c/data"))
        t.eq("0-d tensor: shape file is an empty line", "\n",
             read(mnt + "/weights/scalar/shape"))
        t.eq("empty tensor: data is empty", 0, os.path.getsize(mnt + "/weights/empty/rows/data"))
        r = subprocess.run([MODELFS, "info", model], capture_output=True, text=True)
        t.check("modelfs info covers safetensors",
                r.returncode == 0 and "format: safetensors" in r.stdout and
                "tensors: %d" % len(tensors) in r.stdout, r.stderr + r.stdout[:200])


def test_hostile_names(t):
    model = os.path.join(SRC, "tests", "data", "good", "st_hostile_names.safetensors")
    try:
        with t.mount(model) as mnt:
            dirs = tensor_dirs(mnt)
            raw = read(model, "rb")
            n = struct.unpack("<Q", raw[:8])[0]
            header_names = [k for k in json.loads(raw[8:8 + n].decode())
                            if k != "__metadata__"]
            t.eq("hostile names: every name has a tensor directory", sorted(header_names),
                 sorted(dirs))
            real = os.path.realpath(mnt)
            t.check("hostile names: every directory is inside weights/",
                    all(os.path.realpath(d).startswith(real + "/weights/") for d in dirs.values()))
            t.check("hostile names: each data file holds its own byte",
                    all(read(os.path.join(dirs[n], "data"), "rb") == bytes([i])
                        for i, n in enumerate(header_names) if n in dirs))
    except RuntimeError as e:
        t.not_ok("hostile names fixture mounts", e)


LAYERS, HIDDEN, INTER, VOCAB = 8, 16, 24, 64


def llm_tensors(rng):
    ts = [make_tensor(rng, "model.embed_tokens.weight", "BF16", (VOCAB, HIDDEN))]
    for i in range(LAYERS):
        p = "model.layers.%d." % i
        for proj in ("q", "k", "v", "o"):
            ts.append(make_tensor(rng, p + "self_attn.%s_proj.weight" % proj, "F16",
                                  (HIDDEN, HIDDEN)))
        ts.append(make_tensor(rng, p + "self_attn.q_proj.bias", "F32", (HIDDEN,)))
        ts.append(make_tensor(rng, p + "mlp.gate_proj.weight", "F16", (INTER, HIDDEN)))
        ts.append(make_tensor(rng, p + "mlp.up_proj.weight", "F16", (INTER, HIDDEN)))
        ts.append(make_tensor(rng, p + "mlp.down_proj.weight", "F16", (HIDDEN, INTER)))
        ts.append(make_tensor(rng, p + "input_layernorm.weight", "F32", (HIDDEN,)))
        ts.append(make_tensor(rng, p + "post_attention_layernorm.weight", "F32", (HIDDEN,)))
    ts.append(make_tensor(rng, "model.norm.weight", "F32", (HIDDEN,)))
    ts.append(make_tensor(rng, "lm_head.weight", "BF16", (VOCAB, HIDDEN)))
    return ts


def write_sharded(d, tensors, n_shards=3):
    """HF-style: tensors in order split into n shards, index with weight_map."""
    os.makedirs(d, exist_ok=True)
    per = (len(tensors) + n_shards - 1) // n_shards
    weight_map, files = {}, {}
    for s in range(n_shards):
        name = "model-%05d-of-%05d.safetensors" % (s + 1, n_shards)
        part = tensors[s * per:(s + 1) * per]
        files[name] = st_write(os.path.join(d, name), part, {"format": "pt"})
        for x in part:
            weight_map[x.name] = name
    index = {"metadata": {"total_size": sum(len(x.raw) for x in tensors)},
             "weight_map": dict(sorted(weight_map.items()))}
    files["model.safetensors.index.json"] = json.dumps(index, indent=2).encode() + b"\n"
    with open(os.path.join(d, "model.safetensors.index.json"), "wb") as f:
        f.write(files["model.safetensors.index.json"])
    return files, index


def test_sharded(t, rng):
    d = os.path.join(t.tmp, "llm")
    tensors = llm_tensors(rng)
    files, index = write_sharded(d, tensors)
    shards = sorted(n for n in files if n.endswith(".safetensors"))
    with t.mount(os.path.join(d, "model.safetensors.index.json")) as mnt:
        t.eq("sharded: meta/format", "safetensors\n", read(mnt + "/meta/format"))
        t.eq("sharded: meta/shards lists the shards", "".join(s + "\n" for s in shards),
             read(mnt + "/meta/shards"))
        t.eq("sharded: props total_size", "%d\n" % index["metadata"]["total_size"],
             read(mnt + "/meta/props/total_size"))
        root = sorted(n for n in os.listdir(mnt) if os.path.isfile(os.path.join(mnt, n)))
        t.eq("sharded: root shows the index and every shard", sorted(files), root)
        t.check("sharded: root files byte-identical",
                all(read(os.path.join(mnt, n), "rb") == b for n, b in files.items()))
        check_tensors(t, "sharded", mnt, tensors)

        dst = os.path.join(t.tmp, "layer3")
        r = subprocess.run(["rsync", "-a", mnt + "/weights/model/layers/3/", dst + "/"],
                           capture_output=True, text=True)
        t.check("rsync -a weights/model/layers/3/ exits 0", r.returncode == 0, r.stderr)
        layer = [x for x in tensors if x.name.startswith("model.layers.3.")]
        want = set()
        for x in layer:
            rel = x.name[len("model.layers.3."):].replace(".", "/")
            want |= {rel + "/" + f for f in ("data", "dtype", "shape", "name", "sha256", "stats")}
        got = set()
        for base, _, fs in os.walk(dst):
            got |= {os.path.relpath(os.path.join(base, f), dst) for f in fs}
        t.eq("rsync copied exactly layer 3's tensor files", sorted(want), sorted(got))
        t.check("rsync copies are byte-equal",
                all(os.path.exists(os.path.join(dst, x.name[15:].replace(".", "/"), "data")) and
                    read(os.path.join(dst, x.name[15:].replace(".", "/"), "data"), "rb") == x.raw
                    for x in layer))

    # Broken variants: each fails with one line and nothing mounted.
    def variant(name, edit):
        vd = os.path.join(t.tmp, name)
        shutil.copytree(d, vd)
        edit(vd)
        return os.path.join(vd, "model.safetensors.index.json")

    def drop_shard(vd):
        os.unlink(os.path.join(vd, shards[1]))

    def dotdot(vd):
        ix = json.loads(read(os.path.join(vd, "model.safetensors.index.json")))
        k = next(iter(ix["weight_map"]))
        ix["weight_map"][k] = "../llm/" + ix["weight_map"][k]
        with open(os.path.join(vd, "model.safetensors.index.json"), "w") as f:
            json.dump(ix, f)

    def missing_tensor(vd):
        ix = json.loads(read(os.path.join(vd, "model.safetensors.index.json")))
        ix["weight_map"]["model.layers.9.mlp.up_proj.weight"] = shards[1]
        with open(os.path.join(vd, "model.safetensors.index.json"), "w") as f:
            json.dump(ix, f)

    line = mount_fails(t, "sharded: missing shard fails to mount",
                       variant("llm_missing", drop_shard))
    t.check("sharded: missing shard message names it", line and shards[1] in line and
            "missing" in line, line)
    line = mount_fails(t, "sharded: shard name with '..' fails to mount",
                       variant("llm_dotdot", dotdot))
    t.check("sharded: '..' message says why", line and "not a plain relative path" in line,
            line)
    line = mount_fails(t, "sharded: tensor missing from its shard fails to mount",
                       variant("llm_lacks", missing_tensor))
    t.check("sharded: missing tensor message names it",
            line and "model.layers.9.mlp.up_proj.weight" in line, line)


def proc_field(pid, path, key):
    with open("/proc/%d/%s" % (pid, path)) as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return None


def test_big(t, rng):
    """A >= 1 GiB checkpoint: four 256 MiB tensors (mostly holes on disk,
    a random MiB at the start of one) and a small one."""
    d = os.path.join(t.tmp, "big")
    os.makedirs(d)
    big = 256 << 20
    names = ["model.big.%d" % i for i in range(4)]
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for n in names:
        header[n] = {"dtype": "F32", "shape": [big // 4], "data_offsets": [off, off + big]}
        off += big
    small = rng.standard_normal(1024).astype(np.float32)
    header["model.small"] = {"dtype": "F32", "shape": [1024],
                             "data_offsets": [off, off + small.nbytes]}
    off += small.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    base = 8 + len(h)
    block = rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    model = os.path.join(d, "big.safetensors")
    with open(model, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.seek(base + big)                      # start of model.big.1
        f.write(block)
        f.seek(base + 4 * big)
        f.write(small.tobytes())
    size = os.path.getsize(model)
    t.check("big checkpoint is at least 1 GiB", size >= 1 << 30, size)
    want1 = hashlib.sha256(block + bytes(big - len(block))).hexdigest()

    mnt = os.path.join(t.tmp, "bigmnt")
    os.makedirs(mnt)
    p = subprocess.Popen([MOUNT_MODELFS, model, mnt, "-f"], stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            if is_mounted(mnt) or p.poll() is not None:
                break
            time.sleep(0.05)
        if not t.check("big: mount.modelfs -f mounts", is_mounted(mnt),
                       p.stderr.read().decode() if p.poll() is not None else "timeout"):
            return
        rchar = proc_field(p.pid, "io", "rchar")
        t.check("big: daemon read < 0.1%% of the file at mount (rchar %d of %d, %.5f%%)"
                % (rchar, size, 100.0 * rchar / size), rchar < size / 1000)
        r = subprocess.run(["ls", "-lR", mnt], capture_output=True)
        t.check("big: ls -lR exits 0", r.returncode == 0, r.stderr)
        rss = proc_field(p.pid, "status", "VmRSS:")
        t.check("big: daemon VmRSS after ls -lR under 64 MiB (%d KiB)" % rss, rss < 64 * 1024)
        r = subprocess.run(["cat", mnt + "/weights/model/small/data"], capture_output=True)
        t.check("big: cat of a small tensor gives its bytes", r.stdout == small.tobytes())
        hsh = hashlib.sha256()
        with subprocess.Popen(["cat", mnt + "/weights/model/big/1/data"],
                              stdout=subprocess.PIPE) as c:
            for chunk in iter(lambda: c.stdout.read(1 << 20), b""):
                hsh.update(chunk)
        t.eq("big: cat of a 256 MiB tensor gives its bytes", want1, hsh.hexdigest())
    finally:
        umount(mnt)
        try:
            rc = p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        err = p.stderr.read().decode(errors="replace")
        t.check("big: daemon exits 0 after unmount", rc == 0, "rc %s %s" % (rc, err[:300]))


def test_bad_fixtures(t):
    fixtures = sorted(glob.glob(os.path.join(SRC, "tests", "data", "bad", "st_*")))
    t.check("bad fixtures exist", len(fixtures) >= 30, len(fixtures))
    for f in fixtures:
        line = mount_fails(t, "bad %s fails to mount with one line" % os.path.basename(f), f)
        if line is not None and "safetensors" not in line:
            t.not_ok("bad %s: message is about safetensors" % os.path.basename(f), line)


def main():
    t = T()
    rng = np.random.default_rng(3)
    for fn in (test_every_dtype, test_hostile_names, test_sharded, test_big, test_bad_fixtures):
        try:
            if fn in (test_hostile_names, test_bad_fixtures):
                fn(t)
            else:
                fn(t, rng)
        except Exception as e:      # a crash in one group must not hide the others
            t.not_ok(fn.__name__, "%s: %s" % (type(e).__name__, e))
    t.done()


if __name__ == "__main__":
    main()

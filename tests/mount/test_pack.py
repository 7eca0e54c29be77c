#!/usr/bin/python3
"""Packs (doc/pack.md): `modelfs pack` of every kind of model (ONNX inline
and with external data, safetensors single and sharded, a torch.save zip,
GGUF) unpacks byte-identical (names, modes, mtimes), verifies, and mounts
as the same tree as the plain mount with every file's bytes equal, plus
meta/pack/ (read-only facts; -o ro mounts refuse every write, commit=inplace
is refused; edits and commits are test_pack_write.py's); ONNX Runtime loads the root file from the pack mount with
the same outputs; `zstd -d` of a --plain pack is the model; a read decompresses
only what it touches and the daemon's memory stays bounded.  Hostile packs
(truncated, bad seek table, chunk outside the file, a frame bigger than its
declared size, a decompression bomb, a manifest whose hash is wrong, a newer
major version) fail with one line naming the pack and nothing crashes."""
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from mfstest import MODELFS, MOUNT_MODELFS, SRC, T, daemon_pids, is_mounted  # noqa: E402
import gguf_write as gw  # noqa: E402
import packfx  # noqa: E402
from packfx import st_write  # noqa: E402

ORT = os.path.join(SRC, "tests", "node", "ort_run.js")
t = T()
rng = np.random.default_rng(14)


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, **kw)


# ------------------------------------------------------------ fixtures

def onnx_model():
    return packfx.onnx_model(rng)


def st_tensors(n):
    return packfx.st_tensors(rng, n)


def fixtures(d):
    out = {}
    m = onnx_model()
    p = os.path.join(d, "inline", "model.onnx")
    os.makedirs(os.path.dirname(p))
    onnx.save(m, p)
    out["onnx-inline"] = p
    p = os.path.join(d, "ext", "model.onnx")
    os.makedirs(os.path.dirname(p))
    onnx.save(m, p, save_as_external_data=True, location="weights.bin", size_threshold=0)
    os.chmod(os.path.join(d, "ext", "weights.bin"), 0o640)
    os.utime(os.path.join(d, "ext", "weights.bin"), ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    out["onnx-external"] = p
    p = os.path.join(d, "st", "model.safetensors")
    os.makedirs(os.path.dirname(p))
    st_write(p, st_tensors(300_000))
    out["safetensors"] = p
    sd = os.path.join(d, "sharded")
    os.makedirs(sd)
    wm = {}
    for i in range(2):
        name = "model-%05d-of-00002.safetensors" % (i + 1)
        ts = {("s%d." % i) + k: v for k, v in st_tensors(70_000 + i).items()}
        st_write(os.path.join(sd, name), ts)
        wm.update({k: name for k in ts})
    p = os.path.join(sd, "model.safetensors.index.json")
    with open(p, "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, f)
    out["safetensors-sharded"] = p
    import torch
    p = os.path.join(d, "torch", "model.pt")
    os.makedirs(os.path.dirname(p))
    sdict = {"l.weight": torch.from_numpy(rng.normal(0, 0.02, (200, 300)).astype(np.float32)),
             "l.bias": torch.zeros(300, dtype=torch.bfloat16), "n": torch.arange(100)}
    torch.save(sdict, p)
    out["torch"] = p
    p = os.path.join(d, "gguf", "model.gguf")
    os.makedirs(os.path.dirname(p))
    gw.llama(p)
    out["gguf"] = p
    return out


# ------------------------------------------------------------ helpers

def walk(root):
    """{relative path: bytes} of every file under a mount (not .modelfs/)."""
    res = {}
    for dp, dns, fns in os.walk(root):
        dns[:] = [x for x in dns if not (dp == root and x == ".modelfs")]
        for fn in fns:
            p = os.path.join(dp, fn)
            with open(p, "rb") as f:
                res[os.path.relpath(p, root)] = f.read()
    return res


def files_of(model):
    """The files modelfs verify names for a plain model, with their bytes' dir."""
    r = run(MODELFS, "verify", model)
    return [line.split("  ", 1)[1] for line in r.stdout.splitlines() if not line.split("  ", 1)[1].startswith("tensor:")]


def ort(model, x):
    inp = os.path.join(t.tmp, "ort-in.json")
    with open(inp, "w") as f:
        json.dump({"x": {"dims": list(x.shape), "type": "float32", "data": x.reshape(-1).tolist()}}, f)
    r = run("node", ORT, model, inp)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return json.loads(r.stdout)


def pack(model, *opts):
    out = model + ".mfs"
    r = run(MODELFS, "pack", model, *opts)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return out, r.stdout


# ------------------------------------------------------------ round trips

fx = fixtures(os.path.join(t.tmp, "fx"))
for kind, model in fx.items():
    try:
        pk, outp = pack(model)
    except RuntimeError as e:
        t.not_ok("%s: modelfs pack" % kind, e)
        continue
    t.check("%s: pack prints its SHA-256 and ratio" % kind,
            outp.split()[0] == __import__("hashlib").sha256(open(pk, "rb").read()).hexdigest()
            and "ratio" in outp, outp)
    if kind == "safetensors":
        # e.tied holds a.bf16's bytes: its chunks are stored once.
        import re
        shared = re.search(r"\((\d+) stored once for several\)", outp)
        t.check("%s: the tied tensor's chunks are stored once" % kind,
                shared and int(shared.group(1)) >= 2, outp)
    r = run(MODELFS, "verify", pk)
    t.check("%s: verify of the pack passes" % kind, r.returncode == 0 and "ok:" in r.stdout,
            r.stdout + r.stderr)
    dest = os.path.join(t.tmp, "un-" + kind)
    r = run(MODELFS, "unpack", pk, "-o", dest)
    src_dir = os.path.dirname(model)
    names = files_of(model)
    same = r.returncode == 0
    why = r.stderr
    for n in names:
        a, b = os.path.join(src_dir, n), os.path.join(dest, n)
        if not os.path.exists(b) or open(a, "rb").read() != open(b, "rb").read():
            same, why = False, "%s differs" % n
            break
        sa, sb = os.stat(a), os.stat(b)
        if (sa.st_mode & 0o7777) != (sb.st_mode & 0o7777) or sa.st_mtime_ns != sb.st_mtime_ns:
            same, why = False, "%s: mode or mtime differs" % n
            break
    t.check("%s: unpack restores %d files byte-identical, same modes and mtimes" % (kind, len(names)),
            same and len(names) >= 1, why)
    try:
        with t.mount(model) as plain, t.mount(pk) as packed:
            a, b = walk(plain), walk(packed)
            extra = sorted(k for k in b if k not in a)
            t.check("%s: the pack mount shows meta/pack/ besides the plain tree" % kind,
                    extra and all(k.startswith("meta/pack/") for k in extra), extra)
            diff = [k for k in a if a[k] != b.get(k)]
            t.check("%s: every one of %d files of the pack mount equals the plain mount's"
                    % (kind, len(a)), not diff, diff[:5])
            ratio = float(b.get("meta/pack/ratio", b"0"))
            t.check("%s: meta/pack/ratio is the pack's" % kind,
                    abs(ratio - sum(os.path.getsize(os.path.join(src_dir, n)) for n in names)
                        / os.path.getsize(pk)) < 1e-3, ratio)
            try:
                open(os.path.join(packed, "meta", "pack", "level"), "w").write("1")
                t.not_ok("%s: a write to meta/pack/ fails" % kind, "it succeeded")
            except OSError as e:
                t.eq("%s: a write to meta/pack/ fails with EACCES (facts, not edits)" % kind,
                     13, e.errno)
        with t.mount(pk, "-o", "ro") as packed:
            try:
                open(os.path.join(packed, "meta", "pack", "level"), "w").write("1")
                t.not_ok("%s: a write to a -o ro pack mount fails" % kind, "it succeeded")
            except OSError as e:
                t.eq("%s: a write to a -o ro pack mount fails with EROFS" % kind, 30, e.errno)
    except RuntimeError as e:
        t.not_ok("%s: mount" % kind, e)

# meta/pack/ and -o commit=inplace
pk = fx["onnx-inline"] + ".mfs"
mnt = os.path.join(t.tmp, "mnt-rw")
os.mkdir(mnt)
r = run(MOUNT_MODELFS, pk, mnt, "-o", "commit=inplace")
t.check("-o commit=inplace on a pack is refused with one line", r.returncode != 0 and
        not is_mounted(mnt) and len(r.stderr.strip().splitlines()) == 1 and
        "commit=inplace" in r.stderr and "pack" in r.stderr, r.stderr)
with t.mount(pk) as m:
    t.eq("meta/pack/chunk_size", "262144", open(os.path.join(m, "meta/pack/chunk_size")).read().strip())
    t.eq("meta/pack/level", "3", open(os.path.join(m, "meta/pack/level")).read().strip())
    t.eq("meta/pack/sha256 is the model file's",
         __import__("hashlib").sha256(open(fx["onnx-inline"], "rb").read()).hexdigest(),
         open(os.path.join(m, "meta/pack/sha256")).read().strip())

# ORT from the pack mount, both ONNX kinds
x = rng.standard_normal((3, 256)).astype(np.float32)
for kind in ("onnx-inline", "onnx-external"):
    try:
        want = ort(fx[kind], x)
        with t.mount(fx[kind] + ".mfs") as m:
            got = ort(os.path.join(m, "model.onnx"), x)
        t.eq("%s: ORT loads the root file from the pack mount, same outputs" % kind, want, got)
    except RuntimeError as e:
        t.not_ok("%s: ORT from the pack mount" % kind, e)

# mmap of the root file
import mmap  # noqa: E402
with t.mount(pk) as m:
    with open(os.path.join(m, "model.onnx"), "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        t.check("mmap of the root file in a pack mount reads the original bytes",
                mm[:] == open(fx["onnx-inline"], "rb").read())
        mm.close()

# --plain
for kind in ("onnx-inline", "safetensors", "gguf"):
    out = fx[kind] + ".plain.mfs"
    r = run(MODELFS, "pack", "--plain", fx[kind], "-o", out)
    z = subprocess.run(["zstd", "-q", "-d", "-c", out], capture_output=True)
    t.check("%s: zstd -d of a --plain pack is the model" % kind,
            r.returncode == 0 and z.returncode == 0 and z.stdout == open(fx[kind], "rb").read(),
            r.stderr + z.stderr.decode())
r = run(MODELFS, "pack", "--plain", fx["onnx-external"], "-o", os.path.join(t.tmp, "x.mfs"))
t.check("--plain of a two-file model is refused with one line",
        r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "--plain" in r.stderr, r.stderr)

# Options: level, chunk, threads give the same files back
for opts in (["--level", "9", "--chunk", "64K", "--threads", "1"], ["--chunk", "1M", "--threads", "3"]):
    out = os.path.join(t.tmp, "opt.mfs")
    r = run(MODELFS, "pack", fx["safetensors"], "-o", out, *opts)
    v = run(MODELFS, "verify", out)
    dest = os.path.join(t.tmp, "opt-un")
    shutil.rmtree(dest, ignore_errors=True)
    u = run(MODELFS, "unpack", out, "-o", dest)
    t.check("pack %s: verifies and unpacks byte-identical" % " ".join(opts),
            r.returncode == 0 and v.returncode == 0 and u.returncode == 0 and
            open(os.path.join(dest, "model.safetensors"), "rb").read() == open(fx["safetensors"], "rb").read(),
            r.stderr + v.stdout + v.stderr + u.stderr)

# --level 16 and up: float chunks' exponent planes go through zstd's optimal
# parser, smaller than the default's fast match finder (same bytes back).
bf = os.path.join(t.tmp, "bf16lvl", "model.safetensors")
os.makedirs(os.path.dirname(bf))
u = rng.normal(0, 0.02, 1 << 20).astype(np.float32).view(np.uint32)
st_write(bf, {"w": ("BF16", [1 << 20], ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes())})
sizes = {}
for lvl in ("3", "19"):
    out = os.path.join(t.tmp, "bf16lvl", "l%s.mfs" % lvl)
    r = run(MODELFS, "pack", bf, "-o", out, "--level", lvl)
    dest = os.path.join(t.tmp, "bf16lvl", "un%s" % lvl)
    un = run(MODELFS, "unpack", out, "-o", dest)
    t.check("bf16 pack --level %s unpacks byte-identical" % lvl,
            r.returncode == 0 and un.returncode == 0 and
            open(os.path.join(dest, "model.safetensors"), "rb").read() == open(bf, "rb").read(),
            r.stderr + un.stderr)
    sizes[lvl] = os.path.getsize(out) if r.returncode == 0 else 0
t.check("bf16: --level 19 packs smaller than --level 3 (%d vs %d bytes)" % (sizes["19"], sizes["3"]),
        0 < sizes["19"] < sizes["3"], sizes)

# ------------------------------------------------------------ lazy, bounded

big = os.path.join(t.tmp, "big", "model.safetensors")
os.makedirs(os.path.dirname(big))
n = 12 << 20     # 48 MiB of fp32
st_write(big, {"w": ("F32", [n], rng.normal(0, 0.02, n).astype(np.float32).tobytes())})
bigpk, _ = pack(big)


def rss_of(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024


def mount_opt(mnt, key):
    """The value of option key of mount point mnt in /proc/mounts, or None."""
    with open("/proc/mounts") as f:
        for line in f:
            p = line.split()
            if p[1] == os.path.realpath(mnt):
                for o in p[3].split(","):
                    if o.startswith(key + "="):
                        return o.split("=", 1)[1]
    return None


# The plain mount's daemon after the same reads: what the pack's may add to
# is its cache and scratch (a sanitizer build has its own baseline).  Both
# read-only: the read path is what is measured, not the journal's.
with t.mount(big, "-o", "ro") as m:
    with open(os.path.join(m, "weights", "w", "data"), "rb") as f:
        while f.read(1 << 20):
            pass
    plain_rss = rss_of(daemon_pids(m)[0])
    t.eq("a plain mount's reads stay spliceable: max_read 1 MiB less 16 KiB",
         "1032192", mount_opt(m, "max_read"))
with t.mount(bigpk, "-o", "max_read=262144", "-o", "ro") as m:
    t.eq("a pack mount keeps the max_read its user gives", "262144", mount_opt(m, "max_read"))
with t.mount(bigpk, "-o", "cache_size=2M", "-o", "ro") as m:
    pid = daemon_pids(m)[0]
    # Nothing of a pack is spliced: whole 1 MiB requests (four whole
    # chunks), and a 4 MiB readahead so that several are in flight and
    # decompress on several worker threads at once.
    t.eq("a pack mount asks for whole 1 MiB reads", "1048576", mount_opt(m, "max_read"))
    if os.geteuid() == 0:
        dev = os.stat(m).st_dev
        with open("/sys/class/bdi/%d:%d/read_ahead_kb" % (os.major(dev), os.minor(dev))) as f:
            t.eq("its readahead is raised to 4 MiB", "4096", f.read().strip())

    def rchar():
        for line in open("/proc/%d/io" % pid):
            if line.startswith("rchar:"):
                return int(line.split()[1])

    def rss():
        return rss_of(pid)

    data = os.path.join(m, "weights", "w", "data")
    before = rchar()
    with open(data, "rb") as f:
        f.seek(20 << 20)
        piece = f.read(4096)
    read = rchar() - before
    # The kernel's readahead widens the read, so a few chunks, not the pack.
    t.check("a 4 KiB read of a 48 MiB tensor reads a few chunks, under 1/10 of the pack (%d bytes)"
            % read, read < os.path.getsize(bigpk) // 10, read)
    raw = open(big, "rb").read()
    hlen = struct.unpack("<Q", raw[:8])[0] + 8
    t.check("the 4 KiB read is the original bytes", piece == raw[hlen + (20 << 20):hlen + (20 << 20) + 4096])
    with open(data, "rb") as f:
        whole = f.read()
    t.check("a full read of the tensor equals the original", whole == raw[hlen:])
    del whole
    # Readers at once, each 1-3 MiB reads at its own offsets (so each
    # reaches the daemon, not the page cache).
    import threading  # noqa: E402
    wrong = []
    spans = [(o, min(rng.integers(1 << 20, 3 << 20), 4 * n - o)) for o in range(0, 4 * n, 3 << 20)]
    rng.shuffle(spans)

    def reader(k):
        fd = os.open(data, os.O_RDONLY)
        try:
            for o, ln in spans[k::4]:
                if os.pread(fd, int(ln), int(o)) != raw[hlen + o:hlen + o + ln]:
                    wrong.append(o)
        finally:
            os.close(fd)
    ths = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    t.check("4 readers at once, %d reads of 1-3 MiB: every byte the original's" % len(spans),
            not wrong, wrong[:5])
    del raw
    r = rss()
    # Under AddressSanitizer freed blocks wait in its quarantine (256 MiB by
    # default) and a pack's replies are copies, not splices: allow for it.
    extra = 16 << 20
    if os.environ.get("ASAN_OPTIONS") is not None:
        extra += 256 << 20
    t.check("daemon RSS after reading the 48 MiB tensor with cache_size=2M: %.1f MiB, within "
            "the plain mount's %.1f MiB + %d MiB" % (r / 2**20, plain_rss / 2**20, extra >> 20),
            r <= plain_rss + extra, r)

# kill -9 while re-packing over an existing pack: the old one is intact.
import glob  # noqa: E402
import hashlib  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
old_sha = hashlib.sha256(open(bigpk, "rb").read()).hexdigest()
p = subprocess.Popen([MODELFS, "pack", big, "-o", bigpk, "--level", "19", "--threads", "1"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
seen = False
for _ in range(2000):   # until its temporary file has some frames in it
    tmps = glob.glob(bigpk + ".tmp-*")
    if tmps and os.path.getsize(tmps[0]) > (1 << 20):
        seen = True
        break
    if p.poll() is not None:
        break
    time.sleep(0.01)
running = p.poll() is None
p.send_signal(signal.SIGKILL)
p.wait()
t.check("kill -9 in the middle of a pack (temporary file growing: %s, still running: %s) leaves "
        "the old pack byte-identical and verifiable" % (seen, running),
        seen and running and hashlib.sha256(open(bigpk, "rb").read()).hexdigest() == old_sha
        and run(MODELFS, "verify", bigpk).returncode == 0)
for f in glob.glob(bigpk + ".tmp-*"):
    os.unlink(f)

# ------------------------------------------------------------ hostile

def parse(path):
    b = bytearray(open(path, "rb").read())
    tail = b[-40:]
    seek_off, mani_off = struct.unpack("<QQ", tail[16:32])
    return b, seek_off, mani_off


def reseal(b, seek_off, mani_off):
    """Recompute the tail's CRCs after an edit of the seek table or manifest."""
    slen = struct.unpack("<I", b[seek_off + 4:seek_off + 8])[0]
    mlen = struct.unpack("<I", b[mani_off + 4:mani_off + 8])[0]
    b[-8:-4] = struct.pack("<I", zlib.crc32(bytes(b[seek_off + 8:seek_off + 8 + slen])))
    b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[mani_off + 8:mani_off + 8 + mlen])))
    return b


def chunk_entry(b, seek_off, i):
    nf = struct.unpack("<I", b[seek_off + 16:seek_off + 20])[0]
    return seek_off + 8 + 16 + nf * 16 + 24 * i


def hostile(name, data, needle, via="mount"):
    p = os.path.join(t.tmp, "hostile", name, "model.safetensors.mfs")
    os.makedirs(os.path.dirname(p), exist_ok=True)
    open(p, "wb").write(bytes(data))
    mnt = os.path.join(t.tmp, "hostile", name, "mnt")
    os.makedirs(mnt, exist_ok=True)
    if via == "mount":
        r = run(MOUNT_MODELFS, p, mnt)
        t.check("hostile %s: the mount fails with one line naming the pack (%s)" % (name, needle),
                r.returncode != 0 and not is_mounted(mnt) and len(r.stderr.strip().splitlines()) == 1
                and p in r.stderr and needle in r.stderr, r.stderr)
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-u", mnt])
    for cmd in (["verify", p], ["unpack", p, "-o", os.path.join(t.tmp, "hostile", name, "out")]):
        r = run(MODELFS, *cmd, timeout=120)
        lines = r.stderr.strip().splitlines()
        t.check("hostile %s: modelfs %s fails with one line (%s)" % (name, cmd[0], needle),
                r.returncode == 1 and len(lines) == 1 and needle in r.stderr, r.stderr)


small = fx["safetensors"] + ".mfs"
good, so, mo = parse(small)
hostile("truncated", good[:len(good) - 100], "truncated")
hostile("truncated-half", good[:len(good) // 2], "truncated")
b = bytearray(good)
b[so + 30] ^= 0xFF
hostile("seek-crc", b, "CRC")
b = bytearray(good)
e = chunk_entry(b, so, 1)
b[e:e + 8] = struct.pack("<Q", len(good) * 4)
hostile("chunk-outside", reseal(b, so, mo), "outside")
b = bytearray(good)
b[so + 12:so + 16] = struct.pack("<I", 99)      # file count
hostile("seek-counts", reseal(b, so, mo), "seek table")
b = bytearray(good)
b[16:18] = struct.pack("<H", 2)                 # major version in the head frame
hostile("newer-major", b, "newer")
# A frame that decompresses to more than declared: the last (short) chunk's
# frame replaced by one of twice its size in zeros (a few dozen bytes).
b = bytearray(good)
nc = struct.unpack("<I", b[so + 20:so + 24])[0]
last = chunk_entry(b, so, nc - 1)
last_raw = struct.unpack("<I", b[last + 12:last + 16])[0]
with open(os.path.join(t.tmp, "z2"), "wb") as f:
    f.truncate(2 * last_raw)
fr = subprocess.run(["zstd", "-q", "-c", os.path.join(t.tmp, "z2")], capture_output=True, check=True).stdout
foff = struct.unpack("<Q", b[last:last + 8])[0]
b[foff:foff + len(fr)] = fr
b[last + 8:last + 12] = struct.pack("<I", len(fr))
b[last + 16] = 0
hostile("frame-too-big", reseal(b, so, mo), "more than its declared", via="read")
# A decompression bomb: 16 MiB of zeros in a frame of a few hundred bytes,
# declared as a 4 KiB chunk.
nc = struct.unpack("<I", good[so + 20:so + 24])[0]
zeros = os.path.join(t.tmp, "zeros")
with open(zeros, "wb") as f:
    f.truncate(16 << 20)
bomb = subprocess.run(["zstd", "-q", "-19", "-c", zeros], capture_output=True, check=True).stdout
b = bytearray(good)
entries = [chunk_entry(b, so, i) for i in range(nc)]
big_e = max(entries, key=lambda e: struct.unpack("<I", b[e + 8:e + 12])[0])
foff = struct.unpack("<Q", b[big_e:big_e + 8])[0]
b[foff:foff + len(bomb)] = bomb
b[big_e + 8:big_e + 12] = struct.pack("<I", len(bomb))
hostile("bomb", reseal(b, so, mo), "more than its declared", via="read")
# The manifest's hash of the file is not the file's.
b = bytearray(good)
mlen = struct.unpack("<I", b[mo + 4:mo + 8])[0]
man = json.loads(bytes(b[mo + 8:mo + 8 + mlen]))
h = man["files"][0]["sha256"]
man["files"][0]["sha256"] = ("0" if h[0] != "0" else "1") + h[1:]
js = json.dumps(man, separators=(",", ":")).encode()
assert len(js) == mlen
b[mo + 8:mo + 8 + mlen] = js
hostile("manifest-hash", reseal(b, so, mo), "manifest", via="read")
# Mounted, the damaged chunks fail their reads with EIO and the daemon lives.
for name in ("frame-too-big", "bomb"):
    p = os.path.join(t.tmp, "hostile", name, "model.safetensors.mfs")
    try:
        with t.mount(p) as m:
            errs = 0
            for dp, dns, fns in os.walk(os.path.join(m, "weights")):
                for fn in fns:
                    try:
                        open(os.path.join(dp, fn), "rb").read()
                    except OSError as e:
                        errs += e.errno == 5
            t.check("hostile %s: mounted, reads of the damaged chunk fail with EIO and the daemon "
                    "lives" % name, errs >= 1 and daemon_pids(m), errs)
    except RuntimeError as e:
        t.not_ok("hostile %s: mount" % name, e)
# A pack changed on disk under a mount (one byte of a chunk's frame, same
# size, same mtime): a read of that chunk fails with EIO (zstd's frame
# checksum), never gives other bytes; verify and unpack name it.
b = bytearray(good)
nc = struct.unpack("<I", b[so + 20:so + 24])[0]
entries = [chunk_entry(b, so, i) for i in range(nc)]
victim = max(entries[:max(1, nc // 2)], key=lambda e: struct.unpack("<I", b[e + 8:e + 12])[0])
foff = struct.unpack("<Q", b[victim:victim + 8])[0]
flen = struct.unpack("<I", b[victim + 8:victim + 12])[0]
b[foff + flen // 2] ^= 0x5A
hostile("flipped-frame", b, "checksum", via="read")
p = os.path.join(t.tmp, "flip", "model.safetensors.mfs")
os.makedirs(os.path.dirname(p), exist_ok=True)
open(p, "wb").write(bytes(good))
try:
    with t.mount(p, "-o", "cache_size=512K") as m:
        def read_all():
            got = {}
            for dp, dns, fns in os.walk(os.path.join(m, "weights")):
                if "data" in fns:
                    try:
                        got[dp] = open(os.path.join(dp, "data"), "rb").read()
                    except OSError as e:
                        got[dp] = e.errno
            return got
        before = read_all()
        st = os.stat(p)
        with open(p, "r+b") as f:
            f.seek(foff + flen // 2)
            f.write(bytes([good[foff + flen // 2] ^ 0x5A]))
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        open("/proc/sys/vm/drop_caches", "w").write("3\n")
        after = read_all()
        wrong = [k for k, v in after.items() if not isinstance(v, int) and v != before[k]]
        eio = [k for k, v in after.items() if v == 5]
        t.check("a pack changed under its mount: no read gives other bytes, the changed chunk's "
                "reads fail with EIO", not wrong and eio and all(isinstance(v, bytes)
                                                                   for v in before.values()),
                "wrong %s, EIO %s" % (wrong, eio))
except RuntimeError as e:
    t.not_ok("flipped pack under a mount: mount", e)
hostile("not-a-pack", b"hello, this is not a pack at all" * 10, "bad magic")
hostile("too-short", b"\x50\x2a\x4d\x18", "too short")
hostile("garbage", os.urandom(4096), "bad magic")

t.done()

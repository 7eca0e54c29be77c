#!/usr/bin/python3
"""bench/pack.py — packs side by side with their references, in one run.

For a bf16 and an fp32 fixture (one tensor of i.i.d. N(0, 0.02) values,
LLM-like; MFS_PACK_MIB MiB each, default 128), prints:
  ratio        modelfs pack vs plain `zstd -3` vs the per-chunk order-0
               entropy limit of the byte planes (computed here, same planes
               and 256 KiB chunks as the pack)
  pack speed   `modelfs pack` (all cores) vs `zstd -T0 -3`, MB/s of input
  unpack speed `modelfs unpack` (one core: decompress + SHA-256 + write to
               /dev/shm) vs `zstd -d` (one core: decompress + xxhash + write)
  first read   of the tensor through a fresh pack mount vs squashfuse_ll of
               a zstd squashfs image of the same file vs a fresh plain
               modelfs mount (the files themselves warm in the page cache)
  RSS          of the pack mount's daemon after reading every tensor
and, for a bf16 model of MFS_PACK_COMMIT_MIB MiB (default 1024) in 4 MiB
tensors, packed:
  commit       a same-size edit of one 4 MiB tensor through a pack mount,
               `modelfs commit` timed (the new pack: untouched frames copied,
               the touched chunks recompressed, the file's SHA-256 over every
               byte) vs `modelfs pack` of the whole edited model (goal: at
               most 0.05 of it), and vs `modelfs unpack` of the same pack
               (decompress + SHA-256 + write of every byte, one core: what
               the file's hash alone would cost without workers)
Ratios only; nothing is asserted.  Usage:
  MFS_BUILD=build /usr/bin/python3 bench/pack.py [--write-results] [--commit-only]
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("MFS_BUILD") or os.path.join(SRC, "build")
MODELFS = os.path.join(BUILD, "tools", "modelfs")
MOUNT = os.path.join(BUILD, "fs", "mount.modelfs")
MIB = int(os.environ.get("MFS_PACK_MIB", "128"))
CHUNK = 256 << 10
WORK = os.path.join(SRC, "bench", "work", "pack")


def st_write(path, name, dt, shape, raw):
    h = json.dumps({name: {"dtype": dt, "shape": shape, "data_offsets": [0, len(raw)]}}).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.write(raw)


def planes(chunk, kind):
    if kind == "bf16":
        v = np.frombuffer(chunk, dtype="<u2")
        v = ((v << 1) | (v >> 15)).astype("<u2")
        b = v.view(np.uint8).reshape(-1, 2)
    else:
        v = np.frombuffer(chunk, dtype="<u4")
        v = ((v << 1) | (v >> 31)).astype("<u4")
        b = v.view(np.uint8).reshape(-1, 4)
    return [b[:, i] for i in range(b.shape[1])]


def entropy_bytes(x):
    c = np.bincount(x, minlength=256).astype(np.float64)
    p = c[c > 0] / len(x)
    return -(p * np.log2(p)).sum() * len(x) / 8


def limit(raw, kind):
    total = 0.0
    for off in range(0, len(raw), CHUNK):
        for p in planes(raw[off:off + CHUNK], kind):
            total += entropy_bytes(p)
    return len(raw) / total


def timed(*cmd):
    t0 = time.perf_counter()
    subprocess.run(list(cmd), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def is_mounted(p):
    return any(line.split()[4] == os.path.realpath(p) for line in open("/proc/self/mountinfo"))


def umount(p):
    subprocess.run(["fusermount3", "-u", p], stderr=subprocess.DEVNULL)
    for _ in range(200):
        if not is_mounted(p):
            return
        time.sleep(0.05)


def read_all(path):
    t0 = time.perf_counter()
    n = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            n += len(b)
    return n / (time.perf_counter() - t0) / 1e6


def daemon_pid(mnt):
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                argv = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"mount.modelfs") and os.path.realpath(mnt).encode() in argv:
                return int(pid)


def rss_mib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024


def one(kind, rng):
    d = os.path.join(WORK, kind)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    n = (MIB << 20) // (2 if kind == "bf16" else 4)
    x = rng.normal(0, 0.02, n).astype(np.float32)
    raw = ((x.view(np.uint32) >> 16).astype(np.uint16).tobytes() if kind == "bf16" else x.tobytes())
    del x
    model = os.path.join(d, "model.safetensors")
    st_write(model, "w", "BF16" if kind == "bf16" else "F32", [n], raw)
    size = os.path.getsize(model)
    r = {"kind": kind, "bytes": size, "limit": limit(raw, kind)}
    del raw
    pk = model + ".mfs"
    r["pack_s"] = timed(MODELFS, "pack", model, "-o", pk)
    r["pack_ratio"] = size / os.path.getsize(pk)
    zst = model + ".zst"
    r["zstd_s"] = timed("zstd", "-q", "-f", "-T0", "-3", model, "-o", zst)
    r["zstd_ratio"] = size / os.path.getsize(zst)
    shm = tempfile.mkdtemp(prefix="mfs-bench-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    r["unpack_s"] = timed(MODELFS, "unpack", pk, "-o", os.path.join(shm, "u"))
    r["zstdd_s"] = timed("zstd", "-q", "-d", "-f", zst, "-o", os.path.join(shm, "z"))
    shutil.rmtree(shm)
    # first reads: fresh mounts, the underlying files warm
    for f in (model, pk):
        open(f, "rb").read()
    mnt = os.path.join(d, "mnt")
    os.makedirs(mnt)
    subprocess.run([MOUNT, pk, mnt, "-o", "ro"], check=True)
    try:
        r["read_pack"] = read_all(os.path.join(mnt, "weights", "w", "data"))
        r["rss_pack"] = rss_mib(daemon_pid(mnt))
    finally:
        umount(mnt)
    subprocess.run([MOUNT, model, mnt, "-o", "ro"], check=True)
    try:
        r["read_plain"] = read_all(os.path.join(mnt, "weights", "w", "data"))
    finally:
        umount(mnt)
    sq_dir = os.path.join(d, "sq")
    os.makedirs(sq_dir)
    os.link(model, os.path.join(sq_dir, "model.safetensors"))
    img = os.path.join(d, "img.sqfs")
    subprocess.run(["mksquashfs", sq_dir, img, "-comp", "zstd", "-noappend", "-quiet",
                    "-no-progress"], check=True, stdout=subprocess.DEVNULL)
    open(img, "rb").read()
    subprocess.run(["squashfuse_ll", img, mnt], check=True)
    try:
        for _ in range(100):
            if is_mounted(mnt):
                break
            time.sleep(0.05)
        r["read_sqfs"] = read_all(os.path.join(mnt, "model.safetensors"))
    finally:
        umount(mnt)
    shutil.rmtree(d, ignore_errors=True)
    return r


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
    subprocess.run([MOUNT, pk, mnt], check=True)
    try:
        with open(os.path.join(mnt, "weights", "layer", "%04d" % (n_t // 2), "data"), "r+b") as f:
            f.write(edit)
        r = {"mib": mib, "commit_s": timed(MODELFS, "commit", mnt)}
    finally:
        umount(mnt)
    # The reference: the edited model packed whole (the plain model gets
    # the same bytes, so both packs hold the same model).
    with open(model, "r+b") as f:
        f.seek(8 + len(h) + (n_t // 2) * 2 * n)
        f.write(edit)
    r["repack_s"] = timed(MODELFS, "pack", model, "-o", os.path.join(d, "full.mfs"))
    shm = tempfile.mkdtemp(prefix="mfs-bench-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    r["unpack_s"] = timed(MODELFS, "unpack", pk, "-o", os.path.join(shm, "u"))
    shutil.rmtree(shm)
    shutil.rmtree(d, ignore_errors=True)
    return r


def main():
    rng = np.random.default_rng(2026)
    if "--commit-only" in sys.argv:
        c = commit_row(rng)
        print("| same-size 4 MiB edit committed in a %d MiB pack | %.2f s | a full re-pack %.2f s "
              "| %.3f× (goal ≤ 0.05×) | unpack of the pack %.2f s (%.2f×) |"
              % (c["mib"], c["commit_s"], c["repack_s"], c["commit_s"] / c["repack_s"],
                 c["unpack_s"], c["commit_s"] / c["unpack_s"]))
        return
    rows = [one(k, rng) for k in ("bf16", "fp32")]
    c = commit_row(rng)
    mb = lambda r, s: r["bytes"] / s / 1e6  # noqa: E731
    lines = ["| figure | pack | reference | ratio | second reference |",
             "|---|---|---|---|---|"]
    for r in rows:
        k = r["kind"]
        lines.append("| ratio, %s N(0,0.02) | %.4f× | zstd -3 %.4f× | %.3f of the entropy limit %.4f× | |"
                     % (k, r["pack_ratio"], r["zstd_ratio"], r["pack_ratio"] / r["limit"], r["limit"]))
        lines.append("| pack speed, %s | %.0f MB/s | zstd -T0 -3 %.0f MB/s | %.2f | |"
                     % (k, mb(r, r["pack_s"]), mb(r, r["zstd_s"]), r["zstd_s"] / r["pack_s"]))
        lines.append("| unpack, one core, %s | %.0f MB/s | zstd -d %.0f MB/s | %.2f | |"
                     % (k, mb(r, r["unpack_s"]), mb(r, r["zstdd_s"]), r["zstdd_s"] / r["unpack_s"]))
        lines.append("| first read of the %d MiB tensor, %s | %.0f MB/s | squashfuse_ll zstd %.0f MB/s | %.2f | plain mount %.0f MB/s (%.2f) |"
                     % (MIB, k, r["read_pack"], r["read_sqfs"], r["read_pack"] / r["read_sqfs"],
                        r["read_plain"], r["read_pack"] / r["read_plain"]))
        lines.append("| daemon RSS after reading every tensor, %s | %.1f MiB | cache_size 32 MiB | | |"
                     % (k, r["rss_pack"]))
    lines.append("| same-size 4 MiB edit committed in a %d MiB pack | %.2f s | a full re-pack %.2f s "
                 "| %.3f× (goal ≤ 0.05×) | unpack of the pack %.2f s (%.2f×) |"
                 % (c["mib"], c["commit_s"], c["repack_s"], c["commit_s"] / c["repack_s"],
                    c["unpack_s"], c["commit_s"] / c["unpack_s"]))
    print("\n".join(lines))
    if "--write-results" in sys.argv:
        res = os.path.join(SRC, "bench", "RESULTS.md")
        with open(res, "a") as f:
            f.write("\n## Packs (bench/pack.py, issue 14)\n\n")
            f.write("Run %s with `MFS_BUILD=build /usr/bin/python3 bench/pack.py --write-results`, "
                    "%d MiB fixtures, %d online cores shared with other jobs; ratio column: pack / "
                    "reference (speeds: reference time / pack time).\n\n"
                    % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), MIB, os.cpu_count()))
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

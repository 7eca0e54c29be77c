#!/usr/bin/python3
"""tests/mount/test_gguf_hostile.py — issue 15: hostile GGUF files.

Each file of the corpus below (written at test time by struct, never by
modelfs) is refused by mount.modelfs and by `modelfs info` with exactly one
line on stderr naming the file and what is wrong, a non-zero exit, nothing
mounted, the file untouched, in bounded time and memory (os.wait4 rusage:
user+sys <= 5 s, ru_maxrss <= 64 MiB; this test imports no numpy, so a
child's high-water mark is its own).  Then a good file with every value
type mounts, reads and takes a props commit (so that the ASan pass covers
the reader and the writer too).
"""
import errno
import hashlib
import os
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from mfstest import MODELFS, MOUNT_MODELFS, T, is_mounted, umount  # noqa: E402
import gguf_write as gw  # noqa: E402

MiB = 1 << 20
RSS_MAX = 64 * MiB
CPU_MAX = 5.0
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")


def header(n_tensors, n_kv, version=3):
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def kv(key, t, v):
    return gw.kv_bytes(key, t, v)


def tinfo(name, dims, gtype, off):
    return gw.gstr(name) + U32.pack(len(dims)) + b"".join(U64.pack(d) for d in dims) + \
        U32.pack(gtype) + U64.pack(off)


def pad(b, a=32):
    return b + b"\0" * (-len(b) % a)


ARCH = kv("general.architecture", gw.STR, "llama")


def one_tensor(dims=(8,), gtype=0, off=0, data=None, extra_kv=b"", n_kv=1):
    body = header(1, n_kv) + ARCH + extra_kv + tinfo("w", dims, gtype, off)
    return pad(body) + (data if data is not None else b"\0" * 32)


def corpus():
    c = {}
    c["n_kv_huge"] = header(0, 1 << 62) + ARCH
    c["n_tensors_huge"] = header(1 << 60, 1) + ARCH
    c["key_past_eof"] = header(0, 1) + U64.pack(1 << 40) + b"general"
    c["string_past_eof"] = header(0, 1) + gw.gstr("general.name") + U32.pack(gw.STR) + \
        U64.pack(1 << 33) + b"abc"
    c["string_huge"] = header(0, 1) + gw.gstr("general.name") + U32.pack(gw.STR) + \
        U64.pack(1 << 63) + b"abc"
    c["array_count_huge"] = header(0, 1) + gw.gstr("a") + U32.pack(gw.ARR) + \
        U32.pack(gw.U8) + U64.pack(1 << 40) + b"\0" * 64
    bomb = b""
    for _ in range(200):
        bomb += U32.pack(gw.ARR) + U64.pack(1)
    c["array_depth_bomb"] = header(0, 1) + gw.gstr("a") + U32.pack(gw.ARR) + bomb + \
        U32.pack(gw.U8) + U64.pack(0)
    c["dims_product_overflow"] = one_tensor(dims=(1 << 32, 1 << 32, 1 << 32))
    c["size_past_eof"] = one_tensor(dims=(1 << 20, 1 << 10))
    c["offset_outside"] = one_tensor(off=1 << 40)
    two = header(2, 1) + ARCH + tinfo("a", (8,), 0, 0) + tinfo("b", (8,), 0, 0)
    c["offsets_overlap"] = pad(two) + b"\0" * 64
    two = header(2, 1) + ARCH + tinfo("a", (8,), 0, 0) + tinfo("b", (8,), 0, 16)
    c["offset_misaligned"] = pad(two) + b"\0" * 64
    two = header(2, 1) + ARCH + tinfo("a", (8,), 0, 32) + tinfo("b", (8,), 0, 0)
    c["offsets_reordered"] = pad(two) + b"\0" * 64
    c["unknown_ggml_type"] = one_tensor(gtype=99)
    c["removed_ggml_type"] = one_tensor(gtype=4)
    c["q8_0_partial_block"] = one_tensor(dims=(31,), gtype=8)
    c["dims_too_many"] = one_tensor(dims=(1, 1, 1, 1, 8))
    c["duplicate_key"] = header(0, 2) + ARCH + ARCH
    two = header(2, 1) + ARCH + tinfo("w", (8,), 0, 0) + tinfo("w", (8,), 0, 32)
    c["duplicate_tensor"] = pad(two) + b"\0" * 64
    c["empty_key"] = header(0, 1) + kv("", gw.U32, 1)
    c["unknown_value_type"] = header(0, 1) + gw.gstr("a") + U32.pack(13) + U32.pack(0)
    c["alignment_not_pow2"] = one_tensor(extra_kv=kv("general.alignment", gw.U32, 24), n_kv=2)
    c["alignment_wrong_type"] = one_tensor(extra_kv=kv("general.alignment", gw.U64, 32), n_kv=2)
    c["alignment_zero"] = one_tensor(extra_kv=kv("general.alignment", gw.U32, 0), n_kv=2)
    c["tensor_name_64"] = pad(header(1, 1) + ARCH + tinfo("n" * 64, (8,), 0, 0)) + b"\0" * 32
    c["version_1"] = header(0, 0, version=1)
    c["version_4"] = header(0, 0, version=4)
    c["big_endian"] = b"GGUF" + struct.pack(">IQQ", 3, 0, 1) + b"\0" * 32
    c["truncated_info"] = (header(1, 1) + ARCH + tinfo("w", (8,), 0, 0))[:-5]
    c["bad_magic"] = b"GGUG" + b"\0" * 40
    c["split_not_first_name"] = header(0, 2) + kv("split.no", gw.U16, 0) + \
        kv("split.count", gw.U16, 2)
    return c


NEEDLE = {
    "n_kv_huge": "key count", "n_tensors_huge": "tensor count", "key_past_eof": "key",
    "string_past_eof": "string", "string_huge": "limit", "array_count_huge": "limit",
    "array_depth_bomb": "deeper", "dims_product_overflow": "overflow",
    "size_past_eof": "past the end", "offset_outside": "offset",
    "offsets_overlap": "offset", "offset_misaligned": "offset", "offsets_reordered": "offset",
    "unknown_ggml_type": "unknown ggml type 99", "removed_ggml_type": "unknown ggml type 4",
    "q8_0_partial_block": "blocks", "dims_too_many": "dims", "duplicate_key": "twice",
    "duplicate_tensor": "twice", "empty_key": "empty", "unknown_value_type": "unknown value type",
    "alignment_not_pow2": "alignment", "alignment_wrong_type": "alignment",
    "alignment_zero": "alignment", "tensor_name_64": "64 bytes long",
    "version_1": "version 1", "version_4": "version 4", "big_endian": "big-endian",
    "truncated_info": "left in the file", "bad_magic": "not a model of any known format",
    "split_not_first_name": "not named",
}


def run_bounded(argv, timeout=20):
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    err = b""
    os.set_blocking(p.stderr.fileno(), False)
    killed = False
    while True:
        try:
            chunk = p.stderr.read()
            if chunk:
                err += chunk
        except (BlockingIOError, TypeError):
            pass
        pid, st, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            p.kill()
            pid, st, ru = os.wait4(p.pid, 0)
            killed = True
            break
        time.sleep(0.005)
    os.set_blocking(p.stderr.fileno(), True)
    err += p.stderr.read() or b""
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(st)
    return p.returncode, err.decode("utf-8", "replace"), ru, killed


def main():
    t = T()
    d = os.path.join(t.tmp, "hostile")
    os.makedirs(d)
    mnt = os.path.join(t.tmp, "mnt")
    os.makedirs(mnt)
    c = corpus()
    t.check("the corpus holds at least 15 files (%d)" % len(c), len(c) >= 15)
    for name, data in sorted(c.items()):
        fn = name + ("-00001-of-00003.gguf" if name.startswith("split_not") else ".gguf")
        if name == "split_not_first_name":
            fn = name + ".gguf"
        path = os.path.join(d, fn)
        with open(path, "wb") as f:
            f.write(data)
        before = hashlib.sha256(data).hexdigest()
        for tool, argv in (("mount", [MOUNT_MODELFS, path, mnt]), ("info", [MODELFS, "info", path])):
            rc, err, ru, killed = run_bounded(argv)
            lines = err.strip().split("\n")
            cpu = ru.ru_utime + ru.ru_stime
            rss = ru.ru_maxrss * 1024
            ok = (rc != 0 and not killed and len(lines) == 1 and fn in lines[0] and
                  NEEDLE[name] in lines[0] and cpu <= CPU_MAX and rss <= RSS_MAX and
                  not is_mounted(mnt))
            t.check("%s %s: refused with one line (%s), %.2f s, %d MiB" %
                    (tool, name, lines[0][-110:], cpu, rss >> 20), ok,
                    "rc %d killed %s stderr %r" % (rc, killed, err[:300]))
            if is_mounted(mnt):
                umount(mnt)
        with open(path, "rb") as f:
            t.eq("%s: the file is untouched" % name, before, hashlib.sha256(f.read()).hexdigest())

    # A good file with every value type: mounts, reads, commits a props edit.
    good = os.path.join(d, "good.gguf")
    kvs = [("general.architecture", gw.STR, "llama"), ("a.u8", gw.U8, 7),
           ("a.i64", gw.I64, -5), ("a.f64", gw.F64, 2.5), ("a.b", gw.BOOL, False),
           ("a.s", gw.STR, "x\ty"), ("a.arr", gw.ARR, (gw.U16, [1, 2, 3])),
           ("general.alignment", gw.U32, 64)]
    ts = [("w.a", "f32", [16], b"\1" * 64), ("w.q", "q8_0", [32, 2], b"\2" * 68)]
    gw.write(good, kvs, ts, alignment=64)
    r = subprocess.run([MOUNT_MODELFS, good, mnt], capture_output=True, text=True, timeout=60)
    t.check("a good file with every value type mounts", r.returncode == 0, r.stderr)
    if r.returncode == 0:
        try:
            p = os.path.join(mnt, "meta", "props")
            got = {k: open(os.path.join(p, k), "rb").read() for k in sorted(os.listdir(p))}
            t.eq("its props", {"general.architecture": b"llama\n", "a.u8": b"7\n",
                               "a.i64": b"-5\n", "a.f64": b"2.5\n", "a.b": b"false\n",
                               "a.s": b"x%09y\n", "a.arr": b"1\n2\n3\n",
                               "general.alignment": b"64\n"}, got)
            t.eq("its q8_0 data", b"\2" * 68,
                 open(os.path.join(mnt, "weights", "w", "q", "data"), "rb").read())
            with open(os.path.join(p, "a.arr"), "wb") as f:
                f.write(b"4\n5\n6\n7\n")
            with open(os.path.join(p, "a.s"), "wb") as f:
                f.write(b"longer %0A string " * 20 + b"\n")
            r = subprocess.run([MODELFS, "commit", mnt], capture_output=True, text=True,
                               timeout=60)
            t.check("a props commit", r.returncode == 0, r.stderr)
            t.eq("the array reads back", b"4\n5\n6\n7\n", open(os.path.join(p, "a.arr"), "rb").read())
            err = None
            try:
                with open(os.path.join(p, "general.alignment"), "wb") as f:
                    f.write(b"32\n")
            except OSError as e:
                err = e.errno
            t.eq("general.alignment cannot be written (EINVAL)", errno.EINVAL, err)
            for key, val in (("a.u8", b"256"), ("a.i64", b"1.5"), ("a.b", b"1"),
                             ("a.arr", b"1\n-2"), ("a.f64", b"x")):
                err = None
                try:
                    with open(os.path.join(p, key), "wb") as f:
                        f.write(val + b"\n")
                except OSError as e:
                    err = e.errno
                t.eq("%r does not fit %s: EINVAL" % (val, key), errno.EINVAL, err)
        finally:
            umount(mnt)
    with open(good, "rb") as f:
        raw = f.read()
    # The rewritten file, parsed here: data section aligned to 64, tensors intact.
    n_t, n_kv = struct.unpack_from("<QQ", raw, 8)
    t.eq("the rewritten file keeps its counts", (2, 8), (n_t, n_kv))
    t.check("the rewritten file holds the new array and the tensors at 64-aligned offsets",
            raw.find(struct.pack("<IQ4H", gw.U16, 4, 4, 5, 6, 7)) > 0 and
            raw[-192:-128] == b"\1" * 64 and raw[-128:-60] == b"\2" * 68 and
            raw[-60:] == b"\0" * 60 and (len(raw) - 192) % 64 == 0, len(raw))
    t.done()


if __name__ == "__main__":
    main()

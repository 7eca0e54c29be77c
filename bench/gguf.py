#!/usr/bin/python3
"""bench/gguf.py — GGUF mounts against the tools people use today.

    MFS_BUILD=build bench/gguf.py [--size-mib N] [--reps N] [--workdir DIR]

Writes (or reuses) a GGUF of N MiB (default 1100) in DIR (default
bench/work/gguf/, on disk): llama metadata with a 32000-token vocabulary and
f16 tensors of 16 MiB.  Prints, as the median of the repetitions (min…max),
each figure beside its reference and their ratio:

  mount+ls    mount.modelfs, `ls -lR` of the mount, unmount   vs  @huggingface/gguf
                                                                  reading the header (node)
  first read  cat of one tensor's data from the mount after    vs  the same range read from
              dropping the file's pages (posix_fadvise)            the file, pages dropped
  warm read   the same, pages cached                           vs  the same from the file
  template    a chat template edit (+1 KiB) through the mount  vs  a full rewrite (header +
              and `modelfs commit` (header rewritten, data          every byte copied through
              section copy_file_range'd)                           userspace, fsync, rename)

Nothing is asserted: this is a benchmark.
"""
import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(SRC, "tests", "tools"))
import gguf_write as gw  # noqa: E402

BUILD = os.environ.get("MFS_BUILD") or os.path.join(SRC, "build")
MOUNT = os.path.join(BUILD, "fs", "mount.modelfs")
MODELFS = os.path.join(BUILD, "tools", "modelfs")
NODE_DIR = os.path.join(SRC, "tests", "node")
MiB = 1 << 20
T_MIB = 16


def fixture(path, size_mib):
    stamp = path + ".stamp"
    if os.path.exists(path) and os.path.exists(stamp) and open(stamp).read() == str(size_mib):
        return
    n_t = max(1, size_mib // T_MIB)
    tokens = ["<unk>", "<s>", "</s>"] + ["tok%05d" % i for i in range(31997)]
    kvs = [("general.architecture", gw.STR, "llama"), ("general.name", gw.STR, "bench"),
           ("llama.block_count", gw.U32, n_t), ("tokenizer.ggml.model", gw.STR, "llama"),
           ("tokenizer.ggml.tokens", gw.ARR, (gw.STR, tokens)),
           ("tokenizer.ggml.scores", gw.ARR, (gw.F32, [0.0] * len(tokens))),
           ("tokenizer.chat_template", gw.STR, "{{ messages }}")]
    dims = [2048, T_MIB * MiB // 2 // 2048]
    head = bytearray(b"GGUF" + struct.pack("<IQQ", 3, n_t, len(kvs)))
    for k, t, v in kvs:
        head += gw.kv_bytes(k, t, v)
    nb = T_MIB * MiB
    for i in range(n_t):
        head += gw.gstr("blk.%d.w" % i) + struct.pack("<I", 2) + struct.pack("<QQ", *dims) + \
            struct.pack("<IQ", 1, i * nb)
    head += b"\0" * (-len(head) % 32)
    block = os.urandom(MiB)
    with open(path + ".tmp", "wb") as f:
        f.write(head)
        for i in range(n_t * T_MIB):
            f.write(block[i % 997:] + block[:i % 997])
    os.rename(path + ".tmp", path)
    with open(stamp, "w") as f:
        f.write(str(size_mib))


def drop(path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def mount(model, mnt, *opts):
    subprocess.run([MOUNT, model, mnt] + list(opts), check=True, timeout=120)


def umount(mnt):
    subprocess.run(["fusermount3", "-u", mnt], check=True, timeout=120)
    for _ in range(400):
        if not any(line.split()[4] == os.path.realpath(mnt) for line in open("/proc/self/mountinfo")):
            return
        time.sleep(0.05)


def read_all(path, off=0, n=None):
    with open(path, "rb", buffering=0) as f:
        f.seek(off)
        left = n
        while True:
            b = f.read(MiB if left is None else min(MiB, left))
            if not b:
                break
            if left is not None:
                left -= len(b)
                if left == 0:
                    break


def row(name, mine, ref, what_mine, what_ref):
    r = [a / b for a, b in zip(mine, ref)]
    print("%-11s %s %.3f s  vs  %s %.3f s   ratio %.3f (%.3f…%.3f)" %
          (name, what_mine, statistics.median(mine), what_ref, statistics.median(ref),
           statistics.median(r), min(r), max(r)), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1100)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workdir", default=os.path.join(BENCH, "work", "gguf"))
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    model = os.path.join(a.workdir, "model.gguf")
    fixture(model, a.size_mib)
    size = os.path.getsize(model)
    print("command: bench/gguf.py --size-mib %d --reps %d" % (a.size_mib, a.reps))
    print("machine: nproc=%d, kernel %s; fixture %s, %.2f GiB" %
          (os.cpu_count(), os.uname().release, model, size / (1 << 30)))
    mnt = tempfile.mkdtemp(prefix="mnt.", dir=a.workdir)

    # mount + ls -lR against the npm parser
    mine, ref = [], []
    for _ in range(a.reps):
        def m():
            mount(model, mnt, "-o", "ro")
            subprocess.run(["ls", "-lR", mnt], stdout=subprocess.DEVNULL, check=True)
            umount(mnt)
        mine.append(timed(m))
        ref.append(timed(lambda: subprocess.run(
            ["node", os.path.join(NODE_DIR, "gguf_read.mjs"), model], cwd=NODE_DIR,
            stdout=subprocess.DEVNULL, check=True)))
    row("mount+ls", mine, ref, "mount, ls -lR, umount", "@huggingface/gguf header")

    # first and warm read of one tensor
    hf = subprocess.run(["node", os.path.join(NODE_DIR, "gguf_read.mjs"), model], cwd=NODE_DIR,
                        capture_output=True, text=True, check=True)
    import json
    info = json.loads(hf.stdout)
    mid = info["tensors"][len(info["tensors"]) // 2]
    off = int(info["offset"]) + int(mid["offset"])
    nb = T_MIB * MiB
    mount(model, mnt, "-o", "ro")
    data = os.path.join(mnt, "weights", *mid["name"].split("."), "data")
    cold_m, cold_r, warm_m, warm_r = [], [], [], []
    for _ in range(a.reps):
        drop(model)
        cold_m.append(timed(lambda: read_all(data)))
        warm_m.append(timed(lambda: read_all(data)))
        drop(model)
        cold_r.append(timed(lambda: read_all(model, off, nb)))
        warm_r.append(timed(lambda: read_all(model, off, nb)))
    umount(mnt)
    row("first read", cold_m, cold_r, "16 MiB from the mount", "from the file")
    row("warm read", warm_m, warm_r, "16 MiB from the mount", "from the file")

    # chat template commit against a full rewrite
    work = os.path.join(a.workdir, "edit.gguf")
    mine, ref = [], []
    for i in range(a.reps):
        shutil.copyfile(model, work)
        mount(work, mnt)
        with open(os.path.join(mnt, "meta", "props", "tokenizer.chat_template"), "w") as f:
            f.write("{{ messages }}" + ("x" * 1024) + str(i) + "\n")
        mine.append(timed(lambda: subprocess.run([MODELFS, "commit", mnt], check=True,
                                                 stdout=subprocess.DEVNULL)))
        umount(mnt)

        def rewrite():
            # What a script does: the new header, then every byte of the data copied.
            with open(work, "rb") as src, open(work + ".new", "wb") as dst:
                dst.write(src.read(1 << 20))
                shutil.copyfileobj(src, dst, 8 * MiB)
                dst.flush()
                os.fsync(dst.fileno())
            os.rename(work + ".new", work)
            dfd = os.open(a.workdir, os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
        ref.append(timed(rewrite))
    os.unlink(work)
    row("template", mine, ref, "modelfs commit", "full rewrite")
    os.rmdir(mnt)


if __name__ == "__main__":
    main()

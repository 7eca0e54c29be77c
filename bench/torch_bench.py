#!/usr/bin/python3
"""bench/torch_bench.py — a >= 1 GiB torch.save checkpoint: modelfs against
torch.load(weights_only=True) and fuse-zip (issue 13).

    MFS_BUILD=build bench/torch_bench.py [--reps N] [--gib G] [--workdir DIR] [--results FILE]

Writes (or reuses) DIR/big.pt (default bench/work/torch/, G GiB of float32
in 16 tensors, default 1) and measures, N times each (default 3), with the
file's pages dropped from the page cache before every repetition
(posix_fadvise DONTNEED):

  mount time    mount.modelfs until the mount is there, against
                torch.load(path, weights_only=True) (Debian's torch 1.13:
                no mmap=, so it reads the whole file), and against fuse-zip
                -r until its mount is there;
  first read    mount + reading one 64 MiB tensor's data file, against
                torch.load + touching that tensor's bytes, and against
                fuse-zip mount + reading the member data/<k>.

Prints each figure as ratios modelfs/torch.load and modelfs/fuse-zip
(median of the per-repetition ratios, min..max) beside the raw medians, and
appends a section to bench/RESULTS.md unless --results ''.  Not a test:
nothing asserts a time.
"""
import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
BUILD = os.environ.get("MFS_BUILD") or os.path.join(SRC, "build")
MOUNT = os.path.join(BUILD, "fs", "mount.modelfs")


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def wait_mounted(path, timeout=60):
    deadline = time.time() + timeout
    while not is_mounted(path):
        if time.time() > deadline:
            raise RuntimeError("no mount at " + path)
        time.sleep(0.001)


def umount(path):
    subprocess.run(["fusermount3", "-u", path], stderr=subprocess.DEVNULL)
    for _ in range(200):
        if not is_mounted(path):
            return
        time.sleep(0.02)
    subprocess.run(["fusermount3", "-uz", path], stderr=subprocess.DEVNULL)


def drop_cache(path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def read_all(path):
    n = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return n
            n += len(b)


def make_fixture(path, gib):
    import torch
    n = 16
    per = gib * (1 << 30) // n // 4
    rows = 4096
    g = torch.Generator().manual_seed(0)
    sd = {"layer%02d.weight" % i: torch.randn(rows, per // rows, generator=g) * 0.02
          for i in range(n)}
    torch.save(sd, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--gib", type=int, default=1)
    ap.add_argument("--workdir", default=os.path.join(HERE, "work", "torch"))
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    path = os.path.join(a.workdir, "big.pt")
    if not os.path.exists(path) or os.path.getsize(path) < a.gib * (1 << 30):
        make_fixture(path, a.gib)
    size = os.path.getsize(path)
    import zipfile
    with zipfile.ZipFile(path) as z:
        prefix = z.namelist()[0].split("/")[0]
    member = prefix + "/data/3"     # storages are keyed in first-seen order: layer03's
    tname = "layer03.weight"
    mnt = tempfile.mkdtemp(prefix="mnt.", dir=a.workdir)
    rows = {k: [] for k in ("mount modelfs", "mount torch.load", "mount fuse-zip",
                            "read modelfs", "read torch.load", "read fuse-zip")}

    import torch
    for rep in range(a.reps):
        # modelfs: mount; then first read of one tensor.
        drop_cache(path)
        t0 = time.perf_counter()
        subprocess.run([MOUNT, path, mnt], check=True)
        wait_mounted(mnt)
        t1 = time.perf_counter()
        got = read_all(os.path.join(mnt, "weights", "layer03", "weight", "data"))
        t2 = time.perf_counter()
        umount(mnt)
        rows["mount modelfs"].append(t1 - t0)
        rows["read modelfs"].append(t2 - t0)
        # torch.load(weights_only=True): the whole file; then the tensor's bytes.
        drop_cache(path)
        t0 = time.perf_counter()
        sd = torch.load(path, weights_only=True)
        t1 = time.perf_counter()
        want = sd[tname].numpy().tobytes()
        t2 = time.perf_counter()
        del sd
        rows["mount torch.load"].append(t1 - t0)
        rows["read torch.load"].append(t2 - t0)
        if got != len(want):
            sys.exit("modelfs read %d bytes of %s, torch has %d" % (got, tname, len(want)))
        # fuse-zip -r: mount; then the member's bytes.
        drop_cache(path)
        t0 = time.perf_counter()
        subprocess.run(["fuse-zip", "-r", path, mnt], check=True)
        wait_mounted(mnt)
        t1 = time.perf_counter()
        n = read_all(os.path.join(mnt, member))
        t2 = time.perf_counter()
        umount(mnt)
        rows["mount fuse-zip"].append(t1 - t0)
        rows["read fuse-zip"].append(t2 - t0)
        if n != len(want):
            sys.exit("fuse-zip read %d bytes of %s" % (n, member))
    os.rmdir(mnt)

    def ratio(x, y):
        r = [p / q for p, q in zip(rows[x], rows[y])]
        return "%.3g (%.3g…%.3g)" % (statistics.median(r), min(r), max(r))

    def ms(k):
        return "%.1f ms" % (statistics.median(rows[k]) * 1000)

    lines = [
        "modelfs torch bench, %s" % datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"),
        "command: MFS_BUILD=%s bench/torch_bench.py --reps %d --gib %d" % (
            os.path.relpath(BUILD, SRC), a.reps, a.gib),
        "fixture: %s, %d bytes, 16 float32 tensors; read: %s (%d bytes), member %s" % (
            os.path.basename(path), size, tname, len(want), member.replace(prefix, "<p>")),
        "page cache dropped for the file before each side (posix_fadvise DONTNEED); nproc=%d" %
        os.cpu_count(),
        "",
        "| figure | modelfs | torch.load(weights_only) | fuse-zip -r | modelfs / torch.load |"
        " modelfs / fuse-zip |",
        "|---|---|---|---|---|---|",
        "| mount time | %s | %s | %s | %s | %s |" % (
            ms("mount modelfs"), ms("mount torch.load"), ms("mount fuse-zip"),
            ratio("mount modelfs", "mount torch.load"), ratio("mount modelfs", "mount fuse-zip")),
        "| mount + first read of one 64 MiB tensor | %s | %s | %s | %s | %s |" % (
            ms("read modelfs"), ms("read torch.load"), ms("read fuse-zip"),
            ratio("read modelfs", "read torch.load"), ratio("read modelfs", "read fuse-zip")),
    ]
    text = "\n".join(lines)
    print(text)
    if a.results:
        with open(a.results, "a") as f:
            f.write("\n## torch.save checkpoints (bench/torch_bench.py, issue 13)\n\n" + text + "\n")


if __name__ == "__main__":
    main()

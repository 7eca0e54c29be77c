#!/usr/bin/python3
"""bench/remote_pack.py — a pack read over HTTP (issue 16, packs at URLs).

A safetensors model of 8 tensors of N(0, 0.02) fp32 (`MFS_RPACK_MIB` MiB in
all, default 64), packed by `modelfs pack`, served by nginx on 127.0.0.1
(tests/remotepeers.py).  Printed, as ratios:
  - bytes nginx sent to mount the pack / the pack's size;
  - bytes sent to read one tensor through the mount / that tensor's share of
    the pack (1.0: exactly its chunks);
  - requests to read that tensor / its chunks;
  - the first full read of every tensor through the remote pack mount
    against the same read through a mount of the local pack (time ratio).
Usage: MFS_BUILD=build /usr/bin/python3 bench/remote_pack.py
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests"))
from mfstest import MODELFS, MOUNT_MODELFS, umount  # noqa: E402
import remotefixtures as rf  # noqa: E402
from remotepeers import Nginx  # noqa: E402


def mount(model, mnt, *opts):
    os.makedirs(mnt, exist_ok=True)
    subprocess.run([MOUNT_MODELFS, model, mnt] + list(opts), check=True, timeout=300)
    return mnt


def read_all(mnt, names):
    start = time.perf_counter()
    n = 0
    for name in names:
        with open(os.path.join(mnt, "weights", name, "data"), "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                n += len(b)
    return time.perf_counter() - start, n


def main():
    mib = int(os.environ.get("MFS_RPACK_MIB", "64"))
    work = tempfile.mkdtemp(prefix="rpack-bench.")
    try:
        srv = os.path.join(work, "srv")
        os.makedirs(srv)
        rng = np.random.default_rng(7)
        per = (mib << 20) // 8 // 4
        names = ["t%d" % i for i in range(8)]
        rf.st_write(os.path.join(srv, "model.safetensors"),
                    [(n, rng.normal(0, 0.02, per).astype(np.float32)) for n in names])
        subprocess.run([MODELFS, "pack", os.path.join(srv, "model.safetensors")], check=True,
                       capture_output=True, timeout=600)
        pk = os.path.join(srv, "model.safetensors.mfs")
        size = os.path.getsize(pk)
        chunk = 256 << 10
        with Nginx(srv) as web:
            url = web.url("model.safetensors.mfs")
            web.clear_log()
            m = mount(url, os.path.join(work, "r1"), "-o", "cache=none")
            try:
                at_mount = web.body_bytes()
                web.clear_log()
                read_all(m, ["t3"])
                log = web.log()
                one = sum(r["body"] for r in log)
            finally:
                umount(m)
            m = mount(url, os.path.join(work, "r2"), "-o", "cache=none")
            try:
                remote_s, n = read_all(m, names)
            finally:
                umount(m)
        m = mount(pk, os.path.join(work, "l1"))
        try:
            local_s, n2 = read_all(m, names)
        finally:
            umount(m)
        share = size / 8
        chunks = -(-per * 4 // chunk)
        print("model %d MiB, pack %d bytes (ratio %.3f)" % (mib, size, (mib << 20) / size))
        print("mount: bytes fetched / pack size            %.4f  (%d / %d)"
              % (at_mount / size, at_mount, size))
        print("one tensor: bytes fetched / its pack share  %.3f  (%d / %d)"
              % (one / share, one, share))
        print("one tensor: requests / its chunks           %.3f  (%d / %d)"
              % (len(log) / chunks, len(log), chunks))
        print("full read, remote pack / local pack time    %.2f  (%.2f s / %.2f s, %d bytes each)"
              % (remote_s / local_s, remote_s, local_s, n))
        return 0 if n == n2 == per * 4 * 8 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""bench/remote.py — the "fleet" run of issue 16.

A 1 GiB safetensors (32 layers of 32 MiB; the 8 layers read are random
bytes, the rest sparse) served by nginx on 127.0.0.1 (tests/remotepeers.py).
8 mounts of its URL start at once, sharing one cache directory; worker i
reads layer 4*i.  Printed, as ratios:
  - total bytes nginx sent (bodies) / model size;
  - each worker's first-read throughput / `curl` of the same range (8 curls
    run at once, as the 8 mounts do);
  - each worker's mount time / `curl` of the header's range.
Usage: MFS_BUILD=build /usr/bin/python3 bench/remote.py [--md]
(--md: also print a RESULTS.md section).
"""
import concurrent.futures
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests"))
from mfstest import MOUNT_MODELFS, tensor_dirs, umount  # noqa: E402
from remotepeers import Nginx  # noqa: E402

LAYERS, LB, WORKERS = 32, 32 << 20, 8


def make(path):
    hdr = {"layers.%02d.weight" % i: {"dtype": "F32", "shape": [LB // 4],
                                      "data_offsets": [i * LB, (i + 1) * LB]}
           for i in range(LAYERS)}
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.truncate(8 + len(h) + LAYERS * LB)
        for w in range(WORKERS):
            f.seek(8 + len(h) + 4 * w * LB)
            f.write(os.urandom(LB))
    return 8 + len(h)


def curl_time(url, a, b):
    start = time.perf_counter()
    subprocess.run(["curl", "-s", "-f", "-r", "%d-%d" % (a, b), "-o", "/dev/null", url],
                   check=True)
    return time.perf_counter() - start


def worker(url, cache, tmp, i):
    mnt = tempfile.mkdtemp(prefix="fleet%d." % i, dir=tmp)
    t0 = time.perf_counter()
    r = subprocess.run([MOUNT_MODELFS, url, mnt, "-o", "cache=" + cache], capture_output=True,
                       text=True)
    t_mount = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(r.stderr)
    try:
        name = "layers.%02d.weight" % (4 * i)
        d = next(d for d in tensor_dirs(mnt)
                 if open(os.path.join(d, "name")).read().rstrip("\n") == name)
        t0 = time.perf_counter()
        with open(os.path.join(d, "data"), "rb") as f:
            n = 0
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                n += len(b)
        t_read = time.perf_counter() - t0
    finally:
        umount(mnt)
    return t_mount, n / t_read, n


def main():
    md = "--md" in sys.argv
    tmp = tempfile.mkdtemp(prefix="fleet.")
    try:
        srv = os.path.join(tmp, "srv")
        os.makedirs(srv)
        model = os.path.join(srv, "model.safetensors")
        header = make(model)
        size = os.path.getsize(model)
        with Nginx(srv) as web:
            url = web.url("model.safetensors")
            # references: curl of the header, curl of each worker's range
            curl_head = statistics.median(curl_time(url, 0, header - 1) for _ in range(5))
            # 8 curls at once, as the fleet runs: the same load on the machine
            def one_curl(i):
                a = header + 4 * i * LB
                return LB / curl_time(url, a, a + LB - 1)
            with concurrent.futures.ThreadPoolExecutor(WORKERS) as ex:
                curl_layer = dict(enumerate(ex.map(one_curl, range(WORKERS))))
            web.clear_log()
            cache = os.path.join(tmp, "cache")
            with concurrent.futures.ThreadPoolExecutor(WORKERS) as ex:
                res = list(ex.map(lambda i: worker(url, cache, tmp, i), range(WORKERS)))
            fetched = web.body_bytes()
        rows = []
        for i, (tm, thr, n) in enumerate(res):
            rows.append((i, tm, curl_head, tm / curl_head, thr, curl_layer[i],
                         thr / curl_layer[i]))
        print("fleet: %d mounts, %d MiB model, one cache; fetched %d bytes = %.4f x model size"
              % (WORKERS, size >> 20, fetched, fetched / size))
        print("worker  mount_s  curl_head_s  ratio  read_MB/s  curl_MB/s  ratio")
        for r in rows:
            print("%6d  %7.3f  %11.4f  %5.1f  %9.0f  %9.0f  %5.2f" %
                  (r[0], r[1], r[2], r[3], r[4] / 1e6, r[5] / 1e6, r[6]))
        print("median: mount/curl-header %.1f, first-read/curl %.2f" %
              (statistics.median(r[3] for r in rows), statistics.median(r[6] for r in rows)))
        if md:
            print("\n## Remote fleet (bench/remote.py, issue 16)\n")
            print("%d concurrent mounts of one %d MiB safetensors over HTTP (nginx on "
                  "127.0.0.1), one shared cache, worker i reads layer 4i (32 MiB). Run: "
                  "`MFS_BUILD=build /usr/bin/python3 bench/remote.py --md`.\n" %
                  (WORKERS, size >> 20))
            print("- bytes fetched / model size: **%.4f** (%d bytes; the 8 layers are "
                  "%.4f of it)" % (fetched / size, fetched, WORKERS * LB / size))
            print("- first read / curl of the same range, 8 curls at once (median): **%.2f**" %
                  statistics.median(r[6] for r in rows))
            print("- mount time / curl of the header (median): **%.1f**\n" %
                  statistics.median(r[3] for r in rows))
            print("| worker | mount s | curl header s | ratio | read MB/s | curl MB/s | ratio |")
            print("|---|---|---|---|---|---|---|")
            for r in rows:
                print("| %d | %.3f | %.4f | %.1f | %.0f | %.0f | %.2f |" %
                      (r[0], r[1], r[2], r[3], r[4] / 1e6, r[5] / 1e6, r[6]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

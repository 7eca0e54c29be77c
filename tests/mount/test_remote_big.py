#!/usr/bin/python3
# mfs-test: heavy (a 1 GiB sparse fixture served by nginx)
"""tests/mount/test_remote_big.py — issue 16: what a remote mount fetches.

A >= 1 GiB safetensors (sparse, 260 tensors of 4 MiB) served by nginx on
127.0.0.1.  Mounting it and reading one 4 MiB tensor fetches, by nginx's
access log, at most 1.01 x (header + tensor) + 1 MiB; the tensor's bytes
are right; a second mount with the warm cache reading the same tensor
fetches nothing but validation requests; a small -o cache_size bound is
kept by eviction.
"""
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from mfstest import T, tensor_dirs  # noqa: E402
from remotepeers import Nginx  # noqa: E402

N, TB = 260, 4 << 20


def write_big(path, pick, payload):
    hdr = {}
    for i in range(N):
        hdr["layers.%03d.weight" % i] = {"dtype": "F32", "shape": [TB // 4],
                                         "data_offsets": [i * TB, (i + 1) * TB]}
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.truncate(8 + len(h) + N * TB)
        f.seek(8 + len(h) + pick * TB)
        f.write(payload)
        rng = np.random.default_rng(4)      # incompressible layers for the cache bound
        for i in (1, 2, 3, 4, 5):
            f.seek(8 + len(h) + i * TB)
            f.write(rng.bytes(TB))
    return 8 + len(h)


def tdir(mnt, name):
    """The tensor directory whose `name` file says `name`."""
    for d in tensor_dirs(mnt):
        if open(os.path.join(d, "name")).read().rstrip("\n") == name:
            return d
    raise RuntimeError("no tensor " + name)


def du(d):
    return sum(os.path.getsize(os.path.join(p, f)) for p, _, fs in os.walk(d) for f in fs)


def main():
    t = T()
    srv = os.path.join(t.tmp, "srv")
    os.makedirs(srv)
    pick = 137
    payload = np.random.default_rng(3).bytes(TB)
    header = write_big(os.path.join(srv, "big.safetensors"), pick, payload)
    size = os.path.getsize(os.path.join(srv, "big.safetensors"))
    t.check("fixture is >= 1 GiB (%d bytes)" % size, size >= 1 << 30)
    cache = os.path.join(t.tmp, "cache")
    name = "layers.%03d.weight" % pick
    with Nginx(srv) as web:
        with t.mount(web.url("big.safetensors"), "-o", "cache=" + cache) as m:
            got = open(os.path.join(tdir(m, name), "data"), "rb").read()
        fetched = web.body_bytes()
        bound = 1.01 * (header + TB) + (1 << 20)
        t.eq("cold: the tensor's bytes", payload, got)
        t.check("cold: fetched %d bytes <= %d (1.01 x (header %d + tensor %d) + 1 MiB), "
                "%d requests" % (fetched, bound, header, TB, len(web.log())), fetched <= bound,
                web.log()[:8])
        web.clear_log()
        with t.mount(web.url("big.safetensors"), "-o", "cache=" + cache) as m:
            got = open(os.path.join(tdir(m, name), "data"), "rb").read()
        log = web.log()
        t.eq("warm: the tensor's bytes", payload, got)
        t.check("warm: only validation requests (%d, all 304), no body bytes" % len(log),
                log and all(r["status"] == 304 for r in log) and web.body_bytes() == 0, log[:8])
        small = os.path.join(t.tmp, "small")
        with t.mount(web.url("big.safetensors"), "-o", "cache=" + small,
                     "-o", "cache_size=6M") as m:
            for i in (1, 2, 3, 4, 5):
                open(os.path.join(tdir(m, "layers.%03d.weight" % i), "data"), "rb").read()
        t.check("cache_size=6M: the cache stays within the bound (%d bytes)" % du(small),
                du(small) <= (6 << 20) + (1 << 20))
    t.done()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""tests/mount/test_remote_pack.py — issue 16: packs over URLs.

nginx (tests/remotepeers.py, on 127.0.0.1) serves `modelfs pack` packs of
one model of every kind (tests/remotefixtures.py).  Checked:
  - every kind's pack mounts from its URL, read-only, with the tree and
    every tensor of the local plain mount, plus meta/pack/ with the values
    of the local pack mount;
  - writes fail with EROFS, -o rw is refused with one line;
  - `modelfs info URL.mfs` reads the model inside; `modelfs verify` and
    `unpack` of a URL.mfs work as for a local pack;
  - two kinds' packs mount from s3:// (s3rver behind the SigV4 check) as
    the plain mount;
  - lazy: in a pack of a 32 MiB model, mounting and reading one small
    tensor and 4 KiB in the middle of the big one fetch (nginx's access log)
    under a tenth of the pack, and the bytes are the original ones;
  - a truncated remote pack, one cut in half and one of 30 bytes fail the
    mount, and modelfs verify, with one line naming the URL.
"""
import errno
import os
import struct
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from mfstest import MODELFS, MOUNT_MODELFS, T, is_mounted, umount  # noqa: E402
import remotefixtures as rf  # noqa: E402
from remotepeers import S3, Nginx  # noqa: E402


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300, **kw)


def pack(t, model):
    r = run(MODELFS, "pack", model)
    if r.returncode != 0:
        raise RuntimeError("modelfs pack %s: %s" % (model, r.stderr.strip()))
    return model + ".mfs"


def mount_fails(t, what, url, *opts, expect=None):
    mnt = os.path.join(t.tmp, "failmnt")
    os.makedirs(mnt, exist_ok=True)
    r = subprocess.run([MOUNT_MODELFS, url, mnt] + list(opts), capture_output=True, text=True,
                       timeout=120)
    lines = r.stderr.strip().splitlines()
    mounted = is_mounted(mnt)
    if r.returncode == 0 or mounted:
        umount(mnt)
    t.check(what, r.returncode != 0 and len(lines) == 1 and not mounted and
            url in lines[0] and (expect is None or expect in lines[0]),
            "rc %d, stderr %r" % (r.returncode, r.stderr))


def split_meta_pack(files):
    """(files without meta/pack/, {name: bytes} of meta/pack/)."""
    rest, mp = {}, {}
    for k, v in files.items():
        if k.startswith("meta/pack/"):
            mp[k[len("meta/pack/"):]] = v
        else:
            rest[k] = v
    return rest, mp


def compare_kind(t, kind, plain, local_pack, remote_pack):
    lf, ld = rf.tree(plain)
    pf, _ = rf.tree(local_pack)
    rf_, rd = rf.tree(remote_pack)
    rest, meta = split_meta_pack(rf_)
    _, lmeta = split_meta_pack(pf)
    rd = {d for d in rd if d not in ("meta/pack",)}
    t.eq(kind + ": the remote pack shows the plain mount's directories (and meta/pack)",
         sorted(ld), sorted(rd))
    t.eq(kind + ": the remote pack shows the plain mount's files", sorted(lf), sorted(rest))
    bad = [k for k in lf if k in rest and lf[k] != rest[k] and not rf.differs_by_place(k)]
    n_data = sum(1 for k in lf if os.path.basename(k) == "data")
    t.check(kind + ": every file (%d, %d tensors) of the remote pack equals the plain mount's"
            % (len(lf), n_data), not bad and n_data > 0, "differ: %s" % bad[:5])
    t.check(kind + ": meta/pack/ of the remote pack (%d entries) equals the local pack mount's"
            % len(meta), meta and meta == lmeta,
            "remote %r, local %r" % (sorted(meta), sorted(lmeta)))


def lazy(t, srv, web):
    """A 32 MiB model's pack: mount + one small tensor + 4 KiB of the big one."""
    rng = np.random.default_rng(16)
    d = os.path.join(srv, "big")
    os.makedirs(d)
    model = os.path.join(d, "model.safetensors")
    n = 8 << 20         # 32 MiB of fp32 noise: it hardly compresses
    big = rng.normal(0, 0.02, n).astype(np.float32)
    small = np.arange(1000, dtype=np.float32)
    rf.st_write(model, [("big", big), ("small", small)])
    pk = pack(t, model)
    size = os.path.getsize(pk)
    raw = open(model, "rb").read()
    hlen = struct.unpack("<Q", raw[:8])[0] + 8
    cache = os.path.join(t.tmp, "lazy-cache")
    web.clear_log()
    with t.mount(web.url("big/model.safetensors.mfs"), "-o", "cache=" + cache) as m:
        at_mount = web.body_bytes()
        got_small = open(os.path.join(m, "weights", "small", "data"), "rb").read()
        with open(os.path.join(m, "weights", "big", "data"), "rb") as f:
            f.seek(20 << 20)
            piece = f.read(4096)
        fetched = web.body_bytes()
        before_change = web.log()
        # The pack changes on the server under the mount: a chunk not read
        # yet fails with EIO (If-Match, 412), never bytes of the new pack.
        time.sleep(1.1)         # a new Last-Modified, so a new ETag
        r = run(MODELFS, "pack", model, "-o", pk + ".new.mfs", "--level", "1")
        os.replace(pk + ".new.mfs", pk)
        try:
            with open(os.path.join(m, "weights", "big", "data"), "rb") as f:
                f.seek(5 << 20)
                f.read(4096)
            t.not_ok("lazy: after the pack changed on the server, an unread chunk fails",
                     "the read succeeded (repack: %s)" % r.stderr.strip())
        except OSError as e:
            t.check("lazy: after the pack changed on the server, an unread chunk fails with "
                    "EIO, the server having answered 412 to its If-Match",
                    e.errno == errno.EIO and any(q["status"] == 412 for q in web.log()),
                    "%s; %s" % (e, web.log()[len(before_change):]))
    t.eq("lazy: the small tensor read from the remote pack is the original", small.tobytes(),
         got_small)
    t.check("lazy: 4 KiB in the middle of the big tensor are the original bytes",
            piece == raw[hlen + (20 << 20):hlen + (20 << 20) + 4096])
    t.check("lazy: mount + one small tensor + 4 KiB fetch %d bytes (%d at mount), under a "
            "tenth of the %d-byte pack" % (fetched, at_mount, size),
            0 < fetched < size // 10, fetched)
    ranged = [r for r in before_change if r["uri"].endswith(".mfs")]
    t.check("lazy: every request for the pack is a range request (%d requests)" % len(ranged),
            ranged and all(r["range"].startswith("bytes=") and r["status"] == 206
                           for r in ranged), ranged[:4])
    return pk


def truncated(t, srv, web, good):
    data = open(good, "rb").read()
    d = os.path.join(srv, "trunc")
    os.makedirs(d)
    for name, cut in (("short.safetensors.mfs", data[:len(data) - 100]),
                      ("half.safetensors.mfs", data[:len(data) // 2]),
                      ("tiny.safetensors.mfs", data[:30])):
        with open(os.path.join(d, name), "wb") as f:
            f.write(cut)
        mount_fails(t, "a remote pack cut to %d of %d bytes fails the mount with one line "
                    "naming the URL" % (len(cut), len(data)), web.url("trunc/" + name),
                    "-o", "cache=" + os.path.join(t.tmp, "trunc-cache"), expect="truncated")
        r = run(MODELFS, "verify", web.url("trunc/" + name))
        lines = r.stderr.strip().splitlines()
        t.check("modelfs verify of the remote pack cut to %d bytes fails with one line"
                % len(cut), r.returncode == 1 and len(lines) == 1 and "truncated" in lines[0]
                and web.url("trunc/" + name) in lines[0], r.stderr)


def s3_packs(t, srv, packs, kinds):
    """Two kinds' packs from s3:// through s3rver behind the SigV4 check."""
    with S3() as s3:
        for kind in ("safetensors sharded", "gguf"):
            key = os.path.relpath(packs[kind], srv)
            s3.put(key, packs[kind])
        opts = ["-o", "s3_endpoint=" + s3.endpoint(), "-o",
                "cache=" + os.path.join(t.tmp, "s3-cache")]
        for kind in ("safetensors sharded", "gguf"):
            url = "s3://%s/%s" % (s3.bucket, os.path.relpath(packs[kind], srv))
            mnt = os.path.join(t.tmp, "s3mnt-" + kind.replace(" ", "-"))
            os.makedirs(mnt)
            r = subprocess.run([MOUNT_MODELFS, url, mnt] + opts, capture_output=True,
                               text=True, env=s3.env(), timeout=120)
            if not t.check(kind + ": the pack mounts from S3", r.returncode == 0, r.stderr):
                continue
            try:
                with t.mount(os.path.join(srv, kinds[kind]), "-o", "ro") as plain:
                    lf, _ = rf.tree(plain)
                    rest, meta = split_meta_pack(rf.tree(mnt)[0])
                    bad = [k for k in lf if lf[k] != rest.get(k) and not rf.differs_by_place(k)]
                    t.check(kind + ": every file (%d) of the S3 pack mount equals the plain "
                            "mount's, plus meta/pack/" % len(lf),
                            not bad and sorted(lf) == sorted(rest) and meta, bad[:5])
            finally:
                umount(mnt)
        t.check("S3: every request signed correctly (%d checked, one a mount at least)" % s3.signed_ok,
                s3.signed_ok >= 2 and s3.rejected == 0, "%d rejected" % s3.rejected)


def main():
    t = T()
    # Every child's default cache is inside the test's directory.
    os.environ["XDG_CACHE_HOME"] = os.path.join(t.tmp, "xdg")
    srv = os.path.join(t.tmp, "srv")
    os.makedirs(srv)
    kinds = rf.make_all(srv)
    packs = {}
    for kind, name in kinds.items():
        try:
            packs[kind] = pack(t, os.path.join(srv, name))
        except RuntimeError as e:
            t.not_ok(kind + ": modelfs pack", e)
    cache = os.path.join(t.tmp, "cache")
    env = dict(os.environ)
    with Nginx(srv) as web:
        for kind, pk in packs.items():
            url = web.url(os.path.relpath(pk, srv))
            try:
                with t.mount(os.path.join(srv, kinds[kind]), "-o", "ro") as plain, \
                        t.mount(pk) as lp, t.mount(url, "-o", "cache=" + cache) as rp:
                    compare_kind(t, kind, plain, lp, rp)
                    if kind == "safetensors single":
                        try:
                            with open(os.path.join(rp, "meta", "props", "new"), "w") as f:
                                f.write("x\n")
                            t.not_ok("a write to a remote pack mount fails", "it succeeded")
                        except OSError as e:
                            t.eq("a write to a remote pack mount fails with EROFS",
                                 errno.EROFS, e.errno)
            except Exception as e:  # noqa: BLE001
                t.not_ok(kind + ": the pack mounts over HTTP", e)

        url = web.url(os.path.relpath(packs["torch"], srv))
        r = run(MODELFS, "info", url, env=env)
        t.check("modelfs info URL.mfs reads the model in the pack",
                r.returncode == 0 and "fc.weight" in r.stdout and "format: torch" in r.stdout,
                r.stderr + r.stdout[:300])
        mount_fails(t, "-o rw on a remote pack is refused with one line", url, "-o", "rw",
                    expect="read-only")

        # verify and unpack read the pack itself through the URL
        pk = packs["onnx external data"]
        url = web.url(os.path.relpath(pk, srv))
        r = run(MODELFS, "verify", url, env=env)
        t.check("modelfs verify URL.mfs passes", r.returncode == 0 and "ok:" in r.stdout,
                r.stdout + r.stderr)
        dest = os.path.join(t.tmp, "unpacked")
        r = run(MODELFS, "unpack", url, "-o", dest, env=env)
        src_dir = os.path.dirname(pk)
        names = ["model.onnx", "weights/model.bin"]
        same = r.returncode == 0 and all(
            os.path.exists(os.path.join(dest, n)) and
            open(os.path.join(dest, n), "rb").read() == open(os.path.join(src_dir, n), "rb").read()
            for n in names)
        t.check("modelfs unpack URL.mfs restores both files byte-identical", same, r.stderr)

        start = time.time()
        try:
            lazy(t, srv, web)
        except Exception as e:  # noqa: BLE001
            t.not_ok("lazy reads of a remote pack", e)
        truncated(t, srv, web, packs["safetensors single"])
        print("# %.1f s for the lazy and truncated checks" % (time.time() - start))
    try:
        s3_packs(t, srv, packs, kinds)
    except Exception as e:  # noqa: BLE001
        t.not_ok("packs from S3", e)
    t.done()


if __name__ == "__main__":
    main()

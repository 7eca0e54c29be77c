#!/usr/bin/python3
"""tests/mount/test_remote.py — issue 16: models mounted over HTTP.

nginx (started here on 127.0.0.1, tests/remotepeers.py) serves a directory
with one model of every kind (tests/remotefixtures.py).  Checked:
  - every kind (ONNX inline and with external data, safetensors single and
    sharded through the index.json URL, torch, GGUF) mounts from its URL,
    read-only, and every file of the tree equals the local mount's;
  - https (nginx with a certificate made here): refused untrusted, mounts
    with -o ca_file=;
  - writes fail with EROFS; -o rw is refused with one line;
  - ONNX Runtime loads the root model file from the remote mount;
  - `modelfs info URL` and `modelfs convert URL OUT` work;
  - metadata comes in few requests (a 300-tensor torch zip in <= 40);
  - 404 and 403 fail the mount at once with one line naming the URL;
  - an external data location with '..' is refused as it is locally;
  - cache: a second mount with a warm cache sends only validation requests
    (If-None-Match, answered 304) and no body bytes, and reads the same;
    an object changed on the server is never served from the old chunks,
    and the mount says it refetches.
"""
import errno
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from mfstest import MODELFS, MOUNT_MODELFS, SRC, T, is_mounted, umount  # noqa: E402
import remotefixtures as rf  # noqa: E402
from remotepeers import Nginx  # noqa: E402

ORT = os.path.join(SRC, "tests", "node", "ort_run.js")


def mount_fails(t, what, url, *opts, expect=None):
    mnt = os.path.join(t.tmp, "failmnt")
    os.makedirs(mnt, exist_ok=True)
    start = time.time()
    r = subprocess.run([MOUNT_MODELFS, url, mnt] + list(opts), capture_output=True, text=True,
                       timeout=60)
    lines = r.stderr.strip().splitlines()
    if r.returncode == 0:
        umount(mnt)
    ok = r.returncode != 0 and len(lines) == 1 and not is_mounted(mnt) and \
        (expect is None or expect in lines[0])
    t.check(what, ok, "rc %d, stderr %r" % (r.returncode, r.stderr))
    return time.time() - start


def ort_run(t, model, x):
    spec = os.path.join(t.tmp, "input.json")
    with open(spec, "w") as f:
        json.dump({"x": {"dims": list(x.shape), "type": "float32",
                         "data": x.reshape(-1).tolist()}}, f)
    r = subprocess.run(["node", ORT, model, spec], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return json.loads(r.stdout)


def main():
    t = T()
    srv = os.path.join(t.tmp, "srv")
    os.makedirs(srv)
    kinds = rf.make_all(srv)
    cache = os.path.join(t.tmp, "cache")
    env = dict(os.environ, XDG_CACHE_HOME=os.path.join(t.tmp, "xdg"))
    with Nginx(srv) as web:
        for kind, name in kinds.items():
            url = web.url(name)
            try:
                with t.mount(os.path.join(srv, name), "-o", "ro") as lm, \
                        t.mount(url, "-o", "cache=" + cache) as rm:
                    rf.compare(t, kind, lm, rm)
                    if kind == "safetensors single":
                        p = os.path.join(rm, "single.safetensors")
                        t.eq("root model file byte-identical over HTTP",
                             open(os.path.join(srv, name), "rb").read(), open(p, "rb").read())
                        try:
                            with open(os.path.join(rm, "meta", "props", "new"), "w") as f:
                                f.write("x\n")
                            t.not_ok("write to a remote mount fails", "it succeeded")
                        except OSError as e:
                            t.eq("write to a remote mount fails with EROFS", errno.EROFS,
                                 e.errno)
                    if kind == "onnx inline":
                        x = np.random.default_rng(2).standard_normal((5, 10)).astype(np.float32)
                        want = ort_run(t, os.path.join(srv, name), x)
                        got = ort_run(t, os.path.join(rm, name), x)
                        t.eq("ONNX Runtime loads the root file from the remote mount", want, got)
            except Exception as e:  # noqa: BLE001
                t.not_ok(kind + " mounts over HTTP", e)

        # metadata in a few requests: 300 small tensors, a zip local header each
        import torch
        torch.save({"t%d" % i: torch.full((1000,), float(i)) for i in range(300)},
                   os.path.join(srv, "many.pt"))
        web.clear_log()
        r = subprocess.run([MODELFS, "info", web.url("many.pt")], capture_output=True,
                           text=True, env=dict(env, XDG_CACHE_HOME=os.path.join(t.tmp, "x2")),
                           timeout=60)
        n = len(web.log())
        t.check("torch checkpoint of 300 tensors opened in %d requests (<= 40)" % n,
                r.returncode == 0 and n <= 40, r.stderr)

        # info and convert
        r = subprocess.run([MODELFS, "info", web.url(kinds["torch"])], capture_output=True,
                           text=True, env=env, timeout=60)
        t.check("modelfs info URL", r.returncode == 0 and "fc.weight" in r.stdout and
                "format: torch" in r.stdout, r.stderr + r.stdout[:300])
        out = os.path.join(t.tmp, "conv.safetensors")
        r = subprocess.run([MODELFS, "convert", web.url(kinds["torch"]), out],
                           capture_output=True, text=True, env=env, timeout=60)
        ok = r.returncode == 0
        if ok:
            with t.mount(out, "-o", "ro") as a, t.mount(os.path.join(srv, "model.pt"), "-o",
                                                        "ro") as b:
                ta = {os.path.relpath(d, a): open(d + "/data", "rb").read()
                      for d in __import__("mfstest").tensor_dirs(a)}
                tb = {os.path.relpath(d, b): open(d + "/data", "rb").read()
                      for d in __import__("mfstest").tensor_dirs(b)}
                ok = ta == tb and len(ta) == 3
        t.check("modelfs convert URL OUT gives the same tensors", ok, r.stderr)

        # refusals
        mount_fails(t, "-o rw is refused for a URL", web.url(kinds["gguf"]), "-o", "rw",
                    expect="read-only")
        took = mount_fails(t, "404 fails the mount with one line naming the URL",
                           web.url("missing.safetensors"), "-o", "cache=" + cache,
                           expect="missing.safetensors")
        t.check("404 fails at once (no retries)", took < 10, "%.1f s" % took)
        os.makedirs(os.path.join(srv, "forbidden"), exist_ok=True)
        shutil.copy(os.path.join(srv, "single.safetensors"),
                    os.path.join(srv, "forbidden", "m.safetensors"))
        mount_fails(t, "403 fails the mount with one line", web.url("forbidden/m.safetensors"),
                    "-o", "cache=" + cache, expect="403")
        # an external data location that climbs out is refused as locally
        import onnx
        m = onnx.load(os.path.join(srv, "ext", "model.onnx"), load_external_data=False)
        for init in m.graph.initializer:
            for kv in init.external_data:
                if kv.key == "location":
                    kv.value = "../single.safetensors"
        onnx.save_model(m, os.path.join(srv, "ext", "climb.onnx"))
        mount_fails(t, "external data location with '..' refused over HTTP",
                    web.url("ext/climb.onnx"), "-o", "cache=" + cache, expect="..")

        # warm cache: only validation requests
        name = kinds["safetensors sharded"]
        wc = os.path.join(t.tmp, "warm")
        with t.mount(web.url(name), "-o", "cache=" + wc) as rm:
            first, _ = rf.tree(rm)
        web.clear_log()
        with t.mount(web.url(name), "-o", "cache=" + wc) as rm:
            second, _ = rf.tree(rm)
        log = web.log()
        for tr in (first, second):
            tr.pop(".modelfs/status", None)      # names the daemon's pid
        t.check("warm mount reads the same tree", first == second,
                [k for k in first if first[k] != second.get(k)][:5])
        t.check("warm mount: every request a validation answered 304 (%d requests)" % len(log),
                log and all(r["status"] == 304 for r in log), log[:6])
        t.eq("warm mount: no body bytes fetched", 0, sum(r["body"] for r in log))

        # the object changes on the server: never the old chunks
        shard = os.path.join(srv, "sharded", "model-00002-of-00003.safetensors")
        data = bytearray(open(shard, "rb").read())
        data[-4:] = b"\x01\x02\x03\x04"
        time.sleep(1.1)                 # a new Last-Modified, so a new ETag
        with open(shard, "wb") as f:
            f.write(data)
        web.clear_log()
        rm = os.path.join(t.tmp, "third")
        os.makedirs(rm)
        r = subprocess.run([MOUNT_MODELFS, web.url(name), rm, "-o", "cache=" + wc],
                           capture_output=True, text=True, timeout=60)
        t.check("changed object: the mount says the cached copy is out of date",
                r.returncode == 0 and "changed on the server since it was cached" in r.stderr
                and "00002" in r.stderr, r.stderr)
        try:
            third, _ = rf.tree(rm)
        finally:
            umount(rm)
        changed = [k for k in first if first[k] != third.get(k)]
        t.check("changed object: the new bytes are served, not the cached ones",
                any(k.endswith("data") for k in changed) and
                all("layers.1" in k or "layers/1" in k or os.path.basename(k) != "data"
                    for k in changed), changed[:6])
        t.check("changed object: its shard fetched again (206)",
                any(r["status"] == 206 and "00002" in r["uri"] for r in web.log()),
                web.log()[:6])
    # https: nginx with a self-signed certificate
    with Nginx(srv, tls=True) as web:
        url = web.url(kinds["safetensors single"])
        mnt = os.path.join(t.tmp, "tlsfail")
        os.makedirs(mnt)
        r = subprocess.run([MOUNT_MODELFS, url, mnt, "-o", "cache=none"], capture_output=True,
                           text=True, timeout=60)
        if r.returncode == 0:
            umount(mnt)
        t.check("https: an untrusted certificate fails the mount with one line",
                r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and
                url in r.stderr, r.stderr)
        try:
            with t.mount(os.path.join(srv, kinds["safetensors single"]), "-o", "ro") as lm, \
                    t.mount(url, "-o", "cache=none", "-o", "ca_file=" + web.cert) as rm:
                rf.compare(t, "https (ca_file=)", lm, rm)
        except Exception as e:  # noqa: BLE001
            t.not_ok("https mount with ca_file=", e)
    t.done()


if __name__ == "__main__":
    main()

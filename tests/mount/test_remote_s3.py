#!/usr/bin/python3
"""tests/mount/test_remote_s3.py — issue 16: models mounted from S3.

s3rver (npm, in tests/node) holds one model of every kind
(tests/remotefixtures.py); a front started here checks every request's
SigV4 signature (libcurl's signing, with a session token) before passing
it on, since s3rver does not.  Checked:
  - every kind mounts from s3://BUCKET/KEY with -o s3_endpoint=, and every
    file of the tree equals the local mount's;
  - every request the mount made was signed correctly (none rejected);
  - wrong credentials fail the mount at once with one line (403), and
    the secret appears neither in that line nor on the daemon's argv;
  - no credentials: one line saying so;
  - `modelfs info s3://...` with the endpoint from AWS_ENDPOINT_URL_S3.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from mfstest import MODELFS, MOUNT_MODELFS, T, is_mounted, umount  # noqa: E402
import remotefixtures as rf  # noqa: E402
from remotepeers import S3  # noqa: E402


def mount(t, url, env, *opts):
    mnt = os.path.join(t.tmp, "m%d" % len(os.listdir(t.tmp)))
    os.makedirs(mnt)
    r = subprocess.run([MOUNT_MODELFS, url, mnt] + list(opts), capture_output=True, text=True,
                       env=env, timeout=120)
    return r, mnt


def main():
    t = T()
    srv = os.path.join(t.tmp, "srv")
    os.makedirs(srv)
    kinds = rf.make_all(srv, seed=5)
    # one past the first request's 256 KiB, so tensor reads are range
    # requests of their own (with If-Match), signed too
    import numpy as np
    rf.st_write(os.path.join(srv, "big.safetensors"),
                [("w%d" % i, np.random.default_rng(i).standard_normal((256, 256))
                  .astype(np.float32)) for i in range(4)])
    kinds["safetensors 1 MiB"] = "big.safetensors"
    cache = os.path.join(t.tmp, "cache")
    with S3(token="session/token+with=odd chars") as s3:
        for dp, dn, fn in os.walk(srv):
            for f in fn:
                p = os.path.join(dp, f)
                s3.put(os.path.relpath(p, srv), p)
        opts = ["-o", "s3_endpoint=" + s3.endpoint(), "-o", "cache=" + cache]
        for kind, name in kinds.items():
            url = "s3://%s/%s" % (s3.bucket, name)
            r, rm = mount(t, url, s3.env(), *opts)
            if not t.check(kind + " mounts from S3", r.returncode == 0, r.stderr):
                continue
            try:
                with t.mount(os.path.join(srv, name), "-o", "ro") as lm:
                    rf.compare(t, kind + " (S3)", lm, rm)
            finally:
                umount(rm)
        t.check("every request signed with SigV4 correctly (%d checked, ranges past the "
                "head among them)" % s3.signed_ok,
                s3.signed_ok > 10 and s3.rejected == 0, "%d rejected" % s3.rejected)

        r = subprocess.run([MODELFS, "info", "s3://%s/%s" % (s3.bucket, kinds["torch"])],
                           capture_output=True, text=True, timeout=60,
                           env=dict(s3.env(), AWS_ENDPOINT_URL_S3=s3.endpoint(),
                                    XDG_CACHE_HOME=os.path.join(t.tmp, "xdg")))
        t.check("modelfs info s3://... (endpoint from AWS_ENDPOINT_URL_S3)",
                r.returncode == 0 and "fc.weight" in r.stdout, r.stderr)
        bad = dict(s3.env(), AWS_SECRET_ACCESS_KEY="wrong-secret-123")
        before = s3.rejected
        r, mnt = mount(t, "s3://%s/%s" % (s3.bucket, kinds["gguf"]), bad, *opts)
        lines = r.stderr.strip().splitlines()
        t.check("wrong secret: the mount fails with one line naming 403",
                r.returncode != 0 and len(lines) == 1 and "403" in lines[0] and
                not is_mounted(mnt), r.stderr)
        t.check("wrong secret: refused by the signature check", s3.rejected > before)
        t.check("the secret is not in the message", "wrong-secret-123" not in r.stderr)
        none = {k: v for k, v in s3.env().items() if not k.startswith("AWS_")}
        r, mnt = mount(t, "s3://%s/%s" % (s3.bucket, kinds["gguf"]), none, *opts)
        t.check("no credentials: one line saying so",
                r.returncode != 0 and "credentials" in r.stderr and
                len(r.stderr.strip().splitlines()) == 1, r.stderr)
        r, mnt = mount(t, "s3://%s" % s3.bucket, s3.env(), *opts)
        t.check("s3://BUCKET without a key: one line", r.returncode != 0 and
                "s3://BUCKET/KEY" in r.stderr, r.stderr)
    t.done()


if __name__ == "__main__":
    main()

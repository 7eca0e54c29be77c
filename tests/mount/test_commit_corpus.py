#!/usr/bin/python3
"""Issue 4, acceptance bullet 1 ("For every model in
/usr/share/libonnx-testdata/data ..."): for every model in the libonnx-testdata
corpus (copied to a temp dir), a commit with nothing staged, and a commit
after rewriting one tensor's `data` with its own bytes (`cp data X && cp X
data`), each leave the file byte-identical (sha256).  Each model is mounted
once: `modelfs commit` with nothing staged, sha256; then for models with a
writable tensor the rewrite, `modelfs commit`, unmount, sha256."""
import glob
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from mfstest import T, read, tensor_dirs  # noqa: E402
from txnacc import commit, mounted, sha256_file, side_files, why  # noqa: E402

CORPUS = os.environ.get("MFS_CORPUS", "/usr/share/libonnx-testdata/data")


def writable_candidates(mnt):
    """Tensor dirs under weights/ that should be writable: numeric, non-empty
    first (sparse-initializer parts are left out)."""
    wdir = os.path.join(mnt, "weights")
    if not os.path.isdir(wdir):
        return []
    out = []
    for d in tensor_dirs(wdir):
        if os.path.basename(d) in ("values", "indices"):
            continue
        dtype = read(os.path.join(d, "dtype")).strip()
        if dtype == "string":
            continue
        out.append((os.path.getsize(os.path.join(d, "data")) == 0, d))
    return [d for _, d in sorted(out)]


def main():
    t = T()
    models = sorted(glob.glob(os.path.join(CORPUS, "**", "*.onnx"), recursive=True))
    # The sanitizer pass of tests/run takes every Nth model (the normal pass
    # takes them all): the daemon runs 5-10x slower under ASan.
    step = int(os.environ.get("MFS_CORPUS_STEP", "1"))
    all_models, models = models, models[::step]
    t.check("corpus present (%d models under %s; %d taken)" % (len(all_models), CORPUS, len(models)),
            len(all_models) > 1000)
    work = os.path.join(t.tmp, "w")
    scratch = os.path.join(t.tmp, "x")
    n_mounted = n_empty_ok = n_rewritten = n_no_tensor = 0
    mount_fail, empty_bad, rewrite_bad, refused, leftovers = [], [], [], [], []
    for i, src in enumerate(models):
        rel = os.path.relpath(src, CORPUS)
        os.makedirs(work, exist_ok=True)
        path = os.path.join(work, os.path.basename(src))
        shutil.copyfile(src, path)
        before = sha256_file(path)
        try:
            with mounted(path, os.path.join(t.tmp, "mnt")) as dm:
                mnt = dm.mnt
                n_mounted += 1
                r = commit(mnt)
                if r.returncode != 0:
                    empty_bad.append("%s: commit with nothing staged failed: %s" % (rel, why(r)))
                elif sha256_file(path) != before:
                    empty_bad.append("%s: commit with nothing staged changed the file" % rel)
                else:
                    n_empty_ok += 1
                done = None
                for d in writable_candidates(mnt)[:3]:
                    data = os.path.join(d, "data")
                    r1 = subprocess.run(["cp", data, scratch], capture_output=True, text=True)
                    r2 = subprocess.run(["cp", scratch, data], capture_output=True, text=True)
                    if r1.returncode == 0 and r2.returncode == 0:
                        done = d
                        break
                    refused.append("%s: cp onto %s: %s" % (rel, os.path.relpath(data, mnt),
                                                           (r1.stderr + r2.stderr).strip()))
                if done is None:
                    n_no_tensor += 1
                else:
                    r = commit(mnt)
                    if r.returncode != 0:
                        rewrite_bad.append("%s: commit after rewriting %s failed: %s"
                                           % (rel, os.path.relpath(done, mnt), why(r)))
        except (RuntimeError, OSError) as e:
            mount_fail.append("%s: %s" % (rel, e))
            shutil.rmtree(work, ignore_errors=True)
            continue
        after = sha256_file(path)
        if done is not None:
            if after != before:
                rewrite_bad.append("%s: rewriting %s with its own bytes + commit + unmount "
                                   "changed the file" % (rel, os.path.relpath(done, mnt)))
            else:
                n_rewritten += 1
        elif after != before:
            empty_bad.append("%s: file changed after mount + commit + unmount" % rel)
        left = side_files(work, os.path.basename(path))
        if left:
            leftovers.append("%s: %s" % (rel, " ".join(left)))
        shutil.rmtree(work, ignore_errors=True)

    t.check("every corpus model mounts read-write (%d of %d)" % (n_mounted, len(models)),
            not mount_fail, "; ".join(mount_fail[:5]))
    t.check("commit with nothing staged keeps sha256: %d of %d models" % (n_empty_ok, n_mounted),
            not empty_bad and n_empty_ok == n_mounted, "; ".join(empty_bad[:5]))
    t.check("rewriting one tensor's data with its own bytes, commit, unmount keeps sha256: "
            "%d models (%d had no writable tensor)" % (n_rewritten, n_no_tensor),
            not rewrite_bad and n_rewritten > 0, "%d bad: %s" % (len(rewrite_bad),
                                                                "; ".join(rewrite_bad[:5])))
    t.check("no numeric initializer refused a same-bytes rewrite (%d refused)" % len(refused),
            not refused, "; ".join(refused[:5]))
    t.check("no journal, temp or redo file left beside the model after unmount",
            not leftovers, "; ".join(leftovers[:5]))
    t.done()


if __name__ == "__main__":
    main()

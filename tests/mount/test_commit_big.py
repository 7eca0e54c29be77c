#!/usr/bin/python3
# mfs-test: heavy (big fixtures, RSS bounds or kill storms; the normal pass runs it)
"""Issue 4, acceptance bullets 4 ("Staging a full rewrite of a 1 GiB tensor
keeps daemon RSS under 128 MiB") and 6 ("In-place commit of a same-size 4 MiB
tensor edit in a 1 GiB model writes under 3x the edited bytes"):

- a generated ONNX model of one 1 GiB float32 tensor (16384×16384, inline
  raw_data, file < 2 GiB) on disk under tests/out/ (or $MFS_BIG_DIR);
- staging a full rewrite of that tensor (`cp` of a 1 GiB file onto its
  `data`) keeps the daemon's RSS under 128 MiB (VmRSS and the high-water
  mark VmHWM of the foreground daemon), also while reading the staged tensor
  back and while committing it; the committed tensor equals the new bytes;
- an in-place commit (`-o commit=inplace`: a same-size edit, patched into
  the model through a redo log) of a 4 MiB edit (`dd conv=notrunc`) writes under 3× the
  edited bytes (/proc/PID/io write_bytes delta of the daemon around the
  commit; wchar where the file system does not account write_bytes), status
  says `inplace`, and the file has exactly the edit;
- `modelfs commit` on a terminal (script(1)) shows "commit: X of 1.0 GiB
  written (R/s)" while the 1 GiB commit runs, and prints nothing without one;
- an in-place commit of a 512 MiB edit killed (-9) while it patches the
  model is finished by `modelfs recover`, which on a terminal shows
  "recover: X of 512.0 MiB applied (R/s)" and without one prints only its
  one-line result; the model then holds the whole edit and nothing is left
  beside it.
Bytes and memory only, never times.  The big files are deleted at the end.
"""
import hashlib
import json
import re
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from mfstest import T  # noqa: E402
from mfstest import MODELFS  # noqa: E402
from txnacc import (Daemon, MiB, commit, proc_io, side_files, status,  # noqa: E402
                    why)
import make_big_onnx  # noqa: E402

GiB = 1 << 30
RSS_LIMIT = 128 * MiB


def range_sha(path, off, n):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(off)
        while n:
            b = f.read(min(n, 8 * MiB))
            if not b:
                break
            h.update(b)
            n -= len(b)
    return h.hexdigest()


def body(t, d):
    path = os.path.join(d, "big1g.onnx")
    newbin = os.path.join(d, "new.bin")
    editbin = os.path.join(d, "edit.bin")
    dim = 16384
    r = subprocess.run([sys.executable, make_big_onnx.__file__, path, "--layers", "1",
                        "--dim", str(dim)], capture_output=True, text=True)
    if not t.check("generate the 1 GiB model", r.returncode == 0, r.stderr):
        return
    info = json.loads(r.stdout)
    size = info["size"]
    _, toff, tlen = info["tensors"][0]
    t.check("model is at least 1 GiB and under 2 GiB (%d bytes), one tensor of %d bytes"
            % (size, tlen), GiB <= size < 2 * GiB and tlen == GiB)
    head_sha = range_sha(path, 0, toff)

    # The new content, made in pieces (never 1 GiB in memory).
    rng = np.random.default_rng(4)
    h = hashlib.sha256()
    with open(newbin, "wb") as f:
        for _ in range(tlen // (16 * MiB)):
            b = rng.integers(0, 1 << 32, 4 * MiB, dtype=np.uint32)
            b &= np.uint32(0xBF7FFFFF)
            b = b.tobytes()
            h.update(b)
            f.write(b)
    new_sha = h.hexdigest()

    mnt = os.path.join(t.tmp, "mnt")
    dm = None
    try:
        dm = Daemon(path, mnt, "-o", "commit=inplace")
        data = os.path.join(mnt, "weights", "layers", "0", "weight", "data")
        rss0 = dm.rss()
        r = subprocess.run(["cp", newbin, data], capture_output=True, text=True)
        t.check("cp of a 1 GiB file onto the tensor's data", r.returncode == 0, r.stderr)
        rss, hwm = dm.rss(), dm.hwm()
        t.check("daemon RSS after staging the 1 GiB rewrite: %.1f MiB now, %.1f MiB peak "
                "(< 128 MiB; %.1f MiB before)" % (rss / MiB, hwm / MiB, rss0 / MiB),
                hwm < RSS_LIMIT)
        t.check("status lists the staged tensor", "layers.0.weight" in status(mnt), status(mnt))
        t.eq("the staged 1 GiB reads back through the mount", new_sha, range_sha(data, 0, tlen))
        hwm = dm.hwm()
        t.check("daemon peak RSS after reading the staged tensor back: %.1f MiB (< 128 MiB)"
                % (hwm / MiB), hwm < RSS_LIMIT)
        io0 = proc_io(dm.pid)
        # On a terminal (script(1) gives it one) `modelfs commit` shows progress.
        r = subprocess.run(["script", "-qec", "%s commit %s" % (MODELFS, mnt), "/dev/null"],
                           capture_output=True, text=True, timeout=600)
        io1 = proc_io(dm.pid)
        t.check("modelfs commit of the 1 GiB rewrite", r.returncode == 0, why(r))
        shown = re.findall(r"commit: ([0-9.]+ [KMG]?i?B) of ([0-9.]+ [KMG]?i?B) written \(", r.stdout)
        t.check("on a terminal it showed progress (%d updates: %s ... %s)"
                % (len(shown), shown[0] if shown else None, shown[-1] if shown else None),
                shown and all(total == "2.0 GiB" for _, total in shown), r.stdout[-300:])
        st = status(mnt)
        hwm = dm.hwm()
        t.check("daemon peak RSS through the 1 GiB commit: %.1f MiB (< 128 MiB)" % (hwm / MiB),
                hwm < RSS_LIMIT)
        print("# 1 GiB commit: %s; write_bytes %d, wchar %d"
              % ([ln for ln in st.splitlines() if ln.startswith("last commit")],
                 io1["write_bytes"] - io0["write_bytes"], io1["wchar"] - io0["wchar"]))
        t.eq("file size unchanged by the same-size rewrite", size, os.path.getsize(path))
        t.eq("committed tensor equals the new 1 GiB", new_sha, range_sha(path, toff, tlen))
        t.eq("bytes before the tensor unchanged", head_sha, range_sha(path, 0, toff))
        os.unlink(newbin)

        # A same-size 4 MiB edit in the middle, committed in place.
        edit_off, edit_len = 300 * MiB + 4096 * 3, 4 * MiB
        pre_sha = range_sha(path, 0, toff + edit_off)
        post_sha = range_sha(path, toff + edit_off + edit_len, size - toff - edit_off - edit_len)
        edit = rng.integers(0, 1 << 32, MiB, dtype=np.uint32)
        edit &= np.uint32(0xBF7FFFFF)
        edit = edit.tobytes()
        with open(editbin, "wb") as f:
            f.write(edit)
        with open(path, "rb") as f:
            f.seek(toff + edit_off)
            t.check("the edit changes every 4-byte word",
                    bool(np.all(np.frombuffer(f.read(len(edit)), "<u4") !=
                                np.frombuffer(edit, "<u4"))))
        r = subprocess.run(["dd", "if=" + editbin, "of=" + data, "bs=4096",
                            "seek=%d" % (edit_off // 4096), "conv=notrunc", "status=none"],
                           capture_output=True, text=True)
        t.check("dd conv=notrunc of 4 MiB into the tensor", r.returncode == 0, r.stderr)
        t.eq("data size unchanged by dd conv=notrunc", tlen, os.path.getsize(data))
        io0 = proc_io(dm.pid)
        r = commit(mnt)
        io1 = proc_io(dm.pid)
        t.check("modelfs commit of the 4 MiB edit", r.returncode == 0, why(r))
        t.eq("without a terminal it prints nothing", "", r.stderr + r.stdout)
        st = status(mnt)
        last = [ln for ln in st.splitlines() if ln.startswith("last commit")]
        t.check("status says the commit ran in place", any("inplace" in ln for ln in last), st)
        wb = io1["write_bytes"] - io0["write_bytes"]
        what = "write_bytes"
        if wb == 0:
            wb, what = io1["wchar"] - io0["wchar"], "wchar"
        t.check("in-place commit of a 4 MiB edit wrote %d bytes (%s) = %.2f× the edit (< 3×)"
                % (wb, what, wb / len(edit)), 0 < wb < 3 * len(edit))
        t.eq("file size unchanged", size, os.path.getsize(path))
        with open(path, "rb") as f:
            f.seek(toff + edit_off)
            t.check("the file holds the edit at its offset", f.read(len(edit)) == edit)
        t.check("every byte outside the edit unchanged",
                range_sha(path, 0, toff + edit_off) == pre_sha and
                range_sha(path, toff + edit_off + edit_len,
                          size - toff - edit_off - edit_len) == post_sha)
        with open(data, "rb") as f:
            f.seek(edit_off)
            t.check("the mount shows the edit after the commit", f.read(len(edit)) == edit)
        hwm = dm.hwm()
        t.check("daemon peak RSS over the whole test: %.1f MiB (< 128 MiB)" % (hwm / MiB),
                hwm < RSS_LIMIT)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        t.not_ok("big commit test", e)
    finally:
        rc = dm.stop() if dm else None
        if dm:
            t.eq("daemon exit status after unmount", 0, rc)
        t.eq("no journal/temp/redo files left after unmount", [], side_files(d, "big1g.onnx"))
    for tty in (True, False):
        killed_inplace_then_recover(t, d, path, toff, tlen, rng, tty)


def progress(mnt):
    """(done, total) from .modelfs/progress, or None."""
    try:
        with open(os.path.join(mnt, ".modelfs", "progress")) as f:
            m = re.match(r"commit (\d+) (\d+)", f.read())
    except OSError:
        return None
    return (int(m.group(1)), int(m.group(2))) if m else None


def killed_inplace_then_recover(t, d, path, toff, tlen, rng, tty):
    """Kill the daemon while an in-place commit of 512 MiB patches the model,
    then finish it with `modelfs recover` (on a terminal or not)."""
    how = "on a terminal" if tty else "without a terminal"
    edit_off, edit_len = 128 * MiB, 512 * MiB
    editbin = os.path.join(d, "edit512.bin")
    h = hashlib.sha256()
    with open(editbin, "wb") as f:
        for _ in range(edit_len // (16 * MiB)):
            b = rng.integers(0, 1 << 32, 4 * MiB, dtype=np.uint32)
            b &= np.uint32(0xBF7FFFFF)
            b = b.tobytes()
            h.update(b)
            f.write(b)
    edit_sha = h.hexdigest()
    size = os.path.getsize(path)
    pre_sha = range_sha(path, 0, toff + edit_off)
    post_sha = range_sha(path, toff + edit_off + edit_len, size - toff - edit_off - edit_len)
    mnt = os.path.join(t.tmp, "mnt-kill")
    dm = Daemon(path, mnt, "-o", "commit=inplace")
    cp = None
    try:
        data = os.path.join(mnt, "weights", "layers", "0", "weight", "data")
        r = subprocess.run(["dd", "if=" + editbin, "of=" + data, "bs=1M",
                            "seek=%d" % (edit_off // MiB), "conv=notrunc", "status=none"],
                           capture_output=True, text=True)
        t.check("%s: dd of 512 MiB into the tensor" % how, r.returncode == 0, r.stderr)
        cp = subprocess.Popen([MODELFS, "commit", mnt], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        # In place, the progress counts the redo log (the first half) and then
        # the model: past half the log is marked committing and the model is
        # being patched.  Kill there.
        seen = None
        for _ in range(60000):
            pr = progress(mnt)
            if pr and pr[1] and pr[0] > pr[1] // 2 + 8 * MiB:
                seen = pr
                break
            if cp.poll() is not None:
                break
            time.sleep(0.001)
        dm.kill9()
        cp.wait(timeout=60)
        t.check("%s: daemon killed while patching the model (%s)" % (how, seen), seen is not None)
        t.check("%s: a redo log is left" % how,
                any("redo" in n for n in side_files(d, "big1g.onnx")), side_files(d, "big1g.onnx"))
        cmd = [MODELFS, "recover", path]
        if tty:
            r = subprocess.run(["script", "-qec", " ".join(cmd), "/dev/null"],
                               capture_output=True, text=True, timeout=600)
            shown = re.findall(r"recover: ([0-9.]+ [KMG]?i?B) of ([0-9.]+ [KMG]?i?B) applied \(",
                               r.stdout)
            t.check("modelfs recover %s exits 0" % how, r.returncode == 0, why(r))
            t.check("%s it showed progress (%d updates: %s ... %s)"
                    % (how, len(shown), shown[0] if shown else None, shown[-1] if shown else None),
                    shown and all(total == "512.0 MiB" for _, total in shown), r.stdout[-300:])
            out = r.stdout
        else:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            t.check("modelfs recover %s exits 0" % how, r.returncode == 0, why(r))
            t.eq("%s it prints nothing on stderr" % how, "", r.stderr)
            t.check("%s it prints one line (%r)" % (how, r.stdout), len(r.stdout.splitlines()) == 1)
            out = r.stdout
        t.check("%s: recover says it finished the interrupted commit" % how,
                "finished an interrupted in-place commit" in out, out[-300:])
        t.eq("%s: the model holds the whole 512 MiB edit" % how, edit_sha,
             range_sha(path, toff + edit_off, edit_len))
        t.check("%s: every byte outside the edit unchanged" % how,
                range_sha(path, 0, toff + edit_off) == pre_sha and
                range_sha(path, toff + edit_off + edit_len,
                          size - toff - edit_off - edit_len) == post_sha)
        t.eq("%s: nothing left beside the model" % how, [], side_files(d, "big1g.onnx"))
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        t.not_ok("killed in-place commit then recover %s" % how, e)
    finally:
        if cp and cp.poll() is None:
            cp.kill()
            cp.wait()
        if dm.alive():
            dm.stop()
        else:
            dm.kill9()
        os.unlink(editbin)


def main():
    t = T()
    base = os.environ.get("MFS_BIG_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                        "..", "out")
    os.makedirs(base, exist_ok=True)
    d = tempfile.mkdtemp(prefix="commit_big.", dir=base)    # concurrent runs must not collide
    try:
        body(t, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    t.check("big files deleted", not os.path.exists(d))
    t.done()


if __name__ == "__main__":
    main()

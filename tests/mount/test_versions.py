#!/usr/bin/python3
"""Versioned commits (issue 14, item 5; modelfs(1) "Versioned commits"):
`modelfs commit --to TEMPLATE MOUNTPOINT` and `-o commit_to=TEMPLATE` write
the committed model as a new file beside the original and switch the mount
to it, with real mounts, real tools and ONNX Runtime.

- ONNX (examples/linear.onnx): an edit of fc.bias committed with
  --to 'linear_v{n}_{sha256:12}.onnx' leaves the original byte-identical
  (sha256 before/after), the new name carries the first 12 hex digits of
  hashlib's digest of the new file, the mount's root shows the new file and
  not the old, meta/sha256 is hashlib's digest, reads show the edit, the
  status names the new file, ONNX Runtime loads it (beside the original and
  through the mount) and gives relu(x W^T + b') computed with numpy; a second
  edit + commit makes v2 from v1 with v1 and the original untouched.
- Refusals (a name that exists, '/', a placeholder typo, K out of range, a
  hidden name): exit 1 with one line naming the problem, every file of the
  directory byte-identical, no new file, the edit still staged.
- After the switch a plain `modelfs commit` writes into the file mounted
  (the version), and creates no file; unmount exits 0, the daemon's log
  names the version; remounting the original shows nothing staged and no
  journal beside it; remounting the version works.
- -o commit_to: safetensors (commit at unmount through `modelfs unmount`),
  GGUF (a metadata prop, by fsync), torch.save zip (a same-size data edit):
  each original byte-identical, the version has the edit (parsed by
  Python: header JSON, the GGUF key, torch.load).
- ONNX with external data: the new main file names the unchanged data
  file, onnx.checker and onnx.load with the data accept it.
- A pack (.mfs): commit --to writes a new pack (verify and unpack it), and a
  template whose name would not open as a pack is refused at mount and at commit.
- kill -9 during versioned commits ($MFS_VERSION_KILLS rounds, default 30):
  the original is byte-identical, and there is no version or one whole
  version (its content is the expected new bytes, its name its hash); the
  next mount of the original leaves no temp, and shows the edit staged if
  and only if no version was installed.
"""
import hashlib
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from mfstest import MODELFS, SRC, T, is_mounted, read, umount  # noqa: E402
from txnacc import Daemon, make_random_model, modelfs, raw_offset, status, why  # noqa: E402

ORT = os.path.join(SRC, "tests", "node", "ort_run.js")
KILLS = int(os.environ.get("MFS_VERSION_KILLS", "30"))


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def snapshot(d):
    """name -> sha256 of every file in directory d but modelfs's hidden side files."""
    return {n: sha(os.path.join(d, n)) for n in sorted(os.listdir(d))
            if os.path.isfile(os.path.join(d, n)) and not n.startswith(".")}


def staged(mnt):
    return [ln for ln in status(mnt).splitlines() if ln.startswith("staged")]


def ort(t, model, x):
    spec = os.path.join(t.tmp, "input.json")
    with open(spec, "w") as f:
        json.dump({"input": {"dims": list(x.shape), "type": "float32",
                             "data": x.reshape(-1).tolist()}}, f)
    r = subprocess.run(["node", ORT, model, spec], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return np.array(json.loads(r.stdout)["output"]["data"], dtype=np.float32)


def fresh_dir(t, name):
    d = os.path.join(t.tmp, name)
    os.makedirs(d)
    return d


def onnx_case(t):
    d = fresh_dir(t, "onnx")
    orig = os.path.join(d, "linear.onnx")
    with open(os.path.join(SRC, "examples", "linear.onnx"), "rb") as f:
        data = f.read()
    with open(orig, "wb") as f:
        f.write(data)
    h0 = sha(orig)
    w = np.load(os.path.join(SRC, "examples", "linear.weights.npz"))
    W, b = w["fc_weight"], w["fc_bias"]
    x = np.random.default_rng(7).standard_normal((3, W.shape[1])).astype(np.float32)
    mnt = os.path.join(t.tmp, "mnt-onnx")
    dm = Daemon(orig, mnt)
    try:
        bias = os.path.join(mnt, "weights", "fc", "bias", "data")
        b1 = (b + 1.5).astype(np.float32)
        with open(bias, "r+b") as f:
            f.write(b1.tobytes())
        tmpl = "linear_v{n}_{sha256:12}.onnx"
        r = modelfs("commit", "--to", tmpl, mnt)
        name1 = r.stdout.strip()
        t.check("commit --to exits 0 and prints the new name", r.returncode == 0 and
                re.fullmatch(r"linear_v1_[0-9a-f]{12}\.onnx", name1), why(r))
        v1 = os.path.join(d, name1)
        t.eq("the original is byte-identical after the versioned commit", h0, sha(orig))
        t.check("the new file is beside the original", os.path.isfile(v1), os.listdir(d))
        h1 = sha(v1) if os.path.isfile(v1) else ""
        t.eq("the new name carries its real sha256 prefix", h1[:12], name1[10:22])
        root = sorted(os.listdir(mnt))
        t.check("the mount's root shows the new file, not the original",
                name1 in root and "linear.onnx" not in root, root)
        t.eq("meta/sha256 is hashlib's digest of the new file", h1 + "\n",
             read(os.path.join(mnt, "meta", "sha256")))
        t.eq("reads show the edit", b1.tobytes(), read(bias, "rb"))
        st = status(mnt)
        t.check("status names the new file and the version",
                ("model: " + v1) in st and ("last commit: ok version " + name1) in st, st)
        t.eq("nothing is staged after the switch", [], staged(mnt))
        want = np.maximum(x @ W.T + b1, 0).reshape(-1)
        try:
            got = ort(t, v1, x)
            t.check("ONNX Runtime loads the new file and gives the edited outputs",
                    np.allclose(got, want, atol=1e-5), (got[:4], want[:4]))
            got = ort(t, os.path.join(mnt, name1), x)
            t.check("ONNX Runtime through the mount gives the edited outputs",
                    np.allclose(got, want, atol=1e-5))
        except RuntimeError as e:
            t.not_ok("ONNX Runtime on the new version", e)

        # v2 from v1.
        b2 = (b1 * 2).astype(np.float32)
        with open(bias, "r+b") as f:
            f.write(b2.tobytes())
        r = modelfs("commit", "--to", tmpl, mnt)
        name2 = r.stdout.strip()
        t.check("a second edit + commit --to makes v2", r.returncode == 0 and
                re.fullmatch(r"linear_v2_[0-9a-f]{12}\.onnx", name2), why(r))
        v2 = os.path.join(d, name2)
        h2 = sha(v2) if os.path.isfile(v2) else ""
        t.eq("v2's name carries its sha256 prefix", h2[:12], name2[10:22])
        t.eq("v1 is untouched by v2", h1, sha(v1))
        t.eq("the original is untouched by v2", h0, sha(orig))
        t.eq("meta/sha256 follows the switch to v2", h2 + "\n",
             read(os.path.join(mnt, "meta", "sha256")))
        try:
            got = ort(t, v2, x)
            t.check("ONNX Runtime on v2 gives v2's outputs",
                    np.allclose(got, np.maximum(x @ W.T + b2, 0).reshape(-1), atol=1e-5))
        except RuntimeError as e:
            t.not_ok("ONNX Runtime on v2", e)

        # Refusals: each leaves everything byte-identical and the edit staged.
        with open(os.path.join(mnt, "meta", "props", "note"), "w") as f:
            f.write("refusals\n")
        before = snapshot(d)
        for what, tp, needle in [
                ("a name that exists", name2, "exists"),
                ("a name that exists (the original)", "linear.onnx", "exists"),
                ("a '/' in the template", "sub/x_{n}.onnx", "'/'"),
                ("a placeholder typo", "linear_{sha265:12}.onnx", "unknown placeholder {sha265:12}"),
                ("K out of range", "linear_{sha256:3}.onnx", "4 to 64"),
                ("a hidden name", ".linear_v{n}.onnx", "hidden"),
                ("a lone brace", "linear_{n.onnx", "'{'"),
        ]:
            r = modelfs("commit", "--to", tp, mnt)
            lines = r.stderr.strip().splitlines()
            t.check("refused: %s (exit 1, one line)" % what,
                    r.returncode == 1 and len(lines) == 1 and needle in r.stderr and
                    not r.stdout, why(r))
            t.eq("refused: %s leaves every file byte-identical" % what, before, snapshot(d))
            t.check("refused: %s keeps the edit staged" % what,
                    any("note" in ln for ln in staged(mnt)), status(mnt))
            t.check("refused: %s is in the status" % what,
                    "last commit: failed: " in status(mnt), status(mnt))

        # A plain commit after the switch writes into the file mounted.
        r = modelfs("commit", mnt)
        t.check("a plain commit after the switch works", r.returncode == 0, why(r))
        after = snapshot(d)
        t.eq("it writes no new file", sorted(before), sorted(after))
        t.check("it wrote into the version mounted (v2), not v1 or the original",
                after[name2] != before[name2] and after[name1] == h1 and after["linear.onnx"] == h0,
                after)
        t.eq("meta/sha256 after the plain commit", after[name2] + "\n",
             read(os.path.join(mnt, "meta", "sha256")))
    finally:
        rc = dm.stop()
    t.eq("the daemon exits 0", 0, rc)
    t.check("the daemon's log names the versions it wrote",
            ("committed version " + name1) in dm.stderr() and ("committed version " + name2)
            in dm.stderr(), dm.stderr())
    t.eq("no side file is left beside the original",
         [], [n for n in os.listdir(d) if n.startswith(".")])
    with t.mount(orig) as m:
        t.eq("remounting the original: nothing staged", [], staged(m))
        t.eq("remounting the original: its own sha256", h0 + "\n",
             read(os.path.join(m, "meta", "sha256")))
    with t.mount(v1) as m:
        t.eq("remounting v1 shows v1's bias", b1.tobytes(),
             read(os.path.join(m, "weights", "fc", "bias", "data"), "rb"))
        t.eq("remounting v1: meta/sha256 computed on read", h1 + "\n",
             read(os.path.join(m, "meta", "sha256")))


def write_safetensors(path, tensors, meta=None):
    header = {}
    off = 0
    blobs = []
    for name, arr in tensors:
        bts = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(bts)]}
        off += len(bts)
        blobs.append(bts)
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def safetensors_case(t):
    d = fresh_dir(t, "st")
    orig = os.path.join(d, "model.safetensors")
    a = np.arange(16, dtype=np.float32)
    write_safetensors(orig, [("a", a), ("b", np.ones(4, np.float32))], {"k": "v"})
    h0 = sha(orig)
    mnt = os.path.join(t.tmp, "mnt-st")
    dm = Daemon(orig, mnt, "-o", "commit_to={stem}_v{n}{ext}")
    try:
        with open(os.path.join(mnt, "weights", "a", "data"), "r+b") as f:
            f.write((a * 3).tobytes())
        r = modelfs("unmount", mnt)
        t.check("safetensors: modelfs unmount with commit_to exits 0", r.returncode == 0, why(r))
    finally:
        rc = dm.stop()
    t.eq("safetensors: the daemon exits 0", 0, rc)
    t.eq("safetensors: the original is byte-identical", h0, sha(orig))
    v1 = os.path.join(d, "model_v1.safetensors")
    if not t.check("safetensors: the commit at unmount wrote model_v1.safetensors",
                   os.path.isfile(v1), os.listdir(d)):
        return
    raw = read(v1, "rb")
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    s, e = hdr["a"]["data_offsets"]
    t.eq("safetensors: the version holds the edit", (a * 3).tobytes(), raw[8 + n + s:8 + n + e])
    with t.mount(orig) as m:
        t.eq("safetensors: the original remounts with nothing staged", [], staged(m))


def gguf_case(t):
    import gguf_write
    d = fresh_dir(t, "gguf")
    orig = os.path.join(d, "tiny.gguf")
    gguf_write.llama(orig, n_layer=1, n_embd=32, n_ff=64)
    h0 = sha(orig)
    mnt = os.path.join(t.tmp, "mnt-gguf")
    dm = Daemon(orig, mnt, "-o", "commit_to=tiny-{sha256:16}.gguf")
    try:
        p = os.path.join(mnt, "meta", "props", "general.name")
        with open(p, "w") as f:
            f.write("versioned\n")
            f.flush()
            os.fsync(f.fileno())      # fsync commits: versioned, with commit_to
        root = [n for n in os.listdir(mnt) if n.endswith(".gguf")]
        t.check("gguf: fsync with commit_to switched the mount to a version",
                len(root) == 1 and re.fullmatch(r"tiny-[0-9a-f]{16}\.gguf", root[0]), root)
    finally:
        rc = dm.stop()
    t.eq("gguf: the daemon exits 0", 0, rc)
    t.eq("gguf: the original is byte-identical", h0, sha(orig))
    vs = [n for n in os.listdir(d) if n.startswith("tiny-")]
    if not t.check("gguf: one version beside it", len(vs) == 1, os.listdir(d)):
        return
    v = os.path.join(d, vs[0])
    t.eq("gguf: its name is its hash", sha(v)[:16], vs[0][5:21])
    t.check("gguf: the version holds the new value", b"versioned" in read(v, "rb"))
    with t.mount(v) as m:
        t.eq("gguf: the version mounts and shows the prop", "versioned\n",
             read(os.path.join(m, "meta", "props", "general.name")))


def torch_case(t):
    import torch
    d = fresh_dir(t, "torch")
    orig = os.path.join(d, "ck.pt")
    torch.save({"w": torch.arange(8, dtype=torch.float32)}, orig)
    h0 = sha(orig)
    with t.mount(orig) as mnt:
        data = os.path.join(mnt, "weights", "w", "data")
        with open(data, "r+b") as f:
            f.write(np.full(8, 4.25, np.float32).tobytes())
        r = modelfs("commit", "--to", "{stem}.v{n}{ext}", mnt)
        t.check("torch: commit --to", r.returncode == 0 and r.stdout.strip() == "ck.v1.pt", why(r))
    t.eq("torch: the original is byte-identical", h0, sha(orig))
    v = os.path.join(d, "ck.v1.pt")
    if os.path.isfile(v):
        got = torch.load(v, weights_only=True)["w"].numpy()
        t.check("torch: torch.load of the version gives the edit", np.all(got == 4.25), got)
        got = torch.load(orig, weights_only=True)["w"].numpy()
        t.check("torch: the original still loads as before", np.all(got == np.arange(8)), got)


def external_case(t):
    d = fresh_dir(t, "ext")
    orig = os.path.join(d, "ext.onnx")
    w = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(m, orig, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.data", size_threshold=0)
    before = snapshot(d)
    with t.mount(orig) as mnt:
        with open(os.path.join(mnt, "meta", "props", "rev"), "w") as f:
            f.write("2\n")
        r = modelfs("commit", "--to", "ext_v{n}.onnx", mnt)
        t.check("external data: commit --to", r.returncode == 0 and r.stdout.strip() == "ext_v1.onnx",
                why(r))
    after = snapshot(d)
    t.eq("external data: the original and its data file are byte-identical", before,
         {k: v for k, v in after.items() if k in before})
    v = os.path.join(d, "ext_v1.onnx")
    try:
        mv = onnx.load(v)
        onnx.checker.check_model(v)
        props = {p.key: p.value for p in mv.metadata_props}
        arr = numpy_helper.to_array(mv.graph.initializer[0])
        t.check("external data: the version names the unchanged data file and loads",
                props.get("rev") == "2" and np.array_equal(arr.reshape(-1), np.arange(4096)),
                props)
    except Exception as e:  # noqa: BLE001
        t.not_ok("external data: the version loads", e)


def pack_case(t):
    d = fresh_dir(t, "pack")
    orig = os.path.join(d, "linear.onnx")
    with open(os.path.join(SRC, "examples", "linear.onnx"), "rb") as f, open(orig, "wb") as g:
        g.write(f.read())
    r = modelfs("pack", orig)
    if not t.check("pack: modelfs pack", r.returncode == 0, why(r)):
        return
    mnt = os.path.join(t.tmp, "mnt-pack")
    os.makedirs(mnt)
    from mfstest import MOUNT_MODELFS
    pack = orig + ".mfs"
    r = subprocess.run([MOUNT_MODELFS, pack, mnt, "-o", "commit_to=x{n}.onnx"],
                       capture_output=True, text=True, timeout=60)
    if is_mounted(mnt):
        umount(mnt)
    t.check("pack: -o commit_to with a name that is not a pack is refused at mount, one line",
            r.returncode == 1 and "would not open as a pack" in r.stderr and
            len(r.stderr.strip().splitlines()) == 1, why(r))
    r = subprocess.run([MOUNT_MODELFS, orig, mnt, "-o", "commit_to=x{n}.onnx.mfs"],
                       capture_output=True, text=True, timeout=60)
    if is_mounted(mnt):
        umount(mnt)
    t.check("a plain model's -o commit_to naming a pack is refused at mount",
            r.returncode == 1 and "would open as a pack" in r.stderr, why(r))

    # A versioned commit of a pack mount writes a new pack beside it.
    w = np.load(os.path.join(SRC, "examples", "linear.weights.npz"))
    b1 = (w["fc_bias"] + 0.25).astype(np.float32)
    p0 = sha(pack)
    dm = Daemon(pack, mnt)
    try:
        before = snapshot(d)
        bias = os.path.join(mnt, "weights", "fc", "bias", "data")
        with open(bias, "r+b") as f:
            f.write(b1.tobytes())
        r = modelfs("commit", "--to", "x{n}.onnx", mnt)
        t.check("pack: commit --to a name that is not a pack is refused, nothing written",
                r.returncode != 0 and "would not open as a pack" in r.stderr and
                snapshot(d) == before and len(staged(mnt)) == 1, (why(r), staged(mnt)))
        r = modelfs("commit", "--to", "linear_v{n}_{sha256:12}.onnx.mfs", mnt)
        name1 = r.stdout.strip()
        t.check("pack: commit --to writes a new pack and prints its name",
                r.returncode == 0 and re.fullmatch(r"linear_v1_[0-9a-f]{12}\.onnx\.mfs", name1),
                why(r))
        v1 = os.path.join(d, name1)
        h1 = sha(v1) if os.path.isfile(v1) else ""
        t.eq("pack: the original pack is byte-identical", p0, sha(pack))
        t.eq("pack: the new pack's name carries its real sha256 prefix", h1[:12], name1[10:22])
        t.eq("pack: meta/sha256 is the new pack's digest", h1 + "\n",
             read(os.path.join(mnt, "meta", "sha256")))
        t.eq("pack: the mount reads the edit", b1.tobytes(), read(bias, "rb"))
        st = status(mnt)
        t.check("pack: status names the new pack", ("model: " + v1) in st, st)
        if os.path.isfile(v1):
            r = modelfs("verify", v1)
            t.check("pack: modelfs verify passes on the new pack", r.returncode == 0, why(r))
            out = os.path.join(t.tmp, "unpacked-v1")
            r = modelfs("unpack", v1, "-o", out)
            try:
                m = onnx.load(os.path.join(out, "linear.onnx"))
                got = [numpy_helper.to_array(i) for i in m.graph.initializer
                       if i.name == "fc.bias"][0]
                t.check("pack: the new pack unpacks to the edited model",
                        r.returncode == 0 and np.array_equal(got, b1), why(r))
            except Exception as e:  # noqa: BLE001
                t.not_ok("pack: the new pack unpacks to the edited model", e)
    finally:
        dm.stop()
    r = subprocess.run([MOUNT_MODELFS, orig, mnt, "-o", "commit_to=x{nope}.onnx"],
                       capture_output=True, text=True, timeout=60)
    if is_mounted(mnt):
        umount(mnt)
    t.check("a bad -o commit_to template is refused at mount",
            r.returncode == 1 and "unknown placeholder {nope}" in r.stderr, why(r))


def spaces_case(t):
    d = fresh_dir(t, "spaces")
    orig = os.path.join(d, "my model.onnx")
    with open(os.path.join(SRC, "examples", "linear.onnx"), "rb") as f, open(orig, "wb") as g:
        g.write(f.read())
    with t.mount(orig) as mnt:
        with open(os.path.join(mnt, "meta", "props", "x"), "w") as f:
            f.write("1\n")
        r = modelfs("commit", "--to", "{stem} v{n} 10{ext}", mnt)
        t.check("a name with spaces and digits is printed whole",
                r.returncode == 0 and r.stdout == "my model v1 10.onnx\n", why(r))
    t.check("... and is the file written", os.path.isfile(os.path.join(d, "my model v1 10.onnx")),
            os.listdir(d))


def kill_case(t, rng):
    d = fresh_dir(t, "kill")
    orig = os.path.join(d, "crash.onnx")
    m = make_random_model(orig, [2 << 20, 3 << 20], rng.randrange(1 << 30))
    old = read(orig, "rb")
    h0 = hashlib.sha256(old).hexdigest()
    tb = numpy_helper.to_array(m.graph.initializer[1]).tobytes()
    off = raw_offset(old, tb)
    mnt = os.path.join(t.tmp, "mnt-kill")
    outcomes = {"none": 0, "version": 0}
    bad = []
    for i in range(KILLS):
        edit = bytes(rng.randrange(256) for _ in range(64))
        at = rng.randrange(len(tb) - 64)
        new = old[:off + at] + edit + old[off + at + 64:]
        hn = hashlib.sha256(new).hexdigest()
        dm = Daemon(orig, mnt)
        try:
            with open(os.path.join(mnt, "weights", "t1", "data"), "r+b") as f:
                f.seek(at)
                f.write(edit)
            c = subprocess.Popen([MODELFS, "commit", "--to", "crash_v{n}_{sha256:12}.onnx", mnt],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0, 0.08))
            os.kill(dm.pid, signal.SIGKILL)
            dm.p.wait(timeout=60)
            c.communicate(timeout=60)
        finally:
            if dm.alive():
                dm.p.kill()
                dm.p.wait()
            umount(mnt)
        if sha(orig) != h0:
            bad.append("round %d: the original changed" % i)
        vs = [n for n in os.listdir(d) if n.startswith("crash_v")]
        if len(vs) > 1:
            bad.append("round %d: %s" % (i, vs))
        for v in vs:
            hv = sha(os.path.join(d, v))
            if hv != hn or not v.startswith("crash_v1_" + hn[:12]):
                bad.append("round %d: %s is not the whole new version" % (i, v))
        dm = Daemon(orig, mnt)
        try:
            temps = [n for n in os.listdir(d) if ".modelfs-tmp-" in n]
            if temps:
                bad.append("round %d: temps left after the next mount: %s" % (i, temps))
            st = staged(mnt)
            if vs and st:
                bad.append("round %d: version installed, yet edits staged again: %s" % (i, st))
            if not vs and not st:
                bad.append("round %d: no version, and the edit is not staged" % (i,))
            if not vs:
                got = read(os.path.join(mnt, "weights", "t1", "data"), "rb")[at:at + 64]
                if got != edit:
                    bad.append("round %d: the staged edit does not read back" % i)
                modelfs("abort", mnt)
        finally:
            dm.stop()
        if vs:
            with t.mount(os.path.join(d, vs[0])) as mv:
                if read(os.path.join(mv, "meta", "sha256")) != hn + "\n":
                    bad.append("round %d: the version does not mount as itself" % i)
            for v in vs:
                os.unlink(os.path.join(d, v))
        outcomes["version" if vs else "none"] += 1
    print("# kill -9 rounds: %r" % outcomes)
    t.check("kill -9 during versioned commits: original intact, no half version, the right "
            "edits staged (%d rounds)" % KILLS, not bad, "; ".join(bad[:5]))


def main():
    t = T()
    seed = int(os.environ.get("MFS_SEED", random.randrange(1 << 30)))
    print("# seed %d" % seed)
    rng = random.Random(seed)
    for case in (onnx_case, safetensors_case, gguf_case, torch_case, external_case, pack_case,
                 spaces_case):
        try:
            case(t)
        except Exception as e:  # noqa: BLE001
            t.not_ok(case.__name__, repr(e))
    try:
        kill_case(t, rng)
    except Exception as e:  # noqa: BLE001
        t.not_ok("kill_case", repr(e))
    t.done()


if __name__ == "__main__":
    main()

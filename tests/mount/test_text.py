#!/usr/bin/python3
"""Unambiguous text (doc/design.md §3.5): every text of the model that the
tree, `modelfs info` and .modelfs/status print escapes '%', controls and DEL
as %XX, so a value is one line and a list one value per line; values written
back through the mount are decoded by the same rule, so what a file shows
may be written back to stage the same bytes.

A model whose names, metadata, attribute strings and string-tensor elements
hold newlines, tabs, DEL and '%': `modelfs info` prints each item on one
line; a 3-element string tensor reads as 3 lines (it read as 4); meta and
props read back, written back, stage nothing; an escaped value written
commits those bytes (checked with python3-onnx); status names and the last
commit's failure stay one line each; a safetensors header the same."""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mfstest import MODELFS, T, encode_component, escape_text, read, unescape_text  # noqa: E402

NL = "in\nput"                          # a graph input's name
WNAME = "w\tx%\x7f"                     # an initializer's name
ELEMS = [b"one", b"t\nwo", b"50%"]      # a string tensor's elements
DOC = "first line\nsecond\tline 100%"
PROP = ("k\ney", "v\nal%ue\t")


def make_model(path):
    w = numpy_helper.from_array(np.arange(4, dtype=np.float32), WNAME)
    s = helper.make_tensor("strs", TensorProto.STRING, [3], ELEMS)
    node = helper.make_node("Concat", [NL, WNAME], ["out\n1"], name="cat\nnode", axis=0,
                            doc_string="node\ndoc")
    node.attribute.append(helper.make_attribute("note", "a\nb%"))
    node.attribute.append(helper.make_attribute("notes", ["x\ny", "z"]))
    g = helper.make_graph(
        [node], "g\nname",
        [helper.make_tensor_value_info(NL, TensorProto.FLOAT, ["batch\tsize"])],
        [helper.make_tensor_value_info("out\n1", TensorProto.FLOAT, None)],
        initializer=[w, s])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="prod\x7fucer", doc_string=DOC)
    helper.set_model_props(m, {PROP[0]: PROP[1], "plain": "50% done"})
    onnx.save(m, path)


def controls(b):
    """Control bytes other than the newlines that end lines."""
    return [c for c in b if (c < 0x20 and c != 0x0A) or c == 0x7F]


def main():
    t = T()
    model = os.path.join(t.tmp, "text.onnx")
    make_model(model)

    # modelfs info: one item per line, nothing raw.
    r = subprocess.run([MODELFS, "info", model], capture_output=True)
    out = r.stdout
    t.check("info exits 0", r.returncode == 0, r.stderr)
    t.eq("info prints no raw control byte", [], controls(out))
    lines = out.decode().split("\n")
    t.check("info: doc_string on one line, escaped",
            "doc_string: first line%0Asecond%09line 100%25" in lines, out[:600])
    t.check("info: producer_name's DEL escaped", "producer_name: prod%7Fucer" in lines)
    t.check("info: graph_name escaped", "graph_name: g%0Aname" in lines)
    t.check("info: a prop key and value escaped", "prop k%0Aey: v%0Aal%25ue%09" in lines)
    t.check("info: an input's name and symbolic dim escaped",
            "  in%0Aput  float32  [batch%09size]" in lines, [x for x in lines if "put" in x])
    t.check("info: the initializer's name in the tensor table",
            any(x.split()[1:2] == ["w%09x%25%7F"] for x in lines if x.startswith("  weight")))

    with t.mount(model, "-o", "ro") as mnt:
        # One value per file, one item per line.
        w = os.path.join(mnt, "weights")
        data = read(os.path.join(w, "strs", "data"), "rb")
        t.eq("string tensor of 3 elements reads as 3 lines", 3, data.count(b"\n"))
        t.eq("each line decodes to its element", ELEMS,
             [unescape_text(x) for x in data.split(b"\n")[:-1]])
        t.eq("its data is the escaped elements", b"one\nt%0Awo\n50%25\n", data)
        wd = os.path.join(w, encode_component(WNAME))
        t.eq("the initializer's name file", "w%09x%25%7F\n", read(os.path.join(wd, "name")))
        nd = os.path.join(mnt, "nodes", "0000-Concat")
        t.eq("node inputs: one per line", "in%0Aput\nw%09x%25%7F\n", read(os.path.join(nd, "inputs")))
        t.eq("node outputs", "out%0A1\n", read(os.path.join(nd, "outputs")))
        t.eq("node name", "cat%0Anode\n", read(os.path.join(nd, "name")))
        t.eq("node doc_string", "node%0Adoc\n", read(os.path.join(nd, "doc_string")))
        t.eq("STRING attribute", "a%0Ab%25\n", read(os.path.join(nd, "attrs", "note")))
        t.eq("STRINGS attribute: one per line", "x%0Ay\nz\n", read(os.path.join(nd, "attrs", "notes")))
        t.eq("meta/doc_string", "first line%0Asecond%09line 100%25\n",
             read(os.path.join(mnt, "meta", "doc_string")))
        t.eq("meta/input_shape", "batch%09size\n", read(os.path.join(mnt, "meta", "input_shape")))
        t.eq("inputs/<name>/shape", "batch%09size\n",
             read(os.path.join(mnt, "inputs", encode_component(NL), "shape")))
        props = os.path.join(mnt, "meta", "props")
        t.eq("a prop's value", "v%0Aal%25ue%09\n", read(os.path.join(props, encode_component(PROP[0]))))
        t.eq("a prop's '%'", "50%25 done\n", read(os.path.join(props, "plain")))
        sizes = [os.path.getsize(os.path.join(nd, f)) for f in ("inputs", "name", "doc_string")]
        t.eq("sizes are the escaped texts'", [21, 11, 11], sizes)

    # Read, written back: the same bytes, nothing staged; escapes written stage bytes.
    with t.mount(model) as mnt:
        meta = os.path.join(mnt, "meta")
        props = os.path.join(meta, "props")
        kp = os.path.join(props, encode_component(PROP[0]))
        for p in (os.path.join(meta, "doc_string"), os.path.join(meta, "producer_name"),
                  os.path.join(meta, "graph_name"), kp, os.path.join(props, "plain")):
            text = read(p, "rb")
            with open(p, "wb") as f:
                f.write(text)
        st = read(os.path.join(mnt, ".modelfs", "status"))
        t.check("writing back what was read stages nothing", "staged" not in st, st)
        with open(os.path.join(meta, "doc_string"), "w") as f:
            f.write("new%0Adoc with 50% and %zz\n")
        with open(kp, "w") as f:
            f.write("line1%0Aline2%09%25\n")
        with open(os.path.join(props, "n%0Aew"), "w") as f:
            f.write("fresh%0A")
        t.eq("the written doc_string reads back canonical", "new%0Adoc with 50%25 and %25zz\n",
             read(os.path.join(meta, "doc_string")))
        st = read(os.path.join(mnt, ".modelfs", "status"))
        t.check("status: a new key with a newline is one line", "staged prop n%0Aew (new)\n" in st, st)
        t.eq("status has no raw control byte", [], controls(st.encode()))
        r = subprocess.run([MODELFS, "commit", mnt], capture_output=True, text=True)
        t.check("commit succeeds", r.returncode == 0, r.stderr)
    m = onnx.load(model)
    t.eq("committed doc_string bytes", "new\ndoc with 50% and %zz", m.doc_string)
    got = {p.key: p.value for p in m.metadata_props}
    t.eq("committed props bytes", {PROP[0]: "line1\nline2\t%", "plain": "50% done", "n\new": "fresh\n"},
         got)

    # A failed commit names the tensor escaped: the status line stays one line.
    with t.mount(model) as mnt:
        wd = os.path.join(mnt, "weights", encode_component(WNAME))
        with open(os.path.join(wd, "data"), "wb") as f:
            f.write(b"\0" * 6)
        r = subprocess.run([MODELFS, "commit", mnt], capture_output=True, text=True)
        st = read(os.path.join(mnt, ".modelfs", "status"))
        line = [x for x in st.split("\n") if x.startswith("last commit:")]
        t.check("a failed commit: one status line naming the tensor escaped",
                r.returncode == 1 and len(line) == 1 and "w%09x%25%7F" in line[0], st)
        t.check("modelfs commit's reason is one line", r.stderr.count("\n") == 1, r.stderr)
        subprocess.run([MODELFS, "abort", mnt], capture_output=True)

    # safetensors: a tensor name with a tab, a metadata value with a newline.
    st_path = os.path.join(t.tmp, "text.safetensors")
    header = json.dumps({"__metadata__": {"note": "a\nb"},
                         "t\tab": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(st_path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + b"z")
    r = subprocess.run([MODELFS, "info", st_path], capture_output=True)
    t.eq("safetensors info: no raw control byte", [], controls(r.stdout))
    t.check("safetensors info: the metadata value escaped", b"prop note: a%0Ab\n" in r.stdout,
            r.stdout)
    with t.mount(st_path, "-o", "ro") as mnt:
        t.eq("safetensors name file", "t%09ab\n",
             read(os.path.join(mnt, "weights", "t%09ab", "name")))
        t.eq("safetensors props file", "a%0Ab\n", read(os.path.join(mnt, "meta", "props", "note")))
    t.eq("escape_text and unescape_text are inverse", b"a\n%\x7f",
         unescape_text(escape_text(b"a\n%\x7f")))
    t.done()


if __name__ == "__main__":
    main()

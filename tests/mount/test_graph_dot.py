#!/usr/bin/python3
"""tests/mount/test_graph_dot.py — issue 17: meta/graph.dot.

Through real mounts, drawn by Graphviz's own `dot -Tsvg` (Debian graphviz):
  - a torchvision ResNet-18 exported with torch.onnx.export at test time:
    dot renders it; every graph node is drawn (one DOT node per ONNX node),
    the edges carry tensor names, and the size stat gives is what cat reads;
  - a graph with `If` subgraphs made with onnx.helper: both branches are
    clusters, the body nodes are drawn, dot renders it;
  - a safetensors model has no graph.dot.
"""
import os
import re
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mfstest import T  # noqa: E402


def export_resnet(path):
    import torch
    import torchvision
    m = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    torch.onnx.export(m, x, path, input_names=["image"], output_names=["logits"],
                      opset_version=13)


def if_model(path):
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    then_out = helper.make_tensor_value_info("t_out", TensorProto.FLOAT, [2, 3])
    else_out = helper.make_tensor_value_info("e_out", TensorProto.FLOAT, [2, 3])
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t_out"], name="then_relu")],
                               "then_body", [], [then_out])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e_mid"], name="else_neg"),
                                helper.make_node("Abs", ["e_mid"], ["e_out"], name="else_abs")],
                               "else_body", [], [else_out])
    node = helper.make_node("If", ["cond"], ["y"], name="the_if", then_branch=then_g,
                            else_branch=else_g)
    pre = helper.make_node("Identity", ["x"], ["x2"], name="pre")
    g = helper.make_graph([pre, node], "with_if", [cond, x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    onnx.save(m, path)


def render(t, what, dotfile):
    r = subprocess.run(["dot", "-Tsvg", dotfile], capture_output=True, text=True)
    t.check("%s: dot -Tsvg renders meta/graph.dot" % what,
            r.returncode == 0 and "<svg" in r.stdout and not r.stderr.strip(),
            "exit %d: %s" % (r.returncode, r.stderr.strip()[:300]))
    return r.stdout


def main():
    t = T()
    rn = os.path.join(t.tmp, "resnet18.onnx")
    export_resnet(rn)
    m = onnx.load(rn)
    with t.mount(rn, "-o", "ro") as mnt:
        p = os.path.join(mnt, "meta", "graph.dot")
        text = open(p).read()
        t.eq("resnet18: st_size is the bytes read", len(text.encode()), os.path.getsize(p))
        decl = re.findall(r"^  n(\d+) \[label=\"([^\\\"]+)", text, re.M)
        t.eq("resnet18: one DOT node per ONNX node, with its op type",
             [n.op_type for n in m.graph.node], [op for _, op in decl])
        # Edges between nodes: one per (producer output, consumer input) pair.
        made = {o: i for i, n in enumerate(m.graph.node) for o in n.output}
        want = sum(1 for n in m.graph.node for x in n.input if x in made)
        got = re.findall(r"^  n\d+ -> n\d+ \[label=\"([^\\\"]+)", text, re.M)
        t.eq("resnet18: an edge per tensor passed between nodes, labelled with its name",
             want, len(got))
        t.check("resnet18: the input's edge carries its shape",
                re.search(r'i0 -> n\d+ \[label="image\\nfloat32\[1,3,64,64\]"', text), text[:400])
        svg = render(t, "resnet18", p)
        t.check("resnet18: the drawing has a box per node",
                svg.count('class="node"') >= len(m.graph.node), svg.count('class="node"'))
        # Reads at odd offsets give the same bytes as one read.
        with open(p, "rb") as f:
            whole = f.read()
            pieces, off = [], 0
            while off < len(whole):
                f.seek(off)
                pieces.append(f.read(777))
                off += 777
        t.eq("resnet18: reads in 777-byte pieces give the same text", whole, b"".join(pieces))

    im = os.path.join(t.tmp, "if.onnx")
    if_model(im)
    with t.mount(im, "-o", "ro") as mnt:
        p = os.path.join(mnt, "meta", "graph.dot")
        text = open(p).read()
        t.check("If: then_branch and else_branch are clusters",
                "cluster_n1_0_0_" in text and "cluster_n1_1_0_" in text, text)
        t.check("If: the bodies' nodes are drawn",
                all(s in text for s in ("then_relu", "else_neg", "else_abs")), text)
        t.check("If: an edge inside a body", re.search(
            r'n1_(\d)_0_n0 -> n1_\1_0_n1 \[label="e_mid"', text), text)
        t.check("If: a body's capture of an outer input is an edge", re.search(
            r'i1 -> n1_\d_0_n0 \[label="x', text), text)
        svg = render(t, "If", p)
        t.check("If: the drawing has the clusters", svg.count('class="cluster"') == 2,
                svg.count('class="cluster"'))

    st = os.path.join(t.tmp, "a.safetensors")
    h = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    h += b" " * (-len(h) % 8)
    with open(st, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + np.zeros(2, np.float32).tobytes())
    with t.mount(st, "-o", "ro") as mnt:
        t.check("safetensors: no meta/graph.dot",
                not os.path.exists(os.path.join(mnt, "meta", "graph.dot")))
    t.done()


main()

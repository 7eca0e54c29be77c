#!/usr/bin/python3
"""ONNX Runtime (onnxruntime-node) loads the root model file of a mounted
example from the mount path and gives outputs equal to the original."""
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mfstest import SRC, T  # noqa: E402

ORT = os.path.join(SRC, "tests", "node", "ort_run.js")


def run(t, model, x):
    spec = os.path.join(t.tmp, "input.json")
    with open(spec, "w") as f:
        json.dump({"input": {"dims": list(x.shape), "type": "float32", "data": x.reshape(-1).tolist()}}, f)
    r = subprocess.run(["node", ORT, model, spec], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return json.loads(r.stdout)


def main():
    t = T()
    model = os.path.join(SRC, "examples", "linear.onnx")
    x = np.random.default_rng(1).standard_normal((5, 10)).astype(np.float32)
    want = run(t, model, x)
    w = np.load(os.path.join(SRC, "examples", "linear.weights.npz"))
    manual = np.maximum(x @ w["fc_weight"].T + w["fc_bias"], 0).reshape(-1)
    t.check("ONNX Runtime on the original matches the weights",
            np.allclose(want["output"]["data"], manual, atol=1e-5))
    with t.mount(model) as mnt:
        got = run(t, os.path.join(mnt, "linear.onnx"), x)
    t.eq("ONNX Runtime output from the mount equals the original", want, got)
    t.done()


if __name__ == "__main__":
    main()

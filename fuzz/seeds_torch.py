#!/usr/bin/python3
"""fuzz/seeds_torch.py — seeds for fuzz_zip (whole torch.save files) and
fuzz_pickle (their data.pkl members): small checkpoints made by torch.save
(when /usr/bin/python3 has torch) and the hostile corpus of
tests/data/make_bad_torch.py.  Usage: seeds_torch.py CORPUS_DIR."""
import io
import os
import sys
import zipfile

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "data"))
import make_bad_torch  # noqa: E402

out = sys.argv[1]


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def put_both(name, blob):
    put("fuzz_zip", name, blob)
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        for n in z.namelist():
            if n.endswith("/data.pkl"):
                put("fuzz_pickle", name, z.read(n))


cases = make_bad_torch.corpus("/nonexistent/marker") + make_bad_torch.zip_corpus()
for name, blob, _ in cases:
    if len(blob) > 65536:
        continue
    try:
        put_both(name, blob)
    except Exception:  # a broken container: the whole file only
        put("fuzz_zip", name, blob)
try:
    import collections
    import torch
except ImportError:
    sys.exit(0)
g = torch.Generator().manual_seed(0)
w = torch.randn(3, 4, generator=g)
objs = {
    "sd": collections.OrderedDict([("a.weight", w), ("a.bias", torch.zeros(3)),
                                   ("t", w.t()), ("tied", w), ("h", w.half()),
                                   ("bf", w.bfloat16()), ("z", torch.tensor(1))]),
    "ckpt": {"model": {"w": w}, "epoch": 3, "lr": 0.5, "name": "x", "l": [1, None, True]},
    "param": {"p": torch.nn.Parameter(w)},
}
for name, obj in objs.items():
    for proto in (2, 4):
        buf = io.BytesIO()
        torch.save(obj, buf, pickle_protocol=proto)
        put_both("%s-p%d" % (name, proto), buf.getvalue())
# A TorchScript archive: its code/ members are deflated (inflate.c).
buf = io.BytesIO()
torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), buf)
put("fuzz_zip", "torchscript", buf.getvalue())

"""tests/data/make_torch.py — torch.save fixtures made at test time, and
what a mount of each must show.

Run under /usr/bin/python3 with Debian's python3-torch (and torchvision).
`fixtures(dir)` writes every fixture into `dir` and returns a list of
(file name, object saved); `expected(obj)` flattens an object as modelfs
names it (doc/design.md §8.1): nested dict keys and list indices joined by
'.', tensors by that name, plain values as props.
"""
import collections
import os

import torch


def _dict_of(obj):
    return obj.items() if isinstance(obj, dict) else enumerate(obj)


def expected(obj, prefix=""):
    """(tensors, props): name -> tensor, name -> text of its prop file."""
    tensors, props = collections.OrderedDict(), collections.OrderedDict()

    def walk(v, name):
        if isinstance(v, torch.Tensor):
            tensors[name or "tensor"] = v
        elif isinstance(v, (dict, list, tuple)):
            for k, x in _dict_of(v):
                walk(x, (name + "." if name else "") + str(k))
        elif isinstance(v, bool) or v is None:
            props[name or "value"] = str(v)
        elif isinstance(v, float):
            props[name or "value"] = repr(v)
        elif isinstance(v, (int, str)):
            props[name or "value"] = str(v)
        else:
            raise TypeError("no fixture should hold %r" % (v,))
    walk(obj, prefix)
    return tensors, props


def tensor_bytes(t):
    """What a tensor's `data` file must hold: row-major, little-endian."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


DTYPE_NAMES = {
    torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
    torch.bfloat16: "bfloat16", torch.int8: "int8", torch.uint8: "uint8",
    torch.int16: "int16", torch.int32: "int32", torch.int64: "int64", torch.bool: "bool",
    torch.complex64: "complex64", torch.complex128: "complex128",
}


def _net_state(name):
    import torchvision
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None).state_dict()


def _views():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(5, 7, generator=g)
    cube = torch.randn(3, 4, 5, generator=g)
    emb = torch.nn.Parameter(torch.randn(10, 4, generator=g))
    return collections.OrderedDict([
        ("w", w),
        ("w_t", w.t()),                         # transposed
        ("w_cols", w[:, 1::3]),                 # sliced with a step
        ("w_rows", w[2:4]),                     # a contiguous slice at an offset
        ("cube_perm", cube.permute(2, 0, 1)),
        ("cube_diag", cube[:, 1, ::2]),
        ("embed.weight", emb),                  # a Parameter (_rebuild_parameter)
        ("lm_head.weight", emb),                # tied: the same tensor twice
        ("tied_view", emb.detach()[3]),         # another view of the same storage
        ("expanded", torch.arange(3.0).expand(4, 3)),   # stride 0
        ("empty", torch.zeros(0, 5)),
        ("empty3", torch.zeros(2, 0, 3, dtype=torch.int32)),
        ("scalar", torch.tensor(3.25)),
        ("scalar_i", torch.tensor(-7, dtype=torch.int64)),
    ])


def _dtypes():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(4, 6, generator=g)
    return collections.OrderedDict([
        ("f32", f), ("f64", f.double()), ("f16", f.half()), ("bf16", f.bfloat16()),
        ("bf16_t", f.bfloat16().t()),
        ("i8", (f * 40).to(torch.int8)), ("u8", (f.abs() * 40).to(torch.uint8)),
        ("i16", (f * 1000).to(torch.int16)), ("i32", (f * 1e6).to(torch.int32)),
        ("i64", (f * 1e9).to(torch.int64)), ("bool", f > 0),
        ("c64", torch.complex(f, -f)), ("c128", torch.complex(f.double(), f.double())),
    ])


def _checkpoint():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = model(torch.randn(2, 8)).sum()
    loss.backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 12,
            "step": 3400, "best_acc": 0.8125, "config": "resnet-ish, lr 0.05",
            "finished": False, "note": None, "history": [1.5, 1.25, 0.75]}


def fixtures(d):
    """Write every fixture into directory d: [(file name, object)]."""
    out = []

    def save(name, obj, **kw):
        torch.save(obj, os.path.join(d, name), **kw)
        out.append((name, obj))

    for net in ("resnet18", "mobilenet_v3_small", "squeezenet1_1"):
        save(net + ".pt", _net_state(net))
    save("checkpoint.pt", _checkpoint())
    save("views.pt", _views())
    save("dtypes.pt", _dtypes())
    save("proto4.pt", _views(), pickle_protocol=4)
    save("proto2.bin", _dtypes(), pickle_protocol=2)
    save("tensor.pt", torch.arange(10, dtype=torch.int16).reshape(2, 5).t())
    save("empty_dict.pt", {})
    return out


def sharded(d, n=3):
    """A Hugging Face style sharded checkpoint in d: pytorch_model-0000k-of-0000n.bin
    and pytorch_model.bin.index.json.  Returns (index path, state dict)."""
    import json
    sd = _net_state("squeezenet1_1")
    names = list(sd)
    weight_map = {}
    for k in range(n):
        part = collections.OrderedDict((x, sd[x]) for x in names[k::n])
        shard = "pytorch_model-%05d-of-%05d.bin" % (k + 1, n)
        torch.save(part, os.path.join(d, shard))
        weight_map.update({x: shard for x in part})
    total = sum(t.numel() * t.element_size() for t in sd.values())
    index = os.path.join(d, "pytorch_model.bin.index.json")
    with open(index, "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
    return index, sd

#!/usr/bin/python3
"""tests/tools/gguf_write.py — a small GGUF writer for the tests (struct + numpy).

Independent of modelfs: it follows ggml's docs/gguf.md.  `write()` takes the
pairs with explicit value types (llama.cpp checks types strictly: integer keys
must be uint32) and the tensors as raw bytes with ggml dims; `llama()` builds
a tiny random-weight llama-architecture model with a SentencePiece-style
vocabulary (specials, the 256 byte tokens, letters and a few words) whose
tensors are f32, f16 and q8_0.

    /usr/bin/python3 tests/tools/gguf_write.py llama OUT.gguf [SEED]
"""
import struct
import sys

# value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
# ggml types: id -> (block elements, block bytes)
GGML = {"f32": (0, 1, 4), "f16": (1, 1, 2), "q8_0": (8, 32, 34), "q4_0": (2, 32, 18),
        "i8": (24, 1, 1), "i16": (25, 1, 2), "i32": (26, 1, 4), "i64": (27, 1, 8),
        "f64": (28, 1, 8), "bf16": (30, 1, 2), "q4_k": (12, 256, 144), "q6_k": (14, 256, 210)}


def gstr(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def value(t, v):
    if t == STR:
        return gstr(v)
    if t == ARR:
        et, items = v
        out = struct.pack("<IQ", et, len(items))
        if et in SCALAR:
            return out + struct.pack("<%d%s" % (len(items), SCALAR[et][1]), *items)
        return out + b"".join(value(et, x) for x in items)
    return struct.pack(SCALAR[t], v)


def kv_bytes(key, t, v):
    return gstr(key) + struct.pack("<I", t) + value(t, v)


def nbytes(gtype, dims):
    _, blck, bsize = GGML[gtype]
    n = 1
    for d in dims:
        n *= d
    return n // blck * bsize


def write(path, kvs, tensors, version=3, alignment=32, raw_kvs=None):
    """kvs: [(key, type, value)]; tensors: [(name, ggml type name, ggml dims, bytes)]."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, len(tensors),
                                          len(kvs) + len(raw_kvs or [])))
    for k, t, v in kvs:
        out += kv_bytes(k, t, v)
    for r in raw_kvs or []:
        out += r
    off = 0
    for name, gt, dims, data in tensors:
        assert len(data) == nbytes(gt, dims), (name, len(data), nbytes(gt, dims))
        out += gstr(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", GGML[gt][0], off)
        off += (len(data) + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    for name, gt, dims, data in tensors:
        out += data + b"\0" * (-len(data) % alignment)
    with open(path, "wb") as f:
        f.write(out)
    return bytes(out)


def q8_0(x):
    """numpy float32 rows (last dim % 32 == 0) -> ggml block_q8_0 bytes."""
    import numpy as np
    x = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    amax = np.abs(x).max(axis=1)
    d = amax / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0)
    q = np.clip(np.round(x * inv[:, None]), -127, 127).astype(np.int8)
    blocks = np.zeros(len(x), dtype=[("d", "<f2"), ("q", "i1", 32)])
    blocks["d"] = d.astype(np.float16)
    blocks["q"] = q
    return blocks.tobytes()


def tensor(name, gt, shape, rng, scale=0.08):
    """A random tensor of numpy `shape` (rows first) stored as ggml type `gt`."""
    import numpy as np
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    dims = list(reversed(shape))
    if gt == "f32":
        data = x.tobytes()
    elif gt == "f16":
        data = x.astype(np.float16).tobytes()
    elif gt == "q8_0":
        data = q8_0(x)
    else:
        raise ValueError(gt)
    return (name, gt, dims, data)


WORDS = ["hello", "world", "the", "cat", "sat", "on", "mat", "a", "dog", "ran"]


def llama_vocab():
    tokens, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    for b in range(256):
        tokens.append("<0x%02X>" % b)
        scores.append(0.0)
        types.append(6)
    pieces = ["\u2581"] + list("abcdefghijklmnopqrstuvwxyz") + ["\u2581" + w for w in WORDS]
    for i, p in enumerate(pieces):
        tokens.append(p)
        scores.append(-float(i) if len(p) == 1 else 10.0 + len(p))
        types.append(1)
    return tokens, scores, types


def llama(path, seed=1, n_layer=2, n_embd=64, n_ff=128, n_head=4, n_head_kv=2,
          chat_template=None, extra_kvs=()):
    import numpy as np
    rng = np.random.default_rng(seed)
    tokens, scores, types = llama_vocab()
    n_vocab = len(tokens)
    n_embd_kv = n_embd // n_head * n_head_kv
    kvs = [
        ("general.architecture", STR, "llama"),
        ("general.name", STR, "modelfs tiny llama"),
        ("general.file_type", U32, 1),
        ("general.quantization_version", U32, 2),
        ("llama.context_length", U32, 256),
        ("llama.embedding_length", U32, n_embd),
        ("llama.block_count", U32, n_layer),
        ("llama.feed_forward_length", U32, n_ff),
        ("llama.rope.dimension_count", U32, n_embd // n_head),
        ("llama.attention.head_count", U32, n_head),
        ("llama.attention.head_count_kv", U32, n_head_kv),
        ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        ("llama.rope.freq_base", F32, 10000.0),
        ("llama.vocab_size", U32, n_vocab),
        ("tokenizer.ggml.model", STR, "llama"),
        ("tokenizer.ggml.tokens", ARR, (STR, tokens)),
        ("tokenizer.ggml.scores", ARR, (F32, scores)),
        ("tokenizer.ggml.token_type", ARR, (I32, types)),
        ("tokenizer.ggml.bos_token_id", U32, 1),
        ("tokenizer.ggml.eos_token_id", U32, 2),
        ("tokenizer.ggml.unknown_token_id", U32, 0),
        ("tokenizer.ggml.add_bos_token", BOOL, True),
        ("tokenizer.chat_template", STR, chat_template or
         "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"),
    ] + list(extra_kvs)
    ts = [tensor("token_embd.weight", "q8_0", (n_vocab, n_embd), rng, 0.5)]
    for i in range(n_layer):
        p = "blk.%d." % i
        ts += [
            (p + "attn_norm.weight", "f32", [n_embd],
             (1 + 0.1 * rng.standard_normal(n_embd)).astype(np.float32).tobytes()),
            tensor(p + "attn_q.weight", "f16", (n_embd, n_embd), rng),
            tensor(p + "attn_k.weight", "f16", (n_embd_kv, n_embd), rng),
            tensor(p + "attn_v.weight", "f32", (n_embd_kv, n_embd), rng),
            tensor(p + "attn_output.weight", "f32", (n_embd, n_embd), rng),
            (p + "ffn_norm.weight", "f32", [n_embd],
             (1 + 0.1 * rng.standard_normal(n_embd)).astype(np.float32).tobytes()),
            tensor(p + "ffn_gate.weight", "f32", (n_ff, n_embd), rng),
            tensor(p + "ffn_down.weight", "q8_0", (n_embd, n_ff), rng),
            tensor(p + "ffn_up.weight", "f16", (n_ff, n_embd), rng),
        ]
    ts += [(("output_norm.weight", "f32", [n_embd],
             np.ones(n_embd, dtype=np.float32).tobytes())),
           tensor("output.weight", "f32", (n_vocab, n_embd), rng, 0.5)]
    return write(path, kvs, ts), kvs, ts


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "llama":
        llama(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    else:
        sys.exit(__doc__)

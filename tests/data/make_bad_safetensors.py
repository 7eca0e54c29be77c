#!/usr/bin/python3
"""tests/data/make_bad_safetensors.py — write the hostile safetensors fixtures.

One file per hostile case of doc/reliability.md §3.2 items 1-8 for safetensors,
written with plain struct + json (never modelfs code) into tests/data/bad/,
each under 1 MB.  Every one must fail to open with -EUCLEAN and a one-line
message; tests/unit/test_safetensors.c lists the message each must contain.

It also writes tests/data/good/st_hostile_names.safetensors: a *valid* file
whose tensor names are the hostile ones of item 7 ("", ".", "..", "a/b",
"../x", "/abs", control characters, a 10 KB name, names that collide once
encoded).  It must open; the mount encodes the names.

Run it from anywhere:  /usr/bin/python3 tests/data/make_bad_safetensors.py
The output is deterministic, so the committed files can be checked with
`git diff --exit-code tests/data` after running it.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
BAD = os.path.join(HERE, "bad")
GOOD = os.path.join(HERE, "good")


def pack(header, buf=b"", n=None, pad=True):
    """Length prefix + header bytes (+ space padding to 8) + buffer.
    `n` overrides the declared length; `header` is bytes or a JSON-able dict."""
    if not isinstance(header, bytes):
        header = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header) if n is None else n) + header + buf


def t(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


F32_1 = t("F32", [1], 0, 4)     # one float32 at the start of the buffer

CASES = {
    # 1. header length
    "st_hlen_past_eof": pack(b'{"a":1}', n=1000),
    "st_hlen_zero": pack(b"{}", n=0),
    "st_hlen_one": pack(b"{}", n=1),
    "st_hlen_too_large": pack(b"{}", n=200_000_000),
    "st_hlen_overflow": pack(b"{}", n=2**64 - 1),
    # 2. header text
    "st_not_object": pack(b'["a"]'),
    "st_blank_header": pack(b"        "),
    "st_invalid_utf8": pack(b'{"__metadata__":{"k":"\xc3\x28"}}'),
    "st_name_invalid_utf8": pack(b'{"\xff\xfe":' + json.dumps(F32_1).encode() + b"}",
                                 b"\0" * 4),
    "st_name_lone_surrogate": pack(b'{"\\udc80":' + json.dumps(F32_1).encode() + b"}",
                                   b"\0" * 4),
    "st_name_nul": pack(b'{"a\\u0000b":' + json.dumps(F32_1).encode() + b"}", b"\0" * 4),
    "st_invalid_json": pack(b'{"a":{"dtype":"F32","shape":[1],}}'),
    "st_json_garbage_after": pack(b'{} {}'),
    "st_deep_nesting": pack(b'{"a":' + b"[" * 990_000 + b"}", pad=False),
    # 3. duplicates
    "st_dup_tensor": pack(b'{"a":' + json.dumps(F32_1).encode() + b',"a":'
                          + json.dumps(t("F32", [1], 4, 8)).encode() + b"}", b"\0" * 8),
    "st_dup_metadata": pack(b'{"__metadata__":{"k":"v"},"__metadata__":{"k":"w"}}'),
    "st_dup_metadata_key": pack(b'{"__metadata__":{"k":"v","k":"w"}}'),
    "st_dup_field": pack(b'{"a":{"dtype":"F32","dtype":"I32","shape":[1],'
                         b'"data_offsets":[0,4]}}', b"\0" * 4),
    # 4. data_offsets
    "st_begin_after_end": pack({"a": t("F32", [1], 4, 0)}, b"\0" * 4),
    "st_overlap": pack({"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}, b"\0" * 12),
    "st_same_range": pack({"a": t("F32", [1], 0, 4), "b": t("F32", [1], 0, 4)}, b"\0" * 4),
    "st_hole": pack({"a": t("F32", [1], 0, 4), "b": t("F32", [1], 8, 12)}, b"\0" * 12),
    "st_hole_at_start": pack({"a": t("F32", [1], 4, 8)}, b"\0" * 8),
    "st_past_eof": pack({"a": t("F32", [2], 0, 8)}, b"\0" * 4),
    "st_trailing_bytes": pack({"a": F32_1}, b"\0" * 4 + b"PK\x05\x06" + b"\0" * 18),
    "st_trailing_bytes_empty": pack({}, b"\0"),
    "st_offset_float": pack(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4.0]}}',
                            b"\0" * 4),
    "st_offset_exponent": pack(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4e0]}}',
                               b"\0" * 4),
    "st_offset_negative": pack(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}',
                               b"\0" * 4),
    "st_offset_string": pack(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":["0",4]}}',
                             b"\0" * 4),
    "st_offset_huge": pack(b'{"a":{"dtype":"F32","shape":[1],'
                           b'"data_offsets":[0,99999999999999999999]}}', b"\0" * 4),
    "st_offsets_not_pair": pack(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}',
                                b"\0" * 4),
    # 5. sizes
    "st_shape_overflow": pack({"a": t("F32", [2**32, 2**32, 2], 0, 4)}, b"\0" * 4),
    "st_bytes_overflow": pack({"a": t("F32", [2**62], 0, 4)}, b"\0" * 4),
    "st_size_mismatch": pack({"a": t("F32", [2, 3], 0, 20)}, b"\0" * 20),
    "st_shape_float": pack(b'{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}',
                           b"\0" * 4),
    "st_shape_negative": pack(b'{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}',
                              b"\0" * 4),
    "st_shape_not_array": pack(b'{"a":{"dtype":"F32","shape":4,"data_offsets":[0,4]}}',
                               b"\0" * 4),
    # 6. dtypes
    "st_unknown_dtype": pack({"a": t("F7", [1], 0, 4)}, b"\0" * 4),
    "st_dtype_lowercase": pack({"a": t("f32", [1], 0, 4)}, b"\0" * 4),
    "st_dtype_nul": pack(b'{"a":{"dtype":"F32\\u0000","shape":[1],"data_offsets":[0,4]}}',
                         b"\0" * 4),
    "st_dtype_not_string": pack({"a": t(1, [1], 0, 4)}, b"\0" * 4),
    "st_subbyte_misaligned": pack({"a": t("F4", [3], 0, 2)}, b"\0" * 2),
    "st_f6_misaligned": pack({"a": t("F6_E2M3", [1], 0, 1)}, b"\0" * 1),
    # entries
    "st_entry_not_object": pack({"a": "F32"}),
    "st_missing_shape": pack({"a": {"dtype": "F32", "data_offsets": [0, 4]}}, b"\0" * 4),
    # 8. __metadata__
    "st_metadata_not_string": pack({"__metadata__": {"format": "pt", "n": 1}}),
    "st_metadata_nested": pack({"__metadata__": {"k": {"x": "y"}}}),
    "st_metadata_not_object": pack({"__metadata__": "pt"}),
}


def hostile_names():
    """A valid file whose names are every hostile name of item 7."""
    names = ["", ".", "..", "a/b", "a.b", "a%2Fb", "../x", "/abs", "a//b", "ctl\x01\x1f\x7f",
             "tab\tnl\nname", "x" * 10240, "\u00e9\u4e2d\U0001f600", "data", "a.b.dtype"]
    header, buf = {"__metadata__": {"format": "pt"}}, b""
    for i, name in enumerate(names):
        header[name] = t("U8", [1], len(buf), len(buf) + 1)
        buf += bytes([i])
    return pack(header, buf)


def main():
    os.makedirs(BAD, exist_ok=True)
    os.makedirs(GOOD, exist_ok=True)
    for name, data in CASES.items():
        assert len(data) < 1_000_000, name
        with open(os.path.join(BAD, name + ".safetensors"), "wb") as f:
            f.write(data)
    with open(os.path.join(GOOD, "st_hostile_names.safetensors"), "wb") as f:
        f.write(hostile_names())


if __name__ == "__main__":
    main()

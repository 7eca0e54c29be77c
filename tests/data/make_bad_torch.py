"""tests/data/make_bad_torch.py — a hostile corpus of torch.save files.

No torch here: each pickle is assembled by hand or by Python's pickle
module from classes whose __reduce__ names a dangerous callable, then put
in a zip laid out as torch.save lays it out (archive/data.pkl,
archive/version, archive/data/<key>).  Loading any of them with
pickle.load would run its payload; modelfs must refuse every one with one
line, before anything is called.

corpus(marker) -> [(case name, zip bytes, words the error line must hold)].
`marker` is a path the os.system payloads would create.
zip_corpus() -> the same for broken containers.
"""
import io
import os
import pickle
import struct
import subprocess
import zipfile


def torch_zip(pkl, members=(), prefix="archive"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(prefix + "/data.pkl", pkl)
        for name, data in members:
            z.writestr(prefix + "/" + name, data)
        z.writestr(prefix + "/version", b"3\n")
    return buf.getvalue()


class Reduce:
    """An object that pickles as a call of fn(*args)."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def u(s):
    """BINUNICODE of s."""
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def su(s):
    """SHORT_BINUNICODE of s (protocol 4)."""
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


P2 = b"\x80\x02"
P4 = b"\x80\x04"
STORAGE = (b"ctorch._utils\n_rebuild_tensor_v2\n" + b"(" +
           b"(" + u("storage") + b"ctorch\nFloatStorage\n" + u("0") + u("cpu") + b"K\x04tQ")


def tensor_pickle(size, stride, offset=0):
    """A state dict {'w': tensor} with the given size and stride tuples (ints)."""
    def ints(xs):
        out = b"("
        for x in xs:
            out += b"\x8a\x08" + struct.pack("<q", x)
        return out + b"t"
    return (P2 + b"}" + u("w") + STORAGE + b"\x8a\x08" + struct.pack("<q", offset) +
            ints(size) + ints(stride) + b"\x89" + b"ccollections\nOrderedDict\n)R" + b"tR" +
            b"s.")


def corpus(marker):
    touch = "touch " + marker
    out = []

    def add(name, pkl, words, members=()):
        out.append((name, torch_zip(pkl, members), words))

    add("os_system_reduce", pickle.dumps({"w": Reduce(os.system, touch)}, protocol=2),
        ["GLOBAL", "offset", "system", "not allowed"])
    add("os_system_proto4", pickle.dumps(Reduce(os.system, touch), protocol=4),
        ["STACK_GLOBAL", "offset", "system", "not allowed"])
    add("builtins_eval", pickle.dumps(Reduce(eval, "__import__('os').system(%r)" % touch), 2),
        ["builtins.eval", "offset"])
    add("builtins_exec", pickle.dumps(Reduce(exec, "import os; os.system(%r)" % touch), 2),
        ["builtins.exec", "offset"])
    add("subprocess_popen", pickle.dumps(Reduce(subprocess.Popen, ["touch", marker]), 2),
        ["subprocess.Popen", "offset"])
    add("subprocess_check_call", pickle.dumps(Reduce(subprocess.check_call, ["touch", marker]), 2),
        ["subprocess.check_call", "offset"])
    # getattr(__import__('os'), 'system')('touch ...'), assembled by hand.
    add("getattr_chain",
        P2 + b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(" + u("os") + b"tR" + u("system") +
        b"tR(" + u(touch) + b"tR.", ["builtins.getattr", "offset 2"])
    # A state dict that is fine up to a nested dict whose value is a call.
    nested = pickle.dumps({"model": {"a": 1, "deep": {"x": Reduce(os.system, touch)}}}, 2)
    add("nested_global_in_dict", nested, ["GLOBAL", "system"])
    # STACK_GLOBAL whose names come from the memo (stored earlier, fetched later).
    add("stack_global_memo_names",
        P4 + su("posix") + b"\x94" + su("system") + b"\x94" + b"0" + b"0" + b"h\x00h\x01\x93" +
        su(touch) + b"\x85R.", ["STACK_GLOBAL", "posix.system"])
    # STACK_GLOBAL of values that are not strings (computed names).
    add("stack_global_not_strings", P4 + b"K\x01K\x02\x93.", ["STACK_GLOBAL", "two strings"])
    add("ext1", P2 + b"\x82\x01)R.", ["EXT1", "offset 2"])
    add("ext2", P2 + b"\x83\x01\x00)R.", ["EXT2", "offset 2"])
    add("ext4", P2 + b"\x84\x01\x00\x00\x00)R.", ["EXT4", "offset 2"])
    add("inst", b"(cos\nsystem\n" + u(touch) + b"tR.", ["GLOBAL", "os.system"])
    add("inst_opcode", P2 + b"(" + u(touch) + b"ios\nsystem\n.", ["INST", "not allowed"])
    add("obj_opcode", P2 + b"(ccollections\nOrderedDict\no.", ["OBJ", "not allowed"])
    add("newobj", P2 + b"ccollections\nOrderedDict\n)\x81.", ["NEWOBJ", "not allowed"])
    add("persid_text", P2 + b"Pfoo\n.", ["PERSID", "not allowed"])
    add("memo_overwrite", P2 + b"}q\x00]q\x00.", ["BINPUT", "already set"])
    add("memo_unset_get", P2 + b"h\x05.", ["BINGET", "not set"])
    add("memo_huge_index", P2 + b"}r\xff\xff\xff\x7f.", ["LONG_BINPUT", "skips"])
    add("unicode_1gb_length", P2 + b"X" + struct.pack("<I", 1 << 30) + b"abc.",
        ["BINUNICODE", "exceeds the limit"])
    add("unicode_len_past_end", P2 + b"X" + struct.pack("<I", 4096) + b"abc.",
        ["BINUNICODE", "are left"])
    add("bytes8_huge_length", P4 + b"\x8e" + struct.pack("<Q", 1 << 40) + b".",
        ["BINBYTES8", "exceeds the limit"])
    add("frame_past_end", P4 + b"\x95" + struct.pack("<Q", 1 << 30) + b"N.",
        ["FRAME", "runs past the end"])
    add("deep_marks_1e6", P2 + b"(" * 10**6 + b".", ["MARK", "open MARKs"])
    add("deep_lists_1e6", P2 + b"]" * 10**6 + b".", ["EMPTY_LIST", "stack of more than"])
    # 10^6 lists, each inside the previous one, built through the memo with a
    # stack of two: only the walk over the values sees the depth.
    body = bytearray(P4 + b"]\x94")
    for i in range(10**6):
        body += b"]\x94a0j" + struct.pack("<I", i + 1)
    add("deep_nesting_memo_1e6", bytes(body) + b"0j\0\0\0\0.", ["nested deeper than 64"])
    # L = []; L.append(L): a cycle.
    add("cycle", P2 + b"]q\x00h\x00a.", ["nested deeper"])
    # 60 levels of [x, x]: 2^60 paths to walk.
    dag = bytearray(P4 + b"(]\x94")
    for i in range(60):
        dag += b"]" + b"(" + b"j" + struct.pack("<I", i) + b"j" + struct.pack("<I", i) + b"e\x94"
    add("exponential_sharing", bytes(dag) + b"1j" + struct.pack("<I", 60) + b".",
        ["refer to each other"])
    add("protocol_0_int", b"I1\n.", ["INT", "not allowed"])
    add("protocol_6", b"\x80\x06N.", ["PROTO", "protocol 6"])
    add("reduce_storage_class", P2 + b"ctorch\nFloatStorage\n)R.",
        ["REDUCE", "torch.FloatStorage is not allowed"])
    add("build_on_list", P2 + b"]}b.", ["BUILD", "not a dict or a tensor"])
    add("persid_not_storage", P2 + b"(" + u("os") + u("x") + b"tQ.",
        ["BINPERSID", "('storage', ...)"])
    add("quantized_storage", P2 + b"ctorch\nQInt8Storage\n.", ["quantized"])
    add("storage_key_path", P2 + b"(" + u("storage") + b"ctorch\nFloatStorage\n" +
        u("../../etc/passwd") + u("cpu") + b"K\x04tQ.", ["bad storage key"])
    add("storage_missing", tensor_pickle([4], [1]), ["storage member", "missing"])
    f16 = [("data/0", b"\0" * 16)]
    add("tensor_past_storage", tensor_pickle([1000000], [1]), ["past its storage"], f16)
    add("stride_overflow", tensor_pickle([2, 2], [1 << 62, 1]), ["past its storage"], f16)
    add("expand_view_bomb", tensor_pickle([1 << 40], [0]), ["more than 16 times"], f16)
    add("negative_stride", tensor_pickle([2], [-1]), ["negative size or stride"], f16)
    add("negative_offset", tensor_pickle([2], [1], offset=-4), ["bad storage offset"], f16)
    add("no_stop", P2 + b"}", ["without STOP"])
    add("unknown_opcode", P2 + b"\xff.", ["0xff", "unknown opcode"])
    return out


def zip_corpus():
    """Broken containers around a harmless pickle."""
    good = torch_zip(P2 + b"}.")
    out = []
    eocd = good.rindex(b"PK\x05\x06")
    cd_off = struct.unpack_from("<I", good, eocd + 16)[0]

    def patch(b, off, fmt, val):
        b = bytearray(b)
        struct.pack_into(fmt, b, off, val)
        return bytes(b)

    out.append(("zip_no_eocd", good[:eocd], ["no end-of-central-directory"]))
    out.append(("zip_cd_past_eof", patch(good, eocd + 16, "<I", 0x7fffffff), ["out of range"]))
    out.append(("zip_count_huge", patch(patch(good, eocd + 10, "<H", 0xfff0), eocd + 8, "<H",
                                        0xfff0), ["cannot fit"]))
    out.append(("zip_local_off_bad", patch(good, cd_off + 42, "<I", cd_off - 10),
                ["local header", "out of range"]))
    out.append(("zip_bad_cd_sig", patch(good, cd_off, "<I", 0x12345678), ["is broken"]))
    out.append(("zip_name_nul", good.replace(b"archive/data.pkl", b"archive/data\0pkl"),
                ["holds NUL"]))
    big = patch(good, cd_off + 20, "<I", 0xffffffff)   # csize says ZIP64, no extra
    out.append(("zip64_extra_missing", big, ["ZIP64"]))
    out.append(("zip_size_past_cd", patch(patch(good, cd_off + 20, "<I", 1 << 20), cd_off + 24,
                                          "<I", 1 << 20), ["runs into the central directory"]))
    out.append(("zip_no_data_pkl", torch_zip(b"").replace(b"data.pkl", b"datx.pkl"),
                ["data.pkl"]))
    return out

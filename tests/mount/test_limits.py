#!/usr/bin/python3
"""Issue 6, "Limits": every limit of mount.modelfs(8) LIMITS that a small
generated file can reach, hit from both sides.

For each: the smallest file that crosses the limit is refused at mount time
(exit 1, one line on stderr naming the file and the limit, nothing mounted,
the file untouched), and a file just at the limit mounts and shows the
tensor.  Limits covered (man page value; codec header name):

  64 levels of nested protobuf messages   MFS_MAX_DEPTH  (TypeProto chain in
                                          a graph output; depth counted here
                                          with python protobuf, ModelProto = 0)
  64 dims of a tensor, and of a shape     MFS_MAX_RANK   (initializer dims;
                                          graph output shape)
  65536 bytes of one name                 MFS_MAX_NAME   (initializer name)
  255 bytes of one path component         (names longer are cut: checked on
                                          the 65536-byte name)
  4096 distinct external data files       MFS_MAX_EXT_FILES
  2 GiB - 1 of ONNX model file            MFS_MAX_ONNX_FILE (refusal only: a
                                          sparse file; nothing below is cheap)
  100000000 bytes of safetensors header   ST_MAX_HEADER (declared length;
                                          refusal with a small sparse file,
                                          and a real header of exactly
                                          100000000 bytes that mounts); the
                                          same for a *.safetensors.index.json
  256 MiB decoded from typed fields       MFS_MAX_DECODED (refusal only: 32
                                          MiB of packed int64 zeros decode to
                                          256 MiB + 8; below: 8 MiB decoded)
  256 KiB of a staged value               MFS_STAGE_MAX_VALUE (codec/txn/stage.h;
                                          meta/props/<key>: key + value + 2;
                                          one byte over fails with EFBIG, at
                                          the limit stages and commits)
  64 MiB of metadata fields of one        MFS_MAX_SMALL_MSG (ModelProto.
  message                                 metadata_props of 65000-byte values:
                                          1033 refused, 1020 mount)
  1 TiB of one staged object              MFS_STAGE_MAX_OBJECT (a one-byte
                                          write ending at 1 TiB stages sparse;
                                          one past it fails with EFBIG)

The 4294967294 tree entries are hit by tests/unit/test_tree.c with the
builder's limit lowered (a real tree that size needs hundreds of GiB).
"""
import errno
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from mfstest import MOUNT_MODELFS, T, is_mounted, read_value, umount  # noqa: E402
from txnacc import Daemon, sha256_file  # noqa: E402

import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

MiB = 1 << 20


def msg_depth(msg, d=0):
    """Depth of the deepest message under msg (msg itself at depth d)."""
    best = d
    for fd, val in msg.ListFields():
        if fd.type != fd.TYPE_MESSAGE:
            continue
        subs = val if fd.label == fd.LABEL_REPEATED else [val]
        for s in subs:
            best = max(best, msg_depth(s, d + 1))
    return best


def model(inits, outputs=None, extra_nodes=()):
    names = [x.name for x in inits]
    nodes = [helper.make_node("Identity", [n], ["o%d" % i]) for i, n in enumerate(names)]
    outs = outputs or [helper.make_tensor_value_info("o%d" % i, TensorProto.UINT8, None)
                       for i in range(len(names))]
    g = helper.make_graph(nodes + list(extra_nodes), "limits", [], outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="modelfs-tests")
    m.ir_version = 8
    return m


def u8(name, dims, raw):
    return helper.make_tensor(name, TensorProto.UINT8, dims, raw, raw=True)


def nested_type(levels, tail):
    """A TypeProto: `levels` sequence_type wrappers around a tensor_type with
    `tail` extra levels (0: no shape, 1: empty shape, 2: shape with a dim)."""
    tp = onnx.TypeProto()
    cur = tp
    for _ in range(levels):
        cur = cur.sequence_type.elem_type
    cur.tensor_type.elem_type = TensorProto.UINT8
    if tail >= 1:
        cur.tensor_type.shape.SetInParent()
    if tail >= 2:
        cur.tensor_type.shape.dim.add().dim_value = 1
    return tp


def depth_model(target):
    """A model whose deepest message is at exactly `target`."""
    for levels in range(0, 40):
        for tail in range(3):
            vi = onnx.ValueInfoProto(name="o0")
            vi.type.CopyFrom(nested_type(levels, tail))
            m = model([u8("w", [1], b"\x07")], outputs=[vi])
            if msg_depth(m) == target:
                return m
    raise ValueError("no model of depth %d" % target)


class Limits:
    def __init__(self, t):
        self.t = t
        self.mnt = os.path.join(t.tmp, "mnt")
        os.makedirs(self.mnt)

    def path(self, name):
        return os.path.join(self.t.tmp, name)

    def save(self, m, name):
        p = self.path(name)
        with open(p, "wb") as f:
            f.write(m.SerializeToString())
        return p

    def refused(self, what, p, words):
        """Mount of p is refused with one line naming the file and all of `words`."""
        t = self.t
        before = sha256_file(p)
        r = subprocess.run([MOUNT_MODELFS, p, self.mnt], capture_output=True, text=True,
                           timeout=120)
        if is_mounted(self.mnt):
            umount(self.mnt)
            return t.not_ok("%s: refused" % what, "it mounted")
        err = r.stderr.strip()
        lines = err.split("\n") if err else []
        good = (r.returncode == 1 and len(lines) == 1 and os.path.basename(p) in err
                and all(w in err for w in words))
        t.check("%s: refused: %s" % (what, err), good,
                "rc %d, stderr %r, expected words %r" % (r.returncode, err, words))
        t.eq("%s: file untouched" % what, before, sha256_file(p))

    def mounts(self, what, p, check=None):
        """Mount of p works; check(mnt) -> (bool, why) is asserted inside."""
        t = self.t
        try:
            dm = Daemon(p, self.mnt)
        except RuntimeError as e:
            return t.not_ok("%s: mounts" % what, e)
        try:
            ok, why = check(self.mnt) if check else (True, "")
            t.check("%s: mounts%s" % (what, " and " + why if why and ok else ""), ok, why)
        except Exception as e:  # noqa: BLE001
            t.not_ok("%s: mounts and reads" % what, repr(e))
        finally:
            rc = dm.stop()
        t.eq("%s: daemon exits 0" % what, 0, rc)


def find_tensor(mnt, want_bytes):
    for dp, _, fs in os.walk(os.path.join(mnt, "weights")):
        if "data" in fs and open(os.path.join(dp, "data"), "rb").read() == want_bytes:
            return dp
    return None


def reads_w(mnt, n=1, b=b"\x07"):
    dp = find_tensor(mnt, b)
    return dp is not None, "reads the tensor" if dp else "tensor not found"


def main():
    t = T()
    L = Limits(t)

    # --- protobuf nesting depth (64)
    m64 = depth_model(64)
    m65 = depth_model(65)
    t.eq("depth fixtures: deepest messages at 64 and 65", (64, 65), (msg_depth(m64),
                                                                    msg_depth(m65)))
    L.mounts("message depth 64", L.save(m64, "depth64.onnx"), reads_w)
    L.refused("message depth 65", L.save(m65, "depth65.onnx"), ["64"])

    # --- rank (64): an initializer, and a graph output's shape
    L.mounts("tensor rank 64", L.save(model([u8("w", [1] * 64, b"\x07")]), "rank64.onnx"),
             lambda mnt: (open(os.path.join(find_tensor(mnt, b"\x07"), "shape")).read().strip()
                          == ",".join(["1"] * 64), "shows 64 dims"))
    L.refused("tensor rank 65", L.save(model([u8("w", [1] * 65, b"\x07")]), "rank65.onnx"),
              ["65", "64"])
    L.mounts("output shape rank 64", L.save(model(
        [u8("w", [1], b"\x07")],
        [helper.make_tensor_value_info("o0", TensorProto.UINT8, [1] * 64)]), "orank64.onnx"),
        reads_w)
    L.refused("output shape rank 65", L.save(model(
        [u8("w", [1], b"\x07")],
        [helper.make_tensor_value_info("o0", TensorProto.UINT8, [1] * 65)]), "orank65.onnx"),
        ["65", "64"])

    # --- name length (65536), and the 255-byte path component
    def long_name(mnt):
        dp = find_tensor(mnt, b"\x07")
        if not dp:
            return False, "tensor not found"
        comp = os.path.basename(dp)
        name = read_value(os.path.join(dp, "name"))
        if len(comp.encode()) > 255:
            return False, "path component of %d bytes" % len(comp.encode())
        if name != b"n" * 65536:
            return False, "name file holds %d bytes" % len(name)
        return True, "its directory name is cut to %d bytes, name file whole" % len(comp.encode())
    L.mounts("tensor name of 65536 bytes", L.save(model([u8("n" * 65536, [1], b"\x07")]),
                                                  "name65536.onnx"), long_name)
    # No node refers to it: the initializer's own name is what crosses the limit.
    m = model([u8("w", [1], b"\x07")])
    m.graph.initializer.append(u8("n" * 65537, [1], b"\x08"))
    L.refused("tensor name of 65537 bytes", L.save(m, "name65537.onnx"),
              ["65537", "65536", "initializer"])

    # --- external data files (4096)
    def ext_model(n, name):
        d = L.path(name)
        os.makedirs(d)
        inits = []
        for i in range(n):
            with open(os.path.join(d, "x%04d.bin" % i), "wb") as f:
                f.write(bytes([i & 0xff]))
            tp = onnx.TensorProto(name="e%d" % i, data_type=TensorProto.UINT8, dims=[1],
                                  data_location=TensorProto.EXTERNAL)
            tp.external_data.add(key="location", value="x%04d.bin" % i)
            inits.append(tp)
        g = helper.make_graph([], "ext", [], [helper.make_tensor_value_info(
            "e0", TensorProto.UINT8, [1])], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        p = os.path.join(d, "ext.onnx")
        with open(p, "wb") as f:
            f.write(m.SerializeToString())
        return p

    def ext_check(mnt):
        dirs = os.listdir(os.path.join(mnt, "weights"))
        b = open(os.path.join(mnt, "weights", "e4095", "data"), "rb").read() \
            if "e4095" in dirs else None
        return len(dirs) == 4096 and b == bytes([4095 & 0xff]), \
            "shows 4096 tensors, e4095 reads its file (%d dirs, %r)" % (len(dirs), b)
    L.mounts("4096 external data files", ext_model(4096, "ext4096"), ext_check)
    L.refused("4097 external data files", ext_model(4097, "ext4097"), ["4096"])

    # --- ONNX model file of 2 GiB (sparse: a valid model, then a hole)
    p = L.save(model([u8("w", [1], b"\x07")]), "big.onnx")
    os.truncate(p, 1 << 31)
    L.refused("ONNX model file of 2 GiB", p, ["2147483648", "2 GiB"])
    os.unlink(p)

    # --- typed fields decoded into memory (256 MiB per model)
    def int64_model(count, name):
        tp = onnx.TensorProto(name="w", data_type=TensorProto.INT64, dims=[count])
        tp.int64_data.extend([0] * count)
        return L.save(model([tp], [helper.make_tensor_value_info("o0", TensorProto.INT64,
                                                                 [count])]), name)
    over = (256 * MiB) // 8 + 1
    L.refused("int64_data decoding to 256 MiB + 8 bytes", int64_model(over, "dec_over.onnx"),
              ["256"])
    os.unlink(L.path("dec_over.onnx"))
    L.mounts("int64_data decoding to 8 MiB", int64_model(MiB, "dec_ok.onnx"),
             lambda mnt: (os.path.getsize(os.path.join(mnt, "weights", "w", "data")) == 8 * MiB,
                          "data is 8 MiB"))

    # --- safetensors header (100000000 bytes, declared length)
    p = L.path("hdr_over.safetensors")
    with open(p, "wb") as f:
        f.write((100000001).to_bytes(8, "little") + b"{")
    os.truncate(p, 8 + 100000001)
    L.refused("safetensors header of 100000001 bytes", p, ["100000001", "100000000"])
    os.unlink(p)
    p = L.path("hdr_at.safetensors")
    hdr = b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    hdr = hdr + b" " * (100000000 - len(hdr))
    with open(p, "wb") as f:
        f.write((len(hdr)).to_bytes(8, "little") + hdr + b"\x07")
    del hdr
    L.mounts("safetensors header of exactly 100000000 bytes", p, reads_w)
    os.unlink(p)

    # --- *.safetensors.index.json (100000000 bytes): refused one byte over
    # (sparse: the size is checked before anything is read), mounts at it
    shard = L.path("model-00001-of-00001.safetensors")
    hdr = b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    with open(shard, "wb") as f:
        f.write(len(hdr).to_bytes(8, "little") + hdr + b"\x07")
    p = L.path("over.safetensors.index.json")
    with open(p, "wb") as f:
        f.write(b'{"weight_map":{}}')      # not a safetensors length: an index
    os.truncate(p, 100000001)
    L.refused("safetensors index of 100000001 bytes", p, ["100000001", "100000000"])
    os.unlink(p)
    p = L.path("at.safetensors.index.json")
    body = b'{"metadata":{},"weight_map":{"w":"model-00001-of-00001.safetensors"}}'
    with open(p, "wb") as f:
        f.write(body + b" " * (100000000 - len(body)))
    L.mounts("safetensors index of exactly 100000000 bytes", p, reads_w)
    os.unlink(p)
    os.unlink(shard)

    # --- staged value of a prop (key + value + 2 <= 256 KiB)
    p = L.save(model([u8("w", [1], b"\x07")]), "props.onnx")
    key = "k"
    at = b"v" * (262144 - len(key) - 2)
    dm = Daemon(p, L.mnt)
    try:
        kp = os.path.join(L.mnt, "meta", "props", key)
        try:
            with open(kp, "wb") as f:
                f.write(at + b"v")
            t.not_ok("prop value one byte over 256 KiB (key + value + 2): EFBIG", "accepted")
        except OSError as e:
            t.eq("prop value one byte over 256 KiB (key + value + 2): EFBIG",
                 "EFBIG", errno.errorcode.get(e.errno))
        try:
            with open(kp, "wb") as f:
                f.write(at)
            got = open(kp, "rb").read()
            t.check("prop value at 256 KiB (key + value + 2) stages and reads back (+ newline)",
                    got == at + b"\n", "read %d bytes, tail %r" % (len(got), got[-4:]))
        except OSError as e:
            t.not_ok("prop value at 256 KiB (key + value + 2) stages", e)
    finally:
        rc = dm.stop()
    t.eq("props: daemon exits 0 (committed at unmount)", 0, rc)
    props = {x.key: x.value for x in onnx.load(p).metadata_props}
    t.check("props: the 256 KiB value is in the committed model",
            props.get(key) == at.decode(), "props %s" % {k: len(v) for k, v in props.items()})

    # --- metadata fields of one message (64 MiB): ModelProto.metadata_props
    # of 65000-byte values (each under the 65536-byte string limit)
    def props_model(n, name):
        m = model([u8("w", [1], b"\x07")])
        for i in range(n):
            e = m.metadata_props.add()
            e.key = "k%04d" % i
            e.value = "%05d" % i + "x" * 64995
        return L.save(m, name)
    over = 64 * MiB // 65000 + 1          # 1033 entries: just over 64 MiB
    p = props_model(over, "meta_over.onnx")
    L.refused("metadata fields of one message over 64 MiB (%d props of 65000 bytes)" % over, p,
              ["metadata", "64 MiB"])
    os.unlink(p)
    p = props_model(over - 13, "meta_at.onnx")

    def props_check(mnt):
        d = os.path.join(mnt, "meta", "props")
        names = os.listdir(d)
        v = open(os.path.join(d, "k%04d" % (over - 14)), "rb").read()
        return (len(names) == over - 13 and v.startswith(b"%05d" % (over - 14)),
                "shows %d props" % len(names))
    L.mounts("metadata fields of one message just under 64 MiB (%d props)" % (over - 13), p,
             props_check)
    os.unlink(p)

    # --- one staged object (a data file) is at most 1 TiB
    p = L.save(model([u8("w", [1], b"\x07")]), "big_write.onnx")
    before = sha256_file(p)
    dm = Daemon(p, L.mnt)
    try:
        dp = os.path.join(L.mnt, "weights", "w", "data")
        fd = os.open(dp, os.O_WRONLY)
        try:
            try:
                os.pwrite(fd, b"\x01", (1 << 40) - 1)
                t.eq("a write ending at 1 TiB stages (sparse): data is 1 TiB",
                     1 << 40, os.stat(dp).st_size)
            except OSError as e:
                t.not_ok("a write ending at 1 TiB stages", e)
            try:
                os.pwrite(fd, b"\x01", 1 << 40)
                t.not_ok("a write past 1 TiB: EFBIG", "accepted")
            except OSError as e:
                t.eq("a write past 1 TiB: EFBIG", "EFBIG", errno.errorcode.get(e.errno))
        finally:
            os.close(fd)
        with open(os.path.join(L.mnt, ".modelfs", "abort"), "w") as f:
            f.write("1\n")
        t.eq("after abort data is 1 byte again", 1, os.stat(dp).st_size)
    finally:
        rc = dm.stop()
    t.eq("staged object: daemon exits 0", 0, rc)
    t.eq("staged object: model untouched", before, sha256_file(p))
    t.done()


if __name__ == "__main__":
    main()

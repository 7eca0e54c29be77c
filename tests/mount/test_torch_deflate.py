#!/usr/bin/python3
"""tests/mount/test_torch_deflate.py — issue 13: TorchScript's deflated members.

torch.jit.save (python3-torch) deflates the code/ members and their
*.debug_pkl.  The archive is rewritten here by a small zip writer of the
test's own (struct + zlib, nothing of modelfs), so that one member can be
made hostile while the rest stays what torch wrote.  Through real mounts:
  - every member reads back as zipfile inflates it, whole and in odd-sized
    reads at odd offsets; the re-written archive mounts like torch's;
  - refused with one line naming the member and what is wrong, nothing
    mounted: a deflate bomb past the 64 MiB member limit, a ratio bomb
    (16 MiB of zeros), a truncated deflate stream, corrupt deflate data, a
    wrong CRC-32, an uncompressed size that lies up and one that lies down,
    bytes after the end of the stream;
  - a member that stops inflating while mounted (the file overwritten in
    place) reads as EIO, and the daemon goes on serving the other members.
"""
import errno
import os
import struct
import subprocess
import sys
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from mfstest import MOUNT_MODELFS, T, is_mounted, read_value  # noqa: E402

import torch  # noqa: E402


def deflate(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def write_zip(path, members):
    """members: [(name, method, payload, usize, crc)] -> a plain zip (no ZIP64)."""
    out, cdir = bytearray(), bytearray()
    for name, method, payload, usize, crc in members:
        nb = name.encode()
        off = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034b50, 20, 0, method, 0, 0, crc,
                           len(payload), usize, len(nb), 0) + nb + payload
        cdir += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 20, 20, 0, method, 0, 0, crc,
                            len(payload), usize, len(nb), 0, 0, 0, 0, 0, off) + nb
    cpos = len(out)
    out += cdir + struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, len(members), len(members),
                              len(cdir), cpos, 0)
    with open(path, "wb") as f:
        f.write(out)


def members_of(path):
    """torch's archive as [(name, method, payload, usize, crc)], deflated as torch did."""
    out = []
    with zipfile.ZipFile(path) as z:
        for i in z.infolist():
            data = z.read(i.filename)
            if i.compress_type == zipfile.ZIP_DEFLATED:
                out.append((i.filename, 8, deflate(data), len(data), zlib.crc32(data)))
            else:
                out.append((i.filename, 0, data, len(data), zlib.crc32(data)))
    return out


def mounted(mnt):
    got = {}
    for dirpath, _, files in os.walk(os.path.join(mnt, "weights")):
        if "data" in files and "name" in files:
            got[read_value(os.path.join(dirpath, "name")).decode()] = os.path.join(dirpath, "data")
    return got


def main():
    t = T()
    ts = os.path.join(t.tmp, "script.pt")
    nn = torch.nn
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Tanh(),
                                                  nn.Dropout(0.1), nn.LayerNorm(4),
                                                  nn.Sigmoid())), ts)
    with zipfile.ZipFile(ts) as z:
        want = {i.filename: z.read(i.filename) for i in z.infolist()}
        code = [i.filename for i in z.infolist() if i.compress_type == zipfile.ZIP_DEFLATED]
    t.check("torch.jit.save deflates members (%d, more than the 8 kept inflated)" % len(code),
            len(code) > 8, list(want))
    mine = members_of(ts)
    own = os.path.join(t.tmp, "own.pt")
    write_zip(own, mine)
    for label, path in (("torch's archive", ts), ("the re-written archive", own)):
        with t.mount(path) as mnt:
            got = mounted(mnt)
            bad = [n for n in want if n not in got or open(got[n], "rb").read() != want[n]]
            t.check("%s: every member reads back inflated (%d)" % (label, len(want)), not bad,
                    bad)
            name = max(code, key=lambda n: len(want[n]))
            parts, pos = [], 3
            with open(got[name], "rb", buffering=0) as f:
                f.seek(pos)
                while True:
                    b = f.read(13)
                    if not b:
                        break
                    parts.append(b)
            t.check("%s: 13-byte reads from offset 3 of %s" % (label, name),
                    b"".join(parts) == want[name][3:])
            t.eq("%s: the size of an inflated member" % label, len(want[name]),
                 os.stat(got[name]).st_size)
            # Every deflated member at once, 101 bytes of each in turn (more
            # files than the daemon keeps inflated).
            fs = {n: open(got[n], "rb", buffering=0) for n in code}
            parts = {n: [] for n in code}
            live = set(code)
            while live:
                for n in sorted(live):
                    b = fs[n].read(101)
                    if b:
                        parts[n].append(b)
                    else:
                        live.discard(n)
            for f in fs.values():
                f.close()
            t.check("%s: %d deflated members read side by side in 101-byte pieces" %
                    (label, len(code)),
                    all(b"".join(parts[n]) == want[n] for n in code))

    victim = max(code, key=lambda n: len(want[n]))
    raw = want[victim]

    def hostile(label, repl, needle):
        ms = [repl if m[0] == victim else m for m in mine]
        path = os.path.join(t.tmp, "hostile.pt")
        write_zip(path, ms)
        mnt = os.path.join(t.tmp, "mnt-hostile")
        os.makedirs(mnt, exist_ok=True)
        r = subprocess.run([MOUNT_MODELFS, path, mnt], capture_output=True, text=True,
                           timeout=120)
        lines = r.stderr.strip().splitlines()
        t.check("%s: refused with one line naming the member (%s)" %
                (label, r.stderr.strip()[-110:]),
                r.returncode != 0 and len(lines) == 1 and victim in lines[0] and
                needle in lines[0], r.stderr)
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-u", mnt])
            t.not_ok("%s: nothing mounted" % label)

    big = 100 << 20
    zeros = deflate(bytes(big))
    hostile("a deflate bomb (100 MiB of zeros)",
            (victim, 8, zeros, big, zlib.crc32(bytes(big))), "limit")
    mid = 16 << 20
    hostile("a ratio bomb (16 MiB of zeros in %d bytes)" % len(deflate(bytes(mid))),
            (victim, 8, deflate(bytes(mid)), mid, zlib.crc32(bytes(mid))), "zip bomb")
    d = deflate(raw)
    crc = zlib.crc32(raw)
    hostile("a truncated deflate stream", (victim, 8, d[:len(d) // 2], len(raw), crc),
            "truncated")
    corrupt = bytes([d[0] | 0x06]) + d[1:]     # block type 3: reserved, an error
    hostile("corrupt deflate data", (victim, 8, corrupt, len(raw), crc), "corrupt")
    hostile("a wrong CRC-32", (victim, 8, d, len(raw), crc ^ 1), "CRC-32")
    hostile("an uncompressed size that lies up", (victim, 8, d, len(raw) + 100, crc), "fewer")
    hostile("an uncompressed size that lies down", (victim, 8, d, len(raw) - 100, crc), "more")
    hostile("bytes after the end of the deflate stream",
            (victim, 8, d + b"\x00" * 16, len(raw), crc), "ends before")

    # Overwritten in place while mounted: EIO, the rest still served.
    path = os.path.join(t.tmp, "changing.pt")
    write_zip(path, mine)
    with open(path, "rb") as f:
        blob = f.read()
    start = blob.index(dict((m[0], m[2]) for m in mine)[victim])
    with t.mount(path) as mnt:
        got = mounted(mnt)
        with open(path, "r+b") as f:
            f.seek(start)
            f.write(b"\xff" * 8)
        err = None
        try:
            with open(got[victim], "rb") as f:
                f.read()
        except OSError as e:
            err = e.errno
        t.eq("a member corrupted while mounted reads as EIO", errno.EIO, err)
        other = [n for n in want if n != victim][0]
        t.check("the other members are still served",
                open(got[other], "rb").read() == want[other])
    t.done()


if __name__ == "__main__":
    main()

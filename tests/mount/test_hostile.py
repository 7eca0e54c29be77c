#!/usr/bin/python3
r"""tests/mount/test_hostile.py — issue 6, "Hostile corpus": doc/reliability.md
§3, every case that applies to safetensors (1-8) or ONNX (17-24), by case
number, each sub-bullet with its fixture(s) and an asserted outcome.

Outcomes (mount.modelfs(8) DESCRIPTION, LIMITS, Names, THE TREE):
  REFUSED   exit 1; exactly one line on stderr naming the file and the
            problem (the words listed in the table); nothing mounted; the
            model file untouched (sha256 and mtime) and nothing created or
            changed beside it (its directory and the parent's entries).
  ENCODED   the mount works: every hostile name has its encoded entry
            (Names: split on "/" and ".", each segment percent-encoded, "~N"
            on a collision, 255-byte components cut with "%~" + hash), its
            `name` file holds the name and its `data` the tensor's bytes; the
            same tree on a second mount; nothing outside the mount.
  EXPOSED   the mount works and shows the tensor as documented below.
  COMMIT    (case 24) after an edit and `modelfs commit`, the only file
            changed anywhere is the model; nothing is named after a tensor,
            a prop or a location.
Every mount runs as a child of a small spawner process (forked before numpy
or onnx load, see Spawner) and its os.wait4() rusage is asserted: user+sys
CPU <= 5 s and ru_maxrss <= 256 MiB.  For a mount that is refused that is
the whole command; for one that works, the foreground daemon (-f) over its
whole life, reads and commit included.  A mount still running after 20 s
is killed and fails (a FIFO that blocks, a loop).

"bad/" is tests/data/bad/ (generators tests/data/make_bad_{onnx,safetensors}.py),
"good/" is tests/data/good/; "gen" fixtures are written here, in a temp dir.

 case  sub-bullet                     fixture(s)                                      outcome
 ----  -----------------------------  ----------------------------------------------  -------
 1     N > file size                  bad/st_hlen_past_eof                            REFUSED
       N = 0                          bad/st_hlen_zero                                REFUSED
       N < 2                          bad/st_hlen_one                                 REFUSED
       N > 100 MB                     bad/st_hlen_too_large; gen sparse file of       REFUSED
                                      8 + 200000000 bytes (N fits the file)
       N + 8 overflows                bad/st_hlen_overflow                            REFUSED
 2     not starting with '{'          bad/st_not_object, bad/st_blank_header,         REFUSED
                                      gen NUL first, gen 'x' first
                                      gen ' {': JSON whitespace first is accepted     EXPOSED
                                      by the reference reader (doc/formats.md §2.2)
       invalid UTF-8                  bad/st_invalid_utf8                             REFUSED
       invalid JSON                   bad/st_invalid_json, bad/st_json_garbage_after  REFUSED
       JSON nested 10^6 deep          gen 10^6 '[' (1 MB), gen 10^6 '{"a":' (5 MB),   REFUSED
                                      bad/st_deep_nesting (990000 '[')
 3     duplicate tensor names         bad/st_dup_tensor                               REFUSED
       duplicate __metadata__         bad/st_dup_metadata, bad/st_dup_metadata_key,   REFUSED
                                      bad/st_dup_field (a key twice in an entry)
 4     begin > end                    bad/st_begin_after_end                          REFUSED
       overlap                        bad/st_overlap, bad/st_same_range               REFUSED
       gap (hole)                     bad/st_hole, bad/st_hole_at_start               REFUSED
       not ending at EOF              bad/st_past_eof                                 REFUSED
       trailing bytes (polyglot)      bad/st_trailing_bytes, bad/st_trailing_bytes_empty REFUSED
 5     shape product overflows u64    bad/st_shape_overflow                           REFUSED
       x dtype size overflows u64     bad/st_bytes_overflow                           REFUSED
       end - begin != nbytes          bad/st_size_mismatch                            REFUSED
 6     unknown dtype (policy: refuse) bad/st_unknown_dtype, bad/st_dtype_lowercase,   REFUSED
                                      bad/st_dtype_nul, bad/st_dtype_not_string
       sub-byte not byte-aligned      bad/st_subbyte_misaligned, bad/st_f6_misaligned REFUSED
 7     safetensors: "" . .. a/b ../x  good/st_hostile_names (15 names: a/b, a.b and   ENCODED
       /abs, control chars, 10 KB,    a//b collide; a.b.dtype meets a tensor's own
       colliding after encoding       entry; a%2Fb must not meet a/b)
       safetensors: invalid UTF-8     bad/st_name_invalid_utf8,                       REFUSED
                                      bad/st_name_lone_surrogate (JSON cannot carry it)
       safetensors: NUL               bad/st_name_nul                                 REFUSED
       ONNX initializer names: the    gen names.onnx: also \xff\xfe and caf\xc3       ENCODED
       same, and invalid UTF-8        (bytes kept, man page Names), op_type '../op',
                                      graph input '../in', output '/out'
       ONNX: NUL                      gen "n\0ul" + "n\0um" (were both shown as "n")  REFUSED
 8     __metadata__ non-string value  bad/st_metadata_not_string,                     REFUSED
                                      bad/st_metadata_nested, bad/st_metadata_not_object
 17    truncated protobuf             bad/truncated, bad/empty, gen cut inside a      REFUSED
                                      varint; bad/garbage (not protobuf at all)
       overlong varint (> 10 bytes)   bad/overlong_varint, gen 10 bytes > 64 bits     REFUSED
       length > remaining             bad/length_past_end, gen length past EOF        REFUSED
       wrong wire type                gen ModelProto.graph, NodeProto.op_type and     REFUSED
                                      raw_data as varints; groups (3/4); type 7
       field 0                        bad/field_zero                                  REFUSED
 18    subgraph nesting 10^5 deep     gen If.then_branch chain 10^5 deep (3.6 MB)     REFUSED
       TypeProto nesting deep         bad/deep_nesting (300), gen 10^5 (0.8 MB)       REFUSED
 19    /etc/passwd, ../../x,          gen one model each                              REFUSED
       sub/../../x, mymodel_evil/x
       (../mymodel_evil/x.bin and
       absolute), symlink (final,
       intermediate), hardlink, FIFO
       (must not block), device
       (/dev/null, a char device in
       the base dir), /proc/self/
       environ (absolute, symlink),
       "", ".", a directory, NUL
       empty base dir                 gen: MODEL a bare file name, cwd its dir,       REFUSED
                                      location ../mymodel_evil/x.bin;
                                      control: location w.bin reads w.bin             EXPOSED
 20    offset + length overflow       gen 2^64-1 + 2, 2 + 2^64-1, offset 2^64, -1     REFUSED
       beyond file                    gen offset past EOF, length past EOF            REFUSED
       length != dims x elem          gen length 3 for uint8[4]; offset 1, no length  REFUSED
 21    dims negative                  bad/negative_dim                                REFUSED
       dims overflow                  bad/dims_overflow, gen x elem size overflow     REFUSED
       raw_data size != dims x elem   bad/raw_size_mismatch, gen float_data short     REFUSED
       unsupported dtype              gen data_type 0, gen 99 in float_data           REFUSED
                                      gen 99 and -3 in raw_data: opaque bytes,        EXPOSED
                                      dtype "dtype99"/"dtype-3" (doc/formats.md §1.9:
                                      unknown data_type values pass through; the
                                      man page does not say)
 22    duplicate initializer names    gen "w" twice + a sparse "w": weights/w, w~1,   ENCODED
                                      w~2, every `name` "w" (man page: "~N"),
                                      the same on a second mount
 23    inline model > 2 GiB           gen sparse 2^31 bytes and 1 TiB                 REFUSED
 24    commit path                    gen ONNX: initializers "../evil_T",             COMMIT
                                      "/tmp/evil_T", "../../evil2_T",
                                      "a/../../evil3_T", external "../ext_T" at
                                      data/w.bin, prop "x/../../prop_T" =
                                      "/tmp/prop_T"; gen safetensors: "../st_evil_T",
                                      "/tmp/st_evil_T" (T: a random tag)

Not applicable here: the "daemon stays alive" clause for refused files
(nothing is mounted, there is no daemon); for mounts that work it is
checked.  Unknown dtype policy differs by format and both are asserted:
safetensors refuses (doc/formats.md §2.1), ONNX shows a raw_data tensor of an
unknown data_type as opaque bytes and refuses one in typed fields.  No case
here hides a tensor: every problem refuses the whole mount.
"""
import json
import os
import signal
import sys
import time


class Spawner:
    """Runs children and reports their os.wait4() rusage.

    Linux starts a child's ru_maxrss at the RSS of the process that exec'd it
    (exec keeps the old image's high-water mark), so a child spawned by this
    test, which holds onnx and megabytes of fixtures, would report at least
    the test's own RSS.  The spawner is forked first, while the interpreter
    is small, and spawns every mount itself: the mount's ru_maxrss is then
    its own, or the spawner's ~12 MiB, whichever is larger."""

    def __init__(self):
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(w1)
            os.close(r2)
            try:
                self._serve(os.fdopen(r1, "r"), os.fdopen(w2, "w"))
            finally:
                os._exit(0)
        os.close(r1)
        os.close(w2)
        self.req, self.rep = os.fdopen(w1, "w"), os.fdopen(r2, "r")

    @staticmethod
    def _serve(req, rep):
        for line in req:
            q = json.loads(line)
            if q["op"] == "spawn":
                err = os.open(q["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                nul = os.open("/dev/null", os.O_RDWR)
                here = os.getcwd()
                try:
                    os.chdir(q["cwd"] or here)
                    pid = os.posix_spawn(q["argv"][0], q["argv"], dict(os.environ), file_actions=[
                        (os.POSIX_SPAWN_DUP2, nul, 0), (os.POSIX_SPAWN_DUP2, nul, 1),
                        (os.POSIX_SPAWN_DUP2, err, 2)])
                    out = {"pid": pid}
                except OSError as e:
                    out = {"error": str(e)}
                finally:
                    os.chdir(here)
                    os.close(err)
                    os.close(nul)
            else:       # wait: up to `timeout` s; then kill (kill=True) or report running
                deadline = time.monotonic() + q["timeout"]
                killed = False
                while True:
                    p, st, ru = os.wait4(q["pid"], os.WNOHANG)
                    if p:
                        break
                    if time.monotonic() >= deadline:
                        if not q["kill"]:
                            break
                        os.kill(q["pid"], signal.SIGKILL)
                        p, st, ru = os.wait4(q["pid"], 0)
                        killed = True
                        break
                    time.sleep(0.002)
                out = {"running": True} if not p else {
                    "status": os.waitstatus_to_exitcode(st), "killed": killed,
                    "cpu": ru.ru_utime + ru.ru_stime, "maxrss": ru.ru_maxrss * 1024}
            rep.write(json.dumps(out) + "\n")
            rep.flush()

    def _ask(self, **q):
        self.req.write(json.dumps(q) + "\n")
        self.req.flush()
        return json.loads(self.rep.readline())

    def spawn(self, argv, stderr, cwd=None):
        r = self._ask(op="spawn", argv=argv, stderr=stderr, cwd=cwd)
        if "error" in r:
            raise OSError(r["error"])
        return r["pid"]

    def wait(self, pid, timeout, kill=True):
        return self._ask(op="wait", pid=pid, timeout=timeout, kill=kill)

    def close(self):
        self.req.close()
        os.waitpid(self.pid, 0)


SPAWNER = Spawner()     # before anything big is imported

import hashlib  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import stat  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "data"))
from mfstest import MODELFS, MOUNT_MODELFS, SRC, T, is_mounted, unescape_text  # noqa: E402
MODELFS, MOUNT_MODELFS = os.path.abspath(MODELFS), os.path.abspath(MOUNT_MODELFS)   # cwd changes
import make_bad_onnx as pb  # noqa: E402  (hand-encoded protobuf, no onnx code)
from make_bad_safetensors import pack as st_pack  # noqa: E402
from make_bad_safetensors import t as st_entry  # noqa: E402

BAD = os.path.join(SRC, "tests", "data", "bad")
GOOD = os.path.join(SRC, "tests", "data", "good")
MiB = 1 << 20
CPU_MAX = 5.0           # seconds of user + sys per mount
RSS_MAX = 256 * MiB     # ru_maxrss per mount
HANG = 20               # seconds before a mount counts as hung and is killed
U8, INT64, FLOAT = 2, 7, 1

# ------------------------------------------------------------------ fixtures


def ext_tensor(name, loc, dims=(4,), dtype=U8, off=None, length=None):
    """A TensorProto with data_location EXTERNAL and the given keys."""
    kv = [("location", loc)]
    if off is not None:
        kv.append(("offset", str(off)))
    if length is not None:
        kv.append(("length", str(length)))
    t = b"".join(pb.vint(1, d) for d in dims) + pb.vint(2, dtype) + pb.ld(8, name)
    t += b"".join(pb.ld(13, pb.ld(1, k) + pb.ld(2, v)) for k, v in kv)
    return t + pb.vint(14, 1)


def onnx_inits(inits, sparse=(), nodes=(), inputs=(), outputs=()):
    g = pb.graph(nodes=nodes, inits=inits, inputs=inputs, outputs=outputs)
    return pb.model(g + b"".join(pb.ld(15, s) for s in sparse))


def nest(head, levels, inner):
    """head + nested messages without quadratic copying.  `levels`, outermost
    first, are (before, field, after): message = before + ld(field, child) +
    after.  Python protobuf would recurse 10^5 deep; this is flat."""
    sizes = [0] * (len(levels) + 1)
    sizes[-1] = len(inner)
    for i in range(len(levels) - 1, -1, -1):
        b, f, a = levels[i]
        c = sizes[i + 1]
        sizes[i] = len(b) + len(pb.key(f, 2)) + len(pb.varint(c)) + c + len(a)
    out = bytearray(head)
    for i, (b, f, a) in enumerate(levels):
        out += b + pb.key(f, 2) + pb.varint(sizes[i + 1])
    out += inner
    for b, f, a in reversed(levels):
        out += a
    return bytes(out)


MODEL_HEAD = pb.vint(1, 8) + pb.ld(8, pb.ld(1, "") + pb.vint(2, 13))   # ir_version, opset


def deep_subgraphs(n):
    """ModelProto.graph -> (Graph.node -> Node.attribute -> Attribute.g) x n."""
    lv = [(b"", 7, b"")]
    for _ in range(n):
        lv.append((b"", 1, pb.ld(2, "g")))                              # Graph: node, name
        lv.append((pb.ld(4, "If"), 5, b""))                             # Node: op_type, attribute
        lv.append((pb.ld(1, "then_branch") + pb.vint(20, 5), 6, b""))   # Attribute GRAPH
    return nest(MODEL_HEAD, lv, pb.ld(2, "leaf"))


def deep_types(n):
    """A graph input whose TypeProto is sequence_type.elem_type n deep."""
    lv = [(b"", 7, b""), (pb.ld(2, "g"), 11, b""), (pb.ld(1, "X"), 2, b"")]
    lv += [(b"", 4, b""), (b"", 1, b"")] * n
    return nest(MODEL_HEAD, lv, pb.vint(1, FLOAT))


# The hostile names of case 7 and where the Names rules put them (in
# initializer order: "~N" goes to the later of two).  None: a cut name,
# checked by shape.
ONNX_NAMES = [
    (b"", "%"), (b".", "%2E"), (b"..", "%2E%2E"), (b"a/b", "a/b"), (b"a.b", "a/b~1"),
    (b"a%2Fb", "a%252Fb"), (b"../x", "x"), (b"/abs", "abs"), (b"c\x01\x1f\x7f", "c%01%1F%7F"),
    (b"tab\tnl\n", "tab%09nl%0A"), (b"y" * 10240, None), (b"\xff\xfe", b"\xff\xfe"),
    (b"caf\xc3", b"caf\xc3"), ("\u00e9\u4e2d\U0001f600".encode(), "\u00e9\u4e2d\U0001f600"),
    (b"data", "data"),
]
ST_NAMES = [    # good/st_hostile_names.safetensors, in its offset order
    (b"", "%"), (b".", "%2E"), (b"..", "%2E%2E"), (b"a/b", "a/b"), (b"a.b", "a/b~1"),
    (b"a%2Fb", "a%252Fb"), (b"../x", "x"), (b"/abs", "abs"), (b"a//b", "a/b~2"),
    (b"ctl\x01\x1f\x7f", "ctl%01%1F%7F"), (b"tab\tnl\nname", "tab%09nl%0Aname"),
    (b"x" * 10240, None), ("\u00e9\u4e2d\U0001f600".encode(), "\u00e9\u4e2d\U0001f600"),
    (b"data", "data"), (b"a.b.dtype", "a/b/dtype~1"),
]


def fsb(s):
    return s if isinstance(s, bytes) else s.encode()


# ------------------------------------------------------------------ checks


def fingerprint(path):
    st = os.stat(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(4 * MiB), b""):
            h.update(b)
    return h.hexdigest(), st.st_mtime_ns, st.st_size


def fingerprint_sparse(path):
    """For the huge sparse files: size, mtime and the allocated blocks (a
    write would allocate), plus the hash of the first MiB."""
    st = os.stat(path)
    with open(path, "rb") as f:
        head = hashlib.sha256(f.read(MiB)).hexdigest()
    return head, st.st_mtime_ns, st.st_size, st.st_blocks


def snapshot(model):
    """Everything in the model's directory (recursively) and the entries of
    its parent: type, size, mtime, inode.  lstat only: FIFOs stay closed."""
    d = os.path.dirname(os.path.abspath(model))
    out = {}
    for dp, dns, fns in os.walk(d):
        for n in dns + fns:
            p = os.path.join(dp, n)
            st = os.lstat(p)
            out[p] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ino)
    parent = os.path.dirname(d)
    for n in os.listdir(parent):
        p = os.path.join(parent, n)
        st = os.lstat(p)
        out.setdefault(p, (stat.S_IFMT(st.st_mode), None, None, st.st_ino))
    return out


def snap_diff(a, b):
    added = sorted(set(b) - set(a))
    gone = sorted(set(a) - set(b))
    changed = sorted(p for p in set(a) & set(b) if a[p] != b[p])
    return added, gone, changed


def usage(r):
    return "cpu %.3f s, maxrss %.1f MiB" % (r["cpu"], r["maxrss"] / MiB)


def usage_bad(r):
    why = []
    if r.get("killed"):
        why.append("hung: killed after %d s" % HANG)
    if r["cpu"] > CPU_MAX:
        why.append("CPU %.2f s > %.0f s" % (r["cpu"], CPU_MAX))
    if r["maxrss"] > RSS_MAX:
        why.append("maxrss %d MiB > %d MiB" % (r["maxrss"] // MiB, RSS_MAX // MiB))
    return why


def tensor_dirs(root):
    """{name bytes: [relative dir, ...]} for every tensor directory under root."""
    found = {}
    for dp, dns, fns in os.walk(root.encode()):
        if {b"data", b"dtype", b"shape", b"name"} <= set(fns):
            with open(os.path.join(dp, b"name"), "rb") as f:
                nm = f.read()
            rel = os.path.relpath(dp, root.encode())
            # A name file holds the name escaped (doc/design.md §3.5).
            found.setdefault(unescape_text(nm[:-1]) if nm.endswith(b"\n") else
                             nm + b"<no newline>", []).append(rel)
    return found


class Hostile:
    def __init__(self, t):
        self.t = t
        self.mnt = os.path.join(t.tmp, "mnt")
        os.makedirs(self.mnt)
        self.n = 0

    def fixture(self, name, data, sub=None):
        """Write `data` to a fresh directory; returns the path."""
        self.n += 1
        d = os.path.join(self.t.tmp, "fx", sub or "%03d" % self.n)
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def copy(self, src):
        self.n += 1
        d = os.path.join(self.t.tmp, "fx", "%03d" % self.n)
        os.makedirs(d)
        return shutil.copy2(src, d)

    # -- the mount command, refused

    def refused(self, case, what, path, words, arg=None, cwd=None, sparse=False):
        """Mount of `path` (given as `arg`, run in `cwd`) is refused."""
        t = self.t
        label = "case %s: %s (%s)" % (case, what, os.path.basename(path))
        fp = fingerprint_sparse if sparse else fingerprint
        before, snap = fp(path), snapshot(path)
        errp = os.path.join(t.tmp, "stderr")
        pid = SPAWNER.spawn([MOUNT_MODELFS, arg or path, self.mnt], errp, cwd)
        r = SPAWNER.wait(pid, HANG)
        err = open(errp, errors="replace").read()
        why = usage_bad(r)
        if is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", self.mnt], stderr=subprocess.DEVNULL)
            why.append("it mounted")
        lines = err.strip("\n").split("\n") if err.strip() else []
        if r["status"] != 1:
            why.append("exit status %s" % r["status"])
        if len(lines) != 1:
            why.append("%d lines on stderr" % len(lines))
        line = lines[0] if lines else ""
        if os.path.basename(path) not in line:
            why.append("message does not name the file")
        missing = [w for w in words if w.lower() not in line.lower()]
        if missing:
            why.append("message lacks %r" % missing)
        if fp(path) != before:
            why.append("model file changed (sha256/mtime)")
        added, gone, changed = snap_diff(snap, snapshot(path))
        if added or gone or changed:
            why.append("beside the model: added %s gone %s changed %s" % (added, gone, changed))
        if why:
            return t.not_ok(label + " refused", "; ".join(why) + " | stderr: " + err.strip())
        t.ok("%s refused: %s [%s]" % (label, line[:400], usage(r)))

    # -- the mount works: a foreground daemon, checked, unmounted

    def mounted(self, case, what, path, check, arg=None, cwd=None):
        """Mount `path` with -f; check(mnt) returns a list of (ok, what, why)
        lines to print; then unmount and assert the daemon's exit and usage.
        Returns the check's result (or None if it did not mount)."""
        t = self.t
        label = "case %s: %s (%s)" % (case, what, os.path.basename(path))
        before, snap = fingerprint(path), snapshot(path)
        errp = os.path.join(t.tmp, "stderr")
        pid = SPAWNER.spawn([MOUNT_MODELFS, "-f", arg or path, self.mnt], errp, cwd)
        deadline = time.monotonic() + HANG
        while not is_mounted(self.mnt):
            r = SPAWNER.wait(pid, 0.01, kill=time.monotonic() > deadline)
            if not r.get("running"):
                t.not_ok(label + " mounts", "exit %s: %s" % (r["status"], open(errp).read()))
                return None
        result, why = [], []
        try:
            result = check(self.mnt)
        except Exception as e:  # noqa: BLE001
            why.append("check raised %r" % e)
        alive = SPAWNER.wait(pid, 0, kill=False).get("running")
        subprocess.run(["fusermount3", "-u", self.mnt], stderr=subprocess.DEVNULL)
        r = SPAWNER.wait(pid, 60)
        for ok, w, y in result:
            t.check("%s: %s" % (label, w), ok, y)
        why += usage_bad(r)
        if not alive:
            why.append("daemon died during the checks")
        if r["status"] != 0:
            why.append("daemon exit status %s" % r["status"])
        err = open(errp, errors="replace").read().strip()
        if err:
            why.append("daemon stderr: %s" % err[:300])
        if fingerprint(path) != before:
            why.append("model file changed (sha256/mtime)")
        added, gone, changed = snap_diff(snap, snapshot(path))
        if added or gone or changed:
            why.append("beside the model: added %s gone %s changed %s" % (added, gone, changed))
        t.check("%s: mounted and unmounted cleanly, model untouched, nothing created beside "
                "it [%s]" % (label, usage(r)), not why, "; ".join(why))
        return result

    # -- case 7 / 22: every name at its encoded place, reading its bytes

    def names(self, case, what, path, expect, values):
        """expect: [(name bytes, expected relative path under weights/ or None)];
        values[i]: the bytes of tensor i's data."""
        trees = []

        def check(mnt):
            out = []
            w = os.path.join(mnt, "weights")
            found = tensor_dirs(w)
            trees.append(sorted((k, sorted(v)) for k, v in found.items()))
            for i, (nm, want) in enumerate(expect):
                shown = repr(nm[:20] + (b"..." if len(nm) > 20 else b""))
                dirs = found.get(nm, [])
                dp = None
                if want is None:
                    cut = [d for d in dirs if re.fullmatch(rb"%s+%%~[0-9A-Fa-f]{16}" % nm[:1], d)]
                    ok = len(cut) == 1 and len(cut[0]) <= 255
                    dp = cut[0] if ok else None
                    where = "a %d-byte component ending in %%~<hash>" % len(cut[0]) if ok else ""
                else:
                    dp = fsb(want) if fsb(want) in dirs else None
                    ok = dp is not None
                    where = "weights/" + fsb(want).decode(errors="backslashreplace")
                if not ok:
                    out.append((False, "name %s at %s" % (shown, where or "a cut component"),
                                "directories with that name file: %r" % dirs))
                    continue
                full = os.path.join(w.encode(), dp)
                inside = os.path.realpath(full).startswith(os.path.realpath(w).encode() + b"/")
                with open(os.path.join(full, b"data"), "rb") as f:
                    data = f.read()
                out.append((inside and data == values[i],
                            "name %s is %s, reads its bytes" % (shown, where),
                            "inside=%s data=%r want %r" % (inside, data[:16], values[i][:16])))
            n = sum(len(v) for v in found.values())
            out.append((n == len(expect), "%d tensor directories, one per tensor" % n,
                        "found %d, expected %d" % (n, len(expect))))
            return out

        self.mounted(case, what, path, check)
        self.mounted(case, what + ", second mount", path,
                     lambda mnt: [(sorted((k, sorted(v)) for k, v in
                                          tensor_dirs(os.path.join(mnt, "weights")).items())
                                   == (trees[0] if trees else None),
                                   "the same tree as the first mount (deterministic)", "")])


# ------------------------------------------------------------------ the cases


def safetensors_cases(h):
    R = h.refused

    def bad(n):
        return os.path.join(BAD, n + ".safetensors")

    # 1. header length N
    R(1, "N > file size", bad("st_hlen_past_eof"), ["header length", "past the end"])
    R(1, "N = 0", bad("st_hlen_zero"), ["header length 0", "minimum"])
    R(1, "N < 2", bad("st_hlen_one"), ["header length 1", "minimum"])
    R(1, "N > 100 MB", bad("st_hlen_too_large"), ["200000000", "100000000"])
    p = h.fixture("st_hlen_200M_sparse.safetensors", struct.pack("<Q", 200_000_000) + b"{")
    os.truncate(p, 8 + 200_000_000)
    R(1, "N > 100 MB, file long enough", p, ["200000000", "100000000"], sparse=True)
    os.unlink(p)
    R(1, "N + 8 overflows", bad("st_hlen_overflow"), ["18446744073709551615", "overflows"])

    # 2. header text
    R(2, "header not starting with '{' (array)", bad("st_not_object"), ["start with '{'"])
    R(2, "header not starting with '{' (blank)", bad("st_blank_header"), ["blank"])
    R(2, "header not starting with '{' (NUL)",
      h.fixture("st_nul_first.safetensors", st_pack(b"\0{}")), ["start with '{'", "0x00"])
    R(2, "header not starting with '{' (letter)",
      h.fixture("st_x_first.safetensors", st_pack(b"x{}")), ["start with '{'", "0x78"])
    ws = h.fixture("st_ws_first.safetensors",
                   st_pack(b' {"w":' + json.dumps(st_entry("U8", [1], 0, 1)).encode() + b"}",
                           b"\x2a"))
    h.mounted(2, "JSON whitespace before '{' (accepted, doc/formats.md §2.2)", ws,
              lambda mnt: [(open(os.path.join(mnt, "weights", "w", "data"), "rb").read()
                            == b"\x2a", "tensor w reads its byte", "")])
    R(2, "invalid UTF-8", bad("st_invalid_utf8"), ["UTF-8"])
    R(2, "invalid JSON", bad("st_invalid_json"), ["not valid JSON"])
    R(2, "invalid JSON (garbage after the object)", bad("st_json_garbage_after"),
      ["not valid JSON"])
    R(2, "JSON nested 10^6 deep (arrays)",
      h.fixture("st_deep_1e6_arrays.safetensors",
                st_pack(b'{"a":' + b"[" * 10**6 + b"}", pad=False)), ["nests deeper"])
    R(2, "JSON nested 10^6 deep (objects)",
      h.fixture("st_deep_1e6_objects.safetensors",
                st_pack(b'{"a":' * 10**6 + b"}", pad=False)), ["nests deeper"])
    R(2, "JSON nested 990000 deep", bad("st_deep_nesting"), ["nests deeper"])

    # 3. duplicates
    R(3, "duplicate tensor names", bad("st_dup_tensor"), ["duplicate key", '"a"'])
    R(3, "duplicate __metadata__", bad("st_dup_metadata"), ["duplicate key", "__metadata__"])
    R(3, "duplicate __metadata__ key", bad("st_dup_metadata_key"), ["duplicate key", '"k"'])
    R(3, "duplicate field in an entry", bad("st_dup_field"), ["duplicate key", "dtype"])

    # 4. data_offsets
    R(4, "begin > end", bad("st_begin_after_end"), ["begin after end"])
    R(4, "overlap", bad("st_overlap"), ["overlap"])
    R(4, "overlap (same range)", bad("st_same_range"), ["overlap"])
    R(4, "gap (hole)", bad("st_hole"), ["hole"])
    R(4, "gap (hole at the start)", bad("st_hole_at_start"), ["hole"])
    R(4, "not ending at EOF (past it)", bad("st_past_eof"), ["past the end"])
    R(4, "trailing bytes (polyglot)", bad("st_trailing_bytes"), ["trailing bytes"])
    R(4, "trailing bytes (no tensors)", bad("st_trailing_bytes_empty"), ["trailing bytes"])

    # 5. sizes
    R(5, "shape product overflows u64", bad("st_shape_overflow"), ["overflows"])
    R(5, "shape x dtype size overflows u64", bad("st_bytes_overflow"), ["overflows"])
    R(5, "end - begin != nbytes", bad("st_size_mismatch"), ["20 bytes", "need 24"])

    # 6. dtypes (policy: an unknown dtype refuses the file)
    R(6, "unknown dtype", bad("st_unknown_dtype"), ["unknown dtype 'F7'"])
    R(6, "unknown dtype (lower case)", bad("st_dtype_lowercase"), ["unknown dtype 'f32'"])
    R(6, "unknown dtype (NUL inside)", bad("st_dtype_nul"), ["unknown dtype"])
    R(6, "dtype not a string", bad("st_dtype_not_string"), ["dtype is not a string"])
    R(6, "sub-byte dtype not byte-aligned (F4)", bad("st_subbyte_misaligned"), ["misaligned"])
    R(6, "sub-byte dtype not byte-aligned (F6)", bad("st_f6_misaligned"), ["misaligned"])

    # 7. names
    h.names(7, "hostile names", h.copy(os.path.join(GOOD, "st_hostile_names.safetensors")),
             ST_NAMES, [bytes([i]) for i in range(len(ST_NAMES))])
    R(7, "name with invalid UTF-8", bad("st_name_invalid_utf8"), ["UTF-8"])
    R(7, "name with a lone surrogate escape", bad("st_name_lone_surrogate"), ["Unicode"])
    R(7, "name with NUL", bad("st_name_nul"), ["NUL"])
    onnx_names(h)

    # 8. __metadata__
    R(8, "__metadata__ with a number value", bad("st_metadata_not_string"), ["not a string"])
    R(8, "__metadata__ with an object value", bad("st_metadata_nested"), ["not a string"])
    R(8, "__metadata__ not an object", bad("st_metadata_not_object"), ["not an object"])


def onnx_names(h):
    """Case 7 for ONNX: initializer names, op_type, graph input/output names."""
    R = h.refused
    inits = [pb.tensor(nm, U8, [1], bytes([i])) for i, (nm, _) in enumerate(ONNX_NAMES)]
    p = h.fixture("names.onnx", pb.model(pb.graph(
        nodes=[pb.node("../op", ["../in"], ["/out"])], inits=inits,
        inputs=[pb.value_info("../in", pb.tensor_type(U8, [1]))],
        outputs=[pb.value_info("/out", pb.tensor_type(U8, [1]))])))
    h.names(7, "ONNX initializer names", p, ONNX_NAMES, [bytes([i]) for i in range(len(inits))])
    h.mounted(7, "ONNX op_type and graph input/output names", p, lambda mnt: [
        (os.listdir(os.path.join(mnt, "nodes")) == ["0000-..%2Fop"], "op_type '../op' in "
         "nodes/0000-..%2Fop", repr(os.listdir(os.path.join(mnt, "nodes")))),
        (os.listdir(os.path.join(mnt, "inputs")) == ["..%2Fin"], "input '../in' is inputs/..%2Fin",
         repr(os.listdir(os.path.join(mnt, "inputs")))),
        (os.listdir(os.path.join(mnt, "outputs")) == ["%2Fout"], "output '/out' is outputs/%2Fout",
         repr(os.listdir(os.path.join(mnt, "outputs"))))])
    R(7, "ONNX initializer names with NUL (n\\0ul, n\\0um)", h.fixture("name_nul.onnx", onnx_inits(
        [pb.tensor(b"n\0ul", U8, [1], b"a"), pb.tensor(b"n\0um", U8, [1], b"b")])),
      ["NUL", "graph.initializer[0]"])


def onnx_cases(h):
    R = h.refused

    def bad(n):
        return os.path.join(BAD, n + ".onnx")

    good = pb.good_model()

    # 17. wire format
    R(17, "truncated protobuf", bad("truncated"), ["truncated"])
    R(17, "truncated to nothing", bad("empty"), ["empty"])
    cut = pb.model(pb.graph(inits=[pb.tensor("w", U8, [1], b"\1" * 300)]))
    i = cut.index(b"\x4a\xac\x02")          # raw_data: key, then a 2-byte length varint
    R(17, "truncated inside a varint", h.fixture("cut_varint.onnx", cut[:i + 2]),
      ["past end of file"])
    R(17, "not protobuf at all", bad("garbage"), ["not a model of any known format"])
    R(17, "overlong varint (11 bytes)", bad("overlong_varint"), ["longer than 10 bytes"])
    R(17, "varint over 64 bits (10 bytes)",
      h.fixture("varint_overflow.onnx", pb.model(pb.graph(inits=[
          pb.key(1, 0) + b"\xff" * 9 + b"\x02" + pb.vint(2, U8) + pb.ld(8, "v")
          + pb.ld(9, b"\0")]))), ["overflows 64 bits"])
    R(17, "length > remaining (inside a message)", bad("length_past_end"),
      ["length prefix past end"])
    R(17, "length > remaining (past EOF)",
      h.fixture("len_past_eof.onnx", pb.vint(1, 8) + pb.key(7, 2) + pb.varint(1 << 40)
                + b"\0" * 16), ["length prefix past end of file"])
    R(17, "wrong wire type (ModelProto.graph as varint)",
      h.fixture("wt_graph.onnx", pb.vint(1, 8) + pb.vint(7, 5)), ["wire type 0"])
    R(17, "wrong wire type (NodeProto.op_type as varint)",
      h.fixture("wt_op_type.onnx", pb.model(pb.graph(nodes=[pb.ld(1, "X") + pb.vint(4, 3)]))),
      ["NodeProto", "wrong wire type"])
    R(17, "wrong wire type (raw_data as varint)",
      h.fixture("wt_raw.onnx", pb.model(pb.graph(inits=[pb.tensor("w", U8, [1])
                                                          + pb.vint(9, 3)]))),
      ["raw_data with wire type 0"])
    R(17, "wrong wire type (group 3/4)",
      h.fixture("wt_group.onnx", pb.model(pb.graph(nodes=[
          pb.node("Relu", ["X"], ["Y"]) + pb.key(5, 3) + pb.key(5, 4)]))), ["wire type 3/4"])
    R(17, "wrong wire type (7)",
      h.fixture("wt_7.onnx", pb.model(pb.graph(nodes=[pb.node("Relu", ["X"], ["Y"])
                                                      + pb.key(5, 7)]))), ["wire type 6/7"])
    R(17, "field 0", bad("field_zero"), ["field number 0"])

    # 18. nesting
    R(18, "subgraph nesting 10^5 deep (If.then_branch)",
      h.fixture("subgraph_1e5.onnx", deep_subgraphs(10**5)), ["nested deeper than 64"])
    R(18, "TypeProto nesting 300 deep", bad("deep_nesting"), ["nested deeper than 64"])
    R(18, "TypeProto nesting 10^5 deep", h.fixture("typeproto_1e5.onnx", deep_types(10**5)),
      ["nested deeper than 64"])

    # 19. external data locations
    top = os.path.join(h.t.tmp, "fx", "c19")
    base = os.path.join(top, "mymodel")
    os.makedirs(os.path.join(base, "sub"))
    os.makedirs(os.path.join(top, "mymodel_evil"))
    for p, b in ((os.path.join(top, "mymodel_evil", "x.bin"), b"EVIL"),
                 (os.path.join(top, "x"), b"EVIL"), (os.path.join(base, "w.bin"), b"GOOD"),
                 (os.path.join(base, "sub", "w.bin"), b"GOOD"),
                 (os.path.join(base, "hardsrc.bin"), b"GOOD")):
        with open(p, "wb") as f:
            f.write(b)
    os.symlink("w.bin", os.path.join(base, "link.bin"))
    os.symlink("sub", os.path.join(base, "linkdir"))
    os.symlink("/proc/self/environ", os.path.join(base, "proc.bin"))
    os.link(os.path.join(base, "hardsrc.bin"), os.path.join(base, "hard.bin"))
    os.mkfifo(os.path.join(base, "fifo.bin"))
    os.mknod(os.path.join(base, "null.bin"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    evil_abs = os.path.join(top, "mymodel_evil", "x.bin")
    locs = [
        ("/etc/passwd", "/etc/passwd", ["absolute"]),
        ("../../x", "../../x", ["'..'"]),
        ("sub/../../x", "sub/../../x", ["'..'"]),
        ("mymodel_evil/x prefix trick, relative", "../mymodel_evil/x.bin", ["'..'"]),
        ("mymodel_evil/x prefix trick, absolute", evil_abs, ["absolute"]),
        ("symlink (final)", "link.bin", ["symlink"]),
        ("symlink (intermediate directory)", "linkdir/w.bin", ["symlink"]),
        ("hardlink (st_nlink 2)", "hard.bin", ["link"]),
        ("FIFO (must not block)", "fifo.bin", ["not a regular file"]),
        ("device /dev/null", "/dev/null", ["absolute"]),
        ("character device in the base dir", "null.bin", ["not a regular file"]),
        ("/proc/self/environ", "/proc/self/environ", ["absolute"]),
        ("/proc/self/environ through a symlink", "proc.bin", ["symlink"]),
        ("empty location", "", ["empty"]),
        ("location '.'", ".", ["directory"]),
        ("location naming a directory", "sub", ["not a regular file"]),
        ("NUL inside the location (w.bin\\0/../../x)", "w.bin\0/../../x", ["NUL"]),
    ]
    for i, (what, loc, words) in enumerate(locs):
        p = os.path.join(base, "loc%02d.onnx" % i)
        with open(p, "wb") as f:
            f.write(onnx_inits([ext_tensor("w", loc)]))
        R(19, "location " + what, p, words)
    # Empty base dir: MODEL is a bare file name, resolved against the cwd.
    p = os.path.join(base, "bare.onnx")
    with open(p, "wb") as f:
        f.write(onnx_inits([ext_tensor("w", "../mymodel_evil/x.bin")]))
    R(19, "empty base dir (MODEL 'bare.onnx' in its dir), location ../mymodel_evil/x.bin",
      p, ["'..'"], arg="bare.onnx", cwd=base)
    p = os.path.join(base, "bare_ok.onnx")
    with open(p, "wb") as f:
        f.write(onnx_inits([ext_tensor("w", "w.bin")]))
    h.mounted(19, "empty base dir (MODEL 'bare_ok.onnx' in its dir), location w.bin", p,
              lambda mnt: [(open(os.path.join(mnt, "weights", "w", "data"), "rb").read()
                            == b"GOOD", "w reads w.bin beside the model", "")],
              arg="bare_ok.onnx", cwd=base)

    # 20. external offset / length
    offs = [
        ("offset + length overflow (2^64-1 + 2)", dict(off=2**64 - 1, length=2), ["past the end"]),
        ("offset + length overflow (2 + 2^64-1)", dict(off=2, length=2**64 - 1),
         ["past the end"]),
        ("offset 2^64 (not a uint64)", dict(off=2**64, length=4), ["out of range"]),
        ("offset -1", dict(off=-1, length=4), ["not a decimal number"]),
        ("offset beyond the file", dict(off=5, length=4), ["past the end"]),
        ("length beyond the file", dict(off=0, length=4096), ["past the end"]),
        ("length != dims x elem (3 for uint8[4])", dict(off=0, length=3), ["length 3", "need 4"]),
        ("length != dims x elem (no length, offset 1)", dict(off=1), ["length 3", "need 4"]),
    ]
    for i, (what, kw, words) in enumerate(offs):
        p = os.path.join(base, "off%02d.onnx" % i)
        with open(p, "wb") as f:
            f.write(onnx_inits([ext_tensor("w", "w.bin", **kw)]))
        R(20, what, p, words)

    # 21. dims and dtypes
    R(21, "negative dim", bad("negative_dim"), ["negative dim"])
    R(21, "dims product overflows", bad("dims_overflow"), ["overflows"])
    R(21, "dims x elem size overflows",
      h.fixture("bytes_overflow.onnx", onnx_inits([pb.tensor("w", FLOAT, [1 << 62, 2],
                                                              raw=b"\0" * 4)])), ["overflows"])
    R(21, "raw_data size != dims x elem", bad("raw_size_mismatch"), ["12 bytes", "needs 16"])
    R(21, "float_data count != dims",
      h.fixture("float_data_short.onnx", onnx_inits([pb.tensor(
          "w", FLOAT, [4], extra=pb.ld(4, struct.pack("<3f", 1, 2, 3)))])),
      ["float_data holds 12 bytes"])
    R(21, "dtype 0 (UNDEFINED)", h.fixture("dtype0.onnx", onnx_inits([
        pb.tensor("w", 0, [1], raw=b"a")])), ["no data_type"])
    R(21, "unknown dtype 99 in float_data", h.fixture("dtype99_typed.onnx", onnx_inits([
        pb.tensor("w", 99, [1], extra=pb.ld(4, b"\0" * 4))])), ["cannot hold dtype99"])
    for dt in (99, -3):
        p = h.fixture("dtype%d_raw.onnx" % dt, onnx_inits([pb.tensor("w", dt, [3],
                                                                     raw=b"xyz")]))

        def opaque(mnt, dt=dt):
            d = os.path.join(mnt, "weights", "w")
            return [(open(os.path.join(d, "dtype")).read() == "dtype%d\n" % dt
                     and open(os.path.join(d, "data"), "rb").read() == b"xyz"
                     and open(os.path.join(d, "shape")).read() == "3\n",
                     "exposed as opaque bytes: dtype 'dtype%d', shape 3, data = raw_data" % dt,
                     "dtype %r" % open(os.path.join(d, "dtype")).read())]
        h.mounted(21, "unknown dtype %d in raw_data" % dt, p, opaque)

    # 22. duplicate initializer names: "~N", documented
    sparse = (pb.ld(1, pb.tensor("w", U8, [1], b"c"))
              + pb.ld(2, pb.tensor("", INT64, [1], struct.pack("<q", 1))) + pb.vint(3, 4))
    p = h.fixture("dup_init.onnx", onnx_inits(
        [pb.tensor("w", U8, [1], b"a"), pb.tensor("w", U8, [1], b"b")], sparse=[sparse]))

    def dups(mnt):
        w = os.path.join(mnt, "weights")
        got = {e: open(os.path.join(w, e, "name")).read() for e in sorted(os.listdir(w))}
        data = [open(os.path.join(w, e, "data"), "rb").read() for e in ("w", "w~1")]
        sp_vals = open(os.path.join(w, "w~2", "values", "data"), "rb").read()
        return [(got == {"w": "w\n", "w~1": "w\n", "w~2": "w\n"},
                 "weights/w, w~1 and w~2 (sparse), every name file 'w'", repr(got)),
                (data == [b"a", b"b"] and sp_vals == b"c",
                 "w reads the first, w~1 the second, w~2/values the sparse values",
                 repr((data, sp_vals)))]
    h.mounted(22, "duplicate initializer names", p, dups)
    h.mounted(22, "duplicate initializer names, second mount", p, dups)

    # 23. inline model > 2 GiB: refused from its size, without reading it
    for size, what in ((1 << 31, "2^31 bytes"), (1 << 40, "1 TiB")):
        p = h.fixture("huge.onnx", good, sub="c23")
        os.truncate(p, size)
        R(23, "inline model of %s (sparse)" % what, p, [str(size), "2 GiB"], sparse=True)
        os.unlink(p)


# ------------------------------------------------------------------ case 24


def tree_state(root):
    """Every entry under root: files by type, size, mtime and inode;
    directories by inode only (a commit's temp file and rename touch the
    model directory's mtime, and that is not a file created or changed)."""
    out = {}
    for dp, dns, fns in os.walk(root):
        for n in dns + fns:
            p = os.path.join(dp, n)
            st = os.lstat(p)
            out[p] = ((stat.S_IFMT(st.st_mode), st.st_ino) if stat.S_ISDIR(st.st_mode) else
                      (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ino))
    return out


def tagged(tag, model):
    """Entries named with `tag` wherever a path-like tensor name could lead
    a writer: every ancestor of the model's directory, /tmp, the cwd."""
    dirs = {"/tmp", os.getcwd()}
    d = os.path.dirname(os.path.abspath(model))
    while True:
        dirs.add(d)
        if d == "/":
            break
        d = os.path.dirname(d)
    return sorted(os.path.join(d, n) for d in dirs for n in os.listdir(d) if tag in n)


def commit_case(h, what, model, mnt_edit, tag, expect_changed, check_model):
    """Mount model read-write, mnt_edit(mnt) stages edits, `modelfs commit`,
    unmount; the only change under the model's grandparent is the model."""
    t = h.t
    label = "case 24: commit path, %s (%s)" % (what, os.path.basename(model))
    root = os.path.dirname(os.path.dirname(os.path.abspath(model)))
    before = tree_state(root)
    errp = os.path.join(t.tmp, "stderr")
    pid = SPAWNER.spawn([MOUNT_MODELFS, "-f", model, h.mnt], errp)
    deadline = time.monotonic() + HANG
    while not is_mounted(h.mnt):
        r = SPAWNER.wait(pid, 0.01, kill=time.monotonic() > deadline)
        if not r.get("running"):
            return t.not_ok(label, "did not mount: %s" % open(errp).read())
    why = []
    try:
        mnt_edit(h.mnt)
        c = subprocess.run([MODELFS, "commit", h.mnt], capture_output=True, text=True,
                           timeout=120)
        if c.returncode != 0:
            why.append("modelfs commit exit %d: %s" % (c.returncode, c.stderr.strip()))
        st = open(os.path.join(h.mnt, ".modelfs", "status")).read()
        if "last commit: ok" not in st:
            why.append("status: " + st.strip().replace("\n", " | "))
    except Exception as e:  # noqa: BLE001
        why.append("edit raised %r" % e)
    subprocess.run(["fusermount3", "-u", h.mnt], stderr=subprocess.DEVNULL)
    r = SPAWNER.wait(pid, 60)
    why += usage_bad(r)
    if r["status"] != 0:
        why.append("daemon exit status %s: %s" % (r["status"], open(errp).read().strip()))
    added, gone, changed = snap_diff(before, tree_state(root))
    # The commit renames a new file over the model: a new inode, same path.
    if added or gone or changed != sorted(expect_changed):
        why.append("under %s: added %s, gone %s, changed %s (expected only %s)"
                   % (root, added, gone, changed, expect_changed))
    hits = tagged(tag, model)
    if hits:
        why.append("files named after a tensor/prop/location: %s" % hits)
    try:
        ok, w = check_model()
        if not ok:
            why.append(w)
    except Exception as e:  # noqa: BLE001
        why.append("committed model: %r" % e)
    t.check("%s: only the model changed, nothing named after a tensor, prop or location "
            "anywhere (%s), edits committed [%s]" % (label, ", ".join(sorted(
                set(os.path.relpath(p, root) for p in changed))), usage(r)), not why,
            "; ".join(why))


def commit_cases(h):
    tag = "mfs_hostile_" + secrets.token_hex(4)
    # ONNX: inline tensors named like paths, an external tensor at data/w.bin.
    root = os.path.join(h.t.tmp, "c24", "models")
    os.makedirs(os.path.join(root, "data"))
    names = ["../evil_" + tag, "/tmp/evil_" + tag, "../../evil2_" + tag, "a/../../evil3_" + tag]
    with open(os.path.join(root, "data", "w.bin"), "wb") as f:
        f.write(b"GOOD")
    model = os.path.join(root, "m.onnx")
    with open(model, "wb") as f:
        f.write(onnx_inits([pb.tensor(n, U8, [4], b"\0" * 4) for n in names]
                           + [ext_tensor("../ext_" + tag, "data/w.bin")]))

    def edit(mnt):
        for n in names:
            rel = "/".join(s for s in re.split(r"[/.]", n) if s)
            with open(os.path.join(mnt, "weights", rel, "data"), "r+b") as f:
                f.write(b"EDIT")
        # (a name starting with "." would be a scratch file, man page WRITING)
        with open(os.path.join(mnt, "meta", "props", "x%2F..%2F..%2Fprop_" + tag), "w") as f:
            f.write("/tmp/prop_" + tag + "\n")

    def check():
        import onnx     # late: only the parent's RSS grows
        m = onnx.load(model, load_external_data=False)
        raws = {i.name: i.raw_data for i in m.graph.initializer}
        props = {p.key: p.value for p in m.metadata_props}
        ok = (all(raws.get(n) == b"EDIT" for n in names)
              and props.get("x/../../prop_" + tag) == "/tmp/prop_" + tag
              and open(os.path.join(root, "data", "w.bin"), "rb").read() == b"GOOD")
        return ok, "committed model: %r %r" % (raws, props)
    commit_case(h, "ONNX with path-like tensor names, prop key and location", model, edit, tag,
                [model], check)

    # safetensors
    root = os.path.join(h.t.tmp, "c24st", "models")
    os.makedirs(root)
    names = ["../st_evil_" + tag, "/tmp/st_evil_" + tag]
    hdr = {n: st_entry("U8", [4], 4 * i, 4 * i + 4) for i, n in enumerate(names)}
    model = os.path.join(root, "m.safetensors")
    with open(model, "wb") as f:
        f.write(st_pack(hdr, b"\0" * 8))

    def edit_st(mnt):
        for n in names:
            rel = "/".join(s for s in re.split(r"[/.]", n) if s)
            with open(os.path.join(mnt, "weights", rel, "data"), "r+b") as f:
                f.write(b"EDIT")

    def check_st():
        with open(model, "rb") as f:
            b = f.read()
        n = struct.unpack("<Q", b[:8])[0]
        h2 = json.loads(b[8:8 + n])
        buf = b[8 + n:]
        got = {k: buf[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in h2.items()
               if k != "__metadata__"}
        return got == {n_: b"EDIT" for n_ in names}, "committed tensors: %r" % got
    commit_case(h, "safetensors with path-like tensor names", model, edit_st, tag, [model],
                check_st)


def main():
    t = T()
    h = Hostile(t)
    try:
        safetensors_cases(h)
        onnx_cases(h)
        commit_cases(h)
    except Exception as e:  # noqa: BLE001
        t.not_ok("test_hostile.py ran to the end", repr(e))
    finally:
        if is_mounted(h.mnt):
            subprocess.run(["fusermount3", "-u", h.mnt], stderr=subprocess.DEVNULL)
        SPAWNER.close()
    t.done()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""A directory of 100,000 props (issue 11, item 7), through the kernel.

Every lookup and attribute of meta/props/<key> used to copy and encode the
whole props list, so `ls meta/props` of 100,000 props ran for ten minutes
at full CPU.  This mounts a copy of examples/linear.onnx with 100,000
metadata_props appended (each one a top-level field 14 of the ModelProto,
which python3-onnx reads back as the same list), lists the directory with
`ls` and `ls -l`, reads, stats, edits and removes props, and checks that
the daemon's CPU time for all of it stays under a budget a quadratic
daemon passes within its first few thousand entries.  The daemon is
watched while each command runs and killed when it goes over, so a
regression fails in bounded time instead of hanging the run.  No wall-clock
time is asserted; the CPU figures are printed as comments.
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mfstest import MODELFS, SRC, T, daemon_pids  # noqa: E402

N = 100000
CPU_BUDGET = 120.0      # seconds of daemon CPU for everything below


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def prop_field(key, value):
    k, v = key.encode(), value.encode()
    entry = b"\x0a" + varint(len(k)) + k + b"\x12" + varint(len(v)) + v
    return b"\x72" + varint(len(entry)) + entry


def cpu_of(pid):
    """User + system CPU seconds of process `pid`."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    t = T()
    d = os.path.join(t.tmp, "model")
    os.mkdir(d)
    model = os.path.join(d, "many.onnx")
    shutil.copy(os.path.join(SRC, "examples", "linear.onnx"), model)
    with open(model, "ab") as f:
        f.write(b"".join(prop_field("key%06d" % i, "value %d" % i) for i in range(N)))

    with t.mount(model) as mnt:
        props = os.path.join(mnt, "meta", "props")
        pids = daemon_pids(mnt)
        if not t.check("one daemon serves the mount", len(pids) == 1, pids):
            t.done()
        pid = pids[0]
        cpu0 = cpu_of(pid)

        def run(what, argv):
            """Run argv while watching the daemon's CPU; stdout, or None."""
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            while True:
                try:
                    out, err = p.communicate(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    pass
                used = cpu_of(pid) - cpu0
                if used > CPU_BUDGET:
                    os.kill(pid, 9)
                    p.communicate()
                    t.not_ok(what, "the daemon used %.0f s of CPU (budget %.0f s): "
                             "not linear in the number of props" % (used, CPU_BUDGET))
                    t.done()
            if not t.check(what, p.returncode == 0, err.decode(errors="replace")):
                return None
            return out.decode()

        c = cpu_of(pid)
        out = run("ls meta/props with %d props" % N, ["ls", props])
        print("# daemon CPU for ls of %d props: %.2f s" % (N, cpu_of(pid) - c))
        names = out.split("\n")[:-1] if out is not None else []
        t.eq("ls lists every prop", ["key%06d" % i for i in range(N)], names)

        c = cpu_of(pid)
        out = run("ls -l meta/props", ["ls", "-l", "--time-style=+", props])
        print("# daemon CPU for ls -l of %d props: %.2f s" % (N, cpu_of(pid) - c))
        rows = [r.split() for r in (out or "").split("\n")[1:-1]]
        t.eq("ls -l shows %d props" % N, N, len(rows))
        bad = [r for r in rows if r[4] != str(len("value %d\n" % int(r[-1][3:])))][:3]
        t.check("ls -l gives each prop the size of its value", not bad, bad)

        out = run("cat of 1,000 props spread over the directory",
                  ["cat"] + [os.path.join(props, "key%06d" % i) for i in range(0, N, 100)])
        t.eq("they read their values", "".join("value %d\n" % i for i in range(0, N, 100)), out)

        out = run("stat of the last prop", ["stat", "-c", "%s %a", os.path.join(props, "key099999")])
        t.eq("its size and mode", "12 644\n", out)

        run("echo > an existing prop", ["sh", "-c", "echo changed > '%s/key050000'" % props])
        t.eq("it reads the new value", "changed\n", open(os.path.join(props, "key050000")).read())
        run("echo > a new prop", ["sh", "-c", "echo new > '%s/added'" % props])
        run("rm a prop", ["rm", os.path.join(props, "key000007")])
        out = run("ls after the edits", ["ls", props])
        names = (out or "").split("\n")[:-1]
        t.check("the new prop is listed, the removed one is not, and the rest are there",
                len(names) == N and "added" in names and "key000007" not in names, len(names))
        st = subprocess.run([MODELFS, "status", mnt], capture_output=True, text=True).stdout
        t.check("status lists the three prop edits",
                "staged prop key050000\n" in st and "staged prop added (new)\n" in st
                and "staged prop key000007 (removed)\n" in st, st[-500:])

        used = cpu_of(pid) - cpu0
        print("# daemon CPU for all of the above: %.2f s" % used)
        t.check("the daemon stayed within %.0f s of CPU" % CPU_BUDGET, used <= CPU_BUDGET, used)
        run("modelfs abort", [MODELFS, "abort", mnt])
    t.done()


if __name__ == "__main__":
    main()
